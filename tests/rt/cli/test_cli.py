"""The command line as scripts use it: real processes, real signals, real ports on 127.0.0.1."""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from rt.auth import verify_token
from rt.cli import build_parser, build_settings, main, settings_from_env
from rt.server import GC_THRESHOLDS, tune_gc
from tests.rt.harness import SECRET

READY = re.compile(
    r"^rt ready ws=ws://([\d.]+):(\d+) http=http://([\d.]+):(\d+)(?: admin=http://[\d.]+:\d+)?"
    r"(?: trading=ws://[\d.]+:\d+/ws)?$"
)
RT = [sys.executable, "-m", "rt.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RT_")}
    env["RT_TRADING_PORT"] = "0"  # not 8081: servers of several tests may run at once
    env.update(extra)
    return env


@contextmanager
def serving(
    *args: str, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[str], re.Match[str]]]:
    proc = subprocess.Popen(
        [*RT, "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline().strip()
            if line.startswith("rt ready") or (not line and proc.poll() is not None):
                break
        match = READY.match(line)
        assert match, f"no ready line, got {line!r}"
        yield proc, match
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_ready_and_exits_cleanly_on_signal(sig: signal.Signals) -> None:
    env = _env(RT_JWT_SECRET=SECRET, RT_DEMO_FEED="false")
    with serving("--port", "0", env=env) as (proc, ready):
        ws_host, ws_port, http_host, http_port = ready.groups()[:4]
        assert ws_host == http_host == "127.0.0.1"
        assert int(ws_port) > 0 and ws_port == http_port  # one port serves both
        health = httpx.get(f"http://127.0.0.1:{http_port}/api/ws/health", timeout=5)
        assert health.json() == {"connections": 0, "topics": 0, "messages_sent": 0}
        start = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - start < 5


def test_options_come_from_the_environment_too() -> None:
    env = _env(RT_JWT_SECRET=SECRET, RT_PORT="0", RT_DEMO_FEED="true")
    with serving(env=env) as (proc, ready):
        http_port = ready.group(4)
        health = httpx.get(f"http://127.0.0.1:{http_port}/api/ws/health", timeout=5)
        assert health.json()["topics"] >= 5  # the demo feed's five markets (+ simulator events)
        snapshot = httpx.get(f"http://127.0.0.1:{http_port}/api/markets/1001/odds/snapshot")
        assert snapshot.json()["seq"] >= 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_dev_mode_generates_and_prints_the_secrets_once() -> None:
    proc = subprocess.Popen(
        [*RT, "serve", "--dev", "--no-demo-feed", "--port", "0"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert lines[0].startswith("rt dev: generated RT_JWT_SECRET=")
        assert lines[1].startswith("rt dev: generated RT_ADMIN_TOKEN=")
        assert READY.match(lines[2])
        secret = lines[0].split("=", 1)[1]
        http_port = READY.match(lines[2]).group(4)  # type: ignore[union-attr]
        # --dev: the token route needs no admin token, and signs with the printed secret.
        made = httpx.post(
            f"http://127.0.0.1:{http_port}/api/ws/token", json={"userId": 1}, timeout=5
        ).json()
        assert verify_token(made["token"], secret=secret).user_id == 1
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout is not None
        proc.stdout.close()


def test_without_dev_a_missing_secret_is_a_clear_error() -> None:
    result = subprocess.run(
        [*RT, "serve", "--port", "0"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert "RT_JWT_SECRET is not set" in result.stderr


def test_a_short_secret_is_refused_at_startup() -> None:
    result = subprocess.run(
        [*RT, "serve"], env=_env(RT_JWT_SECRET="short"), capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 2
    assert "at least 32 bytes" in result.stderr


def test_a_short_admin_token_is_refused_at_startup_in_one_line() -> None:
    result = subprocess.run(
        [*RT, "serve", "--port", "0"],
        env=_env(RT_JWT_SECRET=SECRET, RT_ADMIN_TOKEN="x"),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("rt: RT_ADMIN_TOKEN must be at least 32 bytes long, got 1 ")


def test_dev_mode_generates_an_admin_token_long_enough() -> None:
    from rt.server import dev_settings
    from rt.settings import Settings

    settings, _ = dev_settings(Settings(dev=True))
    assert len(settings.admin_token.encode()) >= 32


def test_settings_defaults_and_env_parsing() -> None:
    settings = build_settings(
        _parse(["serve"]), {"RT_IDLE_TIMEOUT_S": "30", "RT_DEMO_MARKETS": "7, 8", "RT_DEV": "yes"}
    )
    assert (settings.host, settings.port, settings.admin_port) == ("127.0.0.1", 8080, None)
    assert (settings.engine_url, settings.demo_feed) == ("memory", True)
    assert settings.idle_timeout_s == 30.0
    assert settings.demo_markets == ("7", "8")
    assert settings.dev is True
    flags = build_settings(
        _parse(["serve", "--host", "0.0.0.0", "--no-demo-feed", "--port", "9"]),
        {"RT_HOST": "10.0.0.1", "RT_PORT": "1", "RT_ADMIN_PORT": "9090"},
    )
    assert (flags.host, flags.port, flags.demo_feed) == ("0.0.0.0", 9, False)
    assert flags.admin_port == 9090


def test_require_token_names_dialects() -> None:
    settings = build_settings(_parse(["serve", "--require-token", "topics"]), {})
    assert settings.require_token == ("topics",)
    settings = build_settings(_parse(["serve"]), {"RT_REQUIRE_TOKEN": "topics, kmarket"})
    assert settings.require_token == ("topics", "kmarket")
    with pytest.raises(ValueError, match="names no dialect: bogus"):
        build_settings(_parse(["serve", "--require-token", "bogus"]), {})
    with pytest.raises(ValueError, match="trading authenticates in-band"):
        build_settings(_parse(["serve", "--require-token", "trading"]), {})


def test_the_trading_port_and_exchange_settings() -> None:
    assert build_settings(_parse(["serve"]), {}).trading_port == 8081
    assert build_settings(_parse(["serve", "--trading-port", "0"]), {}).trading_port == 0
    assert build_settings(_parse(["serve", "--trading-port", "off"]), {}).trading_port is None
    assert build_settings(_parse(["serve"]), {"RT_TRADING_PORT": "off"}).trading_port is None
    assert build_settings(_parse(["serve"]), {"RT_TRADING_PORT": "9001"}).trading_port == 9001
    with pytest.raises(ValueError, match="RT_TRADING_PORT 9000 is already the public or"):
        build_settings(_parse(["serve", "--port", "9000", "--trading-port", "9000"]), {})
    with pytest.raises(ValueError, match="--trading-port: expected a port or off, got 'x'"):
        build_settings(_parse(["serve", "--trading-port", "x"]), {})
    with pytest.raises(ValueError, match="RT_TRADING_EXCHANGE must be auto, on or off"):
        build_settings(_parse(["serve"]), {"RT_TRADING_EXCHANGE": "maybe"})
    with pytest.raises(ValueError, match="instrument 'X:1': expected"):
        build_settings(_parse(["serve"]), {"RT_TRADING_INSTRUMENTS": "X:1"})


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(SystemExit, match="RT_PORT has an invalid value 'x'"):
        settings_from_env({"RT_PORT": "x"})
    with pytest.raises(SystemExit, match="RT_DEMO_FEED must be true or false"):
        settings_from_env({"RT_DEMO_FEED": "maybe"})


def test_rt_token_prints_a_verifiable_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RT_JWT_SECRET", SECRET)
    assert main(["token", "--user", "42", "--markets", "1001,1002", "--ttl", "60"]) == 0
    claims = verify_token(capsys.readouterr().out.strip(), secret=SECRET)
    assert claims.user_id == 42
    assert claims.scope_markets == frozenset({"1001", "1002"})


def test_rt_tail_prints_the_live_stream() -> None:
    env = _env(
        RT_JWT_SECRET=SECRET,
        RT_DEMO_FEED="false",
        RT_ADMIN_TOKEN="admin-token-0123456789abcdef0123456789abcdef",
    )
    with serving("--port", "0", env=env) as (server, ready):
        http_port = ready.group(4)
        tail = subprocess.Popen(
            [
                *RT,
                "tail",
                "--market",
                "1001",
                "--url",
                f"http://127.0.0.1:{http_port}",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert tail.stdout is not None
            lines = [json.loads(tail.stdout.readline()) for _ in range(2)]
            assert [m["type"] for m in lines] == ["ack", "snapshot"]
            admin = {"Authorization": "Bearer admin-token-0123456789abcdef0123456789abcdef"}
            for n in (1, 2):
                httpx.post(
                    f"http://127.0.0.1:{http_port}/admin/odds/override",
                    json={"marketId": 1001, "payload": {"home": n}},
                    headers=admin,
                    timeout=5,
                ).raise_for_status()
            updates = [json.loads(tail.stdout.readline()) for _ in range(2)]
            assert [(m["type"], m["seq"], m["payload"]) for m in updates] == [
                ("odds_update", 1, {"home": 1}),
                ("odds_update", 2, {"home": 2}),
            ]
        finally:
            tail.kill()
            tail.wait()
            assert tail.stdout is not None
            tail.stdout.close()
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=10) == 0


def _parse(argv: list[str]) -> object:
    import argparse

    from rt import cli

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli._serve_parser(sub)
    return parser.parse_args(argv)


def test_log_json_prints_one_json_object_per_line() -> None:
    env = _env(RT_JWT_SECRET=SECRET, RT_DEMO_FEED="false")
    proc = subprocess.Popen(
        [*RT, "serve", "--log-json", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert READY.match(proc.stdout.readline().strip())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        lines = [line for line in proc.stderr.read().splitlines() if line.strip()]
        assert lines, "the server logged nothing"
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        assert all({"ts", "level", "logger", "message"} <= r.keys() for r in records)
        assert any(r.get("actor") for r in records), "no line names its actor"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_simulator_to_rt_to_a_seed_000_client() -> None:
    """rt sim (its own process) -> rt serve --feed -> a UOF client sees the simulated events."""
    sim = subprocess.Popen(
        [*RT, "sim", "--port", "0", "--seed", "7", "--events", "2", "--markets", "2"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert sim.stdout is not None
        ready = sim.stdout.readline().strip()
        assert ready.startswith("rt sim ready ws://127.0.0.1:"), ready
        feed_url = ready.split()[-1]
        env = _env(RT_JWT_SECRET=SECRET, RT_DEMO_FEED="false")
        args = ("--feed", feed_url, "--feed-grace", "3", "--port", "0")
        with serving(*args, env=env) as (server, served):
            ws_port = int(served.group(2))
            event = trio.run(_first_event_snapshot, ws_port)
            assert event["type"] == "snapshot"
            assert event["payload"]["eventId"] == "sr:match:1"
            markets = event["payload"]["markets"]
            assert [m["marketId"] for m in markets] == [1, 2]
            assert all(m["status"] in ("active", "suspended") for m in markets)
            assert all(len(m["outcomes"]) == 3 for m in markets)
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=10) == 0
    finally:
        sim.send_signal(signal.SIGINT)
        sim.wait(timeout=10)
        assert sim.stdout is not None
        sim.stdout.close()


async def _first_event_snapshot(ws_port: int) -> dict[str, object]:
    from rt.auth import issue_token

    token, _ = issue_token(
        secret=SECRET, user_id="u1", scope_markets=None, ttl_s=60, now_s=time.time()
    )
    url = f"ws://127.0.0.1:{ws_port}/ws?userId=u1&token={token}"
    with trio.fail_after(15):
        async with open_websocket_url(url) as ws:
            hello = json.loads(await ws.get_message())
            assert hello["type"] == "connection_established"
            while True:  # until the feed has published the event (its snapshot has seq > 0)
                await ws.send_message(
                    json.dumps({"type": "subscribe", "payload": {"eventIds": ["sr:match:1"]}})
                )
                assert json.loads(await ws.get_message())["type"] == "subscribed"
                snapshot: dict[str, object] = json.loads(await ws.get_message())
                if snapshot["seq"]:
                    return snapshot
                await ws.send_message(
                    json.dumps({"type": "unsubscribe", "payload": {"eventIds": ["sr:match:1"]}})
                )
                while json.loads(await ws.get_message())["type"] != "unsubscribed":
                    pass
                await trio.sleep(0.1)


def test_serving_tunes_the_collector_for_rare_full_collections() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > before[0] and GC_THRESHOLDS[2] > before[2]
        assert gc.get_freeze_count() > 0  # what existed at start-up is out of every scan
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_rt_tail_stops_on_a_refused_token_with_the_servers_reason() -> None:
    env = _env(RT_JWT_SECRET=SECRET, RT_DEMO_FEED="false")
    with serving("--port", "0", env=env) as (server, ready):
        http_port = ready.group(4)
        tail = subprocess.run(
            [
                *RT,
                "tail",
                "--market",
                "1001",
                "--url",
                f"http://127.0.0.1:{http_port}",
                "--token",
                "not-a-token",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
        )
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=10) == 0
    assert tail.returncode == 2
    assert tail.stdout == ""
    assert tail.stderr.startswith("rt tail: refused (401): ")
    assert "token" in tail.stderr and "Traceback" not in tail.stderr
    assert "ConnectionRejected" not in tail.stderr


def test_rt_tail_without_a_server_says_it_retries_on_stderr() -> None:
    with socket_on_free_port() as port:  # bound, not listening: every connect is refused
        tail = subprocess.Popen(
            [*RT, "tail", "--market", "1001", "--url", f"http://127.0.0.1:{port}"],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert tail.stderr is not None
            first = tail.stderr.readline()
            second = tail.stderr.readline()
        finally:
            tail.send_signal(signal.SIGINT)
            out, rest = tail.communicate(timeout=10)
    assert re.fullmatch(
        r"rt tail: cannot reach http://127\.0\.0\.1:\d+/api/ws/token: .+; retrying in [\d.]+ s\n",
        first,
    ), first
    assert second.startswith("rt tail: cannot reach")
    assert out == ""  # stdout is for the stream alone
    assert "Traceback" not in rest
    assert tail.returncode == 0


def test_rt_tail_help_describes_every_flag() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    tail = commands.choices["tail"]
    flags = [a for a in tail._actions if a.option_strings and a.dest != "help"]
    assert {a.option_strings[0] for a in flags} == {"--market", "--url", "--token", "--user"}
    for action in flags:
        assert action.help and len(action.help) > 20, action.option_strings
    assert tail.description and "stdout" in tail.description
    result = subprocess.run([*RT, "tail", "--help"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0 and "RT_URL" in result.stdout


@contextmanager
def socket_on_free_port() -> Iterator[int]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_a_busy_port_is_one_clear_line() -> None:
    with socket_on_free_port() as port:  # bound: nobody else may listen there
        result = subprocess.run(
            [*RT, "serve", "--port", str(port)],
            env=_env(RT_JWT_SECRET=SECRET, RT_DEMO_FEED="false"),
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"rt: cannot listen on 127.0.0.1:{port} (RT_PORT / --port): address already in use\n"
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {"RT_PORT": "x"}, "rt: RT_PORT has an invalid value 'x'\n"),
        ([], {"RT_JWT_SECRET": "short"}, "rt: RT_JWT_SECRET must be at least 32 bytes long\n"),
        (["--host", "203.0.113.7", "--port", "0"], {}, "rt: cannot listen on 203.0.113.7"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    result = subprocess.run(
        [*RT, "serve", *args],
        env=_env(**{"RT_JWT_SECRET": SECRET, "RT_DEMO_FEED": "false", **env}),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode != 0
    assert result.stderr.startswith(expected), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_rt_tail_ends_quietly_when_its_reader_goes_away() -> None:
    env = _env(RT_JWT_SECRET=SECRET, RT_DEMO_FEED="true", RT_DEV="true")
    with serving("--port", "0", env=env) as (server, ready):
        url = f"http://127.0.0.1:{ready.group(4)}"
        result = subprocess.run(
            [
                "bash",
                "-c",
                f"{sys.executable} -m rt.cli tail --market 1001 --url {url} | head -n 2",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=10) == 0
    assert [json.loads(line)["type"] for line in result.stdout.splitlines()] == ["ack", "snapshot"]
    assert result.stderr == ""  # no "Broken pipe; retrying", no traceback
