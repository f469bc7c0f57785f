"""Operator endpoints of seed 002, on rt's own counters and actor tree.

    GET  /realtime/health            delivery check, engine, listeners, feeds (503: not delivering)
    GET  /realtime/stats             the seed's stats shape, plus rt's own counters
    GET  /realtime/connections/{id}  one connection actor's node of the tree (404 if none)

POST /realtime/broadcast, seed 002's event publish, is the predictions dialect's route
(rt/dialects/predictions/routes.py).

Health means delivery, not liveness (shared/DESIGN.md): each health check subscribes an
in-process outbox to a private topic (``system:probe``, which no client dialect can name),
publishes one update through the hub and the engine, and waits until the outbox hands it
out, exactly as a connection's writer would. Only then is the server healthy; the measured
latency is in the answer. Errors are JSON ``{"code", "message"}`` like the rest of the API;
this router builds them itself so that it works in any app it is mounted in.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import trio
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from actors import ActorSystem
from rt.delivery.hub import Hub
from rt.delivery.outbox import Outbox
from rt.http.errors import error_response
from rt.http.metrics import totals
from rt.model import Json, Update
from rt.topics import system_topic
from rt.ws.frames import frame_text

if TYPE_CHECKING:
    from rt.server import Server

log = logging.getLogger(__name__)

__all__ = ["PROBE_TOPIC", "ops_router", "probe_delivery", "realtime_stats"]

#: The health check's private topic. Client dialects map their ids to market:/event:/user:
#: topics, so no client can subscribe to it or publish on it.
PROBE_TOPIC = system_topic("probe")
#: How long a health check waits for its probe to be delivered before answering 503.
PROBE_TIMEOUT_S = 1.0
#: A delivery slower than this makes the server "degraded" (still 200).
SLOW_PROBE_S = 0.25
#: Feed states that count as working (a feed reports its state in describe()["state"]).
FEED_OK_STATES = frozenset({"running", "connected"})


class _ProbeCodec:
    """The probe subscriber's dialect: short frames nobody parses (the outbox needs one)."""

    name = "probe"

    def encode_error(self, code: str, message: str) -> str:
        return f"probe error {code}"

    def encode_update(self, update: Update) -> str:
        return f"probe update {update.seq}"

    def encode_conflated(self, topic: str, *, from_seq: int, seq: int, ts: int, patch: Json) -> str:
        return f"probe update {from_seq}..{seq}"

    def encode_snapshot(
        self,
        topic: str,
        *,
        epoch: str,
        seq: int,
        ts: int,
        state: Json,
        resync: bool = False,
        recovered: bool | None = None,
        reason: str | None = None,
    ) -> str:
        return f"probe snapshot {seq}"

    def encode_resumed(
        self, topic: str, *, recovered: bool, from_seq: int, to_seq: int, reason: str | None
    ) -> str:
        return f"probe resumed {from_seq}..{to_seq}"

    def encode_broadcast(self, event_type: str, data: Json, *, ts: int) -> str:
        return f"probe broadcast {event_type}"

    def encode_engine_status(self, available: bool, topics: list[str], *, ts: int) -> list[str]:
        return []


PROBE_CODEC = _ProbeCodec()


