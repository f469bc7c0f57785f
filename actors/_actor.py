"""Actors, their refs, and request/reply.

An actor is an object with a mailbox and one ``run()`` coroutine. The runtime binds it to a
*cell* (its live incarnation: path, mailbox, state, start time) before ``run()`` starts; a
restart makes a new actor object in a new cell, so state never leaks across a crash. Other
code holds only an ``ActorRef``: a cheap handle that sends to that one incarnation, like an
Erlang pid. To reach whichever incarnation is current, look the path up in the registry.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from ._errors import AskFailed, AskTimeout, MailboxClosed, MailboxFull
from ._flag import Flag
from ._mailbox import Mailbox, Overflow

if TYPE_CHECKING:
    from ._system import ActorSystem

__all__ = ["Actor", "ActorRef", "ActorState", "Request"]

logger = logging.getLogger(__name__)


class ActorState(enum.Enum):
    """Where one incarnation is in its life (``restarting`` appears only in the tree)."""

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Request:
    """A message sent with ``ask``: the body and where its reply goes."""

    __slots__ = ("_error", "_replied", "_value", "body")

    def __init__(self, body: Any) -> None:
        self.body = body
        self._replied = trio.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    @property
    def answered(self) -> bool:
        return self._replied.is_set()

    def reply(self, value: Any) -> None:
        if not self._replied.is_set():
            self._value = value
            self._replied.set()

    def fail(self, error: BaseException) -> None:
        if not self._replied.is_set():
            self._error = error
            self._replied.set()


class ActorRef:
    """A handle on one running incarnation of an actor."""

    __slots__ = ("_cell",)

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    @property
    def path(self) -> str:
        return self._cell.path

    @property
    def name(self) -> str:
        return self._cell.name

    @property
    def kind(self) -> str:
        return self._cell.actor.kind

    @property
    def alive(self) -> bool:
        return self._cell.state is not ActorState.STOPPED

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.path or '/'} {self._cell.state.value}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._cell is self._cell

    def __hash__(self) -> int:
        return id(self._cell)

    def tell_control(self, message: Any) -> None:
        """Deliver a control notice even past the mailbox's capacity, never waiting.

        Only for notices bounded by other means (one per child exit, one per topic until it
        is handled): a flood sent this way would defeat the mailbox's bound. Dropped silently
        once the actor is stopping.
        """
        self._cell.mailbox.put_control(message)

    def tell_nowait(self, message: Any) -> bool:
        """Send without waiting; False if the mailbox policy dropped it.

        Raises MailboxFull (block or fail policy at capacity) or MailboxClosed.
        """
        return self._cell.mailbox.put_nowait(message)

    async def tell(self, message: Any) -> bool:
        """Send, waiting for room when the mailbox policy is block."""
        return await self._cell.mailbox.put(message)

    async def ask(self, message: Any, *, timeout_s: float = 5.0) -> Any:
        """Send ``message`` and wait for the actor's reply.

        Raises AskTimeout naming the actor when no reply comes within ``timeout_s``, and
        AskFailed when the actor crashed or stopped before replying, or when its mailbox
        policy discarded the request (then ``__cause__`` is a MailboxFull). Under the fail
        policy a full mailbox raises MailboxFull, as ``tell`` does.
        """
        request = Request(message)
        path = self._cell.path or "/"
        what = type(message).__name__
        try:
            with trio.fail_after(timeout_s):
                await self._cell.mailbox.put(request)
                await request._replied.wait()
        except trio.TooSlowError:
            raise AskTimeout(f"ask {what} to {path} got no reply within {timeout_s:g} s") from None
        except MailboxClosed as exc:
            raise AskFailed(f"ask {what} to {path}: the actor is stopping") from exc
        if request._error is not None:
            raise AskFailed(f"ask {what} to {path} failed") from request._error
        return request._value


class Actor:
    """Base class: set the class attributes, then override ``receive`` or ``run``.

    ``receive(message)`` handles one message; for an ``ask`` its return value is the reply.
    ``run()`` is the actor's whole life and by default feeds every message to ``receive``; an
    actor that needs several tasks overrides it and opens its own nursery. ``run()`` returns
    when the mailbox is closed by a graceful stop; an exception out of it is a crash.

    A told message that carries its own way to answer (a callback) may define ``lost()``:
    it is called when the message will never be handled, or its handling failed (the actor
    crashed on it or ended with it in the mailbox, or the overflow policy threw it away), as
    an ask fails then. ``lost()`` must not block; once answered, it should do nothing.
    """

    kind: ClassVar[str] = "actor"
    mailbox_capacity: ClassVar[int] = 128
    overflow: ClassVar[Overflow] = Overflow.BLOCK
    #: When True the actor counts as started only once it calls ``self.started()`` from
    #: ``run()`` (a supervisor does, after its children have started), not after on_start.
    defer_started: ClassVar[bool] = False

    # Bound by the runtime before on_start().
    _cell: Cell

    @property
    def ref(self) -> ActorRef:
        return self._cell.ref

    @property
    def path(self) -> str:
        return self._cell.path

    @property
    def name(self) -> str:
        return self._cell.name

    @property
    def mailbox(self) -> Mailbox:
        return self._cell.mailbox

    @property
    def system(self) -> ActorSystem:
        return self._cell.system

    @property
    def stop_requested(self) -> Flag:
        """Set when a graceful stop is asked for (the mailbox is closed at the same time)."""
        return self._cell.stop_requested

    def conflate_key(self, message: Any) -> Hashable:
        """The key of a message under the conflate policy (override to use that policy)."""
        raise NotImplementedError(f"{type(self).__name__} uses conflate but has no conflate_key")

    def started(self) -> None:
        """Tell the parent this actor is ready (only needed with ``defer_started``)."""
        self._cell.ready()

    def on_stop_requested(self) -> None:
        """Called once, synchronously, when a graceful stop is asked for (the mailbox closes
        at the same time). For an actor whose ``run()`` waits on something other than its
        mailbox, so that it can wind down without a task of its own watching
        ``stop_requested``. It runs in the task that asked for the stop: it must not block,
        and an exception from it is logged and ignored."""

    async def on_start(self) -> None:
        """Prepare before the actor counts as started (bind a socket, load state)."""

    async def run(self) -> None:
        async for message in self.mailbox:
            await self.dispatch(message)

    async def dispatch(self, message: Any) -> None:
        """Hand one message to ``receive``, answering it when it came with ``ask``."""
        if type(message) is Request:
            try:
                result = await self.receive(message.body)
            except Exception as exc:
                message.fail(exc)
                raise
            except BaseException:
                # Cancelled belongs to this task; the asker only learns that we stopped.
                message.fail(MailboxClosed(f"{self.path or '/'} stopped while handling it"))
                raise
            message.reply(result)
        else:
            try:
                await self.receive(message)
            except BaseException:
                tell_lost(message)
                raise

    async def receive(self, message: Any) -> Any:
        raise TypeError(f"{self.path or '/'} ({self.kind}) cannot handle {message!r}")

    def describe(self) -> dict[str, Any]:
        """Extra fields for the tree snapshot (override to show an actor's own state)."""
        return {}

    async def fault_point(self, point: str) -> bool:
        """A named hook where armed faults act (besides every message). Free when unarmed.

        May raise InjectedFault (crash), sleep (delay) or wait until disarmed (stall); returns
        True when an armed drop fault says to skip the operation, else False.
        """
        faults = self._cell.system.faults
        if faults.armed:
            return await faults.hit(self._cell, point)
        return False


class Cell:
    """The runtime's record of one incarnation of an actor."""

    __slots__ = (
        "_mailbox",
        "actor",
        "done",
        "name",
        "on_end",
        "path",
        "ready",
        "ref",
        "started_at",
        "state",
        "stop_requested",
        "system",
    )

    def __init__(self, actor: Actor, *, name: str, path: str, system: ActorSystem) -> None:
        self.actor = actor
        self.name = name
        self.path = path
        self.system = system
        Mailbox.check(actor.mailbox_capacity, actor.overflow, self._key())
        self._mailbox: Mailbox | None = None
        self.state = ActorState.STARTING
        self.started_at = trio.current_time()
        self.stop_requested = Flag()
        self.done = Flag()
        self.ready: Callable[[], None] = _nothing
        #: Told how the incarnation ended (an ``Exit``), last thing: an adopted child's
        #: supervisor hears of it so, having no task of its own in that child's life.
        self.on_end: Callable[[Any], None] | None = None
        self.ref = ActorRef(self)
        actor._cell = self

    @property
    def mailbox(self) -> Mailbox:
        """Made when first needed: an actor that serves a socket (rt's connections) is never
        sent a message, and a mailbox costs ~300 bytes per connection."""
        mailbox = self._mailbox
        if mailbox is None:
            actor = self.actor
            mailbox = self._mailbox = Mailbox(
                actor.mailbox_capacity, actor.overflow, key=self._key(), on_discard=self._discarded
            )
            if self.stop_requested.is_set() or self.state is ActorState.STOPPED:
                mailbox.close()  # asked for once stopping (a late tell): refuses, as it would
        return mailbox

    def close_mailbox(self) -> None:
        """The actor is stopping or has ended: its mailbox refuses what comes (one never
        made is made closed, should anybody ask for it)."""
        if self._mailbox is not None:
            self._mailbox.close()

    def _key(self) -> Callable[[Any], Hashable] | None:
        actor = self.actor
        return actor.conflate_key if actor.overflow is Overflow.CONFLATE else None

    def _discarded(self, message: Any) -> None:
        # An ask thrown away by the overflow policy fails now rather than at its timeout.
        if type(message) is Request:
            policy = self.mailbox.overflow.value
            message.fail(MailboxFull(f"{self.path or '/'} discarded it (policy {policy})"))
        else:
            tell_lost(message)

    def request_stop(self) -> None:
        if self.state in (ActorState.STARTING, ActorState.RUNNING):
            self.state = ActorState.STOPPING
        if self.stop_requested.is_set():
            return
        self.stop_requested.set()
        self.close_mailbox()
        try:
            self.actor.on_stop_requested()
        except Exception:
            logger.exception("%s: on_stop_requested failed", self.path or "/")

    def uptime_s(self) -> float:
        if self.state is ActorState.STOPPED:
            return 0.0
        return max(0.0, trio.current_time() - self.started_at)

    def fail_pending(self, reason: BaseException | str) -> None:
        """Answer every ask left in the mailbox of an actor that has ended."""
        if self._mailbox is None:
            return  # never sent anything
        error = reason if isinstance(reason, BaseException) else MailboxClosed(reason)
        for message in self._mailbox.drain():
            if type(message) is Request:
                message.fail(error)
            else:
                tell_lost(message)


def tell_lost(message: Any) -> None:
    """Call the message's ``lost()``, if it has one (see Actor)."""
    lost = getattr(message, "lost", None)
    if lost is not None:
        lost()


def _nothing() -> None:
    pass
