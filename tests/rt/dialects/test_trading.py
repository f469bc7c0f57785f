"""The trading dialect (seed 003) without sockets of its own: the seed's client messages
through the session, its server messages' shapes from the codec, the heartbeat and the auth
deadline on the virtual clock, and a book subscriber that falls behind and is brought back
with a full book, never a gap."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import trio
from wsproto.events import CloseConnection, Ping

from rt.auth import Claims
from rt.dialects.base import Join, Send, SessionContext, SetDeadline, SignIn, Tell
from rt.dialects.trading import DIALECT
from rt.dialects.trading.codec import CODEC
from rt.dialects.trading.exchange import (
    LEDGER_PATH,
    CancelOrder,
    OpenAccount,
    Place,
    book_path,
)
from rt.dialects.trading.ledger import OrderRequest
from rt.dialects.trading.session import MESSAGE_TYPES
from rt.model import Update
from tests.rt.e2e._support import make_token
from tests.rt.harness import open_core
from tests.rt.harness import settings as harness_settings
from tests.rt.test_connection_timing import RawClient, raw_client

SEED_003 = Path(__file__).parents[3].parent / "shared" / "seeds" / "003_0f80ebd60a63a00a.txt"
WALL_MS = 1_710_001_113_000


def seed_messages() -> list[dict[str, Any]]:
    """The seed's JSON examples (its one ``// comment`` taken out)."""
    blocks = re.findall(r"```json\n(.*?)```", SEED_003.read_text(), re.S)
    found = []
    for block in blocks:
        block = re.sub(r"\s*//[^\n]*", "", block)
        if "..." in block:
            continue  # the query_response example elides its fields
        found.append(json.loads(block))
    return found


def session(query_user: str | None = None) -> Any:
    context = SessionContext(
        Claims(user_id="anon:c1", scope_markets=None, expires_at_ms=0),
        "c1",
        harness_settings(),
        authenticated=False,
        path="/ws/trade",
        query={} if query_user is None else {"user_id": query_user},
    )
    return DIALECT.new_session(context)


def test_every_client_message_of_the_seed_is_understood() -> None:
    client_types = set(MESSAGE_TYPES)
    examples = [m for m in seed_messages() if m["type"] in client_types]
    assert {m["type"] for m in examples} == client_types
    signed_in = session()
    signed_in.user_id = "user001"  # as after a SignIn
    for message in examples:
        if message["type"] == "auth":
            continue
        actions = signed_in.handle_text(json.dumps(message))
        errors = [a for a in actions if isinstance(a, Send) and a.error]
        assert errors == [], (message, errors)
        kinds = [type(a).__name__ for a in actions]
        if message["type"] in ("submit_order", "cancel_order") or message["type"].startswith(
            "query"
        ):
            assert kinds == ["Tell"] and actions[0].path == LEDGER_PATH
        elif message["type"] == "ping":
            assert actions == [Send('{"type":"pong"}')]
        else:
            assert "Send" in kinds


def test_auth_signs_in_then_joins_the_users_stream_once() -> None:
    fresh = session(query_user="user001")
    assert fresh.opened() == [SetDeadline(10.0, 4401, "AUTH_TIMEOUT")]
    [sign_in] = fresh.handle_text(
        json.dumps({"type": "auth", "user_id": "user001", "token": make_token("user001")})
    )
    assert isinstance(sign_in, SignIn) and sign_in.user_id == "user001"
    refused = sign_in.then("user user001 already has 5 connections open (the limit)")
    assert json.loads(refused[0].text)["success"] is False and fresh.user_id is None
    answer, open_account, join = sign_in.then(None)
    assert json.loads(answer.text) == {
        "type": "auth_response",
        "success": True,
        "user_id": "user001",
        "message": "Authentication successful",
    }
    assert isinstance(open_account, Tell) and open_account.make(print) == OpenAccount("user001")
    assert join == Join("user:user001", since=-1, announce=False)
    [again] = fresh.handle_text(
        json.dumps({"type": "auth", "user_id": "user001", "token": make_token("user001")})
    )
    assert not any(isinstance(a, Join) for a in again.then(None))  # joined already


