"""The paper exchange's money without actors: margin arithmetic, fills for both sides, closes,
cancels, refusals with their codes, idempotent client order ids, and a property test that
no sequence of orders and cancels makes or loses money or leaves a figure inconsistent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rt.dialects.trading.book import OrderBook
from rt.dialects.trading.instruments import (
    DEFAULT_INSTRUMENTS,
    Instrument,
    parse_instruments,
)
from rt.dialects.trading.ledger import (
    ACCOUNT_NOT_FOUND,
    INSUFFICIENT_FUNDS,
    INSUFFICIENT_POSITION,
    INVALID_PRICE,
    INVALID_VOLUME,
    ORDER_NOT_CANCELLABLE,
    ORDER_NOT_FOUND,
    STARTING_BALANCE,
    UNKNOWN_INSTRUMENT,
    UNSUPPORTED_ORDER_TYPE,
    Ids,
    Ledger,
    OrderRequest,
    Push,
    Refusal,
)

NOW = 1_700_000_000_000
IX = DEFAULT_INSTRUMENTS[0]


class Exchange:
    """A ledger and its books wired as the actors wire them, without the actors."""

    def __init__(self, instruments: tuple[Instrument, ...] = DEFAULT_INSTRUMENTS) -> None:
        self.ids = Ids()
        self.ledger = Ledger(instruments, self.ids)
        self.books = {i.id: OrderBook(i.id) for i in instruments}

    def order(
        self,
        user: str,
        direction: str,
        offset: str,
        volume: float,
        price: float | None,
        *,
        order_type: str = "LIMIT",
        instrument: str = "IX2301",
        client_order_id: str | None = None,
    ) -> tuple[dict[str, Any], list[Push]]:
        request = OrderRequest(
            instrument, direction, offset, volume, price, order_type, client_order_id
        )
        placed = self.ledger.place(user, request, NOW)
        pushes = list(placed.pushes)
        order = placed.book_order
        if order is not None:
            result = self.books[order.instrument_id].submit(
                order.order_id, order.user_id, order.side, order.price, order.volume, ioc=order.ioc
            )
            trade_ids = [self.ids.make("T", NOW) for _ in result.fills]
            pushes += self.ledger.matched(order.order_id, result, trade_ids, NOW)
        return placed.answer, pushes

    def cancel(self, user: str, order_id: str) -> Refusal | list[Push]:
        found = self.ledger.cancellable(user, order_id)
        if isinstance(found, Refusal):
            return found
        cancelled = self.books[found.instrument.id].cancel(order_id)
        assert cancelled is not None
        return self.ledger.cancelled(cancelled, NOW)

    def account(self, user: str) -> dict[str, Any]:
        found = self.ledger.query_account(user)
        assert not isinstance(found, Refusal)
        return dict(found["account"])


def exchange_with(*users: str) -> Exchange:
    exchange = Exchange()
    for user in users:
        exchange.ledger.open_account(user)
    return exchange


def kinds(pushes: list[Push], user: str) -> list[str]:
    return [m["type"] for u, m in pushes if u == user]


def test_an_open_order_freezes_its_margin_at_its_limit_price() -> None:
    exchange = exchange_with("a")
    answer, pushes = exchange.order("a", "BUY", "OPEN", 10, 120.0)
    assert answer["success"] is True and answer["order_id"].startswith(f"O{NOW}")
    # 120 x 10 lots x multiplier 100 x margin 10%
    assert exchange.account("a") | {"user_id": "a"} == {
        "user_id": "a",
        "balance": 1_000_000.0,
        "available": 988_000.0,
        "frozen": 12_000.0,
        "margin": 0.0,
        "profit": 0.0,
        "realized_profit": 0.0,
        "risk_ratio": 0.0,
    }
    assert kinds(pushes, "a") == ["order_status", "account_update"]
    assert pushes[0][1]["status"] == "Submitted"


def test_a_fill_settles_both_sides_at_the_resting_price_in_the_seeds_order() -> None:
    exchange = exchange_with("maker", "taker")
    exchange.order("maker", "SELL", "OPEN", 10, 120.0)
    answer, pushes = exchange.order("taker", "BUY", "OPEN", 4, 121.0)
    for user in ("taker", "maker"):
        assert kinds(pushes, user)[-3:] == ["order_status", "trade", "account_update"]
    trades = [m for _, m in pushes if m["type"] == "trade"]
    assert [(t["price"], t["volume"], t["direction"]) for t in trades] == [
        (120.0, 4.0, "BUY"),
        (120.0, 4.0, "SELL"),
    ]
    assert trades[0]["trade_id"] == trades[1]["trade_id"]
    statuses = {m["order_id"]: m for _, m in pushes if m["type"] == "order_status"}
    assert statuses[answer["order_id"]]["status"] == "Filled"
    maker_status = next(s for oid, s in statuses.items() if oid != answer["order_id"])
    assert (maker_status["status"], maker_status["filled_volume"]) == ("PartiallyFilled", 4.0)
    assert maker_status["remaining_volume"] == 6.0
    # The taker froze 121 x 4 x 10 = 4,840 and now holds 120 x 4 x 10 = 4,800 of margin.
    taker = exchange.account("taker")
    assert (taker["frozen"], taker["margin"], taker["available"]) == (0.0, 4_800.0, 995_200.0)
    # The maker's 6 unfilled lots still hold their frozen margin.
    maker = exchange.account("maker")
    assert (maker["frozen"], maker["margin"]) == (7_200.0, 4_800.0)


def test_closing_realizes_profit_first_in_first_out() -> None:
    exchange = exchange_with("long", "mm")
    exchange.order("mm", "SELL", "OPEN", 1, 120.0)
    exchange.order("long", "BUY", "OPEN", 1, 120.0)
    exchange.order("mm", "SELL", "OPEN", 1, 122.0)
    exchange.order("long", "BUY", "OPEN", 1, 122.0)
    # Marked at the last trade, 122: the first lot is 2 points up, x 100.
    assert exchange.account("long")["profit"] == 200.0
    exchange.order("mm", "BUY", "OPEN", 1, 125.0)
    answer, _ = exchange.order("long", "SELL", "CLOSE", 1, 125.0)
    assert answer["success"] is True
    account = exchange.account("long")
    # The 120 lot closed at 125: +500 realized; the 122 lot is marked at 125: +300.
    assert (account["realized_profit"], account["profit"]) == (500.0, 300.0)
    assert account["margin"] == 1_220.0  # the 122 lot's margin: 122 x 100 x 10%
    assert account["balance"] == 1_000_800.0
    found = exchange.ledger.query_position("long", "IX2301")
    assert not isinstance(found, Refusal)
    [position] = found["positions"]
    assert (position["direction"], position["volume"], position["open_price"]) == (
        "BUY",
        1.0,
        122.0,
    )
    assert exchange.ledger.total_balance() == 2 * STARTING_BALANCE


def test_refusals_have_their_codes_and_reach_no_book() -> None:
    exchange = exchange_with("a")
    cases = [
        (dict(volume=10, price=120.2), INVALID_PRICE),  # off the 0.5 tick
        (dict(volume=10, price=0), INVALID_PRICE),
        (dict(volume=10, price=-120.0), INVALID_PRICE),
        (dict(volume=10, price=140.0), INVALID_PRICE),  # above the band's 132
        (dict(volume=0, price=120.0), INVALID_VOLUME),
        (dict(volume=-1, price=120.0), INVALID_VOLUME),
        (dict(volume=1.5, price=120.0), INVALID_VOLUME),
        (dict(volume=1001, price=120.0), INVALID_VOLUME),
        (dict(volume=1, price=120.0, instrument="XX9999"), UNKNOWN_INSTRUMENT),
        (dict(volume=1, price=120.0, order_type="STOP"), UNSUPPORTED_ORDER_TYPE),
        (dict(volume=1000, price=120.0), INSUFFICIENT_FUNDS),  # 1.2 million of margin
    ]
    for fields, code in cases:
        volume, price = fields.pop("volume"), fields.pop("price")
        answer, pushes = exchange.order("a", "BUY", "OPEN", volume, price, **fields)
        assert (answer["success"], answer["error_code"]) == (False, code), (fields, answer)
        assert answer["order_id"] is None and isinstance(answer["error_message"], str)
        assert pushes == []
    answer, _ = exchange.order("a", "SELL", "CLOSE", 1, 120.0)
    assert answer["error_code"] == INSUFFICIENT_POSITION
    answer, _ = exchange.order("nobody", "BUY", "OPEN", 1, 120.0)
    assert answer["error_code"] == ACCOUNT_NOT_FOUND
    assert all(len(book) == 0 for book in exchange.books.values())
    assert exchange.account("a")["frozen"] == 0.0


def test_a_close_reserves_the_lots_it_may_close() -> None:
    exchange = exchange_with("a", "b")
    exchange.order("b", "SELL", "OPEN", 2, 120.0)
    exchange.order("a", "BUY", "OPEN", 2, 120.0)
    first, _ = exchange.order("a", "SELL", "CLOSE", 2, 130.0)  # rests
    assert first["success"] is True
    second, _ = exchange.order("a", "SELL", "CLOSE", 1, 130.0)
    assert second["error_code"] == INSUFFICIENT_POSITION
    cancelled = exchange.cancel("a", first["order_id"])
    assert not isinstance(cancelled, Refusal)
    third, _ = exchange.order("a", "SELL", "CLOSE", 1, 130.0)
    assert third["success"] is True


def test_a_market_order_runs_immediate_or_cancel_and_freezes_at_the_band() -> None:
    exchange = exchange_with("a", "b")
    exchange.order("b", "SELL", "OPEN", 3, 121.0)
    answer, pushes = exchange.order("a", "BUY", "OPEN", 5, None, order_type="MARKET")
    assert answer["success"] is True
    statuses = [m for u, m in pushes if u == "a" and m["type"] == "order_status"]
    assert [s["status"] for s in statuses] == ["Submitted", "PartiallyFilled", "Cancelled"]
    assert (statuses[-1]["filled_volume"], statuses[-1]["remaining_volume"]) == (3.0, 2.0)
    frozen_at_submit = next(m for u, m in pushes if u == "a" and m["type"] == "account_update")
    assert frozen_at_submit["frozen"] == 132 * 5 * 10  # the band's top, 132
    account = exchange.account("a")
    assert (account["frozen"], account["margin"]) == (0.0, 121 * 3 * 10)
    assert len(exchange.books["IX2301"]) == 0


def test_cancels_release_what_the_order_held_and_finished_orders_cannot_be_cancelled() -> None:
    exchange = exchange_with("a", "b")
    answer, _ = exchange.order("a", "BUY", "OPEN", 5, 119.0)
    pushes = exchange.cancel("a", answer["order_id"])
    assert not isinstance(pushes, Refusal)
    assert kinds(pushes, "a") == ["order_status", "account_update"]
    assert pushes[0][1]["status"] == "Cancelled"
    assert exchange.account("a")["frozen"] == 0.0
    again = exchange.cancel("a", answer["order_id"])
    assert isinstance(again, Refusal) and again.code == ORDER_NOT_CANCELLABLE
    unknown = exchange.cancel("a", "O1")
    assert isinstance(unknown, Refusal) and unknown.code == ORDER_NOT_FOUND
    theirs, _ = exchange.order("b", "BUY", "OPEN", 1, 119.0)
    other = exchange.cancel("a", theirs["order_id"])  # someone else's order is not found
    assert isinstance(other, Refusal) and other.code == ORDER_NOT_FOUND
    assert exchange.ledger.query_order("a", theirs["order_id"]) == Refusal(
        ORDER_NOT_FOUND, f"Order not found: {theirs['order_id']}"
    )


def test_self_trade_prevention_cancels_the_resting_order() -> None:
    exchange = exchange_with("a", "b")
    own, _ = exchange.order("a", "SELL", "OPEN", 2, 120.0)
    exchange.order("b", "SELL", "OPEN", 2, 120.5)
    _, pushes = exchange.order("a", "BUY", "OPEN", 2, 121.0)
    order = exchange.ledger.query_order("a", own["order_id"])
    assert not isinstance(order, Refusal)
    assert order["order"]["status"] == "Cancelled"
    trades = [m for u, m in pushes if m["type"] == "trade"]
    assert {t["price"] for t in trades} == {120.5}
    assert exchange.account("a")["frozen"] == 0.0


def test_a_repeated_client_order_id_answers_the_first_answer_and_places_nothing() -> None:
    exchange = exchange_with("a")
    first, pushes = exchange.order("a", "BUY", "OPEN", 1, 119.0, client_order_id="c-1")
    assert first["client_order_id"] == "c-1" and pushes
    again, more = exchange.order("a", "BUY", "OPEN", 1, 119.0, client_order_id="c-1")
    assert again == first and more == []
    assert len(exchange.books["IX2301"]) == 1
    assert exchange.account("a")["frozen"] == 1_190.0
    # Per user: another user's c-1 is another order.
    exchange.ledger.open_account("b")
    theirs, _ = exchange.order("b", "BUY", "OPEN", 1, 119.0, client_order_id="c-1")
    assert theirs["order_id"] != first["order_id"]


def test_instruments_parse_and_refuse_nonsense() -> None:
    [one] = parse_instruments("AB1:0.25:10:0.2:50")
    assert (one.tick, one.upper_limit, one.lower_limit) == (
        Decimal("0.25"),
        Decimal("55.00"),
        Decimal("45.00"),
    )
    for bad in ("AB1:0.25:10:0.2", "AB1:x:10:0.2:50", "AB1:0.25:10:2:50", "AB1:0.3:10:0.2:50", ""):
        try:
            parse_instruments(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


# -- the property: no money made or lost, every figure consistent --------------------------

USERS = ("u1", "u2", "u3")
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("order"),
            st.sampled_from(USERS),
            st.sampled_from(("BUY", "SELL")),
            st.sampled_from(("OPEN", "OPEN", "CLOSE")),
            st.integers(1, 30),
            st.sampled_from((118.0, 119.0, 119.5, 120.0, 120.5, 121.0, 122.0)),
            st.sampled_from(("LIMIT", "LIMIT", "LIMIT", "MARKET")),
        ),
        st.tuples(st.just("cancel"), st.sampled_from(USERS), st.integers(0, 40)),
    ),
    max_size=40,
)


def check_consistent(exchange: Exchange, starting: Decimal) -> None:
    ledger = exchange.ledger
    # No money made or lost: marked at the same prices, the balances add up.
    assert ledger.total_balance() == starting
    for account in ledger.accounts.values():
        live = [o for o in ledger.orders.values() if o.live and o.user_id == account.user_id]
        frozen = sum(
            (o.frozen_per_lot * (o.volume - o.filled) for o in live if o.offset == "OPEN"),
            Decimal(0),
        )
        assert account.frozen == frozen
        assert account.margin == sum((p.margin for p in account.positions.values()), Decimal(0))
        for position in account.positions.values():
            assert position.volume == sum(lot.volume for lot in position.lots) >= 0
            reserved = sum(
                o.volume - o.filled
                for o in live
                if o.offset == "CLOSE"
                and o.instrument is position.instrument
                and o.side == position.side
            )
            assert position.reserved == reserved <= position.volume
    # What rests in the books is exactly what the ledger holds live.
    for book in exchange.books.values():
        live_ids = {o.order_id for o in ledger.orders.values() if o.live}
        assert len(book) == len(live_ids & {o for o in live_ids if book.resting(o) is not None})
        for order_id in live_ids:
            order = ledger.orders[order_id]
            if order.instrument.id == book.instrument_id:
                assert book.resting(order_id) == order.volume - order.filled
    # Long and short open interest match across accounts, per instrument.
    for instrument in ledger.instruments:
        longs = shorts = 0
        for account in ledger.accounts.values():
            for (name, side), position in account.positions.items():
                if name == instrument:
                    if side == "LONG":
                        longs += position.volume
                    else:
                        shorts += position.volume
        assert longs == shorts


@settings(max_examples=150, deadline=None)
@given(steps)
def test_no_sequence_of_orders_and_cancels_makes_or_loses_money(script: list[Any]) -> None:
    exchange = exchange_with(*USERS)
    starting = STARTING_BALANCE * len(USERS)
    placed: list[tuple[str, str]] = []
    for step in script:
        if step[0] == "order":
            _, user, direction, offset, volume, price, order_type = step
            answer, pushes = exchange.order(
                user, direction, offset, volume, price, order_type=order_type
            )
            if answer["success"]:
                placed.append((user, answer["order_id"]))
            for _, message in pushes:  # every status keeps filled + remaining = volume
                if message["type"] == "order_status":
                    order = exchange.ledger.orders[message["order_id"]]
                    assert message["filled_volume"] + message["remaining_volume"] == order.volume
        else:
            _, user, index = step
            if placed:
                _, order_id = placed[index % len(placed)]
                exchange.cancel(user, order_id)  # someone else's: refused, changes nothing
        check_consistent(exchange, starting)
