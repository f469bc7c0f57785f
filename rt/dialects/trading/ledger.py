"""The paper exchange's money: accounts, positions and orders, and what each change tells the
users it concerns (sans-IO: no actor, no clock; times come in as arguments).

Accounts (docs/protocol/trading.md has the worked examples):

- An account is opened at a user's first ``auth`` with ``STARTING_BALANCE``. There are no
  deposits, withdrawals or fees.
- ``margin`` is what open positions hold: each lot holds its open price x multiplier x
  margin rate, for as long as it is open. ``frozen`` is what live OPEN orders hold: their
  limit price (a MARKET order: the price band's edge it runs at) x their unfilled volume x
  multiplier x margin rate. A fill moves the filled lots' share from ``frozen`` to
  ``margin`` at the trade's price; a cancel releases it.
- ``profit`` is the open positions marked to market (the instrument's last trade price, or
  its reference price before any trade); ``realized`` is what closed lots made.
  ``balance`` = starting balance + realized + profit; ``available`` = balance - margin -
  frozen; ``risk_ratio`` = margin / balance.
- Positions are kept per instrument and side (LONG from BUY OPEN, SHORT from SELL OPEN) as
  lots, first in first out: a CLOSE (SELL CLOSE for a long, BUY CLOSE for a short) closes the
  oldest lots first, so every figure stays an exact decimal. A CLOSE order reserves the lots
  it may close until it fills or is cancelled.
- An OPEN order whose margin exceeds ``available`` is refused (1001), and a CLOSE for more
  than the position's unreserved lots (1004).

Across all accounts no money is made or lost: every trade is between two accounts at one
price, so the balances (marked at the same prices) always add up to the starting balances.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from rt.dialects.trading.book import Cancelled, MatchResult, number_text
from rt.dialects.trading.instruments import MAX_ORDER_VOLUME, Instrument, by_id

STARTING_BALANCE = Decimal(1_000_000)

# Error codes: the seed's (400, 401, 1001-1003) and the ones it leaves to us.
BAD_MESSAGE = 400
NOT_AUTHENTICATED = 401
INSUFFICIENT_FUNDS = 1001
ORDER_NOT_FOUND = 1002
ACCOUNT_NOT_FOUND = 1003
INSUFFICIENT_POSITION = 1004
INVALID_PRICE = 1005
INVALID_VOLUME = 1006
UNKNOWN_INSTRUMENT = 1007
UNSUPPORTED_ORDER_TYPE = 1008
ORDER_NOT_CANCELLABLE = 1009
EXCHANGE_UNAVAILABLE = 1010

ORDER_TYPES = ("LIMIT", "MARKET")
DIRECTIONS = ("BUY", "SELL")
OFFSETS = ("OPEN", "CLOSE")

Side = Literal["LONG", "SHORT"]
#: A message for one user's private stream: (user id, the message).
Push = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an order, a cancel or a query is refused: one of the codes above."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A ``submit_order`` with fields of the right JSON types (the session checked those)."""

    instrument_id: str
    direction: str  # BUY | SELL
    offset: str  # OPEN | CLOSE
    volume: int | float
    price: int | float | None
    order_type: str
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class BookOrder:
    """What goes to the instrument's book once the ledger has accepted an order."""

    instrument_id: str
    order_id: str
    user_id: str
    side: Literal["BUY", "SELL"]
    price: Decimal
    volume: int
    ioc: bool


class Ids:
    """Order and trade ids as the seed writes them: a letter, the milliseconds, a counter
    (``O17251234567890000001``). One per exchange, shared by the ledger and the books."""

    def __init__(self) -> None:
        self._next = 0

    def make(self, letter: str, now_ms: int) -> str:
        self._next = (self._next + 1) % 10_000_000
        return f"{letter}{now_ms}{self._next:07d}"


class _Lot:
    __slots__ = ("margin_per_lot", "price", "volume")

    def __init__(self, price: Decimal, volume: int, margin_per_lot: Decimal) -> None:
        self.price = price
        self.volume = volume
        self.margin_per_lot = margin_per_lot


