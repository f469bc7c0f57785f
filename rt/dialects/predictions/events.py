"""Seed 002's vocabulary: event types, subscription types, tiers, and a published event.

An event is the seed's ``RealtimeEvent``: ``{"event_type", "data", "timestamp"}`` plus
``source`` and ``correlation_id`` when given. It is stored in the engine exactly as clients
receive it, so a room encodes it once for every subscriber.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rt.auth import TIERS
from rt.jsontext import show
from rt.model import Json
from rt.topics import all_topic, match_topic

# The seed's EventType, in its order.
CONNECTION_STATUS = "connection_status"
USER_SUBSCRIPTION_CHANGED = "user_subscription_changed"
DATA_REFRESH = "data_refresh"
EVENT_TYPES = (
    CONNECTION_STATUS,
    "prediction_created",
    "prediction_updated",
    "prediction_completed",
    "match_started",
    "match_score_changed",
    "match_status_changed",
    "match_ended",
    "odds_updated",
    "odds_significant_change",
    "system_alert",
    "system_status",
    USER_SUBSCRIPTION_CHANGED,
    DATA_REFRESH,
    "analytics_updated",
)
#: What the server alone sends: a producer cannot publish these.
SERVER_ONLY = frozenset({CONNECTION_STATUS, USER_SUBSCRIPTION_CHANGED})
PUBLISHABLE = tuple(t for t in EVENT_TYPES if t not in SERVER_ONLY)

# The seed's SubscriptionType, in its order.
SUBSCRIPTION_TYPES = ("predictions", "matches", "odds", "system_alerts", "analytics")

#: Event types a free connection receives, whatever it asks for (the seed's rule).
FREE_EVENT_TYPES = frozenset({"prediction_created", "match_started"})


def subscription_type_of(event_type: str) -> str | None:
    """The subscription type an event type belongs to; None for data_refresh (every type)
    and for the server's own events."""
    if event_type.startswith("prediction_"):
        return "predictions"
    if event_type.startswith("match_"):
        return "matches"
    if event_type.startswith("odds_"):
        return "odds"
    if event_type.startswith("system_"):
        return "system_alerts"
    if event_type == "analytics_updated":
        return "analytics"
    return None


#: Each subscription type's event types (data_refresh reaches every subscription too).
EVENT_TYPES_OF = {
    kind: tuple(t for t in PUBLISHABLE if subscription_type_of(t) == kind)
    for kind in SUBSCRIPTION_TYPES
}


def allowed_event_types(tier: str) -> frozenset[str]:
    assert tier in TIERS
    return FREE_EVENT_TYPES if tier == "free" else frozenset(PUBLISHABLE)


def match_of(data: Json) -> int | None:
    """The match an event is about: ``data.match_id`` when it is an integer."""
    match_id = data.get("match_id") if isinstance(data, dict) else None
    if isinstance(match_id, int) and not isinstance(match_id, bool):
        return match_id
    return None


def topics_of(event_type: str, data: Json) -> tuple[str, ...]:
    """Where an event is published: its match's topic first (when it has a match), and the
    topic of every event of its subscription type (for clients that take every match)."""
    kind = subscription_type_of(event_type) or DATA_REFRESH
    match_id = match_of(data)
    if match_id is None:
        return (all_topic(kind),)
    return (match_topic(match_id), all_topic(kind))


def iso(ms: int) -> str:
    """``ms`` since the Unix epoch exactly as the seed's examples write times: ISO 8601 in
    UTC to the second, with a Z (``2025-10-29T10:30:00Z``)."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def realtime_event(event_type: str, data: Json, ms: int, **extra: Any) -> dict[str, Json]:
    """A RealtimeEvent as clients receive it; ``extra`` fields that are None are left out."""
    event: dict[str, Json] = {"event_type": event_type, "data": data, "timestamp": iso(ms)}
    event.update((k, v) for k, v in extra.items() if v is not None)
    return event


#: What a producer may send to POST /realtime/broadcast (``type`` is an older name of
#: ``event_type``).
BROADCAST_FIELDS = (
    "event_type",
    "type",
    "data",
    "timestamp",
    "source",
    "correlation_id",
    "idempotency_key",
)
#: The longest idempotency key, source or correlation id.
MAX_LABEL = 256


class BadEvent(ValueError):
    """A producer's event rt will not publish; the message says why."""


def check_event(body: Any, *, ms: int) -> tuple[dict[str, Json], str | None]:
    """A producer's RealtimeEvent as clients will receive it, and its idempotency key;
    BadEvent for anything else. ``ms`` stamps an event that has no ``timestamp``."""
    if not isinstance(body, dict):
        raise BadEvent(f"expected a JSON object (a RealtimeEvent), got {show(body)}")
    unknown = sorted(set(body) - set(BROADCAST_FIELDS))
    if unknown:
        raise BadEvent(
            f"unknown fields: {', '.join(unknown)}; fields: {', '.join(BROADCAST_FIELDS)}"
        )
    names = [body[k] for k in ("event_type", "type") if k in body]
    if not names:
        raise BadEvent("missing field: event_type")
    if len(set(map(show, names))) > 1:
        raise BadEvent(f"type and event_type differ: {show(names[0])} and {show(names[1])}")
    event_type = names[0]
    if event_type not in PUBLISHABLE:
        if event_type in SERVER_ONLY:
            raise BadEvent(f"{event_type} is sent by the server itself; it cannot be broadcast")
        raise BadEvent(
            f"unknown event_type {show(event_type)}; event types: {', '.join(PUBLISHABLE)}"
        )
    if "data" not in body:
        raise BadEvent("missing field: data")
    data = body["data"]
    if not isinstance(data, dict):
        raise BadEvent(f"expected data to be a JSON object, got {show(data)}")
    labels = {}
    for name in ("timestamp", "source", "correlation_id", "idempotency_key"):
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= MAX_LABEL):
            raise BadEvent(
                f"expected {name} to be a string of 1-{MAX_LABEL} characters, got {show(value)}"
            )
        labels[name] = value
    event = realtime_event(
        event_type,
        data,
        ms,
        source=labels["source"],
        correlation_id=labels["correlation_id"],
    )
    stamp = labels["timestamp"]
    if stamp is not None:
        try:
            datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            raise BadEvent(f"expected timestamp in ISO 8601, got {show(stamp)}") from None
        event["timestamp"] = stamp  # the producer's time of the event
    return event, labels["idempotency_key"]
