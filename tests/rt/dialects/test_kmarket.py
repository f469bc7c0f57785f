"""The KMarket codec and session, as plain synchronous functions over literal strings.

Every example message of seed 001 appears here, and every malformed input has a test with the
exact error it gets.
"""

from __future__ import annotations

import json

import pytest

from rt.dialects.base import Join, Leave, ProtocolError, Send
from rt.dialects.kmarket.codec import CODEC, parse_market_id
from rt.dialects.kmarket.session import KMarketSession
from rt.model import Update
from rt.topics import market_id, market_of, market_topic


def session(*, scope: set[str] | None = None, max_markets: int = 10) -> KMarketSession:
    return KMarketSession(
        scope=frozenset(scope) if scope is not None else None,
        max_markets=max_markets,
        wall_ms=lambda: 1_700_000_000_000,
    )


def sent(actions: list[object]) -> list[dict[str, object]]:
    return [json.loads(a.text) for a in actions if isinstance(a, Send)]


def error_of(actions: list[object]) -> dict[str, object]:
    (message,) = sent(actions)
    assert message["type"] == "error"
    return message


# -- the seed's client messages -----------------------------------------------------------


def test_seed_subscribe() -> None:
    s = session()
    actions = s.handle_text('{ "type": "subscribe", "markets": ["1001","1002"] }')
    assert actions == [
        Send('{"type":"ack","ok":true,"subscribed":[1001,1002]}'),
        Join("market:1001"),
        Join("market:1002"),
    ]
    assert list(s.subscribed) == ["1001", "1002"]


def test_seed_unsubscribe() -> None:
    s = session()
    s.handle_text('{"type":"subscribe","markets":["1001","1002"]}')
    actions = s.handle_text('{ "type": "unsubscribe", "markets": ["1002"] }')
    assert actions[0] == Leave("market:1002")
    assert sent(actions) == [
        {"type": "ack", "ok": True, "unsubscribed": [1002], "subscribed": [1001]}
    ]


def test_seed_resume() -> None:
    s = session()
    actions = s.handle_text('{ "type": "resume", "offsets": { "1001": 1024, "1002": 88 } }')
    assert sent(actions) == [
        {"type": "ack", "ok": True, "subscribed": [1001, 1002], "resumed": [1001, 1002]}
    ]
    assert [a for a in actions if isinstance(a, Join)] == [
        Join("market:1001", since=1024),
        Join("market:1002", since=88),
    ]


def test_seed_client_first_resume_is_empty_and_acknowledged() -> None:
    """The seed's OddsWSClient sends its offsets on every open, and they start empty."""
    s = session()
    s.handle_text('{"type":"subscribe","markets":["1001"]}')
    actions = s.handle_text('{"type":"resume","offsets":{}}')
    assert actions == [Send('{"type":"ack","ok":true,"subscribed":[],"resumed":[]}')]
    assert list(s.subscribed) == ["1001"]  # a no-op: what was subscribed stays


def test_seed_ping_echoes_ts() -> None:
    actions = session().handle_text('{ "type": "ping", "ts": 1710001112223 }')
    assert actions == [Send('{"type":"pong","ts":1710001112223}')]


def test_ping_without_ts_gets_server_time() -> None:
    assert sent(session().handle_text('{"type":"ping"}')) == [
        {"type": "pong", "ts": 1_700_000_000_000}
    ]


# -- the seed's server messages -----------------------------------------------------------


def test_seed_odds_update_shape() -> None:
    update = Update(
        "market:1001",
        "e1",
        1025,
        1710001113000,
        "patch",
        {"moneyline": {"home": 1.85, "away": 2.10}},
    )
    assert json.loads(CODEC.encode_update(update)) == {
        "type": "odds_update",
        "marketId": 1001,
        "seq": 1025,
        "ts": 1710001113000,
        "payload": {"moneyline": {"home": 1.85, "away": 2.10}},
    }


def test_seed_snapshot_shape_with_epoch() -> None:
    text = CODEC.encode_snapshot(
        "market:1001", epoch="e1", seq=0, ts=1710001113000, state={"moneyline": {"home": 1.85}}
    )
    assert json.loads(text) == {
        "type": "snapshot",
        "marketId": 1001,
        "seq": 0,
        "ts": 1710001113000,
        "payload": {"moneyline": {"home": 1.85}},
        "epoch": "e1",
    }


