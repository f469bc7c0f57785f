"""The delivery contract, checked by a Hypothesis state machine against the real core.

The machine drives an in-process core (actors, MemoryEngine, Hub, real Connection actors) and
three KMarket clients with random steps: publish a patch,
publish a burst, subscribe, unsubscribe, cut a connection abruptly, resume on a new
connection with the offsets last seen (sometimes with a wrong epoch), resume on the open one,
stop reading (so the outbox coalesces and resyncs) and catch up, let rooms idle out, be away
for exactly about a history's worth of updates, and `concurrently`: several of these back to
back with only a few checkpoints between them, so that they overlap. Small outbox and
history settings make the slow-consumer and beyond-history paths common.

Every message a client receives goes through a strict checker (`Checker`), which knows every
patch published and so every state of every market at every seq:

- an update is exactly the next seq, and its payload is the patch published at that seq;
- a conflated update says so with both ends, starts right after the last seq seen, and
  folding it in gives exactly the market's state at its last seq;
- a snapshot never goes back, carries the engine's epoch, and is the state at its seq;
- nothing of a market arrives before its subscribe ack (the first thing after it is a
  snapshot), or after its unsubscribe ack; after a resume ack the stream goes on from the
  offset sent;
- a resume replays (recovered) exactly when the history still holds what the client misses,
  and answers with a snapshot otherwise, saying why;
- no error message, no close by the server, no actor crash.

After every step the system is run to quiescence: everything is in memory, so once every task
is blocked every message has been delivered. Then every connected client that reads holds,
for every market it is subscribed to, the engine's state and seq. At teardown (the publisher
has stopped) the slow readers catch up and the disconnected clients resume, and then every
client must hold exactly the engine's snapshot of every market it is subscribed to.

Driving Trio from Hypothesis's synchronous state machine: each run of the machine has its own
Trio loop in a background thread (`TrioLoop`), on a MockClock that moves only when told to,
so no heartbeat, write deadline or idle timer fires unless a step lets time pass; each step
is one `trio.from_thread.run` call that does its work and then waits until the system is
quiet (`trio.testing.wait_all_tasks_blocked`, running the short timers due meanwhile).
Trio's scheduler is seeded by Hypothesis, so a failing example replays while it shrinks.

The plain tests at the end are the bugs this machine found, pinned down.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from socket import SO_RCVBUF, SO_SNDBUF, SOL_SOCKET
from typing import Any, TypeVar

import hypothesis.strategies as st
import trio
import trio.testing
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from rt.engine.redis import RedisEngine
from tests.redis_server import RedisServer
from tests.rt.harness import Core, child, open_core, receive, send

T = TypeVar("T")

MARKETS = ("1", "2", "3")
HISTORY = 20
CORE_SETTINGS: dict[str, Any] = {
    "outbox_capacity": 16,
    "outbox_high_water": 8,
    "history_size": HISTORY,
    # Nothing times out unless a step moves the clock that far.
    "ping_interval_s": 1e6,
    "idle_timeout_s": 1e6,
    "write_deadline_s": 1e6,
    "room_idle_s": 30.0,
}
#: While waiting for quiescence, timers due within this many (mock) seconds are run (restart
#: backoffs, the hub's retry when a room is restarting, a closing socket's grace period).
SHORT_TIMER_S = 5.0
N_CLIENTS = 3
#: Bytes of kernel buffer on each end of a client's socket pair: a few messages' worth.
SMALL_SOCKET_BUFFER = 4096


class ContractViolation(AssertionError):
    pass


# -- the model: every patch published, hence every state at every seq ----------------------


def merge(target: Any, patch: Any) -> Any:
    """RFC 7396, written out again here so the test does not trust rt.mergepatch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


class Model:
    def __init__(self) -> None:
        self.patches: dict[str, list[Any]] = {m: [None] for m in MARKETS}
        self.states: dict[str, list[dict[str, Any]]] = {m: [{}] for m in MARKETS}
        self.epoch = ""

    def published(self, market: str, seq: int, patch: dict[str, Any]) -> None:
        assert seq == len(self.patches[market]), f"engine gave seq {seq} to market {market}"
        self.patches[market].append(patch)
        self.states[market].append(merge(self.states[market][-1], patch))

    def seq(self, market: str) -> int:
        return len(self.states[market]) - 1


# -- a client's view and the checker ------------------------------------------------------


