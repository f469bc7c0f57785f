"""The actor system: a root supervisor, the registry, the fault plan, and the tree."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import trio

from ._actor import ActorRef, ActorState, Cell
from ._errors import AskFailed, NameTaken, NoSuchChild
from ._faults import FaultPlan
from ._lifecycle import ExitReason, live
from ._registry import Monitor, Notify, Registry
from ._supervisor import (
    AdoptChild,
    Backoff,
    ChildSpec,
    StartChild,
    StopChild,
    Strategy,
    Supervisor,
)

__all__ = ["ActorSystem", "open_system"]


class ActorSystem:
    """Everything that lives in one process: reach it through ``open_system``."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.faults = FaultPlan()
        self._root: Cell | None = None
        self._helpers: trio.Nursery | None = None

    @property
    def root(self) -> ActorRef:
        assert self._root is not None, "the system has not started"
        return self._root.ref

    def start_helper(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Start ``fn(*args)`` as a short task for an actor that has no nursery of its own
        (an adopted child serving a socket: its writer). The actor cancels and awaits it
        itself; ``fn`` must not raise (an error would end the whole system). Raises
        RuntimeError once the system is shutting down."""
        if self._helpers is None:
            raise RuntimeError("the actor system is not running")
        self._helpers.start_soon(fn, *args)

    def lookup(self, path: str) -> ActorRef | None:
        """The ref of whatever incarnation currently lives at ``path``."""
        return self.registry.lookup(path)

    def monitor(self, path: str, notify: Notify) -> Monitor:
        return self.registry.monitor(path, notify)

    async def spawn(self, spec: ChildSpec, *, under: str = "", timeout_s: float = 5.0) -> ActorRef:
        """Start a child under the supervisor at ``under`` (the root by default).

        Returns once the child has started. Raises NameTaken if that supervisor already has
        a child of that name, LookupError if no supervisor lives at ``under``, AskFailed
        (the child's error as ``__cause__``) if the child fails to start, and AskTimeout if
        the supervisor has not started it within ``timeout_s``.
        """
        parent = self._supervisor(under)
        try:
            return cast(ActorRef, await parent.ask(StartChild(spec), timeout_s=timeout_s))
        except AskFailed as exc:
            if isinstance(exc.__cause__, NameTaken):
                raise exc.__cause__ from None
            raise

    async def run_here(self, spec: ChildSpec, *, under: str = "", timeout_s: float = 5.0) -> None:
        """Run a temporary child under the supervisor at ``under``, in the calling task, until
        it ends.

        For an actor whose life belongs to the caller's task (the one serving a socket, in
        the task that holds the socket): it costs no task of its own, yet it is in the tree,
        stopped with its siblings, and its crash is logged by its supervisor, not raised
        here. Only ``Restart.TEMPORARY`` (nothing can restart a task that is not the
        supervisor's). Raises as ``spawn`` does when the supervisor cannot take it, and the
        actor's own error if it fails before it has started.
        """
        run = await self.adopt(spec, under=under, timeout_s=timeout_s)
        await run()

    async def adopt(
        self, spec: ChildSpec, *, under: str = "", timeout_s: float = 5.0
    ) -> Callable[[], Awaitable[object]]:
        """``run_here`` in two steps: have the supervisor take the child on, and return what
        runs it (awaited by the caller, in its task, as ``run_here`` does). A caller that
        holds the child for long awaits it itself, one frame less on its task's stack."""
        parent = self._supervisor(under)
        try:
            run = await parent.ask(AdoptChild(spec), timeout_s=timeout_s)
        except AskFailed as exc:
            if isinstance(exc.__cause__, (NameTaken, ValueError)):
                raise exc.__cause__ from None
            raise
        return cast(Callable[[], Awaitable[object]], run)

    async def stop(self, path: str, *, timeout_s: float = 30.0) -> None:
        """Stop the child at ``path`` gracefully through its supervisor; it is not restarted.

        Raises NoSuchChild if its supervisor has no such child, LookupError if no
        supervisor lives at the parent path.
        """
        parent_path, _, name = path.rpartition("/")
        parent = self._supervisor(parent_path)
        try:
            await parent.ask(StopChild(name), timeout_s=timeout_s)
        except AskFailed as exc:
            if isinstance(exc.__cause__, NoSuchChild):
                raise exc.__cause__ from None
            raise

    def _supervisor(self, path: str) -> ActorRef:
        # Checked here: a StartChild sent to a plain actor would crash it.
        ref = self.lookup(path) if path else self.root
        if ref is None or not isinstance(ref._cell.actor, Supervisor):
            raise LookupError(f"no supervisor at {path!r}")
        return ref

    def tree(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot of every actor, from the root down."""
        assert self._root is not None
        return _node(self._root, restarts=0, last_error=None)


def _node(cell: Cell, *, restarts: int, last_error: str | None) -> dict[str, Any]:
    stats = cell.mailbox.statistics()
    node: dict[str, Any] = {
        "kind": cell.actor.kind,
        "name": cell.name or "root",
        "path": cell.path or "/",
        "state": cell.state.value,
        "mailbox": {
            "depth": stats.depth,
            "capacity": stats.capacity,
            "dropped": stats.dropped,
            "processed": stats.processed,
        },
        "restarts": restarts,
        "uptime_s": round(cell.uptime_s(), 3),
        "last_error": last_error,
        "info": cell.actor.describe(),
    }
    if isinstance(cell.actor, Supervisor):
        children = []
        for name, path, child, child_restarts, error, restarting in cell.actor.child_slots():
            if child is not None and not restarting:
                children.append(_node(child, restarts=child_restarts, last_error=error))
            else:
                children.append(
                    {
                        "kind": None,
                        "name": name,
                        "path": path,
                        "state": ActorState.RESTARTING.value,
                        "mailbox": None,
                        "restarts": child_restarts,
                        "uptime_s": 0.0,
                        "last_error": error,
                        "info": {},
                    }
                )
        node["children"] = children
    return node


@asynccontextmanager
async def open_system(
    children: Sequence[ChildSpec] = (),
    *,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    max_restarts: int = 3,
    period_s: float = 5.0,
    backoff: Backoff | None = None,
    shutdown_timeout_s: float = 10.0,
) -> AsyncIterator[ActorSystem]:
    """Start a root supervisor with ``children``; stop everything on exit.

    On exit the root stops its children gracefully in reverse order, waiting at most
    ``shutdown_timeout_s`` before cancelling what is left. If the root supervisor gives up
    (its restart intensity is exceeded), the block is cancelled and SupervisorGaveUp
    propagates out of it.
    """
    system = ActorSystem()
    root = Supervisor(
        children,
        strategy=strategy,
        max_restarts=max_restarts,
        period_s=period_s,
        backoff=backoff,
    )
    cell = Cell(root, name="", path="", system=system)
    system._root = cell
    scope = trio.CancelScope()

    async def run_root(*, task_status: trio.TaskStatus[ActorRef]) -> None:
        result = await live(cell, scope, task_status=task_status)
        if result.reason is ExitReason.CRASH:
            assert result.error is not None
            raise result.error

    async with trio.open_nursery() as nursery:
        system._helpers = nursery
        await nursery.start(run_root)
        try:
            yield system
        finally:
            cell.request_stop()
            with trio.move_on_after(shutdown_timeout_s) as waited:
                waited.shield = True
                await cell.done.wait()
            if not cell.done.is_set():
                scope.cancel()
