"""Per-connection limits on what a client may send, as plain objects fed the time.

Sans-IO like the dialects: every method takes ``now`` (Trio's clock, in seconds, passed in by
the connection), so the limits are tested with numbers and used on the virtual clock.

- ``TokenBucket``: the inbound message rate (a sustained rate, and a burst above it).
- ``WindowBudget``: at most ``limit`` events in any ``window_s`` (invalid messages, new topics).
- ``LogBudget``: how many lines about clients' bad input may be logged per period, so that a
  flood of bad input writes a few lines and a count, never one line per message.
"""

from __future__ import annotations

from collections import deque

__all__ = ["LogBudget", "TokenBucket", "WindowBudget"]


class TokenBucket:
    """``rate_per_s`` tokens a second, holding at most ``burst``; it starts full."""

    __slots__ = ("_at", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: int, *, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        """Spend one token; False (and nothing spent) when there is none."""
        tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


class WindowBudget:
    """At most ``limit`` events within any ``window_s`` seconds (a sliding window)."""

    __slots__ = ("_times", "limit", "window_s")

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        # Never longer than limit. Made on the first event: a connection has two budgets and
        # most never spend either, and an empty deque costs ~600 bytes.
        self._times: deque[float] | None = None

    def spend(self, now: float) -> bool:
        """Count one event at ``now``; False (and not counted) when the window is full."""
        times = self._times
        if times is None:
            times = self._times = deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True

    def used(self, now: float) -> int:
        """Events counted within the window that ends at ``now``."""
        return sum(1 for t in self._times or () if t > now - self.window_s)


class LogBudget:
    """``lines`` log lines per ``period_s``; the rest are counted and reported with the next
    line allowed (``take`` returns how many were held back since the last one)."""

    __slots__ = ("_budget", "suppressed")

    def __init__(self, lines: int, period_s: float) -> None:
        self._budget = WindowBudget(lines, period_s)
        self.suppressed = 0

    def take(self, now: float) -> int | None:
        """None: do not log. Otherwise log, and say that this many lines were held back."""
        if not self._budget.spend(now):
            self.suppressed += 1
            return None
        held, self.suppressed = self.suppressed, 0
        return held