def test_the_codec_writes_the_seeds_shapes() -> None:
    book = Update(
        "orderbook:IX2301",
        "e",
        7,
        WALL_MS,
        "patch",
        {"bids": {"119.5": [100, 5], "119": None}, "asks": {"120": [150, 6]}, "checksum": 42},
    )
    assert json.loads(CODEC.encode_update(book)) == {
        "type": "orderbook",
        "instrument_id": "IX2301",
        "snapshot": False,
        "bids": [
            {"price": 119.5, "volume": 100.0, "order_count": 5},
            {"price": 119.0, "volume": 0.0, "order_count": 0},
        ],
        "asks": [{"price": 120.0, "volume": 150.0, "order_count": 6}],
        "seq": 7,
        "prev_seq": 6,
        "checksum": 42,
        "timestamp": WALL_MS,
    }
    merged = json.loads(
        CODEC.encode_conflated("orderbook:IX2301", from_seq=5, seq=9, ts=WALL_MS, patch={})
    )
    assert (merged["seq"], merged["prev_seq"], merged["snapshot"]) == (9, 4, False)
    full = json.loads(
        CODEC.encode_snapshot(
            "orderbook:IX2301",
            epoch="e",
            seq=9,
            ts=WALL_MS,
            state={"bids": {"119": [1, 1], "119.5": [2, 1]}, "asks": {}, "checksum": 3},
        )
    )
    assert [b["price"] for b in full["bids"]] == [119.5, 119.0]
    assert (full["snapshot"], full["prev_seq"], full["checksum"]) == (True, -1, 3)
    push = Update("user:u", "e", 3, WALL_MS, "event", {"type": "account_update", "balance": 1.0})
    assert json.loads(CODEC.encode_update(push)) == {
        "type": "account_update",
        "balance": 1.0,
        "seq": 3,
    }
    assert json.loads(CODEC.encode_error("RATE_LIMITED", "slow down")) == {
        "type": "error",
        "code": 429,
        "message": "RATE_LIMITED: slow down",
    }


