"""The in-memory engine: one process, state and history in dicts and deques.

Theory of operation: Trio switches tasks only at checkpoints, so the code between two
checkpoints is atomic. Every async method of `MemoryEngine` checkpoints once, first, and then
does all its work without yielding. For `publish` this means that assigning the seq, appending to
the history, applying the patch and calling the listeners happen as one step: concurrent
publishers to one topic are ordered by seq and listeners see their updates in that order, and a
publisher cancelled at the checkpoint has published nothing. For reads it means the answer is
still current when the caller resumes.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice

import trio

from rt.engine._base import (
    Engine,
    GapListener,
    Listener,
    StatusListener,
    UpdateListeners,
    check_publish_item,
)
from rt.mergepatch import apply, apply_in_place
from rt.model import HistoryGone, Json, Snapshot, Update, UpdateKind

__all__ = ["MemoryEngine"]


def _wall_ms() -> int:
    return int(time.time() * 1000)


class _Topic:
    __slots__ = ("history", "seq", "state", "ts")

    def __init__(self, history_size: int) -> None:
        self.seq = 0
        self.ts = 0
        self.state: dict[str, Json] = {}
        self.history: deque[Update] = deque(maxlen=history_size)


class MemoryEngine(UpdateListeners, Engine):
    """An `Engine` that keeps everything in this process; nothing survives it.

    ``history_size`` is how many updates each topic keeps for `updates`. ``wall_ms`` gives the
    ``ts`` stamped on updates (milliseconds since the Unix epoch). ``epoch`` defaults to a fresh
    random string, so that positions saved against another instance (before a restart) are
    recognised as meaningless.
    """

    shared = False

    def __init__(
        self,
        *,
        history_size: int = 1000,
        wall_ms: Callable[[], int] = _wall_ms,
        epoch: str | None = None,
    ) -> None:
        if history_size < 1:
            raise ValueError(f"history_size must be at least 1, got {history_size}")
        self._history_size = history_size
        self._wall_ms = wall_ms
        self._epoch = secrets.token_hex(4) if epoch is None else epoch
        self._topics: dict[str, _Topic] = {}
        self._listeners: list[Listener] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<MemoryEngine epoch={self._epoch} topics={len(self._topics)}>"

    @property
    def epoch(self) -> str:
        """The epoch of every topic of this engine."""
        return self._epoch

    async def publish(self, topic: str, data: Json, *, kind: UpdateKind = "patch") -> Update:
        await self._checkpoint()
        check_publish_item(topic, data, kind)
        return self._publish_now(topic, data, kind)

    async def publish_many(self, items: Sequence[tuple[str, Json, UpdateKind]]) -> list[Update]:
        await self._checkpoint()
        for topic, data, kind in items:
            check_publish_item(topic, data, kind)
        return [self._publish_now(topic, data, kind) for topic, data, kind in items]

    def _publish_now(self, topic: str, data: Json, kind: UpdateKind) -> Update:
        # No checkpoint from here to the return: see the module docstring.
        t = self._topics.get(topic)
        if t is None:
            t = self._topics[topic] = _Topic(self._history_size)
        t.seq += 1
        t.ts = self._wall_ms()
        update = Update(topic=topic, epoch=self._epoch, seq=t.seq, ts=t.ts, kind=kind, data=data)
        t.history.append(update)
        if kind == "patch":
            apply_in_place(t.state, data)
        for listener in tuple(self._listeners):
            listener(update)
        return update

    async def snapshot(self, topic: str) -> Snapshot:
        await self._checkpoint()
        t = self._topics.get(topic)
        if t is None:
            return Snapshot(topic=topic, epoch=self._epoch, seq=0, ts=0, state={})
        state: dict[str, Json] = apply(t.state, {})  # applying {} makes a deep copy
        return Snapshot(topic=topic, epoch=self._epoch, seq=t.seq, ts=t.ts, state=state)

    async def updates(self, topic: str, *, since_seq: int, limit: int) -> list[Update]:
        await self._checkpoint()
        if since_seq < 0:
            raise ValueError(f"since_seq must be 0 or more, got {since_seq}")
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, got {limit}")
        t = self._topics.get(topic)
        if t is None or since_seq >= t.seq:
            return []
        first_seq = t.history[0].seq  # never empty once published: maxlen >= 1
        if since_seq + 1 < first_seq:
            raise HistoryGone(topic, since_seq, first_seq)
        start = since_seq + 1 - first_seq
        return list(islice(t.history, start, start + limit))

    def topics(self) -> list[str]:
        return sorted(self._topics)

    def position(self, topic: str) -> tuple[str, int]:
        t = self._topics.get(topic)
        return self._epoch, 0 if t is None else t.seq

    async def watch(self, topic: str) -> None:
        await trio.lowlevel.checkpoint()  # every update of this process reaches the listeners

    def unwatch(self, topic: str) -> None:
        pass

    @property
    def available(self) -> bool:
        return True  # nothing to lose touch with

    def add_gap_listener(self, listener: GapListener) -> None:
        pass  # never misses an update

    def add_status_listener(self, listener: StatusListener) -> None:
        pass  # always available

    async def aclose(self) -> None:
        self._closed = True
        await trio.lowlevel.checkpoint()

    async def _checkpoint(self) -> None:
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError(f"{self!r} is closed")