async def probe_delivery(hub: Hub, *, timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Publish one update on PROBE_TOPIC and wait until a subscriber's outbox hands it out.

    Returns ``{"ok": True, "topic", "seq", "latency_ms"}`` (publish to hand-out), or
    ``{"ok": False, "topic", "error"}`` when it did not arrive within ``timeout_s`` or the
    publish itself failed.
    """

    def resync(topic: str) -> None:
        hub.request_resync(topic, outbox)

    outbox = Outbox(
        PROBE_CODEC,
        capacity=64,
        high_water=64,
        control_capacity=64,
        request_resync=resync,
        on_overflow=lambda: None,
    )
    answer: dict[str, Any] = {"ok": False, "topic": PROBE_TOPIC}
    try:
        with trio.move_on_after(timeout_s):
            await hub.join(PROBE_TOPIC, outbox, since=None, epoch=None, announce=False)
            # Joined once the room has handed out its snapshot (a room that had to be
            # started may not exist yet when join returns); the probe is published after.
            while not any(b"probe snapshot" in f for f in await outbox.take_batch()):
                pass
            started = trio.current_time()
            update = await hub.publish(PROBE_TOPIC, {"probe": started}, kind="event")
            expected = frame_text(PROBE_CODEC.encode_update(update))
            while expected not in await outbox.take_batch():
                pass
            latency_s = trio.current_time() - started
            answer.update(ok=True, seq=update.seq, latency_ms=round(latency_s * 1000, 3))
            return answer
    except Exception as exc:  # the check reports any failure; Cancelled is not an Exception
        answer["error"] = f"{type(exc).__name__}: {exc}"
        return answer
    finally:
        hub.leave(PROBE_TOPIC, outbox)
        outbox.close()
    answer["error"] = f"the probe update was not delivered within {timeout_s:g} s"
    return answer


def _uptime_s(system: ActorSystem) -> float:
    for cell in system.registry.cells():
        if cell.path == "":
            return cell.uptime_s()
    return 0.0


def realtime_stats(server: Server) -> dict[str, Any]:
    """Seed 002's stats and rt's counters (GET /realtime/stats, and the predictions dialect's
    get_stats). Errors are connections the server closed on a client's fault: heartbeat
    timeouts, slow-consumer and limit closes. ``tiers``: the predictions dialect's
    connections and events, per tier."""
    t = totals(server)
    uptime_s = _uptime_s(server.system)
    total = t.messages_received + t.messages_sent
    errors = t.heartbeat_timeouts + t.slow_consumer_closes + t.limit_closes
    return {
        "active_connections": t.connections_open,
        "total_messages": total,
        "error_rate": errors / max(total, 1),
        "uptime_seconds": round(uptime_s, 3),
        "messages_per_second": round(total / max(uptime_s, 1.0), 3),
        **dataclasses.asdict(t),
    }


def ops_router(server: Server, *, probe_timeout_s: float = PROBE_TIMEOUT_S) -> APIRouter:
    """The /realtime/* routes (seed 002's operator endpoints) for ``server``."""
    settings = server.settings
    router = APIRouter(prefix="/realtime", tags=["operations"])

    @router.get("/health", responses={503: {"description": "not delivering"}})
    async def health() -> JSONResponse:
        """Healthy only if an update published now reaches a subscriber (503 otherwise).

        ``status``: healthy; degraded (delivering, but slowly or with a feed down: 200);
        unhealthy (not delivering, or the engine or the public listener is down: 503).
        """
        delivery = await probe_delivery(server.hub, timeout_s=probe_timeout_s)
        system = server.system
        actors: dict[str, str] = {}
        feeds: dict[str, str] = {}
        uptime_s = 0.0
        for cell in system.registry.cells():
            if cell.path == "":
                uptime_s = cell.uptime_s()
            elif cell.path in ("engine", "public", "admin"):
                actors[cell.path] = cell.state.value
            elif cell.path == f"feeds/{cell.name}":  # the feeds themselves, not their parts
                state = cell.actor.describe().get("state", cell.state.value)
                feeds[cell.name] = str(state)
        up = {name: actors.get(name, "down") for name in ("engine", *server.ports)}
        if not delivery["ok"] or up["engine"] != "running" or up["public"] != "running":
            status = "unhealthy"
        elif delivery["latency_ms"] > SLOW_PROBE_S * 1000 or any(
            state not in FEED_OK_STATES for state in feeds.values()
        ):
            status = "degraded"
        else:
            status = "healthy"
        body = {
            "status": status,
            "delivery": delivery,
            "engine": {
                "state": up["engine"],
                "url": settings.engine_url,
                "topics": len(server.engine.topics()),
            },
            "listeners": {
                role: {"state": up[role], "port": port} for role, port in server.ports.items()
            },
            "feeds": feeds,
            "connections": server.stats.open,
            "uptime_seconds": round(uptime_s, 3),
        }
        if status == "unhealthy":
            log.warning("health check: unhealthy: %s", delivery.get("error") or up)
        return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)

    @router.get("/stats")
    async def stats() -> dict[str, Any]:
        """Seed 002's stats (active_connections, total_messages, error_rate, uptime_seconds,
        messages_per_second), per tier, and rt's own counters."""
        return realtime_stats(server)

    @router.get("/connections/{connection_id}", responses={404: {"description": "no such"}})
    async def connection(connection_id: str) -> JSONResponse:
        """The connection actor's node of the tree (``c12``: the actor's name under conns):
        state, mailbox, uptime, and its info (user, dialect, subscriptions, outbox)."""
        tree = server.system.tree()
        for conns in tree.get("children", ()):
            if conns["path"] != "conns":
                continue
            for node in conns.get("children", ()):
                if node["name"] == connection_id and node["kind"] == "connection":
                    return JSONResponse({"id": connection_id, **node})
        return error_response(404, "NOT_FOUND", f"no open connection {connection_id!r}")

    return router
