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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import tenacity
import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from .mergepatch import apply

log = logging.getLogger(__name__)

TokenSource = str | Callable[[], Awaitable[str]]


class ContractViolation(AssertionError):
    """The server broke the delivery contract (a gap, a duplicate, a step back)."""


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
            self.ws = ws
            self.connects += 1
            hello = self._hello()
            then = hello.pop("_then_subscribe", None)
            await ws.send_message(json.dumps(hello))
            if then:
                await ws.send_message(json.dumps({"type": "subscribe", "markets": then}))
            self.connected.set()
            while True:
                text = await ws.get_message()
                message = json.loads(text)
                self.apply(message)
                if self.on_message is not None:
                    self.on_message(message)

    async def run(self) -> None:
        """Stay connected: reconnect with backoff after every drop, resuming each time."""
        attempt = 0
        while True:
            try:
                await self.connect_once()
                attempt = 0
            except (OSError, HandshakeError, ConnectionClosed) as exc:
                log.info("disconnected from %s: %r", self.ws_url, exc)
            finally:
                self.ws = None
                self.connected = trio.Event()
            attempt += 1
            state = tenacity.RetryCallState(cast(Any, None), None, (), {})
            state.attempt_number = attempt
            await trio.sleep(self.backoff(state))

    def drop(self) -> None:
        """Cut the current connection abruptly, as a network failure would (then resume)."""
        self._scope.cancel()


async def _fetch_token(http_url: str, user: str) -> str:
    import os

    import httpx

    headers = {}
    admin = os.environ.get("RT_ADMIN_TOKEN")
    if admin:
        headers["Authorization"] = f"Bearer {admin}"
    user_id: int | str = int(user) if user.isdigit() else user
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{http_url}/api/ws/token", json={"userId": user_id}, headers=headers
        )
        response.raise_for_status()
        return str(response.json()["token"])


async def tail(ws_url: str, http_url: str, markets: list[str], token: str | None, user: str) -> int:
    """``rt tail``: print every message of ``markets`` as JSON lines until interrupted."""

    async def fresh_token() -> str:
        return await _fetch_token(http_url, user)

    def show(message: dict[str, Any]) -> None:
        print(json.dumps(message, ensure_ascii=False), flush=True)

    client = KMarketClient(ws_url, token if token else fresh_token, list(markets), on_message=show)
    try:
        await client.run()
    except ContractViolation as exc:
        print(f"rt tail: contract violation: {exc}", flush=True)
        return 1
    return 0
