"""Unique paths to refs, and monitors told when an actor ends."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._actor import ActorRef, Cell
from ._errors import MailboxClosed, MailboxFull, NameTaken

if TYPE_CHECKING:
    from ._lifecycle import Exit

__all__ = ["Down", "Monitor", "Registry"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Down:
    """Sent to a monitor when the watched actor ends.

    ``reason`` is "normal", "shutdown", "crash", or "noproc" when nothing ran at that path.
    """

    path: str
    reason: str
    error: Exception | None = None


Notify = Callable[[Down], object] | ActorRef


class Monitor:
    """A watch on one path; ``cancel()`` stops it. It fires at most once."""

    __slots__ = ("_notify", "_registry", "active", "path")

    def __init__(self, registry: Registry, path: str, notify: Notify) -> None:
        self._registry = registry
        self.path = path
        self._notify = notify
        self.active = True

    def cancel(self) -> None:
        if self.active:
            self.active = False
            watchers = self._registry._monitors.get(self.path)
            if watchers is not None and self in watchers:
                watchers.remove(self)
                if not watchers:
                    del self._registry._monitors[self.path]

    def _fire(self, down: Down) -> None:
        if not self.active:
            return
        self.active = False
        if isinstance(self._notify, ActorRef):
            try:
                self._notify.tell_nowait(down)
            except (MailboxFull, MailboxClosed):
                pass  # the watcher is gone or drowning; a monitor never blocks an exit
        else:
            self._notify(down)


class Registry:
    """Every live actor by path. Paths are unique while their actor lives."""

    def __init__(self) -> None:
        self._cells: dict[str, Cell] = {}
        self._monitors: dict[str, list[Monitor]] = {}

    def __len__(self) -> int:
        return len(self._cells)

    def __contains__(self, path: object) -> bool:
        return path in self._cells

    def lookup(self, path: str) -> ActorRef | None:
        cell = self._cells.get(path)
        return cell.ref if cell is not None else None

    def paths(self) -> list[str]:
        return sorted(self._cells)

    def cells(self) -> list[Cell]:
        return list(self._cells.values())

    def monitor(self, path: str, notify: Notify) -> Monitor:
        """Be told (once) when the actor at ``path`` ends: ``notify`` gets a Down.

        ``notify`` is a callable or an ActorRef (the Down is sent with ``tell_nowait``; if
        the watcher's mailbox refuses it, it is lost). If no actor lives at ``path``, the Down
        with reason "noproc" is delivered at once, before this returns. A callable runs in
        the ending actor's task, synchronously: it must not block, and an exception from it is
        logged and ignored, since the actor that ended is not at fault.
        """
        watch = Monitor(self, path, notify)
        if path not in self._cells:
            watch._fire(Down(path, "noproc"))
        else:
            self._monitors.setdefault(path, []).append(watch)
        return watch

    def register(self, cell: Cell) -> None:
        if cell.path in self._cells:
            raise NameTaken(f"an actor is already running at {cell.path or '/'}")
        self._cells[cell.path] = cell

    def unregister(self, cell: Cell, result: Exit) -> None:
        if self._cells.get(cell.path) is cell:
            del self._cells[cell.path]
        down = Down(cell.path, result.reason.value, result.error)
        for watch in self._monitors.pop(cell.path, ()):
            try:
                watch._fire(down)
            except Exception:
                logger.exception("a monitor of %s failed on its Down", cell.path or "/")
