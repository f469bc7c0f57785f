"""The HTTP API (FastAPI on Hypercorn): tokens, snapshots, history, health, admin publish.

Errors are JSON ``{"code": ..., "message": ...}`` with the status that fits (400, 401, 404,
410, 413 for a body over ``max_http_body_bytes``, 429 for an address that failed admin
authentication too often). FastAPI publishes the OpenAPI document at /openapi.json (docs at /docs).
"""

from __future__ import annotations

import time
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictInt, StrictStr

from rt.auth import AuthError, issue_token, verify_token
from rt.delivery.publishing import PublishInvalid, parse_batch_json, parse_update, publish_batch
from rt.dialects import DIALECTS
from rt.dialects.base import ProtocolError
from rt.http.admin import require_admin as admin_check
from rt.http.debug import create_debug_router
from rt.http.errors import ApiError, error_response
from rt.http.errors import install as install_error_handlers
from rt.http.limits import BodyLimit
from rt.http.metrics import metrics_router, totals
from rt.http.ops import ops_router
from rt.http.pages import pages_router
from rt.jsontext import show
from rt.model import HistoryGone, Snapshot
from rt.topics import EVENT_PREFIX, MARKET_PREFIX, market_id, market_topic, parse_market_id

if TYPE_CHECKING:
    from rt.server import Server

MAX_UPDATES_LIMIT = 1000
DEFAULT_UPDATES_LIMIT = 200
#: The largest body POST /admin/publish reads (413 beyond): 1,000 updates of 8 KiB each.
MAX_PUBLISH_BODY_BYTES = 8 * 1024 * 1024


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: ``user_id`` too, as the predictions dialect's clients (seed 002) name it.
    userId: StrictInt | StrictStr = Field(validation_alias=AliasChoices("userId", "user_id"))
    scopeMarkets: list[StrictInt | StrictStr] | None = None
    ttlSeconds: StrictInt | None = Field(default=None, ge=1)
    tier: Literal["free", "premium"] = Field(
        default="free", description="the plan the predictions dialect enforces (seed 002)"
    )


class TokenResponse(BaseModel):
    token: str
    expiresAt: int = Field(description="expiry, in milliseconds since the Unix epoch")


class OverrideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    marketId: StrictInt | StrictStr
    payload: dict[str, Any] = Field(description="an RFC 7396 merge patch on the market's state")


class OverrideResponse(BaseModel):
    marketId: int | str
    seq: int
    ts: int


class SnapshotResponse(BaseModel):
    marketId: int | str
    seq: int
    ts: int
    epoch: str
    payload: dict[str, Any]


class TopicSummary(BaseModel):
    seq: int = Field(description="the topic's latest seq (0: never published)")
    epoch: str
    updatedAt: int = Field(description="the latest update's time, ms since the Unix epoch")


class MarketSummary(TopicSummary):
    marketId: int | str


class EventSummary(TopicSummary):
    eventId: str


class UpdatesResponse(BaseModel):
    marketId: int | str
    fromSeq: int
    toSeq: int
    epoch: str
    updates: list[dict[str, Any]]


class HealthResponse(BaseModel):
    connections: int
    topics: int
    messages_sent: int


def describe_problem(error: Any) -> str:
    """One validation problem in words, naming the field (pydantic's ``loc``)."""
    loc = [str(p) for p in error.get("loc", ()) if p != "body"]
    kind = error.get("type", "")
    if kind == "json_invalid":
        detail = error.get("ctx", {}).get("error", "")
        return f"the body is not valid JSON ({detail})".replace(" ()", "")
    where = ".".join(loc) or "the body"
    if kind == "missing":
        return f"{where} is required" if loc else "the body is required (a JSON object)"
    if not loc and isinstance(error.get("input"), bytes):
        return "the body must be a JSON object, sent with Content-Type: application/json"
    if kind == "extra_forbidden":
        return f"{where} is not a field of this request"
    message = str(error.get("msg", "is invalid"))
    message = message[0].lower() + message[1:] if message else message
    received = error.get("input")
    shown = (
        show(received)
        if isinstance(received, str | int | float | bool | None)
        else type(received).__name__
    )
    return f"{where}: {message}, got {shown}"


def _market(raw: object) -> str:
    try:
        return parse_market_id(raw, field="marketId")
    except ValueError as exc:
        raise ApiError(400, "INVALID_REQUEST", str(exc)) from None


#: The operators' paths (HTTP and WebSocket), which ``--admin-port`` can take off the public
#: port (``admin_routes_on_public_port``).
OPERATOR_PREFIXES = ("/debug", "/metrics", "/admin", "/ws/publish")


def is_operator_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in OPERATOR_PREFIXES)


