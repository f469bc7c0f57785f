"""The benchmark publisher: what to publish when, driven over a control port (sans-IO).

Every server under test runs the same plan next to its publish call (in process, so that
publishing is never the bottleneck), and the scenario drives it with one JSON object per line
on the control port; each gets one JSON line back:

    {"cmd": "rate", "markets": ["1", "2"], "rate": 2000, "duration_s": 10, "count": 100}
        publish ``rate`` updates per second, round robin over ``markets``, for ``duration_s``
        (and at most ``count`` updates, when given)
    {"cmd": "credit", "market": "1", "upto": 1234, "duration_s": 60}
        publish to ``market`` as fast as possible while its seq < ``upto``; later credit
        commands raise ``upto`` (the load generator keeps it at the slowest client + window)
    {"cmd": "burst", "market": "1", "count": 500}
        publish ``count`` updates to ``market`` as fast as possible
    {"cmd": "stop"}     back to idle
    {"cmd": "stats"}    {"published": {market: seq}, "total", "mode", "lag_max_ms", ...}
    {"cmd": "gc"}       gc.collect() in the server (before reading its memory); answers
                        how many objects the collector tracks, by type

Each patch carries two monotonic timestamps in microseconds (CLOCK_MONOTONIC, which the
load generator on the same machine reads too): ``pt`` when the publish call was made, and
``st`` when the plan scheduled it. ``st`` differs from ``pt`` only when the server falls
behind the requested rate, so latency from ``st`` counts that lag too (no coordinated
omission).

The plan is the switch point for other publish paths: an external publisher (see
bench/servers/http_publisher.py) runs the same plan and control protocol and publishes over
rt's HTTP API instead of in process.
"""

from __future__ import annotations

import time
from typing import Any

MAX_BATCH = 32  # publishes per take(): the driver yields to the server between batches
MAX_DURATION_S = 120.0  # every mode ends by itself


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class PublishPlan:
    def __init__(self) -> None:
        self.seq: dict[str, int] = {}  # publishes made per market (= the server's seq)
        self.total = 0
        self.mode = "idle"
        self._markets: list[str] = []
        self._rate = 0.0
        self._start = 0.0
        self._deadline = 0.0
        self._done = 0  # publishes made in this mode
        self._upto = 0
        self._count = 0
        self.lag_max_s = 0.0

    # -- control ------------------------------------------------------------------------

    def handle(self, cmd: dict[str, Any], now: float) -> dict[str, Any]:
        kind = cmd.get("cmd")
        duration = min(float(cmd.get("duration_s", 60.0)), MAX_DURATION_S)
        if kind == "rate":
            self._enter("rate", now, duration)
            self._markets = [str(m) for m in cmd["markets"]]
            self._rate = float(cmd["rate"])
            self._count = int(cmd.get("count", 2**62))
        elif kind == "credit":
            market = str(cmd["market"])
            if self.mode != "credit" or self._markets != [market]:
                self._enter("credit", now, duration)
                self._markets = [market]
            self._upto = max(self._upto, int(cmd["upto"]))
        elif kind == "burst":
            self._enter("burst", now, duration)
            self._markets = [str(cmd["market"])]
            self._count = int(cmd["count"])
        elif kind == "stop":
            self.mode = "idle"
        elif kind != "stats":
            return {"ok": False, "error": f"unknown cmd {kind!r}"}
        return self.stats(now)

    def stats(self, now: float) -> dict[str, Any]:
        elapsed = max(now - self._start, 1e-9)
        return {
            "ok": True,
            "mode": self.mode,
            "published": dict(self.seq),
            "total": self.total,
            "in_mode": self._done,
            "rate_achieved": self._done / elapsed if self._start else 0.0,
            "lag_max_ms": round(self.lag_max_s * 1000, 3),
        }

    def _enter(self, mode: str, now: float, duration_s: float) -> None:
        self.mode = mode
        self._start = now
        self._deadline = now + duration_s
        self._done = 0
        self._upto = 0
        self.lag_max_s = 0.0

    # -- the driver's side --------------------------------------------------------------

    def take(self, now: float) -> list[tuple[str, int, int]]:
        """The publishes due now, at most MAX_BATCH: (market, seq, scheduled time in us)."""
        if self.mode == "idle":
            return []
        if now >= self._deadline:
            self.mode = "idle"
            return []
        if self.mode == "rate":
            due = min(int((now - self._start) * self._rate) + 1, self._count) - self._done
            due = min(due, MAX_BATCH)
            if self._done >= self._count:
                self.mode = "idle"
            out = []
            for _ in range(max(0, due)):
                scheduled = self._start + self._done / self._rate
                self.lag_max_s = max(self.lag_max_s, now - scheduled)
                market = self._markets[self._done % len(self._markets)]
                out.append((market, self._count_one(market), int(scheduled * 1e6)))
            return out
        market = self._markets[0]
        if self.mode == "credit":
            n = min(self._upto - self.seq.get(market, 0), MAX_BATCH)
        else:  # burst
            n = min(self._count - self._done, MAX_BATCH)
            if n <= 0:
                self.mode = "idle"
        stamp = int(now * 1e6)
        return [(market, self._count_one(market), stamp) for _ in range(max(0, n))]

    def wait_s(self, now: float) -> float:
        """How long the driver may sleep before something is due (a command wakes it)."""
        if self.mode == "rate":
            return max(0.0, self._start + self._done / self._rate - now)
        return 0.05

    def _count_one(self, market: str) -> int:
        seq = self.seq[market] = self.seq.get(market, 0) + 1
        self.total += 1
        self._done += 1
        return seq


def patch(market: str, seq: int, scheduled_us: int) -> dict[str, Any]:
    """The merge patch of a bench publish: odds that move with seq, and the two stamps."""
    step = seq % 50
    return {
        "moneyline": {"home": round(1.5 + step / 100, 2), "away": round(2.5 - step / 100, 2)},
        "pt": monotonic_us(),
        "st": scheduled_us,
    }
