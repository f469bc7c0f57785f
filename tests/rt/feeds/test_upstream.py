"""UpstreamFeed on Trio's virtual clock: backoff, grace, suspension, recovery, restarts."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection

from actors import Restart
from rt.dialects.uof import DIALECT as UOF
from rt.feeds import (
    Simulator,
    SimulatorServer,
    UpstreamFeed,
    demo_feed_specs,
    feed_specs,
)
from tests.rt.harness import open_core, receive, receive_until, send

from ._support import (
    Recorder,
    ScriptedUpstream,
    engine_events,
    event_state,
    feed_info,
    info,
    market,
    receive_json,
    send_json,
    snapshot,
    start_feed,
    statuses,
    wait_for_state,
)

ODDS = (1.95, 3.4, 4.2)
ALIVE = {"type": "alive", "ts": 1}


def first_delay_bounds(n: int) -> tuple[float, float]:
    """The default backoff before attempt n + 1: 0.5 * 2 ** (n - 1) plus up to 0.5, capped at 30."""
    base = 0.5 * 2 ** (n - 1)
    return min(base, 30.0), min(base + 0.5, 30.0)


async def connect_and_sync(upstream: ScriptedUpstream, **events: dict) -> WebSocketConnection:
    ws = await upstream.accepted()
    request = await receive_json(ws)
    assert request["type"] == "snapshot_request"
    await send_json(ws, snapshot(request["requestId"], **events))
    return ws


# -- reconnecting ---------------------------------------------------------------------------


async def test_reconnect_schedule_is_capped_jittered_exponential(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core() as core:
        upstream = ScriptedUpstream(refuse=True)
        seen: list[dict] = []
        tenth = trio.Event()

        def on_attempt() -> None:
            if len(upstream.attempts) > 1:  # the first comes while the feed is being started
                seen.append(info(core.system))
            if len(upstream.attempts) == 10:
                tenth.set()

        upstream.on_attempt = on_attempt
        start = trio.current_time()
        await start_feed(core, upstream.connect)
        await tenth.wait()
        assert upstream.attempts[0] == start  # the first attempt is immediate
        gaps = [b - a for a, b in zip(upstream.attempts, upstream.attempts[1:], strict=False)]
        for n, gap in enumerate(gaps, 1):
            low, high = first_delay_bounds(n)
            assert low - 1e-9 <= gap <= high + 1e-9, (n, gap)
            # Each attempt shows the delay that preceded it, and its number.
            assert seen[n - 1]["last_delay_s"] == pytest.approx(gap, abs=1e-9)
            assert seen[n - 1]["attempt"] == n + 1 and seen[n - 1]["state"] == "connecting"
        assert gaps[6:] == pytest.approx([30.0, 30.0, 30.0], abs=1e-9)  # capped
        state = info(core.system)
        assert state["state"] == "backoff" and state["up"] is False
        assert state["last_error"] == "ws://upstream.test/feed: connection refused"
        assert state["next_delay_s"] == 30.0 and state["next_attempt_in_s"] == 30.0


@pytest.mark.parametrize(("up_for_s", "healthy"), [(5, False), (31, True)])
async def test_the_count_starts_again_after_a_healthy_period(
    autojump_clock: trio.abc.Clock, up_for_s: int, healthy: bool
) -> None:
    async with open_core() as core:
        upstream = ScriptedUpstream(refuse=True)
        done = trio.Event()

        def on_attempt() -> None:
            upstream.refuse = len(upstream.attempts) != 4  # only the 4th is accepted
            if len(upstream.attempts) == 6:
                done.set()

        upstream.on_attempt = on_attempt
        await start_feed(core, upstream.connect)
        ws = await connect_and_sync(upstream, m1={"1": market("active", ODDS)})
        for _ in range(up_for_s):
            await trio.sleep(1)
            await send_json(ws, ALIVE)
        lost_at = trio.current_time()
        await ws.aclose()
        await done.wait()
        fifth, sixth = upstream.attempts[4:6]
        if healthy:
            assert fifth == lost_at  # at once, and the count starts again
            low, high = first_delay_bounds(1)
            assert low - 1e-9 <= sixth - fifth <= high + 1e-9
            assert info(core.system)["attempts_total"] == 6 and info(core.system)["attempt"] == 2
        else:
            low, high = first_delay_bounds(4)
            assert low - 1e-9 <= fifth - lost_at <= high + 1e-9
            assert info(core.system)["attempt"] == 6


async def test_a_bad_message_drops_the_connection(autojump_clock: trio.abc.Clock) -> None:
    async with open_core() as core:
        upstream = ScriptedUpstream()
        recorder = Recorder(core)
        await start_feed(core, upstream.connect)
        ws = await connect_and_sync(upstream, m1={"1": market("active", ODDS)})
        await wait_for_state(core, recorder, "connected")
        await ws.send_message('{"type": "odds_change", "eventId": "sr:match:1"')
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 1008
        assert closed.value.reason.reason.startswith("invalid JSON")
        second = await upstream.accepted()  # after a backoff
        assert (await receive_json(second))["type"] == "snapshot_request"
        state = info(core.system)
        assert state["last_error"].startswith("bad message: invalid JSON")
        assert (await event_state(core, "sr:match:1"))["markets"]["1"]["status"] == "suspended"


# -- grace, suspension and recovery ---------------------------------------------------------


async def test_silence_suspends_after_exactly_the_grace_and_a_snapshot_reopens(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core() as core:
        upstream = ScriptedUpstream()
        recorder = Recorder(core)
        await start_feed(core, upstream.connect, grace_s=5.0)
        ws = await connect_and_sync(
            upstream, m1={"1": market("active", ODDS), "2": market("active", (2.0, 3.0, 4.0))}
        )
        await wait_for_state(core, recorder, "connected")
        synced = trio.current_time()
        assert [statuses(u) for u in recorder.at(synced)] == [{"1": "active"}, {"2": "active"}]
        for _ in range(3):
            await trio.sleep(1)
            await send_json(ws, ALIVE)
        last_message = trio.current_time()

        await wait_for_state(core, recorder, "down")
        assert trio.current_time() == last_message + 5.0
        assert recorder.between(synced + 0.001, last_message + 5.0) == []  # not before
        suspended = recorder.at(last_message + 5.0)
        assert [statuses(u) for u in suspended] == [{"1": "suspended"}, {"2": "suspended"}]
        assert [u.data for u in suspended] == [
            {"markets": {"1": {"status": "suspended"}}},
            {"markets": {"2": {"status": "suspended"}}},
        ]
        state = info(core.system)
        assert state["markets_suspended"] == 2 and state["last_alive_age_s"] == 5.0

        # The upstream speaks again: the feed asks for a snapshot, and publishes no odds before it.
        await trio.sleep(3)
        await send_json(
            ws,
            {
                "type": "odds_change",
                "eventId": "sr:match:1",
                "marketId": "1",
                "outcomes": {"1": 1.5},
            },
        )
        request = await receive_json(ws)
        assert request == {"type": "snapshot_request", "requestId": 2}
        await send_json(
            ws,
            {
                "type": "odds_change",
                "eventId": "sr:match:1",
                "marketId": "2",
                "outcomes": {"1": 2.5},
            },
        )
        await trio.sleep(1)
        await send_json(ws, snapshot(1, m1={"1": market("active", ODDS)}))  # an old answer: ignored
        await send_json(
            ws,
            snapshot(
                2,
                m1={
                    "1": market("active", (1.5, 3.6, 4.4)),
                    "2": market("suspended", (2.0, 3.0, 4.0)),
                },
            ),
        )
        await wait_for_state(core, recorder, "connected")
        up_at = trio.current_time()
        while_down = recorder.between(last_message + 5.0 + 0.001, up_at)
        assert while_down == []  # stale odds are never shown as live
        assert [u.data for u in recorder.at(up_at)] == [
            {"markets": {"1": {"status": "active", "outcomes": {"1": 1.5, "2": 3.6, "3": 4.4}}}}
        ]
        state = await event_state(core, "sr:match:1")
        assert state["markets"] == {
            "1": {"status": "active", "outcomes": {"1": 1.5, "2": 3.6, "3": 4.4}},
            "2": {"status": "suspended", "outcomes": {"1": 2.0, "2": 3.0, "3": 4.0}},
        }
        assert info(core.system)["odds_held"] == 2 and info(core.system)["markets_suspended"] == 0


async def test_a_long_silence_drops_the_connection(autojump_clock: trio.abc.Clock) -> None:
    async with open_core() as core:
        upstream = ScriptedUpstream()
        recorder = Recorder(core)
        await start_feed(core, upstream.connect, grace_s=5.0, reconnect_after_silent_s=30.0)
        ws = await connect_and_sync(upstream, m1={"1": market("active", ODDS)})
        await wait_for_state(core, recorder, "connected")
        synced = trio.current_time()
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
        assert trio.current_time() == synced + 30.0
        await trio.testing.wait_all_tasks_blocked()
        assert info(core.system)["last_error"] == "no message for 30 s"
        assert info(core.system)["state"] == "backoff"


async def test_odds_stops_and_settlements_while_up(autojump_clock: trio.abc.Clock) -> None:
    async with open_core() as core:
        upstream = ScriptedUpstream()
        recorder = Recorder(core)
        ledger = await start_feed(core, upstream.connect)
        ws = await connect_and_sync(upstream)  # an empty snapshot: nothing yet
        await trio.testing.wait_all_tasks_blocked()
        assert info(core.system)["state"] == "connected"
        script = [
            {
                "type": "odds_change",
                "eventId": "sr:match:7",
                "marketId": 1,
                "outcomes": {"1": 2.0, "2": 1.8},
            },
            {
                "type": "odds_change",
                "eventId": "sr:match:7",
                "marketId": 2,
                "outcomes": {"1": 3.0, "2": 1.3},
            },
            {"type": "odds_change", "eventId": "sr:match:7", "marketId": 1, "outcomes": {"2": 1.7}},
            {"type": "odds_change", "eventId": "sr:match:7", "marketId": 1, "outcomes": {"2": 1.7}},
            {"type": "bet_stop", "eventId": "sr:match:7", "marketId": "1"},
            {"type": "bet_stop", "eventId": "sr:match:7", "marketId": "1"},
            {"type": "fixture_change", "eventId": "sr:match:7"},
            {
                "type": "bet_settlement",
                "eventId": "sr:match:7",
                "marketId": "1",
                "result": {"1": "win", "2": "lose"},
            },
            {
                "type": "bet_settlement",
                "eventId": "sr:match:7",
                "marketId": "2",
                "result": {"1": "lose", "2": "win"},
            },
            {
                "type": "odds_change",
                "eventId": "sr:match:7",
                "marketId": 2,
                "outcomes": {"1": 3.0, "2": 1.3},
            },
        ]
        for message in script:
            await send_json(ws, message)
        await send_json(ws, ALIVE)
        await trio.testing.wait_all_tasks_blocked()
        assert [u.data for _, u in recorder.updates] == [
            {
                "eventId": "sr:match:7",
                "status": "live",
                "markets": {"1": {"status": "active", "outcomes": {"1": 2.0, "2": 1.8}}},
            },
            {"markets": {"2": {"status": "active", "outcomes": {"1": 3.0, "2": 1.3}}}},
            {"markets": {"1": {"status": "active", "outcomes": {"1": 2.0, "2": 1.7}}}},
            {"markets": {"1": {"status": "suspended"}}},
            {"markets": {"1": {"status": "settled", "result": {"1": "win", "2": "lose"}}}},
            {
                "status": "ended",
                "markets": {"2": {"status": "settled", "result": {"1": "lose", "2": "win"}}},
            },
        ]
        assert ledger.owned == {}  # an ended event is no longer the feed's to suspend
        assert info(core.system)["published"] == 6


async def test_subscribers_see_bet_stop_then_odds_again(autojump_clock: trio.abc.Clock) -> None:
    async with open_core() as core:
        server = SimulatorServer(Simulator(seed=11, events=1, markets=2), rate=0)
        recorder = Recorder(core)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            await start_feed(core, server.connect)
            await wait_for_state(core, recorder, "connected")
            async with core.connect(user_id="u1", dialect=UOF) as client:
                await receive(client)  # connection_established
                await send(client, {"type": "subscribe", "payload": {"eventIds": ["sr:match:1"]}})
                first = await receive_until(client, lambda m: m["type"] == "snapshot")
                markets = first[-1]["payload"]["markets"]
                assert [m["status"] for m in markets] == ["active", "active"]

                server.set_available(False)
                stops = [await receive(client) for _ in range(2)]
                assert [(m["type"], m["payload"]["marketId"]) for m in stops] == [
                    ("bet_stop", 1),
                    ("bet_stop", 2),
                ]
                assert info(core.system)["state"] == "backoff"

                await trio.sleep(10)
                server.set_available(True)
                reopened = [await receive(client) for _ in range(2)]
                assert [m["type"] for m in reopened] == ["odds_change", "odds_change"]
                assert [m["payload"]["status"] for m in reopened] == ["active", "active"]
                assert {m["payload"]["marketId"]: m["payload"]["outcomes"] for m in reopened} == {
                    int(k): [{"outcomeId": o, "odds": p} for o, p in v["outcomes"].items()]
                    for k, v in server.simulator.state()["sr:match:1"]["markets"].items()
                }
            nursery.cancel_scope.cancel()


async def test_recovery_after_an_outage(autojump_clock: trio.abc.Clock) -> None:
    async with open_core() as core:
        simulator = Simulator(seed=21, events=3, markets=3, rate=10, match_s=8, keep_ended=100)
        server = SimulatorServer(simulator)
        recorder = Recorder(core)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            await start_feed(core, server.connect)
            await wait_for_state(core, recorder, "connected")
            assert await engine_events(core) == simulator.state()
            await trio.sleep(4)
            assert await engine_events(core) == simulator.state()

            outage = trio.current_time()
            server.set_available(False)
            await wait_for_state(core, recorder, "backoff")
            assert recorder.between(outage, outage + 0.001)  # the suspensions
            for state in (await engine_events(core)).values():
                assert "active" not in {m["status"] for m in state["markets"].values()}
            await trio.sleep(20)  # the world moves on: odds, settlements, new matches
            server.set_available(True)
            await wait_for_state(core, recorder, "connected")
            up_at = trio.current_time()
            for update in recorder.between(outage + 0.001, up_at):
                raise AssertionError(f"published while down: {update}")
            state = info(core.system)
            assert state["snapshots"] == 2 and state["attempt"] >= 3
            assert await engine_events(core) == simulator.state()  # exactly the upstream's
            nursery.cancel_scope.cancel()


async def test_a_restarted_feed_suspends_what_it_owned_before_connecting(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core() as core:
        simulator = Simulator(seed=5, events=2, markets=2)
        server = SimulatorServer(simulator, rate=0)
        recorder = Recorder(core)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            await start_feed(core, server.connect)
            await wait_for_state(core, recorder, "connected")
            core.system.faults.arm("crash", actor="feeds/up1", point="upstream_message")
            down = trio.Event()
            core.system.monitor("feeds/up1", lambda _: down.set())
            await down.wait()  # crashed on the next alive
            crashed = trio.current_time()
            await wait_for_state(core, recorder, "connected")
            # The new incarnation suspends all four markets before it has even connected, and
            # reopens them from the snapshot.
            after = recorder.between(crashed, trio.current_time() + 1)
            assert [set(statuses(u).values()) for u in after] == [{"suspended"}] * 4 + [
                {"active"}
            ] * 4
            assert feed_info(core.system)["restarts"] == 1
            assert feed_info(core.system)["last_error"].startswith("InjectedFault")
            assert await engine_events(core) == simulator.state()
            nursery.cancel_scope.cancel()


async def test_a_cut_from_the_faults_api_suspends_reconnects_and_reopens(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core() as core:
        simulator = Simulator(seed=5, events=1, markets=2)
        server = SimulatorServer(simulator, rate=0)
        recorder = Recorder(core)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            await start_feed(core, server.connect)
            await wait_for_state(core, recorder, "connected")
            # What POST /debug/faults {"action": "cut"} arms: a drop at the "upstream" point.
            core.system.faults.arm("drop", actor="feeds/up1", point="upstream")
            cut = trio.current_time()
            await wait_for_state(core, recorder, "backoff")
            await wait_for_state(core, recorder, "connected")
            # The cut acts on the next upstream message (an alive, within a second).
            after = recorder.between(cut + 0.001, trio.current_time() + 1)
            assert [set(statuses(u).values()) for u in after] == [{"suspended"}] * 2 + [
                {"active"}
            ] * 2
            assert feed_info(core.system)["restarts"] == 0  # a cut is not a crash
            assert await engine_events(core) == simulator.state()
            nursery.cancel_scope.cancel()


async def test_stopping_the_feed_suspends_its_markets(autojump_clock: trio.abc.Clock) -> None:
    async with open_core() as core:
        server = SimulatorServer(Simulator(seed=5, events=1, markets=2), rate=0)
        recorder = Recorder(core)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            await start_feed(core, server.connect)
            await wait_for_state(core, recorder, "connected")
            await core.system.stop("feeds/up1")
            state = await event_state(core, "sr:match:1")
            assert {m["status"] for m in state["markets"].values()} == {"suspended"}
            nursery.cancel_scope.cancel()


# -- wiring -----------------------------------------------------------------------------------


async def test_feed_specs_make_one_permanent_feed_per_url() -> None:
    async with open_core() as core:
        specs = feed_specs(["ws://a.test:9000/feed", "ws://b.test/"], core.hub, grace_s=2.5)
        assert [s.name for s in specs] == ["up1", "up2"]
        assert {s.restart for s in specs} == {Restart.PERMANENT}
        feeds = [s.factory() for s in specs]
        assert all(isinstance(f, UpstreamFeed) for f in feeds)
        assert [(f.url, f.grace_s) for f in feeds] == [
            ("ws://a.test:9000/feed", 2.5),
            ("ws://b.test/", 2.5),
        ]  # type: ignore[attr-defined]
        again = specs[0].factory()
        assert again is not feeds[0] and again.ledger is feeds[0].ledger  # type: ignore[attr-defined]


async def test_the_demo_feed_runs_in_process(autojump_clock: trio.abc.Clock) -> None:
    async with open_core() as core:
        recorder = Recorder(core)
        specs = demo_feed_specs(core.hub, seed=1, events=2, markets=2, rate=5)
        for spec in specs:
            await core.system.spawn(spec, under="feeds")
        assert [s.name for s in specs] == ["sim", "sim-feed"]
        await wait_for_state(core, recorder, "connected", "feeds/sim-feed")
        await trio.sleep(10)
        assert info(core.system, "feeds/sim-feed")["published"] > 40
        assert info(core.system, "feeds/sim")["steps"] == 50
        assert sorted(await engine_events(core)) == ["sr:match:1", "sr:match:2"]


async def test_an_upstream_that_never_answers_the_snapshot_request_is_dropped(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core() as core:
        upstream = ScriptedUpstream()
        await start_feed(core, upstream.connect, snapshot_timeout_s=30.0)
        ws = await upstream.accepted()
        assert (await receive_json(ws))["type"] == "snapshot_request"
        connected = trio.current_time()
        for _ in range(29):  # alive every second, but no snapshot
            await trio.sleep(1)
            await send_json(ws, ALIVE)
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
        assert trio.current_time() == connected + 30.0
        await trio.testing.wait_all_tasks_blocked()
        state = info(core.system)
        assert state["last_error"] == "no snapshot within 30 s" and state["state"] == "backoff"
        assert state["last_alive_age_s"] == 1.0
