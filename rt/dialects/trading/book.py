"""A limit order book for one instrument, with price-time priority (sans-IO).

Prices are exact ``Decimal``s, volumes whole lots. An incoming BUY at limit ``p`` trades with
the asks priced at or below ``p``: the lowest price first and, within a price, the oldest order
first (time = arrival at this book). A SELL is the mirror image: bids at or above ``p``, highest
first. Every trade is at the resting (maker) order's price, so a taker can only do as well as
its limit or better. Both sides may fill partially. What is left of the incoming order rests at
``p``, at the back of its level, unless it is IOC: then the remainder is discarded and reported
as expired. A MARKET order is an IOC order at a protective limit chosen by the caller.

Self-trade prevention is "cancel resting": when the incoming order would meet a resting order
of its own user, that resting order is taken off the book whole (reported, not filled) and
matching goes on with the next one. So no fill ever has the same user on both sides.

Each level keeps its total volume and order count up to date as orders come and go, so the
depth (``bids``/``asks``), the changes a feed publishes (``take_changes``) and the checksum
cost no more than the levels they show.

The checksum lets a client check the book it rebuilt from changes: the CRC32 (unsigned) of the
UTF-8 text made from the top 10 levels of each side. For i in 0..9, bid i (if any) then ask i
(if any) each add the part ``price:volume``; the parts are joined with ``:``. Numbers are written
by ``number_text``: plain decimals, no exponent, no trailing zeros or point, as JavaScript's
``String(n)`` writes them. With bids 119.50 x 100 and 119 x 200 and one ask 120.0 x 150::

    "119.5:100:120:150:119:200"    checksum = zlib.crc32(that text encoded as UTF-8)

An empty book's text is "", whose CRC32 is 0.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left, insort
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice
from typing import Literal

Side = Literal["BUY", "SELL"]

#: Levels per side that the checksum covers.
CHECKSUM_DEPTH = 10


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade: the incoming (taker) order met a resting (maker) order, at the maker's price."""

    maker_order_id: str
    maker_user_id: str
    taker_order_id: str
    taker_user_id: str
    taker_side: Side
    price: Decimal  # always the resting order's price
    volume: int
    maker_remaining: int  # what the maker order still has resting after this fill
    taker_remaining: int  # what the taker order still has to fill after this fill


@dataclass(frozen=True, slots=True)
class Cancelled:
    """An order taken off the book (or a remainder never put on it) with its unfilled volume."""

    order_id: str
    user_id: str
    remaining: int


@dataclass(frozen=True, slots=True)
class MatchResult:
    """What one ``submit`` did. ``sum(fill volumes) + rested + expired`` is the order's volume."""

    fills: list[Fill]  # in execution order
    self_trade_cancels: list[Cancelled]  # the taker's user's own resting orders, taken off
    rested: int  # of the incoming order, left resting on the book
    expired: int  # of an IOC incoming order, not filled and discarded


def number_text(value: Decimal | int) -> str:
    """``value`` as JavaScript's ``String(n)`` writes it: ``119.50`` -> ``119.5``, ``1E+3`` ->
    ``1000``. Only for finite numbers within the range where JavaScript avoids exponents."""
    if isinstance(value, int):
        return str(value)
    if not value.is_finite():
        raise ValueError(f"expected a finite number, got {value}")
    if value == 0:  # also -0, which JavaScript writes "0"
        return "0"
    return f"{value.normalize():f}"


# -- the book's parts -----------------------------------------------------------------------


@dataclass(slots=True)
class _Order:
    order_id: str
    user_id: str
    price: Decimal
    remaining: int


@dataclass(slots=True)
class _Level:
    price: Decimal
    # Arrival order is time priority; an OrderedDict drops any order in O(1) and keeps the rest
    # in their order.
    orders: OrderedDict[str, _Order] = field(default_factory=OrderedDict)
    volume: int = 0


class _BookSide:
    """The bids or the asks: levels by price, plus their prices sorted so the best is last."""

    __slots__ = ("_before", "_keys", "_levels", "_sign")

    def __init__(self, *, best_is_highest: bool) -> None:
        # Sort keys are the prices for bids and the negated prices for asks, so the best level
        # is always at the end of the list, where taking it off is O(1).
        self._sign = 1 if best_is_highest else -1
        self._keys: list[Decimal] = []
        self._levels: dict[Decimal, _Level] = {}
        # Each level changed since the last take_changes, with its (volume, count) before.
        self._before: dict[Decimal, tuple[int, int] | None] = {}

    def best(self) -> _Level | None:
        return self._levels[self._sign * self._keys[-1]] if self._keys else None

    def top(self, depth: int | None = None) -> list[_Level]:
        """The levels, best first (the first ``depth`` of them if given)."""
        best_first = (self._levels[self._sign * key] for key in reversed(self._keys))
        return list(islice(best_first, depth))

    def add(self, order: _Order) -> None:
        """Rest ``order`` at the back of its level."""
        self._note(order.price)
        level = self._levels.get(order.price)
        if level is None:
            level = self._levels[order.price] = _Level(order.price)
            insort(self._keys, self._sign * order.price)
        level.orders[order.order_id] = order
        level.volume += order.remaining

    def reduce(self, order: _Order, volume: int) -> None:
        """Take ``volume`` off a resting order, and the order itself once nothing is left."""
        self._note(order.price)
        level = self._levels[order.price]
        order.remaining -= volume
        level.volume -= volume
        if order.remaining == 0:
            del level.orders[order.order_id]
            if not level.orders:
                del self._levels[order.price]
                keys = self._keys
                del keys[bisect_left(keys, self._sign * order.price)]

    def take_changes(self) -> dict[Decimal, tuple[int, int] | None]:
        changes: dict[Decimal, tuple[int, int] | None] = {}
        for price, before in self._before.items():
            now = self._value(price)
            if now != before:  # a level that changed and changed back is not news
                changes[price] = now
        self._before.clear()
        return changes

    def _note(self, price: Decimal) -> None:
        """Call before changing the level at ``price``: remembers what it was."""
        if price not in self._before:
            self._before[price] = self._value(price)

    def _value(self, price: Decimal) -> tuple[int, int] | None:
        level = self._levels.get(price)
        return None if level is None else (level.volume, len(level.orders))


