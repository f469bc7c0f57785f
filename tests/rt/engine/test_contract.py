"""The engine contract: every guarantee stated by `rt.engine.Engine`, run against every engine.

To add an engine, add its factory to ENGINE_FACTORIES: an async context manager that yields a
fresh, empty engine (its own epoch, no topics) and cleans it up on exit.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rt.engine import Engine, MemoryEngine, connect_engine, open_engine
from rt.mergepatch import apply
from rt.model import HistoryGone, Json, Update, UpdateKind
from tests.redis_server import RedisServer

WallMs = Callable[[], int]


class EngineFactory(Protocol):
    def __call__(
        self, *, history_size: int, wall_ms: WallMs
    ) -> AbstractAsyncContextManager[Engine]: ...


class MakeEngine(Protocol):
    def __call__(
        self, *, history_size: int = 1000, wall_ms: WallMs | None = None
    ) -> Awaitable[Engine]: ...


@asynccontextmanager
async def memory_engine(*, history_size: int, wall_ms: WallMs) -> AsyncIterator[Engine]:
    engine = MemoryEngine(history_size=history_size, wall_ms=wall_ms)
    try:
        yield engine
    finally:
        await engine.aclose()


@asynccontextmanager
async def redis_engine(*, history_size: int, wall_ms: WallMs) -> AsyncIterator[Engine]:
    """An engine on the session's redis-server, under a key prefix of its own (so empty)."""
    server = RedisServer.shared()
    async with connect_engine(
        server.url, history_size=history_size, wall_ms=wall_ms, key_prefix=server.new_prefix()
    ) as engine:
        yield engine


ENGINE_FACTORIES = [
    pytest.param(memory_engine, id="memory"),
    pytest.param(redis_engine, id="redis"),
]


@pytest.fixture(params=ENGINE_FACTORIES)
def engine_factory(request: pytest.FixtureRequest) -> EngineFactory:
    factory: EngineFactory = request.param
    return factory


@pytest.fixture
async def make_engine(engine_factory: EngineFactory) -> AsyncIterator[MakeEngine]:
    """Make fresh engines of the kind under test; they are closed when the test ends.

    Each engine is opened and closed by a task of this fixture's nursery: an engine may run
    tasks of its own (the Redis engine's reader), which must end in the task they began in.
    """
    done = trio.Event()

    async def hold(
        history_size: int, wall_ms: WallMs, *, task_status: trio.TaskStatus[Engine]
    ) -> None:
        async with engine_factory(history_size=history_size, wall_ms=wall_ms) as engine:
            task_status.started(engine)
            await done.wait()

    async with trio.open_nursery() as nursery:

        async def make(*, history_size: int = 1000, wall_ms: WallMs | None = None) -> Engine:
            clock = wall_ms if wall_ms is not None else itertools.count(1_000_000).__next__
            engine: Engine = await nursery.start(hold, history_size, clock)
            return engine

        yield make
        done.set()


class Recorder:
    """A listener that records what it is given."""

    def __init__(self) -> None:
        self.updates: list[Update] = []

    def __call__(self, update: Update) -> None:
        self.updates.append(update)

    def seqs(self, topic: str) -> list[int]:
        return [u.seq for u in self.updates if u.topic == topic]


# --- sequence numbers, ts, epoch ---------------------------------------------------------------