@dataclass
class View:
    seq: int = -1  # -1: nothing received yet
    state: dict[str, Any] = field(default_factory=dict)
    on: bool = False  # subscribed on the current connection (as the acks say)
    need_snapshot: bool = False  # subscribed from scratch: a snapshot must come first
    # Resumes sent and not acknowledged yet, (offset, epoch) each; then acknowledged and not
    # reported on yet (only the latest gets a report: a later resume supersedes a join).
    resumes: deque[tuple[int, str | None]] = field(default_factory=deque)
    answered: deque[tuple[int, str | None]] = field(default_factory=deque)


class Checker:
    """Holds one client's stream to the delivery contract, message by message."""

    def __init__(self, name: str, model: Model) -> None:
        self.name = name
        self.model = model
        self.views: dict[str, View] = {m: View() for m in MARKETS}
        self.seen: list[str] = []  # the most recent messages, for the report
        self.counts: Counter[str] = Counter()  # what kinds of message it got (statistics)

    def new_connection(self) -> None:
        for view in self.views.values():
            view.on = False
            view.need_snapshot = False
            view.resumes.clear()
            view.answered.clear()

    def fail(self, why: str) -> None:
        recent = "\n    ".join(self.seen[-12:])
        raise ContractViolation(f"client {self.name}: {why}\n  last messages:\n    {recent}")

    def feed(self, text: str) -> None:
        self.seen.append(text)
        del self.seen[:-50]
        message = json.loads(text)
        kind = message.get("type")
        if kind == "ack":
            self._ack(message)
        elif kind == "snapshot":
            self._snapshot(message)
        elif kind == "odds_update":
            self._update(message)
        elif kind == "resumed":
            self._resumed(message)
        else:
            self.fail(f"unexpected message {text}")

    def _market(self, message: dict[str, Any]) -> tuple[str, View]:
        market = str(message["marketId"])
        if market not in self.views:
            self.fail(f"a message for market {market}, never subscribed")
        view = self.views[market]
        if not view.on:
            self.fail(f"a {message['type']} for market {market}, which is not subscribed")
        return market, view

    def _ack(self, message: dict[str, Any]) -> None:
        if message.get("ok") is not True:
            self.fail(f"a failed ack: {message}")
        markets = [str(m) for m in message.get("subscribed", [])]
        if "unsubscribed" in message:
            for m in message["unsubscribed"]:
                self.views[str(m)].on = False
        elif "resumed" in message:
            for m in message["resumed"]:
                view = self.views[str(m)]
                if not view.resumes:
                    self.fail(f"resumed market {m}, which was not asked to resume")
                # From here on the stream continues from the offset the client sent (it may
                # have received more since it sent it: those it gets again, or a snapshot).
                offset, epoch = view.resumes.popleft()
                view.answered.append((offset, epoch))
                view.seq = offset
                view.state = self.model.states[str(m)][offset]
                view.on = True
                view.need_snapshot = False
        else:
            for m in markets:
                view = self.views[m]
                if not view.on:
                    view.on = True
                    view.need_snapshot = True

    def _snapshot(self, message: dict[str, Any]) -> None:
        market, view = self._market(message)
        seq = message["seq"]
        if seq < view.seq:
            self.fail(f"market {market}: snapshot at seq {seq} after seq {view.seq}")
        if seq > self.model.seq(market):
            self.fail(f"market {market}: snapshot at seq {seq}, never published")
        if message.get("epoch") != self.model.epoch:
            self.fail(f"market {market}: snapshot of epoch {message.get('epoch')}")
        if message["payload"] != self.model.states[market][seq]:
            self.fail(
                f"market {market}: snapshot at seq {seq} is {message['payload']}, "
                f"but the state at seq {seq} is {self.model.states[market][seq]}"
            )
        if view.need_snapshot:
            self.counts["snapshot: subscribed"] += 1
        elif view.answered:
            self.counts["snapshot: resumed"] += 1
        else:
            self.counts["snapshot: resync"] += 1
        view.seq, view.state, view.need_snapshot = seq, message["payload"], False

    def _update(self, message: dict[str, Any]) -> None:
        market, view = self._market(message)
        seq = message["seq"]
        conflated = message.get("conflated", False)
        if view.need_snapshot or view.seq < 0:
            self.fail(f"market {market}: update {seq} before its snapshot")
        if conflated is not True and ("fromSeq" in message or conflated is not False):
            self.fail(f"market {market}: fromSeq or conflated on a plain update")
        first = message["fromSeq"] if conflated else seq
        if first != view.seq + 1 or seq < first:
            self.fail(
                f"market {market}: update {first}..{seq} after seq {view.seq} "
                "(a gap, a duplicate or out of order)"
            )
        if seq > self.model.seq(market):
            self.fail(f"market {market}: update at seq {seq}, never published")
        if not conflated and message["payload"] != self.model.patches[market][seq]:
            self.fail(
                f"market {market}: update {seq} carries {message['payload']}, "
                f"but {self.model.patches[market][seq]} was published"
            )
        state = merge(view.state, message["payload"])
        if state != self.model.states[market][seq]:
            self.fail(
                f"market {market}: after update {first}..{seq} the state is {state}, "
                f"expected {self.model.states[market][seq]}"
            )
        view.seq, view.state = seq, state
        self.counts["conflated update" if conflated else "update"] += 1

    def _resumed(self, message: dict[str, Any]) -> None:
        """The report of a resume: of the latest one acknowledged (the reports of those it
        superseded never come, or came before its ack), once, and saying the right thing."""
        market, view = self._market(message)
        if not view.answered:
            self.fail(f"market {market}: a resume report, but no resume is awaiting one")
        offset, epoch = view.answered[-1]
        view.answered.clear()
        if message["fromSeq"] != offset + 1:
            self.fail(f"market {market}: resumed from {message['fromSeq']}, asked after {offset}")
        to_seq = message["toSeq"]
        if not offset <= to_seq <= self.model.seq(market):
            self.fail(f"market {market}: resumed up to {to_seq}, after {offset}")
        if epoch not in (None, self.model.epoch):
            expected: tuple[bool, str | None] = (False, "epoch_changed")
        elif to_seq - offset > HISTORY:
            expected = (False, "beyond_history")
        else:
            expected = (True, None)
        got = (message["recovered"], message.get("reason"))
        if got != expected:
            self.fail(
                f"market {market}: recovered={got[0]} reason={got[1]} resuming after {offset} "
                f"at {to_seq}, expected {expected} (history {HISTORY})"
            )
        self.counts[f"resumed: {got[1] or 'replayed'}"] += 1


