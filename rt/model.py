"""Canonical data that flows through rt, whatever the dialect.

These are plain frozen dataclasses, not pydantic models: an Update is created once per publish
and read by every room and connection on the hot path, where attribute access on a slotted
dataclass is several times cheaper. Pydantic validates what comes in from outside (WebSocket
commands, HTTP bodies) and stops at that edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

#: JSON as Python: dict, list, str, int, float, bool or None.
Json = Any

#: "patch": ``data`` is an RFC 7396 merge patch applied to the topic's state.
#: "event": ``data`` is a message that leaves the state unchanged (a trade, a settlement).
UpdateKind = Literal["patch", "event"]


@dataclass(frozen=True, slots=True)
class Update:
    """One published update: position (epoch, seq) in its topic, and what changed."""

    topic: str
    epoch: str
    seq: int
    ts: int  # wall-clock milliseconds since the Unix epoch, taken when the engine accepted it
    kind: UpdateKind
    data: Json


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A topic's whole state at one position. seq 0 and {} for a topic never published."""

    topic: str
    epoch: str
    seq: int
    ts: int
    state: dict[str, Json]


class HistoryGone(LookupError):
    """The updates asked for are older than the history the engine still holds."""

    def __init__(self, topic: str, since_seq: int, first_seq: int) -> None:
        super().__init__(
            f"{topic}: updates after seq {since_seq} are no longer held; "
            f"history starts at seq {first_seq}"
        )
        self.topic = topic
        self.since_seq = since_seq
        self.first_seq = first_seq
