"""The predictions dialect (seed 002) without sockets: the seed's own example events through
the codec, filters, the exactly-once rule of its topics, a slow client's data_refresh, and
idempotency keys on the virtual clock."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from rt.auth import Claims
from rt.dialects.base import Join, Leave, Send, SessionContext, SetInterest
from rt.dialects.predictions import DIALECT
from rt.dialects.predictions.codec import CODEC
from rt.dialects.predictions.demo import DemoEvents
from rt.dialects.predictions.events import (
    PUBLISHABLE,
    SUBSCRIPTION_TYPES,
    check_event,
    iso,
    subscription_type_of,
    topics_of,
)
from rt.dialects.predictions.interest import (
    ELSEWHERE,
    HELD_BY_FILTER,
    HELD_BY_TIER,
    SENT,
    Filters,
    Interests,
    Subscription,
    parse_filters,
)
from rt.dialects.predictions.publisher import IDEMPOTENCY_WINDOW_S, EventPublisher
from rt.model import Update
from tests.rt.harness import child, open_core, receive, send
from tests.rt.harness import settings as harness_settings
from tests.rt.test_connection_timing import RawClient

SEED_002 = Path(__file__).parents[3].parent / "shared" / "seeds" / "002_03fd2fb7a028a3c2.txt"
MS = 1_761_733_800_000  # 2025-10-29T10:30:00Z


def seed_json_blocks() -> list[Any]:
    blocks = re.findall(r"```json\n(.*?)```", SEED_002.read_text(), re.S)
    return [json.loads(block) for block in blocks]


def seed_events() -> list[dict[str, Any]]:
    return [b for b in seed_json_blocks() if "event_type" in b]


def test_the_seeds_example_events_are_published_and_sent_exactly_as_written() -> None:
    events = seed_events()
    assert [e["event_type"] for e in events] == [
        "prediction_created",
        "match_started",
        "match_score_changed",
        "system_alert",
    ]
    for example in events:
        event, key = check_event(example, ms=MS)
        assert key is None
        assert event == example  # its own timestamp kept, data untouched
        update = Update("match:456", "e", 1, MS, "event", event)
        assert json.loads(CODEC.encode_update(update)) == example
    without_time = {k: v for k, v in events[0].items() if k != "timestamp"}
    event, _ = check_event({**without_time, "source": "ml"}, ms=MS)
    assert event["timestamp"] == "2025-10-29T10:30:00Z"  # as the seed writes it
    assert event["source"] == "ml"


def test_event_types_map_to_subscription_types_and_topics() -> None:
    assert {t: subscription_type_of(t) for t in PUBLISHABLE} == {
        "prediction_created": "predictions",
        "prediction_updated": "predictions",
        "prediction_completed": "predictions",
        "match_started": "matches",
        "match_score_changed": "matches",
        "match_status_changed": "matches",
        "match_ended": "matches",
        "odds_updated": "odds",
        "odds_significant_change": "odds",
        "system_alert": "system_alerts",
        "system_status": "system_alerts",
        "data_refresh": None,
        "analytics_updated": "analytics",
    }
    assert topics_of("odds_updated", {"match_id": 7}) == ("match:7", "all:odds")
    assert topics_of("data_refresh", {}) == ("all:data_refresh",)
    assert topics_of("prediction_created", {"match_id": "7"}) == ("all:predictions",)
    assert iso(MS + 999) == "2025-10-29T10:30:00Z"


def test_the_seeds_message_format_subscribes() -> None:
    (message,) = [b for b in seed_json_blocks() if "type" in b]
    message["type"] = "subscribe"
    message["data"]["subscription_type"] = "predictions"
    session = DIALECT.new_session(context())
    session.opened()
    actions = session.handle_text(json.dumps(message))
    assert isinstance(actions[0], SetInterest)
    assert [a.topic for a in actions if isinstance(a, Join)] == ["match:1", "match:2", "match:3"]
    assert all(isinstance(a, Join) and a.quiet for a in actions[1:4])
    changed = json.loads(actions[-1].text)  # type: ignore[union-attr]
    (sub,) = changed["data"]["subscriptions"]
    assert sub["filters"] == {
        "match_ids": [1, 2, 3],
        "leagues": ["英超", "西甲"],
        "min_confidence": 0.7,
    }
    # Unsubscribing leaves its topics.
    actions = session.handle_text(
        '{"type":"unsubscribe","data":{"subscription_type":"predictions"}}'
    )
    assert actions[0] == SetInterest(None)
    assert [a.topic for a in actions if isinstance(a, Leave)] == ["match:1", "match:2", "match:3"]


def context(tier: str = "free", *, authenticated: bool = False) -> SessionContext:
    claims = Claims(user_id="u", scope_markets=None, expires_at_ms=0, tier=tier)
    return SessionContext(claims, "c1", harness_settings(), authenticated=authenticated)


def test_equal_filters_share_one_interest() -> None:
    interests = Interests(lambda tier: [0, 0, 0, 0])
    a = Subscription("predictions", parse_filters({"match_ids": [2, 1], "leagues": []}))
    b = Subscription("predictions", parse_filters({"match_ids": [1, 2]}))
    c = Subscription("odds", Filters())
    assert interests.get("free", (a, c)) is interests.get("free", (c, b))
    assert interests.get("premium", (a, c)) is not interests.get("free", (a, c))


# -- the exactly-once rule: whatever the subscriptions, an event reaches a connection through
# -- one of its topics at most, and through one exactly when a subscription takes it.

MATCH_IDS = st.sampled_from([1, 2, 3])
filters = st.builds(
    Filters,
    match_ids=st.none() | st.frozensets(MATCH_IDS, min_size=1),
    leagues=st.none() | st.just(frozenset({"英超"})),
    min_confidence=st.none() | st.sampled_from([0.5, 0.8]),
    event_types=st.none() | st.frozensets(st.sampled_from(PUBLISHABLE), min_size=1),
)
subscriptions = st.dictionaries(st.sampled_from(SUBSCRIPTION_TYPES), filters, max_size=5).map(
    lambda d: tuple(Subscription(kind, f) for kind, f in d.items())
)
event_data = st.fixed_dictionaries(
    {},
    optional={
        "match_id": MATCH_IDS,
        "league": st.sampled_from(["英超", "西甲"]),
        "confidence": st.sampled_from([0.6, 0.9]),
    },
)


@settings(max_examples=400, deadline=None)
@given(
    subs=subscriptions,
    tier=st.sampled_from(["free", "premium"]),
    event_type=st.sampled_from(PUBLISHABLE),
    data=event_data,
)
def test_an_event_reaches_a_connection_once_or_not_at_all(
    subs: tuple[Subscription, ...], tier: str, event_type: str, data: dict[str, Any]
) -> None:
    interest = Interests(lambda tier: [0, 0, 0, 0]).get(tier, subs)
    joined = {t for s in subs for t in s.topics()}
    event = {"event_type": event_type, "data": data}
    verdicts = [
        interest.verdict(Update(topic, "e", 1, MS, "event", event))
        for topic in topics_of(event_type, data)
        if topic in joined
    ]
    # A connection receives an event when one of its subscriptions takes it: the tier and
    # the subscription's type allow its type, and the filters pass it.
    wanted = any(
        event_type in s.event_types(tier) and s.filters.passes(event_type, data) for s in subs
    )
    assert verdicts.count(SENT) == (1 if wanted else 0), verdicts


def test_the_verdicts_say_why() -> None:
    every = Subscription("predictions", parse_filters({"min_confidence": 0.7}))
    counts = [0, 0, 0, 0]
    free = Interests(lambda tier: counts).get("free", (every,))

    def verdict(topic: str, event_type: str, **data: Any) -> int:
        event = {"event_type": event_type, "data": data}
        return free.verdict(Update(topic, "e", 1, MS, "event", event))

    assert verdict("all:predictions", "prediction_created", confidence=0.9) == SENT
    assert verdict("all:predictions", "prediction_created", confidence=0.6) == HELD_BY_FILTER
    assert verdict("all:predictions", "prediction_updated", confidence=0.9) == HELD_BY_TIER
    assert verdict("match:1", "prediction_created", match_id=1, confidence=0.9) == ELSEWHERE


# -- a slow client: events are never dropped silently --------------------------------------


async def test_a_client_that_fell_behind_gets_a_data_refresh_in_place_of_dropped_events(
    autojump_clock: Any,
) -> None:
    overrides = {
        "outbox_capacity": 8,
        "outbox_high_water": 4,
        "write_deadline_s": 30.0,
        "ping_interval_s": 1000.0,
        "idle_timeout_s": 1000.0,
    }
    async with open_core(**overrides) as core, trio.open_nursery() as nursery:
        client_stream, server_stream = trio.testing.lockstep_stream_pair()
        await core.serve_stream(nursery, server_stream, dialect=DIALECT)
        slow = RawClient(client_stream)
        await slow.handshake()
        assert (await slow.next_message())["event_type"] == "connection_status"
        await slow.send({"type": "subscribe", "data": {"subscription_type": "matches"}})
        assert (await slow.next_message())["event_type"] == "user_subscription_changed"
        publisher = EventPublisher.for_server(core.server)
        for minute in range(1, 31):  # the client reads nothing meanwhile
            event, _ = check_event(
                {"event_type": "match_started", "data": {"match_id": 9, "minute": minute}}, ms=MS
            )
            await publisher.publish(event)
        seen: list[dict[str, Any]] = []
        # Up to the 30th event on all:matches, or a data_refresh that stands for it.
        while not seen or 30 not in (seen[-1]["data"].get("minute"), seen[-1]["data"].get("seq")):
            seen.append(await slow.next_message())
        refreshes = [m for m in seen if m["event_type"] == "data_refresh"]
        assert refreshes and all(
            m["data"]["reason"] == "resync" and m["data"]["subscription_type"] == "matches"
            for m in refreshes
        )
        # Whatever came, came in order, each once.
        minutes = [m["data"]["minute"] for m in seen if m["event_type"] == "match_started"]
        assert minutes == sorted(set(minutes)) and len(minutes) < 30
        nursery.cancel_scope.cancel()


# -- idempotency keys ---------------------------------------------------------------------------


async def test_an_idempotency_key_is_remembered_for_five_minutes(autojump_clock: Any) -> None:
    async with open_core() as core:
        publisher = EventPublisher.for_server(core.server)
        body = {"event_type": "system_status", "data": {"ok": True}, "idempotency_key": "k"}
        first, repeated = await publisher.publish_body(body)
        assert (first["seq"], repeated) == (1, False)
        await trio.sleep(IDEMPOTENCY_WINDOW_S - 1)
        again, repeated = await publisher.publish_body(body)
        assert (again, repeated) == (first, True)
        await trio.sleep(2)
        later, repeated = await publisher.publish_body(body)
        assert (later["seq"], repeated) == (2, False)
        other, _ = await publisher.publish_body({**body, "idempotency_key": "k2"})
        assert other["seq"] == 3


async def test_repeats_that_arrive_together_publish_once(autojump_clock: Any) -> None:
    async with open_core() as core:
        publisher = EventPublisher.for_server(core.server)
        body = {"event_type": "system_status", "data": {}, "idempotency_key": "k"}
        answers: list[tuple[dict[str, Any], bool]] = []

        async def publish() -> None:
            answers.append(await publisher.publish_body(body))

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(publish)
        assert [a["seq"] for a, _ in answers] == [1] * 5
        assert sorted(r for _, r in answers) == [False] + [True] * 4


@pytest.mark.parametrize(
    "raw",
    [
        {"match_ids": [True]},
        {"min_confidence": 1.5},
        {"min_confidence": True},
        {"leagues": "英超"},
        {"teams": ["x"]},
        [1],
    ],
)
def test_filters_of_the_wrong_type_are_refused(raw: Any) -> None:
    session = DIALECT.new_session(context())
    session.opened()
    message = {"type": "subscribe", "data": {"subscription_type": "odds", "filters": raw}}
    (error,) = session.handle_text(json.dumps(message))
    assert isinstance(error, Send) and error.error
    assert json.loads(error.text)["data"]["code"] == "INVALID_FILTER"


# -- a room that crashes: filtered subscribers lose nothing and get nothing twice -----------


async def test_filtered_subscribers_survive_a_room_crash(autojump_clock: Any) -> None:
    async with open_core() as core, core.connect(dialect=DIALECT) as ws:
        assert (await receive(ws))["event_type"] == "connection_status"
        subscribe = {"subscription_type": "predictions", "filters": {"min_confidence": 0.7}}
        await send(ws, {"type": "subscribe", "data": subscribe})
        assert (await receive(ws))["event_type"] == "user_subscription_changed"
        publisher = EventPublisher.for_server(core.server)

        async def predict(n: int) -> None:
            data = {"prediction_id": n, "match_id": 1, "confidence": 0.5 + (n % 2) * 0.4}
            event, _ = check_event({"event_type": "prediction_created", "data": data}, ms=MS)
            await publisher.publish(event)

        for n in range(6):
            await predict(n)
        core.system.faults.arm("crash", actor="rooms/all:predictions")
        for n in range(6, 20):
            await predict(n)
        received = [(await receive(ws))["data"]["prediction_id"] for _ in range(10)]
        assert received == list(range(1, 20, 2))  # the confident ones, once each, in order
        room = child(core.system.tree(), "rooms")
        (crashed,) = [r for r in room["children"] if r["name"] == "all:predictions"]
        assert crashed["restarts"] == 1


async def test_the_demo_plays_whole_matches(autojump_clock: Any) -> None:
    async with open_core() as core:
        publisher = EventPublisher.for_server(core.server)
        demo = DemoEvents(publisher, seed=7, interval_s=0.5, wall_ms=lambda: MS)
        for _ in range(50):
            await demo.tick()  # an event for each of the six matches
        kinds: dict[str, int] = {}
        for topic in core.engine.topics():
            for update in await core.engine.updates(topic, since_seq=0, limit=1000):
                if topic.startswith("match:"):
                    event, _ = check_event(update.data, ms=MS)  # a valid RealtimeEvent
                    assert event == update.data
                    kinds[event["event_type"]] = kinds.get(event["event_type"], 0) + 1
        assert set(kinds) == {
            "match_started",
            "match_ended",
            "match_score_changed",
            "prediction_created",
            "prediction_updated",
            "odds_updated",
        }
        assert sum(kinds.values()) == 300
