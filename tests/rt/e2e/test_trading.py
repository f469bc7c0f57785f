"""The trading dialect (seed 003) end to end on real sockets: in-band auth, market data with
checked books, orders between users with every push on every connection of both, bad input,
retried client order ids, queries, a private stream resumed after a reconnect, the trading
port's /ws, and the seed's own Python and JavaScript clients."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from rt.dialects.trading.book import number_text
from rt.server import Server

from ._support import TIMEOUT_S, Message, Peer, make_token, open_peer, upgrade_status

ROOT = Path(__file__).parents[3]
SEED_003 = ROOT.parent / "shared" / "seeds" / "003_0f80ebd60a63a00a.txt"
JS = ROOT / "tests" / "js"


@asynccontextmanager
async def trader(
    server: Server, user: str | None = None, *, resource: str | None = None, port: int | None = None
) -> AsyncIterator[Peer]:
    """A connection to /ws/trade?user_id=<user>, authenticated as ``user`` when given."""
    if resource is None:
        resource = "/ws/trade" + (f"?user_id={user}" if user else "")
    async with trio.open_nursery() as nursery:
        peer = await open_peer(nursery, server, resource, port=port)
        try:
            if user is not None:
                await peer.send({"type": "auth", "user_id": user, "token": make_token(user)})
                assert await peer.recv() == {
                    "type": "auth_response",
                    "success": True,
                    "user_id": user,
                    "message": "Authentication successful",
                }
            yield peer
        finally:
            await peer.aclose()


def order(**fields: Any) -> Message:
    return {
        "type": "submit_order",
        "instrument_id": "IX2301",
        "direction": "BUY",
        "offset": "OPEN",
        "volume": 1,
        "price": 120.0,
        "order_type": "LIMIT",
        **fields,
    }


async def place(peer: Peer, **fields: Any) -> Message:
    """Submit an order: its order_response, once the pushes of its submission (Submitted,
    and the frozen margin of an OPEN order) have come too."""
    await peer.send(order(**fields))
    answer = await peer.recv()
    assert answer["type"] == "order_response", answer
    if answer["success"]:
        submitted = await peer.recv()
        assert (submitted["type"], submitted["status"]) == ("order_status", "Submitted")
        assert submitted["order_id"] == answer["order_id"]
        if order(**fields)["offset"] == "OPEN":
            assert (await peer.recv())["type"] == "account_update"
    return answer


async def types_of(peer: Peer, n: int) -> list[Message]:
    return await peer.recv_n(n)


def checksum(book: dict[str, dict[float, tuple[float, int]]]) -> int:
    """The checksum as a client computes it (docs/protocol/trading.md)."""
    bids = sorted(book["bids"].items(), reverse=True)[:10]
    asks = sorted(book["asks"].items())[:10]
    parts = []
    for i in range(10):
        for side in (bids, asks):
            if i < len(side):
                price, (volume, _) = side[i]
                parts.append(f"{number_text(_dec(price))}:{number_text(_dec(volume))}")
    return zlib.crc32(":".join(parts).encode())


def _dec(value: float) -> Any:
    from decimal import Decimal

    return Decimal(repr(value))


class Book:
    """A client's copy of one instrument's book, rebuilt from orderbook messages and
    checked at every one (seq continuity and the checksum)."""

    def __init__(self) -> None:
        self.levels: dict[str, dict[float, tuple[float, int]]] = {"bids": {}, "asks": {}}
        self.seq: int | None = None

    def apply(self, message: Message) -> None:
        assert message["type"] == "orderbook"
        if message["snapshot"]:
            assert message["prev_seq"] == -1
            self.levels = {"bids": {}, "asks": {}}
        else:
            assert message["prev_seq"] == self.seq, (message, self.seq)
        for side in ("bids", "asks"):
            for level in message[side]:
                if level["volume"] == 0:
                    self.levels[side].pop(level["price"], None)
                else:
                    self.levels[side][level["price"]] = (level["volume"], level["order_count"])
        self.seq = message["seq"]
        assert message["checksum"] == checksum(self.levels), message


async def test_only_auth_and_ping_are_answered_before_auth(server: Server) -> None:
    async with trader(server, resource="/ws/trade?user_id=user001") as peer:
        await peer.send({"type": "subscribe", "channels": ["trade"], "instruments": ["IX2301"]})
        assert await peer.recv() == {"type": "error", "code": 401, "message": "Not authenticated"}
        await peer.send({"type": "submit_order"})
        assert (await peer.recv())["code"] == 401
        await peer.send({"type": "ping"})
        assert await peer.recv() == {"type": "pong"}
        failed = {
            "type": "auth_response",
            "success": False,
            "user_id": "",
            "message": "Invalid credentials",
        }
        for token in ("your_token", make_token("user002"), make_token("user001", secret="x" * 40)):
            await peer.send({"type": "auth", "user_id": "user001", "token": token})
            assert await peer.recv() == failed
        await peer.send({"type": "auth", "user_id": "user001", "token": make_token("user001")})
        assert await peer.recv() == {
            "type": "auth_response",
            "success": True,
            "user_id": "user001",
            "message": "Authentication successful",
        }
        await peer.send({"type": "auth", "user_id": "user001", "token": make_token("user001")})
        assert (await peer.recv())["success"] is True  # again as the same user: fine
        await peer.send({"type": "auth", "user_id": "user002", "token": make_token("user002")})
        assert await peer.recv() == {**failed, "message": "Already authenticated as user001"}


async def test_the_query_user_must_be_the_authenticated_one(server: Server) -> None:
    async with trader(server, resource="/ws/trade?user_id=alice") as peer:
        await peer.send({"type": "auth", "user_id": "bob", "token": make_token("bob")})
        assert (await peer.recv())["message"] == "Invalid credentials"


async def test_a_fill_reaches_every_connection_of_both_users_in_the_seeds_order(
    server: Server,
) -> None:
    async with (
        trader(server, "maker") as maker,
        trader(server, "maker") as maker_too,
        trader(server, "taker") as taker,
    ):
        resting = await place(maker, direction="SELL", volume=10)
        for peer in (maker_too,):
            submitted, frozen = await peer.recv_n(2)
            assert (submitted["type"], submitted["status"]) == ("order_status", "Submitted")
            assert submitted["order_id"] == resting["order_id"]
            assert (frozen["type"], frozen["frozen"]) == ("account_update", 12_000.0)
        taken = await place(taker, direction="BUY", volume=4, price=121.0)
        pushes = await taker.recv_n(3)
        assert [p["type"] for p in pushes] == ["order_status", "trade", "account_update"]
        assert [p["seq"] for p in pushes] == [3, 4, 5]
        status, trade, account = pushes
        assert status == {
            "type": "order_status",
            "order_id": taken["order_id"],
            "status": "Filled",
            "filled_volume": 4.0,
            "remaining_volume": 0.0,
            "instrument_id": "IX2301",
            "direction": "BUY",
            "offset": "OPEN",
            "client_order_id": None,
            "timestamp": status["timestamp"],
            "seq": 3,
        }
        assert {k: trade[k] for k in ("order_id", "direction", "offset", "price", "volume")} == {
            "order_id": taken["order_id"],
            "direction": "BUY",
            "offset": "OPEN",
            "price": 120.0,  # the resting order's price
            "volume": 4.0,
        }
        assert (account["margin"], account["frozen"]) == (4_800.0, 0.0)
        for peer in (maker, maker_too):
            status, maker_trade, account = await peer.recv_n(3)
            assert (status["status"], status["filled_volume"], status["remaining_volume"]) == (
                "PartiallyFilled",
                4.0,
                6.0,
            )
            assert maker_trade["trade_id"] == trade["trade_id"]
            assert (maker_trade["direction"], maker_trade["order_id"]) == (
                "SELL",
                resting["order_id"],
            )
            assert (account["type"], account["margin"], account["frozen"]) == (
                "account_update",
                4_800.0,
                7_200.0,
            )
            assert [status["seq"], maker_trade["seq"], account["seq"]] == [3, 4, 5]


async def test_market_data_books_check_out_and_prints_follow(server: Server) -> None:
    async with (
        trader(server, "watcher") as watcher,
        trader(server, "maker") as maker,
        trader(server, "taker") as taker,
    ):
        await watcher.send(
            {
                "type": "subscribe",
                "channels": ["orderbook", "trade", "ticker"],
                "instruments": ["IX2301"],
            }
        )
        assert await watcher.recv() == {
            "type": "subscribe_response",
            "success": True,
            "channels": ["orderbook", "trade", "ticker"],
            "instruments": ["IX2301"],
            "message": "Subscribed successfully",
        }
        book = Book()
        book.apply(await watcher.recv())  # the full book first
        for price, volume in ((120.0, 3), (120.5, 2), (120.0, 4)):
            await place(maker, direction="SELL", price=price, volume=volume)
            book.apply(await watcher.recv())
        for price, volume in ((119.0, 5), (118.5, 1)):
            await place(taker, price=price, volume=volume)
            book.apply(await watcher.recv())
        assert book.levels == {
            "asks": {120.0: (7.0, 2), 120.5: (2.0, 1)},
            "bids": {119.0: (5.0, 1), 118.5: (1.0, 1)},
        }
        await place(taker, price=120.5, volume=8)  # takes 120.0 x 3 and x 4, then 120.5 x 1
        # Three prints, then one ticker (the last print's) and one book change for the order.
        messages = await watcher.recv_n(5)
        prints = [m for m in messages if m["type"] == "trade"]
        assert [(p["price"], p["volume"], p["direction"], p["seq"]) for p in prints] == [
            (120.0, 3.0, "BUY", 1),
            (120.0, 4.0, "BUY", 2),
            (120.5, 1.0, "BUY", 3),
        ]
        assert all("order_id" not in p for p in prints)  # public: nobody's order
        [ticker] = [m for m in messages if m["type"] == "ticker"]
        assert (ticker["last_price"], ticker["volume"]) == (120.5, 1.0)
        assert (ticker["best_bid"], ticker["best_ask"], ticker["total_volume"]) == (
            119.0,
            120.5,
            8.0,
        )
        [change] = [m for m in messages if m["type"] == "orderbook"]
        book.apply(change)
        assert book.levels["asks"] == {120.5: (1.0, 1)}


async def test_subscriptions_name_the_valid_channels_and_instruments(server: Server) -> None:
    async with trader(server, "u") as peer:
        await peer.send({"type": "subscribe", "channels": ["trades"], "instruments": ["IX2301"]})
        refused = await peer.recv()
        assert (refused["type"], refused["success"], refused["code"]) == (
            "subscribe_response",
            False,
            400,
        )
        assert "valid channels: trade, orderbook, ticker" in refused["message"]
        await peer.send({"type": "subscribe", "channels": ["trade"], "instruments": ["IX9999"]})
        refused = await peer.recv()
        assert "valid instruments: IX2301, IF2301" in refused["message"]
        # The seed's React example asks for its account updates as a channel: they come anyway.
        await peer.send(
            {
                "type": "subscribe",
                "channels": ["trade", "account_update"],
                "instruments": ["IX2301"],
            }
        )
        assert (await peer.recv())["success"] is True
        await peer.send({"type": "unsubscribe", "channels": ["trade"], "instruments": ["IX2301"]})
        assert (await peer.recv())["type"] == "unsubscribe_response"


BAD_MESSAGES: list[tuple[str, str]] = [
    ("{", "message is not valid JSON"),
    ("[]", "expected a JSON object"),
    ('{"kind": "ping"}', "missing field: type"),
    ('{"type": "dance"}', 'unknown message type "dance"'),
    (json.dumps({**order(), "instrument_id": None}), "missing field: instrument_id"),
    (json.dumps({**order(), "volume": "ten"}), "expected volume to be a number"),
    (json.dumps({**order(), "direction": "UP"}), "expected direction to be BUY or SELL"),
    (json.dumps({**order(), "offset": 1}), "expected offset to be a string"),
    (json.dumps({k: v for k, v in order().items() if k != "price"}), "missing field: price"),
    (json.dumps({**order(), "client_order_id": 7}), "expected client_order_id to be a string"),
    ('{"type": "cancel_order"}', "missing field: order_id"),
    ('{"type": "subscribe", "channels": "trade", "instruments": ["IX2301"]}', "expected channels"),
    ('{"type": "auth", "user_id": "u", "token": "t", "last_seq": -1}', "expected last_seq"),
]
BAD_ORDERS: list[tuple[dict[str, Any], int]] = [
    ({"volume": 0}, 1006),
    ({"volume": -5}, 1006),
    ({"price": -1.0}, 1005),
    ({"price": 0}, 1005),
    ({"price": 120.3}, 1005),  # off the 0.5 tick
    ({"instrument_id": "XX0000"}, 1007),
    ({"order_type": "STOP"}, 1008),
    ({"volume": 900}, 1001),  # 1,080,000 of margin
    ({"direction": "SELL", "offset": "CLOSE"}, 1004),
]


@pytest.mark.server_settings(max_invalid_messages=100)
async def test_bad_input_gets_an_error_naming_it_and_reaches_no_book(server: Server) -> None:
    async with trader(server, "watcher") as watcher, trader(server, "u") as peer:
        await watcher.send(
            {"type": "subscribe", "channels": ["orderbook"], "instruments": ["IX2301"]}
        )
        await watcher.recv_n(2)
        for text, message in BAD_MESSAGES:
            await peer.send_raw(text)
            error = await peer.recv()
            assert (error["type"], error["code"]) == ("error", 400), text
            assert message in error["message"], (text, error)
        for fields, code in BAD_ORDERS:
            answer = await place(peer, **fields)
            assert (answer["success"], answer["order_id"], answer["error_code"]) == (
                False,
                None,
                code,
            )
            assert answer["error_message"], fields
        await peer.send({"type": "ping"})
        assert await peer.recv() == {"type": "pong"}  # no push came before it
        await watcher.send({"type": "ping"})
        assert await watcher.recv() == {"type": "pong"}  # and no book change
        assert server.engine.topics() == []  # no order, no push, no book change


async def test_a_retried_client_order_id_answers_the_first_answer(server: Server) -> None:
    async with trader(server, "u") as peer:
        first = await place(peer, client_order_id="retry-1", price=119.0)
        assert first["success"] is True and first["client_order_id"] == "retry-1"
        await peer.send(order(client_order_id="retry-1", price=119.0))
        assert await peer.recv() == first
        await peer.send({"type": "query_position"})
        await peer.send({"type": "query_account"})
        position, account = await peer.recv_n(2)  # and no second order's pushes first
        assert position == {
            "type": "query_response",
            "request_type": "query_position",
            "data": {"positions": []},
        }
        assert account["data"]["account"]["frozen"] == 1_190.0  # one order's margin


async def test_cancels_and_queries(server: Server) -> None:
    async with trader(server, "u") as peer:
        placed = await place(peer, price=119.5, volume=2)
        await peer.send({"type": "query_order", "order_id": placed["order_id"]})
        answer = await peer.recv()
        assert answer["type"] == "query_response" and answer["request_type"] == "query_order"
        described = answer["data"]["order"]
        assert {
            k: described[k] for k in ("order_id", "status", "price", "volume", "filled_volume")
        } == {
            "order_id": placed["order_id"],
            "status": "Submitted",
            "price": 119.5,
            "volume": 2.0,
            "filled_volume": 0.0,
        }
        await peer.send({"type": "cancel_order", "order_id": placed["order_id"]})
        assert await peer.recv() == {
            "type": "order_response",
            "success": True,
            "order_id": placed["order_id"],
            "error_code": None,
            "error_message": None,
        }
        cancelled, account = await peer.recv_n(2)
        assert (cancelled["status"], cancelled["remaining_volume"]) == ("Cancelled", 2.0)
        assert account["frozen"] == 0.0
        await peer.send({"type": "cancel_order", "order_id": placed["order_id"]})
        again = await peer.recv()
        assert (again["success"], again["error_code"]) == (False, 1009)
        await peer.send({"type": "cancel_order", "order_id": "O1"})
        assert (await peer.recv())["error_code"] == 1002
        await peer.send({"type": "query_order", "order_id": "O1"})
        assert await peer.recv() == {
            "type": "error",
            "code": 1002,
            "message": "Order not found: O1",
            "request_type": "query_order",
        }
        await peer.send({"type": "query_account"})
        account = (await peer.recv())["data"]["account"]
        assert account == {
            "user_id": "u",
            "balance": 1_000_000.0,
            "available": 1_000_000.0,
            "frozen": 0.0,
            "margin": 0.0,
            "profit": 0.0,
            "realized_profit": 0.0,
            "risk_ratio": 0.0,
        }


async def test_the_private_stream_resumes_after_a_reconnect(server: Server) -> None:
    async with trader(server, "maker") as maker:
        resting = await place(maker, direction="SELL", volume=3)  # pushes 1 and 2
    # Offline, the order fills.
    async with trader(server, "taker") as taker:
        await place(taker, volume=3)
        await taker.recv_n(3)
    async with trader(server, "maker") as maker:  # the auth_response, then what it missed
        status, trade, account = await maker.recv_n(3)
        assert [status["seq"], trade["seq"], account["seq"]] == [3, 4, 5]
        assert (status["order_id"], status["status"]) == (resting["order_id"], "Filled")
        await maker.send({"type": "ping"})
        assert await maker.recv() == {"type": "pong"}  # nothing repeated
    # A client that says where it got to gets exactly what follows, whatever was written to
    # its last connection (it may have died with pushes unread in its socket).
    async with trader(server, resource="/ws/trade?user_id=maker") as maker:
        await maker.send(
            {"type": "auth", "user_id": "maker", "token": make_token("maker"), "last_seq": 3}
        )
        assert (await maker.recv())["success"] is True
        assert [m["seq"] for m in await maker.recv_n(2)] == [4, 5]
        await maker.send({"type": "ping"})
        assert await maker.recv() == {"type": "pong"}
        await maker.send(  # again on the same connection: from there again
            {"type": "auth", "user_id": "maker", "token": make_token("maker"), "last_seq": 4}
        )
        assert (await maker.recv())["success"] is True
        assert (await maker.recv())["seq"] == 5


@pytest.mark.server_settings(trading_port=0)
async def test_the_trading_port_speaks_trading_on_ws(server: Server) -> None:
    port = server.ports["trading"]
    async with trader(server, "user001", resource="/ws?user_id=user001", port=port) as peer:
        await peer.send({"type": "ping"})
        assert await peer.recv() == {"type": "pong"}
    assert await upgrade_status(server.port, "/ws") == b"401"  # the public /ws is UOF's


@pytest.mark.server_settings(trading_port=0)
async def test_the_seeds_python_client_trades(server: Server) -> None:
    """The seed's complete Python example (websocket-client), unchanged but for the address
    and the token: it authenticates, subscribes to trades, and after 2 s buys 10 lots at 120,
    which a resting sell fills."""
    text = SEED_003.read_text()
    start = text.index("```python\nimport websocket\nimport json\nimport threading")
    code = text[start + len("```python\n") : text.index("```", start + 10)]
    code = code.replace("localhost:8081", f"127.0.0.1:{server.ports['trading']}")
    code = code.replace('"your_token"', repr(make_token("user001")))
    async with trader(server, "maker") as maker:
        await place(maker, direction="SELL", volume=10)
        process = await trio.lowlevel.open_process(
            [sys.executable, "-u", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert process.stdout is not None
        output = bytearray()
        try:
            with trio.fail_after(15):
                while output.count(b"'type': 'account_update'") < 2:  # frozen, then filled
                    output.extend(await process.stdout.receive_some())
        finally:
            process.kill()
            await process.wait()
    lines = output.decode().splitlines()
    received = [
        ast.literal_eval(line.removeprefix("收到消息: "))
        for line in lines
        if line.startswith("收到消息: ")
    ]
    # (The public prints of the trade channel it subscribed to come in their own order.)
    kinds = [m["type"] for m in received if m["type"] != "trade" or "order_id" in m]
    assert kinds[:4] == ["auth_response", "subscribe_response", "order_response", "order_status"]
    assert received[0]["success"] is True
    assert "成交: BUY 10.0手 @120.0" in lines  # its own fill, as the example prints it
    assert "订单状态: Filled" in lines


@pytest.mark.server_settings(trading_port=0)
async def test_the_seeds_javascript_client_trades(server: Server) -> None:
    """The seed's authentication example and its submitOrder(), in Node with `ws`."""
    node = shutil.which("node")
    assert node is not None, "Node.js is needed (scripts/test installs tests/js with npm ci)"
    assert (JS / "node_modules" / "ws").is_dir(), "run `npm ci --prefix tests/js` first"
    argv = [
        node,
        str(JS / "seed003_client.mjs"),
        str(SEED_003),
        f"127.0.0.1:{server.ports['trading']}",
        make_token("user001"),
        "7",  # auth_response, order_response, Submitted, account_update, the fill's three
    ]
    async with trader(server, "maker") as maker:
        await place(maker, direction="SELL", volume=10)
        with trio.fail_after(TIMEOUT_S + 10):
            result = await trio.run_process(argv, capture_stdout=True)
    report = json.loads(result.stdout)
    kinds = [m["type"] for m in report["received"]]
    assert kinds == [
        "auth_response",
        "order_response",
        "order_status",
        "account_update",
        "order_status",
        "trade",
        "account_update",
    ]
    assert "认证成功" in report["logged"]
    assert report["received"][4]["status"] == "Filled"
