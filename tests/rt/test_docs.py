"""Runs every ``exchange`` example of docs/protocol/*.md against a real connection.

In a block, ``> text`` is sent by the client, ``< json`` must be the next message the server
sends ("*" matches any value), and ``! publish <market or topic> <json patch>`` is a
producer's publish (a bare number is a KMarket market; to a ``tick:`` topic, a tick), and
``! broadcast <json>`` a RealtimeEvent posted to /realtime/broadcast (the predictions dialect).
For the trading dialect, ``! order <user> <json>`` is an order (``submit_order``'s fields) that
another user places directly with the paper exchange; it returns once the exchange has run and
settled it. In a ``>`` line, ``$TOKEN`` stands for a token of the block's user and
``$ORDER_ID`` for the ``order_id`` of the last ``order_response`` received.
Options after ``exchange``: ``scope=1001,1002`` (the token's markets), ``user=u1``,
``tier=premium``, and any numeric setting such as ``history_size=2``.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from rt.dialects import Dialect
from rt.dialects.kmarket import DIALECT as KMARKET
from rt.dialects.predictions import DIALECT as PREDICTIONS
from rt.dialects.predictions.publisher import EventPublisher
from rt.dialects.topics import DIALECT as TOPICS
from rt.dialects.trading import DIALECT as TRADING
from rt.dialects.trading.book import OrderBook, Side
from rt.dialects.trading.exchange import (
    LEDGER_PATH,
    OpenAccount,
    Place,
    TakeOff,
    book_path,
)
from rt.dialects.trading.ledger import OrderRequest
from rt.dialects.uof import DIALECT as UOF
from rt.model import Update
from rt.topics import TICK_PREFIX, candle_topic
from tests.rt.e2e._support import make_token
from tests.rt.harness import Core, SteadyClock, open_core

DOCS = Path(__file__).parents[2] / "docs" / "protocol"
DIALECTS = {
    "kmarket.md": KMARKET,
    "uof.md": UOF,
    "topics.md": TOPICS,
    "predictions.md": PREDICTIONS,
    "trading.md": TRADING,
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


async def place_order(core: Core, user: str, fields: dict[str, Any]) -> None:
    """``user`` places an order with the paper exchange, as its own connection would; returns
    once the order's book has run it and the ledger has settled what it matched."""
    ledger = core.system.lookup(LEDGER_PATH)
    assert ledger is not None
    await ledger.tell(OpenAccount(user))
    request = OrderRequest(
        instrument_id=fields["instrument_id"],
        direction=fields["direction"],
        offset=fields["offset"],
        volume=fields["volume"],
        price=fields.get("price"),
        order_type=fields["order_type"],
        client_order_id=fields.get("client_order_id"),
    )
    answers: list[dict[str, Any]] = []
    answered = trio.Event()

    def reply(answer: dict[str, Any]) -> None:
        answers.append(answer)
        answered.set()

    await ledger.tell(Place(user, request, reply))
    await answered.wait()
    assert answers[0]["success"], f"the example's order was refused: {answers[0]}"
    # Each mailbox is in order: once the book has handled a later message (taking off an
    # order that does not exist changes nothing), it has run this order and told the ledger
    # what matched; once the ledger has handled a later message, it has settled that.
    book = core.system.lookup(book_path(request.instrument_id))
    assert book is not None
    await book.ask(TakeOff(""))
    await ledger.ask(OpenAccount(user))


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
    token = make_token(user)
    order_id = None
    with trio.fail_after(10):
        async with (
            open_core(**overrides) as core,
            core.connect(scope=scope, user_id=user, dialect=dialect, tier=tier) as ws,
        ):
            for line in body.strip().splitlines():
                mark, _, text = line.partition(" ")
                if mark == ">":
                    text = text.replace("$TOKEN", token)
                    if "$ORDER_ID" in text:
                        assert order_id is not None, "$ORDER_ID before any order_response"
                        text = text.replace("$ORDER_ID", order_id)
                    await ws.send_message(text)
                elif mark == "<":
                    expected = json.loads(text)
                    actual = json.loads(await ws.get_message())
                    assert matches(expected, actual), f"expected {text}\n     got {actual}"
                    if actual.get("type") == "order_response" and actual.get("order_id"):
                        order_id = actual["order_id"]
                elif mark == "!" and text.startswith("order "):
                    _, who, fields = text.split(" ", 2)
                    await place_order(core, who, json.loads(fields))
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


# -- trading.md's checksum snippets ----------------------------------------------------------


def snippet(language: str) -> str:
    """The ``<language> checksum`` code block of trading.md."""
    text = (DOCS / "trading.md").read_text()
    found = re.findall(rf"```{language} checksum\n(.*?)```", text, re.S)
    assert len(found) == 1, f"expected one {language} checksum block in trading.md"
    return str(found[0])


def sample_books() -> list[tuple[list[dict[str, Any]], list[dict[str, Any]], int]]:
    """Books as an ``orderbook`` message lists their levels, with the checksum rt sends."""
    rng = random.Random(3)
    books = []
    for size in (0, 1, 2, 5, 12, 30):
        book = OrderBook("IF2301")
        for n in range(size):
            ticks = rng.randint(-400, 400)
            side: Side = "BUY" if ticks < 0 else "SELL"
            price = Decimal(4000) + Decimal(ticks) * Decimal("0.2")
            book.submit(f"o{n}", f"u{n}", side, price, rng.randint(1, 999))
        levels = [
            [{"price": float(p), "volume": float(v), "order_count": c} for p, v, c in side]
            for side in (book.bids(), book.asks())
        ]
        books.append((levels[0], levels[1], book.checksum()))
    return books


def test_trading_python_checksum() -> None:
    names: dict[str, Any] = {}
    exec(snippet("python"), names)
    for bids, asks, checksum in sample_books():
        assert names["book_checksum"](bids, asks) == checksum


def test_trading_javascript_checksum() -> None:
    assert shutil.which("node") is not None, (
        "Node.js is needed, as for the seed clients in tests/js"
    )
    books = sample_books()
    script = snippet("javascript") + (
        "\nconst books = " + json.dumps([[b, a] for b, a, _ in books]) + ";\n"
        "console.log(JSON.stringify(books.map(([b, a]) => bookChecksum(b, a))));\n"
    )
    out = subprocess.run(
        ["node", "-e", script], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert json.loads(out) == [checksum for _, _, checksum in books]
