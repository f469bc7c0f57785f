"""Subscriptions with filters, and the Interest that applies them to events (sans-IO).

A connection holds at most one subscription per subscription type. A subscription that names
``match_ids`` joins those matches' topics; one without joins ``all:<type>``, the topic of every
event of its type (and ``all:data_refresh``). So each event reaches a connection through one
topic only: the subscription of the event's type decides which (data_refresh: through
``all:data_refresh`` if any subscription takes every match, else through the match's topic).

The Interest is the room's question for each update and connection: send it, or pass over it
and why (the tier, or the filters). Connections with the same tier and subscriptions share
one Interest, so a room asks once per update per distinct filter, not once per connection.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rt.dialects.predictions.events import (
    DATA_REFRESH,
    EVENT_TYPES_OF,
    PUBLISHABLE,
    allowed_event_types,
    match_of,
    subscription_type_of,
)
from rt.jsontext import show
from rt.model import Json, Update
from rt.topics import ALL_PREFIX, all_topic, match_topic

# Interest verdicts (indexes into its counts): sent (rt/delivery/outbox.py's SEND), held back
# by the tier, held back by the filters, and for another of the connection's topics to deliver.
SENT, HELD_BY_TIER, HELD_BY_FILTER, ELSEWHERE = 0, 1, 2, 3

FILTER_NAMES = ("match_ids", "leagues", "min_confidence", "event_types")
#: The most leagues one filter may name.
MAX_LEAGUES = 64


class InvalidFilter(ValueError):
    """A subscription the client should not have sent; ``code`` is the dialect's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


INVALID_FILTER = "INVALID_FILTER"
UNKNOWN_EVENT_TYPE = "UNKNOWN_EVENT_TYPE"


@dataclass(frozen=True, slots=True)
class Filters:
    """The seed's SubscriptionFilter; None (or an empty list) means no condition."""

    match_ids: frozenset[int] | None = None
    leagues: frozenset[str] | None = None
    min_confidence: float | None = None
    event_types: frozenset[str] | None = None

    def passes(self, event_type: str, data: Json) -> bool:
        if self.event_types is not None and event_type not in self.event_types:
            return False
        if self.match_ids is not None and match_of(data) not in self.match_ids:
            return False
        if self.leagues is not None and data.get("league") not in self.leagues:
            return False
        if self.min_confidence is not None:
            confidence = data.get("confidence")
            if (
                not isinstance(confidence, int | float)
                or isinstance(confidence, bool)
                or not confidence >= self.min_confidence
            ):
                return False
        return True

    def as_json(self) -> dict[str, Json]:
        out: dict[str, Json] = {}
        if self.match_ids is not None:
            out["match_ids"] = sorted(self.match_ids)
        if self.leagues is not None:
            out["leagues"] = sorted(self.leagues)
        if self.min_confidence is not None:
            out["min_confidence"] = self.min_confidence
        if self.event_types is not None:
            out["event_types"] = [t for t in PUBLISHABLE if t in self.event_types]
        return out


@dataclass(frozen=True, slots=True)
class Subscription:
    kind: str  # one of SUBSCRIPTION_TYPES
    filters: Filters

    @property
    def every_match(self) -> bool:
        return self.filters.match_ids is None

    def topics(self) -> list[str]:
        if self.every_match:
            return [all_topic(self.kind), all_topic(DATA_REFRESH)]
        return [match_topic(m) for m in sorted(self.filters.match_ids or ())]

    def _asked(self) -> list[str]:
        """The event types this subscription takes on any tier, in the seed's order."""
        wanted = self.filters.event_types
        kinds = (*EVENT_TYPES_OF[self.kind], DATA_REFRESH)
        return [t for t in kinds if wanted is None or t in wanted]

    def event_types(self, tier: str) -> list[str]:
        """What this subscription will deliver on ``tier``, in the seed's order."""
        allowed = allowed_event_types(tier)
        return [t for t in self._asked() if t in allowed]

    def held_back(self, tier: str) -> list[str]:
        """What it asked for (or would take) that ``tier`` does not allow."""
        allowed = allowed_event_types(tier)
        return [t for t in self._asked() if t not in allowed]


# -- reading filters ------------------------------------------------------------------------


def parse_filters(raw: Any) -> Filters:
    """A client's ``filters`` object; InvalidFilter for anything else."""
    if raw is None:
        return Filters()
    if not isinstance(raw, dict):
        raise InvalidFilter(INVALID_FILTER, f"expected filters to be an object, got {show(raw)}")
    unknown = sorted(set(raw) - set(FILTER_NAMES))
    if unknown:
        raise InvalidFilter(
            INVALID_FILTER,
            f"unknown filter {', '.join(unknown)}; filters: {', '.join(FILTER_NAMES)}",
        )
    return Filters(
        match_ids=_match_ids(raw.get("match_ids")),
        leagues=_leagues(raw.get("leagues")),
        min_confidence=_confidence(raw.get("min_confidence")),
        event_types=_event_types(raw.get("event_types")),
    )


