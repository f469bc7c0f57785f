"""The predictions dialect's delivery contract, on random plans against the real core.

Three clients of random tiers subscribe, resubscribe and unsubscribe with random filters
while random events are published (every event type, three matches, events without a
match). Each client must receive exactly the events its subscriptions at the time of the
publish take (the tier and the subscription type allow the event's type, and the filters
pass it), each once, in the order published: nothing lost, nothing twice, nothing it did not
ask for, whichever of its topics (a match's, or every match's) an event came through.
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
from rt.dialects.predictions.events import PUBLISHABLE, SUBSCRIPTION_TYPES, check_event
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
    trio.run(run_plan, plan, client_tiers, clock=trio.testing.MockClock(autojump_threshold=0))


async def run_plan(plan: list[tuple[Any, ...]], client_tiers: list[str]) -> None:
    async with open_core(ping_interval_s=1000.0) as core, AsyncExitStack() as stack:
        publisher = EventPublisher.for_server(core.server)
        clients = [
            await stack.enter_async_context(core.connect(dialect=DIALECT, memory=True, tier=t))
            for t in client_tiers
        ]
        subs: list[dict[str, Subscription]] = [{} for _ in clients]
        expected: list[list[Any]] = [[] for _ in clients]
        received: list[list[Any]] = [[] for _ in clients]

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
                # Everything in memory: once all tasks wait, every event is on its way.
                await trio.testing.wait_all_tasks_blocked()
            elif step[0] == "subscribe":
                _, i, kind, filters = step
                data = {"subscription_type": kind, "filters": filters}
                await send(clients[i], {"type": "subscribe", "data": data})
                await until(i, "user_subscription_changed")
                subs[i][kind] = Subscription(kind, parse_filters(filters))
            else:
                _, i, kind = step
                await send(clients[i], {"type": "unsubscribe", "data": {"subscription_type": kind}})
                await until(i, "user_subscription_changed")
                subs[i].pop(kind, None)
        for i in range(CLIENTS):
            await send(clients[i], {"type": "heartbeat"})
            await until(i, "heartbeat")
            assert received[i] == expected[i], json.dumps(
                {"tier": client_tiers[i], "got": received[i], "expected": expected[i]},
                ensure_ascii=False,
            )
        assert core.stats.slow_closes == 0
