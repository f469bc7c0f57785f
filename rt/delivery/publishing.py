"""Publishing from outside the server: one batch shape, one way to validate it, one publish.

``POST /admin/publish`` and the publisher WebSocket ``/ws/publish`` (rt/ws/publisher.py) both
take a batch of updates, each ``{"marketId": ..., "payload": {...}}`` (a KMarket market id and
an RFC 7396 merge patch on its state) or a tick ``{"symbol", "type", "price", "volume",
"ts"}`` (one trade of an instrument, for the topics dialect's candles), and both hand it to
`publish_batch`, which publishes the batch through the hub in one call to the engine.
docs/publishing.md is the reference.

Validation is all-or-nothing: a batch is checked whole before anything is published, so a
producer that gets an error knows that none of its updates went out. Every problem names where
it is (``updates[3].marketId: ...``).

Only market ids and ticks are accepted, not raw topics: a raw topic would let an admin tool
write into users' private streams or the health probe's topic, whose messages the dialects encode in
shapes that a merge patch from outside would not respect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Protocol, TypedDict

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from rt.jsontext import encodable, show
from rt.model import Json, Update, UpdateKind
from rt.topics import INSTRUMENT_TYPES, market_id, market_topic, parse_market_id, tick_topic

__all__ = [
    "MAX_BATCH_UPDATES",
    "PublishBatch",
    "PublishInvalid",
    "PublishResult",
    "PublishTick",
    "PublishUpdate",
    "Publisher",
    "parse_batch",
    "parse_batch_json",
    "parse_update",
    "publish_batch",
]

#: The most updates one batch may hold (one HTTP request, one WebSocket frame). Large enough
#: to amortise a request over many updates, small enough that one batch never holds the
#: event loop for long: publishing 1,000 updates takes a few milliseconds.
MAX_BATCH_UPDATES = 1000

#: How many problems an error message lists before it says "and N more".
MAX_PROBLEMS_SHOWN = 5


class PublishInvalid(ValueError):
    """A batch (or one update) that cannot be published; the message says where and why."""


def _canonical_market(value: object) -> str:
    try:
        return parse_market_id(value, field="marketId")
    except ValueError as exc:
        raise PydanticCustomError("market_id", str(exc)) from None


def _merge_patch(value: object) -> dict[str, Json]:
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "merge_patch",
            "expected payload to be a JSON object (an RFC 7396 merge patch), got {got}",
            {"got": show(value)},
        )
    _check_sendable(value)
    return value


def _check_sendable(value: Json) -> None:
    # A publish is acknowledged only if every dialect can send it. JSON has no NaN or
    # Infinity, but Python's parsers accept them (and 1e999 is inf); a lone surrogate
    # (``"\\ud800"``) parses into a string with no UTF-8 encoding. Either would be stored,
    # acknowledged and then fail in every room's encoder: refused here, at the edge.
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError(
                "finite_number",
                "expected payload to hold only finite numbers, got {got}",
                {"got": repr(value)},
            )
    elif isinstance(value, str):
        if not encodable(value):
            raise PydanticCustomError(
                "unencodable_text",
                "expected payload to hold only text with a UTF-8 encoding, got {got} "
                "(a lone UTF-16 surrogate)",
                {"got": show(value)},
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_sendable(key)
            _check_sendable(item)
    elif isinstance(value, list):
        for item in value:
            _check_sendable(item)


MarketId = Annotated[
    str,
    BeforeValidator(_canonical_market),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[A-Za-z0-9_.:\\-]{1,64}$"},
            ],
            "description": "a KMarket market id: a number, or a name",
        }
    ),
]

MergePatch = Annotated[
    dict[str, Any],
    BeforeValidator(_merge_patch),
    Field(description="an RFC 7396 merge patch on the market's state"),
]


class PublishUpdate(BaseModel):
    """One update: a merge patch on one market. ``marketId`` is held canonical (a string)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    marketId: MarketId
    payload: MergePatch

    @property
    def topic(self) -> str:
        return market_topic(self.marketId)


FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]


