"""The UOF dialect (seed 000), as plain synchronous functions over literal strings."""

from __future__ import annotations

import json

import pytest

from rt.dialects.base import FROM_LAST_DELIVERED, Join, Leave, ProtocolError, Send, Submit
from rt.dialects.uof.codec import CODEC
from rt.dialects.uof.session import UofSession
from rt.model import Update


def session(max_subscriptions: int = 10) -> UofSession:
    return UofSession(
        user_id="u1", connection_id="c1", max_subscriptions=max_subscriptions, wall_ms=lambda: 7
    )


def sent(actions: list[object]) -> list[dict[str, object]]:
    return [json.loads(a.text) for a in actions if isinstance(a, Send)]


def event_update(data: dict[str, object], seq: int = 5) -> dict[str, object]:
    return json.loads(CODEC.encode_update(Update("event:sr:match:1", "e", seq, 99, "patch", data)))


def test_opening_says_hello_and_joins_the_users_stream_quietly() -> None:
    actions = session().opened()
    assert sent(actions) == [
        {
            "type": "connection_established",
            "payload": {"userId": "u1", "connectionId": "c1", "serverTime": 7},
        }
    ]
    assert actions[1] == Join("user:u1", since=FROM_LAST_DELIVERED, announce=False)


def test_seed_subscribe_and_unsubscribe() -> None:
    s = session()
    actions = s.handle_text('{"type":"subscribe","payload":{"eventIds":["sr:match:12345"]}}')
    assert sent(actions) == [{"type": "subscribed", "payload": {"eventIds": ["sr:match:12345"]}}]
    assert actions[1] == Join("event:sr:match:12345")
    actions = s.handle_text('{"type":"unsubscribe","payload":{"eventIds":["sr:match:12345"]}}')
    assert actions[0] == Leave("event:sr:match:12345")
    assert sent(actions) == [{"type": "unsubscribed", "payload": {"eventIds": ["sr:match:12345"]}}]


def test_bare_event_ids_are_accepted_too() -> None:
    assert Join("event:sr:match:1") in session().handle_text(
        '{"type":"subscribe","eventIds":["sr:match:1"]}'
    )


def test_seed_ping_has_no_payload() -> None:
    assert sent(session().handle_text('{"type":"ping"}')) == [
        {"type": "pong", "payload": {"serverTime": 7}}
    ]


def test_seed_odds_change_shape() -> None:
    message = event_update(
        {"markets": {"1": {"status": "active", "outcomes": {"1": 1.90, "3": 4.20}}}}
    )
    assert message == {
        "type": "odds_change",
        "seq": 5,
        "ts": 99,
        "payload": {
            "eventId": "sr:match:1",
            "marketId": 1,
            "status": "active",
            "outcomes": [{"outcomeId": "1", "odds": 1.90}, {"outcomeId": "3", "odds": 4.20}],
        },
    }


def test_suspension_is_bet_stop_and_settlement_is_bet_settlement() -> None:
    stop = event_update({"markets": {"1": {"status": "suspended"}}})
    assert (stop["type"], stop["payload"]) == (
        "bet_stop",
        {"eventId": "sr:match:1", "marketId": 1, "status": "suspended"},
    )
    settled = event_update(
        {"status": "ended", "markets": {"2": {"status": "settled", "result": {"1": "win"}}}}
    )
    assert settled["type"] == "bet_settlement"
    assert settled["payload"] == {
        "eventId": "sr:match:1",
        "marketId": 2,
        "status": "settled",
        "outcomes": [{"outcomeId": "1", "result": "win"}],
        "eventStatus": "ended",
    }


def test_a_patch_of_several_markets_is_an_event_update() -> None:
    message = event_update(
        {"markets": {"1": {"status": "suspended"}, "2": {"status": "suspended"}}}
    )
    assert message["type"] == "event_update"
    assert [m["marketId"] for m in message["payload"]["markets"]] == [1, 2]


def test_seed_bet_result_shape() -> None:
    result = {"ticketId": "client-acc-xyz-789", "status": "accepted", "reason": None, "details": {}}
    text = CODEC.encode_update(Update("user:u1", "e", 3, 99, "event", result))
    assert json.loads(text) == {"type": "bet_result", "seq": 3, "ts": 99, "payload": result}