async def answer_pings_until_closed(client: RawClient) -> CloseConnection:
    while True:
        event = await client.next_event()
        if isinstance(event, Ping):
            await client.stream.send_all(client.ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            return event


async def test_no_auth_within_10_seconds_closes_the_connection(autojump_clock: Any) -> None:
    async with open_core(wall_ms=lambda: WALL_MS) as core, trio.open_nursery() as nursery:
        client, _ = await raw_client(core, nursery, user_id="anon:t", dialect=DIALECT)
        start = trio.current_time()
        closed = await answer_pings_until_closed(client)
        assert (closed.code, closed.reason) == (4401, "AUTH_TIMEOUT")
        assert trio.current_time() - start == pytest.approx(10.0)
        nursery.cancel_scope.cancel()


async def test_the_server_pings_every_5_s_and_closes_after_10_s_of_silence(
    autojump_clock: Any,
) -> None:
    async with open_core(wall_ms=lambda: WALL_MS) as core, trio.open_nursery() as nursery:
        client, _ = await raw_client(core, nursery, user_id="anon:t", dialect=DIALECT)
        start = trio.current_time()
        await client.send({"type": "auth", "user_id": "u1", "token": make_token("u1")})
        assert (await client.next_message())["success"] is True
        pings = []
        while True:  # never answered
            event = await client.next_event()
            if isinstance(event, Ping):
                pings.append(trio.current_time() - start)
            elif isinstance(event, CloseConnection):
                break
        assert pings == [pytest.approx(5.0)]
        assert (event.code, event.reason) == (4000, "HEARTBEAT_TIMEOUT")
        assert trio.current_time() - start == pytest.approx(10.0)
        nursery.cancel_scope.cancel()


async def test_a_client_answering_pings_stays_until_its_token_expires(autojump_clock: Any) -> None:
    async with open_core(wall_ms=lambda: WALL_MS) as core, trio.open_nursery() as nursery:
        # Tokens are checked against the real clock, the connection's life on the virtual
        # one: this verifier says the token expires 100 s after the server's (fixed) now.
        core.server.tokens.verify = lambda _t: Claims(  # type: ignore[method-assign]
            user_id="u1", scope_markets=None, expires_at_ms=WALL_MS + 100_000
        )
        client, _ = await raw_client(core, nursery, user_id="anon:t", dialect=DIALECT)
        start = trio.current_time()
        await client.send({"type": "auth", "user_id": "u1", "token": "any"})
        assert (await client.next_message())["success"] is True
        closed = await answer_pings_until_closed(client)
        assert (closed.code, closed.reason) == (4401, "TOKEN_EXPIRED")
        assert trio.current_time() - start == pytest.approx(105.0)  # the 5 s leeway
        assert core.hub.user_connections("u1") == 0
        nursery.cancel_scope.cancel()


async def test_a_book_subscriber_that_falls_behind_never_sees_a_gap() -> None:
    async with open_core(
        outbox_capacity=16, outbox_high_water=8, trading_publish_interval_s=0.0
    ) as core:
        async with core.connect(user_id="anon:t", dialect=DIALECT, lockstep=True) as ws:
            await ws.send_message(
                json.dumps({"type": "auth", "user_id": "w", "token": make_token("w")})
            )
            assert json.loads(await ws.get_message())["success"] is True
            await ws.send_message(
                json.dumps(
                    {"type": "subscribe", "channels": ["orderbook"], "instruments": ["IX2301"]}
                )
            )
            assert json.loads(await ws.get_message())["success"] is True
            ledger = core.system.lookup(LEDGER_PATH)
            assert ledger is not None
            for user in ("a", "b"):
                await ledger.tell(OpenAccount(user))
            ids: list[str] = []

            def keep(answer: dict[str, Any]) -> None:
                if answer["success"] and answer.get("order_id"):
                    ids.append(answer["order_id"])

            # While the client reads nothing: resting orders at many prices, some cancelled,
            # some crossed.
            for n in range(300):
                user = "ab"[n % 2]
                side = "BUY" if n % 3 else "SELL"
                price = 115.0 + (n * 7 % 20) * 0.5
                request = OrderRequest("IX2301", side, "OPEN", 1 + n % 4, price, "LIMIT")
                await ledger.tell(Place(user, request, keep))
                if n % 5 == 4 and ids:
                    await ledger.tell(CancelOrder("a" if n % 2 else "b", ids[-1], lambda _: None))
            # A last order at a price nobody else uses: once the client's book shows it, the
            # book has run everything before it (the ledger tells it in order).
            last = OrderRequest("IX2301", "BUY", "OPEN", 1, 108.0, "LIMIT")
            await ledger.tell(Place("a", last, keep))
            levels: dict[str, dict[float, float]] = {"bids": {}, "asks": {}}
            seq = None
            snapshots = merged = 0
            with trio.fail_after(10):
                while 108.0 not in levels["bids"]:
                    message = json.loads(await ws.get_message())
                    assert message["type"] == "orderbook"
                    if message["snapshot"]:
                        snapshots += 1
                        levels = {"bids": {}, "asks": {}}
                    else:
                        assert message["prev_seq"] == seq, (message["prev_seq"], seq)
                        merged += message["seq"] - message["prev_seq"] > 1
                    for side in ("bids", "asks"):
                        for level in message[side]:
                            if level["volume"]:
                                levels[side][level["price"]] = level["volume"]
                            else:
                                levels[side].pop(level["price"], None)
                    seq = message["seq"]
        actor_book = core.system.lookup(book_path("IX2301"))
        assert actor_book is not None
        server_book = actor_book._cell.actor.book  # type: ignore[attr-defined]
        assert levels["bids"] == {float(p): float(v) for p, v, _ in server_book.bids()}
        assert levels["asks"] == {float(p): float(v) for p, v, _ in server_book.asks()}
        # It fell behind (the first full book aside): several changes came as one, or a
        # full book replaced them.
        assert merged or snapshots > 1


async def send(ws: Any, message: dict[str, Any]) -> None:
    await ws.send_message(json.dumps(message))


async def receive(ws: Any) -> dict[str, Any]:
    with trio.fail_after(5):
        return json.loads(await ws.get_message())  # type: ignore[no-any-return]


ORDER = {
    "type": "submit_order",
    "instrument_id": "IX2301",
    "direction": "BUY",
    "offset": "OPEN",
    "volume": 1,
    "price": 119.0,
    "order_type": "LIMIT",
}


async def test_an_exchange_crash_answers_what_it_held_and_restarts_empty() -> None:
    async with (
        open_core() as core,
        core.connect(user_id="anon:t", dialect=DIALECT) as ws,
    ):
        await send(ws, {"type": "auth", "user_id": "u1", "token": make_token("u1")})
        assert (await receive(ws))["success"] is True
        await send(ws, ORDER)
        assert (await receive(ws))["success"] is True
        await receive(ws), await receive(ws)  # Submitted, account_update
        await send(ws, {"type": "subscribe", "channels": ["orderbook"], "instruments": ["IX2301"]})
        await receive(ws)
        book = await receive(ws)
        assert book["bids"] == [{"price": 119.0, "volume": 1.0, "order_count": 1}]
        core.system.faults.arm("crash", actor=LEDGER_PATH, count=1)
        await send(ws, ORDER)
        assert await receive(ws) == {
            "type": "order_response",
            "success": False,
            "order_id": None,
            "error_code": 1010,
            "error_message": "Exchange unavailable: it is restarting or too busy; try again",
        }
        # The exchange restarts as a whole, empty: the book says so with a full, empty book.
        reset = await receive(ws)
        assert (reset["type"], reset["snapshot"], reset["bids"], reset["prev_seq"]) == (
            "orderbook",
            True,
            [],
            -1,
        )
        assert reset["seq"] == book["seq"] + 1
        await send(ws, {"type": "query_account"})
        assert (await receive(ws))["code"] == 1003  # accounts too: authenticate again
        await send(ws, {"type": "auth", "user_id": "u1", "token": make_token("u1")})
        assert (await receive(ws))["success"] is True
        await send(ws, {"type": "query_account"})
        assert (await receive(ws))["data"]["account"]["balance"] == 1_000_000.0


async def test_a_process_that_does_not_run_the_exchange_says_it_is_unavailable() -> None:
    async with (
        open_core(trading_exchange="off") as core,
        core.connect(user_id="anon:t", dialect=DIALECT) as ws,
    ):
        assert core.system.lookup(LEDGER_PATH) is None
        await send(ws, {"type": "auth", "user_id": "u1", "token": make_token("u1")})
        assert (await receive(ws))["success"] is True
        await send(ws, ORDER)
        assert (await receive(ws))["error_code"] == 1010
        await send(ws, {"type": "query_position"})
        assert await receive(ws) == {
            "type": "error",
            "code": 1010,
            "message": "Exchange unavailable: it is restarting or too busy; try again",
            "request_type": "query_position",
        }
