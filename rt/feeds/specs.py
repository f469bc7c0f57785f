"""Wiring feeds into a server: child specs for the ``feeds`` supervisor.

`feed_specs` gives one `UpstreamFeed` per configured upstream URL; `demo_feed_specs` gives
rt serve's demo: a simulator and a feed connected to it in process. `HubSink` is what a feed
needs of the server, made of the Hub.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from actors import Actor, ChildSpec, Restart
from rt.feeds.simulator import Simulator, SimulatorServer
from rt.feeds.transport import Connect, open_upstream
from rt.feeds.upstream import Ledger, UpstreamFeed
from rt.settings import wall_ms as default_wall_ms

if TYPE_CHECKING:
    from rt.delivery.hub import Hub
    from rt.model import Snapshot, Update

__all__ = ["HubSink", "SimulatorActor", "demo_feed_specs", "feed_specs"]


class HubSink:
    """A `FeedSink` over the server's Hub (publishes fan out to subscribers)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def publish(self, topic: str, patch: dict[str, Any]) -> Update:
        return await self.hub.publish(topic, patch)

    async def snapshot(self, topic: str) -> Snapshot:
        return await self.hub.engine.snapshot(topic)


def feed_specs(
    urls: Sequence[str],
    hub: Hub,
    *,
    grace_s: float,
    connect: Connect = open_upstream,
) -> list[ChildSpec]:
    """One permanent `UpstreamFeed` child per URL, named ``up1``, ``up2``, … (in order)."""
    sink = HubSink(hub)
    return [
        ChildSpec(
            f"up{index}",
            partial(UpstreamFeed, url, sink, grace_s=grace_s, connect=connect, ledger=Ledger()),
            restart=Restart.PERMANENT,
        )
        for index, url in enumerate(urls, 1)
    ]


class SimulatorActor(Actor):
    """Runs a `SimulatorServer` as an actor, e.g. as rt serve's in-process demo upstream.

    The server (the simulated world) is made once, outside the actor, so a restart keeps the
    world where it was, as a real upstream would be after rt's actor restarted.
    """

    kind: ClassVar[str] = "simulator"
    mailbox_capacity: ClassVar[int] = 8

    def __init__(self, server: SimulatorServer) -> None:
        self.server = server

    def describe(self) -> dict[str, Any]:
        return self.server.statistics()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.server.run)
            await self.stop_requested.wait()
            nursery.cancel_scope.cancel(reason="stop requested")


def demo_feed_specs(
    hub: Hub,
    *,
    seed: int | None = None,
    events: int = 3,
    markets: int = 3,
    rate: float = 5.0,
    grace_s: float = 5.0,
    wall_ms: Callable[[], int] = default_wall_ms,
) -> list[ChildSpec]:
    """rt serve's demo upstream: a simulator and a feed connected to it in process.

    Two children for the feeds supervisor, in this order: ``sim`` (a `SimulatorActor`) and
    ``sim-feed`` (an `UpstreamFeed` whose WebSocket runs over memory streams: no port is
    opened).
    """
    server = SimulatorServer(
        Simulator(seed=seed, events=events, markets=markets, rate=rate), wall_ms=wall_ms
    )
    return [
        ChildSpec("sim", partial(SimulatorActor, server)),
        ChildSpec(
            "sim-feed",
            partial(
                UpstreamFeed,
                "sim://demo",
                HubSink(hub),
                grace_s=grace_s,
                connect=server.connect,
                ledger=Ledger(),
            ),
        ),
    ]
