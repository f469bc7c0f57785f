"""Topic names of the topics dialect (seed 004), as clients write them, and rt's own.

A client names ``{type}.{symbol}.{interval}`` (``stock.AAPL.1m``) or
``market.{REGION}.summary`` (``market.US.summary``). Inside rt the first is the topic
``candle:stock.AAPL.1m`` and the second ``summary:US`` (rt/topics.py); both directions are
here, with the error that names what is wrong and the valid values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rt.topics import CANDLE_PREFIX, INSTRUMENT_TYPES, SUMMARY_PREFIX, candle_topic, summary_topic

#: The instrument types a topic may name, in the seed's order. ``market`` symbols are indices
#: (their candles) or, with the interval ``summary``, a region's summary.
TYPES = INSTRUMENT_TYPES
#: Candle intervals, in the seed's order.
INTERVALS = ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w", "1M")
SUMMARY = "summary"
#: What a symbol or a region may be: 1-32 of these characters (no dot: it separates parts).
SYMBOL = re.compile(r"[A-Za-z0-9_\-]{1,32}")


class InvalidTopic(ValueError):
    """The text is not a topic of this dialect; the message says why and what is valid."""


@dataclass(frozen=True, slots=True)
class Topic:
    type: str
    symbol: str
    #: One of INTERVALS, or SUMMARY for ``market.{REGION}.summary``.
    interval: str

    def __str__(self) -> str:
        return f"{self.type}.{self.symbol}.{self.interval}"

    @property
    def is_summary(self) -> bool:
        return self.interval == SUMMARY

    @property
    def instrument(self) -> str:
        """``{type}.{symbol}``: what ticks are published for."""
        return f"{self.type}.{self.symbol}"

    @property
    def internal(self) -> str:
        """rt's topic for this one: ``candle:...`` or ``summary:<REGION>``."""
        return summary_topic(self.symbol) if self.is_summary else candle_topic(str(self))


def parse_topic(text: str) -> Topic:
    """A client's topic, or InvalidTopic naming what is wrong and the valid values."""
    parts = text.split(".")
    if len(parts) != 3 or not all(parts):
        raise InvalidTopic(
            f"invalid topic {text!r}: expected {{type}}.{{symbol}}.{{interval}} "
            "(e.g. stock.AAPL.1m) or market.{REGION}.summary (e.g. market.US.summary)"
        )
    kind, symbol, interval = parts
    if kind not in TYPES:
        raise InvalidTopic(
            f"invalid topic {text!r}: unknown type {kind!r}; valid types: {', '.join(TYPES)}"
        )
    if not SYMBOL.fullmatch(symbol):
        raise InvalidTopic(
            f"invalid topic {text!r}: a symbol is 1-32 characters of A-Z a-z 0-9 _ -"
        )
    if interval == SUMMARY:
        if kind != "market":
            raise InvalidTopic(
                f"invalid topic {text!r}: summary is only for market.{{REGION}}.summary"
            )
    elif interval not in INTERVALS:
        raise InvalidTopic(
            f"invalid topic {text!r}: unknown interval {interval!r}; valid intervals: "
            f"{', '.join(INTERVALS)}, or summary for market.{{REGION}}.summary"
        )
    return Topic(kind, symbol, interval)


def client_topic(internal: str) -> str:
    """The client's name of rt's topic ``internal`` (the inverse of ``Topic.internal``)."""
    if internal.startswith(SUMMARY_PREFIX):
        return f"market.{internal[len(SUMMARY_PREFIX) :]}.{SUMMARY}"
    return internal[len(CANDLE_PREFIX) :]
