"""What one connection may send, the same in every dialect, on Trio's virtual clock.

An inbound rate (50 messages/s, burst 100) and a budget of invalid messages (10 per 60 s),
past which the connection closes with 4429; a cap on subscriptions (128) and on new topics
a connection may open per minute (128), which refuse one join with the dialect's error and
keep the connection; and every per-topic entry of the Hub released once a room idles out.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from rt.dialects.kmarket import DIALECT as KMARKET
from rt.dialects.uof import DIALECT as UOF
from tests.rt.harness import Core, open_core, receive, send


async def closed(ws: WebSocketConnection) -> tuple[int, str | None, list[dict[str, Any]]]:
    """Read until the server closes: (code, reason, the messages read before)."""
    seen = []
    with trio.fail_after(120):
        while True:
            try:
                seen.append(json.loads(await ws.get_message()))
            except ConnectionClosed as exc:
                assert exc.reason is not None
                return exc.reason.code, exc.reason.reason, seen


async def ping(ws: WebSocketConnection, ts: int) -> None:
    await send(ws, {"type": "ping", "ts": ts})
    assert await receive(ws) == {"type": "pong", "ts": ts}


# -- invalid messages -------------------------------------------------------------------


async def test_the_eleventh_invalid_message_within_a_minute_closes_with_4429(
    autojump_clock: Any,
) -> None:
    async with open_core() as core, core.connect() as ws:
        for _ in range(10):
            await ws.send_message("{nope")
            assert (await receive(ws))["code"] == "INVALID_JSON"
            await trio.sleep(5)  # all ten within 50 s
        await ping(ws, 1)  # valid messages do not count
        await ws.send_message('{"type":"ping","ts":NaN}')
        code, reason, seen = await closed(ws)
        assert (code, reason) == (4429, "TOO_MANY_INVALID_MESSAGES")
        assert [m["code"] for m in seen] == ["INVALID_JSON"]  # told why, then closed
        assert core.stats.invalid_messages == 11
        assert core.stats.limit_closes == 1


async def test_the_invalid_budget_is_a_sliding_minute(autojump_clock: Any) -> None:
    async with open_core() as core, core.connect(memory=True) as ws:
        for _ in range(5):  # 10 every 61 s, for five minutes: never more than 10 per minute
            for _ in range(10):
                await send(ws, {"type": "nope"})
                assert (await receive(ws))["code"] == "UNKNOWN_TYPE"
            await trio.sleep(61)
        await ping(ws, 2)
        assert core.stats.limit_closes == 0


@pytest.mark.parametrize("dialect", [KMARKET, UOF], ids=lambda d: d.name)
async def test_every_dialect_has_the_budget(autojump_clock: Any, dialect: Any) -> None:
    async with open_core() as core, core.connect(dialect=dialect) as ws:
        for _ in range(11):
            await ws.send_message("[" * 40_000)
        code, reason, seen = await closed(ws)
        assert (code, reason) == (4429, "TOO_MANY_INVALID_MESSAGES")
        errors = [m for m in seen if m["type"] == "error"]
        assert len(errors) == 11  # each answered in the dialect's own form
        shape = json.loads(dialect.encode_error("INVALID_JSON", "m"))
        assert all(e.keys() == shape.keys() for e in errors)


# -- the inbound rate -------------------------------------------------------------------


async def test_a_burst_of_100_passes_and_the_101st_message_closes_with_4429(
    autojump_clock: Any,
) -> None:
    # A socket pair: what was queued when the limit struck is still written (an in-memory
    # stream loses a write cut short by the close; a socket keeps it in the Wire).
    async with open_core() as core, core.connect() as ws:
        for i in range(101):  # at one instant of the virtual clock
            await send(ws, {"type": "ping", "ts": i})
        code, reason, seen = await closed(ws)
        assert (code, reason) == (4429, "RATE_LIMITED")
        assert [m["ts"] for m in seen] == list(range(100))
        assert core.stats.limit_closes == 1


async def test_50_messages_a_second_go_on_for_ever(autojump_clock: Any) -> None:
    async with open_core() as core, core.connect(memory=True) as ws:
        for i in range(2000):  # 40 s at 50/s, and the burst never used
            await ping(ws, i)
            await trio.sleep(0.02)
        assert core.stats.limit_closes == 0


# -- subscriptions and new topics --------------------------------------------------------


async def test_128_subscriptions_and_an_error_for_the_next(autojump_clock: Any) -> None:
    async with open_core() as core:
        for i in range(128):
            await core.publish(i, {"n": i})  # topics with data: not "new", not capped
        async with core.connect(memory=True) as ws:
            await send(ws, {"type": "subscribe", "markets": list(range(128))})
            assert (await receive(ws))["subscribed"] == list(range(128))
            for _ in range(128):
                assert (await receive(ws))["type"] == "snapshot"
            await send(ws, {"type": "subscribe", "markets": [500]})
            error = await receive(ws)
            assert error["code"] == "TOO_MANY_MARKETS"
            assert error["message"].startswith("at most 128 markets per connection")
            await ping(ws, 1)  # the connection stays


async def test_new_topics_are_capped_per_minute_and_the_connection_stays(
    autojump_clock: Any,
) -> None:
    async with open_core() as core, core.connect(memory=True) as ws:
        cap = core.settings.max_new_topics_per_minute
        assert cap == 128  # as many as a connection's subscriptions
        for i in range(cap):  # fresh names, each subscribed and dropped at once
            await send(ws, {"type": "subscribe", "markets": [f"made-up-{i}"]})
            assert (await receive(ws))["type"] == "ack"
            assert (await receive(ws))["type"] == "snapshot"
            await send(ws, {"type": "unsubscribe", "markets": [f"made-up-{i}"]})
            assert (await receive(ws))["type"] == "ack"
            await trio.sleep(0.25)  # all within 32 s
        refused = f"made-up-{cap}"
        await send(ws, {"type": "subscribe", "markets": [refused]})
        assert (await receive(ws))["type"] == "ack"
        error = await receive(ws)
        assert error["code"] == "TOO_MANY_NEW_TOPICS"
        assert f"{refused} was not subscribed" in error["message"]
        assert core.system.lookup(f"rooms/market:{refused}") is None
        assert core.stats.refused_joins == 1
        # A topic with data is not new: still allowed; and the refused one is not held.
        await core.publish(1001, {"p": 1})
        await send(ws, {"type": "subscribe", "markets": [1001, refused]})
        ack = await receive(ws)
        assert ack["subscribed"] == [1001, refused]  # asked again: it was not held
        assert (await receive(ws))["marketId"] == 1001
        assert (await receive(ws))["code"] == "TOO_MANY_NEW_TOPICS"
        # A minute after the first, the window has room again.
        await trio.sleep(31)
        await send(ws, {"type": "subscribe", "markets": [refused]})
        assert (await receive(ws))["type"] == "ack"
        assert (await receive(ws))["type"] == "snapshot"
        await ping(ws, 1)


async def test_rooms_and_hub_entries_are_released_when_rooms_idle_out(autojump_clock: Any) -> None:
    async with open_core(max_new_topics_per_minute=1000) as core:
        async with core.connect(memory=True) as ws:
            for i in range(200):
                name = f"churn-{i}"
                await send(ws, {"type": "subscribe", "markets": [name]})
                assert (await receive(ws))["type"] == "ack"
                assert (await receive(ws))["type"] == "snapshot"
                await send(ws, {"type": "unsubscribe", "markets": [name]})
                assert (await receive(ws))["type"] == "ack"
                await trio.sleep(0.1)
            assert core.hub.topics_indexed() > 0
            await trio.sleep(core.settings.room_idle_s + 1)
            assert rooms(core) == []
            assert core.hub.topics_indexed() == 0
            # And a topic whose room idled out works as new.
            await send(ws, {"type": "subscribe", "markets": ["churn-0"]})
            assert (await receive(ws))["type"] == "ack"
            assert (await receive(ws))["type"] == "snapshot"
            await core.hub.publish("market:churn-0", {"back": True})
            assert (await receive(ws))["payload"] == {"back": True}


def rooms(core: Core) -> list[str]:
    return [p for p in core.system.registry.paths() if p.startswith("rooms/")]


# -- logs ------------------------------------------------------------------------------


async def test_bad_input_logs_one_line_each_rate_limited_never_a_traceback(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    hostile = ["[" * 30_000, '{"type":"ping","ts":NaN}', '{"type":"ping","ts":"\\ud800"}']
    limits = {"max_invalid_messages": 1000, "inbound_burst_messages": 1000}
    async with open_core(**limits) as core, core.connect(memory=True) as ws:
        for i in range(300):
            await ws.send_message(hostile[i % 3])
            assert (await receive(ws))["code"] == "INVALID_JSON"
        await ping(ws, 1)
    assert all(r.exc_info is None for r in caplog.records)
    refused = [r for r in caplog.records if "refused a message" in r.getMessage()]
    assert len(refused) == 20  # 20 per 10 s, for the whole server
    assert all("\n" not in r.getMessage() for r in refused)


async def test_limit_closes_share_the_log_budget(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rt.ws.connection")
    async with open_core() as core:
        for _ in range(30):  # 30 connections, each closed for its 11th invalid message
            async with core.connect(memory=True) as ws:
                for _ in range(11):
                    await ws.send_message("{nope")
                assert (await closed(ws))[:2] == (4429, "TOO_MANY_INVALID_MESSAGES")
        assert core.stats.limit_closes == 30
        lines = [
            r.getMessage()
            for r in caplog.records
            if r.name == "rt.ws.connection" and ": closed " not in r.getMessage()  # bad input only
        ]
        assert len(lines) == 20  # 330 refusals and 30 closes: 20 lines
        await trio.sleep(10)  # the next window: its first line says how many were held back
        async with core.connect(memory=True) as ws:
            await ws.send_message("{nope")
            await receive(ws)
        lines = [
            r.getMessage()
            for r in caplog.records
            if r.name == "rt.ws.connection" and ": closed " not in r.getMessage()  # bad input only
        ]
        assert len(lines) == 21
        assert lines[-1].endswith("(340 more not logged)"), lines[-1]