async def test_seq_starts_at_1_per_topic_without_gaps(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    published = [await engine.publish(topic, {"n": i}) for i, topic in enumerate("abacabba")]
    assert [u.seq for u in published if u.topic == "a"] == [1, 2, 3, 4]
    assert [u.seq for u in published if u.topic == "b"] == [1, 2, 3]
    assert [u.seq for u in published if u.topic == "c"] == [1]
    assert len({u.epoch for u in published}) == 1


async def test_update_carries_what_was_published(make_engine: MakeEngine) -> None:
    engine = await make_engine(wall_ms=itertools.count(5_000, 10).__next__)
    first = await engine.publish("m", {"odds": 1.5})
    second = await engine.publish("m", {"score": "1-0"}, kind="event")
    assert (first.topic, first.seq, first.ts, first.kind, first.data) == (
        "m",
        1,
        5_000,
        "patch",
        {"odds": 1.5},
    )
    assert (second.seq, second.ts, second.kind) == (2, 5_010, "event")
    assert second.data == {"score": "1-0"}
    assert first.epoch == second.epoch == engine.position("m")[0]


async def test_position_and_topics(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    epoch, seq = engine.position("never")
    assert seq == 0
    assert engine.topics() == []
    for topic in ["zeta", "alpha", "zeta", "mid"]:
        await engine.publish(topic, {})
    assert engine.topics() == ["alpha", "mid", "zeta"]
    assert engine.position("zeta") == (epoch, 2)
    snapshot = await engine.snapshot("zeta")
    assert engine.position("zeta") == (snapshot.epoch, snapshot.seq)


# --- state ---------------------------------------------------------------------------------


async def test_state_is_every_patch_applied_in_order(make_engine: MakeEngine) -> None:
    engine = await make_engine(wall_ms=itertools.count(7).__next__)
    patches: list[dict[str, Json]] = [
        {"status": "open", "odds": {"home": 1.9, "away": 2.1}},
        {"odds": {"home": 1.8, "draw": 3.2}},
        {"odds": {"away": None}, "status": "suspended"},
        {"tags": ["live"]},
    ]
    state: Json = {}
    for patch in patches:
        await engine.publish("m", patch)
        state = apply(state, patch)
    snapshot = await engine.snapshot("m")
    assert (
        snapshot.state
        == state
        == {
            "status": "suspended",
            "odds": {"home": 1.8, "draw": 3.2},
            "tags": ["live"],
        }
    )
    assert (snapshot.topic, snapshot.seq, snapshot.ts) == ("m", 4, 10)


async def test_events_leave_state_unchanged(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    await engine.publish("m", {"odds": 2})
    await engine.publish("m", {"odds": None, "settled": True}, kind="event")
    await engine.publish("m", ["a", "list"], kind="event")
    await engine.publish("m", None, kind="event")
    snapshot = await engine.snapshot("m")
    assert (snapshot.seq, snapshot.state) == (4, {"odds": 2})


async def test_snapshot_of_a_topic_never_published(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    snapshot = await engine.snapshot("never")
    assert (snapshot.topic, snapshot.seq, snapshot.ts, snapshot.state) == ("never", 0, 0, {})
    assert snapshot.epoch == engine.position("never")[0]
    assert engine.topics() == []


async def test_snapshot_is_the_callers_copy(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    await engine.publish("m", {"odds": {"home": 1.9}, "tags": ["a"]})
    snapshot = await engine.snapshot("m")
    snapshot.state["odds"]["home"] = 99
    snapshot.state["tags"].append("b")
    snapshot.state["new"] = 1
    assert (await engine.snapshot("m")).state == {"odds": {"home": 1.9}, "tags": ["a"]}


async def test_later_patches_do_not_rewrite_earlier_updates(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    await engine.publish("m", {"odds": {"home": 1.9}})
    await engine.publish("m", {"odds": {"away": 2.0}})
    [first, second] = await engine.updates("m", since_seq=0, limit=10)
    assert first.data == {"odds": {"home": 1.9}}
    assert second.data == {"odds": {"away": 2.0}}


@pytest.mark.parametrize("data", [1, "x", None, True, [{"a": 1}]])
async def test_a_patch_must_be_an_object(make_engine: MakeEngine, data: Json) -> None:
    engine = await make_engine()
    recorder = Recorder()
    engine.add_listener(recorder)
    with pytest.raises(ValueError, match="must be a JSON object"):
        await engine.publish("m", data)
    assert engine.position("m")[1] == 0
    assert recorder.updates == []
    await engine.publish("m", data, kind="event")
    assert engine.position("m")[1] == 1


# --- history -------------------------------------------------------------------------------


async def test_updates_windows(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    for i in range(1, 11):
        await engine.publish("m", {"n": i})
    await engine.publish("other", {"n": 0})

    async def seqs(since_seq: int, limit: int) -> list[int]:
        return [u.seq for u in await engine.updates("m", since_seq=since_seq, limit=limit)]

    assert await seqs(0, 100) == list(range(1, 11))
    assert await seqs(3, 4) == [4, 5, 6, 7]
    assert await seqs(9, 100) == [10]
    assert await seqs(3, 1) == [4]
    assert await seqs(10, 100) == []
    assert await seqs(25, 100) == []
    assert await engine.updates("never", since_seq=0, limit=10) == []
    updates = await engine.updates("m", since_seq=0, limit=100)
    assert [u.data for u in updates] == [{"n": i} for i in range(1, 11)]
    assert {u.topic for u in updates} == {"m"}


async def test_history_gone_exactly_at_the_boundary(make_engine: MakeEngine) -> None:
    engine = await make_engine(history_size=5)
    for i in range(1, 9):
        await engine.publish("m", {"n": i})
    held = await engine.updates("m", since_seq=3, limit=100)
    assert [u.seq for u in held] == [4, 5, 6, 7, 8]
    with pytest.raises(HistoryGone) as caught:
        await engine.updates("m", since_seq=2, limit=100)
    assert (caught.value.topic, caught.value.since_seq, caught.value.first_seq) == ("m", 2, 4)
    with pytest.raises(HistoryGone):
        await engine.updates("m", since_seq=0, limit=1)
    assert await engine.updates("m", since_seq=8, limit=1) == []
    # The state is still every patch, not only those held.
    assert (await engine.snapshot("m")).state == {"n": 8}


@pytest.mark.parametrize(("since_seq", "limit"), [(-1, 10), (0, 0), (0, -5)])
async def test_updates_rejects_bad_arguments(
    make_engine: MakeEngine, since_seq: int, limit: int
) -> None:
    engine = await make_engine()
    await engine.publish("m", {})
    with pytest.raises(ValueError, match=r"since_seq|limit"):
        await engine.updates("m", since_seq=since_seq, limit=limit)


# --- listeners -----------------------------------------------------------------------------


async def test_listener_sees_each_update_before_publish_returns(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    recorder = Recorder()
    engine.add_listener(recorder)
    for i in range(3):
        update = await engine.publish("m", {"n": i})
        assert recorder.updates[-1] == update
    event = await engine.publish("m", "goal", kind="event")
    assert recorder.updates == await engine.updates("m", since_seq=0, limit=10)
    assert recorder.updates[-1] == event


async def test_listener_order_with_concurrent_publishers(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    recorder = Recorder()
    engine.add_listener(recorder)
    returned: list[Update] = []

    async def publisher(i: int) -> None:
        for j in range(10):
            topic = "hot" if j % 3 else f"cold{i % 2}"
            returned.append(await engine.publish(topic, {f"p{i}": j}))

    async with trio.open_nursery() as nursery:
        for i in range(30):
            nursery.start_soon(publisher, i)

    for topic in ["hot", "cold0", "cold1"]:
        seqs = recorder.seqs(topic)
        assert seqs == list(range(1, len(seqs) + 1))
        assert engine.position(topic)[1] == len(seqs)
    assert len(recorder.updates) == len(returned) == 300
    assert sorted(recorder.updates, key=id) == sorted(returned, key=id)


async def test_every_listener_is_called(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    first, second = Recorder(), Recorder()
    engine.add_listener(first)
    await engine.publish("m", {"n": 1})
    engine.add_listener(second)
    await engine.publish("m", {"n": 2})
    engine.remove_listener(first)
    await engine.publish("m", {"n": 3})
    assert first.seqs("m") == [1, 2]
    assert second.seqs("m") == [2, 3]
    with pytest.raises(ValueError):
        engine.remove_listener(first)


async def test_listener_may_remove_itself(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    other = Recorder()
    calls: list[int] = []

    def once(update: Update) -> None:
        calls.append(update.seq)
        engine.remove_listener(once)

    engine.add_listener(once)
    engine.add_listener(other)
    await engine.publish("m", {})
    await engine.publish("m", {})
    assert calls == [1]
    assert other.seqs("m") == [1, 2]


async def test_listener_exception_propagates_to_the_publisher(make_engine: MakeEngine) -> None:
    engine = await make_engine()

    def broken(update: Update) -> None:
        raise RuntimeError(f"listener bug at seq {update.seq}")

    engine.add_listener(broken)
    with pytest.raises(RuntimeError, match="listener bug at seq 1"):
        await engine.publish("m", {"n": 1})
    # Published all the same: the seq is taken and the state changed.
    engine.remove_listener(broken)
    assert (await engine.snapshot("m")).state == {"n": 1}
    assert (await engine.publish("m", {"n": 2})).seq == 2


# --- publish_many and aclose ---------------------------------------------------------------


async def test_publish_many_in_order(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    recorder = Recorder()
    engine.add_listener(recorder)
    items: list[tuple[str, Json, UpdateKind]] = [
        ("a", {"n": 1}, "patch"),
        ("b", {"n": 1}, "patch"),
        ("a", "goal", "event"),
        ("a", {"n": 2}, "patch"),
    ]
    published = await engine.publish_many(items)
    assert [(u.topic, u.data, u.kind) for u in published] == items
    assert [u.seq for u in published] == [1, 1, 2, 3]
    assert recorder.updates == published
    assert (await engine.snapshot("a")).state == {"n": 2}
    assert await engine.publish_many([]) == []


async def test_publish_many_checks_every_item_first(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    with pytest.raises(ValueError, match="must be a JSON object"):
        await engine.publish_many([("a", {"n": 1}, "patch"), ("b", [1], "patch")])
    assert engine.topics() == []


async def test_aclose_is_idempotent_and_final(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    await engine.publish("m", {})
    await engine.aclose()
    await engine.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await engine.publish("m", {})
    with pytest.raises(trio.ClosedResourceError):
        await engine.publish_many([("m", {}, "patch")])
    with pytest.raises(trio.ClosedResourceError):
        await engine.snapshot("m")
    with pytest.raises(trio.ClosedResourceError):
        await engine.updates("m", since_seq=0, limit=1)


# --- replaying history reproduces the state ----------------------------------------------------

keys = st.sampled_from("abc")
values = st.recursive(
    st.one_of(st.integers(-3, 3), st.sampled_from(["s", "t"]), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=6,
)
items = st.one_of(
    st.tuples(
        st.sampled_from(["t1", "t2", "t3"]),
        st.dictionaries(keys, values, max_size=3),
        st.just("patch"),
    ),
    st.tuples(st.sampled_from(["t1", "t2", "t3"]), values, st.just("event")),
)


# The function-scoped fixture only hands over the factory, which holds no state; every example
# makes and closes its own engine.
@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(items, min_size=1, max_size=4), max_size=12))
async def test_replaying_updates_reproduces_the_snapshot(
    engine_factory: EngineFactory, batches: list[list[tuple[str, Json, UpdateKind]]]
) -> None:
    async with engine_factory(history_size=1000, wall_ms=itertools.count().__next__) as engine:
        for batch in batches:
            if len(batch) == 1:
                [(topic, data, kind)] = batch
                await engine.publish(topic, data, kind=kind)
            else:
                await engine.publish_many(batch)
        for topic in engine.topics():
            state: Json = {}
            seq = 0
            while page := await engine.updates(topic, since_seq=seq, limit=3):
                for update in page:
                    assert update.seq == seq + 1
                    seq = update.seq
                    if update.kind == "patch":
                        state = apply(state, update.data)
            snapshot = await engine.snapshot(topic)
            assert (snapshot.seq, snapshot.state) == (seq, state)


# --- the memory engine's own promises, and open_engine -------------------------------------------


async def test_memory_epoch_is_random_per_instance_unless_given() -> None:
    first, second = MemoryEngine(), MemoryEngine()
    assert first.epoch != second.epoch
    assert first.position("m")[0] == first.epoch
    assert MemoryEngine(epoch="e1").position("m") == ("e1", 0)


def test_memory_history_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="history_size"):
        MemoryEngine(history_size=0)


async def test_memory_publish_cancelled_before_it_starts_publishes_nothing() -> None:
    engine = MemoryEngine()
    with trio.CancelScope() as scope:
        scope.cancel()
        await engine.publish("m", {"n": 1})
    assert scope.cancelled_caught
    assert engine.position("m")[1] == 0


async def test_memory_publish_yields_to_other_tasks() -> None:
    engine = MemoryEngine()
    with trio.testing.assert_checkpoints():
        await engine.publish("m", {})
    with trio.testing.assert_checkpoints():
        await engine.snapshot("m")


@pytest.mark.parametrize(
    ("url", "history_size"),
    [("memory", 1000), ("memory://", 1000), ("memory://?history=500", 500)],
)
async def test_open_engine_memory(url: str, history_size: int) -> None:
    engine = open_engine(url)
    assert isinstance(engine, MemoryEngine)
    for i in range(history_size + 1):
        await engine.publish("m", {"n": i})
    assert len(await engine.updates("m", since_seq=1, limit=10_000)) == history_size
    with pytest.raises(HistoryGone):
        await engine.updates("m", since_seq=0, limit=1)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost:6379/0", "the Redis engine needs connect_engine"),
        ("rediss://example.com", "the Redis engine needs connect_engine"),
        ("postgres://x", "unknown engine URL"),
        ("", "unknown engine URL"),
        ("memory://host", "no host or path"),
        ("memory://?history=0", "history must be a positive integer"),
        ("memory://?history=ten", "history must be a positive integer"),
        ("memory://?size=5", "unknown option 'size'"),
    ],
)
def test_open_engine_rejects(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_engine(url)
