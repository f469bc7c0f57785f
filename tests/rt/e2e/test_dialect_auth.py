"""A dialect's handshake auth mode (rt/dialects): "token" is required, "optional" verifies a
token when given and is anonymous without one, "none" leaves authentication to the session."""

from __future__ import annotations

import dataclasses

import pytest
import trio

from rt.dialects import Dialect, match
from rt.dialects.kmarket import DIALECT as KMARKET
from rt.server import Server
from rt.ws import listener

from ._support import make_token, open_peer, upgrade_status


def with_test_dialect(monkeypatch: pytest.MonkeyPatch, auth: str) -> None:
    test = dataclasses.replace(KMARKET, name="kmarket", path="/test/ws", auth=auth)  # type: ignore[arg-type]

    def test_match(path: str) -> tuple[Dialect, dict[str, str]] | None:
        return (test, {}) if path == "/test/ws" else match(path)

    monkeypatch.setattr(listener, "match", test_match)


def users(server: Server) -> list[object]:
    return [
        node["info"]["user"]
        for node in server.system.tree()["children"]
        if node["name"] == "conns"
        for node in node["children"]
    ]


@pytest.mark.parametrize("auth", ["optional", "none"])
async def test_without_a_token_the_connection_is_anonymous(
    server: Server, monkeypatch: pytest.MonkeyPatch, auth: str
) -> None:
    with_test_dialect(monkeypatch, auth)
    async with trio.open_nursery() as nursery:
        peer = await open_peer(nursery, server, "/test/ws")
        await peer.subscribe(1001)
        (user,) = users(server)
        assert str(user).startswith("anon:c")
        await peer.aclose()


async def test_optional_verifies_a_token_when_given(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_test_dialect(monkeypatch, "optional")
    assert await upgrade_status(server.port, "/test/ws?token=not-a-jwt") == b"401"
    async with trio.open_nursery() as nursery:
        peer = await open_peer(nursery, server, f"/test/ws?token={make_token(42)}")
        await peer.subscribe(1001)
        assert users(server) == [42]
        await peer.aclose()


async def test_none_ignores_the_query_token_and_token_requires_one(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_test_dialect(monkeypatch, "none")
    async with trio.open_nursery() as nursery:
        peer = await open_peer(nursery, server, "/test/ws?token=not-a-jwt")
        await peer.subscribe(1001)
        await peer.aclose()
    with_test_dialect(monkeypatch, "token")
    assert await upgrade_status(server.port, "/test/ws") == b"401"
