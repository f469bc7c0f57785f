"""python -m bench: run the scenarios against rt and the baselines; see bench/README.md.

python -m bench run s1 --server rt       one server, one scenario
python -m bench compare s1               every server side by side, interleaved
python -m bench all                      compare every scenario
python -m bench profile s1               py-spy on rt during the scenario's window
python -m bench table                    print the saved results

Issue 15's scale-out on Redis adds the kinds rt-redis, rt-2nodes, rt-workers1 and rt-workers2
(bench/scaleout.py), e.g. python -m bench compare s1 --servers rt,rt-redis,rt-2nodes
--idle-wait 120 --out bench/results/s1-redis.json
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rt.auth import issue_token

from .procs import (
    DEFAULT_SERVERS,
    LOADGEN_CORE,
    SERVERS,
    BenchError,
    Fleet,
    Server,
    cpu_seconds,
    log_problems,
    machine,
    pin_self,
)
from .report import best, ratios, table
from .scaleout import SCALE_OUT, ScaleOutServer
from .scaleout import SCENARIOS as SCALE_OUT_SCENARIOS
from .scenarios import SCENARIOS, Scenario
from .servers.http_publisher import VIAS
from .trading import core_busy_s, wait_idle

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = [*SERVERS, *SCALE_OUT]
#: With --idle-wait: a run during which other processes kept more than this many cores busy
#: on average is marked "disturbed" (best() passes it over) and run again, at most
#: DISTURBED_RETRIES times.
DISTURBED_CORES = 0.2
DISTURBED_RETRIES = 2


class Keys:
    """The JWT secret and admin token of this invocation, and tokens minted with them the
    way a client gets one: rt.auth.issue_token, one user per connection (rt allows 5)."""

    def __init__(self) -> None:
        self.secret = secrets.token_urlsafe(32)
        self.admin_token = secrets.token_urlsafe(24)
        self._tokens: list[str] = []

    def tokens(self, n: int) -> list[str]:
        now = time.time()
        for user in range(len(self._tokens), n):
            token, _ = issue_token(
                secret=self.secret, user_id=user + 1, scope_markets=None, ttl_s=3600, now_s=now
            )
            self._tokens.append(token)
        return self._tokens[:n]


def run_once(
    scenario: Scenario,
    kind: str,
    keys: Keys,
    *,
    profile: Path | None = None,
    publish_via: str = "inprocess",
    idle_wait_s: float = 0,
) -> dict[str, Any]:
    tokens = keys.tokens(scenario.tokens)
    # Wait (at most idle_wait_s) for the machine to be idle: no figures under foreign load.
    busy_before = wait_idle(idle_wait_s) if idle_wait_s > 0 else None
    started = time.monotonic()
    extra: dict[str, Any] = {}
    try:
        if kind in SCALE_OUT:
            if scenario.name not in SCALE_OUT_SCENARIOS:
                raise BenchError(f"{kind} runs {', '.join(SCALE_OUT_SCENARIOS)} only")
            server: Server = ScaleOutServer(
                kind, secret=keys.secret, admin_token=keys.admin_token, publish_via=publish_via
            )
        else:
            via = publish_via if kind == "rt" else "inprocess"
            server = Server(kind, secret=keys.secret, admin_token=keys.admin_token, publish_via=via)
        try:
            fleet = Fleet(scenario.workers)
            try:
                load0 = _load_mark(server, fleet)
                result = scenario.run(server, fleet, tokens, profile)
                extra["machine_load"] = _other_load(load0, _load_mark(server, fleet))
            finally:
                fleet.close()
        finally:
            server.close()
            if isinstance(server, ScaleOutServer):
                extra["server"] = {**server.description(), "stop": server.stop_info}
            extra["server_log"] = log_problems(server.log_text())
    except BenchError as exc:
        result = {"error": str(exc)}
    result.update(extra)
    if busy_before is not None:
        result.setdefault("machine_load", {})["busy_cores_before_run"] = busy_before
    result["run_s"] = round(time.monotonic() - started, 1)
    ok = result.get("contract", {}).get("ok")
    print(
        f"  {scenario.name} {kind:<10} {_summary(scenario, result)}  contract ok={ok}"
        f"  ({result['run_s']} s)",
        flush=True,
    )
    return result


def _load_mark(server: Server, fleet: Fleet) -> tuple[float, list[float], float]:
    """The time, each core's busy seconds (/proc/stat), and the CPU seconds of ours: the
    server's processes, its publisher, the fleet and this process."""
    ours = server.cpu_s() + fleet.cpu_s() + time.process_time()
    ours += sum(cpu_seconds(pid) for pid in server.helper_pids())
    return time.monotonic(), core_busy_s(), ours


def _other_load(
    before: tuple[float, list[float], float], after: tuple[float, list[float], float]
) -> dict[str, Any]:
    """How many cores something else kept busy during the run, on average (busy time of the
    cores less our processes' CPU time; softirq and steal time count as busy)."""
    wall = max(after[0] - before[0], 1e-9)
    busy = sum(after[1]) - sum(before[1])
    return {
        "busy_cores_during_run": round(busy / wall, 3),
        "other_on_all_cores": round((busy - (after[2] - before[2])) / wall, 3),
    }