class HideOperatorRoutes:
    """ASGI middleware: the operator paths answer 404, as if they did not exist here."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and is_operator_path(scope["path"]):
            response = error_response(404, "NOT_FOUND", f"no route {scope['path']} on this port")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


#: Where /docs loads Swagger UI from: the swagger-ui-bundle package's files, served by rt.
DOCS_ASSETS = "/docs/assets"


def mount_api_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with every asset served by rt itself (FastAPI's default page
    loads them from a CDN, and is blank offline)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from starlette.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="rt API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )


def create_app(server: Server, *, operator_routes: bool = True) -> FastAPI:
    """The HTTP API. Without ``operator_routes``, /debug, /metrics and /admin answer 404
    (they are served on the admin port instead)."""
    settings = server.settings
    app = FastAPI(
        title="rt",
        version="0.1.0",
        description="Realtime odds push server: tokens, snapshots, history and admin publish.",
        # /docs is served below from an installed package, so it works with no internet.
        docs_url=None,
        redoc_url=None,
    )
    mount_api_docs(app)
    if not operator_routes:
        app.add_middleware(HideOperatorRoutes)

    install_error_handlers(app, describe_problem)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_http_body_bytes,
        per_path={"/admin/publish": MAX_PUBLISH_BODY_BYTES},
    )

    def require_admin(request: Request) -> None:
        admin_check(server.admin_gate, request)

    @app.post("/api/ws/token", response_model=TokenResponse, tags=["auth"])
    async def make_token(body: TokenRequest, request: Request) -> TokenResponse:
        """A short-lived JWT for ``/ws/odds``. Needs the admin token unless the server runs
        with --dev. ttlSeconds defaults to 600 and may not exceed 86400."""
        if not settings.dev:
            require_admin(request)
        ttl = settings.token_default_ttl_s if body.ttlSeconds is None else body.ttlSeconds
        if ttl > settings.token_max_ttl_s:
            raise ApiError(
                400,
                "INVALID_REQUEST",
                f"ttlSeconds may be at most {settings.token_max_ttl_s}, got {ttl}",
            )
        scope = None
        if body.scopeMarkets is not None:
            scope = [_market(m) for m in body.scopeMarkets]
        token, expires_at = issue_token(
            secret=settings.jwt_secret,
            user_id=body.userId,
            scope_markets=scope,
            ttl_s=ttl,
            now_s=time.time(),
            tier=body.tier,
        )
        return TokenResponse(token=token, expiresAt=expires_at)

    @app.get(
        "/api/markets/{market}/odds/snapshot", response_model=SnapshotResponse, tags=["markets"]
    )
    async def snapshot(market: str) -> SnapshotResponse:
        """The market's whole state at its latest seq (seq 0 and {} if never published)."""
        mid = _market(market)
        snap = await server.engine.snapshot(market_topic(mid))
        return SnapshotResponse(
            marketId=market_id(mid), seq=snap.seq, ts=snap.ts, epoch=snap.epoch, payload=snap.state
        )

    @app.get("/api/markets/{market}/odds/updates", response_model=UpdatesResponse, tags=["markets"])
    async def updates(
        market: str, since_seq: int = 0, limit: int = DEFAULT_UPDATES_LIMIT
    ) -> UpdatesResponse:
        """The updates after ``since_seq``, oldest first, at most ``limit`` (1-1000). 410 when
        some of them are older than the history the server still holds: fetch the snapshot."""
        mid = _market(market)
        if since_seq < 0:
            raise ApiError(400, "INVALID_REQUEST", f"since_seq must be >= 0, got {since_seq}")
        if not 1 <= limit <= MAX_UPDATES_LIMIT:
            raise ApiError(
                400, "INVALID_REQUEST", f"limit must be 1..{MAX_UPDATES_LIMIT}, got {limit}"
            )
        topic = market_topic(mid)
        try:
            found = await server.engine.updates(topic, since_seq=since_seq, limit=limit)
        except HistoryGone as gone:
            raise ApiError(
                410,
                "HISTORY_GONE",
                f"updates after seq {since_seq} are no longer held (history starts at seq "
                f"{gone.first_seq}); fetch the snapshot",
                firstSeq=gone.first_seq,
            ) from None
        epoch, latest = server.engine.position(topic)
        wire_id = market_id(mid)
        return UpdatesResponse(
            marketId=wire_id,
            fromSeq=since_seq,
            # Never past the server's seq: a client ahead of it (another epoch) must not keep
            # an offset the server has not reached.
            toSeq=found[-1].seq if found else min(since_seq, latest),
            epoch=epoch,
            updates=[
                {
                    "type": "odds_update",
                    "marketId": wire_id,
                    "seq": u.seq,
                    "ts": u.ts,
                    "payload": u.data,
                }
                for u in found
            ],
        )

    async def live(prefix: str) -> list[tuple[str, Snapshot]]:
        """The engine's topics under ``prefix`` that hold data, by name."""
        found = []
        for topic in sorted(t for t in server.engine.topics() if t.startswith(prefix)):
            snap = await server.engine.snapshot(topic)
            if snap.seq > 0:
                found.append((topic[len(prefix) :], snap))
        return found

    @app.get("/api/markets", response_model=list[MarketSummary], tags=["markets"])
    async def markets() -> list[MarketSummary]:
        """The markets that have data (KMarket, ``/ws/odds``), with their latest ``seq``.
        Subscribing to any other id works too (it waits for its first publish): this list
        is for catching a mistyped id."""
        return [
            MarketSummary(marketId=market_id(name), seq=s.seq, epoch=s.epoch, updatedAt=s.ts)
            for name, s in await live(MARKET_PREFIX)
        ]

    @app.get("/api/events", response_model=list[EventSummary], tags=["events"])
    async def events() -> list[EventSummary]:
        """The sport events that have data (UOF, ``/ws``), with their latest ``seq``."""
        return [
            EventSummary(eventId=name, seq=s.seq, epoch=s.epoch, updatedAt=s.ts)
            for name, s in await live(EVENT_PREFIX)
        ]

    @app.get("/api/ws/health", response_model=HealthResponse, tags=["operations"])
    async def health() -> HealthResponse:
        """Open WebSocket connections, known topics, and messages sent to clients so far."""
        return HealthResponse(
            connections=server.stats.open,
            topics=len(server.engine.topics()),
            messages_sent=totals(server).messages_sent,
        )

    @app.post("/api/tickets", tags=["tickets"], status_code=202)
    async def submit_ticket(request: Request) -> JSONResponse:
        """Submit a ticket ``{ticketId, selections:[{eventId, marketId, outcomeId, odds}],
        stake}`` with ``Authorization: Bearer <the user's token>``. 202 with
        ``{ticketId, status:"pending", duplicate:false}``; the result comes as ``bet_result``
        on the user's WebSocket stream. Submitting a ticketId again answers 200 with the
        first submission's result (or ``pending``) and ``duplicate: true``."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("this route needs Authorization: Bearer <the user's token>")
            claims = verify_token(
                token.strip(), secret=settings.jwt_secret, leeway_s=settings.jwt_leeway_s
            )
        except AuthError as exc:
            raise ApiError(401, "UNAUTHORIZED", str(exc)) from None
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "INVALID_TICKET", "the body is not valid JSON") from None
        answer = await server.desk.submit(claims.user_id, body)
        if isinstance(answer, ProtocolError):
            status = 503 if answer.code == "SERVICE_UNAVAILABLE" else 400
            raise ApiError(status, answer.code, answer.message)
        return JSONResponse(answer, status_code=200 if answer.get("duplicate") else 202)

    @app.post("/admin/odds/override", response_model=OverrideResponse, tags=["admin"])
    async def override(body: OverrideRequest, request: Request) -> OverrideResponse:
        """Publish an RFC 7396 merge patch on a market's state; subscribers get odds_update."""
        require_admin(request)
        mid = _market(body.marketId)
        try:
            update = parse_update({"marketId": mid, "payload": body.payload})
        except PublishInvalid as exc:
            raise ApiError(400, "INVALID_REQUEST", str(exc)) from None
        (result,) = await publish_batch(server.hub, [update])
        return OverrideResponse(marketId=result["marketId"], seq=result["seq"], ts=result["ts"])

    @app.post("/admin/publish", tags=["admin"])
    async def publish(request: Request) -> JSONResponse:
        """Publish a batch ``{"updates": [{"marketId", "payload"}, ...]}`` (1-1000 updates)
        in order; answers ``{"results": [{"marketId", "seq", "ts"}, ...]}`` in the same order.
        The batch is validated whole first: one bad update and nothing is published."""
        require_admin(request)
        body = bytearray()
        async with aclosing(request.stream()) as chunks:
            async for chunk in chunks:
                body += chunk
                if len(body) > MAX_PUBLISH_BODY_BYTES:
                    raise ApiError(
                        413,
                        "PAYLOAD_TOO_LARGE",
                        f"a publish body may be at most {MAX_PUBLISH_BODY_BYTES} bytes",
                    )
        try:
            batch = parse_batch_json(bytes(body))
        except PublishInvalid as exc:
            raise ApiError(400, "INVALID_REQUEST", str(exc)) from None
        return JSONResponse({"results": await publish_batch(server.hub, batch.updates)})

    app.include_router(create_debug_router(server))
    app.include_router(pages_router())
    app.include_router(metrics_router(server))
    app.include_router(ops_router(server))
    for dialect in DIALECTS:
        if dialect.routes is not None:
            app.include_router(dialect.routes(server))
    return app
