"""Helpers for the feed tests: a scripted upstream, an update recorder, the feed's state."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio
from trio_websocket import WebSocketConnection, WebSocketRequest

from actors import ActorSystem, ChildSpec
from rt.feeds import HubSink, Ledger, UpstreamFeed, event_topic
from rt.feeds.memory import open_memory_websocket
from rt.feeds.transport import UpstreamSocket
from rt.model import Update
from tests.rt.harness import Core

FEED = "feeds/up1"


class ScriptedUpstream:
    """An upstream the test plays by hand, over in-memory WebSockets.

    ``refuse`` makes connection attempts fail as a refused TCP connection does; each
    accepted connection's server side comes out of `accepted()` for the test to drive.
    ``attempts`` holds the (virtual) time of every connection attempt.
    """

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.attempts: list[float] = []
        self.on_attempt: Callable[[], None] = lambda: None
        self._send, self._receive = trio.open_memory_channel[WebSocketConnection](16)

    def connect(self, url: str) -> AbstractAsyncContextManager[UpstreamSocket]:
        self.attempts.append(trio.current_time())
        self.on_attempt()
        if self.refuse:
            raise OSError(f"{url}: connection refused")
        return open_memory_websocket(self._accept)

    async def _accept(self, request: WebSocketRequest) -> None:
        self._send.send_nowait(await request.accept())

    async def accepted(self) -> WebSocketConnection:
        return await self._receive.receive()


async def receive_json(ws: WebSocketConnection) -> dict[str, Any]:
    return json.loads(await ws.get_message())  # type: ignore[no-any-return]


async def send_json(ws: WebSocketConnection, message: dict[str, Any]) -> None:
    await ws.send_message(json.dumps(message))


def market(status: str, odds: tuple[float, ...] = (), result: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"status": status}
    if odds:
        body["outcomes"] = {str(i): o for i, o in enumerate(odds, 1)}
    if result:
        body["result"] = {str(i): r for i, r in enumerate(result.split(","), 1)}
    return body


def snapshot(request_id: int, **events: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A snapshot message: ``snapshot(1, m1={"1": market(...)})`` for event sr:match:1."""
    return {
        "type": "snapshot",
        "requestId": request_id,
        "events": [
            {"eventId": f"sr:match:{name[1:]}", "status": "live", "markets": markets}
            for name, markets in events.items()
        ],
    }


class Recorder:
    """Every update the engine publishes, with the virtual time it was published at."""

    def __init__(self, core: Core) -> None:
        self.updates: list[tuple[float, Update]] = []
        self._changed = trio.Event()
        core.engine.add_listener(self._on_update)

    def _on_update(self, update: Update) -> None:
        self.updates.append((trio.current_time(), update))
        self._changed.set()
        self._changed = trio.Event()

    async def more_than(self, seen: int) -> None:
        """Until more than ``seen`` updates have been published."""
        while len(self.updates) <= seen:
            await self._changed.wait()

    def between(self, start: float, end: float) -> list[Update]:
        return [u for t, u in self.updates if start <= t < end]

    def at(self, when: float) -> list[Update]:
        return [u for t, u in self.updates if t == when]


def statuses(update: Update) -> dict[str, str]:
    """market id -> status an update sets."""
    return {m: body["status"] for m, body in update.data["markets"].items()}


def feed_info(system: ActorSystem, path: str = FEED) -> dict[str, Any]:
    """The feed's describe(), as the actor tree shows it."""

    def find(node: dict[str, Any]) -> dict[str, Any] | None:
        if node["path"] == path:
            return node
        for child in node.get("children", []):
            found = find(child)
            if found is not None:
                return found
        return None

    node = find(system.tree())
    assert node is not None, f"no actor at {path}"
    return node  # type: ignore[no-any-return]


def info(system: ActorSystem, path: str = FEED) -> dict[str, Any]:
    return feed_info(system, path)["info"]  # type: ignore[no-any-return]


async def start_feed(
    core: Core,
    connect: Callable[[str], AbstractAsyncContextManager[UpstreamSocket]],
    *,
    url: str = "ws://upstream.test/feed",
    **options: Any,
) -> Ledger:
    """Start one UpstreamFeed under the core's ``feeds`` supervisor, ``feeds/up1``; returns its ledger."""
    ledger = Ledger()
    sink = HubSink(core.hub)

    def make() -> UpstreamFeed:
        return UpstreamFeed(url, sink, connect=connect, ledger=ledger, **options)

    await core.system.spawn(ChildSpec("up1", make), under="feeds")
    return ledger


async def event_state(core: Core, event_id: str) -> dict[str, Any]:
    return (await core.engine.snapshot(event_topic(event_id))).state


async def engine_events(core: Core) -> dict[str, dict[str, Any]]:
    """Every event topic's state, by event id."""
    return {
        topic.removeprefix("event:"): (await core.engine.snapshot(topic)).state
        for topic in core.engine.topics()
        if topic.startswith("event:")
    }


async def wait_for_state(core: Core, recorder: Recorder, state: str, path: str = FEED) -> None:
    """Until the feed is in ``state``, for states it reaches by publishing something."""
    while True:
        seen = len(recorder.updates)
        if info(core.system, path).get("state") == state:
            return
        await recorder.more_than(seen)
