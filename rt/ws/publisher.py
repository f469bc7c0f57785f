"""The publisher WebSocket, ``/ws/publish``: producers push batches of updates over one socket.

It is not a client dialect (rt/dialects.py): nothing subscribes here, it only publishes, and
it authenticates with the admin token, not a user's JWT. The protocol (docs/publishing.md):

    > {"type": "publish", "id": 7, "updates": [{"marketId": 1001, "payload": {...}}, ...]}
    < {"type": "published", "id": 7, "results": [{"marketId": 1001, "seq": 42, "ts": ...}]}
    > {"type": "publish", "marketId": 1001, "payload": {...}}        (one update, no id)
    < {"type": "published", "id": null, "results": [{...}]}
    > {"type": "publish", "id": "x", "updates": []}
    < {"type": "error", "id": "x", "code": "INVALID_PUBLISH", "message": "updates: ..."}

Each frame goes through rt/delivery/publishing.py like a POST /admin/publish body: validated whole,
then published in order. Frames are handled one at a time, and the next is read only once
the reply to the last one has been written, so a publisher that sends faster than rt
publishes is held back by TCP flow control, never queued here. A bad frame gets an error
reply and the socket stays open. Close codes as for client connections: 1001 server going
away, 1009 frame too big, 4000 nothing received (not even a pong) for ``idle_timeout_s``,
4001 a reply unwritable for ``write_deadline_s``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import trio
from trio_websocket import WebSocketConnection

from rt.auth import bearer_token
from rt.delivery.publishing import (
    PublishBatch,
    PublishInvalid,
    PublishResult,
    PublishUpdate,
    parse_batch,
    parse_update,
    publish_batch,
)
from rt.dialects.base import ENGINE_UNAVAILABLE
from rt.engine import EngineUnavailable
from rt.jsontext import dumps, loads, show
from rt.ws.frames import frame_text
from rt.ws.socket_actor import SocketActor

if TYPE_CHECKING:
    from rt.delivery.hub import Hub
    from rt.settings import Settings

__all__ = [
    "PUBLISH_PATH",
    "FrameError",
    "PublisherSession",
    "decode_frame",
    "encode_error",
    "encode_published",
    "presented_token",
]

PUBLISH_PATH = "/ws/publish"

# Error codes, UPPER_SNAKE like the KMarket dialect's.
BAD_JSON = "BAD_JSON"
UNKNOWN_TYPE = "UNKNOWN_TYPE"
INVALID_PUBLISH = "INVALID_PUBLISH"
BINARY_NOT_SUPPORTED = "BINARY_NOT_SUPPORTED"
# And ENGINE_UNAVAILABLE (rt/dialects/base.py): the shared store (Redis) is out of reach; the
# batch, published in one call to the engine, was not published: send it again later.

CorrelationId = int | str | None

_BATCH_FIELDS = frozenset({"type", "id", "updates"})
_SINGLE_FIELDS = frozenset({"type", "id", "marketId", "payload"})


class FrameError(Exception):
    """A frame that publishes nothing; it becomes an ``error`` reply with this code."""

    def __init__(self, code: str, message: str, correlation_id: CorrelationId = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.correlation_id = correlation_id


def presented_token(headers: list[tuple[bytes, bytes]], query_token: str) -> str | None:
    """The token a handshake presents: its ``Authorization: Bearer`` header's, else the
    query's (None: neither)."""
    given: str | None = query_token or None
    for name, value in headers:
        if name.lower() == b"authorization":
            from_header = bearer_token(value.decode("latin-1"))
            if from_header is not None:
                given = from_header  # a Bearer header wins over the query
    return given


def decode_frame(text: str) -> tuple[CorrelationId, PublishBatch]:
    """The correlation id and the validated batch of one text frame; raises FrameError."""
    try:
        frame = loads(text)
    except ValueError as exc:
        raise FrameError(BAD_JSON, f"the frame is not valid JSON ({exc})") from None
    if not isinstance(frame, dict):
        raise FrameError(BAD_JSON, f"expected a JSON object, got {show(frame)}")
    correlation_id = frame.get("id")
    if isinstance(correlation_id, bool) or not isinstance(correlation_id, int | str | None):
        raise FrameError(
            INVALID_PUBLISH, f"expected id to be a string or a number, got {show(correlation_id)}"
        )
    if frame.get("type") != "publish":
        raise FrameError(
            UNKNOWN_TYPE,
            f'expected type "publish", got {show(frame.get("type"))}',
            correlation_id,
        )
    try:
        if "updates" in frame:
            _only(frame, _BATCH_FIELDS)
            batch = parse_batch({"updates": frame["updates"]})
        else:
            _only(frame, _SINGLE_FIELDS)
            update: PublishUpdate = parse_update(
                {k: v for k, v in frame.items() if k in ("marketId", "payload")}
            )
            batch = PublishBatch(updates=[update])
    except PublishInvalid as exc:
        raise FrameError(INVALID_PUBLISH, str(exc), correlation_id) from None
    return correlation_id, batch


def _only(frame: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(frame) - allowed)
    if unknown:
        raise PublishInvalid(
            f"unknown field {unknown[0]!r}: a publish frame has either updates, or marketId "
            "and payload (besides type and id)"
        )


def encode_published(correlation_id: CorrelationId, results: list[PublishResult]) -> str:
    return dumps({"type": "published", "id": correlation_id, "results": results})


def encode_error(code: str, message: str, correlation_id: CorrelationId = None) -> str:
    return dumps({"type": "error", "id": correlation_id, "code": code, "message": message})


class PublisherSession(SocketActor):
    """One publisher WebSocket: reads a frame, publishes it, replies, reads the next."""

    kind: ClassVar[str] = "publisher"
    mailbox_capacity: ClassVar[int] = 8

    def __init__(self, ws: WebSocketConnection, *, hub: Hub, settings: Settings) -> None:
        super().__init__(ws, settings)
        self.hub = hub
        self.frames = 0
        self.published = 0
        self.errors = 0

    def describe(self) -> dict[str, Any]:
        return {"frames": self.frames, "published": self.published, "errors": self.errors}

    async def run(self) -> None:
        await self.serve_socket()
        await self.close_socket()

    async def on_frame(self, message: str | bytes) -> bool:
        self.frames += 1
        return await self._reply(await self._handle(message))

    async def _handle(self, message: str | bytes) -> str:
        try:
            if not isinstance(message, str):
                raise FrameError(BINARY_NOT_SUPPORTED, "frames must be JSON text, not binary")
            correlation_id, batch = decode_frame(message)
        except FrameError as error:
            self.errors += 1
            return encode_error(error.code, error.message, error.correlation_id)
        try:
            results = await publish_batch(self.hub, batch.updates)
        except EngineUnavailable as exc:  # the shared store is down: nothing acknowledged
            self.errors += 1
            return encode_error(ENGINE_UNAVAILABLE, str(exc), correlation_id)
        self.published += len(results)
        return encode_published(correlation_id, results)

    async def _reply(self, text: str) -> bool:
        """Write one reply; False when it could not be written in time (the socket closes)."""
        # Waiting here is the back-pressure: no next frame is read until this one is answered.
        # Through the Wire, as a client's messages go: a reply that stalls stays whole there,
        # so the close frame that follows it (4001) is still well-formed.
        self.wire.write(frame_text(text))
        try:
            return self.wire.idle or await self._flush()
        except trio.BrokenResourceError:
            return False  # the peer is gone: nothing more to read or to answer
