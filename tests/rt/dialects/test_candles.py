"""Candles: the pure rules (boundaries, series, throttle, summary), then the candle maker on
Trio's virtual clock, with ticks published as a producer publishes them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import trio
from hypothesis import given
from hypothesis import strategies as st

from rt.dialects.topics import DIALECT as TOPICS
from rt.dialects.topics.aggregator import MAKERS
from rt.dialects.topics.candles import (
    MAX_BACKFILL,
    CandleSeries,
    RegionSummary,
    Throttle,
    bucket_end,
    bucket_start,
)
from rt.dialects.topics.names import INTERVALS
from rt.model import Update
from rt.topics import candle_topic, tick_topic
from tests.rt.harness import Core, open_core, receive, send


def ms(text: str) -> int:
    """``2026-01-31T23:59:59`` (UTC) as ms since the epoch."""
    moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


# -- boundaries ------------------------------------------------------------------------------


def test_minute_and_hour_boundaries() -> None:
    t = ms("2026-03-04T13:47:29.500")
    assert bucket_start("1m", t) == ms("2026-03-04T13:47:00")
    assert bucket_end("1m", t) == ms("2026-03-04T13:48:00")
    assert bucket_start("5m", t) == ms("2026-03-04T13:45:00")
    assert bucket_start("15m", t) == ms("2026-03-04T13:45:00")
    assert bucket_start("30m", t) == ms("2026-03-04T13:30:00")
    assert bucket_start("1h", t) == ms("2026-03-04T13:00:00")
    assert bucket_start("4h", t) == ms("2026-03-04T12:00:00")
    assert bucket_end("4h", t) == ms("2026-03-04T16:00:00")


def test_day_week_and_month_boundaries_are_utc_calendar_ones() -> None:
    t = ms("2026-03-04T13:47:29")  # a Wednesday
    assert bucket_start("1d", t) == ms("2026-03-04T00:00:00")
    assert bucket_end("1d", t) == ms("2026-03-05T00:00:00")
    assert bucket_start("1w", t) == ms("2026-03-02T00:00:00")  # Monday
    assert bucket_end("1w", t) == ms("2026-03-09T00:00:00")
    assert bucket_start("1w", ms("2026-03-02T00:00:00")) == ms("2026-03-02T00:00:00")
    assert bucket_start("1w", ms("2026-03-01T23:59:59")) == ms("2026-02-23T00:00:00")
    assert bucket_start("1M", t) == ms("2026-03-01T00:00:00")
    assert bucket_end("1M", t) == ms("2026-04-01T00:00:00")


def test_month_ends_across_the_year_and_in_february() -> None:
    assert bucket_end("1M", ms("2026-12-31T23:59:59")) == ms("2027-01-01T00:00:00")
    assert bucket_start("1M", ms("2027-01-01T00:00:00")) == ms("2027-01-01T00:00:00")
    assert bucket_end("1M", ms("2028-02-10T00:00:00")) == ms("2028-03-01T00:00:00")  # leap
    assert bucket_end("1M", ms("2026-02-10T00:00:00")) == ms("2026-03-01T00:00:00")
    assert bucket_end("1M", ms("2026-01-31T12:00:00")) == ms("2026-02-01T00:00:00")


@given(
    interval=st.sampled_from(INTERVALS),
    ts=st.integers(min_value=0, max_value=ms("2100-01-01T00:00:00")),
)
def test_every_moment_is_in_exactly_one_candle(interval: str, ts: int) -> None:
    start, end = bucket_start(interval, ts), bucket_end(interval, ts)
    assert start <= ts < end
    # Candles tile time: the next one starts where this one ends, the previous ends here.
    assert bucket_start(interval, end) == end
    assert bucket_end(interval, start - 1) == start
    assert bucket_start(interval, start) == start


# -- a series --------------------------------------------------------------------------------


def test_a_candle_aggregates_its_trades() -> None:
    series = CandleSeries("AAPL", "1m")
    t = ms("2026-03-04T13:47:00")
    assert series.tick(10.0, 1, t + 1000) == []
    assert series.tick(12.0, 2, t + 2000) == []
    assert series.tick(9.0, 3, t + 3000) == []
    assert series.tick(11.0, 4, t + 4000) == []
    c = series.current
    assert c is not None
    assert (c.open, c.high, c.low, c.close, c.volume, c.trades) == (10.0, 12.0, 9.0, 11.0, 10, 4)
    assert (c.open_time_ms, c.close_time_ms, c.closed) == (t, t + 60_000, False)
    assert series.next_boundary_ms == t + 60_000


def test_a_tick_in_the_next_interval_closes_the_candle_and_silent_ones_go_flat() -> None:
    series = CandleSeries("AAPL", "1m")
    t = ms("2026-03-04T13:47:00")
    series.tick(10.0, 1, t + 1000)
    series.tick(11.0, 1, t + 2000)
    closed = series.tick(12.0, 5, t + 3 * 60_000 + 500)  # 13:50:00.5; 13:48 and 13:49 silent
    assert [(c.open_time_ms, c.closed) for c in closed] == [
        (t, True),
        (t + 60_000, True),
        (t + 120_000, True),
    ]
    assert [c.number for c in closed] == [1, 2, 3]
    flat = closed[1]
    assert (flat.open, flat.high, flat.low, flat.close, flat.volume, flat.trades) == (
        11.0,
        11.0,
        11.0,
        11.0,
        0,
        0,
    )
    current = series.current
    assert current is not None and current.number == 4
    assert (current.open, current.close, current.trades) == (11.0, 12.0, 1)  # opens flat


def test_advance_closes_at_the_boundary_exactly() -> None:
    series = CandleSeries("AAPL", "1m")
    t = ms("2026-03-04T13:47:00")
    series.tick(10.0, 1, t)
    assert series.advance(t + 59_999) == []
    (closed,) = series.advance(t + 60_000)
    assert closed.closed and closed.close_time_ms == t + 60_000
    current = series.current
    assert current is not None and current.open_time_ms == t + 60_000
    assert (current.open, current.trades, current.closed) == (10.0, 0, False)


def test_old_ticks_are_ignored_and_a_closed_candle_never_changes() -> None:
    series = CandleSeries("AAPL", "1m")
    t = ms("2026-03-04T13:47:00")
    series.tick(10.0, 1, t + 61_000)
    assert series.tick(99.0, 1, t + 1000) == []
    current = series.current
    assert current is not None and (current.high, current.trades) == (10.0, 1)


def test_a_long_silence_is_bounded() -> None:
    series = CandleSeries("AAPL", "1m")
    series.tick(10.0, 1, 0)
    closed = series.advance(10_000 * 60_000 + 5)
    assert len(closed) == MAX_BACKFILL
    current = series.current
    assert current is not None and current.open_time_ms == 10_000 * 60_000


def test_nothing_before_the_first_tick() -> None:
    series = CandleSeries("AAPL", "1h")
    assert series.current is None and series.next_boundary_ms is None
    assert series.advance(ms("2026-03-04T13:47:00")) == []


# -- throttle and summary --------------------------------------------------------------------


def test_the_throttle_lets_one_a_second_through_and_holds_the_latest() -> None:
    throttle = Throttle(1000)
    assert throttle.offer("a", 0)
    assert not throttle.offer("a", 200)
    assert not throttle.offer("a", 700)
    assert throttle.offer("b", 300)  # per key
    assert throttle.flush(999) == []
    assert throttle.flush(1000) == ["a"]
    assert throttle.flush(5000) == []
    assert not throttle.offer("a", 1500)
    throttle.forget("a")
    assert throttle.flush(3000) == []


def test_a_region_summary_counts_todays_moves() -> None:
    summary = RegionSummary("US")
    day = ms("2026-03-04T00:00:00")
    summary.update("stock.A", 10.0, 1, day + 1)
    summary.update("stock.A", 11.0, 2, day + 2)  # up
    summary.update("stock.B", 10.0, 1, day + 3)
    summary.update("stock.B", 9.0, 1, day + 4)  # down
    summary.update("stock.C", 5.0, 4, day + 5)  # unchanged
    assert summary.changed
    assert summary.snapshot(day + 10) == {
        "region": "US",
        "instruments": 3,
        "advancers": 1,
        "decliners": 1,
        "unchanged": 1,
        "volume": 9.0,
        "as_of": day + 10,
    }
    assert not summary.changed
    # A new UTC day starts from each instrument's first trade of that day.
    summary.update("stock.A", 20.0, 1, day + 86_400_000)
    after = summary.snapshot(day + 86_400_001)
    assert (after["advancers"], after["decliners"], after["volume"]) == (0, 0, 1.0)


# -- the maker, on the virtual clock ---------------------------------------------------------


class Clock:
    """Wall time that starts at ``start`` and runs with Trio's (virtual) clock."""

    def __init__(self, start: str) -> None:
        self.base = ms(start) - int(trio.current_time() * 1000)

    def __call__(self) -> int:
        return self.base + int(trio.current_time() * 1000)


