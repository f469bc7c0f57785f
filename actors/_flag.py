"""Flag: a one-way event whose trio.Event is made only when somebody waits for it."""

from __future__ import annotations

import trio

__all__ = ["Flag"]


class Flag:
    """Set once, never cleared; ``is_set``, ``set`` and ``wait`` as on a trio.Event.

    Every actor has two (its stop request and its end), and a connection's are seldom
    waited on: a trio.Event costs ~270 bytes from the start (its set of waiting tasks), a
    Flag ~50 until the first ``wait``."""

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: trio.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if not self._set:
            self._set = True
            if self._event is not None:
                self._event.set()

    async def wait(self) -> None:
        if self._set:
            await trio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()
