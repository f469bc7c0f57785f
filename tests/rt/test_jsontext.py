"""rt/jsontext.loads: the one parser for what peers send, and the limits it applies."""

from __future__ import annotations

import pytest

from rt.jsontext import MAX_DEPTH, JsonRefused, loads


@pytest.mark.parametrize(
    ("text", "why"),
    [
        pytest.param("[" * 30_000 + "]" * 30_000, "nest deeper than 32 levels", id="deep-30000"),
        pytest.param('{"a":' * 33 + "1" + "}" * 33, "nest deeper than 32 levels", id="deep-33"),
        pytest.param('{"type":"ping","ts":NaN}', "NaN is not a JSON value", id="nan"),
        pytest.param("[Infinity]", "Infinity is not a JSON value", id="infinity"),
        pytest.param("[-Infinity]", "-Infinity is not a JSON value", id="minus-infinity"),
        pytest.param("[1e999]", "number 1e999 is out of range", id="float-overflow"),
        pytest.param("[" + "9" * 41 + "]", "is longer than 40 characters", id="long-int"),
        pytest.param("[" + "9" * 5000 + "]", "is longer than 40 characters", id="huge-int"),
        pytest.param('{"a":1,"b":2,"a":3}', 'duplicate key "a"', id="duplicate-key"),
        pytest.param(
            '["\\ud800"]', 'string "\\ud800" holds a lone UTF-16 surrogate', id="lone-high"
        ),
        pytest.param('{"x":"a\\udc00"}', "holds a lone UTF-16 surrogate", id="lone-low"),
        pytest.param('{"\\ud800":1}', 'key "\\ud800" holds a lone UTF-16 surrogate', id="lone-key"),
        pytest.param('"\\udc00\\ud800"', "lone UTF-16 surrogate", id="swapped-pair"),
        pytest.param('["a\x01"]', "Invalid control character", id="control-character"),
        pytest.param("{nope", "Expecting property name", id="not-json"),
        pytest.param("", "Expecting value", id="empty"),
    ],
)
def test_refused_with_why(text: str, why: str) -> None:
    with pytest.raises(JsonRefused) as refused:
        loads(text)
    assert why in str(refused.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a":' * 32 + "1" + "}" * 32, None),  # exactly the limit
        ('["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]', ["[" * 36]),  # brackets in strings
        ('["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]', ['"' + "[" * 34]),  # and escaped quotes
        ('"\\ud83d\\ude00"', "\U0001f600"),  # a surrogate pair is one character
        ('"\\\\ud800"', "\\ud800"),  # an escaped backslash, not an escape
        ("[" + "9" * 40 + "]", [int("9" * 40)]),
        ("[-1.5e300, 0.0, 12]", [-1.5e300, 0.0, 12]),
    ],
)
def test_accepted(text: str, value: object) -> None:
    parsed = loads(text)
    if value is not None:
        assert parsed == value
    else:
        depth = 0
        while isinstance(parsed, dict):
            parsed, depth = parsed["a"], depth + 1
        assert depth == MAX_DEPTH


def test_the_limits_are_parameters() -> None:
    with pytest.raises(JsonRefused, match="deeper than 2"):
        loads("[[[1]]]", max_depth=2)
    with pytest.raises(JsonRefused, match="longer than 3"):
        loads("1234", max_number_chars=3)


def test_refused_is_a_value_error() -> None:
    # Every caller already turns ValueError into its "not valid JSON" answer.
    assert issubclass(JsonRefused, ValueError)