# -- a Trio loop in a thread, driven step by step -------------------------------------------


class _CrashLog(logging.Handler):
    """Collects log records that carry an exception (an actor crashed)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(self.format(record))


class TrioLoop:
    def __init__(self, engine_settings: dict[str, Any]) -> None:
        self.engine_settings = engine_settings
        self.clock = trio.testing.MockClock(rate=0)  # moves only when told to
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="trio-machine", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            raise self.error

    def _main(self) -> None:
        try:
            trio.run(self._amain, clock=self.clock)
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()

    async def _amain(self) -> None:
        async with (
            open_core(**CORE_SETTINGS, **self.engine_settings) as core,
            trio.open_nursery() as nursery,
        ):
            self.core: Core = core
            self.nursery = nursery
            self.token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()
            # Shutting down: let every grace period and timeout run out at once.
            self.clock.autojump_threshold = 0
            nursery.cancel_scope.cancel()

    def run(self, afn: Callable[[], Awaitable[T]]) -> T:
        """Run one step in the loop, then wait until the system is quiet."""

        async def step() -> T:
            result = await afn()
            await self.quiesce()
            return result

        return trio.from_thread.run(step, trio_token=self.token)

    async def quiesce(self) -> None:
        await self.advance(SHORT_TIMER_S, up_to_any_timer=True)

    async def advance(self, seconds: float, *, up_to_any_timer: bool = False) -> None:
        """Let ``seconds`` pass as they would: from one timer to the next, each time waiting
        until every task is blocked. With ``up_to_any_timer``, stop at the first quiet moment
        with no timer due within ``seconds``; else move the clock by exactly ``seconds``,
        the last part without waiting (so what those timers start overlaps the next step)."""
        left = seconds
        for _ in range(1000):
            await trio.testing.wait_all_tasks_blocked()
            if await self.core.settle():
                continue  # replies from Redis came in: their work may start more
            wait_s = max(trio.lowlevel.current_statistics().seconds_to_next_deadline, 0.0)
            if wait_s > left:
                if not up_to_any_timer:
                    self.clock.jump(left)
                return
            self.clock.jump(wait_s)
            if not up_to_any_timer:
                left -= wait_s
        raise AssertionError("the system never became quiet (something keeps polling)")

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self.token)
            except trio.RunFinishedError:
                pass
        self._thread.join(60)
        if self._thread.is_alive():
            raise AssertionError("the Trio loop did not stop")
        if self.error is not None:
            raise self.error


# -- the clients --------------------------------------------------------------------------


class Client:
    def __init__(self, name: str, model: Model) -> None:
        self.name = name
        self.checker = Checker(name, model)
        self.wanted: set[str] = set()  # the markets it asked for and did not leave
        self.connected = False
        self.paused = False
        self.violation: str | None = None
        self.ws: WebSocketConnection | None = None
        self._stream: Any = None
        self._scope: trio.CancelScope | None = None
        self._unpaused: trio.Event | None = None
        #: c0 is on a lockstep in-memory stream (every message goes through the connection's
        #: writer task); the others are on Unix socket pairs with small buffers, where rooms
        #: write straight to the socket while it keeps up (rt/ws/wire.py) and fall back to the
        #: writer when it does not: both paths, and the switches between them, are checked.
        self.over_socket = name != "c0"
        self.server_sockets: list[trio.socket.SocketType] = []

    def __repr__(self) -> str:
        return self.name

    async def connect(self, loop: TrioLoop) -> None:
        """A new connection, on which a client that stops reading soon blocks the server's
        writes (at once on a lockstep stream, after a few KB on a socket pair)."""
        client_stream: trio.abc.HalfCloseableStream
        server_stream: trio.abc.HalfCloseableStream
        if self.over_socket:
            client_socket, server_socket = trio.socket.socketpair()
            for sock, option in ((server_socket, SO_SNDBUF), (client_socket, SO_RCVBUF)):
                sock.setsockopt(SOL_SOCKET, option, SMALL_SOCKET_BUFFER)
            self.server_sockets.append(server_socket)
            client_stream = trio.SocketStream(client_socket)
            server_stream = trio.SocketStream(server_socket)
        else:
            client_stream, server_stream = trio.testing.lockstep_stream_pair()
        await loop.core.serve_stream(loop.nursery, server_stream)
        self._stream = client_stream
        self._scope = trio.CancelScope()
        self.unpause()
        self.checker.new_connection()
        self.ws = await loop.nursery.start(self._run, client_stream, self._scope)
        self.connected = True

    async def _run(
        self,
        stream: Any,
        scope: trio.CancelScope,
        task_status: trio.TaskStatus[WebSocketConnection] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with scope:
            async with trio.open_nursery() as nursery:
                ws = await wrap_client_stream(nursery, stream, "rt.test", "/ws/odds")
                task_status.started(ws)
                await self._read(ws)
                await trio.sleep_forever()  # until cut: keep the socket's own tasks

    async def _read(self, ws: WebSocketConnection) -> None:
        while True:
            while self.paused:
                assert self._unpaused is not None
                await self._unpaused.wait()
            try:
                text = await ws.get_message()
            except ConnectionClosed as exc:
                self.violation = f"client {self.name}: the server closed the connection: {exc}"
                return
            try:
                assert isinstance(text, str)
                self.checker.feed(text)
            except ContractViolation as exc:
                self.violation = str(exc)
                return

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_message(json.dumps(message))

    async def cut(self) -> None:
        """Drop the connection abruptly: no close handshake, the stream just ends."""
        assert self._scope is not None
        self._scope.cancel()
        await self._stream.aclose()
        self.connected = False
        self.ws = None

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self._unpaused = trio.Event()

    def unpause(self) -> None:
        self.paused = False
        if self._unpaused is not None:
            self._unpaused.set()

    async def resume(self, loop: TrioLoop, wrong_epoch: bool = False) -> None:
        """Reconnect: resume every market it has seen from the seq of its last message, and
        subscribe afresh to the ones it never received anything of."""
        await self.connect(loop)
        await self.send_resume(sorted(self.wanted), wrong_epoch)
        fresh = sorted(m for m in self.wanted if self.checker.views[m].seq < 0)
        if fresh:
            await self.send({"type": "subscribe", "markets": fresh})

    async def send_resume(self, markets: list[str], wrong_epoch: bool) -> None:
        """Resume ``markets`` (those it has seen) from the seq of the last message of each."""
        offsets: dict[str, Any] = {}
        for m in markets:
            view = self.checker.views[m]
            if view.seq >= 0:
                epoch = "not-the-epoch" if wrong_epoch else None
                view.resumes.append((view.seq, epoch))
                offsets[m] = {"seq": view.seq, "epoch": epoch} if epoch else view.seq
        if offsets:
            self.wanted.update(offsets)
            await self.send({"type": "resume", "offsets": offsets})


# -- the state machine ----------------------------------------------------------------------

KEYS = st.sampled_from("abcd")
VALUES = st.recursive(
    st.none() | st.integers(0, 3),
    lambda inner: st.dictionaries(KEYS, inner, max_size=2),
    max_leaves=4,
)
PATCHES = st.dictionaries(KEYS, VALUES, min_size=1, max_size=3)
MARKET = st.sampled_from(MARKETS)
SOME_MARKETS = st.lists(MARKET, min_size=1, max_size=3, unique=True)
#: Many updates at once; sometimes exactly about a history's worth to one market, so that a
#: client that was away for it resumes right at the edge of what can be replayed.
BURST = st.lists(st.tuples(MARKET, PATCHES), min_size=5, max_size=40) | st.builds(
    lambda market, n, patch: [(market, {**patch, "n": i}) for i in range(n)],
    MARKET,
    st.sampled_from([HISTORY - 1, HISTORY, HISTORY + 1]),
    PATCHES,
)


Op = Callable[[], Awaitable[None]]


class DeliveryContract(RuleBasedStateMachine):
    #: Settings that choose the engine (the memory engine unless a subclass says otherwise).
    def engine_settings(self) -> dict[str, Any]:
        return {}

    def __init__(self) -> None:
        super().__init__()
        self.crashes = _CrashLog()
        logging.getLogger().addHandler(self.crashes)
        self.model = Model()
        self.loop = TrioLoop(self.engine_settings())
        self.model.epoch = self.loop.core.engine.epoch
        self.clients = [Client(f"c{i}", self.model) for i in range(N_CLIENTS)]
        self.ok = True  # every step so far succeeded (teardown checks only then)

    def step(self, afn: Callable[[], Awaitable[T]]) -> T:
        self.ok = False
        result = self.loop.run(afn)
        self.ok = True
        return result

    def _connected(self, *, paused: bool | None = None) -> list[Client]:
        return [c for c in self.clients if c.connected and (paused is None or c.paused == paused)]

    # -- the operations (each rule runs one and waits for quiet; `concurrently` runs several
    #    back to back, with only a few checkpoints between them) --

    def op_publish(self, market: str, patch: dict[str, Any]) -> Op:
        async def go() -> None:
            seq = await self.loop.core.publish(market, patch)
            self.model.published(market, seq, patch)

        return go

    def op_burst(self, items: list[tuple[str, dict[str, Any]]]) -> Op:
        async def go() -> None:
            updates = await self.loop.core.engine.publish_many(
                [(f"market:{m}", patch, "patch") for m, patch in items]
            )
            for (market, patch), update in zip(items, updates, strict=True):
                self.model.published(market, update.seq, patch)

        return go

    @staticmethod
    def op_subscribe(client: Client, markets: list[str]) -> Op:
        async def go() -> None:
            client.wanted.update(markets)
            await client.send({"type": "subscribe", "markets": markets})

        return go

    @staticmethod
    def op_unsubscribe(client: Client, markets: list[str]) -> Op:
        async def go() -> None:
            client.wanted.difference_update(markets)
            await client.send({"type": "unsubscribe", "markets": markets})

        return go

    def op_resume(self, client: Client, wrong_epoch: bool) -> Op:
        return lambda: client.resume(self.loop, wrong_epoch)

    @staticmethod
    def op_resume_in_place(client: Client, markets: list[str], wrong_epoch: bool) -> Op:
        return lambda: client.send_resume(markets, wrong_epoch)

    @staticmethod
    def op_pause(client: Client) -> Op:
        async def go() -> None:
            client.pause()

        return go

    @staticmethod
    def op_unpause(client: Client) -> Op:
        async def go() -> None:
            client.unpause()

        return go

    def op_time_passes(self) -> Op:
        async def go() -> None:
            await self.loop.advance(CORE_SETTINGS["room_idle_s"] + 1)

        return go

    # -- the rules --

    @initialize(markets=st.lists(st.lists(MARKET, max_size=3, unique=True), min_size=3, max_size=3))
    def connect_clients(self, markets: list[list[str]]) -> None:
        async def go() -> None:
            for client, wanted in zip(self.clients, markets, strict=True):
                await client.connect(self.loop)
                if wanted:
                    await self.op_subscribe(client, wanted)()

        self.step(go)

    @rule(market=MARKET, patch=PATCHES)
    def publish(self, market: str, patch: dict[str, Any]) -> None:
        self.step(self.op_publish(market, patch))

    @rule(items=BURST)
    def burst(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Many updates at once: the rooms fan them out faster than the sockets drain."""
        self.step(self.op_burst(items))

    @precondition(lambda self: bool(self._connected()))
    @rule(data=st.data(), markets=SOME_MARKETS)
    def subscribe(self, data: st.DataObject, markets: list[str]) -> None:
        client = data.draw(st.sampled_from(self._connected()), label="client")
        self.step(self.op_subscribe(client, markets))

    @precondition(lambda self: any(c.wanted for c in self._connected()))
    @rule(data=st.data())
    def unsubscribe(self, data: st.DataObject) -> None:
        client = data.draw(
            st.sampled_from([c for c in self._connected() if c.wanted]), label="client"
        )
        markets = data.draw(
            st.lists(st.sampled_from(sorted(client.wanted)), min_size=1, unique=True),
            label="markets",
        )
        self.step(self.op_unsubscribe(client, markets))

    @precondition(lambda self: bool(self._connected()))
    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from(self._connected()), label="client")
        self.step(client.cut)

    @precondition(lambda self: any(not c.connected for c in self.clients))
    @rule(data=st.data(), wrong_epoch=st.booleans())
    def resume(self, data: st.DataObject, wrong_epoch: bool) -> None:
        """Reconnect with the offsets last seen (or, sometimes, with an epoch that is not the
        server's: then every market must come back as a snapshot)."""
        client = data.draw(
            st.sampled_from([c for c in self.clients if not c.connected]), label="client"
        )
        self.step(self.op_resume(client, wrong_epoch))

    def _up_to_date_viewers(self) -> list[tuple[Client, str]]:
        return [
            (c, m)
            for c in self._connected(paused=False)
            for m in sorted(c.wanted)
            if c.checker.views[m].seq >= 0
        ]

    @precondition(lambda self: bool(self._up_to_date_viewers()))
    @rule(data=st.data(), n=st.sampled_from([0, 1, HISTORY - 1, HISTORY, HISTORY + 1]))
    def away_for_n_updates(self, data: st.DataObject, n: int) -> None:
        """A client that is up to date drops, misses exactly ``n`` updates of one of its
        markets, and resumes: right at the edge of what the history can replay."""
        client, market = data.draw(st.sampled_from(self._up_to_date_viewers()), label="who")

        async def go() -> None:
            await client.cut()
            await self.op_burst([(market, {"n": i}) for i in range(n)])()
            await client.resume(self.loop)

        self.step(go)

    @precondition(lambda self: bool(self._connected()))
    @rule(data=st.data(), markets=SOME_MARKETS, wrong_epoch=st.booleans())
    def resume_in_place(self, data: st.DataObject, markets: list[str], wrong_epoch: bool) -> None:
        """Resume on the open connection, from the last seq seen of each market (whether
        subscribed or not): the stream goes on from there, by replay or by snapshot."""
        client = data.draw(st.sampled_from(self._connected()), label="client")
        self.step(self.op_resume_in_place(client, markets, wrong_epoch))

    @precondition(lambda self: bool(self._connected(paused=False)))
    @rule(data=st.data())
    def stop_reading(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from(self._connected(paused=False)), label="client")
        self.step(self.op_pause(client))

    @precondition(lambda self: any(c.paused for c in self.clients))
    @rule(data=st.data())
    def catch_up(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from([c for c in self.clients if c.paused]), label="client")
        self.step(self.op_unpause(client))

    @rule()
    def time_passes(self) -> None:
        """Long enough for every room without subscribers to stop."""
        self.step(self.op_time_passes())

    @rule(data=st.data())
    def concurrently(self, data: st.DataObject) -> None:
        """A few operations back to back, each followed by only a few checkpoints, so that
        they overlap with the joins, fan-outs, resyncs and room stops of the ones before."""
        connected = {c.name: c.connected for c in self.clients}
        paused = {c.name: c.paused for c in self.clients}
        wanted = {c.name: set(c.wanted) for c in self.clients}
        ops: list[tuple[Op, int]] = []
        for _ in range(data.draw(st.integers(2, 6), label="how many")):
            on = [c for c in self.clients if connected[c.name]]
            off = [c for c in self.clients if not connected[c.name]]
            kinds = ["publish", "burst", "time passes"]
            if on:
                kinds += ["subscribe", "resume in place", "disconnect", "stop reading", "catch up"]
            if any(wanted[c.name] for c in on):
                kinds.append("unsubscribe")
            if off:
                kinds.append("resume")
            kind = data.draw(st.sampled_from(kinds), label="op")
            if kind == "publish":
                op = self.op_publish(data.draw(MARKET), data.draw(PATCHES))
            elif kind == "burst":
                op = self.op_burst(data.draw(BURST))
            elif kind == "time passes":
                op = self.op_time_passes()
            elif kind == "resume":
                client = data.draw(st.sampled_from(off), label="client")
                op = self.op_resume(client, data.draw(st.booleans(), label="wrong epoch"))
                connected[client.name] = True
                paused[client.name] = False
            elif kind == "unsubscribe":
                client = data.draw(
                    st.sampled_from([c for c in on if wanted[c.name]]), label="client"
                )
                markets = data.draw(
                    st.lists(st.sampled_from(sorted(wanted[client.name])), min_size=1, unique=True)
                )
                wanted[client.name].difference_update(markets)
                op = self.op_unsubscribe(client, markets)
            else:
                client = data.draw(st.sampled_from(on), label="client")
                if kind == "subscribe":
                    markets = data.draw(SOME_MARKETS)
                    wanted[client.name].update(markets)
                    op = self.op_subscribe(client, markets)
                elif kind == "resume in place":
                    markets = data.draw(SOME_MARKETS)
                    wanted[client.name].update(markets)  # at most: unseen ones are skipped
                    op = self.op_resume_in_place(
                        client, markets, data.draw(st.booleans(), label="wrong epoch")
                    )
                elif kind == "disconnect":
                    connected[client.name] = False
                    op = client.cut
                elif kind == "stop reading":
                    paused[client.name] = True
                    op = self.op_pause(client)
                else:
                    paused[client.name] = False
                    op = self.op_unpause(client)
            ops.append((op, data.draw(st.integers(0, 8), label="then checkpoints")))

        async def go() -> None:
            for op, checkpoints in ops:
                await op()
                for _ in range(checkpoints):
                    await trio.lowlevel.checkpoint()

        self.step(go)

    # -- invariants --

    @invariant()
    def every_stream_kept_the_contract(self) -> None:
        self.ok = False
        for client in self.clients:
            if client.violation is not None:
                raise AssertionError(client.violation)
        if self.crashes.records:
            raise AssertionError("an actor crashed:\n" + "\n".join(self.crashes.records))
        self.ok = True

    @invariant()
    def readers_are_up_to_date(self) -> None:
        """Once quiet, a client that reads has received everything of its markets."""
        self.ok = False
        for client in self._connected(paused=False):
            self._check_current(client)
        self.ok = True

    def _check_current(self, client: Client) -> None:
        for market in sorted(client.wanted):
            view = client.checker.views[market]
            expected = self.model.seq(market)
            assert (view.seq, view.state) == (expected, self.model.states[market][expected]), (
                f"client {client.name}, market {market}: holds seq {view.seq} {view.state}, "
                f"the engine is at seq {expected} {self.model.states[market][expected]}"
            )

    def teardown(self) -> None:
        try:
            if self.ok:
                self._final_check()
        finally:
            try:
                self._close()
            finally:
                logging.getLogger().removeHandler(self.crashes)

    def _final_check(self) -> None:
        """The publisher has stopped: the slow readers catch up, the disconnected clients
        resume, and then every client holds the engine's snapshot of each of its markets."""

        async def drain() -> None:
            for client in self.clients:
                client.unpause()
            for client in self.clients:
                if not client.connected:
                    await client.resume(self.loop)

        self.step(drain)
        self.every_stream_kept_the_contract()
        counts: Counter[str] = Counter()
        for client in self.clients:
            counts += client.checker.counts
        for kind in sorted(counts):
            event(kind)

        async def snapshots() -> dict[str, Any]:
            return {m: await self.loop.core.engine.snapshot(f"market:{m}") for m in MARKETS}

        engine = self.step(snapshots)
        for market, snapshot in engine.items():
            assert (snapshot.seq, snapshot.state) == (
                self.model.seq(market),
                self.model.states[market][-1],
            ), f"market {market}: the engine disagrees with the model"
        for client in self._connected():
            for market in sorted(client.wanted):
                view = client.checker.views[market]
                assert view.seq == engine[market].seq, (
                    f"client {client.name}, market {market}: at seq {view.seq}, "
                    f"the snapshot is at seq {engine[market].seq}"
                )
                assert view.state == engine[market].state, (
                    f"client {client.name}, market {market}: state {view.state}, "
                    f"the snapshot is {engine[market].state}"
                )

    def _close(self) -> None:
        async def cut_all() -> None:
            for client in self.clients:
                if client.connected:
                    await client.cut()
                for sock in client.server_sockets:
                    sock.close()  # the server's ends of the socket pairs: nobody else will

        try:
            if self.loop._thread.is_alive():
                self.loop.run(cut_all)
        finally:
            self.loop.close()


