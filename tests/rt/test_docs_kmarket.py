"""Runs every ``exchange`` example of docs/protocol/kmarket.md against a real connection.

In a block, ``> text`` is sent by the client, ``< json`` must be the next message the server
sends ("*" matches any value), and ``! publish <market> <json patch>`` is a producer's
publish. Options after ``exchange``: ``scope=1001,1002`` (the token's markets) and any
integer setting such as ``history_size=2``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.rt.harness import open_core

DOC = Path(__file__).parents[2] / "docs" / "protocol" / "kmarket.md"
BLOCKS = re.findall(r"```exchange([^\n]*)\n(.*?)```", DOC.read_text(), re.S)


def matches(expected: Any, actual: Any) -> bool:
    if expected == "*":
        return True
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(matches(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(map(matches, expected, actual))
        )
    return bool(expected == actual and type(expected) is type(actual))


def test_the_doc_has_examples() -> None:
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize(
    ("options", "body"), BLOCKS, ids=[f"example{i}" for i in range(len(BLOCKS))]
)
async def test_doc_example(options: str, body: str) -> None:
    overrides: dict[str, Any] = {}
    scope = None
    for option in options.split():
        key, _, value = option.partition("=")
        if key == "scope":
            scope = frozenset(value.split(","))
        else:
            overrides[key] = int(value)
    with trio.fail_after(10):
        async with open_core(**overrides) as core, core.connect(scope=scope) as ws:
            for line in body.strip().splitlines():
                mark, _, text = line.partition(" ")
                if mark == ">":
                    await ws.send_message(text)
                elif mark == "<":
                    expected = json.loads(text)
                    actual = json.loads(await ws.get_message())
                    assert matches(expected, actual), f"expected {text}\n     got {actual}"
                elif mark == "!":
                    verb, market, patch = text.split(" ", 2)
                    assert verb == "publish"
                    await core.publish(market, json.loads(patch))
                else:
                    raise AssertionError(f"unknown line in example: {line!r}")
