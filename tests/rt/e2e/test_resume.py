"""resume on a new connection: replay from history, or a snapshot that says why not."""

from __future__ import annotations

import pytest

from rt.server import Server

from ._support import FIXED_TS, Message, connect, make_token, odds_update, topic


async def publish_n(server: Server, market: int, n: int) -> None:
    for _ in range(n):
        seq = server.engine.position(topic(market))[1] + 1
        await server.hub.publish(topic(market), {"price": seq, "step": {str(seq % 3): seq}})


async def state_of(server: Server, market: int) -> Message:
    return (await server.engine.snapshot(topic(market))).state


def ack(*markets: int) -> Message:
    return {"type": "ack", "ok": True, "subscribed": list(markets), "resumed": list(markets)}


def replayed(market: int, first: int, last: int) -> list[Message]:
    return [
        odds_update(market, seq, {"price": seq, "step": {str(seq % 3): seq}})
        for seq in range(first, last + 1)
    ]


def resumed(market: int, first: int, last: int, reason: str | None = None) -> Message:
    message: Message = {
        "type": "resumed",
        "marketId": market,
        "recovered": reason is None,
        "fromSeq": first,
        "toSeq": last,
    }
    if reason is not None:
        message["reason"] = reason
    return message


async def test_resume_on_a_new_connection_replays_what_was_missed(server: Server) -> None:
    async with connect(server) as first:
        await first.subscribe(1001)
        await publish_n(server, 1001, 5)
        got = await first.recv_n(5)
        assert got == replayed(1001, 1, 5)
    last_seq = 3  # the client lost 4 and 5 with the connection
    await publish_n(server, 1001, 3)  # while it was away

    async with connect(server) as second:
        await second.send({"type": "resume", "offsets": {"1001": last_seq}})
        assert await second.recv() == ack(1001)
        assert await second.recv_n(5) == replayed(1001, 4, 8)
        assert await second.recv() == resumed(1001, 4, 8)
        # ... and then it is live.
        await publish_n(server, 1001, 1)
        assert await second.recv() == replayed(1001, 9, 9)[0]


async def test_resume_at_the_latest_seq_replays_nothing(server: Server) -> None:
    await publish_n(server, 1001, 4)
    async with connect(server) as peer:
        await peer.send({"type": "resume", "offsets": {"1001": 4}})
        assert await peer.recv() == ack(1001)
        assert await peer.recv() == resumed(1001, 5, 4)
        await publish_n(server, 1001, 1)
        assert await peer.recv() == replayed(1001, 5, 5)[0]


async def test_resume_from_zero_replays_everything(server: Server) -> None:
    await publish_n(server, 1001, 3)
    async with connect(server) as peer:
        await peer.send({"type": "resume", "offsets": {"1001": 0}})
        assert await peer.recv() == ack(1001)
        assert await peer.recv_n(4) == [*replayed(1001, 1, 3), resumed(1001, 1, 3)]


@pytest.mark.server_settings(history_size=5)
async def test_resume_past_history_sends_a_snapshot(server: Server) -> None:
    await publish_n(server, 1001, 20)
    epoch = server.engine.position(topic(1001))[0]
    async with connect(server) as peer:
        await peer.send({"type": "resume", "offsets": {"1001": 2}})
        assert await peer.recv() == ack(1001)
        assert await peer.recv() == {
            "type": "snapshot",
            "marketId": 1001,
            "seq": 20,
            "ts": FIXED_TS,
            "payload": await state_of(server, 1001),
            "epoch": epoch,
            "recovered": False,
            "reason": "beyond_history",
        }
        assert await peer.recv() == resumed(1001, 3, 20, "beyond_history")
        await publish_n(server, 1001, 1)
        assert await peer.recv() == replayed(1001, 21, 21)[0]


@pytest.mark.server_settings(history_size=5)
async def test_resume_at_the_edge_of_history(server: Server) -> None:
    await publish_n(server, 1001, 20)  # history holds 16..20
    async with connect(server) as peer:
        await peer.send({"type": "resume", "offsets": {"1001": 15}})
        assert await peer.recv() == ack(1001)
        assert await peer.recv_n(6) == [*replayed(1001, 16, 20), resumed(1001, 16, 20)]
    async with connect(server) as peer:
        await peer.send({"type": "resume", "offsets": {"1001": 14}})
        assert await peer.recv() == ack(1001)
        snapshot = await peer.recv()
        assert (snapshot["type"], snapshot["seq"], snapshot["reason"]) == (
            "snapshot",
            20,
            "beyond_history",
        )
        assert await peer.recv() == resumed(1001, 15, 20, "beyond_history")


