"""Order round trips and market data of rt's trading dialect (seed 003) on one core.

    python -m bench.trading [--seconds 20] [--repeats 1] [--traders 100] [--subscribers 1000]

Starts ``python -m rt.cli serve`` on core 0 (``taskset -c 0``) with the demo feed off (no
market maker: the traders trade with each other), the trading port off (/ws/trade on the one
port), and the connection and inbound-rate limits raised above what 1,100 clients from
127.0.0.1 need; mints one token per user with ``POST /api/ws/token``; then drives it from
bench/loadgen/trading.mjs on core 1:

- the subscribers (1,000 users) each authenticate and subscribe to orderbook, trade and
  ticker of IX2301 and IF2301, and check every message: an orderbook delta's ``prev_seq`` must
  be the seq of the instrument's last orderbook message (a snapshot resets it), a print's
  ``seq`` the last + 1; every 50th subscriber also rebuilds the books and checks their
  checksums;
- the traders (100 users) each keep one request outstanding (a window of 1): submit_order
  (1 lot of IX2301 at 119.5, 120 or 120.5, BUY and SELL in turn, closing a lot it holds when
  it can, else opening within a cap on its exposure) or, when 20 of its orders rest unfilled
  or the oldest has rested 2 s (or it may neither open nor close), cancel_order of that one.
  The round trip is from the send to the ``order_response``. Every private push must carry
  the user's seq + 1.

After a warm-up, the window: order round trips per second and their latency, fills per
second, market-data messages per second delivered to the subscribers, the server's CPU
seconds (/proc/<pid>/stat) and RSS. After it the traders stop, and what each one kept of its
position from its pushes is checked against ``query_position``; every subscriber must end on
the same last seqs. Prints a table and the JSON, and writes bench/results/trading.json.

Each run waits first (at most ``--idle-wait`` seconds) for the machine to be idle, and
reports what else ran on the cores during its window (from /proc/stat), and the lines of
rt's stderr at WARNING or above (``BENCH_LOGS=<dir>`` keeps all of it, ``BENCH_RT_LOG=INFO``
makes it say more). ``--profile`` runs py-spy on rt during the window
(bench/results/profiles/trading-rt.txt; py-spy shares core 1 with the load generator, so a
profiled run's figures are not saved). Exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .procs import (
    LOADGEN_CORE,
    SERVER_CORE,
    BenchError,
    Fleet,
    _Process,
    cpu_seconds,
    free_port,
    log_problems,
    machine,
    pin_self,
    pinned,
    rss_kb,
    rt_ready,
    rt_serve_env,
    runq_wait_seconds,
    terminate,
)

RESULTS = Path(__file__).resolve().parent / "results"
INSTRUMENTS = ["IX2301", "IF2301"]
TRADED = "IX2301"
PRICES = [119.5, 120.0, 120.5]
#: A trader cancels its oldest resting order once this many of its orders rest unfilled, or
#: once that one has rested CANCEL_AFTER_MS; and, when it may neither open nor close, the
#: oldest resting one (or after STUCK_MS its oldest order, resting or not).
MAX_LIVE = 20
CANCEL_AFTER_MS = 2000
STUCK_MS = 250
#: A trader opens only while its lots held plus its live OPEN orders are below this (1 lot of
#: IX2301 at 120 holds 1,200 of margin; every account starts with 1,000,000).
MAX_EXPOSURE = 20
#: Every how many subscribers one rebuilds the books and checks their checksums.
CHECKSUM_EVERY = 50

#: Counted over the whole run; each must be 0.
VIOLATIONS = [
    "book_prev_seq_violations",
    "book_delta_before_snapshot",
    "print_seq_gaps",
    "print_seq_back",
    "private_seq_gaps",
    "private_seq_back",
    "checksum_mismatches",
    "push_before_response",  # an order's pushes must come after its order_response
]
#: The violations as the table shows them.
VIOLATION_GROUPS = [
    ("book_prev_seq_violations", "book_delta_before_snapshot"),
    ("print_seq_gaps", "print_seq_back"),
    ("private_seq_gaps", "private_seq_back", "push_before_response"),
    ("checksum_mismatches",),
]
#: Also must be 0: the server refused or dropped something, or said something unexpected.
ERRORS = [
    "errors",
    "unexpected",
    "response_mismatches",
    "negative_available",
    "auth_failures",
    "closed_unexpectedly",
    "conn_errors",
]
#: Allowed by the protocol for a client that falls behind, but reported.
DEGRADED = ["md_resyncs", "book_resnapshots", "private_resyncs", "book_conflated"]


def core_busy_s() -> list[float]:
    """Busy seconds of each core since boot (everything but idle and iowait), /proc/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    busy = []
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                values = [int(v) for v in fields]
                busy.append((sum(values[:8]) - values[3] - values[4]) / ticks)
    return busy


