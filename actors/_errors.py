"""Exceptions raised by the actors runtime.

ActorError
├── MailboxFull        a full mailbox refused (policy fail, or *_nowait under block)
├── MailboxClosed      the actor is stopping or stopped and takes no more messages
├── AskTimeout         an ask got no reply in time; names the actor and the message
├── AskFailed          the actor crashed or stopped before replying (the cause is chained)
├── NameTaken          a child name that is already in use under that supervisor
├── NoSuchChild        stop_child named a child the supervisor does not have
├── InjectedFault      raised inside an actor by an armed "crash" fault
└── SupervisorGaveUp   more restarts than the intensity allows; escalates to the parent
"""

from __future__ import annotations


class ActorError(Exception):
    """Base class of every error the runtime raises."""


class MailboxFull(ActorError):
    """The mailbox is full and its policy refuses the message (the sender is at fault)."""


class MailboxClosed(ActorError):
    """The actor is stopping or stopped; the message was not delivered."""


class AskTimeout(ActorError, TimeoutError):
    """An ask got no reply within its timeout."""


class AskFailed(ActorError):
    """The actor ended (crashed or stopped) before it replied; ``__cause__`` says why."""


class NameTaken(ActorError):
    """A child with this name is already running under the supervisor."""


class NoSuchChild(ActorError, LookupError):
    """The supervisor has no child with this name."""


class InjectedFault(ActorError):
    """An armed "crash" fault fired. Never raised when nothing is armed."""


class SupervisorGaveUp(ActorError):
    """A supervisor exceeded its restart intensity and failed; its parent decides what next."""
