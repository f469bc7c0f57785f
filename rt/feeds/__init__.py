"""Upstream odds feeds: the feed protocol, the UpstreamFeed actor, and a simulator.

docs/feeds.md describes the protocol, the event topic model and the feed's life cycle.
"""

from .events import EVENT_PREFIX, EventView, event_topic
from .messages import (
    Alive,
    BetSettlement,
    BetStop,
    EventState,
    FeedProtocolError,
    FeedSnapshot,
    MarketState,
    OddsChange,
    SnapshotRequest,
    Unknown,
    UpstreamMessage,
    decode_request,
    decode_upstream,
    encode,
)
from .simulator import Listening, Simulator, SimulatorServer, serve_simulator
from .specs import HubSink, SimulatorActor, demo_feed_specs, feed_specs
from .transport import Connect, UpstreamSocket, open_upstream
from .upstream import FeedSink, FeedState, Ledger, UpstreamFeed, UpstreamLost, default_backoff

__all__ = [
    "EVENT_PREFIX",
    "Alive",
    "BetSettlement",
    "BetStop",
    "Connect",
    "EventState",
    "EventView",
    "FeedProtocolError",
    "FeedSink",
    "FeedSnapshot",
    "FeedState",
    "HubSink",
    "Ledger",
    "Listening",
    "MarketState",
    "OddsChange",
    "Simulator",
    "SimulatorActor",
    "SimulatorServer",
    "SnapshotRequest",
    "Unknown",
    "UpstreamFeed",
    "UpstreamLost",
    "UpstreamMessage",
    "UpstreamSocket",
    "decode_request",
    "decode_upstream",
    "default_backoff",
    "demo_feed_specs",
    "encode",
    "event_topic",
    "feed_specs",
    "open_upstream",
    "serve_simulator",
]
