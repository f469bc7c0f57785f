"""An external publisher for rt: the same plan and control port, publishing over rt's API.

    RT_ADMIN_TOKEN=... python -m bench.servers.http_publisher --http-url http://127.0.0.1:P \
        [--ws-url ws://127.0.0.1:P] --via override|batch|ws

This is the switch point for rt's publish path; every scenario runs unchanged with
``--publish-via``. The sink gets everything the plan says is due at once (up to 1,000
updates, rt's batch limit) and sends it:

- ``override``: one POST /admin/odds/override per update, on a keep-alive connection;
- ``batch``: all of them in one POST /admin/publish;
- ``ws``: as few ``publish`` frames on /ws/publish as rt's frame size limit allows, sent
  together, then their answers read before the next batch (as a real producer would, to
  learn the seqs and be held back when rt is busy);
- ``ws-single``: the same with one update per frame.

It runs on the load generator's core, so rt's CPU is measured without the publisher's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Protocol

import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from .plan import MAX_BATCH, PublishPlan, patch
from .trio_driver import Wakeup, serve_control

#: POST /admin/publish and /ws/publish take at most this many updates at once (rt's limit).
MAX_BATCH_UPDATES = 1000
#: What a /ws/publish frame may hold, below rt's RT_MAX_MESSAGE_BYTES (64 KiB by default).
WS_FRAME_BUDGET_BYTES = 60_000

Due = list[tuple[str, int, int]]  # what PublishPlan.take hands out: (market, seq, scheduled us)


class Sink(Protocol):
    async def publish_many(self, due: Due) -> None: ...


def updates(due: Due) -> list[dict[str, Any]]:
    """The batch items for ``due``, their patches stamped now (``pt``: the publish call)."""
    return [{"marketId": m, "payload": patch(m, seq, st)} for m, seq, st in due]


class OverrideSink:
    """One POST /admin/odds/override per update."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def publish_many(self, due: Due) -> None:
        for market, seq, scheduled_us in due:
            payload = patch(market, seq, scheduled_us)
            reply = await self.client.post(
                "/admin/odds/override", json={"marketId": market, "payload": payload}
            )
            reply.raise_for_status()


class BatchSink:
    """One POST /admin/publish per batch the plan hands out."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def publish_many(self, due: Due) -> None:
        reply = await self.client.post("/admin/publish", json={"updates": updates(due)})
        reply.raise_for_status()


class WsSink:
    """``publish`` frames on /ws/publish: as few as fit rt's frame limit (64 KiB by default),
    or with ``single`` one update per frame (as a producer that sends each update as it
    comes would); all sent before their answers are read, so a batch costs one round trip."""

    def __init__(self, ws: WebSocketConnection, *, single: bool = False) -> None:
        self.ws = ws
        self.frames = 0
        self.single = single

    async def publish_many(self, due: Due) -> None:
        texts, chunk, size = [], [], 0
        for item in updates(due):
            text = json.dumps(item)
            if chunk and (self.single or size + len(text) > WS_FRAME_BUDGET_BYTES):
                texts.append(self._frame(chunk))
                chunk, size = [], 0
            chunk.append(text)
            size += len(text) + 1
        texts.append(self._frame(chunk))
        first = self.frames - len(texts) + 1
        for text in texts:
            await self.ws.send_message(text)
        for expected in range(first, self.frames + 1):
            answer = json.loads(await self.ws.get_message())
            if answer.get("type") != "published" or answer.get("id") != expected:
                raise RuntimeError(f"/ws/publish answered {answer!r}")

    def _frame(self, items: list[str]) -> str:
        self.frames += 1
        return f'{{"type":"publish","id":{self.frames},"updates":[{",".join(items)}]}}'


VIAS = ["override", "batch", "ws", "ws-single"]


async def drive_batches(plan: PublishPlan, wake: Wakeup, sink: Sink) -> None:
    """Hand the sink everything the plan says is due (up to rt's batch limit) at once: a
    publisher that fell behind catches up in bigger batches, not in more round trips."""
    while True:
        due = plan.take(time.monotonic())
        while due and len(due) <= MAX_BATCH_UPDATES - MAX_BATCH:
            more = plan.take(time.monotonic())
            if not more:
                break
            due += more
        if due:
            await sink.publish_many(due)
            await trio.lowlevel.checkpoint()
        else:
            await wake.wait(plan.wait_s(time.monotonic()))


async def run(sink: Sink) -> None:
    async with trio.open_nursery() as nursery:
        plan, wake = PublishPlan(), Wakeup()
        control_port = await nursery.start(serve_control, plan, wake)
        nursery.start_soon(drive_batches, plan, wake, sink)
        ready = {"ready": True, "pid": os.getpid(), "control_port": control_port}
        print(json.dumps(ready), flush=True)


async def main(args: argparse.Namespace) -> None:
    token = os.environ["RT_ADMIN_TOKEN"]
    if args.via in ("ws", "ws-single"):
        if not args.ws_url:
            raise SystemExit(f"--via {args.via} needs --ws-url")
        headers = [(b"authorization", f"Bearer {token}".encode())]
        async with open_websocket_url(
            f"{args.ws_url.rstrip('/')}/ws/publish", extra_headers=headers
        ) as ws:
            await run(WsSink(ws, single=args.via == "ws-single"))
        return
    async with httpx.AsyncClient(
        base_url=args.http_url, headers={"authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        await run(BatchSink(client) if args.via == "batch" else OverrideSink(client))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-url", required=True)
    parser.add_argument("--ws-url", help="rt's WebSocket listener (for --via ws)")
    parser.add_argument("--via", choices=VIAS, default="override")
    try:
        trio.run(main, parser.parse_args())
    except KeyboardInterrupt:
        sys.exit(130)
