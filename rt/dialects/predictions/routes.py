"""POST /realtime/broadcast: seed 002's event publish (admin token).

The body is a RealtimeEvent (``event_type``, ``data``, and optionally ``timestamp``,
``source``, ``correlation_id``, ``idempotency_key``). It is published on its topics and every
predictions connection whose subscriptions match receives it. The other dialects' clients
receive system events (``system_alert``, ``system_status``) as a control message in their
own form, as before. The answer:

    {"event_type", "topic", "seq", "timestamp", "matched", "matched_by_dialect"}

A repeat of an idempotency key within five minutes answers the first result again (with the
header ``Idempotent-Replayed: true``) and publishes nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from rt.dialects.predictions.codec import CODEC
from rt.dialects.predictions.events import BROADCAST_FIELDS, PUBLISHABLE, BadEvent
from rt.dialects.predictions.publisher import EventPublisher
from rt.http.admin import require_admin
from rt.http.errors import error_response
from rt.jsontext import loads
from rt.ws.notices import tell_every_connection

if TYPE_CHECKING:
    from rt.server import Server

log = logging.getLogger(__name__)

#: Event types the other dialects' clients receive too, as a control message.
SYSTEM_EVENTS = ("system_alert", "system_status")

_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["event_type", "data"],
    "properties": {
        "event_type": {"type": "string", "enum": list(PUBLISHABLE)},
        "type": {"type": "string", "description": "an older name of event_type"},
        "data": {"type": "object", "description": "what the clients receive as data"},
        "timestamp": {"type": "string", "description": "ISO 8601; the server's time if absent"},
        "source": {"type": "string"},
        "correlation_id": {"type": "string"},
        "idempotency_key": {
            "type": "string",
            "description": "the same key within 5 minutes publishes once",
        },
    },
}
assert set(_SCHEMA["properties"]) == set(BROADCAST_FIELDS)


def routes(server: Server) -> APIRouter:
    router = APIRouter(tags=["predictions"])

    @router.post(
        "/realtime/broadcast",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _SCHEMA}},
            }
        },
        responses={401: {"description": "no admin token"}, 400: {"description": "bad event"}},
    )
    async def broadcast(request: Request) -> JSONResponse:
        """Publish a RealtimeEvent to every predictions connection it matches (and a system
        event to every other connection too); answers where it was published and how many
        connections it matched."""
        require_admin(server.admin_gate, request)
        try:
            # rt's own parser: a NaN or a lone surrogate in ``data`` could be sent to nobody.
            body = loads((await request.body()).decode("utf-8"))
        except ValueError as exc:
            return error_response(400, "INVALID_REQUEST", f"the body is not valid JSON: {exc}")
        publisher = EventPublisher.for_server(server)
        try:
            answer, repeated = await publisher.publish_body(body)
        except BadEvent as exc:
            return error_response(400, "INVALID_REQUEST", str(exc))
        if repeated:
            return JSONResponse(answer, headers={"Idempotent-Replayed": "true"})
        by_dialect = {CODEC.name: answer["matched"]}
        if answer["event_type"] in SYSTEM_EVENTS:
            told = tell_every_connection(
                server.system,
                answer["event_type"],
                body["data"],
                ts=server.settings.wall_ms(),
                skip=CODEC,  # predictions clients got it through its topic
            )
            by_dialect.update(told)
        answer["matched"] = sum(by_dialect.values())
        answer["matched_by_dialect"] = by_dialect
        log.info(
            "broadcast %s on %s seq %d: %d connections",
            answer["event_type"],
            answer["topic"],
            answer["seq"],
            answer["matched"],
        )
        return JSONResponse(answer)

    return router
