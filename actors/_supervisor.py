"""OTP-style supervisors on Trio nurseries.

Theory of operation. A supervisor is an actor whose ``run()`` owns a nursery; each child runs
in a task of that nursery inside its own cancel scope (see ``_lifecycle.live``). When a child
ends, its task posts a control notice to the supervisor's mailbox, and the supervisor, in its
one loop, decides: drop the child (temporary, or transient that ended normally) or restart it
according to the strategy. Restarts are counted in a sliding window (intensity/period); one
more than ``max_restarts`` within ``period_s`` makes the supervisor stop its children and
raise SupervisorGaveUp, which its own parent sees as a crash of this supervisor. Children
start in order and stop in reverse order; stopping is graceful (close the mailbox, wait up
to the child's shutdown timeout), then cancels. All decisions happen in the supervisor's own
task, so its state is never touched concurrently.

A temporary child may also run in the task of whoever asked for it (``AdoptChild``, used by
``ActorSystem.run_here``): the actor that serves one socket runs in the task that holds the
socket, instead of in a task of its own. It is a child like the others (in the tree, stopped
with its siblings, its crash logged here) except that its task is not in this nursery, so
the supervisor cancels its scope when it ends, however it ends.

The restart backoff never blocks the supervisor: a timer task posts a notice when it has
passed, and the supervisor restarts the group then. Meanwhile it goes on answering requests
(a StartChild for another child, a WhichChildren), so one child's crashes never make asks
for its siblings time out. A StartChild for a name that is waiting to restart fails with
NameTaken: that child is coming back.

A child that fails to start again during a restart counts as another crash of that child, so
the intensity bounds the retries. A bad request (StartChild with a name in use, StopChild of
an unknown name, a new child whose start fails) fails the request, not the supervisor. A
supervisor that is stopping restarts nothing. Its own failure is raised outside its nursery,
so the parent sees the SupervisorGaveUp itself, not an ExceptionGroup around it.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, ClassVar, cast

import tenacity
import trio

from ._actor import Actor, ActorRef, ActorState, Cell, Request
from ._errors import NameTaken, NoSuchChild, SupervisorGaveUp
from ._lifecycle import Exit, ExitReason, live

__all__ = [
    "AdoptChild",
    "ChildSpec",
    "Restart",
    "StartChild",
    "StopChild",
    "Strategy",
    "Supervisor",
    "WhichChildren",
]

logger = logging.getLogger(__name__)

#: A tenacity wait strategy: called with a retry state, returns seconds.
Backoff = Callable[[tenacity.RetryCallState], float]


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them ends and is to be restarted."""

    ONE_FOR_ONE = "one_for_one"  # restart only the child that ended
    ONE_FOR_ALL = "one_for_all"  # stop the others, restart all
    REST_FOR_ONE = "rest_for_one"  # stop and restart the children started after it, and it


