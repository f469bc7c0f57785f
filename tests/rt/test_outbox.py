"""The outbox: contract enforcement at the edge and the slow-consumer steps, one by one."""

from __future__ import annotations

import json
from typing import Any

from rt.delivery.outbox import Outbox
from rt.dialects.kmarket.codec import CODEC
from rt.model import Update
from rt.ws.frames import frame_text
from tests.rt.harness import unframe

TOPIC = "market:1"


def update(seq: int, data: Any = None, *, kind: str = "patch", topic: str = TOPIC) -> Update:
    return Update(topic, "e", seq, 1000 + seq, kind, {"n": seq} if data is None else data)  # type: ignore[arg-type]


class Harness:
    def __init__(
        self,
        capacity: int = 8,
        high_water: int = 4,
        control_capacity: int = 4,
        sink: Any = None,
    ) -> None:
        self.resyncs: list[str] = []
        self.overflows = 0
        self.outbox = Outbox(
            CODEC,
            capacity=capacity,
            high_water=high_water,
            control_capacity=control_capacity,
            request_resync=self.resyncs.append,
            on_overflow=self._overflow,
            sink=sink,
        )

    def _overflow(self) -> None:
        self.overflows += 1

    def offer(self, u: Update) -> None:
        self.outbox.offer_update(u, frame_text(CODEC.encode_update(u)))

    async def drain(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(self.outbox):
            out += [json.loads(unframe(f)) for f in await self.outbox.take_batch()]
        return out


def subscribed(h: Harness, seq: int = 0) -> Harness:
    h.outbox.expect(TOPIC, seq)
    return h


async def test_a_client_that_keeps_up_gets_every_update_as_published() -> None:
    h = subscribed(Harness())
    for seq in range(1, 4):
        h.offer(update(seq))
    assert [(m["seq"], m.get("conflated")) for m in await h.drain()] == [
        (1, None),
        (2, None),
        (3, None),
    ]
    assert h.outbox.statistics().coalesced == 0


async def test_duplicates_are_dropped_and_gaps_become_a_resync() -> None:
    h = subscribed(Harness(), seq=5)
    h.offer(update(5))  # duplicate
    h.offer(update(6))
    h.offer(update(8))  # gap: 7 is missing
    h.offer(update(9))  # dropped: waiting for the snapshot
    assert h.resyncs == [TOPIC]
    assert h.outbox.statistics().duplicates_dropped == 1
    assert await h.drain() == []  # seq 6 was replaced by the coming snapshot
    h.outbox.offer_snapshot(
        TOPIC,
        9,
        frame_text(CODEC.encode_snapshot(TOPIC, epoch="e", seq=9, ts=0, state={}, resync=True)),
    )
    h.offer(update(10))
    assert [(m["type"], m["seq"]) for m in await h.drain()] == [
        ("snapshot", 9),
        ("odds_update", 10),
    ]


async def test_updates_wait_for_the_first_snapshot() -> None:
    h = Harness()
    h.outbox.expect(TOPIC, None)
    h.offer(update(1))
    assert len(h.outbox) == 0
    h.outbox.offer_snapshot(TOPIC, 1, frame_text("snap"))
    h.offer(update(2))
    assert len(h.outbox) == 2


async def test_behind_the_high_water_mark_patches_coalesce() -> None:
    h = subscribed(Harness(capacity=8, high_water=2))
    h.outbox.expect("market:2", 0)
    h.offer(update(1, topic="market:2"))
    h.offer(update(1, {"a": 1}))  # depth 2: at the mark
    h.offer(update(2, {"b": 2}))  # merged into seq 1's pending entry
    h.offer(update(3, {"a": None}))
    messages = await h.drain()
    assert [m["marketId"] for m in messages] == [2, 1]
    assert messages[1] == {
        "type": "odds_update",
        "marketId": 1,
        "seq": 3,
        "ts": 1003,
        "payload": {"a": None, "b": 2},
        "conflated": True,
        "fromSeq": 1,
    }
    assert h.outbox.statistics().coalesced == 2


async def test_an_entry_taken_by_the_writer_is_never_merged_into() -> None:
    h = subscribed(Harness(capacity=8, high_water=1))
    h.offer(update(1))
    batch = await h.outbox.take_batch()
    h.offer(update(2))
    h.offer(update(3))
    assert [json.loads(unframe(f))["seq"] for f in batch] == [1]
    assert [(m["seq"], m.get("fromSeq")) for m in await h.drain()] == [(3, 2)]


async def test_a_patch_that_cannot_compose_turns_into_a_resync() -> None:
    h = subscribed(Harness(capacity=8, high_water=1))
    h.offer(update(1, {"a": None}))
    h.offer(update(2, {"a": {"b": 1}}))  # null then object: no single merge patch does that
    assert h.resyncs == [TOPIC]
    assert await h.drain() == []


async def test_events_are_not_merged_and_resync_at_capacity() -> None:
    h = subscribed(Harness(capacity=3, high_water=1))
    for seq in range(1, 4):
        h.offer(update(seq, {"goal": seq}, kind="event"))
    assert h.resyncs == []
    h.offer(update(4, kind="event"))  # at capacity
    assert h.resyncs == [TOPIC]
    assert h.outbox.statistics().resyncs == 1


async def test_a_resync_drops_only_that_topics_backlog() -> None:
    h = subscribed(Harness(capacity=3, high_water=1))
    h.outbox.expect("market:2", 0)
    h.offer(update(1, topic="market:2"))
    h.offer(update(1, kind="event"))
    h.offer(update(2, kind="event"))
    h.offer(update(3, kind="event"))  # capacity: market:1 resyncs
    assert [(m["marketId"], m["seq"]) for m in await h.drain()] == [(2, 1)]


async def test_unsubscribing_removes_what_is_queued() -> None:
    h = subscribed(Harness())
    h.offer(update(1))
    h.outbox.forget(TOPIC)
    h.offer(update(2))
    assert await h.drain() == []


async def test_control_messages_are_never_dropped_but_bounded() -> None:
    h = Harness(control_capacity=2)
    for n in range(3):
        h.outbox.send_text(json.dumps({"type": "pong", "ts": n}))
    assert h.overflows == 1
    assert [m["ts"] for m in await h.drain()] == [0, 1, 2]


async def test_an_older_snapshot_is_ignored() -> None:
    h = subscribed(Harness(), seq=5)
    h.outbox.offer_snapshot(TOPIC, 3, frame_text("old"))
    assert len(h.outbox) == 0
    assert h.outbox.position(TOPIC) == 5


async def test_take_batch_returns_empty_once_closed() -> None:
    h = Harness()
    h.outbox.close()
    assert await h.outbox.take_batch() == []


# -- the fast path: straight to an idle socket ------------------------------------------------


class FakeSink:
    """A Wire stand-in: records what is written, idle or not as the test says."""

    def __init__(self) -> None:
        self.idle = True
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def texts(self) -> list[dict[str, Any]]:
        return [json.loads(unframe(f)) for f in self.written]


def with_sink(capacity: int = 8, high_water: int = 4) -> tuple[Harness, FakeSink]:
    sink = FakeSink()
    return Harness(capacity=capacity, high_water=high_water, sink=sink), sink


async def test_an_idle_socket_gets_each_frame_at_once_and_nothing_is_queued() -> None:
    h, sink = with_sink()
    h.outbox.expect(TOPIC, 0)
    for seq in (1, 2, 3):
        h.offer(update(seq))
    h.outbox.send_text(json.dumps({"type": "pong", "ts": 7}))
    assert [m.get("seq", m.get("ts")) for m in sink.texts()] == [1, 2, 3, 7]
    assert len(h.outbox) == 0
    stats = h.outbox.statistics()
    assert (stats.sent, stats.bytes_sent) == (4, sum(map(len, sink.written)))


async def test_the_contract_holds_on_the_fast_path_too() -> None:
    h, sink = with_sink()
    h.outbox.expect(TOPIC, 0)
    h.offer(update(1))
    h.offer(update(1))  # a duplicate: dropped
    h.offer(update(3))  # a gap: never written, a resync is asked for instead
    assert [m["seq"] for m in sink.texts()] == [1]
    assert h.resyncs == [TOPIC]
    assert h.outbox.statistics().duplicates_dropped == 1


async def test_a_busy_socket_queues_and_later_frames_wait_behind_the_queue() -> None:
    h, sink = with_sink()
    h.outbox.expect(TOPIC, 0)
    h.offer(update(1))
    sink.idle = False  # the socket took part of a frame: the rest is pending
    h.offer(update(2))
    sink.idle = True  # flushed, but update 2 still waits in the queue: 3 must not pass it
    h.offer(update(3))
    assert [m["seq"] for m in sink.texts()] == [1]
    assert [m["seq"] for m in await h.drain()] == [2, 3]


async def test_a_lossless_stream_always_goes_through_the_writer() -> None:
    h, sink = with_sink()
    h.outbox.expect("user:1", 0, lossless=True)
    h.offer(update(1, topic="user:1", kind="event"))
    assert sink.written == []
    batch = await h.outbox.take_batch()
    assert [json.loads(unframe(f))["seq"] for f in batch] == [1]
    assert h.outbox.sent_position("user:1") is None  # not written yet
    h.outbox.batch_written()
    assert h.outbox.sent_position("user:1") == 1


def run_of(*seqs: int) -> tuple[list[Update], list[bytes], bytes]:
    updates = [update(seq) for seq in seqs]
    frames = [frame_text(CODEC.encode_update(u)) for u in updates]
    return updates, frames, b"".join(frames)


async def test_a_run_of_updates_is_one_write_for_a_client_that_keeps_up() -> None:
    h, sink = with_sink()
    h.outbox.expect(TOPIC, 2)
    updates, frames, joined = run_of(3, 4, 5)
    h.outbox.offer_run(updates, frames, joined)
    assert sink.written == [joined]
    assert h.outbox.position(TOPIC) == 5
    assert h.outbox.statistics().sent == 3
    h.offer(update(6))
    assert len(sink.written) == 2


async def test_a_run_that_does_not_follow_on_is_offered_one_by_one() -> None:
    h, sink = with_sink()
    h.outbox.expect(TOPIC, 3)  # already has 3: the run's first two are duplicates
    h.outbox.offer_run(*run_of(2, 3, 4, 5))
    assert [m["seq"] for m in sink.texts()] == [4, 5]
    assert h.outbox.statistics().duplicates_dropped == 2
    h2, sink2 = with_sink()
    h2.outbox.expect(TOPIC, 0)  # misses 1 and 2: a gap, never written, a resync instead
    h2.outbox.offer_run(*run_of(3, 4))
    assert sink2.written == []
    assert h2.resyncs == [TOPIC]


async def test_a_run_waits_behind_what_is_queued() -> None:
    h, sink = with_sink()
    h.outbox.expect(TOPIC, 0)
    sink.idle = False
    h.offer(update(1))
    sink.idle = True
    h.outbox.offer_run(*run_of(2, 3))
    assert sink.written == []
    assert [m["seq"] for m in await h.drain()] == [1, 2, 3]


async def test_an_update_passed_over_moves_the_position_and_a_gap_is_still_a_gap() -> None:
    h = subscribed(Harness(), 0)
    h.offer(update(1))
    h.outbox.pass_over(update(2))  # the connection's interest does not want it
    h.outbox.pass_over(update(2))  # a duplicate, passed over or not
    h.offer(update(3))
    assert h.outbox.position(TOPIC) == 3 and h.outbox.duplicates_dropped == 1
    assert [m["seq"] for m in await h.drain()] == [1, 3]
    h.outbox.pass_over(update(5))  # 4 never came: resync, as for an update sent
    assert h.resyncs == [TOPIC]


async def test_a_quiet_join_starts_at_the_rooms_position_without_a_snapshot() -> None:
    h = Harness()
    h.outbox.expect(TOPIC, None)
    h.offer(update(8))  # before the join is served: nothing (it waits, as for a snapshot)
    h.outbox.start_at(TOPIC, 8)
    h.outbox.start_at(TOPIC, 3)  # served already: a second start changes nothing
    h.offer(update(9))
    assert [m["seq"] for m in await h.drain()] == [9]
