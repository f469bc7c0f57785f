"""Deterministic fault injection, keyed by actor and hook point.

A fault is armed on one actor (by path or name) or on every actor of a kind, at a hook point:
"message" (each message an actor takes from its mailbox) or any name an actor passes to
``fault_point()`` (a connection's "write", a feed's "upstream"). Counting is per actor path,
so a crash fires once per actor even across its restarts, and "crash market:1001 on its 3rd
message" is ``arm("crash", actor="market:1001", after=2)``.

Nothing is paid while nothing is armed: mailboxes only get a receive hook while some armed
fault matches them, and ``fault_point`` checks one attribute.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import Any

import trio

from ._actor import Cell, Request, tell_lost
from ._errors import InjectedFault
from ._mailbox import DROP

__all__ = ["Fault", "FaultAction", "FaultPlan"]


class FaultAction(enum.Enum):
    """What an armed fault does when it fires."""

    CRASH = "crash"  # raise InjectedFault (once per actor unless count says otherwise)
    DELAY = "delay"  # sleep delay_s at each hit
    DROP = "drop"  # discard the message (at the "message" point) or skip the operation
    STALL = "stall"  # block until the fault is disarmed


@dataclass(eq=False)
class Fault:
    """One armed fault (made by ``FaultPlan.arm``); ``hits`` counts per actor path."""

    id: int
    action: FaultAction
    actor: str | None = None
    kind: str | None = None
    point: str = "message"
    count: int | None = None
    after: int = 0
    delay_s: float = 0.0
    hits: dict[str, int] = field(default_factory=dict)
    fired: int = 0
    released: trio.Event = field(default_factory=trio.Event)

    def matches(self, cell: Cell) -> bool:
        if self.actor is not None:
            return self.actor in (cell.path, cell.name)
        return cell.actor.kind == self.kind

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action.value,
            "actor": self.actor,
            "kind": self.kind,
            "point": self.point,
            "count": self.count,
            "after": self.after,
            "delay_s": self.delay_s,
            "fired": self.fired,
        }


class FaultPlan:
    """The faults armed in one actor system."""

    def __init__(self) -> None:
        self._faults: dict[int, Fault] = {}
        self._ids = itertools.count(1)
        self._cells: set[Cell] = set()  # live cells, to hook and unhook their mailboxes

    @property
    def armed(self) -> bool:
        return bool(self._faults)

    def arm(
        self,
        action: FaultAction | str,
        *,
        actor: str | None = None,
        kind: str | None = None,
        point: str = "message",
        count: int | None = None,
        after: int = 0,
        delay_s: float = 0.0,
    ) -> Fault:
        """Arm a fault on ``actor`` (a path or a name) or on every actor of ``kind``.

        ``count`` bounds how many times it fires per actor (crash defaults to 1, drop to 1;
        delay and stall default to every hit); ``after`` lets that many hits pass first.
        """
        action = FaultAction(action)
        if (actor is None) == (kind is None):
            raise ValueError("arm a fault on exactly one of actor= or kind=")
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if after < 0 or delay_s < 0:
            raise ValueError("after and delay_s must not be negative")
        if count is None and action in (FaultAction.CRASH, FaultAction.DROP):
            count = 1
        fault = Fault(next(self._ids), action, actor, kind, point, count, after, delay_s)
        self._faults[fault.id] = fault
        for cell in self._cells:
            self._rehook(cell)
        return fault

    def disarm(self, fault_id: int | None = None) -> int:
        """Disarm one fault, or all of them; returns how many were disarmed."""
        ids = list(self._faults) if fault_id is None else [fault_id]
        removed = 0
        for fid in ids:
            fault = self._faults.pop(fid, None)
            if fault is not None:
                fault.released.set()
                removed += 1
        for cell in self._cells:
            self._rehook(cell)
        return removed

    def list(self) -> list[dict[str, Any]]:
        return [fault.describe() for fault in self._faults.values()]

    # -- the runtime's side -------------------------------------------------------------

    def attach(self, cell: Cell) -> None:
        self._cells.add(cell)
        if self._faults:
            self._rehook(cell)

    def detach(self, cell: Cell) -> None:
        self._cells.discard(cell)

    def _rehook(self, cell: Cell) -> None:
        wanted = any(f.point == "message" and f.matches(cell) for f in self._faults.values())
        if not wanted:
            cell.mailbox.receive_hook = None
            return

        async def on_receive(message: Any) -> Any:
            try:
                dropped = await self.hit(cell, "message")
            except InjectedFault as exc:
                if type(message) is Request:
                    message.fail(exc)  # the asker learns of the crash, not of a timeout
                else:
                    tell_lost(message)
                raise
            if dropped:
                tell_lost(message)
                return DROP
            return message

        cell.mailbox.receive_hook = on_receive

    async def hit(self, cell: Cell, point: str) -> bool:
        """Apply every armed fault matching ``cell`` at ``point``; True means drop."""
        drop = False
        for fault in list(self._faults.values()):
            if fault.point != point or not fault.matches(cell):
                continue
            seen = fault.hits.get(cell.path, 0) + 1
            fault.hits[cell.path] = seen
            nth = seen - fault.after
            if nth < 1 or (fault.count is not None and nth > fault.count):
                continue
            fault.fired += 1
            if fault.action is FaultAction.CRASH:
                raise InjectedFault(f"injected crash in {cell.path or '/'} at {point} #{seen}")
            if fault.action is FaultAction.DELAY:
                await trio.sleep(fault.delay_s)
            elif fault.action is FaultAction.DROP:
                drop = True
            else:
                await fault.released.wait()
        return drop