def wait_idle(limit_s: float, below_cores: float = 0.15) -> float:
    """Wait (at most ``limit_s``) until the machine's cores were busy less than
    ``below_cores`` over one second; the last such measure."""
    deadline = time.monotonic() + limit_s
    while True:
        before = sum(core_busy_s())
        time.sleep(1.0)
        busy = sum(core_busy_s()) - before
        if busy < below_cores or time.monotonic() >= deadline:
            return round(busy, 3)


class RtServer:
    """``python -m rt.cli serve`` on SERVER_CORE, configured from RT_* variables only."""

    def __init__(self, *, secret: str, admin_token: str, timeout_s: float = 30) -> None:
        self.port = free_port()
        self.env_shown = {
            "RT_HOST": "127.0.0.1",
            "RT_PORT": str(self.port),
            "RT_TRADING_PORT": "off",
            "RT_DEMO_FEED": "false",
            "RT_MAX_CONNECTIONS_PER_IP": "100000",
            "RT_MAX_CONNECTIONS": "100000",
            "RT_INBOUND_RATE_PER_S": "1000000",
            "RT_INBOUND_BURST_MESSAGES": "1000000",
            "RT_LOG_LEVEL": os.environ.get("BENCH_RT_LOG", "WARNING"),
        }
        env = rt_serve_env(self.env_shown, secret=secret, admin_token=admin_token)
        argv = [*pinned(SERVER_CORE), sys.executable, "-m", "rt.cli", "serve"]
        self._serve = _Process("trading-rt", argv, env, timeout_s, parse=rt_ready)
        self.proc = self._serve.proc
        self.pid = self.proc.pid  # taskset execs the server: the same pid
        with open(f"/proc/{self.pid}/comm") as f:
            if f.read().strip() == "taskset":
                raise BenchError("taskset did not exec the server")

    def stop(self, timeout_s: float = 15) -> dict[str, Any]:
        """A graceful stop (SIGKILL if it takes longer than ``timeout_s``); its stderr is
        ``log_text()`` from then on."""
        started = time.monotonic()
        if self.proc.poll() is not None:
            self._serve.close_log()
            return {"exited_before_stop": True, "returncode": self.proc.returncode}
        killed = terminate(self.proc, timeout_s)
        self._serve.close_log()
        return {
            "returncode": self.proc.returncode,
            "killed": killed,
            "stop_s": round(time.monotonic() - started, 2),
        }

    def log_text(self) -> str:
        return self._serve.stderr


def mint_tokens(port: int, admin_token: str, users: list[str]) -> dict[str, str]:
    """One token per user from POST /api/ws/token, over one keep-alive connection."""
    tokens: dict[str, str] = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"}
    try:
        for user in users:
            body = json.dumps({"userId": user, "ttlSeconds": 3600})
            for attempt in range(2):  # once more on a fresh connection if the server closed it
                try:
                    conn.request("POST", "/api/ws/token", body, headers)
                    response = conn.getresponse()
                    data = response.read()
                    break
                except (http.client.HTTPException, ConnectionError):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    if attempt == 1:
                        raise
            if response.status != 200:
                raise BenchError(f"POST /api/ws/token for {user}: {response.status} {data[:200]!r}")
            tokens[user] = json.loads(data)["token"]
    finally:
        conn.close()
    return tokens


class TradingFleet(Fleet):
    """bench/loadgen/trading.mjs on LOADGEN_CORE, spoken to as Fleet speaks to fleet.mjs."""

    def __init__(self, subscriber_workers: int, nice: int) -> None:
        self._start(
            "trading.mjs",
            "--subscriber-workers",
            str(subscriber_workers),
            "--subscriber-nice",
            str(nice),
        )


