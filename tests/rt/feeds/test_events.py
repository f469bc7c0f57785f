"""The event topic model: one market per patch, first and last updates, snapshots."""

from __future__ import annotations

from rt.feeds.events import EventView
from rt.feeds.messages import EventState, MarketState
from rt.mergepatch import apply

ODDS = {"1": 1.95, "2": 3.4, "3": 4.2}


def published(view: EventView, *patches: dict | None) -> dict:
    """Apply patches to the view and to a topic state, as a feed and the engine do."""
    state: dict = view.state() if view.status is not None else {}
    for patch in patches:
        assert patch is not None
        assert len(patch["markets"]) == 1  # the rule: one market per update
        state = apply(state, patch)
        view.apply(patch)
    assert view.state() == state
    return state


def test_the_first_update_names_the_event_and_makes_it_live() -> None:
    view = EventView("sr:match:1")
    first = view.odds("1", ODDS)
    assert first == {
        "eventId": "sr:match:1",
        "status": "live",
        "markets": {"1": {"status": "active", "outcomes": ODDS}},
    }
    published(view, first)
    assert view.odds("2", ODDS) == {"markets": {"2": {"status": "active", "outcomes": ODDS}}}


def test_odds_carry_every_outcome_and_unchanged_odds_publish_nothing() -> None:
    view = EventView(
        "e",
        {
            "eventId": "e",
            "status": "live",
            "markets": {"1": {"status": "active", "outcomes": ODDS}},
        },
    )
    assert view.odds("1", {"2": 3.5}) == {
        "markets": {"1": {"status": "active", "outcomes": {**ODDS, "2": 3.5}}}
    }
    assert view.odds("1", {"2": 3.4}) is None


def test_suspend_and_reopen() -> None:
    view = EventView("e")
    published(view, view.odds("1", ODDS))
    assert view.suspend("1") == {"markets": {"1": {"status": "suspended"}}}
    published(view, view.suspend("1"))
    assert view.suspend("1") is None
    # The same odds reopen a suspended market.
    assert view.odds("1", ODDS) == {"markets": {"1": {"status": "active", "outcomes": ODDS}}}


def test_settling_the_last_market_ends_the_event() -> None:
    view = EventView("e")
    state = published(view, view.odds("1", ODDS), view.odds("2", ODDS))
    first = view.settle("1", {"1": "win", "2": "lose", "3": "lose"})
    assert first == {
        "markets": {"1": {"status": "settled", "result": {"1": "win", "2": "lose", "3": "lose"}}}
    }
    published(view, first)
    last = view.settle("2", {"1": "lose", "2": "win", "3": "lose"})
    assert last is not None and last["status"] == "ended"
    state = published(view, last)
    assert state["status"] == "ended" and view.ended
    assert view.settle("2", {"1": "lose", "2": "win", "3": "lose"}) is None


def test_a_snapshot_makes_each_market_what_the_upstream_says() -> None:
    view = EventView("e")
    published(
        view, view.odds("1", ODDS), view.odds("2", ODDS), view.odds("3", ODDS), view.odds("4", ODDS)
    )
    published(view, *(view.suspend(m) for m in "1234"))  # the producer went down
    upstream = EventState(
        "e",
        "live",
        {
            "5": MarketState("settled", {"1": 2.0}, {"1": "win"}),
            "1": MarketState("active", {"1": 2.0, "2": 3.0}),  # outcome 3 is gone
            "2": MarketState("suspended", ODDS),  # as rt has it: nothing to publish
            "3": MarketState("suspended", {"1": 9.0, "2": 3.4, "3": 4.2}),  # odds moved meanwhile
        },
    )
    patches = view.reconcile(upstream)
    assert patches == [
        {"markets": {"1": {"status": "active", "outcomes": {"1": 2.0, "2": 3.0, "3": None}}}},
        {"markets": {"3": {"status": "suspended", "outcomes": {"1": 9.0, "2": 3.4, "3": 4.2}}}},
        {"markets": {"5": {"status": "settled", "result": {"1": "win"}, "outcomes": {"1": 2.0}}}},
    ]
    state = published(view, *patches)
    assert state["markets"]["1"] == {"status": "active", "outcomes": {"1": 2.0, "2": 3.0}}
    assert state["markets"]["4"] == {"status": "suspended", "outcomes": ODDS}  # not listed: stays
    assert view.reconcile(upstream) == []


def test_a_snapshot_settles_last_so_the_event_ends_with_its_last_market() -> None:
    upstream = EventState(
        "e",
        "ended",
        {
            "1": MarketState("settled", {"1": 2.0}, {"1": "win"}),
            "2": MarketState("settled", {"1": 2.0}, {"1": "lose"}),
        },
    )
    view = EventView("e")
    patches = view.reconcile(upstream)
    assert [p.get("status") for p in patches] == ["live", "ended"]
    assert published(view, *patches)["status"] == "ended"


def test_a_view_loads_from_the_engine_state() -> None:
    state = {
        "eventId": "e",
        "status": "live",
        "markets": {
            "1": {"status": "settled", "outcomes": ODDS, "result": {"1": "win"}},
            "2": {"status": "active", "outcomes": ODDS},
        },
    }
    view = EventView("e", state)
    assert view.state() == state
    assert view.active_markets(["1", "2", "3"]) == ["2"]
