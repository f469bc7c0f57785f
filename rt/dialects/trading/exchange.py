"""The paper exchange as actors, on the same core as everything else:

    dialects/trading/exchange   supervisor, one_for_all: it restarts as a whole, and empty
    ├── ledger                  accounts, orders, answers; publishes each user's pushes
    ├── book-<instrument>       one order book per instrument; publishes its market data
    └── market-maker            (with the demo feed) quotes around a random walk

An order goes connection -> ledger (checked, margin frozen, id given, answered) -> its book
(matched) -> ledger (both sides settled). The ledger answers the connection by writing into
its outbox at once (as rooms do), before the order reaches the book: so ``order_response``
always comes before the order's pushes. The books tell the ledger with ``tell_control``: what
they tell it is bounded by the orders in their own mailboxes, and a book never waits on the
ledger, so the two can never wait on each other.

Pushes (``order_status``, ``trade``, ``account_update``) are published on the user's stream
``user:<id>``: every connection of the user gets them in order, and a reconnecting one
resumes where the user's connections left off. Market data is published on
``orderbook:``/``trade:``/``ticker:<instrument>``. The state is in memory only.
"""

from __future__ import annotations

import logging
import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import trio

from actors import Actor, ActorRef, ChildSpec, MailboxClosed, MailboxFull, Strategy, Supervisor
from rt.dialects.trading.book import Cancelled, MatchResult, OrderBook, number_text
from rt.dialects.trading.instruments import Instrument
from rt.dialects.trading.ledger import (
    EXCHANGE_UNAVAILABLE,
    ORDER_NOT_CANCELLABLE,
    BookOrder,
    Ids,
    Ledger,
    OrderRequest,
    Push,
    Refusal,
    order_response,
)
from rt.engine import Engine, EngineUnavailable
from rt.model import Json, UpdateKind
from rt.topics import channel_topic, user_topic

log = logging.getLogger(__name__)

EXCHANGE_PATH = "dialects/trading/exchange"
LEDGER_PATH = f"{EXCHANGE_PATH}/ledger"
#: The demo market maker's account, and its balance: deep enough never to run out.
MARKET_MAKER = "market-maker"
MARKET_MAKER_BALANCE = Decimal(10) ** 10

#: How an answer reaches the client that asked: queued on its connection, in order.
Reply = Callable[[dict[str, Any]], None]


def book_name(instrument_id: str) -> str:
    return f"book-{instrument_id}"


def book_path(instrument_id: str) -> str:
    return f"{EXCHANGE_PATH}/{book_name(instrument_id)}"


# -- what the ledger is told --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenAccount:
    user_id: str
    balance: Decimal | None = None


class Once:
    """A reply given at most once: the exchange's answer, or, if the message is lost (the
    exchange crashed on it or stopped with it queued), that the exchange is unavailable."""

    __slots__ = ("_reply",)

    def __init__(self, reply: Reply) -> None:
        self._reply: Reply | None = reply

    def __call__(self, answer: dict[str, Any]) -> None:
        reply, self._reply = self._reply, None
        if reply is not None:
            reply(answer)


UNAVAILABLE = "Exchange unavailable: it is restarting or too busy; try again"
#: What a request hears when the exchange cannot take it, or lost it.
UNAVAILABLE_REFUSAL = Refusal(EXCHANGE_UNAVAILABLE, UNAVAILABLE)


@dataclass(frozen=True, slots=True)
class Place:
    user_id: str
    request: OrderRequest
    reply: Reply

    def lost(self) -> None:
        self.reply(order_response(None, UNAVAILABLE_REFUSAL))


@dataclass(frozen=True, slots=True)
class CancelOrder:
    user_id: str
    order_id: str
    reply: Reply

    def lost(self) -> None:
        self.reply(order_response(self.order_id, UNAVAILABLE_REFUSAL))