def run_once(args: argparse.Namespace, profile: Path | None = None) -> dict[str, Any]:
    idle_before = wait_idle(args.idle_wait)
    admin_token = secrets.token_urlsafe(32)
    server = RtServer(secret=secrets.token_urlsafe(32), admin_token=admin_token)
    fleet: TradingFleet | None = None
    result: dict[str, Any] = {}
    try:
        traders = [f"trader-{i}" for i in range(1, args.traders + 1)]
        subscribers = [f"md-{i}" for i in range(1, args.subscribers + 1)]
        t = time.monotonic()
        tokens = mint_tokens(server.port, admin_token, traders + subscribers)
        tokens_s = time.monotonic() - t
        fleet = TradingFleet(args.subscriber_workers, args.subscriber_nice)
        connected = fleet.op(
            "connect",
            url=f"ws://127.0.0.1:{server.port}/ws/trade",
            traders=[{"user": u, "token": tokens[u]} for u in traders],
            subscribers=[{"user": u, "token": tokens[u]} for u in subscribers],
            instruments=INSTRUMENTS,
            concurrency=50,
            checksum_every=CHECKSUM_EVERY,
            timeout_s=100,
        )
        if connected["ok"] != len(traders) + len(subscribers):
            raise BenchError(f"not every client connected: {connected}")
        rss_connected = rss_kb(server.pid)
        fleet.op(
            "start",
            instrument=TRADED,
            prices=PRICES,
            max_live=MAX_LIVE,
            cancel_after_ms=CANCEL_AFTER_MS,
            stuck_ms=STUCK_MS,
            max_exposure=MAX_EXPOSURE,
        )
        time.sleep(args.warmup)
        fleet.op("mark")
        cpu0, runq0, fleet0 = cpu_seconds(server.pid), runq_wait_seconds(server.pid), fleet.cpu_s()
        cores0, self0 = core_busy_s(), time.process_time()
        wall0 = time.monotonic()
        finish_profile = None
        if profile is not None:
            from .profile import record

            finish_profile = record(server, args.seconds, profile)  # type: ignore[arg-type]
        deadline = wall0 + args.seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 1.0))
        stats = fleet.op("stats")
        cpu1, runq1, fleet1 = cpu_seconds(server.pid), runq_wait_seconds(server.pid), fleet.cpu_s()
        cores1, self1 = core_busy_s(), time.process_time()
        wall1 = time.monotonic()
        rss_window = rss_kb(server.pid)
        if finish_profile is not None:
            finish_profile()
        stopped = fleet.op("stop", timeout_s=20, quiet_ms=500)
        verified = fleet.op("verify", timeout_s=10)
        final = fleet.op("stats")
        result = summarise(
            args,
            stats=stats,
            final=final,
            stopped=stopped,
            verified=verified,
            connected=connected,
            server_cpu_s=cpu1 - cpu0,
            server_runq_s=runq1 - runq0,
            fleet_cpu_s=fleet1 - fleet0,
            wall_s=wall1 - wall0,
            rss_connected_kb=rss_connected,
            rss_window_kb=rss_window,
        )
        # What else ran during the window: on the server's core, and on both together.
        busy = [b - a for a, b in zip(cores0, cores1, strict=True)]
        ours = (cpu1 - cpu0) + (fleet1 - fleet0) + (self1 - self0)
        result["machine_load"] = {
            "busy_cores_before_run": idle_before,
            "other_on_server_core": round((busy[SERVER_CORE] - (cpu1 - cpu0)) / (wall1 - wall0), 3),
            "other_on_all_cores": round((sum(busy) - ours) / (wall1 - wall0), 3),
        }
        result["tokens_s"] = round(tokens_s, 2)
        result["profiled"] = profile is not None
    except BenchError as exc:
        failure: BenchError | None = exc
    else:
        failure = None
    finally:
        if fleet is not None:
            fleet.close()
        exit_info = server.stop()
        log = server.log_text()
    if failure is not None:
        raise BenchError(f"{failure}\nrt's stderr (last 3,000 characters):\n{log[-3000:]}")
    result["server"]["exit"] = exit_info
    result["server"]["log"] = log_problems(log)
    return result


