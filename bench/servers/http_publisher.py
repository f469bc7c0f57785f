"""An external publisher for rt: the same plan and control port, publishing over HTTP.

    RT_ADMIN_TOKEN=... python -m bench.servers.http_publisher --http-url http://127.0.0.1:P

This is the switch point for rt's publish path. ``--via override`` (today) sends each update
as one POST /admin/odds/override on a keep-alive connection. When rt has the batch route
(POST /admin/publish) and the publisher WebSocket (/ws/publish), they become two more
``Sink`` classes here, and every scenario runs unchanged with ``--publish-via batch|ws``.
It runs on the load generator's core, so rt's CPU is measured without the publisher's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx
import trio

from .plan import PublishPlan
from .trio_driver import Wakeup, drive, serve_control

VIAS = ["override"]


class OverrideSink:
    """One POST /admin/odds/override per update (rt's only publish route today)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def publish(self, market: str, patch: dict[str, Any]) -> None:
        reply = await self.client.post(
            "/admin/odds/override", json={"marketId": market, "payload": patch}
        )
        reply.raise_for_status()


async def main(args: argparse.Namespace) -> None:
    headers = {"authorization": f"Bearer {os.environ['RT_ADMIN_TOKEN']}"}
    async with (
        httpx.AsyncClient(base_url=args.http_url, headers=headers, timeout=10) as client,
        trio.open_nursery() as nursery,
    ):
        sink = OverrideSink(client)
        plan, wake = PublishPlan(), Wakeup()
        control_port = await nursery.start(serve_control, plan, wake)
        nursery.start_soon(drive, plan, wake, sink.publish)
        ready = {"ready": True, "pid": os.getpid(), "control_port": control_port}
        print(json.dumps(ready), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-url", required=True)
    parser.add_argument("--via", choices=VIAS, default="override")
    try:
        trio.run(main, parser.parse_args())
    except KeyboardInterrupt:
        sys.exit(130)
