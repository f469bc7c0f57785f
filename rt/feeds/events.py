"""The event topic model: what feeds publish about a sporting event (sans-IO).

One topic per event, ``event:<eventId>``, whose state is

    {"eventId": "sr:match:1", "status": "live" | "ended",
     "markets": {"1": {"status": "active" | "suspended" | "settled",
                       "outcomes": {"1": 1.95, "2": 3.40, "3": 4.20},
                       "result": {"1": "win", "2": "lose", "3": "lose"}}}}

Every update a feed publishes is an RFC 7396 merge patch that touches exactly one market, so
a client dialect turns each update into exactly one client message:

- odds change or reopening: ``{"markets": {m: {"status": "active", "outcomes": {...all...}}}}``
- suspension: ``{"markets": {m: {"status": "suspended"}}}``
- settlement: ``{"markets": {m: {"status": "settled", "result": {...}}}}``

The first update of an event also carries ``"eventId"`` and ``"status": "live"``; the update
that settles the last unsettled market carries ``"status": "ended"``. When a snapshot brings a
suspended or settled market whose odds differ from the topic's, its update carries those
outcomes too, so the topic ends up exactly as the upstream says.

An `EventView` is a feed's copy of one event's state: loaded from the engine, kept current by
applying the feed's own patches after publishing them. Its methods build the patch for one
change, or return None when the change would change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rt.feeds.messages import EventState, MarketState

__all__ = ["EventView", "MarketView", "Patch"]


#: A merge patch for one event topic.
Patch = dict[str, Any]


@dataclass(slots=True)
class MarketView:
    status: str | None = None
    outcomes: dict[str, float] = field(default_factory=dict)
    result: dict[str, str] | None = None

    def copy(self) -> MarketView:
        result = None if self.result is None else dict(self.result)
        return MarketView(self.status, dict(self.outcomes), result)


def _outcomes_patch(current: Mapping[str, float], wanted: Mapping[str, float]) -> dict[str, Any]:
    """A merge patch turning ``current`` outcomes into ``wanted``: removed ones become null."""
    patch: dict[str, Any] = dict(wanted)
    patch.update({k: None for k in current if k not in wanted})
    return patch


class EventView:
    """One event's state as a feed knows it."""

    __slots__ = ("event_id", "markets", "status")

    def __init__(self, event_id: str, state: Mapping[str, Any] | None = None) -> None:
        self.event_id = event_id
        #: None until the event has been published ("live" or "ended" after).
        self.status: str | None = None
        self.markets: dict[str, MarketView] = {}
        if state:
            self._load(state)

    def _load(self, state: Mapping[str, Any]) -> None:
        status = state.get("status")
        self.status = status if isinstance(status, str) else None
        markets = state.get("markets")
        if not isinstance(markets, dict):
            return
        for market_id, body in markets.items():
            if not isinstance(body, dict):
                continue
            view = MarketView()
            status = body.get("status")
            view.status = status if isinstance(status, str) else None
            outcomes = body.get("outcomes")
            if isinstance(outcomes, dict):
                view.outcomes = {
                    k: float(v)
                    for k, v in outcomes.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                }
            result = body.get("result")
            if isinstance(result, dict):
                view.result = {k: v for k, v in result.items() if isinstance(v, str)}
            self.markets[market_id] = view

    def copy(self) -> EventView:
        view = EventView(self.event_id)
        view.status = self.status
        view.markets = {k: v.copy() for k, v in self.markets.items()}
        return view

    @property
    def ended(self) -> bool:
        return self.status == "ended"

    def market_status(self, market_id: str) -> str | None:
        market = self.markets.get(market_id)
        return None if market is None else market.status

    # -- patches for one change -----------------------------------------------------------

    def odds(self, market_id: str, outcomes: Mapping[str, float]) -> Patch | None:
        """Open the market with these odds (outcomes not named keep theirs): all its outcomes."""
        current = self.markets.get(market_id) or MarketView()
        merged = {**current.outcomes, **outcomes}
        if current.status == "active" and current.outcomes == merged:
            return None
        return self._patch(market_id, {"status": "active", "outcomes": merged})

    def suspend(self, market_id: str) -> Patch | None:
        """Stop the market taking bets, unless it is suspended or settled already."""
        if self.market_status(market_id) in ("suspended", "settled"):
            return None
        return self._patch(market_id, {"status": "suspended"})

    def settle(self, market_id: str, result: Mapping[str, str]) -> Patch | None:
        """Settle the market (again, if the result changed)."""
        current = self.markets.get(market_id)
        if current is not None and current.status == "settled" and current.result == result:
            return None
        return self._patch(market_id, {"status": "settled", "result": dict(result)})

    def restore(self, market_id: str, market: MarketState) -> Patch | None:
        """Make the market exactly what a snapshot says it is."""
        current = self.markets.get(market_id) or MarketView()
        same_odds = current.outcomes == market.outcomes
        body: dict[str, Any] = {"status": market.status}
        if market.status == "active":
            if current.status == "active" and same_odds:
                return None
            body["outcomes"] = _outcomes_patch(current.outcomes, market.outcomes)
            return self._patch(market_id, body)
        if market.status == "suspended":
            if current.status == "suspended" and (same_odds or not market.outcomes):
                return None
        elif current.status == "settled" and current.result == market.result:
            return None
        else:
            body["result"] = dict(market.result or {})
        if market.outcomes and not same_odds:
            body["outcomes"] = _outcomes_patch(current.outcomes, market.outcomes)
        return self._patch(market_id, body)

    def reconcile(self, event: EventState) -> list[Patch]:
        """The patches, one per market, that make this event what the snapshot says.

        Markets still trading come first and settled ones last, so the event ends (with the
        last settlement) only once every market the snapshot lists has its state. Markets the
        snapshot does not list are left as they are. Applies nothing to this view.
        """
        work = self.copy()
        for market_id in event.markets:
            # Known to be coming, so settling an earlier one does not end the event.
            work.markets.setdefault(market_id, MarketView())
        patches: list[Patch] = []
        settled_last = sorted(event.markets.items(), key=lambda kv: kv[1].status == "settled")
        for market_id, market in settled_last:
            patch = work.restore(market_id, market)
            if patch is not None:
                work.apply(patch)
                patches.append(patch)
        return patches

    def _patch(self, market_id: str, body: dict[str, Any]) -> Patch:
        patch: Patch = {}
        if self.status is None:
            patch["eventId"] = self.event_id
            patch["status"] = "live"
        if body["status"] == "settled" and all(
            m.status == "settled" for k, m in self.markets.items() if k != market_id
        ):
            patch["status"] = "ended"
        patch["markets"] = {market_id: body}
        return patch

    # -- keeping the view current ---------------------------------------------------------

    def apply(self, patch: Mapping[str, Any]) -> None:
        """Apply a patch built by this view (after it has been published)."""
        status = patch.get("status")
        if isinstance(status, str):
            self.status = status
        markets = patch.get("markets")
        if not isinstance(markets, dict):
            return
        for market_id, body in markets.items():
            view = self.markets.setdefault(market_id, MarketView())
            if "status" in body:
                view.status = body["status"]
            for outcome, odds in body.get("outcomes", {}).items():
                if odds is None:
                    view.outcomes.pop(outcome, None)
                else:
                    view.outcomes[outcome] = odds
            if "result" in body:
                view.result = dict(body["result"])

    def active_markets(self, among: Iterable[str]) -> list[str]:
        """Which of ``among`` are taking bets."""
        return [m for m in among if self.market_status(m) == "active"]

    def state(self) -> dict[str, Any]:
        """This view as a topic state (for tests and the simulator's comparisons)."""
        markets: dict[str, Any] = {}
        for market_id, market in self.markets.items():
            body: dict[str, Any] = {}
            if market.status is not None:
                body["status"] = market.status
            if market.outcomes:
                body["outcomes"] = dict(market.outcomes)
            if market.result is not None:
                body["result"] = dict(market.result)
            markets[market_id] = body
        state: dict[str, Any] = {"eventId": self.event_id}
        if self.status is not None:
            state["status"] = self.status
        state["markets"] = markets
        return state