@dataclass(frozen=True, slots=True)
class Query:
    """``query_order`` (arg: the order id), ``query_account``, ``query_position`` (arg: an
    instrument id or None), or ``live_orders`` (the market maker's own)."""

    user_id: str
    request_type: str
    arg: str | None
    reply: Reply

    def lost(self) -> None:
        self.reply(query_error(self.request_type, UNAVAILABLE_REFUSAL))


@dataclass(frozen=True, slots=True)
class Matched:
    order_id: str
    result: MatchResult
    trade_ids: list[str]
    now_ms: int


@dataclass(frozen=True, slots=True)
class Unbooked:
    """The answer to ``TakeOff``: the order taken off, or None when it was no longer there."""

    order_id: str
    cancelled: Cancelled | None
    now_ms: int


# -- what a book is told ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    order: BookOrder


@dataclass(frozen=True, slots=True)
class TakeOff:
    order_id: str


class Publisher:
    """Publishes items in order; while the engine is unreachable it waits and tries again
    (an exchange that cannot tell its users stops, rather than forget what it told them)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def __call__(self, items: Sequence[tuple[str, Json, UpdateKind]]) -> None:
        delay_s = 0.05
        while items:
            try:
                await self.engine.publish_many(items)
                return
            except EngineUnavailable as exc:
                log.warning("exchange: cannot publish (%s); retrying in %.2f s", exc, delay_s)
                await trio.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)


class LedgerActor(Actor):
    kind: ClassVar[str] = "ledger"
    mailbox_capacity: ClassVar[int] = 1024

    def __init__(self, ledger: Ledger, publish: Publisher, wall_ms: Callable[[], int]) -> None:
        self.ledger = ledger
        self._publish = publish
        self._wall_ms = wall_ms
        #: Who asked to cancel an order, until its book answers.
        self._cancelling: dict[str, list[Reply]] = defaultdict(list)

    async def run(self) -> None:
        try:
            await super().run()
        finally:  # crashed or stopped: whoever waits for a cancel hears it will not come
            for order_id, replies in self._cancelling.items():
                for reply in replies:
                    reply(order_response(order_id, UNAVAILABLE_REFUSAL))

    def describe(self) -> dict[str, Any]:
        ledger = self.ledger
        live = sum(1 for o in ledger.orders.values() if o.live)
        return {"accounts": len(ledger.accounts), "orders": len(ledger.orders), "live": live}

    async def receive(self, message: Any) -> Any:
        kind = type(message)
        ledger = self.ledger
        if kind is Place:
            placed = ledger.place(message.user_id, message.request, self._wall_ms())
            message.reply(placed.answer)
            await self._push(placed.pushes)
            if placed.book_order is not None:
                await self._run(placed.book_order)
        elif kind is Matched:
            await self._push(
                ledger.matched(message.order_id, message.result, message.trade_ids, message.now_ms)
            )
        elif kind is CancelOrder:
            await self._cancel(message)
        elif kind is Unbooked:
            await self._unbooked(message)
        elif kind is Query:
            message.reply(self._query(message))
        elif kind is OpenAccount:
            ledger.open_account(message.user_id, message.balance)
        else:
            return await super().receive(message)
        return None

    async def _push(self, pushes: Iterable[Push]) -> None:
        """Publish ``pushes``, each on its user's stream, in order."""
        await self._publish([(user_topic(user), message, "event") for user, message in pushes])

    async def _run(self, order: BookOrder) -> None:
        book = self.system.lookup(book_path(order.instrument_id))
        if book is None:  # only while the exchange restarts: the order cannot run
            cancelled = Cancelled(order.order_id, order.user_id, order.volume)
            await self._push(self.ledger.cancelled(cancelled, self._wall_ms()))
            return
        await book.tell(Run(order))

    async def _cancel(self, message: CancelOrder) -> None:
        found = self.ledger.cancellable(message.user_id, message.order_id)
        if isinstance(found, Refusal):
            message.reply(order_response(message.order_id, found))
            return
        book = self.system.lookup(book_path(found.instrument.id))
        if book is None:
            message.lost()
            return
        waiting = self._cancelling[message.order_id]
        waiting.append(message.reply)
        if len(waiting) == 1:
            await book.tell(TakeOff(message.order_id))

    async def _unbooked(self, message: Unbooked) -> None:
        replies = self._cancelling.pop(message.order_id, [])
        pushes: list[Push] = []
        if message.cancelled is not None:
            pushes = self.ledger.cancelled(message.cancelled, message.now_ms)
            answer = order_response(message.order_id, None)
        else:
            order = self.ledger.orders.get(message.order_id)
            status = order.status if order is not None else "finished"
            refusal = Refusal(ORDER_NOT_CANCELLABLE, f"Order {message.order_id} is {status}")
            answer = order_response(message.order_id, refusal)
        for reply in replies:
            reply(answer)
        await self._push(pushes)

    def _query(self, message: Query) -> dict[str, Any]:
        ledger = self.ledger
        user, kind, arg = message.user_id, message.request_type, message.arg
        found: dict[str, Any] | Refusal
        if kind == "query_order":
            found = ledger.query_order(user, arg or "")
        elif kind == "query_account":
            found = ledger.query_account(user)
        elif kind == "query_position":
            found = ledger.query_position(user, arg)
        elif kind == "live_orders":
            return {
                "orders": [
                    (o.order_id, o.instrument.id, o.direction, o.limit)
                    for o in ledger.orders.values()
                    if o.live and o.user_id == user
                ]
            }
        else:
            raise ValueError(f"unknown query {kind!r}")
        if isinstance(found, Refusal):
            return query_error(kind, found)
        return {"type": "query_response", "request_type": kind, "data": found}


