"""The faults API: arm, list and disarm faults on live actors, and what they do."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pytest
import trio
import trio.testing

from actors import Actor, ChildSpec, WhichChildren
from rt.server import Server

from ._support import Json, actors, find, odds_client, receive, subscribe


def fault(id: int, action: str, *, matches: list[str], **fields: Any) -> Json:
    """A fault as the API describes it."""
    described = {
        "id": id,
        "action": action,
        "actor": None,
        "kind": None,
        "point": "message",
        "count": None,
        "after": 0,
        "delay_s": 0.0,
        "fired": 0,
        "matches": matches,
    }
    described.update(fields)
    return described


async def faults(http: httpx.AsyncClient, admin: dict[str, str]) -> list[Json]:
    response = await http.get("/debug/faults", headers=admin)
    assert response.status_code == 200, response.text
    listed: list[Json] = response.json()["faults"]
    return listed


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/debug/faults"),
        ("POST", "/debug/faults"),
        ("DELETE", "/debug/faults"),
        ("DELETE", "/debug/faults/1"),
    ],
)
async def test_needs_the_admin_token(
    server: Server, http: httpx.AsyncClient, method: str, path: str
) -> None:
    server.system.faults.arm("delay", kind="room", delay_s=1.0)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await http.request(
            method, path, json={"action": "crash", "kind": "room"}, headers=headers
        )
        assert response.status_code == 401
        assert response.json()["code"] == "UNAUTHORIZED"
    assert len(server.system.faults.list()) == 1  # nothing armed or disarmed


async def test_arm_list_and_disarm(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    assert await faults(http, admin) == []
    response = await http.post(
        "/debug/faults", json={"action": "crash", "actor": "rooms/market:1001"}, headers=admin
    )
    assert response.status_code == 201
    # No room yet: the fault waits for one (it matches actors started later, too).
    first = fault(1, "crash", actor="rooms/market:1001", count=1, matches=[])
    assert response.json() == first

    response = await http.post(
        "/debug/faults",
        json={"action": "delay", "kind": "listener", "delay_s": 0.5, "after": 2, "count": 3},
        headers=admin,
    )
    assert response.status_code == 201
    second = fault(2, "delay", kind="listener", delay_s=0.5, after=2, count=3, matches=["public"])
    assert response.json() == second
    response = await http.post(
        "/debug/faults",
        json={"action": "stall", "actor": "/engine", "point": "flush"},
        headers=admin,
    )
    third = fault(3, "stall", actor="engine", point="flush", matches=["engine"])
    assert response.json() == third
    assert await faults(http, admin) == [first, second, third]
    assert server.system.faults.list() == [
        {k: v for k, v in f.items() if k != "matches"} for f in (first, second, third)
    ]
    assert (await actors(http, admin))["summary"]["faults"] == 3

    response = await http.delete("/debug/faults/2", headers=admin)
    assert (response.status_code, response.json()) == (200, {"disarmed": 1})
    assert await faults(http, admin) == [first, third]
    response = await http.delete("/debug/faults/2", headers=admin)
    assert response.status_code == 404
    assert response.json() == {"code": "NO_SUCH_FAULT", "message": "no armed fault has id 2"}
    response = await http.delete("/debug/faults/two", headers=admin)
    assert response.status_code == 400
    assert response.json() == {
        "code": "INVALID_FAULT",
        "message": "a fault id is an integer, got 'two'",
    }

    response = await http.delete("/debug/faults", headers=admin)
    assert (response.status_code, response.json()) == (200, {"disarmed": 2})
    assert await faults(http, admin) == []
    assert server.system.faults.list() == []
    response = await http.delete("/debug/faults", headers=admin)
    assert response.json() == {"disarmed": 0}


async def test_a_crashed_room_restarts_and_its_subscriber_sees_no_gap(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    async with odds_client(server) as ws:
        await subscribe(ws, 1001)
        await server.hub.publish("market:1001", {"price": 1})
        assert (await receive(ws))["seq"] == 1

        response = await http.post(
            "/debug/faults", json={"action": "crash", "actor": "rooms/market:1001"}, headers=admin
        )
        assert response.status_code == 201
        assert response.json()["matches"] == ["rooms/market:1001"]
        # The room takes this update from its mailbox, and crashes before it sees it.
        await server.hub.publish("market:1001", {"price": 2})
        # Its next incarnation reloads from the engine and brings the subscriber up to date.
        update = await receive(ws)
        assert (update["type"], update["seq"], update["payload"]) == (
            "odds_update",
            2,
            {"price": 2},
        )
        rooms = server.system.lookup("rooms")
        assert rooms is not None
        await rooms.ask(WhichChildren())  # the restart is complete

        room = find((await actors(http, admin))["tree"], "rooms/market:1001")
        assert room["state"] == "running"
        assert room["restarts"] == 1
        assert room["last_error"] == (
            "InjectedFault: injected crash in rooms/market:1001 at message #1"
        )
        assert room["info"]["seq"] == 2 and room["info"]["subscribers"] == 1
        [armed] = await faults(http, admin)
        assert armed["fired"] == 1 and armed["count"] == 1

        # It fired once: the new incarnation runs clean.
        await server.hub.publish("market:1001", {"price": 3})
        update = await receive(ws)
        assert (update["seq"], update["payload"]) == (3, {"price": 3})
        summary = (await actors(http, admin))["summary"]
        assert (summary["restarts"], summary["with_errors"]) == (1, 1)


async def test_a_stall_holds_a_room_until_disarmed(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    async with odds_client(server) as ws:
        await subscribe(ws, 1002)
        response = await http.post(
            "/debug/faults", json={"action": "stall", "kind": "room"}, headers=admin
        )
        assert response.json()["matches"] == ["rooms/market:1002"]
        for price in (1, 2, 3):
            await server.hub.publish("market:1002", {"price": price})
        await trio.testing.wait_all_tasks_blocked()

        # The room holds the first update in the stall and two more queued behind it.
        room = find((await actors(http, admin))["tree"], "rooms/market:1002")
        assert room["state"] == "running"
        assert room["mailbox"]["depth"] == 2
        assert room["info"]["seq"] == 0

        response = await http.delete(f"/debug/faults/{response.json()['id']}", headers=admin)
        assert response.status_code == 200
        received = [await receive(ws) for _ in range(3)]
        assert [(m["seq"], m["payload"]) for m in received] == [
            (1, {"price": 1}),
            (2, {"price": 2}),
            (3, {"price": 3}),
        ]


async def test_a_dropped_update_is_filled_in_by_the_next(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    async with odds_client(server) as ws:
        await subscribe(ws, 1001)
        response = await http.post(
            "/debug/faults",
            json={"action": "drop", "actor": "rooms/market:1001", "after": 1},
            headers=admin,
        )
        assert response.status_code == 201
        for price in (1, 2, 3):
            await server.hub.publish("market:1001", {"price": price})
        # The room never saw update 2; update 3 showed it the gap, and it read 2 from the engine.
        received = [await receive(ws) for _ in range(3)]
        assert [(m["type"], m["seq"], m["payload"]) for m in received] == [
            ("odds_update", 1, {"price": 1}),
            ("odds_update", 2, {"price": 2}),
            ("odds_update", 3, {"price": 3}),
        ]
        room = find((await actors(http, admin))["tree"], "rooms/market:1001")
        assert room["restarts"] == 0 and room["info"]["seq"] == 3
        assert (await faults(http, admin))[0]["fired"] == 1


class UpstreamFeed(Actor):
    """A stand-in for a feed: each message is one frame read from its upstream connection.

    It honours the documented contract: ``fault_point("upstream")`` returning True means
    "cut the upstream connection now"; it then reconnects.
    """

    kind: ClassVar[str] = "feed"

    def __init__(self) -> None:
        self.state = "connected"
        self.attempts = 0

    def describe(self) -> dict[str, Any]:
        return {"state": self.state, "attempts": self.attempts}

    async def receive(self, frame: str) -> str:
        if await self.fault_point("upstream"):
            self.attempts += 1
            self.state = "reconnecting"
            return "cut"
        self.state = "connected"
        return f"read {frame}"


async def test_cut_drops_a_feeds_upstream_connection(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    feed = await server.system.spawn(ChildSpec("upstream", UpstreamFeed), under="feeds")
    assert await feed.ask("a") == "read a"

    response = await http.post(
        "/debug/faults",
        json={"action": "cut", "actor": "feeds/upstream", "after": 1},
        headers=admin,
    )
    assert response.status_code == 201
    # A cut is a drop at the "upstream" point, once unless count says otherwise.
    assert response.json() == fault(
        1,
        "drop",
        actor="feeds/upstream",
        point="upstream",
        count=1,
        after=1,
        matches=["feeds/upstream"],
    )
    assert await feed.ask("b") == "read b"  # after=1: this hit passes
    assert await feed.ask("c") == "cut"
    node = find((await actors(http, admin))["tree"], "feeds/upstream")
    assert node["info"] == {"state": "reconnecting", "attempts": 1}
    assert await feed.ask("d") == "read d"
    assert (await faults(http, admin))[0]["fired"] == 1


BAD: list[tuple[Any, str]] = [
    ([], "expected a JSON object, got []"),
    ({"kind": "room"}, "expected action to be one of crash, delay, drop, stall, cut, got null"),
    (
        {"action": "explode", "kind": "room"},
        'expected action to be one of crash, delay, drop, stall, cut, got "explode"',
    ),
    ({"action": "crash"}, "give exactly one of actor (a path or a name) or kind"),
    (
        {"action": "crash", "actor": "public", "kind": "room"},
        "give exactly one of actor (a path or a name) or kind",
    ),
    ({"action": "crash", "actor": ""}, 'expected actor to be a non-empty string, got ""'),
    ({"action": "crash", "kind": 5}, "expected kind to be a non-empty string, got 5"),
    ({"action": "crash", "actor": "/"}, "the root supervisor cannot be a fault's target"),
    ({"action": "crash", "actor": "root"}, "the root supervisor cannot be a fault's target"),
    (
        {"action": "crash", "kind": "room", "target": "x", "when": 1},
        "unknown field 'target', 'when'; expected action, actor, kind, point, count, after, "
        "delay_s",
    ),
    (
        {"action": "crash", "kind": "room", "point": ""},
        'expected point to be a non-empty string, got ""',
    ),
    ({"action": "crash", "kind": "room", "count": 0}, "expected count to be at least 1, got 0"),
    ({"action": "crash", "kind": "room", "count": "2"}, 'expected count to be an integer, got "2"'),
    (
        {"action": "crash", "kind": "room", "count": True},
        "expected count to be an integer, got true",
    ),
    ({"action": "crash", "kind": "room", "after": -1}, "expected after to be at least 0, got -1"),
    ({"action": "crash", "kind": "room", "after": 1.5}, "expected after to be an integer, got 1.5"),
    ({"action": "delay", "kind": "room"}, "a delay needs delay_s > 0"),
    (
        {"action": "delay", "kind": "room", "delay_s": -1},
        "expected delay_s to be a number of seconds >= 0, got -1",
    ),
    (
        {"action": "delay", "kind": "room", "delay_s": "1"},
        'expected delay_s to be a number of seconds >= 0, got "1"',
    ),
    (
        {"action": "crash", "kind": "room", "delay_s": 1},
        "delay_s applies only to action delay, not crash",
    ),
    (
        {"action": "cut", "actor": "feeds/demo", "point": "message"},
        "a cut acts at point 'upstream', got 'message'",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD, ids=[m for _, m in BAD])
async def test_bad_requests_say_what_is_wrong(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str], body: Any, message: str
) -> None:
    response = await http.post("/debug/faults", json=body, headers=admin)
    assert response.status_code == 400
    assert response.json() == {"code": "INVALID_FAULT", "message": message}
    assert server.system.faults.list() == []


async def test_a_body_that_is_not_json(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await http.post("/debug/faults", content=b"{crash", headers=admin)
    assert response.status_code == 400
    assert response.json() == {"code": "INVALID_FAULT", "message": "the body is not valid JSON"}
    assert server.system.faults.list() == []
