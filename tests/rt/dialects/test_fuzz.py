"""Hostile messages for every dialect's session: the dialect's error, never an exception.

Every dialect served (``rt.dialects.DIALECTS``) is fuzzed. A new dialect needs one line: its
command names and field names in VOCABULARY (a test fails until it is there), so that the
strategies reach past "unknown type" into its commands' fields.

What is generated: JSON of wrong types and shapes for the dialect's own commands, huge
numbers, NaN and Infinity, lone surrogates, raw control characters, duplicate keys, deep
nesting, truncated text, and sequences of such messages on one session (state across them).

What is checked, for every message: ``handle_text`` returns (never raises); every text it
asks to send is JSON with a UTF-8 encoding; an error reply has exactly the shape of the
dialect's ``encode_error``; and a message that is certainly invalid (not JSON, or JSON that
rt refuses) gets exactly one error reply and nothing else (no join, no leave, no ticket).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rt.auth import Claims
from rt.dialects import DIALECTS as SERVED
from rt.dialects import Dialect, SessionContext
from rt.dialects.base import ProtocolError, Send, Session, Submit
from rt.dialects.trading.session import MESSAGE_TYPES
from rt.dialects.uof.desk import parse_ticket
from rt.settings import Settings

#: dialect name -> (its command types, the field names its commands read). One line each.
VOCABULARY: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "kmarket": (("subscribe", "unsubscribe", "resume", "ping"), ("markets", "offsets", "ts")),
    "uof": (
        ("subscribe", "unsubscribe", "resume", "ping", "submit_ticket"),
        ("payload", "eventIds", "offsets", "ticketId", "stake", "selections"),
    ),
    "topics": (("subscribe", "unsubscribe", "ping"), ("topic",)),
    "trading": (
        MESSAGE_TYPES,
        (
            "user_id",
            "token",
            "channels",
            "instruments",
            "instrument_id",
            "direction",
            "offset",
            "volume",
            "price",
            "order_type",
            "client_order_id",
            "order_id",
        ),
    ),
    "predictions": (
        ("subscribe", "unsubscribe", "heartbeat", "get_stats"),
        (
            "data",
            "subscription_type",
            "filters",
            "match_ids",
            "leagues",
            "min_confidence",
            "event_types",
        ),
    ),
}

DIALECTS = sorted(SERVED, key=lambda d: d.name)

#: Replies besides the error message that a dialect's protocol uses to refuse (the seed's
#: ``auth_response`` with ``success: false``, say): an error reply may be one of these.
REFUSING_REPLIES: dict[str, tuple[str, ...]] = {
    "trading": ("auth_response", "subscribe_response", "unsubscribe_response"),
}

#: As written in JSON text: escapes that decode to a lone UTF-16 surrogate.
LONE_SURROGATE_ESCAPES = ["\\ud800", "\\udfff", "a\\udc00b", "\\udc00\\ud800"]
ODD_CHARACTERS = ["\ud800", "\udfff", "\x00", "\x1f", "\x7f", "\u2028", "\ufeff"]

text_values = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from(ODD_CHARACTERS)), max_size=20
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**80), max_value=10**80),
    st.floats(),  # NaN and the infinities included
    st.sampled_from([2**63, -(2**63) - 1, 10**50, 1e308, -0.0, 5e-324]),
)
ids = st.one_of(
    st.sampled_from(["1001", "sr:match:1", "user", "", "0", "-1", "a" * 65, "x y"]),
    text_values,
    numbers,
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text_values, ids)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(ids.map(str), text_values), inner, max_size=4),
    ),
    max_leaves=12,
)


def _dump(value: Any) -> str:
    # ensure_ascii writes a lone surrogate as its \\uXXXX escape; allow_nan writes NaN.
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


@st.composite
def commands(draw: st.DrawFn, dialect: Dialect) -> str:
    """A command of the dialect with fields of any type and shape (maybe valid)."""
    types, fields = VOCABULARY[dialect.name]
    message: dict[str, Any] = {"type": draw(st.one_of(st.sampled_from(types), json_values))}
    for name in draw(st.lists(st.sampled_from(fields), max_size=3, unique=True)):
        if draw(st.booleans()):
            inner = draw(st.lists(st.sampled_from(fields), max_size=2, unique=True))
            message[name] = {n: draw(json_values) for n in inner}
        else:
            message[name] = draw(json_values)
    return _dump(message)


@st.composite
def refused_json(draw: st.DrawFn, dialect: Dialect) -> str:
    """Text that is not JSON, or JSON rt refuses: certainly invalid."""
    types, fields = VOCABULARY[dialect.name]
    kind = draw(st.sampled_from(types))
    field = draw(st.sampled_from(fields))
    depth = draw(st.integers(min_value=33, max_value=50_000))
    constant = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]))
    digits = "9" * draw(st.integers(41, 10_000))
    surrogate = draw(st.sampled_from(LONE_SURROGATE_ESCAPES))
    control = draw(st.sampled_from(["\x00", "\x01", "\x1f", "\n", "\t"]))
    head = f'{{"type":"{kind}","{field}":'
    choices = [
        "[" * depth,
        "[" * depth + "]" * depth,
        head + '{"a":' * depth + "1" + "}" * depth + "}",
        head + constant + "}",
        head + digits + "}",
        head + '"' + surrogate + '"}',
        head + '[1,{"' + surrogate + '":1}]}',
        head + '1,"' + field + '":2}',
        f'{{"type":"{kind}","type":"{kind}"}}',
        head + '"a' + control + '"}',
    ]
    text = draw(st.sampled_from(choices))
    if draw(st.booleans()) and len(text) > 1:  # or truncated anywhere
        cut = draw(st.integers(min_value=0, max_value=len(text) - 1))
        text = text[:cut] if text[:cut].count("[") + text[:cut].count("{") else "{" + text[:cut]
    return text


def hostile(dialect: Dialect) -> st.SearchStrategy[tuple[str, bool]]:
    """(text, certainly invalid) pairs."""
    return st.one_of(
        commands(dialect).map(lambda t: (t, False)),
        json_values.map(lambda v: (_dump(v), False)),
        refused_json(dialect).map(lambda t: (t, True)),
        st.text(max_size=30).map(lambda t: (t, False)),
    )


def new_session(dialect: Dialect) -> Session:
    claims = Claims(user_id=7, scope_markets=None, expires_at_ms=0)
    context = SessionContext(
        claims, "c1", Settings(wall_ms=lambda: 1), path_params={"client_id": "fuzz"}
    )
    return dialect.new_session(context)


def shape(value: Any) -> Any:
    """The keys of every object in ``value``, nested: two error replies have one shape."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return type(value).__name__