class Restart(enum.Enum):
    """Which ends of a child make its supervisor restart it."""

    PERMANENT = "permanent"  # always restarted
    TRANSIENT = "transient"  # restarted only after a crash
    TEMPORARY = "temporary"  # never restarted


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to make, restart and stop one child. ``factory`` makes a fresh actor each time."""

    name: str
    factory: Callable[[], Actor]
    restart: Restart = Restart.PERMANENT
    shutdown_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"a child name must be non-empty and without '/', got {self.name!r}")


@dataclass(frozen=True, slots=True)
class StartChild:
    """Ask a supervisor to start a child; the reply is its ref."""

    spec: ChildSpec


@dataclass(frozen=True, slots=True)
class AdoptChild:
    """Ask a supervisor to take on a temporary child that the asker will run in its own task;
    the reply is the coroutine function to await, which runs the child until it ends."""

    spec: ChildSpec


@dataclass(frozen=True)
class StopChild:
    """Ask a supervisor to stop a child gracefully and forget it; the reply is None."""

    name: str


@dataclass(frozen=True)
class WhichChildren:
    """Ask a supervisor for its children: a list of (name, ref or None while restarting)."""


@dataclass(frozen=True)
class _ChildEnded:
    child: _Child
    cell: Cell
    exit: Exit


@dataclass(frozen=True)
class _RestartDue:
    """The backoff before restarting ``group`` has passed (posted by a timer task)."""

    group: list[_Child]


def _made_once() -> Actor:
    raise RuntimeError("a temporary child that ran in its asker's task is never made again")


class _Child:
    """The supervisor's slot for one child, which outlives the child's incarnations."""

    __slots__ = (
        "adopted",
        "cell",
        "last_error",
        "restarting",
        "restarts",
        "scope",
        "spec",
        "stopping",
    )

    def __init__(self, spec: ChildSpec, *, adopted: bool = False) -> None:
        self.spec = spec
        self.adopted = adopted  # runs in the task of whoever asked for it
        self.cell: Cell | None = None
        self.scope = trio.CancelScope()
        self.restarts = 0
        self.last_error: str | None = None
        self.restarting = False
        self.stopping = False

    @property
    def alive(self) -> bool:
        return self.cell is not None and self.cell.state is not ActorState.STOPPED


def _default_backoff() -> Backoff:
    return cast(Backoff, tenacity.wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.05))


class Supervisor(Actor):
    """Starts, watches and restarts its children. Supervisors nest."""

    kind: ClassVar[str] = "supervisor"
    mailbox_capacity: ClassVar[int] = 1024
    defer_started: ClassVar[bool] = True

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        period_s: float = 5.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.period_s = period_s
        self.backoff = backoff or _default_backoff()
        self._initial = list(children)
        # By name, in start order: connections come and go by the thousand, so finding,
        # adding and removing a child must not walk all of them.
        self._children: dict[str, _Child] = {}
        self._restart_times: deque[float] = deque()
        self._nursery: trio.Nursery | None = None

    # -- life ------------------------------------------------------------------------

    async def run(self) -> None:
        failure: Exception | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    for spec in self._initial:
                        await self._add(spec)
                    self.started()
                    async for message in self.mailbox:
                        if type(message) is _ChildEnded:
                            await self._child_ended(message)
                        elif type(message) is _RestartDue:
                            await self._restart(message.group)
                        else:
                            await self.dispatch(message)
                except Exception as exc:
                    # Raised after the nursery, so that it is not wrapped in an ExceptionGroup.
                    failure = exc
                await self._stop_many(reversed(self._children.values()))
                nursery.cancel_scope.cancel()  # restart timers still waiting, if any
        finally:
            # Adopted children run outside the nursery: whatever ends this supervisor (even
            # a cancellation that skipped the graceful stop above) ends them too.
            for child in self._children.values():
                if child.adopted:
                    child.scope.cancel()
        if failure is not None:
            raise failure

    async def dispatch(self, message: Any) -> None:
        body = message.body if type(message) is Request else message
        if not isinstance(body, (StartChild, AdoptChild, StopChild, WhichChildren)):
            await super().dispatch(message)
            return
        try:
            result = await self.receive(body)
        except Exception as exc:
            # The asker's mistake, or the new child's failure to start: not this supervisor's.
            if type(message) is Request:
                message.fail(exc)
            else:
                logger.warning("%s: %r failed: %r", self.path or "/", body, exc)
            return
        if type(message) is Request:
            message.reply(result)

    async def receive(self, message: Any) -> Any:
        if isinstance(message, StartChild):
            return await self._add(message.spec)
        if isinstance(message, AdoptChild):
            return self._adopt(message.spec)
        if isinstance(message, StopChild):
            child = self._find(message.name)
            await self._stop(child)
            self._forget(child)
            return None
        if isinstance(message, WhichChildren):
            return [
                (c.spec.name, c.cell.ref if c.cell and c.alive else None)
                for c in self._children.values()
            ]
        return await super().receive(message)

    # -- starting and stopping children -------------------------------------------------

    def _find(self, name: str) -> _Child:
        child = self._children.get(name)
        if child is not None:
            return child
        raise NoSuchChild(f"{self.path or '/'} has no child named {name!r}")

    def _check_free(self, name: str) -> None:
        if name in self._children:
            raise NameTaken(f"{self.path or '/'} already has a child named {name!r}")

    async def _add(self, spec: ChildSpec) -> ActorRef:
        self._check_free(spec.name)
        child = _Child(spec)
        ref = await self._start(child)
        self._children[spec.name] = child
        return ref

    def _adopt(self, spec: ChildSpec) -> Callable[[], Awaitable[object]]:
        if spec.restart is not Restart.TEMPORARY:
            raise ValueError(
                f"{spec.name!r}: only a temporary child can run in its asker's task "
                f"(its restart is {spec.restart.value})"
            )
        self._check_free(spec.name)
        child = _Child(spec, adopted=True)
        cell = self._new_cell(child)
        # Never made again (temporary): let the factory, and all its closure holds, go.
        child.spec = replace(spec, factory=_made_once)
        self._children[spec.name] = child
        # The asker awaits ``live`` itself (no frame of this supervisor's on its stack for the
        # child's life); a failure to start, or the asker's cancellation, is raised to it.
        cell.on_end = partial(self._adopted_ended, child, cell)
        return partial(live, cell, child.scope)

    def _has(self, child: _Child) -> bool:
        return self._children.get(child.spec.name) is child

    def _forget(self, child: _Child) -> None:
        if self._has(child):
            del self._children[child.spec.name]

    def _new_cell(self, child: _Child) -> Cell:
        path = f"{self.path}/{child.spec.name}" if self.path else child.spec.name
        cell = Cell(child.spec.factory(), name=child.spec.name, path=path, system=self.system)
        child.cell = cell
        child.scope = trio.CancelScope()
        child.restarting = False
        return cell

    async def _start(self, child: _Child) -> ActorRef:
        assert self._nursery is not None
        cell = self._new_cell(child)
        return cast(ActorRef, await self._nursery.start(self._run_child, child, cell))

    async def _run_child(
        self, child: _Child, cell: Cell, *, task_status: trio.TaskStatus[ActorRef]
    ) -> None:
        result = await live(cell, child.scope, task_status=task_status)
        if not child.stopping:
            # A control notice: bounded by the number of children, so it may pass capacity.
            self.mailbox.put_control(_ChildEnded(child, cell, result))

    def _adopted_ended(self, child: _Child, cell: Cell, result: Exit) -> None:
        """An adopted child ended (in its asker's task): forget it, as for any child."""
        if not child.stopping:
            self.mailbox.put_control(_ChildEnded(child, cell, result))

    async def _stop(self, child: _Child) -> None:
        """Stop gracefully, then cancel after the child's shutdown timeout."""
        cell = child.cell
        if cell is None or cell.done.is_set():
            return
        child.stopping = True
        try:
            cell.request_stop()
            with trio.move_on_after(child.spec.shutdown_timeout_s):
                await cell.done.wait()
            if not cell.done.is_set():
                child.scope.cancel()
                await cell.done.wait()
        finally:
            child.stopping = False

    async def _stop_many(self, children: Iterable[_Child]) -> None:
        for child in list(children):
            await self._stop(child)

    # -- deciding what a child's end means ------------------------------------------------

    async def _child_ended(self, notice: _ChildEnded) -> None:
        child, result = notice.child, notice.exit
        if child.cell is not notice.cell or not self._has(child):
            return  # an incarnation we already replaced or removed
        if result.error is not None:
            child.last_error = f"{type(result.error).__name__}: {result.error}"
            logger.warning(
                "%s crashed: %s", notice.cell.path, child.last_error, exc_info=result.error
            )
        if self.stop_requested.is_set():
            return  # stopping: restart nothing; run() stops whatever is left
        if not self._wants_restart(child, result):
            self._forget(child)
            return
        now = trio.current_time()
        while self._restart_times and self._restart_times[0] <= now - self.period_s:
            self._restart_times.popleft()
        if len(self._restart_times) >= self.max_restarts:
            await self._stop_many(reversed(self._children.values()))
            raise SupervisorGaveUp(
                f"{self.path or '/'}: more than {self.max_restarts} restarts within "
                f"{self.period_s:g} s; last: {child.spec.name} ({result.reason.value})"
            ) from result.error
        self._restart_times.append(now)
        group = self._restart_group(child)
        siblings = [c for c in group if c is not child]
        await self._stop_many(reversed(siblings))
        for sibling in siblings:  # as in OTP, a temporary sibling stopped here is not restarted
            if sibling.spec.restart is Restart.TEMPORARY:
                self._forget(sibling)
        group = [c for c in group if self._has(c)]
        for member in group:
            member.restarting = True
        delay_s = self.restart_delay_s(len(self._restart_times))
        if delay_s <= 0:
            await self._restart(group)
            return
        # The backoff runs in a timer task, so that this loop goes on serving requests.
        assert self._nursery is not None
        self._nursery.start_soon(self._restart_after, group, delay_s)

    async def _restart_after(self, group: list[_Child], delay_s: float) -> None:
        """Post ``_RestartDue`` after the backoff, unless this supervisor stops first."""
        with trio.move_on_after(delay_s):
            await self.stop_requested.wait()
        if not self.stop_requested.is_set():
            # A control notice: one per restart decided, bounded by the intensity.
            self.mailbox.put_control(_RestartDue(group))

    async def _restart(self, group: list[_Child]) -> None:
        if self.stop_requested.is_set():
            return
        for member in group:
            if not self._has(member) or not member.restarting or member.alive:
                continue  # stopped and removed meanwhile, or restarted by a later decision
            member.restarts += 1
            try:
                await self._start(member)
            except Exception as exc:
                # Failing to start again is another crash of that child: decided like one,
                # so the intensity bounds the retries. Members after it start with it.
                assert member.cell is not None
                failed = Exit(ExitReason.CRASH, exc)
                self.mailbox.put_control(_ChildEnded(member, member.cell, failed))
                return

    @staticmethod
    def _wants_restart(child: _Child, result: Exit) -> bool:
        if child.spec.restart is Restart.PERMANENT:
            return True
        if child.spec.restart is Restart.TRANSIENT:
            return result.reason is ExitReason.CRASH
        return False

    def _restart_group(self, child: _Child) -> list[_Child]:
        if self.strategy is Strategy.ONE_FOR_ONE:
            return [child]
        children = list(self._children.values())
        if self.strategy is Strategy.ONE_FOR_ALL:
            return children
        return children[children.index(child) :]

    def restart_delay_s(self, attempt: int) -> float:
        """The delay before restart number ``attempt`` (1-based) in the current window."""
        state = tenacity.RetryCallState(cast(Any, None), None, (), {})
        state.attempt_number = attempt
        return float(self.backoff(state))

    # -- introspection ----------------------------------------------------------------

    def child_slots(self) -> list[tuple[str, str, Cell | None, int, str | None, bool]]:
        """(name, path, live cell or None, restarts, last error, restarting) per child."""
        out = []
        for c in self._children.values():
            path = f"{self.path}/{c.spec.name}" if self.path else c.spec.name
            cell = c.cell if c.alive else None
            out.append((c.spec.name, path, cell, c.restarts, c.last_error, c.restarting))
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.value,
            "max_restarts": self.max_restarts,
            "period_s": self.period_s,
        }
