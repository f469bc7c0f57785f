"""The seed documents' own client code, run unchanged against rt.

Seed 001's `OddsWSClient` (a WeChat mini-program class) runs in Node with `wx` shimmed over
the `ws` package (tests/js/, installed by scripts/test with `npm ci`). Its first message on
every open is a `resume` with its offsets, empty at first; it builds REST and WebSocket URLs
from one base URL, so it needs the one port.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import trio

from rt.server import Server

from ._support import make_token, topic

ROOT = Path(__file__).parents[3]
SEED_001 = ROOT.parent / "shared" / "seeds" / "001_46f1fbe528221609.txt"
JS = ROOT / "tests" / "js"


async def test_seed_001_client_sees_no_error_and_no_gap_through_a_dropped_socket(
    server: Server,
) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is needed (scripts/test installs tests/js with npm ci)"
    assert (JS / "node_modules" / "ws").is_dir(), "run `npm ci --prefix tests/js` first"
    total, drop_after = 40, 8
    base_url = f"ws://127.0.0.1:{server.port}"
    argv = [node, str(JS / "seed001_client.mjs"), str(SEED_001), base_url, make_token(5)]
    argv += ["2001", str(total), str(drop_after)]

    async def publish() -> None:
        await trio.sleep(0.5)  # the client subscribes first (not needed for the contract)
        for n in range(1, total + 1):
            await server.hub.publish(topic(2001), {"home": n})
            await trio.sleep(0.05)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish)
            result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True)
    summary = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert summary["errors"] == []
    assert summary["applied"] == list(range(1, total + 1))  # no gap, no duplicate
    assert summary["connects"] >= 2  # it really reconnected (and resumed)
