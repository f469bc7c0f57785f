"""The listeners: each serves HTTP (Hypercorn on Trio) and WebSocket (trio-websocket) on one
port (rt/ws/front_door.py). The public one always runs; the operators' one (``--admin-port``)
only when configured, and then the public port may leave out the operator routes. The
trading one (``--trading-port``) is a public port whose ``/ws`` speaks the trading dialect,
for seed 003's clients, which connect to ws://host:8081/ws."""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast
from urllib.parse import parse_qs

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, WebSocketServer

from actors import Actor, ChildSpec, Restart
from rt.auth import AuthError, Claims
from rt.dialects import Dialect, SessionContext, anonymous_claims, by_name, match
from rt.http.admin import Verdict
from rt.http.app import create_app, is_operator_path
from rt.http.hypercorn_adapter import HttpConnections
from rt.ws.connection import CLOSE_GOING_AWAY, Connection
from rt.ws.echo import ECHO_LIMITS, ECHO_PATH, EchoSocket
from rt.ws.front_door import ChannelListener, ReplayStream, is_websocket_upgrade, read_head
from rt.ws.handshake import Refusal, screen
from rt.ws.inbound import GuardLimits
from rt.ws.inbound_stream import GuardedStream
from rt.ws.publisher import PUBLISH_PATH, PublisherSession, presented_token
from rt.ws.wire import request_peer

if TYPE_CHECKING:
    from rt.server import Server

log = logging.getLogger(__name__)

#: A handshake whose Connection actor does not start within settings.connection_start_timeout_s
#: is told to try again later (RFC 6455 close code 1013).
CLOSE_TRY_AGAIN_LATER = 1013


Role = Literal["public", "admin", "trading"]
#: What ``/ws`` is on the trading port.
TRADING_WS_PATH = "/ws"

#: accept() errors that mean "out of file descriptors or memory for now", as trio's own
#: serve_listeners treats them: wait and accept again.
ACCEPT_CAPACITY_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}

#: An accepted WebSocket, the actor to serve it, and what that actor is (for the logs).
Served = tuple[WebSocketConnection, ChildSpec, str]


