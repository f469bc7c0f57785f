"""The Engine interface: where a topic's sequence numbers, history and state live.

Every engine (memory, Redis) passes the same contract suite, tests/rt/engine/test_contract.py,
which checks each guarantee stated here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from rt.model import Json, Snapshot, Update, UpdateKind

#: Called synchronously with every published update; see `Engine.add_listener`.
Listener = Callable[[Update], None]

#: Called synchronously with a watched topic whose updates may have been missed; see
#: `Engine.add_gap_listener`.
GapListener = Callable[[str], None]

#: Called synchronously with True when the engine can publish again, False when it cannot;
#: see `Engine.add_status_listener`.
StatusListener = Callable[[bool], None]


class EngineUnavailable(ConnectionError):
    """The engine cannot reach the store it shares with other nodes (Redis is down).

    Raised by publish (nothing was published, or nothing that was acknowledged), snapshot and
    updates; the message says which store and why. It is the store's fault, not the caller's:
    an HTTP route answers 503, and a publisher tries again later.
    """


def check_publish_item(topic: str, data: Json, kind: UpdateKind) -> None:
    """ValueError unless ``(topic, data, kind)`` can be published (see `Engine.publish`)."""
    if kind == "patch":
        if not isinstance(data, dict):
            raise ValueError(
                f"{topic}: a patch must be a JSON object, got {type(data).__name__} {data!r:.80}"
            )
    elif kind != "event":
        raise ValueError(f"{topic}: kind must be 'patch' or 'event', got {kind!r}")


class UpdateListeners:
    """The listeners of an engine's updates, kept alike by every engine (``_listeners``
    is set up by the engine's ``__init__``)."""

    _listeners: list[Listener]

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        try:
            self._listeners.remove(listener)
        except ValueError:
            raise ValueError(f"{listener!r} is not a listener of {self!r}") from None


class Engine(Protocol):
    """Orders the updates of each topic and keeps its state and a bounded history.

    Guarantees, per topic:

    - Updates get ``seq`` 1, 2, 3, ... with no gaps and no repeats, in the order ``publish``
      accepts them.
    - The topic's position is ``(epoch, seq)``. The epoch changes whenever the topic's history
      is lost (the memory engine draws one random epoch per instance, so a restart changes it),
      and a seq only means something together with its epoch.
    - The state is a JSON object: ``{}`` merged with every ``patch`` update in seq order
      (RFC 7396); ``event`` updates leave it unchanged.
    - The history holds the most recent updates (how many is the engine's setting) and always
      ends at the latest seq.
    - Listeners see every update of every topic exactly once, in seq order per topic. An update
      published through this engine object reaches them before its ``publish`` returns. An
      engine shared between processes (Redis) also delivers the updates that other processes
      publish, for the topics this process `watch`es (routing, not flooding: a node hears
      only the topics it serves); when it may have missed some (its connection to the store
      came back, or the store lost its data and the epoch changed), it tells its gap
      listeners, which read what they missed with `updates`.

    Updates and snapshots that an engine hands out are shared, read-only values: the ``data`` of
    an Update is the publisher's object, not a copy, so neither the publisher nor a listener may
    mutate it. A snapshot's ``state`` belongs to the caller.
    """

    #: Whether other processes share this engine's topics (Redis): a process then hears
    #: only the topics it `watch`es.
    shared: bool

    async def publish(self, topic: str, data: Json, *, kind: UpdateKind = "patch") -> Update:
        """Append one update to ``topic`` and return it.

        Assigns seq = previous + 1 (the first is 1) and stamps ``ts`` from the engine's wall
        clock in milliseconds, appends the update to the topic's history (dropping the oldest
        beyond its bound), merges ``data`` into the state when ``kind`` is "patch", then calls
        every listener with the update, before returning. A "patch" whose data is not an object
        raises ValueError and publishes nothing (it would replace the state with a non-object).
        An exception raised by a listener propagates to the publisher, after the update has been
        published; the listeners after it are not called.
        """
        ...

    async def publish_many(self, items: Sequence[tuple[str, Json, UpdateKind]]) -> list[Update]:
        """Publish ``(topic, data, kind)`` items in order, as `publish` would; return the updates.

        Every item is checked before any is published, so a ValueError publishes nothing.
        """
        ...

    async def snapshot(self, topic: str) -> Snapshot:
        """Return the state of ``topic`` at its latest seq, with that update's ``ts``.

        A topic never published has seq 0, ts 0 and state ``{}``. The epoch is always the
        engine's current epoch for the topic. The state is the caller's own copy.
        """
        ...

    async def updates(self, topic: str, *, since_seq: int, limit: int) -> list[Update]:
        """Return the updates of ``topic`` after ``since_seq``, oldest first, at most ``limit``.

        Returns [] when ``since_seq`` is at or beyond the latest seq. Raises HistoryGone when an
        update after ``since_seq`` has already been dropped from the history (since_seq + 1 is
        older than the oldest seq held): replaying would leave a gap, so the caller needs a
        snapshot. Raises ValueError when ``since_seq`` < 0 or ``limit`` < 1. The caller checks
        the epoch: seqs of another epoch mean nothing here.
        """
        ...

    def topics(self) -> list[str]:
        """Return every topic that has been published to in the current epoch, sorted.

        An engine shared between processes knows only the topics this process published to
        or watched.
        """
        ...

    def position(self, topic: str) -> tuple[str, int]:
        """Return ``(epoch, latest seq)`` of ``topic`` without awaiting; seq 0 if never published.

        Since it cannot yield, no publish can slip in between reading it and acting on it. An
        engine shared between processes answers with the latest update delivered to this
        process's listeners, and with the current epoch as soon as it has learnt of a new one.
        """
        ...

    async def watch(self, topic: str) -> None:
        """Deliver to the listeners the updates of ``topic`` that other processes publish.

        Returns once they will be (an update published after that reaches the listeners), or
        once the connection to the store was lost (the gap listeners hear of ``topic`` when
        it is back). Counted: each watch needs its own `unwatch`. A no-op for an engine that
        no other process shares.
        """
        ...

    def unwatch(self, topic: str) -> None:
        """Undo one `watch` of ``topic``; after the last, other processes' updates stop."""
        ...

    @property
    def available(self) -> bool:
        """Whether publishes can go through now (False while a shared store is out of reach)."""
        ...

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every update published from now on, until it is removed.

        Listeners run synchronously inside ``publish`` and must not block or await: a room
        listener hands the update on with a ``*_nowait`` call. A listener added twice is called
        twice.
        """
        ...

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener`` (one registration of it); ValueError if it is not registered.

        A listener may remove itself (or another) while being called; the update being
        delivered still reaches every listener registered when its publish began.
        """
        ...

    def add_gap_listener(self, listener: GapListener) -> None:
        """Call ``listener(topic)`` for each watched topic whose updates may have been missed.

        Called synchronously, like a listener, after `position` already reflects what the
        engine knows again (a new epoch, or the same one).
        """
        ...

    def add_status_listener(self, listener: StatusListener) -> None:
        """Call ``listener(available)`` whenever `available` changes (synchronously)."""
        ...

    async def aclose(self) -> None:
        """Release the engine's resources. Idempotent.

        Afterwards every other async method raises trio.ClosedResourceError.
        """
        ...