DeliveryContract.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDeliveryContract = DeliveryContract.TestCase


class RedisDeliveryContract(DeliveryContract):
    """The same machine on the Redis engine (the session's redis-server, a fresh key prefix
    per run): the seqs, state and log live in Redis, and rooms hear of updates through its
    pub/sub channels and the scripts' replies."""

    def __init__(self) -> None:
        super().__init__()
        assert isinstance(self.loop.core.engine, RedisEngine)

    def engine_settings(self) -> dict[str, Any]:
        server = RedisServer.shared()
        return {"engine_url": server.url, "redis_key_prefix": server.new_prefix()}


RedisDeliveryContract.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRedisDeliveryContract = RedisDeliveryContract.TestCase


async def test_a_room_starting_while_its_topic_is_published_to_serves_its_subscriber(
    autojump_clock: Any,
) -> None:
    """Found by the machine: a room that loads its history while publishes go on used to
    crash in on_start (HistoryGone: the engine's history moved on between the room's reads,
    twice), and the subscribing connection crashed with it."""
    async with open_core(history_size=5) as core:
        for i in range(10):
            await core.publish(1, {"n": i})
        engine = core.engine
        read_history = engine.updates

        async def publish_then_read(topic: str, *, since_seq: int, limit: int) -> list[Any]:
            # Three more published between the room's snapshot and each read of its history.
            await engine.publish_many([(topic, {"m": since_seq}, "patch")] * 3)
            return await read_history(topic, since_seq=since_seq, limit=limit)

        engine.updates = publish_then_read  # type: ignore[method-assign]
        with trio.fail_after(10):  # a crashed connection never answers
            async with core.connect() as ws:
                await send(ws, {"type": "subscribe", "markets": [1]})
                assert (await receive(ws))["type"] == "ack"
                snapshot = await receive(ws)
                assert snapshot["type"] == "snapshot", snapshot
                engine.updates = read_history  # type: ignore[method-assign]
                for i in range(5):
                    await core.publish(1, {"k": i})
                seq, last = snapshot["seq"], (await engine.snapshot("market:1")).seq
                while seq < last:  # and the stream goes on from the snapshot, gapless
                    update = await receive(ws)
                    assert update.get("fromSeq", update["seq"]) == seq + 1, (seq, update)
                    seq = update["seq"]


