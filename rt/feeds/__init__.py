"""Upstream odds feeds: the feed protocol, the UpstreamFeed actor, and a simulator.

docs/feeds.md describes the protocol, the event topic model and the feed's life cycle.
"""

from rt.feeds.events import EventView
from rt.feeds.messages import (
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
from rt.feeds.simulator import Listening, Simulator, SimulatorServer, serve_simulator
from rt.feeds.specs import HubSink, SimulatorActor, demo_feed_specs, feed_specs
from rt.feeds.transport import Connect, UpstreamSocket, open_upstream
from rt.feeds.upstream import (
    FeedSink,
    FeedState,
    Ledger,
    UpstreamFeed,
    UpstreamLost,
    default_backoff,
)
from rt.topics import EVENT_PREFIX, event_topic

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