class Position:
    """One instrument and side of an account: its lots, oldest first."""

    def __init__(self, instrument: Instrument, side: Side) -> None:
        self.instrument = instrument
        self.side = side
        self.lots: deque[_Lot] = deque()
        self.volume = 0
        #: Lots that live CLOSE orders may close.
        self.reserved = 0
        self.margin = Decimal(0)
        self.cost = Decimal(0)  # sum of price x volume over the lots

    @property
    def sign(self) -> int:
        return 1 if self.side == "LONG" else -1

    def open(self, price: Decimal, volume: int) -> Decimal:
        """Add ``volume`` lots at ``price``; the margin they hold."""
        per_lot = self.instrument.margin(price, 1)
        self.lots.append(_Lot(price, volume, per_lot))
        self.volume += volume
        self.cost += price * volume
        margin = per_lot * volume
        self.margin += margin
        return margin

    def close(self, price: Decimal, volume: int) -> tuple[Decimal, Decimal]:
        """Close ``volume`` lots at ``price``, oldest first: (realized profit, margin freed)."""
        multiplier = self.instrument.multiplier
        realized = freed = Decimal(0)
        left = volume
        while left:
            lot = self.lots[0]
            taken = min(lot.volume, left)
            realized += (price - lot.price) * taken * multiplier * self.sign
            freed += lot.margin_per_lot * taken
            self.cost -= lot.price * taken
            lot.volume -= taken
            left -= taken
            if not lot.volume:
                self.lots.popleft()
        self.volume -= volume
        self.margin -= freed
        return realized, freed

    def profit(self, mark: Decimal) -> Decimal:
        return (mark * self.volume - self.cost) * self.instrument.multiplier * self.sign

    def describe(self, mark: Decimal) -> dict[str, Any]:
        average = self.cost / self.volume if self.volume else Decimal(0)
        return {
            "instrument_id": self.instrument.id,
            "direction": "BUY" if self.side == "LONG" else "SELL",
            "position_side": self.side,
            "volume": float(self.volume),
            "closable_volume": float(self.volume - self.reserved),
            "open_price": _money(average),
            "last_price": float(mark),
            "margin": _money(self.margin),
            "profit": _money(self.profit(mark)),
        }


class Account:
    def __init__(self, user_id: str, starting_balance: Decimal) -> None:
        self.user_id = user_id
        self.starting_balance = starting_balance
        self.realized = Decimal(0)
        self.frozen = Decimal(0)
        self.margin = Decimal(0)
        self.positions: dict[tuple[str, Side], Position] = {}

    def position(self, instrument: Instrument, side: Side) -> Position:
        key = (instrument.id, side)
        found = self.positions.get(key)
        if found is None:
            found = self.positions[key] = Position(instrument, side)
        return found

    def profit(self, marks: Mapping[str, Decimal]) -> Decimal:
        return sum(
            (p.profit(marks[p.instrument.id]) for p in self.positions.values() if p.volume),
            Decimal(0),
        )

    def balance(self, marks: Mapping[str, Decimal]) -> Decimal:
        return self.starting_balance + self.realized + self.profit(marks)

    def available(self, marks: Mapping[str, Decimal]) -> Decimal:
        return self.balance(marks) - self.margin - self.frozen

    def figures(self, marks: Mapping[str, Decimal]) -> dict[str, Any]:
        profit = self.profit(marks)
        balance = self.starting_balance + self.realized + profit
        risk = self.margin / balance if balance > 0 else Decimal(1 if self.margin else 0)
        return {
            "balance": _money(balance),
            "available": _money(balance - self.margin - self.frozen),
            "frozen": _money(self.frozen),
            "margin": _money(self.margin),
            "profit": _money(profit),
            "realized_profit": _money(self.realized),
            "risk_ratio": float(round(risk, 4)),
        }


class Order:
    __slots__ = (
        "cancelled",
        "client_order_id",
        "created_ms",
        "direction",
        "filled",
        "frozen_per_lot",
        "instrument",
        "limit",
        "offset",
        "order_id",
        "order_type",
        "price",
        "status",
        "updated_ms",
        "user_id",
        "volume",
    )

    def __init__(
        self,
        order_id: str,
        user_id: str,
        request: OrderRequest,
        instrument: Instrument,
        *,
        price: Decimal | None,
        limit: Decimal,
        volume: int,
        now_ms: int,
    ) -> None:
        self.order_id = order_id
        self.user_id = user_id
        self.client_order_id = request.client_order_id
        self.instrument = instrument
        self.direction = request.direction
        self.offset = request.offset
        self.order_type = request.order_type
        self.price = price  # None for MARKET
        self.limit = limit  # the price it runs at in the book
        self.volume = volume
        self.filled = 0
        self.cancelled = 0
        self.status = "Submitted"
        self.frozen_per_lot = (
            instrument.margin(limit, 1) if request.offset == "OPEN" else Decimal(0)
        )
        self.created_ms = self.updated_ms = now_ms

    @property
    def side(self) -> Side:
        """The position it opens or closes."""
        buying = self.direction == "BUY"
        if self.offset == "OPEN":
            return "LONG" if buying else "SHORT"
        return "SHORT" if buying else "LONG"

    @property
    def live(self) -> bool:
        return self.status in ("Submitted", "PartiallyFilled")

    def describe(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "instrument_id": self.instrument.id,
            "direction": self.direction,
            "offset": self.offset,
            "order_type": self.order_type,
            "price": None if self.price is None else float(self.price),
            "volume": float(self.volume),
            "filled_volume": float(self.filled),
            "remaining_volume": float(self.volume - self.filled),
            "status": self.status,
            "created_at": self.created_ms,
            "timestamp": self.updated_ms,
        }


