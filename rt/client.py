"""A KMarket client that keeps the delivery contract honest.

It connects to ``/ws/odds``, subscribes, and on every reconnect resumes with the last seq it
holds for each market (with backoff from a tenacity wait strategy between attempts). It keeps
each market's state by applying snapshots and merge patches, and checks every message against
the delivery contract: an update must be exactly the next seq, a conflated update must start
right after the last seq, a snapshot must not go back. A violation raises ContractViolation,
so tests built on this client fail loudly. ``rt tail`` prints what it receives.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import tenacity
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    open_websocket_url,
)

from rt.mergepatch import apply

log = logging.getLogger(__name__)

TokenSource = str | Callable[[], Awaitable[str]]


class ContractViolation(AssertionError):
    """The server broke the delivery contract (a gap, a duplicate, a step back)."""


class Refused(Exception):
    """The server refused us for good (401, 403 or another 4xx): retrying would not help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class StdoutClosed(Exception):
    """Whoever read ``rt tail``'s output has stopped reading (not an OSError: not retried)."""


def server_message(status: int, body: bytes | None) -> str:
    """The ``message`` of rt's JSON error body, or the body as text, or the status alone."""
    text = (body or b"").decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text or f"HTTP {status}"
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return str(parsed["message"])
    return text


@dataclass
class MarketView:
    """What the client knows of one market."""

    seq: int = -1  # -1: nothing received yet
    epoch: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    updates: int = 0
    snapshots: int = 0
    conflated: int = 0


def _key(market: object) -> str:
    return str(market)


class KMarketClient:
    def __init__(
        self,
        ws_url: str,
        token: TokenSource,
        markets: list[int | str],
        *,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        backoff: Callable[[tenacity.RetryCallState], float] | None = None,
        on_retry: Callable[[str, float], None] | None = None,
    ) -> None:
        self.ws_url = ws_url.rstrip("/")
        self.token = token
        self.wanted = [_key(m) for m in markets]
        self.markets: dict[str, MarketView] = {}
        self.on_message = on_message
        self.backoff = backoff or cast(
            Callable[[tenacity.RetryCallState], float],
            tenacity.wait_exponential_jitter(multiplier=0.5, max=5.0, jitter=0.25),
        )
        #: Told why the connection ended and how long until the next attempt.
        self.on_retry = on_retry
        self.connects = 0
        self.errors: list[dict[str, Any]] = []
        self.connected = trio.Event()
        self.ws: Any = None
        self._scope = trio.CancelScope()

    # -- the contract ---------------------------------------------------------------------

    def apply(self, message: dict[str, Any]) -> None:
        """Check ``message`` against the contract and fold it into the market's state."""
        kind = message.get("type")
        if kind == "error":
            self.errors.append(message)
            return
        if kind not in ("snapshot", "odds_update"):
            return
        market = _key(message["marketId"])
        view = self.markets.setdefault(market, MarketView())
        seq = message["seq"]
        if kind == "snapshot":
            new_epoch = message.get("epoch")
            same_history = view.epoch is None or new_epoch is None or new_epoch == view.epoch
            if same_history and seq < view.seq:
                raise ContractViolation(f"market {market}: snapshot at {seq} after {view.seq}")
            view.seq, view.state, view.epoch = seq, message["payload"], message.get("epoch")
            view.snapshots += 1
            return
        if view.seq < 0:
            raise ContractViolation(f"market {market}: update {seq} before any snapshot")
        first = message.get("fromSeq", seq) if message.get("conflated") else seq
        if first != view.seq + 1 or seq < first:
            raise ContractViolation(
                f"market {market}: got {first}..{seq} after {view.seq} (gap or duplicate)"
            )
        view.state = apply(view.state, message["payload"])
        view.seq = seq
        view.updates += 1
        if message.get("conflated"):
            view.conflated += 1

    # -- the connection -------------------------------------------------------------------

    async def _token(self) -> str:
        if isinstance(self.token, str):
            return self.token
        return await self.token()

    def _hello(self) -> dict[str, Any]:
        known = {m: v.seq for m, v in self.markets.items() if v.seq >= 0}
        if known:
            offsets: dict[str, Any] = {m: known[m] for m in self.wanted if m in known}
            fresh = [m for m in self.wanted if m not in known]
            if fresh:  # resume what we have; markets never seen start from a snapshot
                return {"type": "resume", "offsets": offsets, "_then_subscribe": fresh}
            return {"type": "resume", "offsets": offsets}
        return {"type": "subscribe", "markets": self.wanted}

    async def connect_once(self) -> None:
        """One connection: hello (subscribe or resume), then read until it closes."""
        url = f"{self.ws_url}/ws/odds?token={quote(await self._token())}"
        with trio.CancelScope() as self._scope:
            await self._session(url)

    async def _session(self, url: str) -> None:
        async with open_websocket_url(url) as ws:
            await self._serve(ws)

    async def _serve(self, ws: Any) -> None:
        """Say hello on a fresh connection, then fold in every message until it closes."""
        self.ws = ws
        self.connects += 1
        hello = self._hello()
        then = hello.pop("_then_subscribe", None)
        await ws.send_message(json.dumps(hello))
        if then:
            await ws.send_message(json.dumps({"type": "subscribe", "markets": then}))
        self.connected.set()
        while True:
            message = json.loads(await self._receive(ws))
            self.apply(message)
            if self.on_message is not None:
                self.on_message(message)

    async def _receive(self, ws: Any) -> str | bytes:
        """The next message (a test client may hold back its reading here)."""
        return await ws.get_message()  # type: ignore[no-any-return]

    async def run(self) -> None:
        """Stay connected: reconnect with backoff after every transient failure, resuming
        each time. A refusal for good (401, 403, another 4xx) raises Refused."""
        attempt = 0
        while True:
            try:
                await self.connect_once()
                attempt = 0
                why = "the connection closed"
            except ConnectionRejected as exc:
                message = server_message(exc.status_code, exc.body)
                if 400 <= exc.status_code < 500 and exc.status_code not in (408, 429):
                    raise Refused(exc.status_code, message) from None
                why = f"the server answered {exc.status_code}: {message}"
            except (OSError, HandshakeError, ConnectionClosed) as exc:
                why = _describe(exc)
            finally:
                self.ws = None
                self.connected = trio.Event()
            attempt += 1
            state = tenacity.RetryCallState(cast(Any, None), None, (), {})
            state.attempt_number = attempt
            delay = self.backoff(state)
            log.info("disconnected from %s: %s", self.ws_url, why)
            if self.on_retry is not None:
                self.on_retry(why, delay)
            await trio.sleep(delay)

    def drop(self) -> None:
        """Cut the current connection abruptly, as a network failure would (then resume)."""
        self._scope.cancel()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        reason = exc.reason
        if reason is None:
            return "the connection closed"
        return f"the server closed the connection ({reason.code} {reason.reason or ''})".strip()
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    return str(exc) or type(exc).__name__


