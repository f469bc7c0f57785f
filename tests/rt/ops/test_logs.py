"""Logs: one JSON object per line with the actor's path; never a token or a secret."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import trio

from actors import Actor, ChildSpec, Supervisor, open_system
from rt.auth import issue_token
from rt.logs import configure_logging
from rt.server import Server
from tests.rt.e2e._support import SECRET, connect, wait_connections_closed

log = logging.getLogger("tests.rt.ops.worker")

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """Where configure_logging writes in these tests; the root logger is restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        yield stream
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class Worker(Actor):
    kind: ClassVar[str] = "worker"

    async def receive(self, message: str) -> None:
        log.info("handling %s", message)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._helper, message)
        if message == "fail":
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("could not handle %s", message)

    async def _helper(self, message: str) -> None:
        log.warning("helper for %s", message)


async def run_worker(*messages: str) -> None:
    team = ChildSpec("team", lambda: Supervisor([ChildSpec("worker", Worker)]))
    async with open_system([team]) as system:
        worker = system.lookup("team/worker")
        assert worker is not None
        for message in messages:
            await worker.ask(message)


async def test_json_lines_name_the_actor_of_every_task(output: io.StringIO) -> None:
    configure_logging(json_lines=True, level="INFO", stream=output)
    await run_worker("a")
    log.info("outside any actor")
    first, helper, outside = [line for line in lines(output) if line["logger"] == log.name]
    assert first == {
        "ts": first["ts"],
        "level": "INFO",
        "logger": "tests.rt.ops.worker",
        "message": "handling a",
        "actor": "team/worker",
    }
    assert TS.fullmatch(first["ts"])
    assert (helper["level"], helper["message"], helper["actor"]) == (
        "WARNING",
        "helper for a",
        "team/worker",  # a task the actor started
    )
    assert outside["actor"] is None


async def test_an_exception_comes_with_its_traceback(output: io.StringIO) -> None:
    configure_logging(json_lines=True, level="INFO", stream=output)
    await run_worker("fail")
    (failed,) = [line for line in lines(output) if line["level"] == "ERROR"]
    assert failed["message"] == "could not handle fail"
    assert failed["actor"] == "team/worker"
    assert failed["exc_info"].startswith("Traceback (most recent call last):")
    assert failed["exc_info"].endswith("ValueError: boom")


async def test_the_level_filters_and_text_lines_carry_the_actor_too(output: io.StringIO) -> None:
    configure_logging(json_lines=False, level="WARNING", stream=output)
    await run_worker("b")
    text = output.getvalue()
    assert "handling b" not in text
    (line,) = [line for line in text.splitlines() if "helper for b" in line]
    assert " WARNING tests.rt.ops.worker [team/worker]: helper for b" in line


def test_configuring_again_replaces_the_handler(output: io.StringIO) -> None:
    configure_logging(json_lines=True, level="INFO", stream=output)
    second = io.StringIO()
    configure_logging(json_lines=True, level="INFO", stream=second)
    log.info("once")
    assert output.getvalue() == ""
    assert [line["message"] for line in lines(second)] == ["once"]


def test_tokens_and_secrets_are_never_written(output: io.StringIO) -> None:
    configure_logging(json_lines=True, level="INFO", stream=output)
    token, _ = issue_token(
        secret=SECRET, user_id=1, scope_markets=None, ttl_s=600, now_s=time.time()
    )
    log.info("handshake GET /ws/odds?token=%s&x=1", token)
    log.info("bare %s", token)
    log.info("headers %s", {"authorization": "Bearer admin-token-123"})
    log.info("env RT_JWT_SECRET=%s RT_ADMIN_TOKEN=%s", SECRET, "admin-token-123")
    try:
        raise RuntimeError(f"bad credentials token={token}")
    except RuntimeError:
        log.exception("failed")
    text = output.getvalue()
    for secret in (token, SECRET, "admin-token-123", token.split(".")[2]):
        assert secret not in text
    messages = [line["message"] for line in lines(output)]
    assert messages[:4] == [
        "handshake GET /ws/odds?[redacted]",
        "bare [redacted]",
        "headers {'authorization': 'Bearer [redacted]'}",
        "env RT_JWT_SECRET=[redacted] RT_ADMIN_TOKEN=[redacted]",
    ]
    assert "RuntimeError: bad credentials token=[redacted]" in lines(output)[4]["exc_info"]


@pytest.mark.ops_settings(idle_timeout_s=0.3, ping_interval_s=1000.0)
async def test_a_servers_connection_logs_with_its_path(server: Server, output: io.StringIO) -> None:
    configure_logging(json_lines=True, level="INFO", stream=output)
    async with connect(server) as peer:
        assert (await peer.closed()).code == 4000
    await wait_connections_closed(server)
    timeout, closed = [line for line in lines(output) if line["logger"] == "rt.ws.connection"]
    assert timeout["actor"] == closed["actor"] == "conns/c1"
    assert timeout["message"] == "conns/c1: no frame for 0 s, closing"
    assert closed["message"].startswith("conns/c1: closed /ws/odds dialect=kmarket user=1 ")
    assert " code=4000 reason='HEARTBEAT_TIMEOUT' " in closed["message"]