def test_resync_and_recovery_flags_on_snapshots() -> None:
    resync = json.loads(
        CODEC.encode_snapshot("market:7", epoch="e", seq=3, ts=1, state={}, resync=True)
    )
    assert resync["resync"] is True and "recovered" not in resync
    lost = json.loads(
        CODEC.encode_snapshot(
            "market:7", epoch="e", seq=3, ts=1, state={}, recovered=False, reason="beyond_history"
        )
    )
    assert (lost["recovered"], lost["reason"]) == (False, "beyond_history")


def test_conflated_update_says_both_ends() -> None:
    text = CODEC.encode_conflated("market:1001", from_seq=5, seq=9, ts=2, patch={"a": 1})
    assert json.loads(text) == {
        "type": "odds_update",
        "marketId": 1001,
        "seq": 9,
        "ts": 2,
        "payload": {"a": 1},
        "conflated": True,
        "fromSeq": 5,
    }


def test_resumed_notice() -> None:
    text = CODEC.encode_resumed(
        "market:1001", recovered=False, from_seq=3, to_seq=40, reason="epoch_changed"
    )
    assert json.loads(text) == {
        "type": "resumed",
        "marketId": 1001,
        "recovered": False,
        "fromSeq": 3,
        "toSeq": 40,
        "reason": "epoch_changed",
    }


# -- market ids -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical", "wire"),
    [
        (1001, "1001", 1001),
        ("1001", "1001", 1001),
        ("0042", "42", 42),
        ("eur-usd", "eur-usd", "eur-usd"),
    ],
)
def test_market_ids(raw: object, canonical: str, wire: object) -> None:
    assert parse_market_id(raw) == canonical
    assert market_id(canonical) == wire
    assert market_of(market_topic(canonical)) == wire


@pytest.mark.parametrize("raw", [True, -1, 1.5, "", "a b", "x" * 65, None, [1], {"id": 1}])
def test_bad_market_ids(raw: object) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_market_id(raw)
    assert caught.value.code == "INVALID_MESSAGE"


# -- subscriptions -------------------------------------------------------------------------


def test_scope_refuses_markets_outside_it_and_subscribes_the_rest() -> None:
    s = session(scope={"1001"})
    actions = s.handle_text('{"type":"subscribe","markets":[1001,1002]}')
    assert sent(actions) == [
        {"type": "ack", "ok": True, "subscribed": [1001]},
        {
            "type": "error",
            "code": "FORBIDDEN_MARKET",
            "message": "the token does not allow markets [1002]",
            "markets": [1002],
        },
    ]
    assert [a for a in actions if isinstance(a, Join)] == [Join("market:1001")]


def test_resubscribing_does_not_join_twice() -> None:
    s = session()
    s.handle_text('{"type":"subscribe","markets":[1]}')
    actions = s.handle_text('{"type":"subscribe","markets":[1,2,"2"]}')
    assert sent(actions) == [{"type": "ack", "ok": True, "subscribed": [1, 2]}]
    assert [a for a in actions if isinstance(a, Join)] == [Join("market:2")]


def test_unsubscribing_an_unknown_market_is_a_quiet_ack() -> None:
    actions = session().handle_text('{"type":"unsubscribe","markets":[5]}')
    assert actions == [Send('{"type":"ack","ok":true,"unsubscribed":[],"subscribed":[]}')]


def test_too_many_markets_refuses_the_whole_request() -> None:
    s = session(max_markets=2)
    s.handle_text('{"type":"subscribe","markets":[1]}')
    message = error_of(s.handle_text('{"type":"subscribe","markets":[2,3]}'))
    assert message == {
        "type": "error",
        "code": "TOO_MANY_MARKETS",
        "message": "at most 2 markets per connection; already subscribed to 1, asked for 2 more",
    }
    assert list(s.subscribed) == ["1"]


