"""Operator routes: the live actor tree, fault injection, and a page that shows both.

    GET    /debug               the operator page (a static shell: no data, no secrets)
    GET    /debug/actors        the actor tree, with a summary          (admin)
    GET    /debug/faults        the armed faults                        (admin)
    POST   /debug/faults        arm a fault                             (admin)
    DELETE /debug/faults        disarm every fault                      (admin)
    DELETE /debug/faults/{id}   disarm one fault                        (admin)

The page asks the operator for the admin token and sends it as ``Authorization: Bearer``
on its own requests, so the token never appears in a URL (URLs end up in logs). Errors are
JSON ``{"code", "message"}`` like the rest of the HTTP API (rt/http/errors.py).
docs/operations.md documents every field.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from actors import FaultAction
from rt.http.admin import require_admin
from rt.http.errors import error_response
from rt.http.pages import page as static_page

if TYPE_CHECKING:
    from rt.server import Server

log = logging.getLogger(__name__)

#: What POST /debug/faults accepts as "action": the runtime's actions, and "cut".
ACTIONS = ("crash", "delay", "drop", "stall", "cut")
#: The fault point at which a feed actor cuts its upstream connection ("cut" arms a drop there).
UPSTREAM_POINT = "upstream"
FIELDS = ("action", "actor", "kind", "point", "count", "after", "delay_s")

_NO_STORE = {"Cache-Control": "no-store"}

_FAULT_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["action"],
    "properties": {
        "action": {"type": "string", "enum": list(ACTIONS)},
        "actor": {"type": "string", "description": "a path (rooms/market:1001) or a name"},
        "kind": {"type": "string", "description": "every actor of this kind (room, feed, ...)"},
        "point": {"type": "string", "default": "message"},
        "count": {"type": ["integer", "null"], "minimum": 1},
        "after": {"type": "integer", "minimum": 0, "default": 0},
        "delay_s": {"type": "number", "minimum": 0, "default": 0},
    },
}


class InvalidFault(ValueError):
    """A POST /debug/faults body that cannot be armed; the message names the problem."""


def _json(payload: Any, status: int = 200) -> Response:
    # default=str: one actor's describe() returning something odd must not hide the whole
    # tree from an operator in the middle of an incident.
    return Response(
        json.dumps(payload, default=str),
        status_code=status,
        media_type="application/json",
        headers=_NO_STORE,
    )


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("children", ()):
        yield from _walk(child)


def summarize(tree: dict[str, Any], faults_armed: int) -> dict[str, Any]:
    """Counts over the whole tree, for the page's header and for scripts."""
    nodes = list(_walk(tree))
    return {
        "actors": len(nodes),
        "states": dict(Counter(str(n["state"]) for n in nodes)),
        "kinds": dict(Counter(str(n["kind"]) for n in nodes if n["kind"] is not None)),
        "restarts": sum(int(n["restarts"]) for n in nodes),
        "with_errors": sum(1 for n in nodes if n["last_error"] is not None),
        "faults": faults_armed,
    }


def _matches(fault: dict[str, Any], nodes: list[dict[str, Any]]) -> list[str]:
    """The paths of the live actors ``fault`` targets now (the runtime's own rule)."""
    actor, kind = fault["actor"], fault["kind"]
    out = []
    for node in nodes:
        if node["path"] == "/" or node["kind"] is None:
            continue  # the root is not a target; a restarting slot has no actor yet
        if actor is not None and actor in (node["path"], node["name"]):
            out.append(node["path"])
        elif actor is None and node["kind"] == kind:
            out.append(node["path"])
    return out


