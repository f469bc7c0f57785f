"""Prometheus metrics: GET /metrics, read from the server's own counters at scrape time.

Theory of operation. Nothing here runs on the hot path. Connections, outboxes, the hub and
the engine already count what they do (plain integers, bumped once per message or once per
batch); a custom collector reads those counters and the actor tree when Prometheus scrapes,
and turns them into metric families. Each server gets its own ``CollectorRegistry`` (never
the process-wide default), so several servers in one process, as in the tests, never clash.

Counters of a connection's outbox (messages and bytes sent, coalesced, resyncs, duplicates
dropped) live in the outbox while the connection does, and are folded into ``ConnectionStats``
when it ends
(``ConnectionStats.outbox_ended``): a total is the ended connections' part plus the live
outboxes' part, so it never goes down when a connection closes.

docs/operations.md lists every metric, its type, labels and meaning.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from actors import ActorSystem
from rt.auth import TIERS
from rt.delivery.hub import Hub
from rt.dialects import DIALECTS
from rt.dialects.predictions.interest import HELD_BY_FILTER, HELD_BY_TIER, SENT
from rt.engine import Engine
from rt.ws.connection import Connection
from rt.ws.stats import LATENCY_BUCKETS_S, ConnectionStats

if TYPE_CHECKING:
    from rt.server import Server

__all__ = ["MetricsSource", "Totals", "build_registry", "metrics_router", "totals"]

#: Shown for a child that has ended and waits to be restarted (the tree has no kind for it).
RESTARTING_KIND = "(restarting)"


class MetricsSource(Protocol):
    """What metrics are read from: a ``Server``, or the test harness's in-process core."""

    @property
    def system(self) -> ActorSystem: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def hub(self) -> Hub: ...

    @property
    def stats(self) -> ConnectionStats: ...


@dataclass(frozen=True, slots=True)
class Totals:
    """The server's counters at one moment (what /metrics and /realtime/stats report)."""

    connections_open: int
    connections_by_dialect: dict[str, int]
    connections_accepted: int
    messages_received: int
    messages_sent: int
    bytes_sent: int
    coalesced: int
    resyncs: int
    duplicates_dropped: int
    heartbeat_timeouts: int
    slow_consumer_closes: int
    invalid_messages: int
    limit_closes: int
    refused_joins: int
    subscriptions: int
    published: int
    topics: int
    #: Per tier (the predictions dialect): connections, events delivered, and events held
    #: back by the tier or by the connection's filters.
    tiers: dict[str, dict[str, int]]


