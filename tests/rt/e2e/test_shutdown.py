"""Graceful shutdown: leaving open_server closes every client with 1001 (going away)."""

from __future__ import annotations

import pytest
import trio

from rt.server import open_server

from ._support import Peer, e2e_settings, make_token, odds_resource, open_peer


async def test_clients_see_1001_when_the_server_stops() -> None:
    peers: list[Peer] = []
    async with trio.open_nursery() as clients:  # the clients outlive the server
        async with open_server(e2e_settings()) as server:
            host, port = server.settings.host, server.ws_port
            for _ in range(2):
                peers.append(await open_peer(clients, server, odds_resource(make_token())))
            subscribed, idle = peers
            await subscribed.subscribe(1001)
            await server.hub.publish("market:1001", {"p": 1})
            assert (await subscribed.recv())["seq"] == 1
            await idle.ping()
        try:
            for peer in peers:
                reason = await peer.closed()
                assert (reason.code, reason.reason) == (1001, "server shutting down")
        finally:
            for peer in peers:
                await peer.aclose()
        # Nothing listens any more.
        with pytest.raises(OSError):
            await trio.open_tcp_stream(host, port)
