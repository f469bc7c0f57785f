"""The topics dialect's session and codec (seed 004), fed plain strings: every example
message of the seed, and what rt adds where the seed is silent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rt.dialects.base import Join, Leave, Send
from rt.dialects.topics import check_path
from rt.dialects.topics.codec import CODEC, encode_error, iso
from rt.dialects.topics.names import InvalidTopic, Topic, client_topic, parse_topic
from rt.dialects.topics.session import TopicsSession
from rt.model import Update

# 2025-09-22T05:16:02.800000 UTC, the seed's first timestamp (to the millisecond).
NOW_MS = 1758518162800


def session(*, sources: set[str] | None = None, max_topics: int = 3) -> TopicsSession:
    known = {"stock.AAPL", "crypto.BTC", "futures.CL", "region.US"} if sources is None else sources

    def has_source(topic: Topic) -> bool:
        return (f"region.{topic.symbol}" if topic.is_summary else topic.instrument) in known

    return TopicsSession(
        client_id="your_client_id",
        has_source=has_source,
        max_topics=max_topics,
        messages_per_s=50.0,
        burst=100,
        wall_ms=lambda: NOW_MS,
    )


def sent(actions: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(a.text) for a in actions if type(a) is Send]


def test_timestamps_are_written_as_the_seed_writes_them() -> None:
    assert iso(NOW_MS) == "2025-09-22T05:16:02.800000"
    assert iso(0) == "1970-01-01T00:00:00.000000"


def test_connection_ack_has_the_seeds_fields_and_the_limits() -> None:
    (ack,) = sent(session().opened())
    assert ack == {
        "type": "connection_ack",
        "client_id": "your_client_id",
        "timestamp": "2025-09-22T05:16:02.800000",
        "limits": {"topics_per_connection": 3, "messages_per_second": 50.0, "burst": 100},
        "types": ["stock", "crypto", "futures", "options", "commodity", "market"],
        "intervals": ["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w", "1M"],
    }


def test_the_seeds_subscribe_then_the_candle() -> None:
    s = session()
    actions = s.handle_text('{"type": "subscribe", "topic": "stock.AAPL.1m"}')
    assert sent(actions) == [
        {
            "type": "subscribe_ack",
            "topic": "stock.AAPL.1m",
            "timestamp": "2025-09-22T05:16:02.800000",
        }
    ]
    # The join comes after the ack: the room's snapshot (the current candle) follows it.
    assert actions[-1] == Join("candle:stock.AAPL.1m")
    assert s.subscriptions() == 1


def test_the_seeds_unsubscribe() -> None:
    s = session()
    s.handle_text('{"type": "subscribe", "topic": "stock.AAPL.1m"}')
    actions = s.handle_text('{"type": "unsubscribe", "topic": "stock.AAPL.1m"}')
    assert actions[0] == Leave("candle:stock.AAPL.1m")
    assert sent(actions) == [
        {
            "type": "unsubscribe_ack",
            "topic": "stock.AAPL.1m",
            "timestamp": "2025-09-22T05:16:02.800000",
        }
    ]
    assert s.subscriptions() == 0


def test_the_seeds_ping() -> None:
    assert sent(session().handle_text('{"type": "ping"}')) == [
        {"type": "pong", "timestamp": "2025-09-22T05:16:02.800000"}
    ]


@pytest.mark.parametrize("topic", ["stock.AAPL.1m", "crypto.BTC.5m", "futures.CL.1h"])
def test_the_seeds_example_topics(topic: str) -> None:
    assert str(parse_topic(topic)) == topic
    assert (
        sent(session().handle_text(json.dumps({"type": "subscribe", "topic": topic})))[0]["type"]
        == "subscribe_ack"
    )


def test_the_seeds_summary_topic() -> None:
    topic = parse_topic("market.US.summary")
    assert topic.is_summary and topic.internal == "summary:US"
    assert client_topic("summary:US") == "market.US.summary"
    actions = session().handle_text('{"type":"subscribe","topic":"market.US.summary"}')
    assert actions[-1] == Join("summary:US")


def test_the_seeds_error_example() -> None:
    (error,) = sent(session().handle_text('{"type":"subscribe","topic":"stock_data"}'))
    assert error["type"] == "error" and error["error_code"] == "invalid_topic"
    assert "stock_data" in error["error_message"]
    assert error["timestamp"] == "2025-09-22T05:16:02.800000"


@pytest.mark.parametrize(
    ("topic", "named"),
    [
        ("stock_data", "{type}.{symbol}.{interval}"),
        ("stock.AAPL", "{type}.{symbol}.{interval}"),
        ("stock..1m", "{type}.{symbol}.{interval}"),
        ("bond.AAPL.1m", "valid types: stock, crypto, futures, options, commodity, market"),
        ("stock.AAPL.2m", "valid intervals: 1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w, 1M"),
        ("stock.AAPL.summary", "summary is only for market.{REGION}.summary"),
        ("stock.AA PL.1m", "a symbol is 1-32 characters"),
        ("stock." + "A" * 33 + ".1m", "a symbol is 1-32 characters"),
    ],
)
def test_a_bad_topic_says_what_is_wrong_and_what_is_valid(topic: str, named: str) -> None:
    with pytest.raises(InvalidTopic, match=None) as caught:
        parse_topic(topic)
    assert named in str(caught.value)
    (error,) = sent(session().handle_text(json.dumps({"type": "subscribe", "topic": topic})))
    assert error["error_code"] == "invalid_topic" and named in error["error_message"]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"topic": "stock.AAPL.1m"}',
        '{"type": 7}',
        '{"type": "hello"}',
        '{"type": "subscribe"}',
        '{"type": "subscribe", "topic": 5}',
        '{"type": "unsubscribe", "topic": null}',
    ],
)
def test_a_bad_message_is_invalid_message_and_the_connection_stays(text: str) -> None:
    s = session()
    (action,) = s.handle_text(text)
    assert type(action) is Send and action.error
    error = json.loads(action.text)
    assert error.keys() == {"type", "error_code", "error_message", "timestamp"}
    assert error["error_code"] == "invalid_message"
    # Still serving: the next message works.
    assert sent(s.handle_text('{"type":"ping"}'))[0]["type"] == "pong"


def test_a_binary_frame_is_invalid_message() -> None:
    (action,) = session().handle_binary()
    assert action.error and json.loads(action.text)["error_code"] == "invalid_message"


def test_no_source_is_subscription_failed() -> None:
    (action,) = session().handle_text('{"type":"subscribe","topic":"crypto.AAPL.1m"}')
    error = json.loads(action.text)
    assert error["error_code"] == "subscription_failed"
    assert error["error_message"] == (
        "cannot subscribe to crypto.AAPL.1m: no data source for crypto.AAPL"
    )
    (action,) = session().handle_text('{"type":"subscribe","topic":"market.EU.summary"}')
    assert "no data source for region EU" in json.loads(action.text)["error_message"]


def test_the_per_connection_cap_is_subscription_failed() -> None:
    s = session(max_topics=2)
    for topic in ("stock.AAPL.1m", "stock.AAPL.5m"):
        s.handle_text(json.dumps({"type": "subscribe", "topic": topic}))
    (action,) = s.handle_text('{"type":"subscribe","topic":"stock.AAPL.1h"}')
    error = json.loads(action.text)
    assert error["error_code"] == "subscription_failed"
    assert "at most 2 topics per connection" in error["error_message"]
    assert s.subscriptions() == 2


def test_subscribing_twice_and_unsubscribing_unknown_are_acknowledged_without_effect() -> None:
    s = session()
    s.handle_text('{"type":"subscribe","topic":"stock.AAPL.1m"}')
    again = s.handle_text('{"type":"subscribe","topic":"stock.AAPL.1m"}')
    assert [type(a) for a in again] == [Send] and sent(again)[0]["type"] == "subscribe_ack"
    unknown = s.handle_text('{"type":"unsubscribe","topic":"crypto.BTC.1m"}')
    assert [type(a) for a in unknown] == [Send]
    assert sent(unknown)[0]["type"] == "unsubscribe_ack"


def test_forget_drops_a_subscription_the_connection_refused() -> None:
    s = session()
    s.handle_text('{"type":"subscribe","topic":"stock.AAPL.1m"}')
    s.forget("candle:stock.AAPL.1m")
    assert s.subscriptions() == 0


def test_shared_refusals_are_written_in_the_seeds_codes() -> None:
    error = json.loads(encode_error("TOO_MANY_SUBSCRIPTIONS", "at most 128", ms=NOW_MS))
    assert error == {
        "type": "error",
        "error_code": "subscription_failed",
        "error_message": "at most 128",
        "timestamp": "2025-09-22T05:16:02.800000",
    }
    assert json.loads(CODEC.encode_error("SOMETHING_ELSE", "x"))["error_code"] == "invalid_message"
    assert json.loads(CODEC.encode_error("invalid_topic", "x"))["error_code"] == "invalid_topic"


CANDLE_STATE = {
    "open_time": NOW_MS - 2800,
    "close_time": NOW_MS - 2800 + 60_000,
    "open": 190.5,
    "high": 191.25,
    "low": 190.5,
    "close": 191.25,
    "volume": 150.0,
    "trades": 2,
    "closed": False,
    "updated": NOW_MS,
}
CANDLE = {
    "type": "candle",
    "topic": "stock.AAPL.1m",
    "seq": 7,
    "open_time": "2025-09-22T05:16:00.000000",
    "close_time": "2025-09-22T05:17:00.000000",
    "open": 190.5,
    "high": 191.25,
    "low": 190.5,
    "close": 191.25,
    "volume": 150.0,
    "trades": 2,
    "closed": False,
    "timestamp": "2025-09-22T05:16:02.800000",
}


def test_an_update_a_conflated_run_and_a_snapshot_are_all_one_whole_candle() -> None:
    topic = "candle:stock.AAPL.1m"
    update = Update(topic, "e", 7, NOW_MS, "patch", CANDLE_STATE)
    assert json.loads(CODEC.encode_update(update)) == CANDLE
    conflated = CODEC.encode_conflated(topic, from_seq=5, seq=7, ts=NOW_MS, patch=CANDLE_STATE)
    assert json.loads(conflated) == CANDLE
    snapshot = CODEC.encode_snapshot(topic, epoch="e", seq=7, ts=NOW_MS, state=CANDLE_STATE)
    assert json.loads(snapshot) == CANDLE


def test_a_summary_message() -> None:
    state = {
        "region": "US",
        "instruments": 3,
        "advancers": 1,
        "decliners": 1,
        "unchanged": 1,
        "volume": 10.0,
        "as_of": NOW_MS,
    }
    message = json.loads(CODEC.encode_update(Update("summary:US", "e", 2, NOW_MS, "patch", state)))
    assert message == {
        "type": "summary",
        "topic": "market.US.summary",
        "seq": 2,
        "region": "US",
        "instruments": 3,
        "advancers": 1,
        "decliners": 1,
        "unchanged": 1,
        "volume": 10.0,
        "timestamp": "2025-09-22T05:16:02.800000",
    }


@pytest.mark.parametrize(
    ("client_id", "ok"),
    [
        ("my_client", True),
        ("web-1.a:b@c", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        ("a b", False),
        ("caf\u00e9", False),
    ],
)
def test_client_ids(client_id: str, ok: bool) -> None:
    assert (check_path({"client_id": client_id}) is None) is ok
