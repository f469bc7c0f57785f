"""The ticket desk: validates bets, checks them against the live odds, relays them to MTS.

A ticket is ``{ticketId, selections: [{eventId, marketId, outcomeId, odds}], stake}``. The desk
checks each selection against the event's current state in the engine (market active, odds
equal to the current odds within ``ODDS_TOLERANCE``), records the position (epoch, seq) it
decided against, and either rejects at once or forwards the ticket to an MTS adapter. The
result is published on the user's private stream ``user:<id>``, which has the delivery
contract of every stream: all of the user's connections get it, and a user who was offline
gets it on reconnecting. A ticketId is answered once per user: submitting it again returns
the first submission's receipt and never yields a second result.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import trio
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from actors import Actor, ActorSystem, AskFailed, AskTimeout, MailboxClosed, MailboxFull
from rt.dialects.base import ProtocolError
from rt.engine import Engine
from rt.model import Json
from rt.topics import event_topic, user_topic

log = logging.getLogger(__name__)

#: Odds are quoted to 2 decimals; a ticket's odds must equal the current odds to within this.
ODDS_TOLERANCE = 0.005
INVALID_TICKET = "INVALID_TICKET"
DESK_PATH = "dialects/uof/tickets"


class Selection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eventId: StrictStr = Field(min_length=1, max_length=64)
    marketId: int | StrictStr
    outcomeId: int | StrictStr
    odds: float = Field(gt=1.0)

    @field_validator("odds")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("odds must be a finite number")
        return value


class Ticket(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ticketId: StrictStr = Field(min_length=1, max_length=128)
    selections: list[Selection] = Field(min_length=1, max_length=20)
    stake: float = Field(gt=0)

    @field_validator("stake")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("stake must be a finite number")
        return value


def parse_ticket(raw: Json) -> Ticket:
    """A Ticket, or a ProtocolError (INVALID_TICKET) naming every problem."""
    try:
        return Ticket.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'ticket'}: {e['msg']}" for e in exc.errors()
        )
        raise ProtocolError(INVALID_TICKET, f"invalid ticket: {problems}") from None


@dataclass(frozen=True, slots=True)
class Decision:
    accepted: bool
    reason: str | None = None
    details: dict[str, Json] = field(default_factory=dict)


class MtsAdapter(Protocol):
    """Where accepted-by-the-desk tickets go for the final decision (a real MTS, or a sim)."""

    async def submit(self, ticket: Ticket, *, user_id: int | str) -> Decision: ...


class SimulatedMts:
    """Decides after ``latency_s``: rejects stakes above ``max_stake``, accepts the rest."""

    def __init__(self, *, latency_s: float = 0.2, max_stake: float = 10_000.0) -> None:
        self.latency_s = latency_s
        self.max_stake = max_stake

    async def submit(self, ticket: Ticket, *, user_id: int | str) -> Decision:
        await trio.sleep(self.latency_s)
        if ticket.stake > self.max_stake:
            return Decision(
                False,
                "stake_limit",
                {"stake": ticket.stake, "maxStake": self.max_stake},
            )
        return Decision(True)


class DeskClient:
    """How connections and HTTP reach the desk: by its path, whichever incarnation is live."""

    def __init__(self, system: ActorSystem, path: str = DESK_PATH) -> None:
        self.system = system
        self.path = path

    async def submit(self, user_id: int | str, raw: Json) -> dict[str, Json] | ProtocolError:
        """Submit a ticket for ``user_id``: the receipt, or a ProtocolError for a bad ticket."""
        try:
            ticket = parse_ticket(raw)
        except ProtocolError as exc:
            return exc
        desk = self.system.lookup(self.path)
        if desk is None:
            return ProtocolError("SERVICE_UNAVAILABLE", "the ticket desk is restarting; retry")
        try:
            answer: dict[str, Json] = await desk.ask(SubmitTicket(user_id, ticket))
        except (AskFailed, AskTimeout, MailboxClosed, MailboxFull):
            # The desk crashed, stopped or is swamped while we asked: the client's
            # connection must not fail for it. Resubmitting the same ticketId is safe.
            return ProtocolError("SERVICE_UNAVAILABLE", "the ticket desk did not answer; retry")
        return answer


@dataclass(frozen=True, slots=True)
class SubmitTicket:
    user_id: int | str
    ticket: Ticket


class _Record:
    __slots__ = ("result", "ticket_id")

    def __init__(self, ticket_id: str) -> None:
        self.ticket_id = ticket_id
        self.result: dict[str, Json] | None = None  # None while pending


class TicketDesk(Actor):
    """One desk per server. Tickets are decided concurrently in the desk's own nursery."""

    kind: ClassVar[str] = "desk"

    def __init__(
        self,
        engine: Engine,
        publish: Any,
        mts: MtsAdapter,
        *,
        remember: int = 100_000,
    ) -> None:
        self.engine = engine
        self._publish = publish  # async (topic, data, kind=...) -> Update: Hub.publish
        self.mts = mts
        self.remember = remember
        self._tickets: OrderedDict[tuple[str, str], _Record] = OrderedDict()
        self._nursery: trio.Nursery | None = None
        self.accepted = 0
        self.rejected = 0

    def describe(self) -> dict[str, Any]:
        pending = sum(1 for r in self._tickets.values() if r.result is None)
        return {
            "tickets": len(self._tickets),
            "pending": pending,
            "accepted": self.accepted,
            "rejected": self.rejected,
        }

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await super().run()
            nursery.cancel_scope.cancel()

    async def receive(self, message: Any) -> Any:
        if type(message) is not SubmitTicket:
            return await super().receive(message)
        user_id, ticket = message.user_id, message.ticket
        key = (str(user_id), ticket.ticketId)
        record = self._tickets.get(key)
        if record is not None:
            receipt: dict[str, Json] = {"ticketId": ticket.ticketId, "duplicate": True}
            if record.result is None:
                receipt["status"] = "pending"
            else:
                receipt.update(record.result)
            return receipt
        record = _Record(ticket.ticketId)
        self._tickets[key] = record
        while len(self._tickets) > self.remember:
            self._tickets.popitem(last=False)
        assert self._nursery is not None
        self._nursery.start_soon(self._decide, user_id, ticket, record)
        return {"ticketId": ticket.ticketId, "status": "pending", "duplicate": False}

    async def _decide(self, user_id: int | str, ticket: Ticket, record: _Record) -> None:
        positions, refusal = await self._check_odds(ticket)
        if refusal is not None:
            decision = refusal
        else:
            decision = await self.mts.submit(ticket, user_id=user_id)
        details: dict[str, Json] = {
            "stake": ticket.stake,
            "selections": [
                {**s.model_dump(), "position": positions.get(s.eventId)} for s in ticket.selections
            ],
            **decision.details,
        }
        if decision.accepted:
            details["potentialPayout"] = round(
                ticket.stake * math.prod(s.odds for s in ticket.selections), 2
            )
        result: dict[str, Json] = {
            "ticketId": ticket.ticketId,
            "status": "accepted" if decision.accepted else "rejected",
            "reason": decision.reason,
            "details": details,
        }
        record.result = result
        if decision.accepted:
            self.accepted += 1
        else:
            self.rejected += 1
        await self._publish(user_topic(user_id), result, kind="event")

    async def _check_odds(
        self, ticket: Ticket
    ) -> tuple[dict[str, dict[str, Json]], Decision | None]:
        """Each event's position, and a rejection if any selection is not live at its odds."""
        positions: dict[str, dict[str, Json]] = {}
        for selection in ticket.selections:
            snapshot = await self.engine.snapshot(event_topic(selection.eventId))
            position: dict[str, Json] = {"epoch": snapshot.epoch, "seq": snapshot.seq}
            positions[selection.eventId] = position
            where = {
                "eventId": selection.eventId,
                "marketId": selection.marketId,
                "outcomeId": selection.outcomeId,
                **position,
            }
            markets = snapshot.state.get("markets") or {}
            market = markets.get(str(selection.marketId))
            if not isinstance(market, dict):
                return positions, Decision(False, "market_unknown", where)
            if market.get("status") != "active":
                status = market.get("status")
                return positions, Decision(False, f"market_{status}", where)
            current = (market.get("outcomes") or {}).get(str(selection.outcomeId))
            if not isinstance(current, (int, float)):
                return positions, Decision(False, "outcome_unknown", where)
            if abs(current - selection.odds) > ODDS_TOLERANCE:
                return positions, Decision(
                    False,
                    "odds_changed",
                    {
                        **where,
                        "requestedOdds": selection.odds,
                        "currentOdds": current,
                        "message": f"odds changed at seq {snapshot.seq}: "
                        f"{selection.odds} requested, {current} now",
                    },
                )
        return positions, None