def _money(value: Decimal) -> float:
    return float(value) + 0.0  # no -0.0


def _as_decimal(value: int | float) -> Decimal:
    # The shortest text of a float is what the client wrote: 120.1 is 120.1, not 120.0999...
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


@dataclass(slots=True)
class Placed:
    """What ``Ledger.place`` decided: the answer to the client, the pushes, the book order."""

    answer: dict[str, Any]
    pushes: list[Push] = field(default_factory=list)
    book_order: BookOrder | None = None


class Ledger:
    """Every account and order of the exchange. One per exchange, owned by its actor."""

    def __init__(
        self,
        instruments: Iterable[Instrument],
        ids: Ids,
        *,
        starting_balance: Decimal = STARTING_BALANCE,
        remember: int = 100_000,
    ) -> None:
        self.instruments = by_id(instruments)
        self.ids = ids
        self.starting_balance = starting_balance
        self.remember = remember
        self.accounts: dict[str, Account] = {}
        #: The last trade price of each instrument (its reference price before any trade).
        self.marks: dict[str, Decimal] = {
            i.id: i.reference_price for i in self.instruments.values()
        }
        self.orders: dict[str, Order] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._answers: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    # -- accounts --------------------------------------------------------------------------

    def open_account(self, user_id: str, balance: Decimal | None = None) -> Account:
        """The user's account, opened now if it has none."""
        account = self.accounts.get(user_id)
        if account is None:
            start = self.starting_balance if balance is None else balance
            account = self.accounts[user_id] = Account(user_id, start)
        return account

    def account_update(self, account: Account, now_ms: int) -> dict[str, Any]:
        return {"type": "account_update", **account.figures(self.marks), "timestamp": now_ms}

    # -- orders ----------------------------------------------------------------------------

    def place(self, user_id: str, request: OrderRequest, now_ms: int) -> Placed:
        """Check ``request`` and, if it may be placed, freeze what it needs and give it an id.
        A ``client_order_id`` seen before from this user answers what it was answered then."""
        key = None if request.client_order_id is None else (user_id, request.client_order_id)
        if key is not None and key in self._answers:
            return Placed(self._answers[key])
        placed = self._place(user_id, request, now_ms)
        if key is not None:
            self._answers[key] = placed.answer
            while len(self._answers) > self.remember:
                self._answers.popitem(last=False)
        return placed

    def _place(self, user_id: str, request: OrderRequest, now_ms: int) -> Placed:
        account = self.accounts.get(user_id)
        if account is None:
            return Placed(_refused(request, ACCOUNT_NOT_FOUND, "Account not found"))
        checked = self._check(request)
        if isinstance(checked, Refusal):
            return Placed(_refused(request, checked.code, checked.message))
        instrument, price, limit, volume = checked
        if request.offset == "OPEN":
            need = instrument.margin(limit, volume)
            available = account.available(self.marks)
            if need > available:
                return Placed(
                    _refused(
                        request,
                        INSUFFICIENT_FUNDS,
                        f"Insufficient funds: the order needs {float(need)} of margin, "
                        f"{float(available)} is available",
                    )
                )
            account.frozen += need
        else:
            position = account.positions.get((instrument.id, _closes(request.direction)))
            free = 0 if position is None else position.volume - position.reserved
            if volume > free:
                side = _closes(request.direction)
                return Placed(
                    _refused(
                        request,
                        INSUFFICIENT_POSITION,
                        f"Insufficient position: {free} {side} lots of {instrument.id} "
                        f"may be closed, the order is for {volume}",
                    )
                )
            assert position is not None
            position.reserved += volume
        order_id = self.ids.make("O", now_ms)
        order = Order(
            order_id,
            user_id,
            request,
            instrument,
            price=price,
            limit=limit,
            volume=volume,
            now_ms=now_ms,
        )
        self.orders[order_id] = order
        answer = order_response(order_id, None, request.client_order_id)
        pushes: list[Push] = [(user_id, _order_status(order, now_ms))]
        if request.offset == "OPEN":
            pushes.append((user_id, self.account_update(account, now_ms)))
        book_order = BookOrder(
            instrument.id,
            order_id,
            user_id,
            "BUY" if request.direction == "BUY" else "SELL",
            limit,
            volume,
            ioc=request.order_type == "MARKET",
        )
        return Placed(answer, pushes, book_order)

    def _check(
        self, request: OrderRequest
    ) -> Refusal | tuple[Instrument, Decimal | None, Decimal, int]:
        """The instrument, the price (None for MARKET), the book price and the lots; or why not."""
        instrument = self.instruments.get(request.instrument_id)
        if instrument is None:
            known = ", ".join(self.instruments)
            return Refusal(
                UNKNOWN_INSTRUMENT,
                f"Unknown instrument {request.instrument_id!r}; listed: {known}",
            )
        if request.order_type not in ORDER_TYPES:
            return Refusal(
                UNSUPPORTED_ORDER_TYPE,
                f"Unsupported order type {request.order_type!r}; the book takes LIMIT and MARKET",
            )
        volume = request.volume
        if not (volume > 0 and volume == int(volume) and volume <= MAX_ORDER_VOLUME):
            return Refusal(
                INVALID_VOLUME,
                f"Invalid volume {volume}: a whole number of lots from 1 to {MAX_ORDER_VOLUME}",
            )
        lots = int(volume)
        if request.order_type == "MARKET":
            edge = instrument.upper_limit if request.direction == "BUY" else instrument.lower_limit
            return instrument, None, edge, lots
        if request.price is None:
            return Refusal(INVALID_PRICE, "Invalid price: a LIMIT order needs a price")
        try:
            price = _as_decimal(request.price)
        except InvalidOperation:
            return Refusal(INVALID_PRICE, f"Invalid price {request.price}")
        if price <= 0:
            return Refusal(INVALID_PRICE, f"Invalid price {request.price}: it must be > 0")
        if not instrument.on_tick(price):
            return Refusal(
                INVALID_PRICE,
                f"Invalid price {request.price}: not a multiple of {instrument.id}'s tick "
                f"{instrument.tick}",
            )
        low, high = instrument.lower_limit, instrument.upper_limit
        if not low <= price <= high:
            return Refusal(
                INVALID_PRICE,
                f"Invalid price {request.price}: outside {instrument.id}'s price band "
                f"{number_text(low)} to {number_text(high)}",
            )
        return instrument, price, price, lots

    def matched(
        self, order_id: str, result: MatchResult, trade_ids: list[str], now_ms: int
    ) -> list[Push]:
        """The book ran the order: settle every fill for both sides, and what did not fill."""
        taker = self.orders[order_id]
        pushes: list[Push] = []
        for cancelled in result.self_trade_cancels:
            pushes += self.cancelled(cancelled, now_ms)
        for fill, trade_id in zip(result.fills, trade_ids, strict=True):
            self.marks[taker.instrument.id] = fill.price
            maker = self.orders[fill.maker_order_id]
            for order in (taker, maker):
                pushes += self._fill(order, fill.price, fill.volume, trade_id, now_ms)
        if result.expired:
            pushes += self._end(taker, result.expired, now_ms)
        return pushes

    def cancelled(self, cancelled: Cancelled, now_ms: int) -> list[Push]:
        """The book took an order off (cancelled by its user, or to prevent a self-trade)."""
        return self._end(self.orders[cancelled.order_id], cancelled.remaining, now_ms)

    def _fill(
        self, order: Order, price: Decimal, volume: int, trade_id: str, now_ms: int
    ) -> list[Push]:
        account = self.accounts[order.user_id]
        position = account.position(order.instrument, order.side)
        if order.offset == "OPEN":
            account.frozen -= order.frozen_per_lot * volume
            account.margin += position.open(price, volume)
        else:
            position.reserved -= volume
            realized, freed = position.close(price, volume)
            account.realized += realized
            account.margin -= freed
        order.filled += volume
        order.status = "Filled" if order.filled == order.volume else "PartiallyFilled"
        order.updated_ms = now_ms
        if order.status == "Filled":
            self._finish(order)
        trade = {
            "type": "trade",
            "trade_id": trade_id,
            "order_id": order.order_id,
            "instrument_id": order.instrument.id,
            "direction": order.direction,
            "offset": order.offset,
            "price": float(price),
            "volume": float(volume),
            "timestamp": now_ms,
        }
        user = order.user_id
        return [
            (user, _order_status(order, now_ms)),
            (user, trade),
            (user, self.account_update(account, now_ms)),
        ]

    def _end(self, order: Order, volume: int, now_ms: int) -> list[Push]:
        """``volume`` lots of ``order`` will never fill: release what they held."""
        account = self.accounts[order.user_id]
        if order.offset == "OPEN":
            account.frozen -= order.frozen_per_lot * volume
        else:
            account.position(order.instrument, order.side).reserved -= volume
        order.cancelled += volume
        order.status = "Cancelled"
        order.updated_ms = now_ms
        self._finish(order)
        pushes: list[Push] = [(order.user_id, _order_status(order, now_ms))]
        if order.offset == "OPEN":
            pushes.append((order.user_id, self.account_update(account, now_ms)))
        return pushes

    def _finish(self, order: Order) -> None:
        """Keep the last ``remember`` finished orders for queries; forget older ones."""
        self._finished[order.order_id] = None
        while len(self._finished) > self.remember:
            old, _ = self._finished.popitem(last=False)
            self.orders.pop(old, None)

    def cancellable(self, user_id: str, order_id: str) -> Order | Refusal:
        """The user's live order ``order_id``, or why it cannot be cancelled."""
        order = self.orders.get(order_id)
        if order is None or order.user_id != user_id:
            return Refusal(ORDER_NOT_FOUND, f"Order not found: {order_id}")
        if not order.live:
            return Refusal(ORDER_NOT_CANCELLABLE, f"Order {order_id} is {order.status}")
        return order

    # -- queries ---------------------------------------------------------------------------

    def query_order(self, user_id: str, order_id: str) -> dict[str, Any] | Refusal:
        order = self.orders.get(order_id)
        if order is None or order.user_id != user_id:
            return Refusal(ORDER_NOT_FOUND, f"Order not found: {order_id}")
        return {"order": order.describe()}

    def query_account(self, user_id: str) -> dict[str, Any] | Refusal:
        account = self.accounts.get(user_id)
        if account is None:
            return Refusal(ACCOUNT_NOT_FOUND, "Account not found")
        return {"account": {"user_id": user_id, **account.figures(self.marks)}}

    def query_position(self, user_id: str, instrument_id: str | None) -> dict[str, Any] | Refusal:
        account = self.accounts.get(user_id)
        if account is None:
            return Refusal(ACCOUNT_NOT_FOUND, "Account not found")
        if instrument_id is not None and instrument_id not in self.instruments:
            known = ", ".join(self.instruments)
            return Refusal(
                UNKNOWN_INSTRUMENT, f"Unknown instrument {instrument_id!r}; listed: {known}"
            )
        positions = [
            p.describe(self.marks[p.instrument.id])
            for (instrument, _), p in sorted(account.positions.items())
            if (p.volume or p.reserved) and instrument_id in (None, instrument)
        ]
        return {"positions": positions}

    # -- checks ----------------------------------------------------------------------------

    def total_balance(self) -> Decimal:
        """Every account's balance added up (at the same marks): the starting balances."""
        return sum((a.balance(self.marks) for a in self.accounts.values()), Decimal(0))


