"""Counters shared by every connection of a server (read by /api/ws/health and /metrics)."""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from rt.ws.limits import LogBudget

if TYPE_CHECKING:
    from rt.delivery.outbox import OutboxStatistics

#: Upper bounds (seconds) of the publish-to-send latency histogram's buckets (+Inf follows).
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ConnectionStats:
    """Counters shared by every connection of a server (read by /api/ws/health, /metrics).

    Plain integers bumped by the connections' own tasks (one thread, no locks), never per
    message: what counts messages lives in each outbox, and is folded in here when its
    connection ends.
    """

    def __init__(self) -> None:
        self.open = 0
        self.open_by_dialect: dict[str, int] = {}
        self.accepted = 0
        self.messages_received = 0
        self.heartbeat_timeouts = 0
        self.slow_closes = 0
        # Clients' bad input: messages answered with an error, joins a limit refused, and
        # connections closed with 4429 (too many invalid messages, or too fast).
        self.invalid_messages = 0
        self.refused_joins = 0
        self.limit_closes = 0
        #: Log lines about clients' bad input, for the whole server: 20 per 10 s, then a count.
        self.bad_input_log = LogBudget(20, 10.0)
        # The outbox counters of connections that have ended (live ones are read from their
        # outboxes at scrape time, so the hot path never touches these).
        self.ended_sent = 0
        self.ended_bytes_sent = 0
        self.ended_coalesced = 0
        self.ended_resyncs = 0
        self.ended_duplicates_dropped = 0
        # Publish-to-send latency: one observation per update a room fans out (when it has
        # offered it to every subscriber, most of them written at once) and one per batch a
        # backlogged writer sends. Counts per bucket of LATENCY_BUCKETS_S (the last one is
        # +Inf), and their sum in seconds.
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.latency_sum_s = 0.0
        #: Per tier (the predictions dialect's plans): what filtered connections were offered,
        #: by verdict (rt/dialects/predictions/interest.py: SENT, HELD_BY_TIER, ...).
        self.tiers: dict[str, list[int]] = {}

    def tier_counts(self, tier: str) -> list[int]:
        counts = self.tiers.get(tier)
        if counts is None:
            counts = self.tiers[tier] = [0, 0, 0, 0]
        return counts

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sum_s += seconds

    def outbox_ended(self, stats: OutboxStatistics) -> None:
        self.ended_sent += stats.sent
        self.ended_bytes_sent += stats.bytes_sent
        self.ended_coalesced += stats.coalesced
        self.ended_resyncs += stats.resyncs
        self.ended_duplicates_dropped += stats.duplicates_dropped