def totals(source: MetricsSource) -> Totals:
    """Read every counter now: ended connections' outbox counters plus the live ones'."""
    stats = source.stats
    sent = stats.ended_sent
    bytes_sent = stats.ended_bytes_sent
    coalesced = stats.ended_coalesced
    resyncs = stats.ended_resyncs
    duplicates = stats.ended_duplicates_dropped
    tier_connections = dict.fromkeys(TIERS, 0)
    for cell in source.system.registry.cells():
        actor = cell.actor
        tier = getattr(getattr(actor, "session", None), "tier", None)
        if tier is not None and isinstance(actor, Connection) and not actor.outbox.closed:
            tier_connections[tier] = tier_connections.get(tier, 0) + 1
        # A closed outbox has been folded into stats already (see Connection.run).
        if isinstance(actor, Connection) and not actor.outbox.closed:
            outbox = actor.outbox
            sent += outbox.sent
            bytes_sent += outbox.bytes_sent
            coalesced += outbox.coalesced
            resyncs += outbox.resyncs
            duplicates += outbox.duplicates_dropped
    by_dialect = dict.fromkeys(sorted(d.codec.name for d in DIALECTS), 0)
    by_dialect.update(stats.open_by_dialect)
    return Totals(
        connections_open=stats.open,
        connections_by_dialect=by_dialect,
        connections_accepted=stats.accepted,
        messages_received=stats.messages_received,
        messages_sent=sent,
        bytes_sent=bytes_sent,
        coalesced=coalesced,
        resyncs=resyncs,
        duplicates_dropped=duplicates,
        heartbeat_timeouts=stats.heartbeat_timeouts,
        slow_consumer_closes=stats.slow_closes,
        invalid_messages=stats.invalid_messages,
        limit_closes=stats.limit_closes,
        refused_joins=stats.refused_joins,
        subscriptions=source.hub.subscriber_count(),
        published=source.hub.messages_published,
        topics=len(source.engine.topics()),
        tiers={
            tier: {
                "connections": tier_connections.get(tier, 0),
                "events_delivered": counts[SENT],
                "events_held_back_by_tier": counts[HELD_BY_TIER],
                "events_held_back_by_filter": counts[HELD_BY_FILTER],
            }
            for tier in sorted(set(tier_connections) | set(stats.tiers))
            for counts in [stats.tiers.get(tier, [0, 0, 0, 0])]
        },
    )


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("children", ()):
        yield from _walk(child)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class RtCollector:
    """Reads a server's counters and actor tree at scrape time (prometheus Collector)."""

    def __init__(self, source: MetricsSource) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        # Names are not checked against other collectors: the registry is this server's own.
        return []

    def collect(self) -> Iterable[Metric]:
        source = self.source
        t = totals(source)
        stats = source.stats

        open_ = GaugeMetricFamily(
            "rt_connections_open", "WebSocket connections open now, by dialect.", labels=["dialect"]
        )
        for dialect, count in t.connections_by_dialect.items():
            open_.add_metric([dialect], count)
        yield open_
        yield _counter(
            "rt_connections_accepted_total",
            "WebSocket connections accepted (authenticated and started) since the start.",
            t.connections_accepted,
        )
        yield _gauge(
            "rt_subscriptions",
            "Subscriptions now: one per connection and topic it receives.",
            t.subscriptions,
        )
        yield _counter(
            "rt_messages_received_total",
            "WebSocket messages received from clients (client to server).",
            t.messages_received,
        )
        yield _counter(
            "rt_messages_sent_total",
            "WebSocket messages written to clients (server to client).",
            t.messages_sent,
        )
        yield _counter(
            "rt_sent_bytes_total",
            "Bytes of the messages written to clients, WebSocket framing included.",
            t.bytes_sent,
        )
        yield self._latency(stats)
        yield _counter(
            "rt_outbox_coalesced_total",
            "Updates merged into a pending one for a client that fell behind (slow step 1).",
            t.coalesced,
        )
        yield _counter(
            "rt_outbox_resyncs_total",
            "Backlogs of a topic replaced by a fresh snapshot for a client (slow step 2).",
            t.resyncs,
        )
        yield _counter(
            "rt_outbox_duplicates_dropped_total",
            "Updates a client already had, dropped before they were queued.",
            t.duplicates_dropped,
        )
        yield _counter(
            "rt_heartbeat_timeouts_total",
            "Connections closed because the client sent nothing within the idle timeout.",
            t.heartbeat_timeouts,
        )
        yield _counter(
            "rt_slow_consumer_closes_total",
            "Connections closed as slow consumers (socket unwritable past the write deadline, "
            "or too many unread replies).",
            t.slow_consumer_closes,
        )
        yield _counter(
            "rt_invalid_messages",
            "Client messages answered with an error (bad JSON, bad fields, a limit).",
            t.invalid_messages,
        )
        yield _counter(
            "rt_limit_closes",
            "Connections closed with 4429: too many messages, or too many invalid ones.",
            t.limit_closes,
        )
        yield _counter(
            "rt_refused_joins",
            "Subscriptions refused by the connection's caps (subscriptions, new topics).",
            t.refused_joins,
        )
        yield _counter(
            "rt_published_updates_total",
            "Updates published through the engine (every topic, health probes included).",
            t.published,
        )
        yield _gauge("rt_topics", "Topics the engine knows.", t.topics)
        yield from self._tiers(t)
        yield from self._tree()

    @staticmethod
    def _tiers(t: Totals) -> Iterator[Metric]:
        connections = GaugeMetricFamily(
            "rt_tier_connections",
            "Predictions-dialect connections open now, by tier.",
            labels=["tier"],
        )
        delivered = CounterMetricFamily(
            "rt_tier_events_delivered",
            "Predictions-dialect events offered to connections that wanted them, by tier.",
            labels=["tier"],
        )
        held = CounterMetricFamily(
            "rt_tier_events_held_back",
            "Predictions-dialect events not sent to a subscribed connection, by tier and "
            "reason (tier: its plan does not allow the event type; filter: its filters).",
            labels=["tier", "reason"],
        )
        for tier, counts in t.tiers.items():
            connections.add_metric([tier], counts["connections"])
            delivered.add_metric([tier], counts["events_delivered"])
            held.add_metric([tier, "tier"], counts["events_held_back_by_tier"])
            held.add_metric([tier, "filter"], counts["events_held_back_by_filter"])
        yield connections
        yield delivered
        yield held

    @staticmethod
    def _latency(stats: ConnectionStats) -> HistogramMetricFamily:
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS_S, stats.latency_counts, strict=False):
            cumulative += count
            buckets.append((str(bound), cumulative))
        buckets.append(("+Inf", sum(stats.latency_counts)))
        return HistogramMetricFamily(
            "rt_publish_to_send_latency_seconds",
            "Seconds from the engine accepting an update (its ts) to its being written to the "
            "sockets: one observation per update fanned out by a room, and one per batch "
            "a backlogged writer sends, from its oldest update.",
            buckets=buckets,
            sum_value=stats.latency_sum_s,
        )

    def _tree(self) -> Iterator[Metric]:
        system = self.source.system
        tree = system.tree()
        actors: dict[str, int] = {}
        restarts: dict[str, int] = {}
        depth: dict[str, int] = {}
        feeds: list[dict[str, Any]] = []
        for node in _walk(tree):
            kind = node["kind"] or RESTARTING_KIND
            actors[kind] = actors.get(kind, 0) + 1
            restarts[kind] = restarts.get(kind, 0) + node["restarts"]
            mailbox = node["mailbox"]
            depth[kind] = depth.get(kind, 0) + (mailbox["depth"] if mailbox else 0)
            if node["path"] == "feeds":
                feeds = node.get("children", [])

        def by_kind(name: str, doc: str, values: dict[str, int]) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=["kind"])
            for kind in sorted(values):
                family.add_metric([kind], values[kind])
            return family

        yield by_kind("rt_actors", "Actors in the tree now, by kind.", actors)
        yield by_kind(
            "rt_actor_restarts",
            "Restarts of the actors in the tree now, by kind (an actor that is gone no longer "
            "counts, so this is a gauge).",
            restarts,
        )
        yield by_kind(
            "rt_mailbox_depth_messages",
            "Messages waiting in the actors' mailboxes, summed by kind.",
            depth,
        )
        state = GaugeMetricFamily(
            "rt_feed_state",
            "1 for each upstream feed, labelled with its current state.",
            labels=["feed", "state"],
        )
        attempts = GaugeMetricFamily(
            "rt_feed_connect_attempts",
            "Connection attempts of each upstream feed since its actor started, as it reports "
            "them (describe()['attempts_total']).",
            labels=["feed"],
        )
        for feed in feeds:
            info = feed.get("info") or {}
            state.add_metric([feed["name"], str(info.get("state") or feed["state"])], 1)
            tries = info.get("attempts_total", info.get("attempts"))
            if isinstance(tries, int | float) and not isinstance(tries, bool):
                attempts.add_metric([feed["name"]], tries)
        yield state
        yield attempts
        yield _gauge(
            "rt_uptime_seconds",
            "Seconds since the server's actor system started.",
            tree["uptime_s"],
        )


def build_registry(source: MetricsSource) -> CollectorRegistry:
    """A registry of this server's metrics alone (not prometheus_client's global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RtCollector(source))
    return registry


def metrics_router(server: Server) -> APIRouter:
    """GET /metrics in the Prometheus text format. No auth: Prometheus scrapes it."""
    registry = build_registry(server)
    router = APIRouter(tags=["operations"])

    # async: it must run on the Trio thread that owns the actors, not in a worker thread.
    @router.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Every rt_* metric (docs/operations.md lists them)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
