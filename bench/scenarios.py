"""The five scenarios. Each takes a started server and fleet and returns one run's results.

S1 fan-out   1,000 clients on one market; the publisher runs as fast as the slowest client
             allows (a credit window of WINDOW publishes, kept by the fleet): delivered
             messages per second, server CPU-seconds per million delivered.
S2 rooms     1,000 clients over 100 markets (10 each), 2,000 publishes/s: latency
             percentiles (from publish, and from the scheduled time), server core use.
S3 memory    10,000 idle clients, each subscribed to one of 100 markets: server RSS growth
             per connection (after gc.collect() in the server, before and after).
S4 churn     connect + subscribe + snapshot + close in a loop on CHURN_LOOPS concurrent
             clients (rt verifies each one's JWT): cycles per second.
S6 filters   the predictions dialect (seed 002): 1,000 clients of both tiers with mixed
             subscriptions and filters over 100 matches, 2,000 events/s; then the same shape
             on KMarket (S2's): latency percentiles and server CPU, side by side.
S5 resume    1,000 clients on one market disconnect, 500 updates are published, then all
             reconnect at once with resume offsets while 50 publishes/s go on: time until
             every client holds the seq that was current when they reconnected. A client
             the server drops or refuses reconnects with an exponential backoff (0.2 s to
             5 s, up to 30 times) and resumes from what it holds; the drops are reported.

Every run also reports the delivery contract as the fleet saw it on every message: gaps and
steps back must be 0, and after the publisher stops every client must reach the last seq.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rt.auth import issue_token

from .procs import BenchError, Fleet, Server
from .servers import predictions_plan
from .trading import core_busy_s

WINDOW = 500  # S1: publishes the server may be ahead of the slowest client (< rt's 768)
CHURN_LOOPS = 50  # S4: concurrent connect/close loops


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    #: (server, fleet, tokens, where to save a profile of the window or None) -> results
    run: Callable[[Server, Fleet, list[str], Path | None], dict[str, Any]]
    workers: int  # fleet processes
    tokens: int  # distinct users needed (rt allows 5 connections per user)
    #: the primary metric, and whether higher is better: picks the best of repeated runs
    metric: str
    higher_is_better: bool


def measure(
    server: Server, fleet: Fleet, seconds: float, *, profile: Path | None = None
) -> dict[str, Any]:
    """One measurement window: messages delivered, latency, CPU of server and fleet."""
    fleet.op("mark")
    finish_profile = None
    if profile is not None:
        from .profile import record

        finish_profile = record(server, seconds, profile)
    before = server.control("stats")
    by0, writes0 = server.cpu_by_process(), server.write_syscalls()
    cpu0, wait0, fleet0, t0 = server.cpu_s(), server.runq_wait_s(), fleet.cpu_s(), time.monotonic()
    time.sleep(seconds)
    stats = fleet.op("stats")
    cpu1, wait1, fleet1, t1 = server.cpu_s(), server.runq_wait_s(), fleet.cpu_s(), time.monotonic()
    by1, writes1 = server.cpu_by_process(), server.write_syscalls()
    after = server.control("stats")
    published = after["total"] - before["total"]
    gc_s = after["gc_s"] - before["gc_s"]
    if finish_profile is not None:
        finish_profile()
    wall = t1 - t0
    delivered = stats["counters"]["window_updates"]
    return {
        "wall_s": round(wall, 3),
        "published": published,
        "publish_rate": round(published / wall, 1),
        "delivered": delivered,
        "delivered_per_s": round(delivered / wall),
        # messages per write syscall of the server (how long its runs were)
        "delivered_per_write": round(delivered / max(writes1 - writes0, 1), 2),
        "server_cpu_s": round(cpu1 - cpu0, 3),
        "server_cores": round((cpu1 - cpu0) / wall, 3),
        # a server of several processes (bench/scaleout.py): the cores each of them used
        "server_cores_by_process": {k: round((by1[k] - by0[k]) / wall, 3) for k in by1},
        # ready to run, but the core was busy with another process (other developers' jobs)
        "server_runq_wait_share": round((wait1 - wait0) / wall, 3),
        "fleet_cores": round((fleet1 - fleet0) / wall, 3),
        "server_gc_share_of_cpu": round(gc_s / max(cpu1 - cpu0, 1e-9), 3),
        "server_gc_collections": [
            a - b for a, b in zip(after["gc_collections"], before["gc_collections"], strict=True)
        ],
        "server_gc_s_by_generation": [
            round(a - b, 3)
            for a, b in zip(after["gc_s_by_generation"], before["gc_s_by_generation"], strict=True)
        ],
        "latency_ms": stats["latency_pt"],
        "latency_from_schedule_ms": stats["latency_st"],
    }


def contract(
    server: Server, fleet: Fleet, *, timeout_s: float = 30, drops_allowed: bool = False
) -> dict[str, Any]:
    """Stop publishing, wait for every client to reach the last seq, report what was seen.

    ``drops_allowed``: connections the server closed (and clients it left disconnected) are
    reported but do not fail the contract, which is then about the messages received (S5's
    clients reconnect and resume, as real clients do)."""
    server.control("stop")
    published = server.published()
    done = fleet.op("wait_seq", targets=published, timeout_s=timeout_s) if published else {}
    stats = fleet.op("stats")
    c = stats["counters"]
    report: dict[str, Any] = {
        "gaps": c["gaps"],
        "steps_back": c["backward"],
        "unexpected": c["unexpected"],
        "errors": c["errors"],
        "closed_unexpectedly": c["closed_unexpectedly"],
        "behind_at_end": done.get("behind", 0),  # connected, yet short of the last seq
        "behind_sample": done.get("sample"),
        "disconnected_at_end": done.get("disconnected_behind", 0),
        "conflated": c["conflated"],
        "resyncs": c["resyncs"],
        "updates_seen": c["updates"],
        "close_codes": stats["close_codes"],  # of connections the server closed
    }
    must_be_zero = ["gaps", "steps_back", "unexpected", "errors", "behind_at_end"]
    if not drops_allowed:
        must_be_zero += ["closed_unexpectedly", "disconnected_at_end"]
    report["ok"] = all(report[k] == 0 for k in must_be_zero)
    return report


def connect(server: Server, fleet: Fleet, clients: list[dict[str, Any]], **args: Any) -> float:
    urls = server.ws_urls
    if len(urls) > 1:  # several nodes of one server (bench/scaleout.py): client i on node i % n
        clients = [{**c, "node": i % len(urls)} for i, c in enumerate(clients)]
        args["urls"] = urls
    r = fleet.op("connect", url=server.ws_url, clients=clients, **args)
    if r["ok"] != len(clients):
        raise BenchError(f"{server.kind}: {r['ok']} of {len(clients)} clients connected: {r}")
    return float(r["elapsed_s"])


def markets(n: int) -> list[str]:
    return [str(m) for m in range(1, n + 1)]


def s1(server: Server, fleet: Fleet, tokens: list[str], profile: Path | None) -> dict[str, Any]:
    connect_s = connect(server, fleet, [{"token": t, "markets": ["1"]} for t in tokens[:1000]])
    fleet.op("credit_start", port=server.ready["control_port"], market="1", window=WINDOW)
    time.sleep(1.5)  # warm up
    window = measure(server, fleet, 8.0 if profile is not None else 5.0, profile=profile)
    fleet.op("credit_stop")
    cpu_per_m = window["server_cpu_s"] / max(window["delivered"], 1) * 1e6
    return {
        "delivered_per_s": window["delivered_per_s"],
        "cpu_s_per_million": round(cpu_per_m, 2),
        # what one whole core would deliver: robust to the share of core 0 the server got
        "delivered_per_cpu_s": round(1e6 / cpu_per_m) if cpu_per_m else None,
        "delivered_per_write": window["delivered_per_write"],
        "fleet_cores": window["fleet_cores"],
        "connect_s": round(connect_s, 2),
        "window": window,
        "contract": contract(server, fleet),
    }


def s2(server: Server, fleet: Fleet, tokens: list[str], profile: Path | None) -> dict[str, Any]:
    rooms = markets(100)
    clients = [{"token": t, "markets": [rooms[i % 100]]} for i, t in enumerate(tokens[:1000])]
    connect(server, fleet, clients)
    measure_s = 8.0 if profile is not None else 5.0
    rate = int(os.environ.get("BENCH_S2_RATE", "2000"))  # the scenario's is 2,000
    server.control("rate", markets=rooms, rate=rate, duration_s=measure_s + 10)
    time.sleep(2.0)  # warm up
    window = measure(server, fleet, measure_s, profile=profile)
    lag = server.control("stats")["lag_max_ms"]
    return {
        "p50_ms": window["latency_ms"]["p50_ms"],
        "p99_ms": window["latency_ms"]["p99_ms"],
        "p99_from_schedule_ms": window["latency_from_schedule_ms"]["p99_ms"],
        "server_cores": window["server_cores"],
        "server_cpu_ms_per_1k_publishes": round(
            window["server_cpu_s"] / max(window["published"], 1) * 1e6, 1
        ),
        "publish_rate": window["publish_rate"],
        "rate_asked": rate,
        "publisher_lag_max_ms": lag,
        "delivered_per_write": window["delivered_per_write"],
        "window": window,
        "contract": contract(server, fleet),
    }


def s3(server: Server, fleet: Fleet, tokens: list[str], profile: Path | None) -> dict[str, Any]:
    n, rooms = 10_000, markets(100)
    server.control("rate", markets=rooms, rate=10_000, count=len(rooms))  # one per market
    server.wait_published(len(rooms))
    gc_before = server.control("gc")
    time.sleep(0.5)
    before = server.rss_kb()
    clients = [{"token": t, "markets": [rooms[i % 100]]} for i, t in enumerate(tokens[:n])]
    connect_s = connect(server, fleet, clients, concurrency=200, timeout_s=110)
    time.sleep(1.0)
    gc_after = server.control("gc")
    time.sleep(0.5)
    after = server.rss_kb()
    # Still subscribed: one more update per market must reach all 10,000.
    server.control("rate", markets=rooms, rate=10_000, count=len(rooms))
    server.wait_published(2 * len(rooms))
    return {
        "kb_per_connection": round((after - before) / n, 2),
        # objects the cyclic GC tracks (and walks in every full collection), per connection
        "gc_objects_per_connection": round(
            (gc_after["tracked_objects"] - gc_before["tracked_objects"]) / n, 1
        ),
        "gc_objects_per_connection_by_type": _per_connection(gc_before, gc_after, n),
        "rss_before_mb": round(before / 1024, 1),
        "rss_after_mb": round(after / 1024, 1),
        "connect_s": round(connect_s, 2),
        "connects_per_s": round(n / connect_s),
        "contract": contract(server, fleet),
    }


def _per_connection(before: dict[str, Any], after: dict[str, Any], n: int) -> dict[str, float]:
    """The types whose tracked objects grew most, per connection."""
    grew = {t: c - before["types"].get(t, 0) for t, c in after["types"].items()}
    top = sorted(grew.items(), key=lambda item: -item[1])[:20]
    return {t: round(c / n, 2) for t, c in top if c >= n / 10}


def s4(server: Server, fleet: Fleet, tokens: list[str], profile: Path | None) -> dict[str, Any]:
    server.control("burst", market="1", count=1)
    server.wait_published(1)
    loops = tokens[:CHURN_LOOPS]
    urls = server.ws_urls  # several nodes: loop i on node i % n
    fleet.op("churn", url=server.ws_url, urls=urls, tokens=loops, market="1", duration_s=1)
    finish_profile = None
    if profile is not None:
        from .profile import record

        finish_profile = record(server, 5.0, profile)
    cpu0, wait0, by0 = server.cpu_s(), server.runq_wait_s(), server.cpu_by_process()
    fleet0, cores0 = fleet.cpu_s(), core_busy_s()
    r = fleet.op("churn", url=server.ws_url, urls=urls, tokens=loops, market="1", duration_s=5)
    cpu, wait = server.cpu_s() - cpu0, server.runq_wait_s() - wait0
    fleet_cpu, cores = fleet.cpu_s() - fleet0, core_busy_s()
    by = {k: round((v - by0[k]) / r["elapsed_s"], 3) for k, v in server.cpu_by_process().items()}
    if finish_profile is not None:
        finish_profile()
    return {
        "cycles_per_s": round(r["cycles"] / r["elapsed_s"]),
        # what one whole core would do: robust to the share of core 0 the server got
        "cycles_per_cpu_s": round(r["cycles"] / cpu) if cpu else None,
        "cycles": r["cycles"],
        "failed": r["failed"],
        "server_cores": round(cpu / r["elapsed_s"], 3),
        "server_cores_by_process": by,
        "server_runq_wait_share": round(wait / r["elapsed_s"], 3),
        "fleet_cores": round(fleet_cpu / r["elapsed_s"], 3),
        # how busy each core of the machine was (everything on it, /proc/stat)
        "core_busy_share": [
            round((b - a) / r["elapsed_s"], 3) for a, b in zip(cores0, cores, strict=True)
        ],
        "server_cpu_ms_per_cycle": round(cpu / max(r["cycles"], 1) * 1000, 3),
        "contract": {"ok": r["failed"] == 0, "failed": r["failed"]},
    }


def s5(server: Server, fleet: Fleet, tokens: list[str], profile: Path | None) -> dict[str, Any]:
    n, behind = 1000, 500
    connect(server, fleet, [{"token": t, "markets": ["1"]} for t in tokens[:n]])
    server.control("burst", market="1", count=10)
    server.wait_published(10)
    if not fleet.op("wait_seq", targets={"1": 10}, timeout_s=30)["ok"]:
        raise BenchError(f"{server.kind}: clients did not reach seq 10")
    fleet.op("disconnect")
    server.control("burst", market="1", count=behind)
    server.wait_published(10 + behind)
    target = 10 + behind
    server.control("rate", markets=["1"], rate=50, duration_s=90)  # live publishes go on
    cpu0, wait0, t0 = server.cpu_s(), server.runq_wait_s(), time.monotonic()
    by0 = server.cpu_by_process()
    # Several nodes (bench/scaleout.py): each client resumes on the next node, not its own.
    urls, move = server.ws_urls, 1 if len(server.ws_urls) > 1 else 0
    r = fleet.op("resume", urls=urls, move=move, targets={"1": target}, timeout_s=60, retries=30)
    cpu, wait = server.cpu_s() - cpu0, server.runq_wait_s() - wait0
    by = {k: round(v - by0[k], 3) for k, v in server.cpu_by_process().items()}
    wall = time.monotonic() - t0
    report = contract(server, fleet, drops_allowed=True)
    c = fleet.op("stats")["counters"]
    if r["ok"] != n:
        report["ok"] = False
    return {
        "resume_s": round(r["elapsed_s"], 3),
        "caught_up": r["ok"],
        "dropped_by_server": c["closed_unexpectedly"],
        "reconnects": c["reconnects"],
        "disconnected_at_end": report["disconnected_at_end"],
        "server_cpu_s": round(cpu, 3),
        "server_cpu_s_by_process": by,
        "server_runq_wait_share": round(wait / wall, 3),
        "resumed_on_another_node": r["moved"],  # clients sent to a node not their own
        "resumed_messages": c["resumed"],
        "resumed_not_recovered": c["resumed_lost"],
        "contract": report,
    }


def predictions_clients(server: Server, n: int = 1000) -> list[dict[str, Any]]:
    """S6's clients: client i follows match i % 100 + 1, in one of five kinds by i % 10:
    0-2 premium, predictions + odds + matches of its match, no filter; 3-4 premium,
    predictions of its match at confidence >= 0.7; 5-7 free, predictions + matches of its
    match (so prediction_created and match_started only); 8 premium, matches of every match
    in one league; 9 free, predictions of every match at confidence >= 0.9.

    With BENCH_S6_MIX=match-only, kinds 8 and 9 are kind 0 instead: no client takes every
    match, so no event goes to 100 clients at once (it shows what the wide fan-out of the
    every-match subscriptions costs in latency)."""
    leagues = predictions_plan.LEAGUES
    every_match_kinds = os.environ.get("BENCH_S6_MIX", "mixed") != "match-only"
    now = time.time()
    clients = []
    for i in range(n):
        match = i % 100 + 1
        kind = i % 10
        one = {"match_ids": [match]}
        if kind <= 2 or (kind >= 8 and not every_match_kinds):
            tier, subs = "premium", [("predictions", one), ("odds", one), ("matches", one)]
        elif kind <= 4:
            tier, subs = "premium", [("predictions", {**one, "min_confidence": 0.7})]
        elif kind <= 7:
            tier, subs = "free", [("predictions", one), ("matches", one)]
        elif kind == 8:
            tier, subs = "premium", [("matches", {"leagues": [leagues[i // 10 % 4]]})]
        else:
            tier, subs = "free", [("predictions", {"min_confidence": 0.9})]
        token, _ = issue_token(
            secret=server.secret,
            user_id=i + 1,
            scope_markets=None,
            ttl_s=3600,
            now_s=now,
            tier=tier,
        )
        every_match = "match_ids" not in subs[0][1]
        clients.append(
            {
                "token": token,
                "tier": tier,
                "subs": [{"subscription_type": k, "filters": f} for k, f in subs],
                "markets": list(range(1, 101)) if every_match else [match],
            }
        )
    return clients


def _load(
    server: Server, fleet: Fleet, rooms: list[str], profile: Path | None = None
) -> dict[str, Any]:
    """2,000 publishes/s over ``rooms``: one measured window, and the contract after it."""
    server.control("rate", markets=rooms, rate=2000, duration_s=15)
    time.sleep(2.0)  # warm up
    window = measure(server, fleet, 6.0, profile=profile)
    delivered = max(window["delivered"], 1)
    return {
        "p50_ms": window["latency_ms"]["p50_ms"],
        "p99_ms": window["latency_ms"]["p99_ms"],
        "p999_ms": window["latency_ms"]["p999_ms"],
        "p99_from_schedule_ms": window["latency_from_schedule_ms"]["p99_ms"],
        "delivered_per_s": window["delivered_per_s"],
        "publish_rate": window["publish_rate"],
        "server_cores": window["server_cores"],
        "server_cpu_ms_per_1k_publishes": round(
            window["server_cpu_s"] / max(window["published"], 1) * 1e6, 1
        ),
        "server_cpu_us_per_delivered": round(window["server_cpu_s"] / delivered * 1e6, 2),
        "window": window,
        "contract": contract(server, fleet),
    }


def s6(server: Server, fleet: Fleet, tokens: list[str], profile: Path | None) -> dict[str, Any]:
    # KMarket first, S2's shape on markets 1001-1100 (the matches are 1-100).
    rooms = [str(1000 + m) for m in range(1, 101)]
    connect(
        server, fleet, [{"token": t, "markets": [rooms[i % 100]]} for i, t in enumerate(tokens)]
    )
    kmarket = _load(server, fleet, rooms)
    fleet.op("disconnect")
    predictions_fleet = Fleet(1)
    try:
        r = predictions_fleet.op(
            "connect",
            url=server.ws_url.replace("/ws/odds?", "/realtime/ws?"),
            dialect="predictions",
            rules=predictions_plan.rules(),
            clients=predictions_clients(server),
        )
        if r["ok"] != 1000:
            raise BenchError(f"{server.kind}: {r['ok']} of 1000 predictions clients connected: {r}")
        matches = [f"{predictions_plan.PREFIX}{m}" for m in range(1, 101)]
        predictions = _load(server, predictions_fleet, matches, profile)
    finally:
        predictions_fleet.close()
    ok = kmarket["contract"]["ok"] and predictions["contract"]["ok"]
    flat = {
        f"{k}_{dialect}": v
        for dialect, run in (("kmarket", kmarket), ("predictions", predictions))
        for k, v in run.items()
        if not isinstance(v, dict)
    }
    return {
        "mix": os.environ.get("BENCH_S6_MIX", "mixed"),
        **flat,
        "p99_ratio": round(predictions["p99_ms"] / kmarket["p99_ms"], 2)
        if kmarket["p99_ms"]
        else None,
        "cpu_per_delivered_ratio": round(
            predictions["server_cpu_us_per_delivered"] / kmarket["server_cpu_us_per_delivered"], 2
        ),
        "kmarket": kmarket,
        "predictions": predictions,
        "contract": {
            "ok": ok,
            "kmarket": kmarket["contract"],
            "predictions": predictions["contract"],
        },
    }


SCENARIOS = {
    s.name: s
    for s in [
        Scenario(
            name="s1",
            title="fan-out: 1,000 clients on one market, max rate",
            run=s1,
            workers=1,
            tokens=1000,
            metric="delivered_per_cpu_s",
            higher_is_better=True,
        ),
        Scenario(
            name="s2",
            title="rooms: 1,000 clients over 100 markets, 2,000 publishes/s",
            run=s2,
            workers=1,
            tokens=1000,
            metric="p99_from_schedule_ms",
            higher_is_better=False,
        ),
        Scenario(
            name="s3",
            title="memory: 10,000 idle subscribed clients",
            run=s3,
            workers=2,
            tokens=10_000,
            metric="kb_per_connection",
            higher_is_better=False,
        ),
        Scenario(
            name="s4",
            title="churn: connect + subscribe + close",
            run=s4,
            workers=1,
            tokens=CHURN_LOOPS,
            metric="cycles_per_cpu_s",
            higher_is_better=True,
        ),
        Scenario(
            name="s6",
            title="filters: the predictions dialect (1,000 clients, both tiers, mixed filters, "
            "2,000 events/s) against the same load on KMarket",
            run=s6,
            workers=1,
            tokens=1000,
            metric="p99_ms_predictions",
            higher_is_better=False,
        ),
        Scenario(
            name="s5",
            title="resume: 1,000 clients 500 updates behind reconnect at once",
            run=s5,
            workers=1,
            tokens=1000,
            metric="resume_s",
            higher_is_better=False,
        ),
    ]
}
