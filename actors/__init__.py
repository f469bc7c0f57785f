"""A small OTP-style actor runtime on Trio: mailboxes, supervisors, registry, faults, tree.

See docs/actors.md for the model. This package knows nothing of WebSockets or HTTP.
"""

from ._actor import Actor, ActorRef, ActorState, Request
from ._errors import (
    ActorError,
    AskFailed,
    AskTimeout,
    InjectedFault,
    MailboxClosed,
    MailboxFull,
    NameTaken,
    NoSuchChild,
    SupervisorGaveUp,
)
from ._faults import Fault, FaultAction, FaultPlan
from ._lifecycle import Exit, ExitReason, current_actor_path
from ._mailbox import Mailbox, MailboxStatistics, Overflow
from ._registry import Down, Monitor, Registry
from ._supervisor import (
    AdoptChild,
    ChildSpec,
    Restart,
    StartChild,
    StopChild,
    Strategy,
    Supervisor,
    WhichChildren,
)
from ._system import ActorSystem, open_system

__all__ = [
    "Actor",
    "ActorError",
    "ActorRef",
    "ActorState",
    "ActorSystem",
    "AdoptChild",
    "AskFailed",
    "AskTimeout",
    "ChildSpec",
    "Down",
    "Exit",
    "ExitReason",
    "Fault",
    "FaultAction",
    "FaultPlan",
    "InjectedFault",
    "Mailbox",
    "MailboxClosed",
    "MailboxFull",
    "MailboxStatistics",
    "Monitor",
    "NameTaken",
    "NoSuchChild",
    "Overflow",
    "Registry",
    "Request",
    "Restart",
    "StartChild",
    "StopChild",
    "Strategy",
    "Supervisor",
    "SupervisorGaveUp",
    "WhichChildren",
    "current_actor_path",
    "open_system",
]