def check(dialect: Dialect, session: Session, text: str, certainly_invalid: bool) -> None:
    actions = session.handle_text(text)  # never raises: that is the first check
    error_shape = shape(json.loads(dialect.encode_error("CODE", "message")))
    for action in actions:
        if type(action) is Send:
            action.text.encode("utf-8")  # every reply can go on the wire
            reply = json.loads(action.text)
            if action.error and reply.get("type") in REFUSING_REPLIES.get(dialect.name, ()):
                assert reply["success"] is False, action.text
            elif action.error:
                assert shape(reply) == error_shape, action.text
        elif type(action) is Submit:
            # The ticket desk validates what the session hands it: a Ticket or its error.
            try:
                parse_ticket(action.ticket)
            except ProtocolError as exc:
                assert exc.code == "INVALID_TICKET"
    if certainly_invalid:
        assert len(actions) == 1, actions
        (reply,) = actions
        assert type(reply) is Send and reply.error, reply


def test_every_dialect_is_fuzzed() -> None:
    assert sorted(VOCABULARY) == [d.name for d in DIALECTS]


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_hostile_messages_get_the_dialects_error(dialect: Dialect, data: st.DataObject) -> None:
    session = new_session(dialect)
    session.opened()
    for text, certainly_invalid in data.draw(st.lists(hostile(dialect), min_size=1, max_size=6)):
        check(dialect, session, text, certainly_invalid)


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_the_reported_crashes(dialect: Dialect) -> None:
    session = new_session(dialect)
    for text in (
        "[" * 30_000 + "]" * 30_000,
        '{"type":"ping","ts":NaN}',
        '{"type":"ping","ts":"\\ud800"}',
        '{"type":"subscribe","markets":["\\ud800"],"payload":{"eventIds":["\\udfff"]}}',
    ):
        check(dialect, session, text, certainly_invalid=True)


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_a_binary_frame_gets_the_dialects_error(dialect: Dialect) -> None:
    (reply,) = new_session(dialect).handle_binary()
    assert type(reply) is Send and reply.error
    assert shape(json.loads(reply.text)) == shape(json.loads(dialect.encode_error("C", "m")))