async def test_resume_ahead_of_the_server_means_the_epoch_changed(server: Server) -> None:
    await publish_n(server, 1001, 3)
    async with connect(server) as peer:
        await peer.send({"type": "resume", "offsets": {"1001": 1024}})
        assert await peer.recv() == ack(1001)
        assert await peer.recv() == {
            "type": "snapshot",
            "marketId": 1001,
            "seq": 3,
            "ts": FIXED_TS,
            "payload": await state_of(server, 1001),
            "epoch": server.engine.position(topic(1001))[0],
            "recovered": False,
            "reason": "epoch_changed",
        }
        assert await peer.recv() == resumed(1001, 1025, 3, "epoch_changed")
        await publish_n(server, 1001, 1)
        assert await peer.recv() == replayed(1001, 4, 4)[0]


async def test_resume_with_the_epoch_detects_a_changed_epoch(server: Server) -> None:
    await publish_n(server, 1001, 3)
    epoch = server.engine.position(topic(1001))[0]
    async with connect(server) as peer:
        await peer.send({"type": "resume", "offsets": {"1001": {"seq": 1, "epoch": epoch}}})
        assert await peer.recv() == ack(1001)
        assert await peer.recv_n(3) == [*replayed(1001, 2, 3), resumed(1001, 2, 3)]
    async with connect(server) as peer:
        await peer.send(
            {"type": "resume", "offsets": {"1001": {"seq": 1, "epoch": "not-" + epoch}}}
        )
        assert await peer.recv() == ack(1001)
        snapshot = await peer.recv()
        assert snapshot["type"] == "snapshot"
        assert snapshot["reason"] == "epoch_changed"
        assert snapshot["recovered"] is False
        assert snapshot["seq"] == 3
        assert await peer.recv() == resumed(1001, 2, 3, "epoch_changed")


@pytest.mark.server_settings(history_size=5)
async def test_one_markets_snapshot_does_not_disturb_another(server: Server) -> None:
    await publish_n(server, 1001, 12)  # 1001: resume beyond history -> snapshot
    await publish_n(server, 1002, 6)  # 1002: resume within history -> replay
    await publish_n(server, 1003, 2)  # 1003: resume ahead of the server -> snapshot
    async with connect(server) as peer:
        await peer.send({"type": "resume", "offsets": {"1001": 1, "1002": 3, "1003": 50}})
        assert await peer.recv() == ack(1001, 1002, 1003)
        notices: set[int] = set()

        def all_resumed(message: Message) -> bool:
            if message["type"] == "resumed":
                notices.add(message["marketId"])
            return len(notices) == 3

        messages = await peer.recv_until(all_resumed)
        by_market = {m: [x for x in messages if x["marketId"] == m] for m in (1001, 1002, 1003)}
        assert len(messages) == sum(len(v) for v in by_market.values())

        assert [m["type"] for m in by_market[1001]] == ["snapshot", "resumed"]
        assert by_market[1001][0]["reason"] == "beyond_history"
        assert by_market[1001][0]["seq"] == 12
        assert by_market[1001][1] == resumed(1001, 2, 12, "beyond_history")

        assert by_market[1002] == [*replayed(1002, 4, 6), resumed(1002, 4, 6)]

        assert [m["type"] for m in by_market[1003]] == ["snapshot", "resumed"]
        assert by_market[1003][0]["reason"] == "epoch_changed"
        assert by_market[1003][1] == resumed(1003, 51, 2, "epoch_changed")

        # All three are live afterwards.
        await publish_n(server, 1002, 1)
        assert await peer.recv() == replayed(1002, 7, 7)[0]
        await publish_n(server, 1001, 1)
        assert await peer.recv() == replayed(1001, 13, 13)[0]
        await publish_n(server, 1003, 1)
        assert await peer.recv() == replayed(1003, 3, 3)[0]


async def test_resume_respects_the_token_scope(server: Server) -> None:
    await publish_n(server, 1001, 2)
    async with connect(server, make_token(scope=["1001"])) as peer:
        await peer.send({"type": "resume", "offsets": {"1001": 1, "1002": 0}})
        assert await peer.recv() == ack(1001)
        assert await peer.recv() == {
            "type": "error",
            "code": "FORBIDDEN_MARKET",
            "message": "the token does not allow markets [1002]",
            "markets": [1002],
        }
        assert await peer.recv_n(2) == [*replayed(1001, 2, 2), resumed(1001, 2, 2)]
        await publish_n(server, 1002, 1)
        await peer.ping()