def query_error(request_type: str, refusal: Refusal) -> dict[str, Any]:
    """A query that cannot be answered: an ``error`` naming the query."""
    return {
        "type": "error",
        "code": refusal.code,
        "message": refusal.message,
        "request_type": request_type,
    }


class BookActor(Actor):
    """One instrument's book: runs the orders the ledger accepted, publishes the changes."""

    kind: ClassVar[str] = "book"
    mailbox_capacity: ClassVar[int] = 1024

    def __init__(
        self,
        instrument: Instrument,
        ids: Ids,
        publish: Publisher,
        wall_ms: Callable[[], int],
        *,
        publish_interval_s: float = 0.0,
    ) -> None:
        self.instrument = instrument
        self.book = OrderBook(instrument.id)
        self.ids = ids
        self._publish = publish
        self._wall_ms = wall_ms
        self.total_volume = 0
        self.publish_interval_s = publish_interval_s
        #: Prints not published yet; set when the book changed since it last published.
        self._prints: list[dict[str, Json]] = []
        self._changed = trio.Event()
        self._topics = {
            c: channel_topic(c, instrument.id) for c in ("orderbook", "trade", "ticker")
        }

    def describe(self) -> dict[str, Any]:
        bid, ask = self.book.best_bid(), self.book.best_ask()
        return {
            "instrument": self.instrument.id,
            "resting": len(self.book),
            "best_bid": None if bid is None else float(bid),
            "best_ask": None if ask is None else float(ask),
            "volume": self.total_volume,
        }

    async def on_start(self) -> None:
        # A new incarnation starts empty: if the last one left levels, say they are gone.
        topic = self._topics["orderbook"]
        left = (await self._publish.engine.snapshot(topic)).state
        if left.get("bids") or left.get("asks"):
            await self._publish([(topic, EMPTY_BOOK, "patch")])

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publish_market_data)
            await super().run()
            nursery.cancel_scope.cancel()

    async def receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is Run:
            self._run(message.order)
        elif kind is TakeOff:
            cancelled = self.book.cancel(message.order_id)
            self._tell_ledger(Unbooked(message.order_id, cancelled, self._wall_ms()))
        else:
            return await super().receive(message)
        self._changed.set()
        return None

    async def _publish_market_data(self) -> None:
        """Publish what changed, at most once per ``publish_interval_s``: at once after a
        quiet spell, and under load one book change, one ticker and a run of prints for all
        the orders of an interval, so that each subscriber is written once for many orders."""
        published_at = -math.inf
        while True:
            await self._changed.wait()
            await trio.sleep_until(published_at + self.publish_interval_s)
            self._changed = trio.Event()
            published_at = trio.current_time()
            await self._publish(self._market_data())

    def _run(self, order: BookOrder) -> None:
        result = self.book.submit(
            order.order_id, order.user_id, order.side, order.price, order.volume, ioc=order.ioc
        )
        now = self._wall_ms()
        trade_ids = [self.ids.make("T", now) for _ in result.fills]
        self._tell_ledger(Matched(order.order_id, result, trade_ids, now))
        for fill, trade_id in zip(result.fills, trade_ids, strict=True):
            self.total_volume += fill.volume
            self._prints.append(
                {
                    "type": "trade",
                    "trade_id": trade_id,
                    "instrument_id": self.instrument.id,
                    "direction": fill.taker_side,
                    "price": float(fill.price),
                    "volume": float(fill.volume),
                    "timestamp": now,
                }
            )

    def _market_data(self) -> list[tuple[str, Json, UpdateKind]]:
        """What the orders run since the last time changed: each print, one ticker (the last
        print's, with the best prices now), one book change."""
        items: list[tuple[str, Json, UpdateKind]] = [
            (self._topics["trade"], print_, "event") for print_ in self._prints
        ]
        if self._prints:
            last = self._prints[-1]
            ticker = {
                "last_price": last["price"],
                "volume": last["volume"],
                **self._best(),
                "total_volume": float(self.total_volume),
                "timestamp": last["timestamp"],
            }
            items.append((self._topics["ticker"], ticker, "patch"))
            self._prints = []
        return items + self._book_changes()

    def _best(self) -> dict[str, Json]:
        bid, ask = self.book.best_bid(), self.book.best_ask()
        return {
            "best_bid": None if bid is None else float(bid),
            "best_ask": None if ask is None else float(ask),
        }

    def _book_changes(self) -> list[tuple[str, Json, UpdateKind]]:
        changes = self.book.take_changes()
        if not changes["bids"] and not changes["asks"]:
            return []
        patch: dict[str, Json] = {
            side: {
                number_text(price): None if level is None else [level[0], level[1]]
                for price, level in levels.items()
            }
            for side, levels in changes.items()
        }
        patch["checksum"] = self.book.checksum()
        return [(self._topics["orderbook"], patch, "patch")]

    def _tell_ledger(self, message: Matched | Unbooked) -> None:
        ledger = self.system.lookup(LEDGER_PATH)
        if ledger is not None:
            ledger.tell_control(message)