async def _fetch_token(http_url: str, user: str) -> str:
    """A client token from the server's token route (it needs RT_ADMIN_TOKEN unless the
    server runs with --dev). A transport failure or a 5xx is an OSError (worth retrying);
    any other refusal is Refused."""
    import os

    import httpx

    headers = {}
    admin = os.environ.get("RT_ADMIN_TOKEN")
    if admin:
        headers["Authorization"] = f"Bearer {admin}"
    user_id: int | str = int(user) if user.isdigit() else user
    url = f"{http_url}/api/ws/token"
    try:
        async with httpx.AsyncClient() as http:
            response = await http.post(url, json={"userId": user_id}, headers=headers)
    except httpx.TransportError as exc:
        raise ConnectionError(f"cannot reach {url}: {exc or type(exc).__name__}") from None
    if response.status_code >= 500:
        message = server_message(response.status_code, response.content)
        raise ConnectionError(f"{url} answered {response.status_code}: {message}")
    if response.status_code != 200:
        raise Refused(response.status_code, server_message(response.status_code, response.content))
    return str(response.json()["token"])


async def tail(ws_url: str, http_url: str, markets: list[str], token: str | None, user: str) -> int:
    """``rt tail``: print every message of ``markets`` as one JSON object per line on
    stdout until interrupted; what goes wrong, and each retry, on stderr.

    Exit status: 0 when interrupted, 1 on a contract violation, 2 when refused for good.
    """

    async def fresh_token() -> str:
        return await _fetch_token(http_url, user)

    def show(message: dict[str, Any]) -> None:
        try:
            print(json.dumps(message, ensure_ascii=False), flush=True)
        except BrokenPipeError:  # the reader went away (`rt tail ... | head`): so do we
            raise StdoutClosed from None

    def retrying(why: str, delay: float) -> None:
        print(f"rt tail: {why}; retrying in {delay:.1f} s", file=sys.stderr, flush=True)

    client = KMarketClient(
        ws_url,
        token if token else fresh_token,
        list(markets),
        on_message=show,
        on_retry=retrying,
    )
    try:
        await client.run()
    except Refused as exc:
        print(f"rt tail: refused ({exc.status}): {exc.message}", file=sys.stderr, flush=True)
        return 2
    except StdoutClosed:
        # Nothing more can be written there; keep Python from failing to flush it at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ContractViolation as exc:
        print(f"rt tail: contract violation: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