def parse_query_filters(query: Mapping[str, str]) -> Filters:
    """Filters from a query string (``match_ids=1,2,3&leagues=英超,西甲&min_confidence=0.7``):
    lists comma-separated, UTF-8 already decoded."""

    def items(name: str) -> list[str] | None:
        value = query.get(name)
        if value is None or value == "":
            return None
        return [item.strip() for item in value.split(",") if item.strip()]

    ids = items("match_ids")
    if ids is not None:
        try:
            numbers: list[Any] = [int(i) for i in ids]
        except ValueError:
            raise InvalidFilter(
                INVALID_FILTER,
                f"match_ids must be comma-separated integers, got {show(query['match_ids'])}",
            ) from None
    confidence: Any = query.get("min_confidence")
    if confidence is not None:
        try:
            confidence = float(confidence)
        except ValueError:
            raise InvalidFilter(
                INVALID_FILTER,
                f"min_confidence must be a number from 0 to 1, got {show(confidence)}",
            ) from None
    return Filters(
        match_ids=None if ids is None else _match_ids(numbers),
        leagues=_leagues(items("leagues")),
        min_confidence=_confidence(confidence),
        event_types=_event_types(items("event_types")),
    )


def _match_ids(value: Any) -> frozenset[int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in value
    ):
        raise InvalidFilter(
            INVALID_FILTER, f"match_ids must be a list of integers, got {show(value)}"
        )
    return frozenset(value) or None


def _leagues(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidFilter(INVALID_FILTER, f"leagues must be a list of strings, got {show(value)}")
    if len(value) > MAX_LEAGUES:
        raise InvalidFilter(INVALID_FILTER, f"at most {MAX_LEAGUES} leagues, got {len(value)}")
    return frozenset(value) or None


def _confidence(value: Any) -> float | None:
    if value is None:
        return None
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 <= value <= 1
    ):
        raise InvalidFilter(
            INVALID_FILTER, f"min_confidence must be a number from 0 to 1, got {show(value)}"
        )
    return float(value)


def _event_types(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidFilter(
            INVALID_FILTER, f"event_types must be a list of strings, got {show(value)}"
        )
    unknown = [v for v in value if v not in PUBLISHABLE]
    if unknown:
        raise InvalidFilter(
            UNKNOWN_EVENT_TYPE,
            f"unknown event type {show(unknown[0])}; event types: {', '.join(PUBLISHABLE)}",
        )
    return frozenset(value) or None


# -- the Interest ---------------------------------------------------------------------------


class Interest:
    """What one tier with one set of subscriptions receives (rt/delivery/outbox.py)."""

    __slots__ = ("__weakref__", "allowed", "by_kind", "counts", "every_match", "subs", "tier")

    def __init__(self, tier: str, subs: tuple[Subscription, ...], counts: list[int]) -> None:
        self.tier = tier
        self.subs = subs
        self.by_kind = {s.kind: s for s in subs}
        self.every_match = any(s.every_match for s in subs)
        self.allowed = allowed_event_types(tier)
        self.counts = counts

    def verdict(self, update: Update) -> int:
        event = update.data
        event_type = event["event_type"]
        kind = subscription_type_of(event_type)
        via_all = update.topic.startswith(ALL_PREFIX)
        # Which subscriptions this topic delivers the event for (see the module docstring).
        if kind is None:  # data_refresh
            if via_all != self.every_match:
                return ELSEWHERE
            subs = self.subs if via_all else tuple(s for s in self.subs if not s.every_match)
        else:
            sub = self.by_kind.get(kind)
            if sub is None or sub.every_match != via_all:
                return ELSEWHERE
            subs = (sub,)
        if event_type not in self.allowed:
            return HELD_BY_TIER
        data = event["data"]
        for sub in subs:
            if sub.filters.passes(event_type, data):
                return SENT
        return HELD_BY_FILTER


class Interests:
    """Interns Interests: one object per (tier, subscriptions) while connections hold it."""

    def __init__(self, counts_of: Any) -> None:
        self._counts_of = counts_of  # tier -> the server's counts for it (ConnectionStats)
        self._live: weakref.WeakValueDictionary[tuple[Any, ...], Interest] = (
            weakref.WeakValueDictionary()
        )

    def get(self, tier: str, subs: tuple[Subscription, ...]) -> Interest:
        key = (tier, frozenset(subs))
        interest = self._live.get(key)
        if interest is None:
            interest = Interest(tier, subs, self._counts_of(tier))
            self._live[key] = interest
        return interest

    def __len__(self) -> int:
        return len(self._live)
