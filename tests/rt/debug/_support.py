"""Helpers for the operator-route tests: WebSocket clients and tree lookups."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from rt.auth import issue_token
from rt.server import Server

#: How long any single wait may take before the test fails.
TIMEOUT_S = 10.0

Json = dict[str, Any]


def client_token(server: Server, user_id: int = 1) -> str:
    token, _ = issue_token(
        secret=server.settings.jwt_secret,
        user_id=user_id,
        scope_markets=None,
        ttl_s=600,
        now_s=time.time(),
    )
    return token


@asynccontextmanager
async def odds_client(server: Server, user_id: int = 1) -> AsyncIterator[WebSocketConnection]:
    """A KMarket client on /ws/odds over a real socket."""
    url = f"{server.ws_url}/ws/odds?token={client_token(server, user_id)}"
    async with open_websocket_url(url) as ws:
        yield ws


async def receive(ws: WebSocketConnection) -> Json:
    with trio.fail_after(TIMEOUT_S):
        message: Json = json.loads(await ws.get_message())
    return message


async def subscribe(ws: WebSocketConnection, *markets: int) -> dict[int, Json]:
    """Subscribe, check the ack, and return the snapshot of each market by id."""
    await ws.send_message(json.dumps({"type": "subscribe", "markets": [str(m) for m in markets]}))
    assert await receive(ws) == {"type": "ack", "ok": True, "subscribed": list(markets)}
    snapshots = [await receive(ws) for _ in markets]
    assert {s["type"] for s in snapshots} == {"snapshot"}
    return {s["marketId"]: s for s in snapshots}


def walk(node: Json) -> list[Json]:
    """Every node of a tree, parents before children."""
    nodes = [node]
    for child in node.get("children", ()):
        nodes.extend(walk(child))
    return nodes


def find(tree: Json, path: str) -> Json:
    for node in walk(tree):
        if node["path"] == path:
            return node
    raise AssertionError(f"no {path} in the tree: {[n['path'] for n in walk(tree)]}")


async def actors(http: httpx.AsyncClient, admin: dict[str, str]) -> Json:
    response = await http.get("/debug/actors", headers=admin)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body
