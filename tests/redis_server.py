"""A real redis-server for tests: on a free loopback port, in its own temporary directory.

Never an already running Redis: each `RedisServer` starts its own process (Debian's
``redis-server``, which scripts/test installs), with no persistence, so a restart is a Redis
that lost everything, as after a crash. Tests that need one take the ``redis_server``
fixture (tests/conftest.py), or `RedisServer.shared()` where a fixture cannot reach.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process; `start`, `kill` (SIGKILL) and `start` again on the same port."""

    _shared: RedisServer | None = None

    def __init__(self, *, password: str | None = None, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: run scripts/test, which installs Debian's "
                "redis-server package"
            )
        self.binary = binary
        self.password = password
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="rt-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self._prefixes = 0

    @classmethod
    def shared(cls) -> RedisServer:
        """The session's server (started by the ``redis_server`` fixture, or here on first use)."""
        if cls._shared is None or not cls._shared.running:
            cls._shared = cls()
            cls._shared.start()
        return cls._shared

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def new_prefix(self) -> str:
        """A key prefix no other user of this server has had: a fresh, empty engine."""
        self._prefixes += 1
        return f"t{self._prefixes}:"

    def start(self) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        self._wait_until_answering()

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.running:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited at start:\n{log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    answer = sock.recv(64)
                if answer.startswith((b"+PONG", b"-NOAUTH")):
                    return
            except OSError:
                pass
            time.sleep(0.02)  # polling a process we started, in a sync fixture: bounded above
        raise RuntimeError(f"redis-server did not answer on port {self.port} within 10 s")

    def kill(self) -> None:
        """SIGKILL: the server dies at once and forgets everything (no persistence)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