class PublishTick(BaseModel):
    """One trade of an instrument: the topics dialect builds candles from these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,32}$")]
    type: Literal[INSTRUMENT_TYPES]  # type: ignore[valid-type]
    price: Annotated[FiniteNumber, Field(gt=0)]
    volume: Annotated[FiniteNumber, Field(ge=0)]
    #: When it traded: ms since the epoch.
    ts: Annotated[int, Field(ge=0)]
    #: The region whose summary counts it (market.{REGION}.summary); US when absent.
    region: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,32}$")] | None = None

    @property
    def topic(self) -> str:
        return tick_topic(f"{self.type}.{self.symbol}")


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "tick" if "symbol" in value else "market"
    return "tick" if isinstance(value, PublishTick) else "market"


AnyUpdate = Annotated[
    Annotated[PublishUpdate, Tag("market")] | Annotated[PublishTick, Tag("tick")],
    Discriminator(_kind),
]


def _bounded(value: object) -> object:
    # Checked before the items are, so that an oversized batch costs nothing to refuse.
    if isinstance(value, list) and not 1 <= len(value) <= MAX_BATCH_UPDATES:
        raise PydanticCustomError(
            "batch_size",
            "a batch holds 1 to {limit} updates, got {got}",
            {"limit": MAX_BATCH_UPDATES, "got": len(value)},
        )
    return value


class PublishBatch(BaseModel):
    """Updates to publish in this order; at most MAX_BATCH_UPDATES."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    updates: Annotated[
        list[AnyUpdate],
        BeforeValidator(_bounded),
        Field(min_length=1, max_length=MAX_BATCH_UPDATES),
    ]


class Publisher(Protocol):
    """What publish_batch publishes through: the server's Hub (or a stand-in in tests)."""

    async def publish_many(self, items: Sequence[tuple[str, Json, UpdateKind]]) -> list[Update]: ...


class PublishResult(TypedDict, total=False):
    """Where one published update landed: its market (as on the wire) or its tick's symbol
    and type, its seq and ts (ms)."""

    marketId: int | str
    symbol: str
    type: str
    seq: int
    ts: int


def describe(error: ValidationError) -> str:
    """One line naming each problem and where it is: ``updates[2].payload: expected ...``."""
    problems = []
    for item in error.errors(include_url=False):
        # A tag names which kind of update failed; the message says so without it.
        loc = [p for p in item["loc"] if p not in ("market", "tick")]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        message = item["msg"]
        if item["type"] == "missing":
            message = "this field is required"
        elif item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "model_type":
            message = f"expected a JSON object, got {show(item['input'])}"
        elif item["type"] == "list_type":
            message = f"expected a list, got {show(item['input'])}"
        elif item["type"] == "json_invalid":
            message = f"the body is not valid JSON ({item['ctx']['error']})"
        problems.append(f"{where.lstrip('.')}: {message}" if where else message)
    shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
    hidden = len(problems) - MAX_PROBLEMS_SHOWN
    return f"{shown}; and {hidden} more" if hidden > 0 else shown


def parse_batch(value: object) -> PublishBatch:
    """Validate a decoded batch ``{"updates": [...]}``; raises PublishInvalid."""
    try:
        return PublishBatch.model_validate(value)
    except ValidationError as exc:
        raise PublishInvalid(describe(exc)) from None


def parse_batch_json(body: bytes | str) -> PublishBatch:
    """Validate a batch as JSON text (an HTTP body); raises PublishInvalid."""
    try:
        return PublishBatch.model_validate_json(body)
    except ValidationError as exc:
        raise PublishInvalid(describe(exc)) from None


def parse_update(value: object) -> PublishUpdate:
    """Validate one decoded update ``{"marketId", "payload"}``; raises PublishInvalid."""
    try:
        return PublishUpdate.model_validate(value)
    except ValidationError as exc:
        raise PublishInvalid(describe(exc)) from None


async def publish_batch(
    hub: Publisher, updates: Sequence[PublishUpdate | PublishTick]
) -> list[PublishResult]:
    """Publish validated ``updates`` in order, in one call to the engine: on Redis one
    round trip (and one script, all or nothing) for the whole batch, and each room gets its
    updates as one run, written to a client that keeps up in one go.

    The results are in the same order. Updates of one market get consecutive seqs.
    """
    items: list[tuple[str, Json, UpdateKind]] = [
        (u.topic, u.model_dump(exclude_none=True), "event")
        if isinstance(u, PublishTick)
        else (u.topic, u.payload, "patch")
        for u in updates
    ]
    results: list[PublishResult] = []
    for update, landed in zip(updates, await hub.publish_many(items), strict=True):
        if isinstance(update, PublishTick):
            results.append(
                {"symbol": update.symbol, "type": update.type, "seq": landed.seq, "ts": landed.ts}
            )
        else:
            results.append(
                {"marketId": market_id(update.marketId), "seq": landed.seq, "ts": landed.ts}
            )
    return results