def test_resume_of_a_subscribed_market_rejoins_from_the_offset() -> None:
    s = session()
    s.handle_text('{"type":"subscribe","markets":[1]}')
    actions = s.handle_text('{"type":"resume","offsets":{"1":7}}')
    assert [a for a in actions if not isinstance(a, Send)] == [
        Leave("market:1"),
        Join("market:1", since=7),
    ]


def test_resume_accepts_seq_and_epoch_objects() -> None:
    actions = session().handle_text('{"type":"resume","offsets":{"1":{"seq":7,"epoch":"ab"}}}')
    assert Join("market:1", since=7, epoch="ab") in actions


def test_resume_respects_scope() -> None:
    actions = session(scope={"1"}).handle_text('{"type":"resume","offsets":{"1":0,"2":0}}')
    codes = [m.get("code") for m in sent(actions)]
    assert codes == [None, "FORBIDDEN_MARKET"]
    assert [a for a in actions if isinstance(a, Join)] == [Join("market:1", since=0)]


# -- malformed input: one test each, with the exact error ---------------------------------


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        (
            "not json",
            "INVALID_JSON",
            "message is not valid JSON: Expecting value: line 1 column 1 (char 0)",
        ),
        ("[1,2]", "INVALID_MESSAGE", "expected a JSON object, got [1, 2]"),
        ('{"markets":[1]}', "INVALID_MESSAGE", "missing field: type"),
        ('{"type":5}', "INVALID_MESSAGE", "expected type to be a string, got 5"),
        (
            '{"type":"dance"}',
            "UNKNOWN_TYPE",
            'unknown message type "dance"; expected subscribe, unsubscribe, resume or ping',
        ),
        ('{"type":"subscribe"}', "INVALID_MESSAGE", "missing field: markets"),
        (
            '{"type":"subscribe","markets":5}',
            "INVALID_MESSAGE",
            "expected markets to be a non-empty list of ids, got 5",
        ),
        (
            '{"type":"subscribe","markets":[]}',
            "INVALID_MESSAGE",
            "expected markets to be a non-empty list of ids, got []",
        ),
        (
            '{"type":"subscribe","markets":[true]}',
            "INVALID_MESSAGE",
            "expected each market id to be a number or a name of 1-64 characters "
            "[A-Za-z0-9_.:-], got true",
        ),
        (
            '{"type":"unsubscribe","markets":"1001"}',
            "INVALID_MESSAGE",
            'expected markets to be a non-empty list of ids, got "1001"',
        ),
        ('{"type":"resume"}', "INVALID_MESSAGE", "missing field: offsets"),
        (
            '{"type":"resume","offsets":[1]}',
            "INVALID_MESSAGE",
            "expected offsets to be an object of marketId: lastSeq, got [1]",
        ),
        (
            '{"type":"resume","offsets":{"1001":"x"}}',
            "INVALID_MESSAGE",
            "expected offsets['1001'] to be a last seq (an integer >= 0), got \"x\"",
        ),
        (
            '{"type":"resume","offsets":{"1001":-1}}',
            "INVALID_MESSAGE",
            "expected offsets['1001'] to be a last seq (an integer >= 0), got -1",
        ),
        (
            '{"type":"resume","offsets":{"a b":1}}',
            "INVALID_MESSAGE",
            "expected each offsets key to be a number or a name of 1-64 characters "
            '[A-Za-z0-9_.:-], got "a b"',
        ),
        (
            '{"type":"resume","offsets":{"1":{"seq":1,"epoch":5}}}',
            "INVALID_MESSAGE",
            "expected offsets['1'].epoch to be a string",
        ),
    ],
)
def test_malformed_input_gets_the_exact_error(text: str, code: str, message: str) -> None:
    s = session()
    assert error_of(s.handle_text(text)) == {"type": "error", "code": code, "message": message}
    assert s.subscribed == {}  # a refused message changes nothing


def test_binary_frames_get_an_error() -> None:
    assert error_of(session().handle_binary()) == {
        "type": "error",
        "code": "BINARY_NOT_SUPPORTED",
        "message": "binary frames are not supported; send JSON text",
    }


def test_the_session_goes_on_after_an_error() -> None:
    s = session()
    s.handle_text("{oops")
    assert Join("market:1") in s.handle_text('{"type":"subscribe","markets":[1]}')
