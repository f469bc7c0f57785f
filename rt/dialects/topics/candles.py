"""Candles (OHLCV) from ticks, sans-IO: every function takes the time as ms since the epoch.

Intervals end on UTC boundaries: minutes and hours counted from the epoch (``4h`` candles open
at 00:00, 04:00, ... UTC), ``1d`` at 00:00 UTC, ``1w`` on Monday 00:00 UTC, ``1M`` on the
first of the calendar month. A candle covers ``[open_time, close_time)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

__all__ = [
    "Candle",
    "CandleSeries",
    "RegionSummary",
    "Throttle",
    "bucket_end",
    "bucket_start",
]

_MINUTE = 60_000
_FIXED_MS = {
    "1m": _MINUTE,
    "5m": 5 * _MINUTE,
    "15m": 15 * _MINUTE,
    "30m": 30 * _MINUTE,
    "1h": 60 * _MINUTE,
    "4h": 240 * _MINUTE,
    "1d": 1440 * _MINUTE,
}
_DAY_MS = 1440 * _MINUTE
#: 1970-01-01 was a Thursday: Monday-aligned weeks start 3 days before the epoch's week.
_WEEK_OFFSET_MS = 3 * _DAY_MS
#: The most flat candles one call closes: a series silent for longer skips ahead instead
#: (the candles in between would be flat anyway, and nobody waits for thousands of them).
MAX_BACKFILL = 1000


def _utc(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def bucket_start(interval: str, ts_ms: int) -> int:
    """When the candle of ``interval`` that holds ``ts_ms`` opens."""
    size = _FIXED_MS.get(interval)
    if size is not None:
        return ts_ms - ts_ms % size
    if interval == "1w":
        week = 7 * _DAY_MS
        return ts_ms - (ts_ms + _WEEK_OFFSET_MS) % week
    if interval == "1M":
        moment = _utc(ts_ms)
        return _ms(datetime(moment.year, moment.month, 1, tzinfo=UTC))
    raise ValueError(f"unknown interval {interval!r}")


def bucket_end(interval: str, ts_ms: int) -> int:
    """When the candle of ``interval`` that holds ``ts_ms`` closes (exclusive)."""
    start = bucket_start(interval, ts_ms)
    if interval == "1M":
        moment = _utc(start)
        year, month = (
            (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
        )
        return _ms(datetime(year, month, 1, tzinfo=UTC))
    if interval == "1w":
        return start + 7 * _DAY_MS
    return start + _FIXED_MS[interval]


@dataclass(slots=True)
class Candle:
    symbol: str
    interval: str
    #: 1 for the series' first candle, one more for each candle after it.
    number: int
    open_time_ms: int
    close_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    trades: int = 0
    closed: bool = False

    def add(self, price: float, volume: float) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += volume
        self.trades += 1


class CandleSeries:
    """One symbol's candles in one interval: the open one, and those it closes."""

    def __init__(self, symbol: str, interval: str) -> None:
        bucket_start(interval, 0)  # ValueError now for an unknown interval
        self.symbol = symbol
        self.interval = interval
        self.current: Candle | None = None
        self._count = 0

    @property
    def next_boundary_ms(self) -> int | None:
        """When the open candle closes (None before the first tick)."""
        return None if self.current is None else self.current.close_time_ms

    def _open(self, ts_ms: int, price: float) -> Candle:
        self._count += 1
        start = bucket_start(self.interval, ts_ms)
        self.current = Candle(
            self.symbol,
            self.interval,
            self._count,
            start,
            bucket_end(self.interval, start),
            price,
            price,
            price,
            price,
        )
        return self.current

    def resume(self, candle: Candle) -> None:
        """Carry on from ``candle``, the open candle an earlier maker had published (a
        restarted maker does not lose the trades of the candle now open)."""
        self.current = candle
        self._count = candle.number

    def tick(self, price: float, volume: float, ts_ms: int) -> list[Candle]:
        """Add a trade. Returns the candles it closed (the open one, and a flat one for each
        silent interval between it and the tick's). A tick older than the open candle is
        ignored: a candle that went out closed never changes."""
        current = self.current
        if current is not None and ts_ms < current.open_time_ms:
            return []
        closed = self.advance(ts_ms)
        current = self.current
        if current is None or current.close_time_ms <= ts_ms:
            current = self._open(ts_ms, price)
        current.add(price, volume)
        return closed

    def advance(self, now_ms: int) -> list[Candle]:
        """Close every candle whose interval ended at or before ``now_ms``; each silent
        interval up to now gets a flat candle at the last close (closed too, but the one
        holding ``now_ms``, which stays open)."""
        closed: list[Candle] = []
        current = self.current
        while current is not None and current.close_time_ms <= now_ms:
            current.closed = True
            closed.append(replace(current))
            last = current.close
            if len(closed) >= MAX_BACKFILL:
                current = self._open(now_ms, last)  # skip the rest of a long silence
                break
            current = self._open(current.close_time_ms, last)
        return closed


@dataclass(slots=True)
class Throttle:
    """At most one send per ``period_ms`` per key; what comes sooner is held (latest wins)."""

    period_ms: int = 1000
    _last: dict[str, int] = field(default_factory=dict)
    #: Keys held back, in the order first held.
    pending: dict[str, None] = field(default_factory=dict)

    def offer(self, key: str, now_ms: int) -> bool:
        """True: send now. False: held; ``flush`` returns it once its period is over."""
        last = self._last.get(key)
        if last is None or now_ms - last >= self.period_ms:
            self._last[key] = now_ms
            self.pending.pop(key, None)
            return True
        self.pending[key] = None
        return False

    def flush(self, now_ms: int) -> list[str]:
        """The held keys whose period is over (each counts as sent now)."""
        due = [k for k in self.pending if now_ms - self._last[k] >= self.period_ms]
        for key in due:
            del self.pending[key]
            self._last[key] = now_ms
        return due

    def forget(self, key: str) -> None:
        """Nothing is held for ``key`` any more (what was held went out another way)."""
        self.pending.pop(key, None)


@dataclass(slots=True)
class _Instrument:
    day: int  # the UTC day (ms) of ``first``
    first: float  # the first price of that day
    last: float
    volume: float  # that day's


class RegionSummary:
    """One region's instruments today (UTC): how many rose, fell or stayed since the day's
    first trade, and the day's volume."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.instruments: dict[str, _Instrument] = {}
        #: A tick arrived since the last snapshot.
        self.changed = False

    def update(self, instrument: str, price: float, volume: float, ts_ms: int) -> None:
        day = bucket_start("1d", ts_ms)
        known = self.instruments.get(instrument)
        if known is None or known.day < day:
            self.instruments[instrument] = _Instrument(day, price, price, volume)
        elif known.day == day:
            known.last = price
            known.volume += volume
        self.changed = True

    def snapshot(self, now_ms: int) -> dict[str, float | int | str]:
        """The summary as the engine keeps it; instruments without a trade today count as
        unchanged with no volume."""
        today = bucket_start("1d", now_ms)
        advancers = decliners = 0
        volume = 0.0
        for item in self.instruments.values():
            if item.day != today:
                continue
            volume += item.volume
            if item.last > item.first:
                advancers += 1
            elif item.last < item.first:
                decliners += 1
        self.changed = False
        return {
            "region": self.region,
            "instruments": len(self.instruments),
            "advancers": advancers,
            "decliners": decliners,
            "unchanged": len(self.instruments) - advancers - decliners,
            "volume": volume,
            "as_of": now_ms,
        }