def summarise(args: argparse.Namespace, **m: Any) -> dict[str, Any]:
    stats, final, verified = m["stats"], m["final"], m["verified"]
    window = stats["window_s"]
    c = stats["counters"]
    checks = final["checks"]  # over the whole run, after the traders stopped
    md = c["md_orderbook"] + c["md_trade"] + c["md_ticker"]
    trad, subs = verified["traders"], verified["subscribers"]
    violations = {k: checks.get(k, 0) for k in VIOLATIONS}
    errors = {k: checks.get(k, 0) for k in ERRORS}
    degraded = {k: checks.get(k, 0) for k in DEGRADED}
    end_checks = {
        "positions_checked": trad["checked"],
        "position_mismatches": trad["mismatches"],
        "position_queries_unanswered": trad["no_answer"],
        "net_lots_over_all_traders": trad["net_lots"],
        "lots_held_long_short": [trad["long_lots"], trad["short_lots"]],
        "subscribers_checked": subs["checked"],
        "subscribers_behind_at_end": subs["behind"],
        "subscriber_workers_behind": subs["workers_behind"],
        "last_seqs": subs["last"],
        "requests_unanswered_at_stop": m["stopped"]["outstanding"],
        "quiet_after_stop": m["stopped"]["quiet"],
    }
    ok = (
        not any(violations.values())
        and not any(errors.values())
        and trad["mismatches"] == 0
        and trad["no_answer"] == 0
        and trad["net_lots"] == 0
        and subs["behind"] == 0
        and subs["workers_behind"] == 0
        and m["stopped"]["outstanding"] == 0
        and stats["open"]["traders"] == args.traders
        and stats["open"]["subscribers"] == args.subscribers
    )
    failures = stats["failures"]
    return {
        "order_round_trips_per_s": round(c["responses"] / window),
        # the round trips of the window by kind (answered), and the requests sent in it
        "submits_per_s": round(stats["latency"]["submit"]["n"] / window),
        "cancels_per_s": round(stats["latency"]["cancel"]["n"] / window),
        "submits_sent_per_s": round(c["submits"] / window),
        "cancels_sent_per_s": round(c["cancels"] / window),
        "latency_ms": stats["latency"],
        "fills_per_s": round(c["fills_private"] / 2 / window),
        "md_messages_per_s": round(md / window),
        "md_messages_per_s_by_type": {
            k: round(c[f"md_{k}"] / window) for k in ("orderbook", "trade", "ticker")
        },
        "md_per_subscriber_per_s": round(md / window / args.subscribers, 1),
        "md_age_ms": stats["md_age_ms"],
        "private_push_age_ms": stats["push_age_ms"],
        "private_pushes_per_s": round(c["pushes"] / window),
        "failures": failures,
        "cancels_by_rule": stats["cancels_by_rule"],
        "failed_share": round(sum(failures.values()) / max(1, c["responses"]), 4),
        "violations": violations,
        "errors": errors,
        "degraded": degraded,
        "end_checks": end_checks,
        "ok": ok,
        "window_s": round(window, 2),
        "server": {
            "cpu_s": round(m["server_cpu_s"], 2),
            "cores": round(m["server_cpu_s"] / m["wall_s"], 3),
            "runq_wait_s": round(m["server_runq_s"], 3),
            "rss_mb_connected": round(m["rss_connected_kb"] / 1024, 1),
            "rss_mb_end_of_window": round(m["rss_window_kb"] / 1024, 1),
            "cpu_us_per_round_trip": round(m["server_cpu_s"] * 1e6 / max(1, c["responses"]), 1),
        },
        "fleet": {
            "cpu_s": round(m["fleet_cpu_s"], 2),
            "cores": round(m["fleet_cpu_s"] / m["wall_s"], 3),
        },
        "connect": m["connected"],
        "trader_waits": stats["trader_waits"],
        "error_samples": final["error_samples"],
        "close_codes": final["close_codes"],
    }


