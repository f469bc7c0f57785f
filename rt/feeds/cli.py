"""``rt sim``: run the upstream simulator on a TCP port until SIGINT or SIGTERM.

rt/cli.py adds the subcommand with `add_sim_parser` and runs it with `run_sim`. This module
also runs on its own: ``python -m rt.feeds.cli sim --port 9000``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import trio

from rt.feeds.simulator import Listening, serve_simulator

__all__ = ["add_sim_parser", "main", "run_sim"]


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def add_sim_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``sim`` to an ``argparse`` subparsers object; returns its parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "sim",
        help="run a simulated upstream odds feed (the feed protocol, docs/feeds.md)",
        description="Serve a simulated upstream odds producer over WebSocket; "
        "prints 'rt sim ready ws://HOST:PORT' once listening.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, required=True, help="port to listen on, 0 = any free")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a random one)")
    p.add_argument("--events", type=_count, default=3, help="live events at once (3)")
    p.add_argument("--markets", type=_count, default=3, help="markets per event (3)")
    p.add_argument("--rate", type=_rate, default=5.0, help="updates per second overall (5)")
    p.add_argument(
        "--match-s", type=float, default=120.0, help="average length of a match in seconds (120)"
    )
    return p


async def _serve_until_signalled(args: argparse.Namespace, ready: Callable[[str], None]) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            listening: Listening = await nursery.start(
                partial(
                    serve_simulator,
                    args.host,
                    args.port,
                    seed=args.seed,
                    events=args.events,
                    markets=args.markets,
                    rate=args.rate,
                    match_s=args.match_s,
                )
            )
            ready(f"rt sim ready {listening.url}")
            async for _ in signals:
                break
            nursery.cancel_scope.cancel(reason="signalled")


def run_sim(args: argparse.Namespace) -> int:
    """Run ``rt sim`` with parsed arguments; returns the exit status."""

    def ready(line: str) -> None:
        print(line, flush=True)

    status = 0
    try:
        trio.run(_serve_until_signalled, args, ready)
    except* OSError as group:
        error = group.exceptions[0]
        print(f"rt sim: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        status = 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rt", description="rt upstream simulator")
    add_sim_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("RT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return run_sim(args)


if __name__ == "__main__":
    raise SystemExit(main())
