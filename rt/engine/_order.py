"""Per-topic delivery order for an engine whose updates arrive by several paths (sans-IO).

A node of the Redis engine learns of an update in two ways: the reply to its own publish,
and the topic's pub/sub channel (for topics it watches). Replies to concurrent publishes wake
their tasks in any order, and a channel message may come before or after the reply for the
same update. `DeliveryOrder` turns these arrivals into one stream per topic, in seq order
with no repeats, which the engine hands to its listeners:

- an update at or below the last delivered seq of its epoch is a repeat: dropped;
- the next seq is delivered at once, with any held updates that follow it;
- an update past a gap is held while this node still has publishes to that topic in
  flight (their replies may fill the gap); once none is, the held updates are delivered
  in order, gap and all: the missing seqs were published by other nodes, and a listener
  that needs them reads them from the log (a room catches up when it sees a gap);
- an update of another epoch starts the topic afresh (Redis lost its data).
"""

from __future__ import annotations

from rt.model import Update

__all__ = ["DeliveryOrder"]


class _Track:
    __slots__ = ("epoch", "held", "inflight", "seq")

    def __init__(self) -> None:
        self.epoch = ""
        self.seq: int | None = None  # None: nothing delivered yet
        self.held: dict[int, Update] = {}
        self.inflight = 0


class DeliveryOrder:
    """Orders arrivals per topic; every method returns the updates to deliver, in order."""

    def __init__(self) -> None:
        self._tracks: dict[str, _Track] = {}

    def begin(self, topic: str) -> None:
        """A publish to ``topic`` is about to be sent from this node."""
        track = self._tracks.get(topic)
        if track is None:
            track = self._tracks[topic] = _Track()
        track.inflight += 1

    def end(self, answers: list[tuple[str, Update | None]]) -> list[Update]:
        """Publishes begun for these topics are answered, each with its update (None: it failed
        or was cancelled). The updates come out in the order of ``answers`` where their topics
        allow (one batch of publishes reaches the listeners as it was published)."""
        for topic, update in answers:
            track = self._tracks[topic]
            track.inflight -= 1
            if update is not None:
                self._hold(track, update)
        ready: dict[str, list[Update]] = {}
        for topic, _ in answers:
            if topic not in ready:
                ready[topic] = self._flush(self._tracks[topic])
        out: list[Update] = []
        for topic, update in answers:
            if update is None:
                continue
            queue = ready[topic]
            while queue and (queue[0].epoch != update.epoch or queue[0].seq <= update.seq):
                out.append(queue.pop(0))
        for queue in ready.values():
            out += queue
        return out

    def offer(self, update: Update) -> list[Update]:
        """An update heard from elsewhere (the topic's channel, the log)."""
        track = self._tracks.get(update.topic)
        if track is None:
            track = self._tracks[update.topic] = _Track()
        self._hold(track, update)
        return self._flush(track)

    def delivered(self, topic: str, epoch: str, seq: int) -> bool:
        """Whether ``seq`` of ``epoch`` has been delivered (or passed: a later epoch)."""
        track = self._tracks.get(topic)
        if track is None or track.seq is None:
            return False
        return track.epoch != epoch or track.seq >= seq

    def position(self, topic: str) -> tuple[str, int] | None:
        """The epoch and seq last delivered for ``topic``; None if none was."""
        track = self._tracks.get(topic)
        if track is None or track.seq is None:
            return None
        return track.epoch, track.seq

    def topics(self, epoch: str) -> list[str]:
        """Topics with an update delivered in ``epoch``, sorted."""
        return sorted(t for t, k in self._tracks.items() if k.seq is not None and k.epoch == epoch)

    def _hold(self, track: _Track, update: Update) -> None:
        if track.seq is not None and update.epoch == track.epoch and update.seq <= track.seq:
            return  # a repeat
        track.held[update.seq] = update

    def _flush(self, track: _Track) -> list[Update]:
        out: list[Update] = []
        held = track.held
        while held:
            if track.seq is not None:
                # First whatever continues the current epoch, in order.
                following = held.pop(track.seq + 1, None)
                if following is not None and following.epoch == track.epoch:
                    track.seq = following.seq
                    out.append(following)
                    continue
                if following is not None:
                    held[following.seq] = following
            if track.inflight > 0 and track.seq is not None:
                # A gap: the publishes still in flight from here may fill it.
                same_epoch = all(u.epoch == track.epoch for u in held.values())
                if same_epoch:
                    break
            if track.inflight > 0 and track.seq is None:
                break  # the first arrivals: wait until every concurrent publish is answered
            # Nothing of ours can fill the gap: deliver what is held, in order.
            for seq in sorted(held):
                update = held.pop(seq)
                if update.epoch != track.epoch:
                    track.epoch, track.seq = update.epoch, None
                if track.seq is None or update.seq > track.seq:
                    track.seq = update.seq
                    out.append(update)
        return out
