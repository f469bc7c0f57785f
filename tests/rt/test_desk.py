"""The ticket desk on the virtual clock: validation, odds checks, MTS, idempotency."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from rt.dialects.uof.desk import ProtocolError, Ticket, parse_ticket
from tests.rt.harness import Core, open_core

EVENT = "event:sr:match:1"


def ticket(
    ticket_id: str = "t1", odds: float = 1.9, stake: float = 10.0, **sel: Any
) -> dict[str, Any]:
    selection = {"eventId": "sr:match:1", "marketId": 1, "outcomeId": "1", "odds": odds, **sel}
    return {"ticketId": ticket_id, "selections": [selection], "stake": stake}


async def live_market(core: Core, status: str = "active", odds: float = 1.9) -> int:
    update = await core.hub.publish(
        EVENT,
        {"eventId": "sr:match:1", "markets": {"1": {"status": status, "outcomes": {"1": odds}}}},
    )
    return update.seq


async def results(core: Core, user: str = "u1") -> list[dict[str, Any]]:
    return [u.data for u in await core.engine.updates(f"user:{user}", since_seq=0, limit=100)]


async def settle(core: Core) -> None:
    await trio.sleep(1.0)  # the simulated MTS latency is 0.2 s; the clock is virtual


async def test_an_acceptable_ticket_is_accepted_after_mts_and_names_its_position(
    autojump_clock: Any,
) -> None:
    async with open_core() as core:
        seq = await live_market(core)
        start = trio.current_time()
        receipt = await core.desk.submit("u1", ticket())
        assert receipt == {"ticketId": "t1", "status": "pending", "duplicate": False}
        await settle(core)
        (result,) = await results(core)
        assert result["status"] == "accepted" and result["reason"] is None
        epoch, _ = core.engine.position(EVENT)
        assert result["details"]["selections"][0]["position"] == {"epoch": epoch, "seq": seq}
        assert result["details"]["potentialPayout"] == 19.0
        assert trio.current_time() - start >= 0.2


async def test_changed_odds_are_rejected_with_the_seq_they_changed_at(autojump_clock: Any) -> None:
    async with open_core() as core:
        await live_market(core, odds=1.9)
        seq = await live_market(core, odds=2.05)
        await core.desk.submit("u1", ticket(odds=1.9))
        await settle(core)
        (result,) = await results(core)
        assert (result["status"], result["reason"]) == ("rejected", "odds_changed")
        details = result["details"]
        assert (details["requestedOdds"], details["currentOdds"], details["seq"]) == (
            1.9,
            2.05,
            seq,
        )
        assert details["message"] == f"odds changed at seq {seq}: 1.9 requested, 2.05 now"


async def test_odds_within_the_tolerance_are_equal(autojump_clock: Any) -> None:
    async with open_core() as core:
        await live_market(core, odds=1.9)
        await core.desk.submit("u1", ticket(odds=1.904))
        await settle(core)
        assert (await results(core))[0]["status"] == "accepted"


@pytest.mark.parametrize(
    ("status", "reason"), [("suspended", "market_suspended"), ("settled", "market_settled")]
)
async def test_a_market_not_active_is_rejected(
    autojump_clock: Any, status: str, reason: str
) -> None:
    async with open_core() as core:
        await live_market(core, status=status)
        await core.desk.submit("u1", ticket())
        await settle(core)
        assert [(r["status"], r["reason"]) for r in await results(core)] == [("rejected", reason)]


async def test_unknown_markets_and_outcomes_are_rejected(autojump_clock: Any) -> None:
    async with open_core() as core:
        await live_market(core)
        await core.desk.submit("u1", ticket("a", marketId=9))
        await core.desk.submit("u1", ticket("b", outcomeId="7"))
        await settle(core)
        assert sorted(r["reason"] for r in await results(core)) == [
            "market_unknown",
            "outcome_unknown",
        ]


async def test_mts_rejects_stakes_over_its_limit(autojump_clock: Any) -> None:
    async with open_core(mts_max_stake=100.0) as core:
        await live_market(core)
        await core.desk.submit("u1", ticket(stake=500))
        await settle(core)
        (result,) = await results(core)
        assert (result["reason"], result["details"]["maxStake"]) == ("stake_limit", 100.0)


async def test_the_same_ticket_id_never_yields_two_results(autojump_clock: Any) -> None:
    async with open_core() as core:
        await live_market(core)
        first = await core.desk.submit("u1", ticket())
        pending_again = await core.desk.submit("u1", ticket())
        assert (first["duplicate"], pending_again) == (
            False,
            {"ticketId": "t1", "duplicate": True, "status": "pending"},
        )
        await settle(core)
        decided_again = await core.desk.submit("u1", ticket(stake=99))
        (result,) = await results(core)
        assert decided_again == {**result, "duplicate": True}
        # Another user's ticket with the same id is another ticket.
        assert (await core.desk.submit("u2", ticket()))["duplicate"] is False


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({}, "ticketId: Field required"),
        ({**ticket(), "stake": -1}, "stake: Input should be greater than 0"),
        ({**ticket(), "selections": []}, "selections: List should have at least 1 item"),
        (ticket(odds=0.5), "selections.0.odds: Input should be greater than 1"),
        ({**ticket(), "extra": 1}, "extra: Extra inputs are not permitted"),
        ("x", "ticket: Input should be a valid dictionary"),
    ],
)
def test_invalid_tickets_name_the_problem(raw: Any, problem: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_ticket(raw)
    assert caught.value.code == "INVALID_TICKET"
    assert problem in caught.value.message


def test_a_valid_ticket_parses() -> None:
    assert isinstance(parse_ticket(ticket()), Ticket)


async def test_a_desk_that_does_not_answer_is_unavailable_not_a_crash(autojump_clock: Any) -> None:
    # The connection that submitted must not fail because the desk crashed or stalled.
    async with open_core() as core:
        await live_market(core)
        crash = core.system.faults.arm("crash", actor="dialects/uof/tickets")
        answer = await core.desk.submit("u1", ticket("t1"))
        assert isinstance(answer, ProtocolError)
        assert (answer.code, answer.message) == (
            "SERVICE_UNAVAILABLE",
            "the ticket desk did not answer; retry",
        )
        core.system.faults.disarm(crash.id)
        stall = core.system.faults.arm("stall", actor="dialects/uof/tickets")
        with trio.fail_after(60):
            answer = await core.desk.submit("u1", ticket("t2"))
        assert isinstance(answer, ProtocolError) and answer.code == "SERVICE_UNAVAILABLE"
        core.system.faults.disarm(stall.id)
