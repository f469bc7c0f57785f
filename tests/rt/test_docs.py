"""Runs every ``exchange`` example of docs/protocol/*.md against a real connection.

In a block, ``> text`` is sent by the client, ``< json`` must be the next message the server
sends ("*" matches any value), and ``! publish <market or topic> <json patch>`` is a
producer's publish (a bare number is a KMarket market; to a ``tick:`` topic, a tick), and
``! broadcast <json>`` a RealtimeEvent posted to /realtime/broadcast (the predictions dialect).
Options after ``exchange``: ``scope=1001,1002`` (the token's markets), ``user=u1``,
``tier=premium``, and any numeric setting such as ``history_size=2``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import trio

from rt.dialects import Dialect
from rt.dialects.kmarket import DIALECT as KMARKET
from rt.dialects.predictions import DIALECT as PREDICTIONS
from rt.dialects.predictions.publisher import EventPublisher
from rt.dialects.topics import DIALECT as TOPICS
from rt.dialects.uof import DIALECT as UOF
from rt.model import Update
from rt.topics import TICK_PREFIX, candle_topic
from tests.rt.harness import Core, SteadyClock, open_core

DOCS = Path(__file__).parents[2] / "docs" / "protocol"
DIALECTS = {
    "kmarket.md": KMARKET,
    "uof.md": UOF,
    "topics.md": TOPICS,
    "predictions.md": PREDICTIONS,
}
BLOCKS = [
    (name, options, body)
    for name in DIALECTS
    for options, body in re.findall(
        r"```exchange([^\n]*)\n(.*?)```", (DOCS / name).read_text(), re.S
    )
]


async def publish_tick(core: Core, topic: str, tick: dict[str, Any]) -> None:
    """Publish a tick, and return once its instrument's 1m candle went out (a client's
    next subscribe may rely on it)."""
    candle = candle_topic(topic.removeprefix(TICK_PREFIX) + ".1m")
    went_out = trio.Event()

    def on_update(update: Update) -> None:
        if update.topic == candle:
            went_out.set()

    core.engine.add_listener(on_update)
    try:
        await core.hub.publish(topic, tick, kind="event")
        await went_out.wait()
    finally:
        core.engine.remove_listener(on_update)


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


def test_each_doc_has_examples() -> None:
    for name in DIALECTS:
        assert sum(1 for doc, _, _ in BLOCKS if doc == name) >= 4


@pytest.mark.parametrize(
    ("doc", "options", "body"), BLOCKS, ids=[f"{b[0]}-{i}" for i, b in enumerate(BLOCKS)]
)
async def test_doc_example(doc: str, options: str, body: str) -> None:
    dialect: Dialect = DIALECTS[doc]
    overrides: dict[str, Any] = {}
    scope = None
    user: int | str = 1
    tier = "free"
    for option in options.split():
        key, _, value = option.partition("=")
        if key == "scope":
            scope = frozenset(value.split(","))
        elif key == "user":
            user = value
        elif key == "tier":
            tier = value
        else:
            overrides[key] = float(value) if "." in value else int(value)
    if doc == "topics.md":
        overrides["wall_ms"] = SteadyClock(12 * 60)  # a minute to go: no candle closes
    with trio.fail_after(10):
        async with (
            open_core(**overrides) as core,
            core.connect(scope=scope, user_id=user, dialect=dialect, tier=tier) as ws,
        ):
            for line in body.strip().splitlines():
                mark, _, text = line.partition(" ")
                if mark == ">":
                    await ws.send_message(text)
                elif mark == "<":
                    expected = json.loads(text)
                    actual = json.loads(await ws.get_message())
                    assert matches(expected, actual), f"expected {text}\n     got {actual}"
                elif mark == "!" and text.startswith("broadcast "):
                    body = json.loads(text.removeprefix("broadcast "))
                    await EventPublisher.for_server(core.server).publish_body(body)
                elif mark == "!":
                    verb, target, patch = text.split(" ", 2)
                    assert verb == "publish"
                    topic = f"market:{target}" if target.isdigit() else target
                    if topic.startswith("tick:"):
                        await publish_tick(core, topic, json.loads(patch))
                    else:
                        await core.hub.publish(topic, json.loads(patch))
                else:
                    raise AssertionError(f"unknown line in example: {line!r}")
