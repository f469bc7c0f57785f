"""The simulator: deterministic per seed, alive every second, sane odds, matches that end."""

from __future__ import annotations

import itertools
import json

import pytest
import trio
from trio_websocket import ConnectionClosed

from rt.feeds.memory import open_memory_websocket
from rt.feeds.messages import (
    Alive,
    BetSettlement,
    BetStop,
    FeedSnapshot,
    OddsChange,
    SnapshotRequest,
    decode_upstream,
    encode,
)
from rt.feeds.simulator import MAX_ODDS, MIN_ODDS, Simulator, SimulatorServer


def test_a_seed_fixes_the_whole_sequence() -> None:
    a, b, c = (
        Simulator(seed=7, match_s=20),
        Simulator(seed=7, match_s=20),
        Simulator(seed=8, match_s=20),
    )
    run_a = [a.step() for _ in range(3000)]
    assert run_a == [b.step() for _ in range(3000)]
    assert run_a != [c.step() for _ in range(3000)]
    assert a.snapshot() == b.snapshot()


def test_messages_survive_the_wire() -> None:
    sim = Simulator(seed=1, match_s=10)
    for _ in range(2000):
        step = sim.step()
        assert decode_upstream(encode(step)) == step


def test_odds_stay_within_bounds_with_two_decimals() -> None:
    sim = Simulator(seed=3, events=4, markets=5, match_s=30)
    kinds = set()
    for _ in range(5000):
        step = sim.step()
        kinds.add(type(step))
        if isinstance(step, OddsChange):
            assert set(step.outcomes) == {"1", "2", "3"}
            for odds in step.outcomes.values():
                assert MIN_ODDS <= odds <= MAX_ODDS
                assert round(odds, 2) == odds
    assert kinds == {OddsChange, BetStop, BetSettlement}


def test_a_match_ends_with_every_market_settled_then_a_new_match_starts() -> None:
    sim = Simulator(seed=5, events=2, markets=3, rate=10, match_s=10)
    settled: dict[str, dict[str, dict[str, str]]] = {}
    seen_after_end: list[object] = []
    ended: set[str] = set()
    for _ in range(1000):
        step = sim.step()
        if step.event_id in ended:
            seen_after_end.append(step)
        if isinstance(step, BetSettlement):
            assert list(step.result.values()).count("win") == 1
            markets = settled.setdefault(step.event_id, {})
            assert step.market_id not in markets  # settled once
            markets[step.market_id] = step.result
            if len(markets) == 3:
                ended.add(step.event_id)
        if len(ended) >= 3:
            break
    assert len(ended) >= 3
    assert not seen_after_end
    # A match lasts 0.5 to 1.5 times match_s of simulated time: the first ones end by 15 s.
    assert sim.now_s <= 2 * 15
    state = sim.state()
    for event_id in ended & state.keys():
        assert state[event_id]["status"] == "ended"
        assert {m["status"] for m in state[event_id]["markets"].values()} == {"settled"}
    live = sim.statistics()["live_events"]
    assert len(live) == 2 and not set(live) & ended
    assert all(int(e.rsplit(":", 1)[1]) > 2 for e in live)  # new match ids took over


def test_the_snapshot_is_the_state() -> None:
    sim = Simulator(seed=2, match_s=5)
    for _ in range(500):
        sim.step()
    snapshot = json.loads(encode(sim.snapshot(request_id=4, ts=99)))
    assert snapshot["requestId"] == 4 and snapshot["ts"] == 99
    assert {e["eventId"]: e for e in snapshot["events"]} == sim.state()


async def test_clients_get_alive_every_second_and_a_snapshot_when_they_ask(
    autojump_clock: trio.abc.Clock,
) -> None:
    ms = itertools.count(1_000_000, 1000)
    server = SimulatorServer(Simulator(seed=1), rate=0, wall_ms=lambda: next(ms))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        start = trio.current_time()
        async with open_memory_websocket(server.handle_request) as ws:
            received = []
            for _ in range(3):
                message = decode_upstream(await ws.get_message())
                received.append((trio.current_time() - start, message))
            await ws.send_message(encode(SnapshotRequest(request_id=9)))
            answer = decode_upstream(await ws.get_message())
            assert trio.current_time() - start == 3.0  # answered at once
        nursery.cancel_scope.cancel()
    assert received == [(1.0, Alive(1_000_000)), (2.0, Alive(1_001_000)), (3.0, Alive(1_002_000))]
    assert answer == FeedSnapshot(server.simulator.snapshot().events, request_id=9, ts=1_003_000)


async def test_clients_get_every_step_in_order_at_the_rate(autojump_clock: trio.abc.Clock) -> None:
    server = SimulatorServer(Simulator(seed=4, rate=10), max_steps=25)
    expected = Simulator(seed=4, rate=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        start = trio.current_time()
        async with open_memory_websocket(server.handle_request) as ws:
            steps = []
            while len(steps) < 25:
                message = decode_upstream(await ws.get_message())
                if not isinstance(message, Alive):
                    steps.append((round(trio.current_time() - start, 6), message))
        await server.world_stopped.wait()
        nursery.cancel_scope.cancel()
    assert [m for _, m in steps] == [expected.step() for _ in range(25)]
    assert [t for t, _ in steps] == [round(0.1 * n, 6) for n in range(1, 26)]


async def test_an_outage_drops_clients_and_refuses_new_ones(autojump_clock: trio.abc.Clock) -> None:
    server = SimulatorServer(Simulator(seed=1), rate=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with server.connect() as ws:
            assert server.clients == 1
            server.set_available(False)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1001
        with pytest.raises(OSError, match="connection refused"):
            server.connect()
        server.set_available(True)
        async with server.connect() as ws:
            assert isinstance(decode_upstream(await ws.get_message()), Alive)
        nursery.cancel_scope.cancel()