class Recorder:
    """Every candle published on the instrument's topics, as the engine keeps them."""

    def __init__(self, core: Core, instrument: str) -> None:
        self.core = core
        self.instrument = instrument
        self.seen: dict[str, list[dict[str, Any]]] = {}
        core.engine.add_listener(self._on_update)

    def _on_update(self, update: Update) -> None:
        prefix = candle_topic(self.instrument + ".")
        if update.topic.startswith(prefix):
            interval = update.topic[len(prefix) :]
            self.seen.setdefault(interval, []).append({"seq": update.seq, **update.data})  # type: ignore[dict-item]

    def closed(self, interval: str) -> list[dict[str, Any]]:
        return [c for c in self.seen.get(interval, []) if c["closed"]]


async def tick(core: Core, price: float, volume: float = 1.0, *, symbol: str = "AAPL") -> None:
    data = {"symbol": symbol, "type": "stock", "price": price, "volume": volume}
    await core.hub.publish(
        tick_topic(f"stock.{symbol}"), {**data, "ts": core.settings.wall_ms()}, kind="event"
    )
    await trio.sleep(0.01)  # the router and the maker take their turns


async def until(clock: Clock, when: str) -> None:
    await trio.sleep((ms(when) - clock()) / 1000)


async def test_a_1m_candle_closes_at_the_minute_and_a_silent_minute_is_flat(
    autojump_clock: trio.abc.Clock,
) -> None:
    clock = Clock("2026-03-04T13:47:10")
    async with open_core(wall_ms=clock) as core:
        seen = Recorder(core, "stock.AAPL")
        await tick(core, 10.0, 2)
        await tick(core, 12.0, 3)
        await until(clock, "2026-03-04T13:50:30")
        closed = seen.closed("1m")
        assert [(c["open_time"], c["close_time"]) for c in closed] == [
            (ms("2026-03-04T13:47:00"), ms("2026-03-04T13:48:00")),
            (ms("2026-03-04T13:48:00"), ms("2026-03-04T13:49:00")),
            (ms("2026-03-04T13:49:00"), ms("2026-03-04T13:50:00")),
        ]
        first, *flat = closed
        assert (first["open"], first["high"], first["close"], first["volume"]) == (10, 12, 12, 5)
        assert first["updated"] == ms("2026-03-04T13:48:00")  # sent at the boundary itself
        for candle in flat:  # silent minutes: flat at the last close, nothing traded
            assert (candle["open"], candle["high"], candle["low"], candle["close"]) == (12,) * 4
            assert (candle["volume"], candle["trades"]) == (0, 0)
        # After each close the next candle opened, flat, and went out too.
        latest = seen.seen["1m"][-1]
        assert latest["open_time"] == ms("2026-03-04T13:50:00") and not latest["closed"]
        seqs = [c["seq"] for c in seen.seen["1m"]]
        assert seqs == list(range(1, len(seqs) + 1))


