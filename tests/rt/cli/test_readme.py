"""A new user's first minutes: every command README.md shows, run as written, in a copy of
the repository, with a plain ``pip install .`` (no extras) into a fresh venv.

The only change to the commands is the environment: ``RT_PORT``, ``RT_TRADING_PORT`` and
``RT_URL`` point the server and the client at free ports instead of 8080 and 8081, and the
test command itself (the one running this test) is left out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).parents[3]
README = ROOT / "README.md"


def readme_commands() -> list[str]:
    return [m.group(1) for m in re.finditer(r"^ {4}\$ (.+)$", README.read_text(), re.M)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def copy_of_the_repo(into: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = into / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


def test_every_readme_command_works_after_a_plain_install(tmp_path: Path) -> None:
    commands = readme_commands()
    assert len(commands) == 3, commands  # serve, the tests, tail
    serve, tests, tail = commands
    assert "scripts/test" in tests
    assert "pip install ." in serve and "[" not in serve  # no extras
    repo = copy_of_the_repo(tmp_path / "rt")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RT_", "VIRTUAL_ENV"))}
    trading_port = free_port()
    env.update(
        RT_PORT=str(port), RT_URL=f"http://127.0.0.1:{port}", RT_TRADING_PORT=str(trading_port)
    )
    server = subprocess.Popen(
        ["bash", "-c", serve],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the venv's rt is a grandchild: stop the whole group
    )
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 300  # the install, then the start
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            if line.startswith("rt ready"):
                break
        assert lines and lines[-1] == (
            f"rt ready ws=ws://127.0.0.1:{port} http=http://127.0.0.1:{port} "
            f"trading=ws://127.0.0.1:{trading_port}/ws"
        ), (lines, server.stderr.read() if server.poll() is not None and server.stderr else "")
        client = subprocess.Popen(
            ["bash", "-c", tail],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            assert client.stdout is not None
            first = [json.loads(client.stdout.readline()) for _ in range(3)]
            assert [m["type"] for m in first[:2]] == ["ack", "snapshot"], first
            assert first[2]["type"] == "odds_update"  # the demo feed is live
        finally:
            os.killpg(client.pid, signal.SIGINT)
            _, errors = client.communicate(timeout=20)
        assert client.returncode == 0
        assert "Traceback" not in errors and "ModuleNotFoundError" not in errors, errors
    finally:
        if server.poll() is None:  # it may have failed to start: the assertion says why
            os.killpg(server.pid, signal.SIGINT)
        server.communicate(timeout=30)
    assert server.returncode == 0
