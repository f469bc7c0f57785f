"""The feed protocol codec: every message decodes, encodes back, and bad input is named."""

from __future__ import annotations

import json

import pytest

from rt.feeds.messages import (
    Alive,
    BetSettlement,
    BetStop,
    EventState,
    FeedProtocolError,
    FeedSnapshot,
    MarketState,
    OddsChange,
    SnapshotRequest,
    Unknown,
    decode_request,
    decode_upstream,
    encode,
)

SNAPSHOT = {
    "type": "snapshot",
    "requestId": 1,
    "ts": 1718000000000,
    "events": [
        {
            "eventId": "sr:match:1",
            "status": "live",
            "markets": {
                "1": {"status": "active", "outcomes": {"1": 1.95, "2": 3.4, "3": 4.2}},
                "2": {"status": "suspended", "outcomes": {"1": 2.1, "2": 3.1, "3": 3.3}},
                "3": {
                    "status": "settled",
                    "outcomes": {"1": 1.5, "2": 4.0, "3": 6.0},
                    "result": {"1": "win", "2": "lose", "3": "lose"},
                },
            },
        }
    ],
}

DECODED = [
    ({"type": "alive", "ts": 1718000000000}, Alive(ts=1718000000000)),
    (
        {"type": "odds_change", "eventId": "sr:match:1", "marketId": "1", "outcomes": {"1": 1.95}},
        OddsChange("sr:match:1", "1", {"1": 1.95}),
    ),
    ({"type": "bet_stop", "eventId": "sr:match:1", "marketId": "2"}, BetStop("sr:match:1", "2")),
    ({"type": "bet_stop", "eventId": "sr:match:1"}, BetStop("sr:match:1", None)),
    (
        {
            "type": "bet_settlement",
            "eventId": "sr:match:1",
            "marketId": "1",
            "result": {"1": "win", "2": "lose"},
        },
        BetSettlement("sr:match:1", "1", {"1": "win", "2": "lose"}),
    ),
    (
        SNAPSHOT,
        FeedSnapshot(
            request_id=1,
            ts=1718000000000,
            events=(
                EventState(
                    "sr:match:1",
                    "live",
                    {
                        "1": MarketState("active", {"1": 1.95, "2": 3.4, "3": 4.2}),
                        "2": MarketState("suspended", {"1": 2.1, "2": 3.1, "3": 3.3}),
                        "3": MarketState(
                            "settled",
                            {"1": 1.5, "2": 4.0, "3": 6.0},
                            {"1": "win", "2": "lose", "3": "lose"},
                        ),
                    },
                ),
            ),
        ),
    ),
]


@pytest.mark.parametrize(("wire", "message"), DECODED, ids=[w["type"] for w, _ in DECODED])
def test_each_message_decodes_and_encodes_back(wire: dict, message: object) -> None:
    assert decode_upstream(json.dumps(wire)) == message
    assert json.loads(encode(message)) == wire  # type: ignore[arg-type]


def test_integer_ids_are_taken_as_strings() -> None:
    text = '{"type":"odds_change","eventId":"sr:match:9","marketId":18,"outcomes":{"1":2,"2":1.8}}'
    assert decode_upstream(text) == OddsChange("sr:match:9", "18", {"1": 2.0, "2": 1.8})


def test_snapshot_request_both_ways() -> None:
    assert encode(SnapshotRequest(request_id=3)) == '{"type":"snapshot_request","requestId":3}'
    assert decode_request('{"type":"snapshot_request","requestId":3}') == SnapshotRequest(3)
    assert decode_request('{"type":"snapshot_request"}') == SnapshotRequest(None)
    assert decode_request('{"type":"subscribe"}') == Unknown("subscribe")


def test_unknown_types_decode_as_unknown() -> None:
    assert decode_upstream('{"type":"fixture_change","eventId":"sr:match:1"}') == Unknown(
        "fixture_change"
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (b"{}", "expected a text message, got a binary one"),
        (
            "{",
            "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ("[1]", "expected a JSON object, got [1]"),
        ('{"type": 5}', "expected type to be a string, got 5"),
        ('{"type": "alive"}', "alive: expected ts to be milliseconds (an integer), got null"),
        (
            '{"type": "alive", "ts": "now"}',
            'alive: expected ts to be milliseconds (an integer), got "now"',
        ),
        (
            '{"type": "odds_change", "eventId": "sr match", "marketId": "1", "outcomes": {"1": 2}}',
            'odds_change: expected eventId to be 1-64 of A-Z a-z 0-9 _ . : -, got "sr match"',
        ),
        (
            '{"type": "odds_change", "eventId": "e", "marketId": true, "outcomes": {"1": 2}}',
            "odds_change: expected marketId to be a non-empty string or an integer, got true",
        ),
        (
            '{"type": "odds_change", "eventId": "e", "marketId": "1", "outcomes": {}}',
            "odds_change: expected outcomes to be an object of outcomeId: odds, got {}",
        ),
        (
            '{"type": "odds_change", "eventId": "e", "marketId": "1", "outcomes": {"1": 1.0}}',
            "odds_change: expected outcomes['1'] to be odds above 1, got 1.0",
        ),
        (
            '{"type": "odds_change", "eventId": "e", "marketId": "1", "outcomes": {"1": "2.5"}}',
            "odds_change: expected outcomes['1'] to be odds above 1, got \"2.5\"",
        ),
        (
            '{"type": "bet_settlement", "eventId": "e", "marketId": "1", "result": {"1": "won"}}',
            'bet_settlement: expected result[\'1\'] to be "win" or "lose", got "won"',
        ),
        (
            '{"type": "snapshot", "events": {}}',
            "snapshot: expected events to be a list of events, got {}",
        ),
        (
            '{"type": "snapshot", "events": [{"eventId": "e", "markets": {"1": {"status": "open"}}}]}',
            'snapshot e market 1: expected status to be active, suspended or settled, got "open"',
        ),
        (
            '{"type": "snapshot", "events": [{"eventId": "e", "markets": {"1": {"status": "active"}}}]}',
            "snapshot e market 1: expected outcomes to be an object of outcomeId: odds, got null",
        ),
        (
            '{"type": "snapshot", "events": [{"eventId": "e", "markets": {"1": {"status": "settled"}}}]}',
            'snapshot e market 1: expected result to be an object of outcomeId: "win" | "lose", got null',
        ),
        (
            '{"type": "snapshot", "events": [{"eventId": "e", "status": "over", "markets": {}}]}',
            'snapshot e: expected status to be live or ended, got "over"',
        ),
        (
            '{"type": "snapshot", "requestId": "1", "events": []}',
            'snapshot: expected requestId to be an integer, got "1"',
        ),
    ],
)
def test_bad_messages_are_named(text: str | bytes, error: str) -> None:
    with pytest.raises(FeedProtocolError) as caught:
        decode_upstream(text)
    assert str(caught.value) == error