async def test_open_candles_go_out_at_most_once_a_second(
    autojump_clock: trio.abc.Clock,
) -> None:
    clock = Clock("2026-03-04T13:47:10")
    async with open_core(wall_ms=clock) as core:
        seen = Recorder(core, "stock.AAPL")
        for i in range(50):  # 50 ticks in 0.5 s
            await tick(core, 10.0 + i, 1)
        await until(clock, "2026-03-04T13:47:13")
        sent = seen.seen["1h"]
        assert len(sent) == 2  # the first at once, the latest a second later
        assert sent[-1]["close"] == 59.0 and sent[-1]["trades"] == 50
        assert sent[1]["updated"] - sent[0]["updated"] >= 1000


async def test_1h_1d_and_1M_close_across_a_month_end(autojump_clock: trio.abc.Clock) -> None:
    clock = Clock("2026-01-31T23:59:58")
    async with open_core(wall_ms=clock) as core:
        seen = Recorder(core, "stock.AAPL")
        await tick(core, 100.0, 1)
        await until(clock, "2026-02-01T00:00:01")
        for interval, opened in (
            ("1h", "2026-01-31T23:00:00"),
            ("1d", "2026-01-31T00:00:00"),
            ("1M", "2026-01-01T00:00:00"),
        ):
            (closed,) = seen.closed(interval)
            assert closed["open_time"] == ms(opened), interval
            assert closed["close_time"] == ms("2026-02-01T00:00:00"), interval
            assert closed["trades"] == 1
        # The week (from Monday 2026-01-26) goes on.
        assert seen.closed("1w") == []
        await tick(core, 101.0, 1)
        (week,) = {c["open_time"] for c in seen.seen["1w"]}
        assert week == ms("2026-01-26T00:00:00")
        latest = seen.seen["1M"][-1]
        assert latest["open_time"] == ms("2026-02-01T00:00:00") and latest["trades"] == 1