async def test_a_subscriber_that_left_is_forgotten_even_after_the_table_emptied_once(
    autojump_clock: Any,
) -> None:
    """Found by the machine: once the last subscriber of a topic left, the hub dropped the
    topic's table while the room went on with it; whoever joined next was added to the room's
    orphaned table, and leaving again no longer removed it. The room then kept offering
    updates to it (a resumed subscription met them as a gap, before its replay) and never
    stopped for idleness, holding on to connections long closed."""
    async with open_core(room_idle_s=30.0) as core:
        async with core.connect() as ws:
            for _ in range(2):
                await send(ws, {"type": "subscribe", "markets": [1]})
                assert (await receive(ws))["type"] == "ack"
                assert (await receive(ws))["type"] == "snapshot"
                await send(ws, {"type": "unsubscribe", "markets": [1]})
                assert (await receive(ws))["type"] == "ack"
            rooms = child(core.system.tree(), "rooms")["children"]
            assert [(r["name"], r["info"]["subscribers"]) for r in rooms] == [("market:1", 0)]
        await trio.sleep(31)
        assert core.system.lookup("rooms/market:1") is None  # nobody left: it stopped


async def test_a_resume_of_several_markets_on_an_open_connection_repeats_nothing(
    autojump_clock: Any,
) -> None:
    """Found by the machine: a resume of markets 1 and 2 acknowledged both at once, then left
    and rejoined them one after the other. While it was joining market 1 (which awaits),
    market 2 was still subscribed the old way and got a live update after the ack; its
    replay from the offset then sent that update again."""
    async with open_core() as core:
        await core.publish(2, {"a": 1})
        async with core.connect() as ws:
            await send(ws, {"type": "subscribe", "markets": [2]})
            assert (await receive(ws))["type"] == "ack"
            assert (await receive(ws))["seq"] == 1
            engine = core.engine
            take_snapshot = engine.snapshot

            async def publish_then_snapshot(topic: str) -> Any:
                if topic == "market:1":  # market 1's room is starting for the resume
                    await engine.publish("market:2", {"b": 2})
                return await take_snapshot(topic)

            engine.snapshot = publish_then_snapshot  # type: ignore[method-assign]
            await send(ws, {"type": "resume", "offsets": {"1": 0, "2": 1}})
            assert (await receive(ws))["type"] == "ack"
            seen = []
            with trio.move_on_after(5):
                while True:
                    seen.append(await receive(ws))
            updates = [(m["marketId"], m["seq"]) for m in seen if m["type"] == "odds_update"]
            assert updates == [(2, 2)], seen