def _closes(direction: str) -> Side:
    """The side a CLOSE order in ``direction`` closes: SELL closes a long, BUY a short."""
    return "LONG" if direction == "SELL" else "SHORT"


def _order_status(order: Order, now_ms: int) -> dict[str, Any]:
    return {
        "type": "order_status",
        "order_id": order.order_id,
        "status": order.status,
        "filled_volume": float(order.filled),
        "remaining_volume": float(order.volume - order.filled),
        "instrument_id": order.instrument.id,
        "direction": order.direction,
        "offset": order.offset,
        "client_order_id": order.client_order_id,
        "timestamp": now_ms,
    }


def _refused(request: OrderRequest, code: int, message: str) -> dict[str, Any]:
    return order_response(None, Refusal(code, message), request.client_order_id)


def order_response(
    order_id: str | None, refusal: Refusal | None, client_order_id: str | None = None
) -> dict[str, Any]:
    """The answer to ``submit_order`` or ``cancel_order``: the order's id, or why not."""
    answer: dict[str, Any] = {
        "type": "order_response",
        "success": refusal is None,
        "order_id": order_id,
        "error_code": None if refusal is None else refusal.code,
        "error_message": None if refusal is None else refusal.message,
    }
    if client_order_id is not None:
        answer["client_order_id"] = client_order_id
    return answer