async def test_subscribers_get_the_current_candle_first_then_its_updates(
    autojump_clock: trio.abc.Clock,
) -> None:
    clock = Clock("2026-03-04T13:47:10")
    async with open_core(wall_ms=clock) as core:
        await tick(core, 10.0, 1)
        async with core.connect(dialect=TOPICS) as ws:
            assert (await receive(ws))["type"] == "connection_ack"
            await send(ws, {"type": "subscribe", "topic": "stock.AAPL.1m"})
            assert (await receive(ws))["type"] == "subscribe_ack"
            first = await receive(ws)
            assert first["type"] == "candle" and first["close"] == 10.0 and first["seq"] == 1
            assert first["open_time"] == "2026-03-04T13:47:00.000000"
            await tick(core, 11.0, 1)  # within the second: held back, then sent
            second = await receive(ws)
            assert (second["seq"], second["close"], second["trades"]) == (2, 11.0, 2)
            await until(clock, "2026-03-04T13:48:00.500")
            closing = await receive(ws)
            assert closing["closed"] and closing["close_time"] == "2026-03-04T13:48:00.000000"
            opening = await receive(ws)
            assert not opening["closed"] and opening["open"] == 11.0


async def test_a_restarted_maker_carries_on_with_the_open_candle(
    autojump_clock: trio.abc.Clock,
) -> None:
    clock = Clock("2026-03-04T13:47:10")
    async with open_core(wall_ms=clock) as core:
        seen = Recorder(core, "stock.AAPL")
        await tick(core, 10.0, 2)
        await until(clock, "2026-03-04T13:47:20")
        # The maker crashes on its next message (the tick): its supervisor restarts it.
        core.system.faults.arm("crash", actor=f"{MAKERS}/stock.AAPL", count=1)
        await tick(core, 11.0, 3)
        await until(clock, "2026-03-04T13:47:30")
        assert core.system.lookup(f"{MAKERS}/stock.AAPL") is not None
        await tick(core, 12.0, 4)
        await until(clock, "2026-03-04T13:47:40")
        latest = seen.seen["1m"][-1]
        # The tick the crash took is lost; the candle's earlier trade is not.
        assert (latest["open"], latest["high"], latest["close"]) == (10.0, 12.0, 12.0)
        assert (latest["volume"], latest["trades"]) == (6.0, 2)
        assert latest["open_time"] == ms("2026-03-04T13:47:00")