def table(runs: list[dict[str, Any]]) -> str:
    def lat(r: dict[str, Any], kind: str, q: str) -> str:
        return f"{r['latency_ms'][kind].get(q, '-')}"

    rows: list[tuple[str, Any]] = [
        ("order round trips/s (submit + cancel)", lambda r: f"{r['order_round_trips_per_s']:,}"),
        ("  of which submits/s / cancels/s", lambda r: f"{r['submits_per_s']:,} / {r['cancels_per_s']:,}"),  # noqa: E501
        ("order_response p50 / p99 / p99.9 / max, ms", lambda r: " / ".join(lat(r, "all", q) for q in ("p50_ms", "p99_ms", "p999_ms", "max_ms"))),  # noqa: E501
        ("  submits only: p50 / p99, ms", lambda r: f"{lat(r, 'submit', 'p50_ms')} / {lat(r, 'submit', 'p99_ms')}"),  # noqa: E501
        ("fills/s", lambda r: f"{r['fills_per_s']:,}"),
        ("market data delivered/s, all subscribers", lambda r: f"{r['md_messages_per_s']:,}"),
        ("  orderbook / trade / ticker per s", lambda r: " / ".join(f"{v:,}" for v in r["md_messages_per_s_by_type"].values())),  # noqa: E501
        ("market data age p50 / p99, ms (wall clock)", lambda r: f"{r['md_age_ms'].get('p50_ms')} / {r['md_age_ms'].get('p99_ms')}"),  # noqa: E501
        ("private push age p50 / p99, ms (wall clock)", lambda r: f"{r['private_push_age_ms'].get('p50_ms')} / {r['private_push_age_ms'].get('p99_ms')}"),  # noqa: E501
        ("failures by code", lambda r: ", ".join(f"{k}: {v}" for k, v in r["failures"].items()) or "none"),  # noqa: E501
        ("violations: book prev_seq / print seq / private seq / checksum", lambda r: " / ".join(str(sum(r["violations"][k] for k in ks)) for ks in VIOLATION_GROUPS)),  # noqa: E501
        ("server CPU-s in window / cores / s waiting for the CPU", lambda r: f"{r['server']['cpu_s']} / {r['server']['cores']} / {r['server']['runq_wait_s']}"),  # noqa: E501
        ("server CPU-µs per round trip", lambda r: f"{r['server']['cpu_us_per_round_trip']}"),
        ("server RSS MB (connected / end of window)", lambda r: f"{r['server']['rss_mb_connected']} / {r['server']['rss_mb_end_of_window']}"),  # noqa: E501
        ("load generator cores", lambda r: f"{r['fleet']['cores']}"),
        ("other load on the server's core / on both cores", lambda r: f"{r['machine_load']['other_on_server_core']} / {r['machine_load']['other_on_all_cores']}"),  # noqa: E501
        ("every check held", lambda r: "yes" if r["ok"] else "NO"),
        ("server log lines at WARNING or above", lambda r: r["server"]["log"]["problems"]),
    ]  # fmt: skip
    head = "| | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |"
    lines = [head, "|---" * (len(runs) + 1) + "|"]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(str(cell(r)) for r in runs) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trading", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="the measured window")
    parser.add_argument("--warmup", type=float, default=3.0, help="trading before the window")
    parser.add_argument("--repeats", type=int, default=1, help="runs, each on a fresh server")
    parser.add_argument("--traders", type=int, default=100)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--subscriber-workers", type=int, default=2)
    parser.add_argument(
        "--subscriber-nice", type=int, default=10, help="the subscriber processes' niceness"
    )
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=300,
        help="before each run, wait at most this long for the machine to be idle",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy on rt during the window")
    parser.add_argument("--out", type=Path, default=RESULTS / "trading.json")
    args = parser.parse_args(argv)
    if not 1 <= args.repeats <= 10 or not 0 < args.seconds <= 600:
        parser.error("--repeats must be 1-10 and --seconds 0-600")

    pin_self(LOADGEN_CORE)  # keep this process off the server's core
    Fleet.check_installed()
    profile = RESULTS / "profiles" / "trading-rt.txt" if args.profile else None
    runs: list[dict[str, Any]] = []
    started = datetime.now(UTC)
    for i in range(args.repeats):
        try:
            run = run_once(args, profile)
        except BenchError as exc:
            print(f"run {i + 1}: ERROR {exc}", flush=True)
            return 1
        runs.append(run)
        print(
            f"run {i + 1}: {run['order_round_trips_per_s']:,} round trips/s, "
            f"p99 {run['latency_ms']['all'].get('p99_ms')} ms, {run['fills_per_s']:,} fills/s, "
            f"{run['md_messages_per_s']:,} market-data msgs/s, server {run['server']['cores']} "
            f"cores, checks {'held' if run['ok'] else 'FAILED'}, other load on core "
            f"{SERVER_CORE}: {run['machine_load']['other_on_server_core']} cores",
            flush=True,
        )
        for line in run["server"]["log"]["sample"]:
            print(f"  rt: {line}", flush=True)
    result = {
        "benchmark": "trading (seed 003)",
        "title": f"{args.traders} trading clients (one request outstanding each) and "
        f"{args.subscribers} market-data subscribers, rt on one core",
        "command": "python -m bench.trading " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "traders": args.traders,
            "subscribers": args.subscribers,
            "outstanding_per_trader": 1,
            "instrument": TRADED,
            "prices": PRICES,
            "max_resting_orders_per_trader": MAX_LIVE,
            "cancel_resting_after_ms": CANCEL_AFTER_MS,
            "cancel_when_stuck_after_ms": STUCK_MS,
            "max_exposure_lots": MAX_EXPOSURE,
            "channels": ["orderbook", "trade", "ticker"],
            "instruments": INSTRUMENTS,
            "checksum_every": CHECKSUM_EVERY,
            "subscriber_workers": args.subscriber_workers,
            "subscriber_nice": args.subscriber_nice,
            "placement": {"server_core": SERVER_CORE, "loadgen_core": LOADGEN_CORE},
        },
        "runs": runs,
    }  # fmt: skip
    print()
    print(table(runs))
    print()
    print(json.dumps(result, indent=1))
    if not args.profile:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"\nsaved to {args.out}")
    else:
        from .profile import report

        assert profile is not None
        print(report(profile))
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
