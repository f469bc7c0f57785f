"""rt under test: `open_server(settings)` plus the benchmark publisher, in one process.

    RT_JWT_SECRET=... python -m bench.servers.rt_server [--publisher inprocess|none]
        [--engine memory|redis://127.0.0.1:PORT/0]

With ``--publisher inprocess`` (the default) the plan publishes with ``server.hub.publish``,
the same path as the demo feed and POST /admin/odds/override after their HTTP handling; to a
market named ``match:<id>`` (S6) it publishes seed 002's events with the predictions
dialect's publisher, the path of POST /realtime/broadcast after its HTTP handling.
With ``none`` nothing in the server publishes: an external publisher drives rt over its
HTTP API instead (bench/servers/http_publisher.py), so the publish path can be switched to
POST /admin/publish or /ws/publish once rt has them, without touching the scenarios.

rt runs on its defaults (outbox 1,024, history 1,000, 5 connections per user), with the demo
feed off and the JWT secret and admin token from RT_JWT_SECRET and RT_ADMIN_TOKEN.

``--engine redis://...`` puts it on the Redis engine (issue 15's scale-out, bench/scaleout.py):
several of these processes on one Redis are one server, and ``server.hub.publish`` in any of
them reaches the clients of all (every node reads its watched topics from Redis).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

import trio

from rt.dialects.predictions.events import check_event
from rt.dialects.predictions.publisher import EventPublisher
from rt.server import open_server, tune_gc
from rt.settings import Settings

from ..procs import free_port
from . import predictions_plan
from .plan import PublishPlan
from .trio_driver import Wakeup, drive, serve_control


async def main(args: argparse.Namespace) -> None:
    settings = Settings(
        host="127.0.0.1",
        port=args.ws_port or free_port(),
        demo_feed=False,
        engine_url=args.engine,
        jwt_secret=os.environ["RT_JWT_SECRET"],
        admin_token=os.environ.get("RT_ADMIN_TOKEN", ""),
        # Every benchmark client connects from 127.0.0.1, up to 10,000 of them (S3).
        max_connections_per_ip=100_000,
        max_connections=100_000,
    )
    async with open_server(settings) as server, trio.open_nursery() as nursery:
        tune_gc()  # as `rt serve` does
        ready: dict[str, Any] = {
            "ready": True,
            "pid": os.getpid(),
            "ws_port": server.ws_port,
            "http_port": server.http_port,
        }
        if args.publisher == "inprocess":
            plan, wake = PublishPlan(), Wakeup()

            events = EventPublisher.for_server(server)
            published: dict[str, int] = {}

            async def publish(market: str, patch: dict[str, Any]) -> None:
                if market.startswith(predictions_plan.PREFIX):  # S6: seed 002's events
                    n = published[market] = published.get(market, 0) + 1
                    body = predictions_plan.event(market, n, patch)
                    event, _ = check_event(body, ms=server.settings.wall_ms())
                    await events.publish(event)
                else:
                    await server.hub.publish(f"market:{market}", patch)

            ready["control_port"] = await nursery.start(serve_control, plan, wake)
            nursery.start_soon(drive, plan, wake, publish)
        print(json.dumps(ready), flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ws-port", type=int, default=0, help="the one port (HTTP too)")
    parser.add_argument("--publisher", choices=["inprocess", "none"], default="inprocess")
    parser.add_argument("--engine", default="memory", help="memory, or redis://HOST:PORT/DB")
    logging.basicConfig(level=os.environ.get("BENCH_RT_LOG", "WARNING"), stream=sys.stderr)
    try:
        trio.run(main, parser.parse_args())
    except KeyboardInterrupt:
        sys.exit(130)
