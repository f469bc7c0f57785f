"""The publish batch (rt/delivery/publishing.py) and the publisher WebSocket's frames (rt/ws/publisher.py),
without sockets: text in, a validated batch or a clear error out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from rt.auth import is_admin_token
from rt.delivery.publishing import (
    MAX_BATCH_UPDATES,
    PublishBatch,
    PublishInvalid,
    PublishUpdate,
    parse_batch,
    parse_batch_json,
    parse_update,
    publish_batch,
)
from rt.engine import MemoryEngine
from rt.model import Json, Update, UpdateKind
from rt.ws.publisher import (
    FrameError,
    decode_frame,
    encode_error,
    encode_published,
    presented_token,
)


def item(market: Any = 1001, payload: Any = None) -> dict[str, Any]:
    return {"marketId": market, "payload": {"p": 1} if payload is None else payload}


# -- the batch -----------------------------------------------------------------------------


def test_a_valid_batch_keeps_its_order_and_canonical_market_ids() -> None:
    batch = parse_batch(
        {"updates": [item(1001), item("0042"), item("cup.final-1"), item(7, {"a": {"b": None}})]}
    )
    assert [u.marketId for u in batch.updates] == ["1001", "42", "cup.final-1", "7"]
    assert [u.topic for u in batch.updates] == [
        "market:1001",
        "market:42",
        "market:cup.final-1",
        "market:7",
    ]
    assert batch.updates[3].payload == {"a": {"b": None}}


def test_json_and_decoded_input_give_the_same_batch() -> None:
    body = {"updates": [item(1, {"x": [1, 2.5, "s", True, None]}), item("2")]}
    assert parse_batch_json(json.dumps(body)) == parse_batch(body)
    assert parse_batch_json(json.dumps(body).encode()) == parse_batch(body)


def test_the_largest_batch_is_accepted() -> None:
    batch = parse_batch({"updates": [item(m) for m in range(MAX_BATCH_UPDATES)]})
    assert len(batch.updates) == MAX_BATCH_UPDATES == 1000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            {"updates": []}, "updates: a batch holds 1 to 1000 updates, got 0", id="empty"
        ),
        pytest.param(
            {"updates": [item()] * 1001},
            "updates: a batch holds 1 to 1000 updates, got 1001",
            id="too-many",
        ),
        pytest.param({}, "updates: this field is required", id="no-updates"),
        pytest.param(
            {"updates": {"a": 1}}, 'updates: expected a list, got {"a": 1}', id="not-a-list"
        ),
        pytest.param([item()], "expected a JSON object, got [{", id="not-an-object"),
        pytest.param(
            {"updates": [item()], "extra": 1}, "extra: unknown field", id="unknown-batch-field"
        ),
        pytest.param(
            {"updates": [item(), 5]},
            "updates[1]: expected a JSON object, got 5",
            id="item-not-object",
        ),
        pytest.param(
            {"updates": [item("no such id!")]},
            'updates[0].marketId: expected marketId to be a number or a name of 1-64 characters [A-Za-z0-9_.:-], got "no such id!"',
            id="bad-market",
        ),
        pytest.param(
            {"updates": [item(-3)]},
            "updates[0].marketId: expected marketId to be >= 0, got -3",
            id="negative-market",
        ),
        pytest.param(
            {"updates": [item(True)]},
            "updates[0].marketId: expected marketId to be a number or a name",
            id="bool-market",
        ),
        pytest.param(
            {"updates": [item(payload=[1, 2])]},
            "updates[0].payload: expected payload to be a JSON object (an RFC 7396 merge patch), got [1, 2]",
            id="payload-list",
        ),
        pytest.param(
            {"updates": [item(payload=5)]},
            "updates[0].payload: expected payload to be a JSON object",
            id="payload-number",
        ),
        pytest.param(
            {"updates": [{"marketId": 1}]},
            "updates[0].payload: this field is required",
            id="payload-missing",
        ),
        pytest.param(
            {"updates": [item(payload={"a": {"b": [1.0, float("nan")]}})]},
            "updates[0].payload: expected payload to hold only finite numbers, got nan",
            id="payload-nan",
        ),
        pytest.param(
            {"updates": [item(payload={"a": float("inf")})]},
            "updates[0].payload: expected payload to hold only finite numbers, got inf",
            id="payload-inf",
        ),
        pytest.param(
            {"updates": [item(), item(payload={"a": ["ok", "\ud800"]})]},
            'updates[1].payload: expected payload to hold only text with a UTF-8 encoding, got "\\ud800" (a lone UTF-16 surrogate)',
            id="payload-lone-surrogate",
        ),
        pytest.param(
            {"updates": [item(payload={"\udc00": 1})]},
            "updates[0].payload: expected payload to hold only text with a UTF-8 encoding",
            id="key-lone-surrogate",
        ),
        pytest.param(
            {"updates": [{**item(), "seq": 4}]}, "updates[0].seq: unknown field", id="unknown-field"
        ),
    ],
)
def test_a_bad_batch_is_refused_with_where_and_why(body: object, message: str) -> None:
    with pytest.raises(PublishInvalid) as refused:
        parse_batch(body)
    assert str(refused.value).startswith(message), str(refused.value)


def test_every_problem_is_named_up_to_five() -> None:
    body = {"updates": [item(), item("bad id"), item(payload=1), *[item("x y")] * 6]}
    with pytest.raises(PublishInvalid) as refused:
        parse_batch(body)
    text = str(refused.value)
    assert text.startswith("updates[1].marketId: expected marketId")
    assert "; updates[2].payload: expected payload to be a JSON object" in text
    assert text.endswith("; and 3 more")  # 8 problems: 5 shown


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the body is not valid JSON"),
        (b"{bad", "the body is not valid JSON"),
        (
            b'{"updates":[{"marketId":1,"payload":{"a":NaN}}]}',
            "updates[0].payload: expected payload to hold only finite numbers",
        ),
        (
            b'{"updates":[{"marketId":1,"payload":{"a":1e999}}]}',
            "updates[0].payload: expected payload to hold only finite numbers, got inf",
        ),
        (b"[]", "expected a JSON object, got []"),
    ],
)
def test_bad_json_bodies(body: bytes, message: str) -> None:
    with pytest.raises(PublishInvalid) as refused:
        parse_batch_json(body)
    assert str(refused.value).startswith(message), str(refused.value)


def test_one_update() -> None:
    assert parse_update(item("1001")) == PublishUpdate(marketId="1001", payload={"p": 1})
    with pytest.raises(PublishInvalid, match=r"^payload: this field is required$"):
        parse_update({"marketId": 1})


# -- publishing ----------------------------------------------------------------------------


class RecordingHub:
    """Stands in for the Hub: publishes straight into a memory engine."""

    def __init__(self) -> None:
        self.engine = MemoryEngine(wall_ms=lambda: 1234)

    async def publish_many(self, items: Sequence[tuple[str, Json, UpdateKind]]) -> list[Update]:
        return await self.engine.publish_many(items)


async def test_publish_batch_publishes_in_order_and_says_where_each_landed() -> None:
    hub = RecordingHub()
    batch = parse_batch(
        {"updates": [item(1, {"a": 1}), item("x", {"b": 2}), item(1, {"a": None, "c": 3})]}
    )
    results = await publish_batch(hub, batch.updates)
    assert results == [
        {"marketId": 1, "seq": 1, "ts": 1234},
        {"marketId": "x", "seq": 1, "ts": 1234},
        {"marketId": 1, "seq": 2, "ts": 1234},
    ]
    assert (await hub.engine.snapshot("market:1")).state == {"c": 3}
    assert [u.data for u in await hub.engine.updates("market:1", since_seq=0, limit=10)] == [
        {"a": 1},
        {"a": None, "c": 3},
    ]


# -- /ws/publish frames --------------------------------------------------------------------


def test_a_batch_frame() -> None:
    frame = {"type": "publish", "id": 7, "updates": [item(1001), item("1002")]}
    correlation_id, batch = decode_frame(json.dumps(frame))
    assert correlation_id == 7
    assert batch == parse_batch({"updates": [item(1001), item("1002")]})


def test_a_single_update_frame_without_an_id() -> None:
    correlation_id, batch = decode_frame('{"type":"publish","marketId":"1001","payload":{"p":2}}')
    assert correlation_id is None
    assert batch == PublishBatch(updates=[PublishUpdate(marketId="1001", payload={"p": 2})])


@pytest.mark.parametrize(
    ("text", "code", "correlation_id", "message"),
    [
        ("{nope", "BAD_JSON", None, "the frame is not valid JSON"),
        ("[1]", "BAD_JSON", None, "expected a JSON object, got [1]"),
        (
            '{"type":"publish","id":1,"marketId":1,"payload":{"a":NaN}}',
            "BAD_JSON",
            None,
            "the frame is not valid JSON (NaN is not a JSON value)",
        ),
        (
            '{"type":"publish","id":1,"marketId":1,"payload":{"a":"\\ud800"}}',
            "BAD_JSON",
            None,
            "the frame is not valid JSON (string",
        ),
        (
            '{"type":"subscribe","id":"a"}',
            "UNKNOWN_TYPE",
            "a",
            'expected type "publish", got "subscribe"',
        ),
        ('{"id":3,"updates":[]}', "UNKNOWN_TYPE", 3, 'expected type "publish", got null'),
        (
            '{"type":"publish","id":[1],"updates":[]}',
            "INVALID_PUBLISH",
            None,
            "expected id to be a string or a number, got [1]",
        ),
        (
            '{"type":"publish","id":true,"updates":[]}',
            "INVALID_PUBLISH",
            None,
            "expected id to be a string or a number, got true",
        ),
        (
            '{"type":"publish","id":"e","updates":[]}',
            "INVALID_PUBLISH",
            "e",
            "updates: a batch holds 1 to 1000 updates, got 0",
        ),
        (
            '{"type":"publish","id":4,"updates":[{"marketId":1,"payload":[]}]}',
            "INVALID_PUBLISH",
            4,
            "updates[0].payload: expected payload to be a JSON object",
        ),
        (
            '{"type":"publish","marketId":"bad id","payload":{}}',
            "INVALID_PUBLISH",
            None,
            "marketId: expected marketId to be a number or a name",
        ),
        (
            '{"type":"publish","marketId":1}',
            "INVALID_PUBLISH",
            None,
            "payload: this field is required",
        ),
        (
            '{"type":"publish"}',
            "INVALID_PUBLISH",
            None,
            "marketId: this field is required; payload: this field is required",
        ),
        (
            '{"type":"publish","updates":[],"marketId":1}',
            "INVALID_PUBLISH",
            None,
            "unknown field 'marketId': a publish frame has either updates, or marketId and payload",
        ),
        (
            '{"type":"publish","marketId":1,"payload":{},"seq":2}',
            "INVALID_PUBLISH",
            None,
            "unknown field 'seq'",
        ),
    ],
)
def test_a_bad_frame_is_an_error_naming_its_id(
    text: str, code: str, correlation_id: object, message: str
) -> None:
    with pytest.raises(FrameError) as refused:
        decode_frame(text)
    error = refused.value
    assert (error.code, error.correlation_id) == (code, correlation_id)
    assert error.message.startswith(message), error.message


def test_replies() -> None:
    assert json.loads(encode_published("a", [{"marketId": 1001, "seq": 3, "ts": 5}])) == {
        "type": "published",
        "id": "a",
        "results": [{"marketId": 1001, "seq": 3, "ts": 5}],
    }
    assert json.loads(encode_error("BAD_JSON", "no", None)) == {
        "type": "error",
        "id": None,
        "code": "BAD_JSON",
        "message": "no",
    }


@pytest.mark.parametrize(
    ("headers", "query", "expected", "ok"),
    [
        ([(b"authorization", b"Bearer s3cret")], "", "s3cret", True),
        ([(b"Authorization", b"bearer  s3cret ")], "", "s3cret", True),
        ([], "s3cret", "s3cret", True),
        ([], "", "s3cret", False),
        ([(b"authorization", b"Bearer wrong")], "", "s3cret", False),
        ([(b"authorization", b"Basic s3cret")], "", "s3cret", False),
        # A header, when given, is what counts.
        ([(b"authorization", b"Bearer wrong")], "s3cret", "s3cret", False),
        ([], "s3cre", "s3cret", False),
        # No admin token configured: nobody gets in.
        ([(b"authorization", b"Bearer ")], "", "", False),
        ([], "", "", False),
    ],
)
def test_admin_token(
    headers: list[tuple[bytes, bytes]], query: str, expected: str, ok: bool
) -> None:
    # What the listener hands the admin gate for /ws/publish, checked as the gate checks it.
    assert is_admin_token(presented_token(headers, query), expected) is ok
