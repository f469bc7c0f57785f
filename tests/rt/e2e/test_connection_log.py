"""Operators see who connects: one INFO line per connection closed and per refused upgrade,
never a token or a query string."""

from __future__ import annotations

import logging
import re

import pytest

from rt.server import Server

from ._support import connect, make_token, upgrade_status, wait_connections_closed


async def test_one_line_per_connection_closed(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    token = make_token(7)
    with caplog.at_level(logging.INFO, logger="rt"):
        async with connect(server, token) as peer:
            await peer.subscribe(1001)
            await peer.ping()
        await wait_connections_closed(server)
    (line,) = [r.getMessage() for r in caplog.records if " closed /ws/odds " in r.getMessage()]
    assert re.fullmatch(
        r"conns/c\d+: closed /ws/odds dialect=kmarket user=7 remote=127\.0\.0\.1:\d+ "
        r"duration=\d+\.\ds code=1000 reason='' in=2 out=3",
        line,
    ), line
    assert token not in caplog.text and "token=" not in caplog.text


async def test_one_line_per_refused_upgrade(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="rt"):
        assert await upgrade_status(server.port, "/ws/odds?token=not-a-jwt") == b"401"
    (line,) = [r.getMessage() for r in caplog.records if "refused upgrade" in r.getMessage()]
    assert line == "refused upgrade /ws/odds remote=127.0.0.1 status=401 reason=UNAUTHORIZED"
    assert "not-a-jwt" not in caplog.text