#: An empty book, as a patch over whatever the topic held: the codec sends it as a full book.
#: ``reset`` stays in what a slow client's merged patch holds: then the merged patch is the
#: whole book since the reset, and is sent as a full book too.
EMPTY_BOOK: dict[str, Json] = {"bids": None, "asks": None, "checksum": 0, "reset": True}


class MarketMaker(Actor):
    """The demo's liquidity: every ``interval_s`` it moves each instrument's mid price by a
    tick or none (drawn back toward the reference price) and quotes ``levels`` bids and asks
    around it, through the ledger like any user, keeping the quotes that still stand."""

    kind: ClassVar[str] = "market-maker"

    def __init__(
        self,
        instruments: Sequence[Instrument],
        *,
        seed: int | None,
        interval_s: float,
        levels: int = 5,
    ) -> None:
        self.instruments = instruments
        self.random = random.Random(seed)
        self.interval_s = interval_s
        self.levels = levels
        self.mids = {i.id: i.reference_price for i in instruments}
        self.quotes = 0

    def describe(self) -> dict[str, Any]:
        return {"mids": {k: float(v) for k, v in self.mids.items()}, "quotes": self.quotes}

    async def run(self) -> None:
        ledger = self.system.lookup(LEDGER_PATH)
        if ledger is None:
            raise RuntimeError("the ledger is not running")
        await ledger.tell(OpenAccount(MARKET_MAKER, MARKET_MAKER_BALANCE))
        while not self.stop_requested.is_set():
            with trio.move_on_after(self.interval_s):
                await self.stop_requested.wait()
            if self.stop_requested.is_set():
                return
            try:
                await self._requote(ledger)
            except (MailboxClosed, MailboxFull):
                return  # the exchange is stopping

    async def _requote(self, ledger: ActorRef) -> None:
        answer: dict[str, Any] = {}
        got = trio.Event()

        def keep(value: dict[str, Any]) -> None:
            answer.update(value)
            got.set()

        await ledger.tell(Query(MARKET_MAKER, "live_orders", None, keep))
        await got.wait()
        standing = {(i, d, p): o for o, i, d, p in answer["orders"]}
        wanted: dict[tuple[str, str, Decimal], int] = {}
        for instrument in self.instruments:
            mid = self._step(instrument)
            for n in range(1, self.levels + 1):
                wanted[(instrument.id, "BUY", mid - n * instrument.tick)] = self._lots()
                wanted[(instrument.id, "SELL", mid + n * instrument.tick)] = self._lots()
        for key, order_id in standing.items():
            if key not in wanted:
                await ledger.tell(CancelOrder(MARKET_MAKER, order_id, _ignore))
        for (instrument_id, direction, price), lots in wanted.items():
            if (instrument_id, direction, price) in standing:
                continue
            request = OrderRequest(instrument_id, direction, "OPEN", lots, float(price), "LIMIT")
            await ledger.tell(Place(MARKET_MAKER, request, _ignore))
            self.quotes += 1

    def _step(self, instrument: Instrument) -> Decimal:
        mid = self.mids[instrument.id]
        drift = (instrument.reference_price - mid) / (instrument.reference_price * Decimal("0.02"))
        up = min(0.9, max(0.1, 0.5 + float(drift) / 4))
        roll = self.random.random()
        step = 1 if roll < up / 2 else -1 if roll > 1 - (1 - up) / 2 else 0
        room = (self.levels + 1) * instrument.tick
        mid = mid + step * instrument.tick
        mid = min(max(mid, instrument.lower_limit + room), instrument.upper_limit - room)
        self.mids[instrument.id] = mid
        return mid

    def _lots(self) -> int:
        return self.random.randint(1, 10) * 5


def _ignore(_: dict[str, Any]) -> None:
    pass


def exchange_spec(
    instruments: Sequence[Instrument],
    engine: Engine,
    wall_ms: Callable[[], int],
    *,
    publish_interval_s: float = 0.0,
    make_market_maker: Callable[[], MarketMaker] | None = None,
) -> ChildSpec:
    """The exchange's supervisor (one_for_all): its ledger, its books, its market maker."""
    ids = Ids()
    publish = Publisher(engine)
    children = [
        ChildSpec("ledger", lambda: LedgerActor(Ledger(instruments, ids), publish, wall_ms))
    ]
    for instrument in instruments:
        children.append(
            ChildSpec(
                book_name(instrument.id),
                lambda i=instrument: BookActor(  # type: ignore[misc]
                    i, ids, publish, wall_ms, publish_interval_s=publish_interval_s
                ),
            )
        )
    if make_market_maker is not None:
        children.append(ChildSpec("market-maker", make_market_maker))
    return ChildSpec(
        "exchange",
        lambda: Supervisor(children, strategy=Strategy.ONE_FOR_ALL, max_restarts=5, period_s=30.0),
        shutdown_timeout_s=10.0,
    )
