"""The /ws/odds subset the baseline servers speak, sans-IO (docs/protocol/kmarket.md).

- subscribe {markets} -> ack, then one snapshot per newly subscribed market;
- resume {offsets} -> ack, then per market the updates after the offset from a bounded
  history (or a snapshot with recovered false), then a resumed message;
- odds_update {marketId, seq, ts, payload}, encoded once per publish.

The baselines call `Session.handle` and `Markets.publish` with no await in between their
own registration of subscribers, so a join is atomic with respect to publishes, as in rt.
Unsubscribe, ping and the error forms are left out: no scenario uses them.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HISTORY_SIZE = 1000  # rt's default history per topic

dumps: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False
).encode


def wire_id(market: str) -> int | str:
    return int(market) if market.isdigit() else market


@dataclass
class Market:
    name: str
    seq: int = 0
    ts: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    history: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=HISTORY_SIZE))

    def snapshot(self, **extra: Any) -> str:
        return dumps(
            {
                "type": "snapshot",
                "marketId": wire_id(self.name),
                "seq": self.seq,
                "ts": self.ts,
                "payload": self.state,
                "epoch": "bench",
                **extra,
            }
        )


class Markets:
    """Every market's seq, state (merge patches applied, one level deep) and history."""

    def __init__(self) -> None:
        self._markets: dict[str, Market] = {}

    def get(self, name: str) -> Market:
        market = self._markets.get(name)
        if market is None:
            market = self._markets[name] = Market(name)
        return market

    def publish(self, name: str, patch: dict[str, Any]) -> str:
        """Apply ``patch``, give it the next seq, and return its frame."""
        market = self.get(name)
        market.seq += 1
        market.ts = int(time.time() * 1000)
        for key, value in patch.items():  # RFC 7396, enough for the bench's flat patches
            if value is None:
                market.state.pop(key, None)
            else:
                market.state[key] = value
        frame = dumps(
            {
                "type": "odds_update",
                "marketId": wire_id(name),
                "seq": market.seq,
                "ts": market.ts,
                "payload": patch,
            }
        )
        market.history.append((market.seq, frame))
        return frame

    def join(self, name: str, since: int | None) -> list[str]:
        """The frames that bring a new subscriber of ``name`` up to date."""
        market = self.get(name)
        if since is None:
            return [market.snapshot()]
        first = market.history[0][0] if market.history else market.seq + 1
        resumed = {"type": "resumed", "marketId": wire_id(name)}
        if since > market.seq or since + 1 < first:
            reason = "epoch_changed" if since > market.seq else "beyond_history"
            return [
                market.snapshot(recovered=False, reason=reason),
                dumps(
                    {
                        **resumed,
                        "recovered": False,
                        "fromSeq": since + 1,
                        "toSeq": market.seq,
                        "reason": reason,
                    }
                ),
            ]
        replay = [frame for seq, frame in market.history if seq > since]
        end = dumps({**resumed, "recovered": True, "fromSeq": since + 1, "toSeq": market.seq})
        return [*replay, end]


class Session:
    """One connection's subscriptions. ``handle`` returns the frames to send, in order, and
    the markets to start sending to (register them before anything is published again)."""

    def __init__(self, markets: Markets) -> None:
        self.markets = markets
        self.subscribed: set[str] = set()

    def handle(self, text: str) -> tuple[list[str], list[str]]:
        try:
            message = json.loads(text)
            kind = message["type"]
            if kind == "subscribe":
                ids = [_canonical(m) for m in message["markets"]]
                frames = [
                    dumps({"type": "ack", "ok": True, "subscribed": [wire_id(m) for m in ids]})
                ]
                joins = [m for m in dict.fromkeys(ids) if m not in self.subscribed]
                for m in joins:
                    frames += self.markets.join(m, None)
                self.subscribed.update(joins)
                return frames, joins
            if kind == "resume":
                offsets = {_canonical(k): int(v) for k, v in message["offsets"].items()}
                ids = [wire_id(m) for m in offsets]
                frames = [dumps({"type": "ack", "ok": True, "subscribed": ids, "resumed": ids})]
                for m, since in offsets.items():
                    frames += self.markets.join(m, since)
                self.subscribed.update(offsets)
                return frames, list(offsets)
            if kind == "ping":
                return [dumps({"type": "pong", "ts": message.get("ts")})], []
            raise ValueError(f"unknown message type {kind!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            error = {"type": "error", "code": "INVALID_MESSAGE", "message": str(exc)}
            return [dumps(error)], []


def _canonical(raw: object) -> str:
    text = str(raw)
    return str(int(text)) if text.isdigit() else text