def test_snapshot_lists_markets_like_the_live_messages() -> None:
    state = {
        "eventId": "sr:match:1",
        "status": "live",
        "markets": {"1": {"status": "active", "outcomes": {"1": 2.0}}},
    }
    message = json.loads(
        CODEC.encode_snapshot("event:sr:match:1", epoch="e", seq=4, ts=9, state=state)
    )
    assert message == {
        "type": "snapshot",
        "seq": 4,
        "ts": 9,
        "epoch": "e",
        "payload": {
            "eventId": "sr:match:1",
            "status": "live",
            "markets": [
                {"marketId": 1, "status": "active", "outcomes": [{"outcomeId": "1", "odds": 2.0}]}
            ],
        },
    }


def test_resume_rejoins_events_and_the_users_stream() -> None:
    s = session()
    actions = s.handle_text('{"type":"resume","payload":{"offsets":{"sr:match:1":4,"user":2}}}')
    assert sent(actions) == [
        {"type": "subscribed", "payload": {"eventIds": ["sr:match:1"], "resumed": True}}
    ]
    assert [a for a in actions if not isinstance(a, Send)] == [
        Leave("user:u1"),
        Join("event:sr:match:1", since=4),
        Join("user:u1", since=2),
    ]


def test_submit_ticket_is_handed_to_the_desk() -> None:
    ticket = {"ticketId": "t", "selections": [], "stake": 1}
    actions = session().handle_text(json.dumps({"type": "submit_ticket", "payload": ticket}))
    assert actions == [Submit(ticket)]


def test_ticket_answers() -> None:
    s = session()
    assert json.loads(s.ticket_answer({"ticketId": "t", "status": "pending"})) == {
        "type": "ticket_received",
        "payload": {"ticketId": "t", "status": "pending"},
    }
    assert json.loads(s.ticket_answer(ProtocolError("INVALID_TICKET", "bad"))) == {
        "type": "error",
        "payload": {"code": "INVALID_TICKET", "message": "bad"},
    }


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        (
            "nope",
            "INVALID_JSON",
            "message is not valid JSON: Expecting value: line 1 column 1 (char 0)",
        ),
        ("[]", "INVALID_MESSAGE", "expected a JSON object, got []"),
        ("{}", "INVALID_MESSAGE", "missing field: type"),
        ('{"type":1}', "INVALID_MESSAGE", "expected type to be a string, got 1"),
        (
            '{"type":"bet"}',
            "UNKNOWN_TYPE",
            'unknown message type "bet"; expected subscribe, unsubscribe, ping, resume or submit_ticket',
        ),
        ('{"type":"subscribe","payload":{}}', "INVALID_MESSAGE", "missing field: payload.eventIds"),
        (
            '{"type":"subscribe","payload":{"eventIds":"x"}}',
            "INVALID_MESSAGE",
            'expected payload.eventIds to be a non-empty list of event ids, got "x"',
        ),
        (
            '{"type":"subscribe","payload":{"eventIds":[5]}}',
            "INVALID_MESSAGE",
            "expected each event id to be a string of 1-64 characters [A-Za-z0-9_.:-] such as 'sr:match:12345', got 5",
        ),
        (
            '{"type":"submit_ticket"}',
            "INVALID_MESSAGE",
            "expected payload to be an object, got null",
        ),
        (
            '{"type":"resume","payload":{"offsets":{}}}',
            "INVALID_MESSAGE",
            'expected payload.offsets to be a non-empty object of stream: lastSeq (an event id, or "user"), got {}',
        ),
        (
            '{"type":"resume","payload":{"offsets":{"user":-1}}}',
            "INVALID_MESSAGE",
            "expected offsets['user'] to be a last seq (an integer >= 0), got -1",
        ),
    ],
)
def test_malformed_input_gets_the_exact_error(text: str, code: str, message: str) -> None:
    s = session()
    assert sent(s.handle_text(text)) == [
        {"type": "error", "payload": {"code": code, "message": message}}
    ]
    assert s.subscribed == {}


def test_too_many_subscriptions() -> None:
    s = session(max_subscriptions=1)
    s.handle_text('{"type":"subscribe","payload":{"eventIds":["a"]}}')
    (error,) = sent(s.handle_text('{"type":"subscribe","payload":{"eventIds":["b"]}}'))
    assert error["payload"]["code"] == "TOO_MANY_SUBSCRIPTIONS"


def test_binary_frames_get_an_error() -> None:
    (error,) = sent(session().handle_binary())
    assert error["payload"]["code"] == "BINARY_NOT_SUPPORTED"