class Listener(Actor):
    """Accepts connections on one port. A WebSocket upgrade is screened, authenticated and
    served by a Connection (or a PublisherSession on /ws/publish); anything else is HTTP,
    served by Hypercorn."""

    kind: ClassVar[str] = "listener"
    defer_started: ClassVar[bool] = True

    def __init__(self, server: Server, role: Role = "public") -> None:
        self.server = server
        self.role = role
        self.port = 0
        server.tokens  # noqa: B018  (made now: a bad secret fails the start, not a client)
        #: The operator routes are left out here (they are on the admin port).
        self.hides_operator_routes = role != "admin" and server.operator_routes_elsewhere()
        self._own_ws = by_name("trading") if role == "trading" else None

    def describe(self) -> dict[str, Any]:
        return {"protocol": "http+ws", "role": self.role, "port": self.port}

    async def run(self) -> None:
        settings = self.server.settings
        port = {
            "public": settings.port,
            "admin": settings.admin_port,
            "trading": settings.trading_port,
        }[self.role]
        if settings.reuse_port:
            listeners = await _shared_listeners(settings.host, port or 0)
        else:
            listeners = await trio.open_tcp_listeners(port or 0, host=settings.host)
        handed_over = ChannelListener()
        self._websockets = handed_over
        websockets = WebSocketServer(
            self._handle,
            cast(Any, [handed_over]),  # any trio Listener serves; the hint names two
            max_message_size=ECHO_LIMITS.max_message_bytes
            if settings.echo_endpoint
            else settings.max_message_bytes,
            connect_timeout=settings.handshake_timeout_s,
        )
        self._http = HttpConnections(
            create_app(self.server, operator_routes=not self.hides_operator_routes)
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(websockets.run)
            for listener in listeners:
                nursery.start_soon(self._accept, listener, nursery)
            self.port = int(listeners[0].socket.getsockname()[1])
            self.server.listening(self.role, self.port)
            log.info("%s: HTTP and WebSocket on %s:%d", self.path, settings.host, self.port)
            self.started()
            await self.stop_requested.wait()
            await self._http.shut_down()
            nursery.cancel_scope.cancel()

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Accept connections for good. Not trio.serve_listeners: it closes each stream when
        its handler returns, and the front door returns once it has handed a stream on."""
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in ACCEPT_CAPACITY_ERRORS:
                        raise
                    log.warning("%s: cannot accept (%s); pausing 0.1 s", self.path, exc)
                    await trio.sleep(0.1)
                    continue
                nursery.start_soon(self._front_door, stream)

    async def _front_door(self, stream: trio.SocketStream) -> None:
        """Read the request head, then hand the connection to trio-websocket or Hypercorn."""
        handed_over = False
        head = b""  # what a client that sends too slowly sent is dropped with it
        try:
            with trio.move_on_after(self.server.settings.handshake_timeout_s):
                try:
                    head = await read_head(stream)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    head = b""
            if not head:  # silent (or too slow) for the whole handshake timeout, or gone
                return
            if is_websocket_upgrade(head):
                # Every byte a client sends from here is checked before trio-websocket reads
                # it; trio-websocket's server owns the stream from here, and closes it.
                guarded = GuardedStream(stream, self._limits_for, replay=head)
                await self._websockets.hand_over(guarded)
                handed_over = True
            else:
                await self._http.serve(ReplayStream(stream, head))
        finally:
            if not handed_over:  # (Hypercorn closes its own; closing twice is harmless)
                await trio.aclose_forcefully(stream)

    def _limits_for(self, path: str) -> GuardLimits:
        """What a client's frames may be on ``path``: the echo's, or every dialect's."""
        settings = self.server.settings
        if settings.echo_endpoint and path == ECHO_PATH:
            return ECHO_LIMITS
        return GuardLimits(settings.max_message_bytes, settings.max_fragments_per_message)

    async def _handle(self, request: WebSocketRequest) -> None:
        """Screen the upgrade (rt/ws/handshake.py), route it, then run the actor that serves
        it under ``conns`` in this task (the one that holds the socket: trio-websocket closes
        it when this returns), counted as an open socket.

        Routing returns before the actor runs, so that a connection's life keeps only this
        frame of the handshake's on its task's stack (each costs memory per connection)."""
        server = self.server
        peer = request_peer(request)
        refusal = screen(
            request.headers, settings=server.settings, own_origins=server.own_origins()
        ) or server.open_sockets.admit(peer)
        if refusal is not None:
            await _refuse(request, refusal)
            return
        try:
            taken = await self._take_on(request, peer)
            if taken is None:
                return
            ws, what, name, run = taken
            ended = False
            try:
                await run()
                ended = True
            except Exception as exc:  # the actor failed before it had started
                await self._could_not_start(ws, what, name, exc)
                ended = True
            finally:
                if not ended:  # the listener is going away, and the actor with it: say so
                    await _close_shielded(ws, CLOSE_GOING_AWAY, "server shutting down")
        except ConnectionClosed:
            pass  # the client left during the handshake: nothing to serve, nothing to log
        finally:
            server.open_sockets.release(peer)

    async def _take_on(
        self, request: WebSocketRequest, peer: str
    ) -> tuple[WebSocketConnection, str, str, Callable[[], Awaitable[object]]] | None:
        """Route the upgrade and have ``conns`` adopt the actor that serves it: the socket,
        what the actor is and its name (for the logs), and what runs it in the caller's task
        (which lasts the socket's life: it keeps neither the spec nor its factory). None
        once refused."""
        served = await self._route(request, peer)
        if served is None:
            return None
        ws, spec, what = served
        try:
            run = await self.system.adopt(
                spec, under="conns", timeout_s=self.server.settings.connection_start_timeout_s
            )
        except Exception as exc:  # AskTimeout, AskFailed: overloaded, or conns restarting
            await self._could_not_start(ws, what, spec.name, exc)
            return None
        return ws, what, spec.name, run

    async def _could_not_start(
        self, ws: WebSocketConnection, what: str, name: str, exc: Exception
    ) -> None:
        """Refuse this client, and only it (an error escaping the handler would take the
        whole listener down). Once started, an actor's crash is its supervisor's to log."""
        log.warning("%s: could not start %s %s: %s", self.path, what, name, exc)
        await _close_shielded(ws, CLOSE_TRY_AGAIN_LATER, "TRY_AGAIN_LATER")

    async def _route(self, request: WebSocketRequest, peer: str) -> Served | None:
        """The accepted socket and the actor to serve it, or None once refused."""
        path, _, query = request.path.partition("?")
        if self.hides_operator_routes and is_operator_path(path):
            await _reject(request, 404, "NOT_FOUND", f"no WebSocket endpoint at {path}")
            return None
        if path == ECHO_PATH and self.server.settings.echo_endpoint:
            return await self._accept_echo(request)
        if path == PUBLISH_PATH:
            return await self._accept_publisher(request, query, peer)
        found = (self._own_ws, {}) if self._own_ws and path == TRADING_WS_PATH else match(path)
        if found is None:
            await _reject(request, 404, "NOT_FOUND", f"no WebSocket endpoint at {path}")
            return None
        dialect, path_params = found
        if dialect.check_path is not None:
            problem = dialect.check_path(path_params)
            if problem is not None:
                await _reject(request, 400, "BAD_REQUEST", problem)
                return None
        query_params = {name: values[0] for name, values in parse_qs(query).items()}
        token = query_params.get("token", "")
        settings = self.server.settings
        if dialect.settings is not None:
            settings = dialect.settings(settings)
        auth = "token" if dialect.name in settings.require_token else dialect.auth
        if auth == "token" and not token:
            await _reject(request, 401, "UNAUTHORIZED", "missing token: connect to ?token=<JWT>")
            return None
        claims: Claims | None = None
        if token and auth != "none":
            try:
                claims = self.server.tokens.verify(token)
            except AuthError as exc:
                await _reject(request, 401, "UNAUTHORIZED", str(exc))
                return None
        if dialect.user_in_query and claims is not None:
            claimed = query_params.get("userId", "")
            if claimed != str(claims.user_id):
                await _reject(
                    request,
                    401,
                    "UNAUTHORIZED",
                    f"the token is for user {claims.user_id}, not for userId={claimed!r}",
                )
                return None
        ws = await request.accept()
        server = self.server
        name = f"c{next(server.socket_numbers)}"
        authenticated = claims is not None
        if claims is None:
            claims = anonymous_claims(name)
        elif server.hub.user_connections(claims.user_id) >= settings.max_connections_per_user:
            # Accepted first, so that the client can read why (a browser cannot read a
            # refused handshake's body).
            limit = settings.max_connections_per_user
            text = dialect.encode_error(
                "TOO_MANY_CONNECTIONS",
                f"user {claims.user_id} already has {limit} connections open (the limit)",
            )
            with trio.move_on_after(2):
                await ws.send_message(text)
                await ws.aclose(1008, "TOO_MANY_CONNECTIONS")
            return None
        context = SessionContext(
            claims,
            name,
            settings,
            authenticated=authenticated,
            path=path,
            path_params=path_params,
            query=query_params,
            server=server,
        )
        expires = claims.expires_at_ms if authenticated else None
        spec = connection_spec(ws, server, dialect, context, expires, endpoint=path)
        return ws, spec, "connection"

    async def _accept_publisher(
        self, request: WebSocketRequest, query: str, peer: str
    ) -> Served | None:
        """/ws/publish: an admin publisher (rt/ws/publisher.py), run like a Connection."""
        settings = self.server.settings
        query_token = parse_qs(query).get("token", [""])[0]
        gate = self.server.admin_gate
        verdict = gate.check(
            presented_token(request.headers, query_token), peer, trio.current_time()
        )
        if verdict is Verdict.LIMITED:
            await _refuse(request, gate.limited_refusal(peer))
            return None
        if verdict is not Verdict.OK:
            await _reject(
                request,
                401,
                "UNAUTHORIZED",
                "this endpoint needs Authorization: Bearer <admin token> (or ?token=<admin token>)",
            )
            return None
        ws = await request.accept()
        name = f"p{next(self.server.socket_numbers)}"
        spec = ChildSpec(
            name,
            lambda: PublisherSession(ws, hub=self.server.hub, settings=settings),
            restart=Restart.TEMPORARY,
            shutdown_timeout_s=3.0,
        )
        return ws, spec, "publisher"

    async def _accept_echo(self, request: WebSocketRequest) -> Served:
        """/ws/echo (tests only, rt/ws/echo.py): no token; run like a Connection."""
        ws = await request.accept()
        name = f"e{next(self.server.socket_numbers)}"
        settings = self.server.settings
        spec = ChildSpec(
            name,
            lambda: EchoSocket(ws, settings),
            restart=Restart.TEMPORARY,
            shutdown_timeout_s=3.0,
        )
        return ws, spec, "echo"


async def _close_shielded(ws: WebSocketConnection, code: int, reason: str) -> None:
    """Close ``ws`` with ``code``, within a second, even in a cancelled scope."""
    with trio.move_on_after(1) as cleanup:
        cleanup.shield = True
        await ws.aclose(code, reason)


async def _reject(
    request: WebSocketRequest,
    status: int,
    code: str,
    message: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    # One line per refused upgrade; the path only (the query may hold a token).
    log.info(
        "refused upgrade %s remote=%s status=%d reason=%s",
        request.path.partition("?")[0],
        request_peer(request),
        status,
        code,
    )
    body = json.dumps({"type": "error", "code": code, "message": message}).encode()
    await request.reject(
        status, extra_headers=[(b"content-type", b"application/json"), *headers], body=body
    )


async def _refuse(request: WebSocketRequest, refusal: Refusal) -> None:
    await _reject(request, refusal.status, refusal.code, refusal.message, refusal.headers)


def connection_spec(
    ws: WebSocketConnection,
    server: Server,
    dialect: Dialect,
    context: SessionContext,
    token_expires_at_ms: int | None,
    *,
    endpoint: str = "",
) -> ChildSpec:
    """A Connection actor for ``ws`` speaking ``dialect``, its session made from
    ``context`` (whose settings it runs with); to be run under ``conns``."""
    session = dialect.new_session(context)
    exclusive = None
    if dialect.exclusive_key is not None:
        exclusive = (server.exclusive_keys, f"{dialect.name}:{dialect.exclusive_key(context)}")
    return ChildSpec(
        context.connection_id,
        lambda: Connection(
            ws,
            hub=server.hub,
            settings=context.settings,
            stats=server.stats,
            user_id=context.claims.user_id,
            session=session,
            codec=dialect.codec,
            desk=server.desk,
            token_expires_at_ms=token_expires_at_ms,
            endpoint=endpoint,
            exclusive=exclusive,
        ),
        restart=Restart.TEMPORARY,
        shutdown_timeout_s=3.0,
    )


async def _shared_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """Listeners on ``host:port`` with SO_REUSEPORT: the kernel spreads the connections over
    every process listening so (``rt serve --workers N``)."""
    listeners = []
    for family, kind, proto, _, address in await trio.socket.getaddrinfo(
        host, port, type=trio.socket.SOCK_STREAM
    ):
        sock = trio.socket.socket(family, kind, proto)
        try:
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
            await sock.bind(address)
            sock.listen(1024)
        except BaseException:
            sock.close()
            raise
        listeners.append(trio.SocketListener(sock))
    return listeners
