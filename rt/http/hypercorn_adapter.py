"""Hypercorn serving one connection that rt has accepted already (rt/ws/front_door.py).

Hypercorn's public API serves only sockets it listens on itself; rt's one port needs it to
serve the connections that are not WebSocket upgrades. This module is the one place that
uses Hypercorn's internals for that (``TCPServer``, ``WorkerContext``), so hypercorn is
pinned in pyproject.toml and tests/rt/test_hypercorn_adapter.py fails loudly if the pin or
those internals change.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import trio
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

__all__ = ["HttpConnections"]

#: How long HTTP requests in progress may finish once the server stops.
GRACEFUL_TIMEOUT_S = 2.0


class HttpConnections:
    """Serves an ASGI app on connections handed to it, one ``serve`` call per connection."""

    def __init__(self, app: Any) -> None:
        config = Config()
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = GRACEFUL_TIMEOUT_S
        self._config = config
        self._app = wrap_app(app, config.wsgi_max_body_size, "asgi")
        self._context = WorkerContext(None)

    async def serve(self, stream: trio.abc.Stream) -> None:
        """Serve HTTP on ``stream`` until the client or the server ends it. The stream must
        have ``.socket`` (Hypercorn reads both addresses from it) and no ``do_handshake``
        (that is how Hypercorn tells a plain stream from TLS)."""
        state = ConnectionState({})
        await TCPServer(self._app, self._config, self._context, state, cast(Any, stream))

    async def shut_down(self) -> None:
        """Tell keep-alive connections to close once their request in progress is done."""
        await self._context.terminated.set()
