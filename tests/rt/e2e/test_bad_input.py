"""Bad input on /ws/odds gets the dialect's error (or a close code), and nothing else breaks.

After each recoverable error the same connection still answers pings and still receives its
subscriptions' updates, and a client connected at the same time sees nothing of it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from rt.server import Server

from ._support import Peer, connect, odds_update, topic

Check = tuple[str, str | None, str]  # (code, exact message or None, message prefix)

BAD_TEXT: list[Any] = [
    pytest.param("{not json", ("INVALID_JSON", None, "message is not valid JSON: "), id="json"),
    pytest.param("", ("INVALID_JSON", None, "message is not valid JSON: "), id="empty"),
    pytest.param(
        "[1, 2]",
        ("INVALID_MESSAGE", "expected a JSON object, got [1, 2]", ""),
        id="not-an-object",
    ),
    pytest.param(
        '"subscribe"',
        ("INVALID_MESSAGE", 'expected a JSON object, got "subscribe"', ""),
        id="a-string",
    ),
    pytest.param("{}", ("INVALID_MESSAGE", "missing field: type", ""), id="no-type"),
    # Each of these once crashed the connection (RecursionError, ValueError,
    # UnicodeEncodeError): now the dialect's error, and the connection goes on.
    pytest.param(
        "[" * 30_000 + "]" * 30_000,
        (
            "INVALID_JSON",
            "message is not valid JSON: arrays and objects nest deeper than 32 levels",
            "",
        ),
        id="nested-30000-deep",
    ),
    pytest.param(
        '{"type": "ping", "ts": NaN}',
        ("INVALID_JSON", "message is not valid JSON: NaN is not a JSON value", ""),
        id="ping-ts-nan",
    ),
    pytest.param(
        '{"type": "ping", "ts": "\\ud800"}',
        (
            "INVALID_JSON",
            'message is not valid JSON: string "\\ud800" holds a lone UTF-16 surrogate',
            "",
        ),
        id="ping-ts-lone-surrogate",
    ),
    pytest.param(
        '{"type": "ping", "type": "subscribe"}',
        ("INVALID_JSON", 'message is not valid JSON: duplicate key "type" in an object', ""),
        id="duplicate-key",
    ),
    pytest.param(
        '{"type": "ping", "ts": ' + "9" * 5000 + "}",
        ("INVALID_JSON", None, "message is not valid JSON: number "),
        id="huge-number",
    ),
    pytest.param(
        '{"type": 5}',
        ("INVALID_MESSAGE", "expected type to be a string, got 5", ""),
        id="type-not-a-string",
    ),
    pytest.param(
        '{"type": "hello"}',
        (
            "UNKNOWN_TYPE",
            'unknown message type "hello"; expected subscribe, unsubscribe, resume or ping',
            "",
        ),
        id="unknown-type",
    ),
    pytest.param(
        '{"type": "subscribe"}',
        ("INVALID_MESSAGE", "missing field: markets", ""),
        id="missing-markets",
    ),
    pytest.param(
        '{"type": "subscribe", "markets": "1001"}',
        ("INVALID_MESSAGE", 'expected markets to be a non-empty list of ids, got "1001"', ""),
        id="markets-a-string",
    ),
    pytest.param(
        '{"type": "subscribe", "markets": []}',
        ("INVALID_MESSAGE", "expected markets to be a non-empty list of ids, got []", ""),
        id="markets-empty",
    ),
    pytest.param(
        '{"type": "unsubscribe", "markets": {"1001": true}}',
        (
            "INVALID_MESSAGE",
            'expected markets to be a non-empty list of ids, got {"1001": true}',
            "",
        ),
        id="unsubscribe-markets-an-object",
    ),
    pytest.param(
        '{"type": "subscribe", "markets": ["1001", "10 02"]}',
        (
            "INVALID_MESSAGE",
            "expected each market id to be a number or a name of 1-64 characters "
            '[A-Za-z0-9_.:-], got "10 02"',
            "",
        ),
        id="market-id-with-space",
    ),
    pytest.param(
        '{"type": "subscribe", "markets": [-1]}',
        ("INVALID_MESSAGE", "expected each market id to be >= 0, got -1", ""),
        id="market-id-negative",
    ),
    pytest.param(
        '{"type": "subscribe", "markets": [true]}',
        (
            "INVALID_MESSAGE",
            "expected each market id to be a number or a name of 1-64 characters "
            "[A-Za-z0-9_.:-], got true",
            "",
        ),
        id="market-id-bool",
    ),
    pytest.param(
        '{"type": "subscribe", "markets": [1.5]}',
        (
            "INVALID_MESSAGE",
            "expected each market id to be a number or a name of 1-64 characters "
            "[A-Za-z0-9_.:-], got 1.5",
            "",
        ),
        id="market-id-float",
    ),
    pytest.param(
        '{"type": "resume"}', ("INVALID_MESSAGE", "missing field: offsets", ""), id="no-offsets"
    ),
    pytest.param(
        '{"type": "resume", "offsets": [1001, 3]}',
        (
            "INVALID_MESSAGE",
            "expected offsets to be an object of marketId: lastSeq, got [1001, 3]",
            "",
        ),
        id="offsets-a-list",
    ),
    pytest.param(
        '{"type": "resume", "offsets": {"1001": "x"}}',
        (
            "INVALID_MESSAGE",
            "expected offsets['1001'] to be a last seq (an integer >= 0), got \"x\"",
            "",
        ),
        id="offset-a-string",
    ),
    pytest.param(
        '{"type": "resume", "offsets": {"1001": -3}}',
        (
            "INVALID_MESSAGE",
            "expected offsets['1001'] to be a last seq (an integer >= 0), got -3",
            "",
        ),
        id="offset-negative",
    ),
    pytest.param(
        '{"type": "resume", "offsets": {"no way": 3}}',
        (
            "INVALID_MESSAGE",
            "expected each offsets key to be a number or a name of 1-64 characters "
            '[A-Za-z0-9_.:-], got "no way"',
            "",
        ),
        id="offset-bad-market",
    ),
    pytest.param(
        '{"type": "resume", "offsets": {"1001": {"seq": 1, "epoch": 7}}}',
        ("INVALID_MESSAGE", "expected offsets['1001'].epoch to be a string", ""),
        id="offset-epoch-not-a-string",
    ),
]


def check_error(message: dict[str, Any], check: Check) -> None:
    code, exact, prefix = check
    assert message["type"] == "error"
    assert message["code"] == code
    assert set(message) == {"type", "code", "message"}
    if exact is not None:
        assert message["message"] == exact
    assert message["message"].startswith(prefix)


async def still_works(server: Server, peer: Peer, bystander: Peer, seq: int) -> None:
    """``peer`` and ``bystander`` (both on 1001) get update ``seq`` and answer a ping."""
    await server.hub.publish(topic(1001), {"n": seq})
    assert await peer.recv() == odds_update(1001, seq, {"n": seq})
    assert await bystander.recv() == odds_update(1001, seq, {"n": seq})
    await peer.ping(seq)
    await bystander.ping(seq)


@pytest.mark.parametrize(("text", "check"), BAD_TEXT)
async def test_bad_message_gets_an_error_and_the_connection_goes_on(
    server: Server, text: str, check: Check
) -> None:
    async with connect(server) as peer, connect(server) as bystander:
        await peer.subscribe(1001)
        await bystander.subscribe(1001)
        await peer.send_raw(text)
        check_error(await peer.recv(), check)
        await still_works(server, peer, bystander, 1)
        # And the connection still takes commands: subscribe to more.
        await peer.subscribe(1002)
        await server.hub.publish(topic(1002), {"m": 1})
        assert await peer.recv() == odds_update(1002, 1, {"m": 1})


@pytest.mark.server_settings(max_invalid_messages=len(BAD_TEXT))
async def test_every_bad_message_in_a_row_on_one_connection(server: Server) -> None:
    async with connect(server) as peer, connect(server) as bystander:
        await peer.subscribe(1001)
        await bystander.subscribe(1001)
        for seq, param in enumerate(BAD_TEXT, start=1):
            text, check = param.values
            await peer.send_raw(text)
            check_error(await peer.recv(), check)
            await still_works(server, peer, bystander, seq)


async def test_a_bad_message_changes_no_subscription(server: Server) -> None:
    async with connect(server) as peer:
        await peer.subscribe(1001)
        # One bad id spoils the whole message: nothing of it is applied.
        await peer.send({"type": "subscribe", "markets": ["1002", "bad id"]})
        assert (await peer.recv())["code"] == "INVALID_MESSAGE"
        await peer.send({"type": "unsubscribe", "markets": ["1001", -5]})
        assert (await peer.recv())["code"] == "INVALID_MESSAGE"
        await server.hub.publish(topic(1002), {"x": 1})
        await server.hub.publish(topic(1001), {"y": 1})
        assert await peer.recv() == odds_update(1001, 1, {"y": 1})
        await peer.ping()


async def test_binary_frame_closes_with_1003_and_nobody_else_notices(server: Server) -> None:
    async with connect(server) as peer, connect(server) as bystander:
        await peer.subscribe(1001)
        await bystander.subscribe(1001)
        await peer.send_raw(json.dumps({"type": "ping", "ts": 1}).encode())
        reason = await peer.closed()
        assert (reason.code, reason.reason) == (1003, "binary messages are not accepted")
        await server.hub.publish(topic(1001), {"n": 1})
        assert await bystander.recv() == odds_update(1001, 1, {"n": 1})
        await bystander.ping()


@pytest.mark.server_settings(max_markets_per_connection=3)
async def test_too_many_markets(server: Server) -> None:
    async with connect(server) as peer, connect(server) as bystander:
        await bystander.subscribe(1001)
        await peer.send({"type": "subscribe", "markets": ["1", "2", "3", "4"]})
        assert await peer.recv() == {
            "type": "error",
            "code": "TOO_MANY_MARKETS",
            "message": (
                "at most 3 markets per connection; already subscribed to 0, asked for 4 more"
            ),
        }
        await peer.subscribe(1001, 1002)
        await peer.send({"type": "subscribe", "markets": ["1001", "1003", "1004"]})
        assert await peer.recv() == {
            "type": "error",
            "code": "TOO_MANY_MARKETS",
            "message": (
                "at most 3 markets per connection; already subscribed to 2, asked for 2 more"
            ),
        }
        await peer.send({"type": "resume", "offsets": {"1005": 0, "1006": 0}})
        error = await peer.recv()
        assert error["code"] == "TOO_MANY_MARKETS"
        await still_works(server, peer, bystander, 1)
        # Markets already held do not count again; the third fits.
        await peer.send({"type": "subscribe", "markets": ["1001", "1003"]})
        assert await peer.recv() == {"type": "ack", "ok": True, "subscribed": [1001, 1003]}
        snapshot = await peer.recv()  # of 1003 only: 1001 is held already
        assert (snapshot["type"], snapshot["marketId"]) == ("snapshot", 1003)
        await server.hub.publish(topic(1003), {"z": 1})
        assert await peer.recv() == odds_update(1003, 1, {"z": 1})
        await peer.send({"type": "unsubscribe", "markets": ["1002"]})
        assert (await peer.recv())["unsubscribed"] == [1002]
        await peer.subscribe(1004)  # room again after unsubscribing


@pytest.mark.server_settings(max_message_bytes=1024)
async def test_message_over_the_size_limit_closes_with_1009(server: Server) -> None:
    async with connect(server) as peer, connect(server) as bystander:
        await peer.subscribe(1001)
        await bystander.subscribe(1001)
        await peer.ping()  # just under the limit is fine
        await peer.send({"type": "ping", "ts": 1, "pad": "x" * 900})
        assert await peer.recv() == {"type": "pong", "ts": 1}

        await peer.send_raw(json.dumps({"type": "ping", "ts": 2, "pad": "x" * 2000}))
        reason = await peer.closed()
        assert reason.code == 1009

        # The other client did not notice.
        await server.hub.publish(topic(1001), {"n": 1})
        assert await bystander.recv() == odds_update(1001, 1, {"n": 1})
        await bystander.ping()
    # And new clients are still welcome.
    async with connect(server) as again:
        await again.ping()
