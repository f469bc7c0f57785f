"""The topics rt keeps, each kind parsed and formatted here and nowhere else.

A topic is the unit of ordering: one seq line, one room, one history in the engine. Its name
says what it carries:

- ``market:<id>``: one KMarket market (seed 001); ids are numbers or names.
- ``event:<id>``: one UOF sport event with its markets (seed 000).
- ``user:<id>``: one user's private stream (bet results, order events), for all of that
  user's connections.
- ``system:<name>``: rt's own topics (the operators' probe).
- ``tick:<type>.<symbol>``: one instrument's trades as producers publish them; the topics
  dialect (seed 004) builds candles from them.
- ``candle:<type>.<symbol>.<interval>`` and ``summary:<REGION>``: the topics dialect's
  candles and region summaries.
- ``match:<id>``: one football match's events (predictions, score, odds; seed 002).
- ``all:<subscription type>``: every event of one of seed 002's subscription types (and
  ``all:data_refresh``), for clients that filter on something other than the match.
- ``orderbook:<instrument>``, ``trade:<instrument>``, ``ticker:<instrument>``: the paper
  exchange's market data by channel (seed 003): the book's levels, its public prints, its
  last price.

Dialects turn a topic into what their clients see (a marketId, an eventId, a topic string);
nothing else spells a prefix by hand.
"""

from __future__ import annotations

import re

MARKET_PREFIX = "market:"
EVENT_PREFIX = "event:"
USER_PREFIX = "user:"
SYSTEM_PREFIX = "system:"
TICK_PREFIX = "tick:"
CANDLE_PREFIX = "candle:"
SUMMARY_PREFIX = "summary:"
MATCH_PREFIX = "match:"
ALL_PREFIX = "all:"
#: The trading dialect's market-data channels; each is the prefix of its topics.
TRADING_CHANNELS = ("trade", "orderbook", "ticker")

#: The instrument types a tick may name (and a topics-dialect topic).
INSTRUMENT_TYPES = ("stock", "crypto", "futures", "options", "commodity", "market")

#: What a market id may be when it is a name: 1-64 characters of a safe set.
_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def parse_market_id(value: object, *, field: str = "market id") -> str:
    """The canonical id of a market id as a client sent it (``7``, ``"7"`` and ``"007"``
    are one market; a name stays as it is); ValueError with a message naming ``field``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"expected {field} to be >= 0, got {value}")
        return str(value)
    if isinstance(value, str) and _NAME.fullmatch(value):
        return str(int(value)) if value.isdigit() else value
    from rt.jsontext import show

    raise ValueError(
        f"expected {field} to be a number or a name of 1-64 characters [A-Za-z0-9_.:-], "
        f"got {show(value)}"
    )


def market_id(canonical: str) -> int | str:
    """How a canonical market id is written on the wire: a number when it is one."""
    return int(canonical) if canonical.isdigit() else canonical


def market_topic(canonical: str) -> str:
    return MARKET_PREFIX + canonical


def market_of(topic: str) -> int | str:
    """The wire id of a ``market:`` topic's market."""
    return market_id(topic[len(MARKET_PREFIX) :])


def event_topic(event_id: str) -> str:
    return EVENT_PREFIX + event_id


def event_of(topic: str) -> str:
    return topic[len(EVENT_PREFIX) :]


def user_topic(user_id: int | str) -> str:
    """The topic of a user's private stream (bet results, order events)."""
    return f"{USER_PREFIX}{user_id}"


def is_user_topic(topic: str) -> bool:
    return topic.startswith(USER_PREFIX)


def system_topic(name: str) -> str:
    return SYSTEM_PREFIX + name


def tick_topic(instrument: str) -> str:
    """The topic of one instrument's ticks, ``instrument`` being ``{type}.{symbol}``."""
    return TICK_PREFIX + instrument


def candle_topic(series: str) -> str:
    """The topic of one candle series, ``series`` being ``{type}.{symbol}.{interval}``."""
    return CANDLE_PREFIX + series


def summary_topic(region: str) -> str:
    return SUMMARY_PREFIX + region


def match_topic(match_id: int) -> str:
    return f"{MATCH_PREFIX}{match_id}"


def all_topic(kind: str) -> str:
    """The topic of every event of one kind (a seed-002 subscription type)."""
    return ALL_PREFIX + kind


def channel_topic(channel: str, instrument_id: str) -> str:
    """The topic of one market-data channel (one of TRADING_CHANNELS) of one instrument."""
    return f"{channel}:{instrument_id}"


def channel_of(topic: str) -> tuple[str, str]:
    """(channel, instrument id) of a ``channel_topic``."""
    channel, _, instrument_id = topic.partition(":")
    return channel, instrument_id
