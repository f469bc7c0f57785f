"""The JSON text rt writes and reads, and how error messages quote what a peer sent.

``loads`` is the one parser for text a peer sends (every dialect's session, the publisher
socket): it refuses, with a ``JsonRefused`` that says why, what Python's ``json`` would accept
or choke on but no dialect could answer or pass on: nesting deeper than ``max_depth`` (deep
enough and ``json`` itself raises RecursionError), numbers longer than ``max_number_chars``
digits, NaN and Infinity (and floats that overflow to them), duplicate keys (which one wins
differs between parsers), and lone UTF-16 surrogates written as ``\\ud800`` escapes (no UTF-8
encoding exists for them, so nothing holding one could ever be sent on).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_NUMBER_CHARS", "JsonRefused", "dumps", "encodable", "loads", "show"]

#: Compact JSON as every dialect writes it: no spaces, UTF-8 kept, no NaN or Infinity.
dumps: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False
).encode

#: Deepest nesting of arrays and objects a peer may send (the seeds' messages use 4 at most).
MAX_DEPTH = 32
#: Longest number a peer may send, in characters (a 64-bit integer has 20).
MAX_NUMBER_CHARS = 40

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class JsonRefused(ValueError):
    """Text that is not JSON, or JSON that rt refuses; the message says which and where."""


def show(value: object, *, limit: int = 60) -> str:
    """A received value, short, for an error message: ``expected markets ..., got 5``."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def encodable(text: str) -> bool:
    """True when ``text`` has a UTF-8 encoding (it holds no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _depth(text: str) -> int:
    """How deep arrays and objects nest in ``text`` (brackets inside strings do not count)."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _check_strings(value: object) -> None:
    """Refuse a lone surrogate in any string of a parsed value (keys are checked as they
    are parsed). Recursion is safe: the depth was checked before parsing."""
    if isinstance(value, str):
        if not encodable(value):
            raise JsonRefused(f"string {show(value)} holds a lone UTF-16 surrogate")
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_strings(item)


def loads(
    text: str, *, max_depth: int = MAX_DEPTH, max_number_chars: int = MAX_NUMBER_CHARS
) -> Any:
    """Parse a peer's JSON text with rt's limits (see the module docstring).

    Raises JsonRefused (a ValueError) and nothing else, whatever ``text`` holds.
    """
    # Counting brackets is cheap; the exact scan runs only when there could be too many.
    if text.count("[") + text.count("{") > max_depth and _depth(text) > max_depth:
        raise JsonRefused(f"arrays and objects nest deeper than {max_depth} levels")

    def number(kind: type[int] | type[float]) -> Callable[[str], int | float]:
        def parse(digits: str) -> int | float:
            if len(digits) > max_number_chars:
                raise JsonRefused(
                    f"number {show(digits)} is longer than {max_number_chars} characters"
                )
            value = kind(digits)
            if isinstance(value, float) and not math.isfinite(value):
                raise JsonRefused(f"number {digits} is out of range")
            return value

        return parse

    def constant(name: str) -> Any:
        raise JsonRefused(f"{name} is not a JSON value")

    def obj(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise JsonRefused(f"duplicate key {show(key)} in an object")
                seen.add(key)
        for key in result:
            if not encodable(key):
                raise JsonRefused(f"key {show(key)} holds a lone UTF-16 surrogate")
        return result

    try:
        value = json.loads(
            text,
            parse_int=number(int),
            parse_float=number(float),
            parse_constant=constant,
            object_pairs_hook=obj,
        )
    except JsonRefused:
        raise
    except RecursionError:  # only if the caller's own stack was already deep
        raise JsonRefused(f"arrays and objects nest deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, and int() past sys.get_int_max_str_digits
        raise JsonRefused(str(exc)) from None
    _check_strings(value)
    return value