def _integer(body: dict[str, Any], name: str, *, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFault(f"expected {name} to be an integer, got {json.dumps(value)}")
    if value < minimum:
        raise InvalidFault(f"expected {name} to be at least {minimum}, got {value}")
    return value


def _target(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidFault(f"expected {name} to be a non-empty string, got {json.dumps(value)}")
    return value.strip()


def parse_fault(body: Any) -> dict[str, Any]:
    """Check a POST /debug/faults body; return the keyword arguments of ``FaultPlan.arm``.

    Raises InvalidFault naming the first problem found.
    """
    if not isinstance(body, dict):
        raise InvalidFault(f"expected a JSON object, got {json.dumps(body)[:80]}")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidFault(
            f"unknown field {', '.join(repr(u) for u in unknown)}; expected {', '.join(FIELDS)}"
        )
    action = body.get("action")
    if action not in ACTIONS:
        raise InvalidFault(
            f"expected action to be one of {', '.join(ACTIONS)}, got {json.dumps(action)}"
        )
    actor = _target(body, "actor")
    kind = _target(body, "kind")
    if (actor is None) == (kind is None):
        raise InvalidFault("give exactly one of actor (a path or a name) or kind")
    if actor is not None:
        # The tree shows paths without a leading "/" except the root's, which is no target:
        # a crash there would take the whole server down.
        actor = actor.lstrip("/")
        if actor in ("", "root"):
            raise InvalidFault("the root supervisor cannot be a fault's target")
    point = body.get("point", "message")
    if not isinstance(point, str) or not point.strip():
        raise InvalidFault(f"expected point to be a non-empty string, got {json.dumps(point)}")
    point = point.strip()
    count = _integer(body, "count", minimum=1)
    after = _integer(body, "after", minimum=0) or 0
    delay_s = body.get("delay_s", 0)
    if (
        isinstance(delay_s, bool)
        or not isinstance(delay_s, int | float)
        or not math.isfinite(delay_s)
        or delay_s < 0
    ):
        raise InvalidFault(
            f"expected delay_s to be a number of seconds >= 0, got {json.dumps(delay_s)}"
        )
    if action == "delay" and delay_s <= 0:
        raise InvalidFault("a delay needs delay_s > 0")
    if action != "delay" and delay_s != 0:
        raise InvalidFault(f"delay_s applies only to action delay, not {action}")
    if action == "cut":
        # A cut is a drop at the feed's "upstream" point: the feed's fault_point("upstream")
        # returns True and the feed closes its upstream connection (then reconnects).
        if "point" in body and point != UPSTREAM_POINT:
            raise InvalidFault(f"a cut acts at point {UPSTREAM_POINT!r}, got {point!r}")
        action, point = FaultAction.DROP.value, UPSTREAM_POINT
    return {
        "action": action,
        "actor": actor,
        "kind": kind,
        "point": point,
        "count": count,
        "after": after,
        "delay_s": float(delay_s),
    }


def create_debug_router(server: Server) -> APIRouter:
    """The /debug routes for ``server``; every data route needs the admin token."""
    router = APIRouter(tags=["debug"])
    system = server.system

    def faults_now() -> list[dict[str, Any]]:
        nodes = list(_walk(system.tree()))
        return [{**fault, "matches": _matches(fault, nodes)} for fault in system.faults.list()]

    @router.get("/debug", include_in_schema=False)
    async def page() -> HTMLResponse:
        # rt/http/static/debug.html: no data and no secret. It asks for the admin token,
        # keeps it in sessionStorage (this tab only) and writes everything with textContent
        # (actor info can carry text that came from clients).
        html, policy = static_page("debug.html")
        return HTMLResponse(
            html,
            headers={
                **_NO_STORE,
                "Content-Security-Policy": policy,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "X-Frame-Options": "DENY",
            },
        )

    @router.get("/debug/actors")
    async def actors(request: Request) -> Response:
        """The whole actor tree: ``{generatedAt, summary, tree}``, see docs/operations.md."""
        require_admin(server.admin_gate, request)
        tree = system.tree()
        return _json(
            {
                "generatedAt": server.settings.wall_ms(),
                "summary": summarize(tree, len(system.faults.list())),
                "tree": tree,
            }
        )

    @router.get("/debug/faults")
    async def list_faults(request: Request) -> Response:
        """The armed faults, oldest first, each with the live actors it matches now."""
        require_admin(server.admin_gate, request)
        return _json({"faults": faults_now()})

    @router.post(
        "/debug/faults",
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _FAULT_BODY_SCHEMA}},
            }
        },
    )
    async def arm(request: Request) -> Response:
        """Arm a fault on an actor (path or name) or on every actor of a kind. Actions:
        crash, delay, drop, stall, and cut (a drop at a feed's ``upstream`` point). 201 with
        the armed fault; 400 ``INVALID_FAULT`` naming the problem."""
        require_admin(server.admin_gate, request)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return error_response(400, "INVALID_FAULT", "the body is not valid JSON")
        try:
            options = parse_fault(body)
        except InvalidFault as exc:
            return error_response(400, "INVALID_FAULT", str(exc))
        action = options.pop("action")
        try:
            fault = system.faults.arm(action, **options)
        except ValueError as exc:  # the runtime's own checks; parse_fault makes these rare
            return error_response(400, "INVALID_FAULT", str(exc))
        armed = fault.describe()
        log.warning("debug: armed fault %s", armed)
        nodes = list(_walk(system.tree()))
        return _json({**armed, "matches": _matches(armed, nodes)}, status=201)

    @router.delete("/debug/faults")
    async def disarm_all(request: Request) -> Response:
        """Disarm every fault (and release stalled actors); says how many."""
        require_admin(server.admin_gate, request)
        disarmed = system.faults.disarm()
        log.warning("debug: disarmed all faults (%d)", disarmed)
        return _json({"disarmed": disarmed})

    @router.delete("/debug/faults/{fault_id}")
    async def disarm(fault_id: str, request: Request) -> Response:
        """Disarm one fault (releasing what it stalls); 404 if no armed fault has that id."""
        require_admin(server.admin_gate, request)
        try:
            number = int(fault_id)
        except ValueError:
            return error_response(
                400, "INVALID_FAULT", f"a fault id is an integer, got {fault_id!r}"
            )
        if not system.faults.disarm(number):
            return error_response(404, "NO_SUCH_FAULT", f"no armed fault has id {number}")
        log.warning("debug: disarmed fault %d", number)
        return _json({"disarmed": 1})

    return router
