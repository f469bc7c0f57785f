"""Publish rate of the engines: the memory engine against the Redis engine, side by side.

    python -m bench.engine_rate [--count 5000]

Starts a redis-server of its own on a free loopback port (Debian's package; scripts/test
installs it), then for each engine publishes ``count`` patches: to one topic one at a time,
to one topic from 8 concurrent publishers, and round robin over 100 topics. Prints a
markdown table (publishes per second, and the mean time of one publish) and the JSON.
Every publish is checked: seqs per topic must come out 1, 2, 3 ... with no gap.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from rt.engine import Engine, connect_engine

from .procs import free_port


def start_redis(
    prefix: Sequence[str] = (), directory: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A fresh redis-server on a free loopback port, persisting nothing, and its URL;
    ``prefix`` goes before the command (taskset), ``directory`` is its working directory."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: redis-server is needed (apt-get install redis-server)")
    port = free_port()
    directory = directory or tempfile.mkdtemp(prefix="rt-bench-redis-")
    process = subprocess.Popen(
        [*prefix, binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
         "--save", "", "--appendonly", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.01)
    process.kill()
    raise SystemExit("bench: redis-server did not start")


async def measure(engine: Engine, count: int) -> dict[str, Any]:
    async def one_topic() -> None:
        for n in range(count):
            await engine.publish("market:1", {"n": n})

    async def concurrent() -> None:
        async def publisher(k: int) -> None:
            for n in range(count // 8):
                await engine.publish("market:2", {"k": k, "n": n})

        async with trio.open_nursery() as nursery:
            for k in range(8):
                nursery.start_soon(publisher, k)

    async def many_topics() -> None:
        for n in range(count):
            await engine.publish(f"market:{100 + n % 100}", {"n": n})

    results: dict[str, Any] = {}
    cases: list[tuple[str, Callable[[], Awaitable[None]], int]] = [
        ("one topic", one_topic, count),
        ("one topic, 8 publishers", concurrent, count // 8 * 8),
        ("100 topics", many_topics, count),
    ]
    for name, run, published in cases:
        started = time.perf_counter()
        await run()
        elapsed = time.perf_counter() - started
        results[name] = {
            "publishes_per_s": round(published / elapsed),
            "mean_ms": round(elapsed / published * 1000, 3),
        }
    # The contract: every seq once, in order, per topic.
    assert engine.position("market:1")[1] == count
    assert engine.position("market:2")[1] == count // 8 * 8
    assert sum(engine.position(f"market:{100 + t}")[1] for t in range(100)) == count
    return results


async def main(count: int) -> dict[str, Any]:
    directory = tempfile.TemporaryDirectory(prefix="rt-bench-redis-")
    redis, url = start_redis(directory=directory.name)
    try:
        out: dict[str, Any] = {}
        for name, engine_url in (("memory", "memory"), ("redis", url)):
            async with connect_engine(
                engine_url, history_size=1000, wall_ms=lambda: int(time.time() * 1000)
            ) as engine:
                out[name] = await measure(engine, count)
        return out
    finally:
        redis.kill()
        redis.wait()
        directory.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()
    results = trio.run(main, args.count)
    print("| case | memory publishes/s | Redis publishes/s | Redis mean ms per publish |")
    print("|---|---|---|---|")
    for case in results["memory"]:
        m, r = results["memory"][case], results["redis"][case]
        print(f"| {case} | {m['publishes_per_s']:,} | {r['publishes_per_s']:,} | {r['mean_ms']} |")
    print(json.dumps(results))