# -- the book -------------------------------------------------------------------------------


class OrderBook:
    """The resting orders of one instrument, and the matching of incoming ones against them."""

    __slots__ = ("_asks", "_bids", "_orders", "instrument_id")

    def __init__(self, instrument_id: str) -> None:
        self.instrument_id = instrument_id
        self._bids = _BookSide(best_is_highest=True)
        self._asks = _BookSide(best_is_highest=False)
        # Every resting order by id, with its side: cancel finds its level without a search.
        self._orders: dict[str, tuple[_Order, _BookSide]] = {}

    def submit(
        self,
        order_id: str,
        user_id: str,
        side: Side,
        price: Decimal,
        volume: int,
        *,
        ioc: bool = False,
    ) -> MatchResult:
        """Match an incoming limit order, then rest what is left of it (or expire it, if IOC).

        A ValueError is the caller's mistake: an id still resting, a side that is neither BUY
        nor SELL, a price that is not a positive number or a volume below one lot.
        """
        if order_id in self._orders:
            raise ValueError(f"order {order_id!r} is already resting on {self.instrument_id}")
        if side not in ("BUY", "SELL"):
            raise ValueError(f"expected side to be BUY or SELL, got {side!r}")
        if not price.is_finite() or price <= 0:
            raise ValueError(f"expected a positive price, got {price}")
        if volume <= 0:
            raise ValueError(f"expected a positive volume, got {volume}")
        buying = side == "BUY"
        own, other = (self._bids, self._asks) if buying else (self._asks, self._bids)
        fills: list[Fill] = []
        cancels: list[Cancelled] = []
        remaining = volume
        while remaining and (level := other.best()) is not None:
            if (level.price > price) if buying else (level.price < price):
                break  # the best price left is beyond the taker's limit
            maker = next(iter(level.orders.values()))
            if maker.user_id == user_id:
                cancels.append(Cancelled(maker.order_id, maker.user_id, maker.remaining))
                self._take_off(maker)
                continue
            traded = min(remaining, maker.remaining)
            remaining -= traded
            other.reduce(maker, traded)
            if maker.remaining == 0:
                del self._orders[maker.order_id]
            fills.append(
                Fill(
                    maker_order_id=maker.order_id,
                    maker_user_id=maker.user_id,
                    taker_order_id=order_id,
                    taker_user_id=user_id,
                    taker_side=side,
                    price=maker.price,
                    volume=traded,
                    maker_remaining=maker.remaining,
                    taker_remaining=remaining,
                )
            )
        if ioc or not remaining:
            return MatchResult(fills, cancels, rested=0, expired=remaining)
        order = _Order(order_id, user_id, price, remaining)
        own.add(order)
        self._orders[order_id] = (order, own)
        return MatchResult(fills, cancels, rested=remaining, expired=0)

    def cancel(self, order_id: str) -> Cancelled | None:
        """Take a resting order off the book; None when it is not resting (unknown, filled or
        cancelled already)."""
        entry = self._orders.get(order_id)
        if entry is None:
            return None
        order = entry[0]
        cancelled = Cancelled(order.order_id, order.user_id, order.remaining)
        self._take_off(order)
        return cancelled

    def resting(self, order_id: str) -> int | None:
        """The order's remaining volume on the book, or None when it is not resting."""
        entry = self._orders.get(order_id)
        return None if entry is None else entry[0].remaining

    def bids(self) -> list[tuple[Decimal, int, int]]:
        """(price, total volume, order count) per level, highest price first."""
        return [(lv.price, lv.volume, len(lv.orders)) for lv in self._bids.top()]

    def asks(self) -> list[tuple[Decimal, int, int]]:
        """(price, total volume, order count) per level, lowest price first."""
        return [(lv.price, lv.volume, len(lv.orders)) for lv in self._asks.top()]

    def best_bid(self) -> Decimal | None:
        level = self._bids.best()
        return None if level is None else level.price

    def best_ask(self) -> Decimal | None:
        level = self._asks.best()
        return None if level is None else level.price

    def take_changes(self) -> dict[str, dict[Decimal, tuple[int, int] | None]]:
        """The levels whose (volume, count) differ from the previous call (or from the empty
        book), None for a level that is gone; then starts afresh."""
        return {"bids": self._bids.take_changes(), "asks": self._asks.take_changes()}

    def checksum(self) -> int:
        """CRC32 of the top levels, as the module docstring spells out."""
        bids = self._bids.top(CHECKSUM_DEPTH)
        asks = self._asks.top(CHECKSUM_DEPTH)
        parts = []
        for i in range(CHECKSUM_DEPTH):
            for levels in (bids, asks):
                if i < len(levels):
                    parts.append(f"{number_text(levels[i].price)}:{number_text(levels[i].volume)}")
        return zlib.crc32(":".join(parts).encode())

    def __len__(self) -> int:
        return len(self._orders)

    def __repr__(self) -> str:
        return f"<OrderBook {self.instrument_id} with {len(self)} resting orders>"

    def _take_off(self, order: _Order) -> None:
        _, book_side = self._orders.pop(order.order_id)
        book_side.reduce(order, order.remaining)
