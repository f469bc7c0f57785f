"""The order book: matching rules one at a time, changes and checksum over literal values, then
random sequences of orders checked against a naive reference book."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rt.dialects.trading.book import (
    Cancelled,
    Fill,
    MatchResult,
    OrderBook,
    Side,
    number_text,
)

D = Decimal


def trades(result: MatchResult) -> list[tuple[str, Decimal, int]]:
    """The fills as (maker order, price, volume)."""
    return [(f.maker_order_id, f.price, f.volume) for f in result.fills]


def book_with(*orders: tuple[str, str, Side, str, int]) -> OrderBook:
    """A book with these (order, user, side, price, volume) resting; none may cross."""
    book = OrderBook("ES")
    for order_id, user_id, side, price, volume in orders:
        result = book.submit(order_id, user_id, side, D(price), volume)
        assert result.rested == volume
    return book


# -- matching -------------------------------------------------------------------------------


def test_a_buy_takes_the_lowest_ask_first() -> None:
    book = book_with(("a1", "u1", "SELL", "101", 5), ("a2", "u1", "SELL", "100", 5))
    book.submit("a3", "u1", "SELL", D("102"), 5)
    result = book.submit("b1", "u2", "BUY", D("102"), 5)
    assert trades(result) == [("a2", D("100"), 5)]
    assert book.asks() == [(D("101"), 5, 1), (D("102"), 5, 1)]


def test_a_sell_takes_the_highest_bid_first() -> None:
    book = book_with(("b1", "u1", "BUY", "99", 5), ("b2", "u1", "BUY", "100", 5))
    result = book.submit("s1", "u2", "SELL", D("98"), 5)
    assert trades(result) == [("b2", D("100"), 5)]
    assert book.bids() == [(D("99"), 5, 1)]


def test_within_a_level_the_oldest_order_trades_first() -> None:
    book = book_with(
        ("a1", "u1", "SELL", "100", 3),
        ("a2", "u2", "SELL", "100", 3),
        ("a3", "u3", "SELL", "100", 3),
    )
    result = book.submit("b1", "u9", "BUY", D("100"), 4)
    assert trades(result) == [("a1", D("100"), 3), ("a2", D("100"), 1)]
    assert [book.resting(o) for o in ("a1", "a2", "a3")] == [None, 2, 3]
    assert book.asks() == [(D("100"), 5, 2)]


def test_a_maker_fills_partly_and_keeps_its_place() -> None:
    book = book_with(("a1", "u1", "SELL", "100", 10), ("a2", "u2", "SELL", "100", 1))
    result = book.submit("b1", "u9", "BUY", D("100"), 4)
    assert result == MatchResult(
        fills=[
            Fill(
                maker_order_id="a1",
                maker_user_id="u1",
                taker_order_id="b1",
                taker_user_id="u9",
                taker_side="BUY",
                price=D("100"),
                volume=4,
                maker_remaining=6,
                taker_remaining=0,
            )
        ],
        self_trade_cancels=[],
        rested=0,
        expired=0,
    )
    assert book.resting("a1") == 6
    assert trades(book.submit("b2", "u9", "BUY", D("100"), 1)) == [("a1", D("100"), 1)]


def test_a_taker_fills_partly_and_rests_the_remainder_at_its_limit() -> None:
    book = book_with(("a1", "u1", "SELL", "100", 4))
    result = book.submit("b1", "u9", "BUY", D("100.5"), 10)
    assert [(f.volume, f.maker_remaining, f.taker_remaining) for f in result.fills] == [(4, 0, 6)]
    assert (result.rested, result.expired) == (6, 0)
    assert book.resting("b1") == 6
    assert book.bids() == [(D("100.5"), 6, 1)]
    assert book.asks() == []
    assert len(book) == 1


def test_a_remainder_joins_the_back_of_its_level() -> None:
    book = book_with(("b0", "u1", "BUY", "99", 2))
    book.submit("a1", "u2", "SELL", D("100"), 1)
    book.submit("b1", "u3", "BUY", D("100"), 3)  # takes a1, rests 2 at 100
    book.submit("b2", "u4", "BUY", D("100"), 2)
    result = book.submit("s1", "u5", "SELL", D("100"), 3)
    assert trades(result) == [("b1", D("100"), 2), ("b2", D("100"), 1)]


def test_a_taker_sweeps_several_levels_each_at_its_own_price() -> None:
    book = book_with(
        ("a1", "u1", "SELL", "100", 5),
        ("a2", "u2", "SELL", "101", 5),
        ("a3", "u1", "SELL", "101", 2),
        ("a4", "u3", "SELL", "102", 5),
    )
    result = book.submit("b1", "u9", "BUY", D("101.5"), 14)
    assert trades(result) == [("a1", D("100"), 5), ("a2", D("101"), 5), ("a3", D("101"), 2)]
    assert [f.taker_remaining for f in result.fills] == [9, 4, 2]
    assert (result.rested, result.expired) == (2, 0)
    assert (book.best_bid(), book.best_ask()) == (D("101.5"), D("102"))


def test_an_order_that_does_not_cross_rests_whole() -> None:
    book = book_with(("a1", "u1", "SELL", "100", 5))
    result = book.submit("b1", "u2", "BUY", D("99.5"), 3)
    assert result == MatchResult(fills=[], self_trade_cancels=[], rested=3, expired=0)
    assert (book.best_bid(), book.best_ask()) == (D("99.5"), D("100"))


def test_an_ioc_remainder_expires_and_does_not_rest() -> None:
    book = book_with(("a1", "u1", "SELL", "100", 4), ("a2", "u1", "SELL", "105", 4))
    result = book.submit("b1", "u9", "BUY", D("101"), 10, ioc=True)
    assert trades(result) == [("a1", D("100"), 4)]
    assert (result.rested, result.expired) == (0, 6)
    assert book.resting("b1") is None
    assert book.bids() == []
    assert book.asks() == [(D("105"), 4, 1)]


def test_an_ioc_order_that_cannot_trade_expires_whole() -> None:
    book = OrderBook("ES")
    result = book.submit("s1", "u1", "SELL", D("100"), 7, ioc=True)
    assert result == MatchResult(fills=[], self_trade_cancels=[], rested=0, expired=7)
    assert len(book) == 0


def test_an_empty_book() -> None:
    book = OrderBook("ES")
    assert (book.bids(), book.asks(), book.best_bid(), book.best_ask(), len(book)) == (
        [],
        [],
        None,
        None,
        0,
    )
    assert book.take_changes() == {"bids": {}, "asks": {}}


# -- self-trade prevention ------------------------------------------------------------------


def test_a_users_own_resting_order_is_cancelled_and_matching_goes_on() -> None:
    book = book_with(
        ("a1", "u1", "SELL", "100", 3),
        ("a2", "u2", "SELL", "100", 3),
        ("a3", "u1", "SELL", "101", 3),
        ("a4", "u3", "SELL", "101", 3),
    )
    result = book.submit("b1", "u1", "BUY", D("101"), 5)
    assert result.self_trade_cancels == [Cancelled("a1", "u1", 3), Cancelled("a3", "u1", 3)]
    assert trades(result) == [("a2", D("100"), 3), ("a4", D("101"), 2)]
    assert all(f.maker_user_id != f.taker_user_id for f in result.fills)
    assert (result.rested, result.expired) == (0, 0)
    assert book.resting("a1") is None and book.resting("a3") is None
    assert book.asks() == [(D("101"), 1, 1)]


def test_when_only_own_orders_cross_they_go_and_the_order_rests() -> None:
    book = book_with(("a1", "u1", "SELL", "100", 3), ("a2", "u1", "SELL", "100", 2))
    result = book.submit("b1", "u1", "BUY", D("100"), 4)
    assert result == MatchResult(
        fills=[],
        self_trade_cancels=[Cancelled("a1", "u1", 3), Cancelled("a2", "u1", 2)],
        rested=4,
        expired=0,
    )
    assert (book.best_bid(), book.best_ask()) == (D("100"), None)


def test_own_orders_beyond_the_limit_are_left_alone() -> None:
    book = book_with(("a1", "u2", "SELL", "100", 3), ("a2", "u1", "SELL", "101", 2))
    result = book.submit("b1", "u1", "BUY", D("100"), 5, ioc=True)
    assert result.self_trade_cancels == []
    assert book.resting("a2") == 2


# -- cancel ---------------------------------------------------------------------------------


def test_cancel_takes_a_resting_order_off() -> None:
    book = book_with(("b1", "u1", "BUY", "99", 5))
    book.submit("s1", "u2", "SELL", D("99"), 2)
    assert book.cancel("b1") == Cancelled("b1", "u1", 3)
    assert book.resting("b1") is None
    assert book.bids() == []
    assert len(book) == 0
    assert book.cancel("b1") is None  # already cancelled


def test_cancel_of_an_unknown_or_filled_order_is_none() -> None:
    book = book_with(("a1", "u1", "SELL", "100", 2))
    book.submit("b1", "u2", "BUY", D("100"), 2)
    assert book.cancel("a1") is None  # filled
    assert book.cancel("b1") is None  # never rested
    assert book.cancel("nope") is None


def test_cancel_in_the_middle_of_a_level_keeps_the_others_order() -> None:
    book = book_with(
        ("b1", "u1", "BUY", "99", 1),
        ("b2", "u2", "BUY", "99", 2),
        ("b3", "u3", "BUY", "99", 3),
    )
    assert book.cancel("b2") == Cancelled("b2", "u2", 2)
    assert book.bids() == [(D("99"), 4, 2)]
    book.submit("b4", "u4", "BUY", D("99"), 4)
    result = book.submit("s1", "u9", "SELL", D("99"), 10)
    assert trades(result) == [("b1", D("99"), 1), ("b3", D("99"), 3), ("b4", D("99"), 4)]


def test_an_id_may_be_used_again_once_it_no_longer_rests() -> None:
    book = book_with(("o1", "u1", "BUY", "99", 1))
    book.cancel("o1")
    assert book.submit("o1", "u1", "BUY", D("98"), 1).rested == 1


# -- the caller's mistakes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order_id", "side", "price", "volume", "message"),
    [
        ("o1", "BUY", "99", 1, "order 'o1' is already resting on ES"),
        ("o2", "BUY", "99", 0, "expected a positive volume, got 0"),
        ("o2", "SELL", "99", -3, "expected a positive volume, got -3"),
        ("o2", "BUY", "0", 1, "expected a positive price, got 0"),
        ("o2", "BUY", "-1.5", 1, "expected a positive price, got -1.5"),
        ("o2", "BUY", "Infinity", 1, "expected a positive price, got Infinity"),
        ("o2", "BUY", "NaN", 1, "expected a positive price, got NaN"),
        ("o2", "HOLD", "99", 1, "expected side to be BUY or SELL, got 'HOLD'"),
    ],
)
def test_a_bad_submit_raises(
    order_id: str, side: Any, price: str, volume: int, message: str
) -> None:
    book = book_with(("o1", "u1", "BUY", "99", 1))
    with pytest.raises(ValueError) as caught:
        book.submit(order_id, "u1", side, D(price), volume)
    assert str(caught.value) == message
    assert book.bids() == [(D("99"), 1, 1)]


# -- changes --------------------------------------------------------------------------------


def test_take_changes_reports_the_changed_levels_then_forgets_them() -> None:
    book = book_with(
        ("b1", "u1", "BUY", "99", 5),
        ("b2", "u1", "BUY", "98", 5),
        ("a1", "u2", "SELL", "101", 5),
        ("a2", "u2", "SELL", "102", 5),
    )
    assert book.take_changes() == {
        "bids": {D("99"): (5, 1), D("98"): (5, 1)},
        "asks": {D("101"): (5, 1), D("102"): (5, 1)},
    }
    assert book.take_changes() == {"bids": {}, "asks": {}}

    book.submit("b3", "u3", "BUY", D("101.5"), 7)  # takes a1 whole, rests 2
    book.submit("a3", "u4", "SELL", D("102"), 1)
    book.cancel("b2")
    assert book.take_changes() == {
        "bids": {D("101.5"): (2, 1), D("98"): None},
        "asks": {D("101"): None, D("102"): (6, 2)},
    }


def test_a_level_back_where_it_was_is_not_a_change() -> None:
    book = book_with(("b1", "u1", "BUY", "99", 5))
    book.take_changes()
    book.submit("b2", "u2", "BUY", D("99"), 3)
    book.cancel("b2")
    book.submit("b3", "u2", "BUY", D("97"), 3)
    book.cancel("b3")
    assert book.take_changes() == {"bids": {}, "asks": {}}


# -- checksum -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D("119.50"), "119.5"),
        (D("120.0"), "120"),
        (D("4000.2"), "4000.2"),
        (100, "100"),
        (D("0.0001"), "0.0001"),
        (D("1E+3"), "1000"),
        (D("0.00"), "0"),
        (D("-0"), "0"),
    ],
)
def test_number_text(value: Decimal | int, text: str) -> None:
    assert number_text(value) == text


def test_checksum_of_a_small_book() -> None:
    book = book_with(
        ("b1", "u1", "BUY", "119.50", 60),
        ("b2", "u2", "BUY", "119.50", 40),
        ("b3", "u1", "BUY", "119", 200),
        ("a1", "u3", "SELL", "120.0", 150),
    )
    assert book.checksum() == zlib.crc32(b"119.5:100:120:150:119:200")


def test_checksum_of_an_empty_book() -> None:
    assert OrderBook("ES").checksum() == zlib.crc32(b"") == 0


def test_checksum_covers_ten_levels_a_side() -> None:
    book = OrderBook("ES")
    for i in range(12):
        book.submit(f"b{i}", "u1", "BUY", D(100 - i), 1 + i)
    book.submit("a0", "u2", "SELL", D("101.25"), 7)
    text = "100:1:101.25:7:" + ":".join(f"{100 - i}:{1 + i}" for i in range(1, 10))
    assert text.startswith("100:1:101.25:7:99:2:98:3:") and text.endswith(":91:10")
    assert book.checksum() == zlib.crc32(text.encode())


# -- random sequences against a reference book ----------------------------------------------


@dataclass
class RefOrder:
    seq: int
    order_id: str
    user_id: str
    side: Side
    price: Decimal
    remaining: int


class ReferenceBook:
    """The rules at their plainest: one list, searched in full for each trade."""

    def __init__(self) -> None:
        self.orders: list[RefOrder] = []
        self.seq = 0

    def submit(
        self, order_id: str, user_id: str, side: Side, price: Decimal, volume: int, ioc: bool
    ) -> MatchResult:
        fills, cancels, remaining = [], [], volume
        while remaining:
            if side == "BUY":
                crossing = [o for o in self.orders if o.side == "SELL" and o.price <= price]
                crossing.sort(key=lambda o: (o.price, o.seq))
            else:
                crossing = [o for o in self.orders if o.side == "BUY" and o.price >= price]
                crossing.sort(key=lambda o: (-o.price, o.seq))
            if not crossing:
                break
            maker = crossing[0]
            if maker.user_id == user_id:
                self.orders.remove(maker)
                cancels.append(Cancelled(maker.order_id, maker.user_id, maker.remaining))
                continue
            traded = min(remaining, maker.remaining)
            maker.remaining -= traded
            remaining -= traded
            if not maker.remaining:
                self.orders.remove(maker)
            fills.append(
                Fill(
                    maker.order_id,
                    maker.user_id,
                    order_id,
                    user_id,
                    side,
                    maker.price,
                    traded,
                    maker.remaining,
                    remaining,
                )
            )
        if ioc or not remaining:
            return MatchResult(fills, cancels, 0, remaining)
        self.seq += 1
        self.orders.append(RefOrder(self.seq, order_id, user_id, side, price, remaining))
        return MatchResult(fills, cancels, remaining, 0)

    def cancel(self, order_id: str) -> Cancelled | None:
        for order in self.orders:
            if order.order_id == order_id:
                self.orders.remove(order)
                return Cancelled(order.order_id, order.user_id, order.remaining)
        return None

    def levels(self, side: Side) -> dict[Decimal, tuple[int, int]]:
        out: dict[Decimal, tuple[int, int]] = {}
        for order in self.orders:
            if order.side == side:
                volume, count = out.get(order.price, (0, 0))
                out[order.price] = (volume + order.remaining, count + 1)
        return out


# "100.0" and "100" are the same price and must share a level.
PRICES = [D(p) for p in ("99", "99.5", "100", "100.0", "100.5", "101")]

submit_steps = st.tuples(
    st.just("submit"),
    st.sampled_from(["u1", "u2", "u3"]),
    st.sampled_from(["BUY", "SELL"]),
    st.sampled_from(PRICES),
    st.integers(1, 20),
    st.booleans(),  # ioc
    st.booleans(),  # take the changes after this step
)
cancel_steps = st.tuples(st.just("cancel"), st.integers(0, 30), st.booleans())


def level_list(levels: dict[Decimal, tuple[int, int]], *, best_highest: bool) -> list[Any]:
    return [(p, *levels[p]) for p in sorted(levels, reverse=best_highest)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(submit_steps, submit_steps, cancel_steps), max_size=40))
def test_random_orders_match_the_reference_book(steps: list[tuple[Any, ...]]) -> None:
    book, ref = OrderBook("ES"), ReferenceBook()
    published: dict[str, dict[Decimal, tuple[int, int]]] = {"bids": {}, "asks": {}}
    submitted = 0
    for step in steps:
        if step[0] == "submit":
            _, user_id, side, price, volume, ioc, take = step
            order_id = f"o{submitted}"
            submitted += 1
            result = book.submit(order_id, user_id, side, price, volume, ioc=ioc)
            assert result == ref.submit(order_id, user_id, side, price, volume, ioc)
            assert sum(f.volume for f in result.fills) + result.rested + result.expired == volume
            for fill in result.fills:
                assert fill.maker_user_id != fill.taker_user_id
                assert (fill.price <= price) if side == "BUY" else (fill.price >= price)
                assert book.resting(fill.maker_order_id) == (fill.maker_remaining or None)
            assert book.resting(order_id) == (result.rested or None)
            assert all(c.user_id == user_id for c in result.self_trade_cancels)
        else:
            _, index, take = step
            assert book.cancel(f"o{index}") == ref.cancel(f"o{index}")

        bids, asks = ref.levels("BUY"), ref.levels("SELL")
        assert book.bids() == level_list(bids, best_highest=True)
        assert book.asks() == level_list(asks, best_highest=False)
        assert len(book) == len(ref.orders)
        assert all(book.resting(o.order_id) == o.remaining for o in ref.orders)
        best_bid, best_ask = book.best_bid(), book.best_ask()
        assert best_bid == max(bids, default=None)
        assert best_ask == min(asks, default=None)
        if best_bid is not None and best_ask is not None:
            assert best_bid < best_ask

        parts = []
        for i in range(10):
            for levels in (book.bids(), book.asks()):
                if i < len(levels):
                    parts.append(f"{levels[i][0].normalize():f}:{levels[i][1]}")
        assert book.checksum() == zlib.crc32(":".join(parts).encode())

        if take:
            # Exactly the levels that differ from what the last take published.
            changes = book.take_changes()
            for name, now in (("bids", bids), ("asks", asks)):
                before = published[name]
                assert changes[name] == {
                    p: now.get(p) for p in before.keys() | now.keys() if before.get(p) != now.get(p)
                }
                published[name] = now