def _summary(scenario: Scenario, result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + result["error"].splitlines()[0]
    return f"{scenario.metric}={result[scenario.metric]}"


def compare(
    name: str,
    servers: list[str],
    repeats: int,
    keys: Keys,
    publish_via: str,
    idle_wait_s: float = 0,
) -> dict[str, Any]:
    scenario = SCENARIOS[name]
    title = scenario.title
    if name == "s2" and os.environ.get("BENCH_S2_RATE"):
        title = title.replace("2,000", f"{int(os.environ['BENCH_S2_RATE']):,}")
    print(f"{name}: {title}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in servers}
    for _ in range(repeats):
        for kind in servers:  # interleaved, so that noise from the machine spreads evenly
            for _ in range(1 + DISTURBED_RETRIES if idle_wait_s > 0 else 1):
                run = run_once(
                    scenario, kind, keys, publish_via=publish_via, idle_wait_s=idle_wait_s
                )
                runs[kind].append(run)
                other = run.get("machine_load", {}).get("other_on_all_cores", 0)
                if idle_wait_s <= 0 or other <= DISTURBED_CORES:
                    break
                # Something else ran meanwhile: kept, marked, and run again once idle.
                run["disturbed"] = True
                print(f"  (other load {other} cores during that run: again)", flush=True)
    best_of = {kind: best(name, runs[kind]) for kind in servers}
    result = {
        "scenario": name,
        "title": title,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "repeats": repeats,
        "rt_publish_via": publish_via,
        "idle_wait_s": idle_wait_s,
        "disturbed_above_other_cores": DISTURBED_CORES if idle_wait_s > 0 else None,
        "selection": f"best run by {scenario.metric} "
        f"({'highest' if scenario.higher_is_better else 'lowest'})",
        "best": best_of,
        "targets": ratios(name, best_of),
        "runs": runs,
    }
    return result


def save(name: str, result: dict[str, Any], path: Path | None = None) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = path or RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="one scenario against one server")
    p_run.add_argument("scenario", choices=SCENARIOS)
    p_run.add_argument("--server", choices=KINDS, default="rt")
    p_run.add_argument("--repeats", type=int, default=1)
    p_cmp = sub.add_parser("compare", help="one scenario against every server")
    p_cmp.add_argument("scenario", choices=SCENARIOS)
    p_all = sub.add_parser("all", help="every scenario against every server")
    p_cmp.add_argument(
        "--out", type=Path, help="where to write the results (default bench/results/<s>.json)"
    )
    for p in (p_cmp, p_all):
        p.add_argument("--servers", default=",".join(DEFAULT_SERVERS))
        p.add_argument("--repeats", type=int, default=2)
    for p in (p_run, p_cmp, p_all):
        p.add_argument(
            "--idle-wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="before each run, wait at most this long for the machine to be idle "
            "(busy < 0.15 cores over a second); 0: do not wait",
        )
    p_prof = sub.add_parser("profile", help="py-spy on a server during a scenario's window")
    p_prof.add_argument("scenario", choices=["s1", "s2", "s4", "s6"])
    p_prof.add_argument("--server", choices=SERVERS, default="rt")
    p_table = sub.add_parser("table", help="print the saved results")
    p_table.add_argument("files", nargs="*", type=Path, help="results files (default: all)")
    for p in (p_run, p_cmp, p_all, p_prof):
        p.add_argument(
            "--publish-via",
            choices=["inprocess", *VIAS],
            default="inprocess",
            help="rt's publish path: in process (default), or an external publisher over "
            "POST /admin/odds/override, POST /admin/publish (batch) or /ws/publish (ws)",
        )
    args = parser.parse_args(argv)

    if args.command == "table":
        paths = args.files or [RESULTS / f"{name}.json" for name in SCENARIOS]
        for path in paths:
            if path.exists():
                result = json.loads(path.read_text())
                name = result["scenario"]
                print(f"\n## {name}: {result['title']} ({path.name})\n\n{table(name, result)}")
        return 0

    pin_self(LOADGEN_CORE)  # keep this process off the server's core
    keys = Keys()
    Fleet.check_installed()
    if args.command == "run":
        scenario = SCENARIOS[args.scenario]
        runs = [
            run_once(
                scenario,
                args.server,
                keys,
                publish_via=args.publish_via,
                idle_wait_s=args.idle_wait,
            )
            for _ in range(args.repeats)
        ]
        print(json.dumps(best(args.scenario, runs) or runs, indent=1))
        return 0
    if args.command == "profile":
        from .profile import path_for, report

        out = path_for(args.scenario, args.server)
        result = run_once(
            SCENARIOS[args.scenario], args.server, keys, profile=out, publish_via=args.publish_via
        )
        if "error" not in result:
            print(report(out))
        return 0 if "error" not in result else 1

    names = [args.scenario] if args.command == "compare" else list(SCENARIOS)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in servers if s not in KINDS]
    if unknown:
        parser.error(f"unknown server {', '.join(unknown)} (the servers: {', '.join(KINDS)})")
    started = time.monotonic()
    for name in names:
        result = compare(name, servers, args.repeats, keys, args.publish_via, args.idle_wait)
        path = save(name, result, getattr(args, "out", None))
        print(f"\n{table(name, result)}\n\nsaved to {path}\n", flush=True)
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
