"""GET /debug/actors: the live actor tree, for admins only."""

from __future__ import annotations

import re
from decimal import Decimal

import httpx
import pytest
import trio

from actors import Actor, ChildSpec, WhichChildren
from rt.server import Server

from ._support import actors, find, odds_client, subscribe, walk

UNAUTHORIZED = {
    "code": "UNAUTHORIZED",
    "message": "this route needs Authorization: Bearer <admin token>",
}
NODE_FIELDS = {
    "kind",
    "name",
    "path",
    "state",
    "mailbox",
    "restarts",
    "uptime_s",
    "last_error",
    "info",
}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {
            "Authorization": "admin-token-0123456789abcdef0123456789abcdef"
        },  # the right token without the Bearer scheme
        {"Authorization": "Basic admin-token-0123456789abcdef0123456789abcdef"},
    ],
    ids=["none", "wrong", "no-scheme", "basic"],
)
async def test_needs_the_admin_token(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await http.get("/debug/actors", headers=headers)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.debug_settings(admin_token="")
async def test_refuses_everyone_when_no_admin_token_is_set(http: httpx.AsyncClient) -> None:
    for header in ("Bearer", "", "Bearer anything"):
        response = await http.get("/debug/actors", headers={"Authorization": header})
        assert response.status_code == 401
        assert response.json() == UNAUTHORIZED


async def test_the_tree_with_every_documented_field(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    before = server.settings.wall_ms()
    response = await http.get("/debug/actors", headers=admin)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body.keys() == {"generatedAt", "summary", "tree"}
    assert before <= body["generatedAt"] <= server.settings.wall_ms()

    tree = body["tree"]
    assert (tree["kind"], tree["name"], tree["path"], tree["state"]) == (
        "supervisor",
        "root",
        "/",
        "running",
    )
    assert [c["path"] for c in tree["children"]] == [
        "engine",
        "rooms",
        "users",
        "keeper",
        "dialects",
        "conns",
        "feeds",
        "public",
    ]
    nodes = walk(tree)
    for node in nodes:
        is_supervisor = node["kind"] == "supervisor"
        assert node.keys() == NODE_FIELDS | ({"children"} if is_supervisor else set()), node
        assert node["mailbox"].keys() == {"depth", "capacity", "dropped", "processed"}
        assert node["state"] == "running"
        assert node["restarts"] == 0 and node["last_error"] is None
        assert isinstance(node["uptime_s"], float) and node["uptime_s"] >= 0
        if is_supervisor:
            assert node["info"].keys() == {"strategy", "max_restarts", "period_s"}
    assert find(tree, "public")["info"] == {
        "protocol": "http+ws",
        "role": "public",
        "port": server.port,
    }

    kinds: dict[str, int] = {}
    for node in nodes:
        kinds[node["kind"]] = kinds.get(node["kind"], 0) + 1
    assert body["summary"] == {
        "actors": len(nodes),
        "states": {"running": len(nodes)},
        "kinds": kinds,
        "restarts": 0,
        "with_errors": 0,
        "faults": 0,
    }


async def test_shows_a_connections_info(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    async with odds_client(server, user_id=7) as ws:
        await subscribe(ws, 1001, 1002)
        tree = (await actors(http, admin))["tree"]
        conns = find(tree, "conns")["children"]
        assert len(conns) == 1
        conn = conns[0]
        ended = trio.Event()
        server.system.monitor(conn["path"], lambda _down: ended.set())
        assert conn["kind"] == "connection"
        assert conn["path"].startswith("conns/")
        assert conn["state"] == "running"
        info = conn["info"]
        assert re.fullmatch(r"127\.0\.0\.1:\d+", info["remote"]), info["remote"]
        assert {k: v for k, v in info.items() if k != "remote"} == {
            "user": 7,
            "dialect": "kmarket",
            "subscriptions": 2,
            "outbox_depth": 0,
            "outbox_capacity": server.settings.outbox_capacity,
            "sent": 3,  # the ack and two snapshots
            "coalesced": 0,
            "resyncs": 0,
        }
        # Each market with a subscriber has its room, which says whom it serves.
        rooms = find(tree, "rooms")["children"]
        assert [(r["path"], r["kind"], r["info"]["subscribers"]) for r in rooms] == [
            ("rooms/market:1001", "room", 1),
            ("rooms/market:1002", "room", 1),
        ]
        summary = (await actors(http, admin))["summary"]
        assert summary["kinds"]["connection"] == 1
        assert summary["kinds"]["room"] == 2

    # Once the client has gone, so has its connection actor.
    with trio.fail_after(10):
        await ended.wait()
    conns_supervisor = server.system.lookup("conns")
    assert conns_supervisor is not None
    await conns_supervisor.ask(WhichChildren())  # it has handled the exit
    tree = (await actors(http, admin))["tree"]
    assert find(tree, "conns")["children"] == []


async def test_json_survives_an_actor_whose_info_is_not_json(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    class Odd(Actor):
        kind = "odd"

        def describe(self) -> dict[str, object]:
            return {"price": Decimal("1.5")}

    await server.system.spawn(ChildSpec("odd", Odd), under="feeds")
    node = find((await actors(http, admin))["tree"], "feeds/odd")
    assert node["info"] == {"price": "1.5"}
