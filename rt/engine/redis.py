"""The Redis engine: seq, state and history of every topic in Redis, shared by many rt nodes.

Theory of operation. Each publish is one server-side script (rt/engine/redis_scripts.py)
that assigns the seq, merges the patch into the state, appends to the topic's Stream
(trimmed to the history length) and publishes the update on the topic's pub/sub channel,
atomically. Snapshots and history are read by scripts too, so each answer is one position.

Routing, not flooding: a node subscribes to the channel of a topic only while it `watch`es
it (while a room serves it), all on one reader connection, so it decodes only the updates
its own clients want. The updates a node publishes reach its listeners from the script's
reply; those of other nodes from the channel. `DeliveryOrder` (rt/engine/_order.py) merges
the two into one stream per topic, in seq order with no repeats.

Pub/sub is at most once: a node that loses its reader connection misses what is published
meanwhile. When the connection is back it subscribes again, reads the epoch (a Redis that
restarted empty makes a new one), and tells its gap listeners about every watched topic: each
room reads what it missed from the Stream, or reloads from a snapshot when the epoch changed.
While the connection is down the engine is unavailable: publishes are refused with
`EngineUnavailable` (so nothing acknowledged is lost) and the status listeners are told.

Only this module imports coredis.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import coredis
import coredis.exceptions
import tenacity
import trio

from rt.engine._base import (
    Engine,
    EngineUnavailable,
    GapListener,
    Listener,
    StatusListener,
    UpdateListeners,
    check_publish_item,
)
from rt.engine._order import DeliveryOrder
from rt.engine.redis_scripts import PUBLISH, SNAPSHOT, UPDATES
from rt.engine.redis_url import RedisTarget, parse_redis_url
from rt.model import HistoryGone, Json, Snapshot, Update, UpdateKind

__all__ = ["RedisEngine", "open_redis_engine"]

log = logging.getLogger(__name__)

#: coredis logs a traceback of its own for every connection it loses or cannot make; the
#: engine says the same in one line (who, what, what next), so those stay quiet.
logging.getLogger("coredis").setLevel(logging.CRITICAL)

_KIND_CODE: dict[str, str] = {"patch": "p", "event": "e"}
_CODE_KIND: dict[str, UpdateKind] = {"p": "patch", "e": "event"}

#: What Redis raises when it is out of reach (coredis wraps the socket's errors).
_LOST = (coredis.exceptions.ConnectionError, TimeoutError, OSError)


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _json(data: Json) -> str:
    # Compact, as the scripts expect (see redis_scripts.py); NaN and Infinity are not JSON.
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def default_backoff() -> tenacity.wait.wait_base:
    """Reconnect delays: 0.1 s doubling up to 5 s, plus up to 0.1 s of jitter."""
    return tenacity.wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1)


def _reason(exc: BaseException) -> str:
    """The innermost cause's message: 'Connection refused', not coredis's wrapper."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class RedisEngine(UpdateListeners, Engine):
    """An `Engine` whose topics live in Redis; open it with `open_redis_engine`.

    ``key_prefix`` starts every key and channel (several deployments can share one Redis).
    ``history_size`` is the Stream length kept per topic. ``wall_ms`` stamps ``ts``.
    """

    shared = True

    def __init__(
        self,
        target: RedisTarget,
        *,
        key_prefix: str = "rt:",
        history_size: int = 1000,
        wall_ms: Callable[[], int] = _wall_ms,
        timeout_s: float = 5.0,
        backoff: tenacity.wait.wait_base | None = None,
    ) -> None:
        if history_size < 1:
            raise ValueError(f"history_size must be at least 1, got {history_size}")
        self.target = target
        self.key_prefix = key_prefix
        self._history_size = history_size
        self._wall_ms = wall_ms
        self._timeout_s = timeout_s
        self._backoff = backoff or default_backoff()
        self._epoch_key = f"{key_prefix}epoch"
        self._channel_prefix = f"{key_prefix}c:".encode()
        options: dict[str, Any] = {
            "host": target.host,
            "port": target.port,
            "db": target.db,
            "username": target.username,
            "password": target.password,
            "ssl": target.tls,
            "ssl_ca_certs": target.ssl_ca_certs,
            "ssl_certfile": target.ssl_certfile,
            "ssl_keyfile": target.ssl_keyfile,
            "ssl_cert_reqs": target.ssl_cert_reqs,
            "connect_timeout": timeout_s,
            "stream_timeout": timeout_s,
            # One attempt per call: a lost Redis is the engine's to report, not to hide.
            "retry_policy": coredis.retry.NoRetryPolicy(),
        }
        self._redis: coredis.Redis[bytes] = coredis.Redis(**options)
        self._publish_script = self._redis.register_script(PUBLISH)
        self._snapshot_script = self._redis.register_script(SNAPSHOT)
        self._updates_script = self._redis.register_script(UPDATES)
        self._epoch = ""
        self._order = DeliveryOrder()
        self._listeners: list[Listener] = []
        self._gap_listeners: list[GapListener] = []
        self._status_listeners: list[StatusListener] = []
        self._delivered = trio.Event()  # set and replaced after each delivery
        self._watchers: dict[str, int] = {}
        self._subscribing: dict[bytes, list[trio.Event]] = {}
        self._reader: Any = None  # the reader's coredis connection while it is up
        self._available = False
        self._busy = 0
        self._idle = trio.Event()
        self._idle.set()
        self._closed = False
        self._last_error = ""
        self._failures = 0  # attempts that failed since the reader was last up
        self._task_status: trio.TaskStatus[None] | None = None

    def __repr__(self) -> str:
        return f"<RedisEngine {self.target.shown} prefix={self.key_prefix!r} epoch={self._epoch}>"

    @property
    def epoch(self) -> str:
        """The epoch this node last learnt from Redis."""
        return self._epoch

    @property
    def available(self) -> bool:
        return self._available and not self._closed

    # -- publishing --------------------------------------------------------------------

    async def publish(self, topic: str, data: Json, *, kind: UpdateKind = "patch") -> Update:
        [update] = await self.publish_many([(topic, data, kind)])
        return update

    async def publish_many(self, items: Sequence[tuple[str, Json, UpdateKind]]) -> list[Update]:
        await self._checkpoint()
        for topic, data, kind in items:
            check_publish_item(topic, data, kind)
        if not items:
            return []
        texts = []
        for topic, data, _ in items:
            try:
                texts.append(_json(data))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{topic}: the data is not JSON ({exc})") from None
        self._check_available("publish")
        keys = [self._epoch_key]
        args: list[str | int] = [secrets.token_hex(4), self._history_size]
        for (topic, _, kind), text in zip(items, texts, strict=True):
            keys += [self._key("m", topic), self._key("l", topic)]
            args += [self._key("c", topic), _KIND_CODE[kind], self._wall_ms(), text]
        for topic, _, _ in items:
            self._order.begin(topic)
        published: list[Update | None] = [None] * len(items)
        try:
            reply = await self._call(self._publish_script, keys, args, "publish")
            epoch = reply[0].decode()
            for i, ((topic, data, kind), seq) in enumerate(zip(items, reply[1:], strict=True)):
                ts = int(args[2 + 4 * i + 2])
                published[i] = Update(topic, epoch, int(seq), ts, kind, data)
            self._learn_epoch(epoch)
        finally:
            answers = [(topic, u) for (topic, _, _), u in zip(items, published, strict=True)]
            self._deliver(self._order.end(answers))
        updates = [u for u in published if u is not None]
        # Held behind a gap that a concurrent publish of ours fills: wait for it.
        for update in updates:
            while not self._order.delivered(update.topic, update.epoch, update.seq):
                await self._delivered.wait()
        return updates

    # -- reading ---------------------------------------------------------------------------

    async def snapshot(self, topic: str) -> Snapshot:
        await self._checkpoint()
        keys = [self._epoch_key, self._key("m", topic)]
        epoch, seq, ts, state = await self._call(
            self._snapshot_script, keys, [secrets.token_hex(4)], "snapshot"
        )
        self._learn_epoch(epoch.decode())
        return Snapshot(topic, epoch.decode(), int(seq), int(ts), json.loads(state))

    async def updates(self, topic: str, *, since_seq: int, limit: int) -> list[Update]:
        await self._checkpoint()
        if since_seq < 0:
            raise ValueError(f"since_seq must be 0 or more, got {since_seq}")
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, got {limit}")
        keys = [self._epoch_key, self._key("m", topic), self._key("l", topic)]
        args = [secrets.token_hex(4), since_seq, limit]
        epoch_bytes, first_seq, entries = await self._call(self._updates_script, keys, args, "read")
        epoch = epoch_bytes.decode()
        self._learn_epoch(epoch)
        if first_seq:
            raise HistoryGone(topic, since_seq, int(first_seq))
        found = []
        for entry_id, fields in entries:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            seq = int(entry_id.partition(b"-")[0])
            kind = _CODE_KIND[values[b"k"].decode()]
            data = json.loads(values[b"d"])
            found.append(Update(topic, epoch, seq, int(values[b"t"]), kind, data))
        return found

    def topics(self) -> list[str]:
        return self._order.topics(self._epoch)

    def position(self, topic: str) -> tuple[str, int]:
        known = self._order.position(topic)
        if known is None or known[0] != self._epoch:
            return self._epoch, 0
        return known

    # -- listeners and watching ----------------------------------------------------------

    def add_gap_listener(self, listener: GapListener) -> None:
        self._gap_listeners.append(listener)

    def add_status_listener(self, listener: StatusListener) -> None:
        self._status_listeners.append(listener)

    async def watch(self, topic: str) -> None:
        await self._checkpoint()
        count = self._watchers.get(topic, 0)
        self._watchers[topic] = count + 1
        reader = self._reader
        if count or reader is None:
            return  # already subscribed, or will be when the reader connects
        channel = self._key("c", topic).encode()
        done = trio.Event()
        self._subscribing.setdefault(channel, []).append(done)
        self._begin()
        try:
            reader.send_command(b"SUBSCRIBE", channel)
            await done.wait()  # set by the reader on the ack, or when it loses the connection
        finally:
            self._end()

    def unwatch(self, topic: str) -> None:
        count = self._watchers.get(topic, 0)
        if count > 1:
            self._watchers[topic] = count - 1
            return
        if count == 0:
            raise ValueError(f"{topic!r} is not watched by {self!r}")
        del self._watchers[topic]
        reader = self._reader
        if reader is not None:
            try:
                reader.send_command(b"UNSUBSCRIBE", self._key("c", topic).encode())
            except _LOST:
                pass  # the reader is going down: nothing to unsubscribe from

    def watched(self) -> list[str]:
        """The topics watched now, sorted (for tests and the operator)."""
        return sorted(self._watchers)

    def statistics(self) -> dict[str, Any]:
        return {
            "url": self.target.shown,
            "key_prefix": self.key_prefix,
            "available": self.available,
            "epoch": self._epoch,
            "watched": len(self._watchers),
            "last_error": self._last_error,
        }

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether a command of this engine is waiting for Redis."""
        return self._busy > 0

    async def wait_idle(self) -> None:
        """Return once no command of this engine is waiting for Redis (tests use it to tell
        a quiet system from one whose replies are on the wire)."""
        while self._busy:
            await self._idle.wait()

    async def aclose(self) -> None:
        self._closed = True
        self._set_available(False)
        await trio.lowlevel.checkpoint()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect (retrying with backoff until Redis answers), report started, then keep the
        reader connected until cancelled. The coredis client must be open (`open_redis_engine`
        opens it around this)."""
        self._task_status = task_status
        while True:
            retrying = tenacity.AsyncRetrying(
                wait=self._backoff,
                retry=tenacity.retry_if_exception_type(_LOST),
                sleep=self._sleep_before_retry,
            )
            try:
                await retrying(self._read)
            except _ReaderLost:
                continue  # it was up: reconnect at once, the backoff starts again

    async def _sleep_before_retry(self, delay: float) -> None:
        self._set_available(False)
        log.log(
            logging.WARNING if self._failures == 1 else logging.DEBUG,
            "cannot reach Redis at %s (%s); retrying with backoff",
            self.target.shown,
            self._last_error,
        )
        await trio.sleep(float(delay))

    async def _read(self) -> None:
        """One reader connection: subscribe to every watched topic, learn the epoch, then
        deliver what the channels bring until the connection is lost: raises one of _LOST
        if it could not be made, _ReaderLost if it was up."""
        pool = self._redis.connection_pool
        try:
            connection = await pool.get_connection()
        except _LOST as exc:
            self._failures += 1
            self._last_error = _reason(exc)
            raise
        up = False
        try:
            channels = [self._key("c", t).encode() for t in self._watchers]
            if channels:
                connection.send_command(b"SUBSCRIBE", *channels)
            candidate = secrets.token_hex(4)
            epoch = await self._call_raw(
                self._redis.set(
                    self._epoch_key, candidate, condition=coredis.PureToken.NX, get=True
                )
            )
            if epoch is None:
                epoch = await self._call_raw(self._redis.get(self._epoch_key))
            self._reader = connection
            task_status, self._task_status = self._task_status, None
            self._learn_epoch(epoch.decode(), quiet=task_status is not None)
            self._set_available(True)
            self._failures = 0
            up = True
            if task_status is not None:
                log.info("connected to Redis at %s (epoch %s)", self.target.shown, self._epoch)
                task_status.started()
            else:
                log.warning("Redis at %s is back (epoch %s)", self.target.shown, self._epoch)
                self._tell_gaps()
            async for message in connection.push_messages:
                self._on_push(message)
            raise coredis.exceptions.ConnectionError("the reader connection closed")
        except _LOST as exc:
            self._last_error = _reason(exc)
            if not up:
                self._failures += 1
                raise
            self._set_available(False)
            log.warning(
                "lost Redis at %s (%s); publishes are refused until it is back",
                self.target.shown,
                self._last_error,
            )
            raise _ReaderLost from None
        finally:
            self._reader = None
            for waiters in self._subscribing.values():
                for done in waiters:
                    done.set()
            self._subscribing.clear()
            connection.invalidate()

    def _on_push(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == b"message":
            channel: bytes = message[1]
            topic = channel[len(self._channel_prefix) :].decode()
            epoch, seq, ts, code, data = json.loads(message[2])
            update = Update(topic, epoch, seq, ts, _CODE_KIND[code], data)
            if epoch != self._epoch:
                self._learn_epoch(epoch)
            self._deliver(self._order.offer(update))
        elif kind == b"subscribe":
            waiters = self._subscribing.get(message[1])
            if waiters:
                waiters.pop(0).set()
                if not waiters:
                    del self._subscribing[message[1]]

    # -- helpers ---------------------------------------------------------------------------

    def _key(self, kind: str, topic: str) -> str:
        return f"{self.key_prefix}{kind}:{topic}"

    def _deliver(self, updates: list[Update]) -> None:
        if not updates:
            return
        try:
            for update in updates:
                for listener in tuple(self._listeners):
                    listener(update)
        finally:
            self._delivered.set()
            self._delivered = trio.Event()

    def _learn_epoch(self, epoch: str, *, quiet: bool = False) -> None:
        if epoch == self._epoch:
            return
        previous, self._epoch = self._epoch, epoch
        if previous and not quiet:
            log.warning(
                "Redis at %s has a new epoch %s (was %s): its data was lost; every watched "
                "topic reloads",
                self.target.shown,
                epoch,
                previous,
            )
            self._tell_gaps()

    def _tell_gaps(self) -> None:
        for topic in list(self._watchers):
            for listener in tuple(self._gap_listeners):
                listener(topic)

    def _set_available(self, available: bool) -> None:
        if available == self._available:
            return
        self._available = available
        for listener in tuple(self._status_listeners):
            listener(available)

    def _check_available(self, what: str) -> None:
        if not self._available:
            raise EngineUnavailable(
                f"Redis at {self.target.shown} is unreachable ({self._last_error or 'connecting'})"
                f": {what} refused"
            )

    async def _call(self, script: Any, keys: list[str], args: list[Any], what: str) -> Any:
        self._begin()
        try:
            return await script(keys=keys, args=args)
        except _LOST as exc:
            self._last_error = _reason(exc)
            raise EngineUnavailable(
                f"Redis at {self.target.shown} is unreachable ({self._last_error}): {what} refused"
            ) from None
        finally:
            self._end()

    async def _call_raw(self, request: Any) -> Any:
        self._begin()
        try:
            return await request
        finally:
            self._end()

    def _begin(self) -> None:
        self._busy += 1
        if self._idle.is_set():
            self._idle = trio.Event()

    def _end(self) -> None:
        self._busy -= 1
        if self._busy == 0:
            self._idle.set()

    async def _checkpoint(self) -> None:
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError(f"{self!r} is closed")


class _ReaderLost(Exception):
    """The reader's connection was up and is lost (reconnect at once, backoff from 1)."""


@asynccontextmanager
async def open_redis_engine(
    url: str,
    *,
    key_prefix: str = "rt:",
    history_size: int = 1000,
    wall_ms: Callable[[], int] = _wall_ms,
    timeout_s: float = 5.0,
) -> AsyncIterator[RedisEngine]:
    """Open a `RedisEngine` on ``url``; yields once Redis has answered (retrying until then).

    ValueError at once for a URL that cannot be right.
    """
    engine = RedisEngine(
        parse_redis_url(url),
        key_prefix=key_prefix,
        history_size=history_size,
        wall_ms=wall_ms,
        timeout_s=timeout_s,
    )
    # The client's own tasks (one per connection) live in a task group it opens here.
    async with engine._redis, trio.open_nursery() as nursery:
        await nursery.start(engine.serve)
        try:
            yield engine
        finally:
            await engine.aclose()
            nursery.cancel_scope.cancel()
