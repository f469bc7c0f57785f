"""The WebSocket handshake of /ws/odds: who gets in, and what the others are told."""

from __future__ import annotations

import base64
import json
import re
import time
import warnings
from typing import Any

import jwt
import pytest
import trio
from trio_websocket import ConnectionRejected, wrap_client_stream

from rt.server import Server
from tests.rt.harness import SECRET

from ._support import TIMEOUT_S, connect, make_token, odds_resource


async def rejection(server: Server, resource: str) -> ConnectionRejected:
    """Ask for a WebSocket at ``resource``, expect a refusal, and return it.

    This drives trio-websocket's client on a TCP stream of our own, closed here: its URL
    helpers leave the socket of a refused handshake open (a ResourceWarning, so an error under
    this suite's warning filter).
    """
    stream = await trio.open_tcp_stream(server.settings.host, server.ws_port)
    try:
        with trio.fail_after(TIMEOUT_S), pytest.RaisesGroup(ConnectionRejected) as refused:
            async with trio.open_nursery() as nursery:
                await wrap_client_stream(
                    nursery, stream, f"{server.settings.host}:{server.ws_port}", resource
                )
    finally:
        await stream.aclose()
    (exc,) = refused.value.exceptions
    assert isinstance(exc, ConnectionRejected)
    return exc


def body_of(refused: ConnectionRejected) -> dict[str, Any]:
    assert refused.headers is not None
    assert (b"content-type", b"application/json") in refused.headers
    assert refused.body is not None
    body = json.loads(refused.body)
    assert isinstance(body, dict)
    return body


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _hs512(claims: dict[str, Any]) -> str:
    with warnings.catch_warnings():
        # PyJWT wants a 64-byte key for HS512; the test secret is shorter, which is the point.
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, SECRET, algorithm="HS512")


async def test_valid_token_is_accepted(server: Server) -> None:
    async with connect(server, make_token(7)) as peer:
        await peer.ping()


@pytest.mark.parametrize(
    ("token", "message"),
    [
        pytest.param(
            lambda: make_token(secret="another-secret-" + "y" * 32),
            "token signature is invalid (signed with another key?)",
            id="forged",
        ),
        pytest.param(
            # An unsigned token: header alg "none", the claims, and an empty signature.
            lambda: (
                _b64({"alg": "none", "typ": "JWT"})
                + "."
                + _b64({"sub": "1", "uid": 1, "exp": int(time.time()) + 600})
                + "."
            ),
            "token algorithm 'none' is not allowed; use HS256",
            id="alg-none",
        ),
        pytest.param(lambda: "", "missing token", id="empty"),
        pytest.param(lambda: "not.a.jwt", "token is malformed: ", id="garbage"),
        pytest.param(
            lambda: jwt.encode({"sub": "1"}, SECRET, algorithm="HS256"),
            "token has no 'exp' claim",
            id="no-exp",
        ),
        pytest.param(
            # The right key, the wrong algorithm: the server pins HS256.
            lambda: _hs512({"sub": "1", "exp": int(time.time()) + 600}),
            "token algorithm 'HS512' is not allowed; use HS256",
            id="hs512",
        ),
    ],
)
async def test_bad_token_is_rejected_with_401(server: Server, token: Any, message: str) -> None:
    refused = await rejection(server, odds_resource(token()))
    assert refused.status_code == 401
    body = body_of(refused)
    assert body["type"] == "error"
    assert body["code"] == "UNAUTHORIZED"
    assert body["message"].startswith(message), body


@pytest.mark.parametrize("expired_s_ago", [3540, 20], ids=["an-hour", "beyond-leeway"])
async def test_expired_token_is_rejected_with_401(server: Server, expired_s_ago: int) -> None:
    issued_at = int(time.time()) - 60 - expired_s_ago
    refused = await rejection(server, odds_resource(make_token(now_s=issued_at, ttl_s=60)))
    assert refused.status_code == 401
    body = body_of(refused)
    assert (body["type"], body["code"]) == ("error", "UNAUTHORIZED")
    assert re.fullmatch(rf"token expired at {issued_at + 60} \(now \d+\)", body["message"])


async def test_missing_token_is_rejected_with_401(server: Server) -> None:
    refused = await rejection(server, odds_resource(None))
    assert refused.status_code == 401
    body = body_of(refused)
    assert body["code"] == "UNAUTHORIZED"
    assert body["type"] == "error"
    assert body["message"] == "missing token: connect to ?token=<JWT>"


async def test_token_just_expired_within_leeway_is_accepted(server: Server) -> None:
    # Expired 2 s ago; the server allows 5 s of clock skew.
    async with connect(server, make_token(now_s=time.time() - 62, ttl_s=60)) as peer:
        await peer.ping()


async def test_unknown_path_is_404(server: Server) -> None:
    refused = await rejection(server, f"/ws/nope?token={make_token()}")
    assert refused.status_code == 404
    assert body_of(refused) == {
        "type": "error",
        "code": "NOT_FOUND",
        "message": "no WebSocket endpoint at /ws/nope",
    }


async def test_rejections_leave_no_connection_behind(server: Server) -> None:
    await rejection(server, odds_resource("bad"))
    await rejection(server, "/elsewhere")
    assert server.stats.accepted == 0
    assert server.stats.open == 0
    async with connect(server) as peer:
        await peer.ping()
    assert server.stats.accepted == 1
