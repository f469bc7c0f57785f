"""One predictions-dialect connection (seed 002): client text in, actions out (sans-IO).

Messages are ``{"type": "subscribe" | "unsubscribe" | "heartbeat" | "get_stats", "data"}``.
The first thing sent is ``connection_status``; every subscribe and unsubscribe is confirmed
with ``user_subscription_changed`` listing the connection's subscriptions (and, for each, the
event types it will deliver on the connection's tier); ``heartbeat`` is answered with a
``heartbeat`` event and ``get_stats`` with a ``stats`` event. Bad input is answered with an
``error`` event and the connection stays.

A subscription change sets the connection's Interest first, then joins the new topics (quietly:
events from now on, no snapshot) and leaves the old ones, and only then confirms: an event
published after the confirmation is one the connection receives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rt.dialects.base import (
    Action,
    Join,
    Leave,
    ProtocolError,
    ReportStats,
    Send,
    SetInterest,
    parse_message,
)
from rt.dialects.predictions.codec import encode_error, encode_event
from rt.dialects.predictions.events import (
    CONNECTION_STATUS,
    PUBLISHABLE,
    SUBSCRIPTION_TYPES,
    USER_SUBSCRIPTION_CHANGED,
    allowed_event_types,
    subscription_type_of,
)
from rt.dialects.predictions.interest import (
    Filters,
    Interests,
    InvalidFilter,
    Subscription,
    parse_filters,
)
from rt.jsontext import show
from rt.model import Json

#: What the client may send.
COMMANDS = ("subscribe", "unsubscribe", "heartbeat", "get_stats")

# Error codes (rt's shared refusals keep theirs: TOO_MANY_NEW_TOPICS, ...).
INVALID_JSON = "INVALID_JSON"
INVALID_MESSAGE = "INVALID_MESSAGE"
UNKNOWN_MESSAGE_TYPE = "UNKNOWN_MESSAGE_TYPE"
UNKNOWN_SUBSCRIPTION_TYPE = "UNKNOWN_SUBSCRIPTION_TYPE"
TOO_MANY_TOPICS = "TOO_MANY_SUBSCRIPTIONS"


class PredictionsSession:
    def __init__(
        self,
        *,
        connection_id: str,
        user_id: str | None,
        session_id: str | None,
        tier: str,
        authenticated: bool,
        interests: Interests,
        max_topics: int,
        wall_ms: Callable[[], int],
        server_stats: Callable[[], dict[str, Any]],
        heartbeat_interval_s: float,
        on_connect: Subscription | InvalidFilter | None = None,
    ) -> None:
        self.connection_id = connection_id
        self.user_id = user_id
        self.session_id = session_id
        self.tier = tier
        self.authenticated = authenticated
        self.interests = interests
        self.max_topics = max_topics
        self._wall_ms = wall_ms
        self._server_stats = server_stats
        self.heartbeat_interval_s = heartbeat_interval_s
        self._on_connect = on_connect
        #: By subscription type, in the order subscribed.
        self.subs: dict[str, Subscription] = {}
        self.topics: list[str] = []
        self.received = 0

    # -- the Session protocol ----------------------------------------------------------------

    def opened(self) -> list[Action]:
        status = {
            "status": "connected",
            "connection_id": self.connection_id,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "tier": self.tier,
            "authenticated": self.authenticated,
            "subscription_types": list(SUBSCRIPTION_TYPES),
            "event_types": [t for t in PUBLISHABLE if t in allowed_event_types(self.tier)],
            "heartbeat_interval_s": self.heartbeat_interval_s,
        }
        actions: list[Action] = [self._event(CONNECTION_STATUS, status)]
        wanted = self._on_connect
        if isinstance(wanted, InvalidFilter):
            actions.append(self._error(wanted.code, wanted.message))
        elif wanted is not None:
            try:
                actions += self._change({**self.subs, wanted.kind: wanted}, "subscribe", wanted)
            except ProtocolError as exc:
                actions.append(self._error(exc.code, exc.message))
        return actions

    def handle_text(self, text: str) -> list[Action]:
        self.received += 1
        try:
            message = parse_message(text, bad_json=INVALID_JSON, bad_message=INVALID_MESSAGE)
            kind = message["type"]
            data = message.get("data")
            if data is None:
                data = {}
            elif not isinstance(data, dict):
                raise ProtocolError(
                    INVALID_MESSAGE, f"expected data to be an object, got {show(data)}"
                )
            if kind == "subscribe":
                return self._subscribe(data)
            if kind == "unsubscribe":
                return self._unsubscribe(data)
            if kind == "heartbeat":
                return [self._event("heartbeat", {"status": "alive"})]
            if kind == "get_stats":
                return [ReportStats(self._stats)]
            raise ProtocolError(
                UNKNOWN_MESSAGE_TYPE,
                f"unknown message type {show(kind)}; valid types: {', '.join(COMMANDS)}",
            )
        except ProtocolError as exc:
            return [self._error(exc.code, exc.message)]

    def handle_binary(self) -> list[Action]:
        return [self._error(INVALID_MESSAGE, "binary frames are not supported; send JSON text")]

    def subscriptions(self) -> int:
        return len(self.subs)

    def forget(self, topic: str) -> None:
        # A limit refused one of the topics (and the client was told which): its events do
        # not come, the subscriptions stay as they are.
        if topic in self.topics:
            self.topics.remove(topic)

    def ticket_answer(self, answer: Json) -> str:
        raise TypeError("the predictions dialect has no tickets")

    # -- messages ------------------------------------------------------------------------------

    def _subscribe(self, data: dict[str, Any]) -> list[Action]:
        try:
            filters = parse_filters(data.get("filters"))
            # A client may name event types beside the filters, and leave the type out.
            if data.get("event_types") is not None:
                extra = parse_filters({"event_types": data["event_types"]}).event_types
                merged = (filters.event_types or frozenset()) | (extra or frozenset())
                filters = Filters(
                    filters.match_ids, filters.leagues, filters.min_confidence, merged or None
                )
        except InvalidFilter as exc:
            raise ProtocolError(exc.code, exc.message) from None
        kinds = self._kinds(data.get("subscription_type"), filters, "subscribe")
        wanted = {**self.subs}
        added = [Subscription(kind, filters) for kind in kinds]
        for sub in added:
            wanted.pop(sub.kind, None)  # a new subscription of a type replaces the old one
            wanted[sub.kind] = sub
        return self._change(wanted, "subscribe", *added)

    def _unsubscribe(self, data: dict[str, Any]) -> list[Action]:
        (kind,) = self._kinds(data.get("subscription_type"), None, "unsubscribe")
        wanted = {k: s for k, s in self.subs.items() if k != kind}
        removed = self.subs.get(kind) or Subscription(kind, Filters())
        return self._change(wanted, "unsubscribe", removed)

    def _kinds(self, raw: Any, filters: Filters | None, verb: str) -> list[str]:
        """The subscription types a message means: the one it names, or (to subscribe) the
        types of the event types it names."""
        if raw is None and filters is not None and filters.event_types:
            kinds = {subscription_type_of(t) for t in filters.event_types}
            return [k for k in SUBSCRIPTION_TYPES if k in kinds]
        if raw is None:
            raise ProtocolError(
                INVALID_MESSAGE,
                f"{verb}: missing data.subscription_type; one of {', '.join(SUBSCRIPTION_TYPES)}",
            )
        if raw not in SUBSCRIPTION_TYPES:
            raise ProtocolError(
                UNKNOWN_SUBSCRIPTION_TYPE,
                f"unknown subscription_type {show(raw)}; "
                f"subscription types: {', '.join(SUBSCRIPTION_TYPES)}",
            )
        return [raw]

    def _change(
        self, wanted: dict[str, Subscription], action: str, *changed: Subscription
    ) -> list[Action]:
        topics: list[str] = []
        for sub in wanted.values():
            topics += [t for t in sub.topics() if t not in topics]
        if len(topics) > self.max_topics:
            raise ProtocolError(
                TOO_MANY_TOPICS,
                f"at most {self.max_topics} topics per connection (a topic per match id, "
                f"two for a subscription to every match); these subscriptions need "
                f"{len(topics)}",
            )
        self.subs = wanted
        old, self.topics = self.topics, topics
        interest = self.interests.get(self.tier, tuple(wanted.values())) if wanted else None
        actions: list[Action] = [SetInterest(interest)]
        actions += [Join(t, quiet=True, announce=False) for t in topics if t not in old]
        actions += [Leave(t) for t in old if t not in topics]
        actions.append(
            self._event(
                USER_SUBSCRIPTION_CHANGED,
                {
                    "action": action,
                    "subscription_types": [sub.kind for sub in changed],
                    "tier": self.tier,
                    "subscriptions": [self._describe(s) for s in wanted.values()],
                },
            )
        )
        return actions

    def _describe(self, sub: Subscription) -> dict[str, Json]:
        return {
            "subscription_type": sub.kind,
            "filters": sub.filters.as_json(),
            "event_types": sub.event_types(self.tier),
            "held_back_event_types": sub.held_back(self.tier),
        }

    def _stats(self, counts: dict[str, Any]) -> str:
        connection = {
            "connection_id": self.connection_id,
            "user_id": self.user_id,
            "tier": self.tier,
            "subscriptions": [self._describe(s) for s in self.subs.values()],
            **counts,
        }
        return encode_event(
            "stats",
            {"connection": connection, "server": self._server_stats()},
            ms=self._wall_ms(),
        )

    # -- helpers -------------------------------------------------------------------------------

    def _event(self, event_type: str, data: dict[str, Json]) -> Send:
        return Send(encode_event(event_type, data, ms=self._wall_ms()))

    def _error(self, code: str, message: str) -> Send:
        return Send(encode_error(code, message, ms=self._wall_ms()), error=True)
