"""The predictions dialect's delivery contract, on random plans against the real core.

Three clients of random tiers subscribe, resubscribe and unsubscribe with random filters
while random events are published (every event type, three matches, events without a
match). Each client must receive exactly the events its subscriptions at the time of the
publish take (the tier and the subscription type allow the event's type, and the filters
pass it), each once, in the order published: nothing lost, nothing twice, nothing it did not
ask for, whichever of its topics (a match's, or every match's) an event came through.

With ``slow``, the first client reads nothing between its subscription changes, over a
stream that buffers nothing, with a tiny outbox: it falls behind, and its backlogs are
replaced by data_refresh events. It must still get nothing it did not ask for, nothing twice,
in order, and every event it misses must be stood for by a data_refresh that comes after the
last event it got before it, or have been still queued for a subscription it then changed
(an unsubscribe stops a topic's stream at once, queue included, as in every dialect).
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rt.dialects.predictions import DIALECT
from rt.dialects.predictions.events import (
    PUBLISHABLE,
    SUBSCRIPTION_TYPES,
    check_event,
    subscription_type_of,
)
from rt.dialects.predictions.interest import Subscription, parse_filters
from rt.dialects.predictions.publisher import EventPublisher
from tests.rt.harness import open_core, receive, send

MS = 1_761_733_800_000
CLIENTS = 3

match_ids = st.sampled_from([1, 2, 3])
client_filters = st.fixed_dictionaries(
    {},
    optional={
        "match_ids": st.lists(match_ids, min_size=1, max_size=3, unique=True),
        "leagues": st.just(["英超"]),
        "min_confidence": st.sampled_from([0.5, 0.8]),
        "event_types": st.lists(st.sampled_from(PUBLISHABLE), min_size=1, max_size=4),
    },
)
# Most subscriptions filter little, or nothing: a plan must deliver something to check.
loose_filters = st.one_of(st.just({}), st.just({}), client_filters)
subscribe = st.tuples(
    st.just("subscribe"),
    st.integers(0, CLIENTS - 1),
    st.sampled_from(SUBSCRIPTION_TYPES),
    loose_filters,
)
unsubscribe = st.tuples(
    st.just("unsubscribe"), st.integers(0, CLIENTS - 1), st.sampled_from(SUBSCRIPTION_TYPES)
)
event_data = st.fixed_dictionaries(
    {"match_id": match_ids, "confidence": st.sampled_from([0.6, 0.9])},
    optional={"league": st.sampled_from(["英超", "西甲"])},
) | st.fixed_dictionaries({}, optional={"match_id": match_ids, "league": st.just("英超")})
publish = st.tuples(st.just("publish"), st.sampled_from(PUBLISHABLE), event_data)
first_subscriptions = st.lists(subscribe, min_size=CLIENTS, max_size=2 * CLIENTS)
later = st.lists(st.one_of(subscribe, unsubscribe, *[publish] * 6), min_size=10, max_size=60)
plans = st.tuples(first_subscriptions, later).map(lambda t: t[0] + t[1])
tiers = st.lists(
    st.sampled_from(["free", "premium", "premium"]), min_size=CLIENTS, max_size=CLIENTS
)


def wanted(subs: dict[str, Subscription], tier: str, event_type: str, data: Any) -> bool:
    return any(
        event_type in s.event_types(tier) and s.filters.passes(event_type, data)
        for s in subs.values()
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans, client_tiers=tiers)
def test_every_client_gets_exactly_what_its_subscriptions_take(
    plan: list[tuple[Any, ...]], client_tiers: list[str]
) -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    trio.run(run_plan, plan, client_tiers, False, clock=clock)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans, client_tiers=tiers)
def test_a_client_that_falls_behind_is_refreshed_never_misled(
    plan: list[tuple[Any, ...]], client_tiers: list[str]
) -> None:
    # The slow client takes nearly everything, so that it has plenty to fall behind on.
    everything = [("subscribe", 0, kind, {}) for kind in SUBSCRIPTION_TYPES]
    clock = trio.testing.MockClock(autojump_threshold=0)
    trio.run(run_plan, everything + plan, ["premium", *client_tiers[1:]], True, clock=clock)


#: A client that falls behind at once: tiny queues, and no time limit to be closed by.
SLOW = {
    "outbox_capacity": 2,
    "outbox_high_water": 1,
    "write_deadline_s": 1e6,
    "idle_timeout_s": 1e6,
    "ping_interval_s": 1e6,
}


async def run_plan(plan: list[tuple[Any, ...]], client_tiers: list[str], slow: bool) -> None:
    async with open_core(**SLOW) as core, AsyncExitStack() as stack:
        publisher = EventPublisher.for_server(core.server)
        clients = [
            await stack.enter_async_context(
                core.connect(dialect=DIALECT, tier=t, lockstep=slow and i == 0, memory=True)
            )
            for i, t in enumerate(client_tiers)
        ]
        subs: list[dict[str, Subscription]] = [{} for _ in clients]
        expected: list[list[Any]] = [[] for _ in clients]
        received: list[list[Any]] = [[] for _ in clients]
        #: The slow client's expected events (indexes) that may be lost with a subscription
        #: it changed while they were still queued; and how many it had read at most.
        droppable: set[int] = set()
        read = 0
        paths: list[tuple[str, Any]] = []  # the topic each of them comes through

        async def until(i: int, event_type: str) -> dict[str, Any]:
            """Read client i up to its next ``event_type``; the events before it are kept."""
            while True:
                message = await receive(clients[i])
                if message["event_type"] == event_type:
                    return message
                received[i].append(message)

        for i in range(CLIENTS):
            await until(i, "connection_status")
        for step in plan:
            if step[0] == "publish":
                _, event_type, data = step
                event, _ = check_event({"event_type": event_type, "data": data}, ms=MS)
                await publisher.publish(event)
                for i, tier in enumerate(client_tiers):
                    if wanted(subs[i], tier, event_type, data):
                        expected[i].append(event)
                        if i == 0:
                            paths.append(path_of(subs[0], event_type, data))
                # Everything in memory: once all tasks wait, every event is on its way.
                await trio.testing.wait_all_tasks_blocked()
                continue
            i, kind = step[1], step[2]
            if slow and i == 0:
                if step[0] == "unsubscribe" or kind in subs[0]:
                    # What it has not read yet of a topic it leaves goes with the topic.
                    droppable.update(range(read, len(expected[0])))
                read = len(expected[0])
            if step[0] == "subscribe":
                data = {"subscription_type": kind, "filters": step[3]}
                await send(clients[i], {"type": "subscribe", "data": data})
                await until(i, "user_subscription_changed")
                subs[i][kind] = Subscription(kind, parse_filters(step[3]))
            else:
                await send(clients[i], {"type": "unsubscribe", "data": {"subscription_type": kind}})
                await until(i, "user_subscription_changed")
                subs[i].pop(kind, None)
        for i in range(CLIENTS):
            await send(clients[i], {"type": "heartbeat"})
            await until(i, "heartbeat")
            if slow and i == 0:
                check_refreshed(received[i], list(zip(expected[i], paths, strict=True)), droppable)
                continue
            assert received[i] == expected[i], json.dumps(
                {"tier": client_tiers[i], "got": received[i], "expected": expected[i]},
                ensure_ascii=False,
            )
        assert core.stats.slow_closes == 0


def path_of(subs: dict[str, Subscription], event_type: str, data: Any) -> tuple[str, Any]:
    """The topic an event reaches a connection through (docs/protocol/predictions.md)."""
    kind = subscription_type_of(event_type)
    if kind is None:  # data_refresh
        every = any(s.every_match for s in subs.values())
        return ("all", "data_refresh") if every else ("match", data.get("match_id"))
    return ("all", kind) if subs[kind].every_match else ("match", data.get("match_id"))


def is_resync(message: Any) -> bool:
    """The server's data_refresh standing for dropped events (not a producer's)."""
    return bool(message["event_type"] == "data_refresh" and "reason" in message["data"])


def resync_path(message: Any) -> tuple[str, Any]:
    data = message["data"]
    if "match_id" in data:
        return ("match", data["match_id"])
    return ("all", data["subscription_type"])


def check_refreshed(
    received: list[Any], expected: list[tuple[Any, tuple[str, Any]]], droppable: set[int]
) -> None:
    """``received`` is the expected events in order, none twice, none extra, with some left
    out: each either ``droppable``, or stood for by a data_refresh of its topic received
    between the events of that topic around it."""
    events = [event for event, _ in expected]
    got_at: dict[int, int] = {}  # index in expected -> index in received
    position = 0
    for index, message in enumerate(received):
        if is_resync(message):
            assert message["data"]["reason"] == "resync", message
            continue
        assert message in events[position:], ("not expected here", message, received, events)
        found = events.index(message, position)
        got_at[found] = index
        position = found + 1
    for k, (event, path) in enumerate(expected):
        if k in got_at or k in droppable:
            continue
        before = [got_at[j] for j in got_at if j < k and expected[j][1] == path]
        after = [got_at[j] for j in got_at if j > k and expected[j][1] == path]
        window = received[max(before, default=-1) + 1 : min(after, default=len(received))]
        assert any(is_resync(m) and resync_path(m) == path for m in window), (
            "missed without a data_refresh",
            event,
            path,
            received,
        )
