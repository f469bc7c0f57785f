"""The instruments the paper exchange lists, and what an order on one may be (sans-IO).

An instrument has a tick (every price is a multiple of it), a contract multiplier (money per
point per lot), a margin rate, and a reference price (yesterday's settlement, as exchanges
call it) around which a price band of ±``price_band`` is allowed: a limit price outside it
is refused, and a MARKET order runs as an immediate-or-cancel limit at the band's edge, so
that what it may cost (its frozen margin) is known before it trades.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

#: Most lots one order may be for.
MAX_ORDER_VOLUME = 1000


@dataclass(frozen=True, slots=True)
class Instrument:
    id: str
    tick: Decimal
    multiplier: int
    margin_rate: Decimal
    reference_price: Decimal
    price_band: Decimal = Decimal("0.1")

    @property
    def upper_limit(self) -> Decimal:
        """The highest price allowed: the band's top, rounded down onto the tick."""
        return _on_tick(self.reference_price * (1 + self.price_band), self.tick, ROUND_FLOOR)

    @property
    def lower_limit(self) -> Decimal:
        """The lowest price allowed: the band's bottom, rounded up onto the tick."""
        return _on_tick(self.reference_price * (1 - self.price_band), self.tick, ROUND_CEILING)

    def on_tick(self, price: Decimal) -> bool:
        return price % self.tick == 0

    def margin(self, price: Decimal, volume: int) -> Decimal:
        """The margin ``volume`` lots at ``price`` hold."""
        return price * volume * self.multiplier * self.margin_rate

    def describe(self) -> dict[str, object]:
        return {
            "instrument_id": self.id,
            "tick_size": float(self.tick),
            "multiplier": self.multiplier,
            "margin_rate": float(self.margin_rate),
            "reference_price": float(self.reference_price),
            "upper_limit": float(self.upper_limit),
            "lower_limit": float(self.lower_limit),
        }


def _on_tick(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (price / tick).to_integral_value(rounding=rounding) * tick


#: What the exchange lists unless configured otherwise (``RT_TRADING_INSTRUMENTS``).
DEFAULT_INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("IX2301", Decimal("0.5"), 100, Decimal("0.1"), Decimal("120")),
    Instrument("IF2301", Decimal("0.2"), 300, Decimal("0.12"), Decimal("4000")),
)


def parse_instruments(spec: str) -> tuple[Instrument, ...]:
    """Instruments from ``ID:tick:multiplier:margin_rate:reference_price`` entries separated
    by commas (``IX2301:0.5:100:0.1:120,IF2301:0.2:300:0.12:4000``); ValueError naming
    what is wrong."""
    found: dict[str, Instrument] = {}
    for entry in (e.strip() for e in spec.split(",") if e.strip()):
        parts = entry.split(":")
        if len(parts) != 5:
            raise ValueError(
                f"instrument {entry!r}: expected ID:tick:multiplier:margin_rate:reference_price"
            )
        name, tick, multiplier, rate, reference = parts
        try:
            instrument = Instrument(
                name, Decimal(tick), int(multiplier), Decimal(rate), Decimal(reference)
            )
        except (ArithmeticError, ValueError):
            raise ValueError(f"instrument {entry!r}: not numbers where numbers go") from None
        if not (
            name
            and instrument.tick > 0
            and instrument.multiplier > 0
            and 0 < instrument.margin_rate <= 1
            and instrument.reference_price > 0
            and instrument.on_tick(instrument.reference_price)
        ):
            raise ValueError(
                f"instrument {entry!r}: tick, multiplier and reference price must be > 0, the "
                "margin rate in (0, 1], and the reference price on the tick"
            )
        found[name] = instrument
    if not found:
        raise ValueError("no instruments")
    return tuple(found.values())


def by_id(instruments: Iterable[Instrument]) -> Mapping[str, Instrument]:
    return {i.id: i for i in instruments}
