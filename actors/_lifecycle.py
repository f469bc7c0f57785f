"""How one incarnation of an actor lives and ends: start, run, classify the exit, clean up."""

from __future__ import annotations

import enum
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

import trio

from ._actor import ActorRef, ActorState, Cell, _nothing

__all__ = ["Exit", "ExitReason", "current_actor_path", "live"]

# The path of the actor whose task is running ("/" for the root), set by ``live`` in the
# actor's own task; tasks the actor starts inherit it (Trio copies the context into them).
_current_actor: ContextVar[str | None] = ContextVar("actors.current_actor", default=None)


def current_actor_path() -> str | None:
    """The path of the actor whose task calls this ("/" for the root), or None outside actors.

    Every task an actor starts (its own nursery, and calls it makes) sees the actor's path,
    so a log line can say which actor it came from.
    """
    return _current_actor.get()


class ExitReason(enum.Enum):
    """Why an incarnation ended."""

    NORMAL = "normal"  # run() returned by itself
    SHUTDOWN = "shutdown"  # stopped on request, gracefully or by cancellation
    CRASH = "crash"  # run() raised


@dataclass(frozen=True, slots=True)
class Exit:
    """How an incarnation ended: the reason, and the exception for a crash."""

    reason: ExitReason
    error: Exception | None = None


#: The two exits without an error, shared (an actor's frame holds one for its whole life).
NORMAL_EXIT = Exit(ExitReason.NORMAL)
SHUTDOWN_EXIT = Exit(ExitReason.SHUTDOWN)


async def live(
    cell: Cell,
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[ActorRef] = trio.TASK_STATUS_IGNORED,
) -> Exit:
    """Run ``cell``'s actor inside ``scope`` until it ends, and say how it ended.

    A failure before the actor has started is raised (the starter gets it); after that an
    exception is a crash and is returned. Either way the cell is unregistered, monitors are
    told, pending asks are failed and ``cell.done`` is set before this returns.
    """
    registry = cell.system.registry
    registry.register(cell)
    # Held by the cell alone, until called: this frame lasts the actor's life, the closure not.
    cell.ready = _announcer(cell, task_status)
    # The task is the actor's own (see _run_child), or for an adopted child the asker's for
    # the actor's life: either way the actor's path while it lives, the task's before and after.
    token = _current_actor.set(cell.path or "/")
    try:
        cell.system.faults.attach(cell)
        result = NORMAL_EXIT
        try:
            with scope:
                await cell.actor.on_start()
                if cell.state is ActorState.STARTING:
                    cell.state = ActorState.RUNNING
                if not cell.actor.defer_started:
                    cell.ready()
                await cell.actor.run()
        except Exception as exc:
            if cell.ready is not _nothing:  # not announced: a failure to start
                _end(cell, Exit(ExitReason.CRASH, exc))
                raise
            result = Exit(ExitReason.CRASH, exc)
        except BaseException:
            _end(cell, SHUTDOWN_EXIT)
            raise
        else:
            if scope.cancelled_caught or cell.stop_requested.is_set():
                result = SHUTDOWN_EXIT
            elif cell.ready is not _nothing:
                error = RuntimeError(f"{cell.path or '/'} returned before it started")
                _end(cell, Exit(ExitReason.CRASH, error))
                raise error
        _end(cell, result)
        return result
    finally:
        _current_actor.reset(token)


def _announcer(cell: Cell, task_status: trio.TaskStatus[ActorRef]) -> Callable[[], None]:
    """What ``cell.ready`` is until the actor has started: it tells the starter, once."""

    def ready() -> None:
        cell.ready = _nothing  # announced
        task_status.started(cell.ref)

    return ready


def _end(cell: Cell, result: Exit) -> None:
    cell.state = ActorState.STOPPED
    cell.close_mailbox()
    cell.system.faults.detach(cell)
    try:
        cell.fail_pending(result.error or f"{cell.path or '/'} stopped ({result.reason.value})")
        cell.system.registry.unregister(cell, result)
    finally:
        cell.done.set()  # whoever waits for this actor to end must never hang
        if cell.on_end is not None:
            cell.on_end(result)
