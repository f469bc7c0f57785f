"""python -m bench: run the scenarios against rt and the baselines; see bench/README.md.

python -m bench run s1 --server rt       one server, one scenario
python -m bench compare s1               every server side by side, interleaved
python -m bench all                      compare every scenario
python -m bench profile s1               py-spy on rt during the scenario's window
python -m bench table                    print the saved results
"""

from __future__ import annotations

import argparse
import json
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
    machine,
    pin_self,
)
from .report import best, ratios, table
from .scenarios import SCENARIOS, Scenario
from .servers.http_publisher import VIAS

RESULTS = Path(__file__).resolve().parent / "results"


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
) -> dict[str, Any]:
    tokens = keys.tokens(scenario.tokens)
    started = time.monotonic()
    try:
        via = publish_via if kind == "rt" else "inprocess"
        server = Server(kind, secret=keys.secret, admin_token=keys.admin_token, publish_via=via)
        try:
            fleet = Fleet(scenario.workers)
            try:
                result = scenario.run(server, fleet, tokens, profile)
            finally:
                fleet.close()
        finally:
            server.close()
    except BenchError as exc:
        result = {"error": str(exc)}
    result["run_s"] = round(time.monotonic() - started, 1)
    ok = result.get("contract", {}).get("ok")
    print(
        f"  {scenario.name} {kind:<10} {_summary(scenario, result)}  contract ok={ok}"
        f"  ({result['run_s']} s)",
        flush=True,
    )
    return result


def _summary(scenario: Scenario, result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + result["error"].splitlines()[0]
    return f"{scenario.metric}={result[scenario.metric]}"


def compare(
    name: str, servers: list[str], repeats: int, keys: Keys, publish_via: str
) -> dict[str, Any]:
    scenario = SCENARIOS[name]
    print(f"{name}: {scenario.title}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in servers}
    for _ in range(repeats):
        for kind in servers:  # interleaved, so that noise from the machine spreads evenly
            runs[kind].append(run_once(scenario, kind, keys, publish_via=publish_via))
    best_of = {kind: best(name, runs[kind]) for kind in servers}
    result = {
        "scenario": name,
        "title": scenario.title,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "repeats": repeats,
        "rt_publish_via": publish_via,
        "selection": f"best run by {scenario.metric} "
        f"({'highest' if scenario.higher_is_better else 'lowest'})",
        "best": best_of,
        "targets": ratios(name, best_of),
        "runs": runs,
    }
    return result


def save(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="one scenario against one server")
    p_run.add_argument("scenario", choices=SCENARIOS)
    p_run.add_argument("--server", choices=SERVERS, default="rt")
    p_run.add_argument("--repeats", type=int, default=1)
    p_cmp = sub.add_parser("compare", help="one scenario against every server")
    p_cmp.add_argument("scenario", choices=SCENARIOS)
    p_all = sub.add_parser("all", help="every scenario against every server")
    for p in (p_cmp, p_all):
        p.add_argument("--servers", default=",".join(DEFAULT_SERVERS))
        p.add_argument("--repeats", type=int, default=2)
    p_prof = sub.add_parser("profile", help="py-spy on a server during a scenario's window")
    p_prof.add_argument("scenario", choices=["s1", "s2", "s4", "s6"])
    p_prof.add_argument("--server", choices=SERVERS, default="rt")
    sub.add_parser("table", help="print the saved results")
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
        for name in SCENARIOS:
            path = RESULTS / f"{name}.json"
            if path.exists():
                result = json.loads(path.read_text())
                print(f"\n## {name}: {result['title']}\n\n{table(name, result)}")
        return 0

    pin_self(LOADGEN_CORE)  # keep this process off the server's core
    keys = Keys()
    Fleet.check_installed()
    if args.command == "run":
        scenario = SCENARIOS[args.scenario]
        runs = [
            run_once(scenario, args.server, keys, publish_via=args.publish_via)
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
    started = time.monotonic()
    for name in names:
        result = compare(name, servers, args.repeats, keys, args.publish_via)
        path = save(name, result)
        print(f"\n{table(name, result)}\n\nsaved to {path}\n", flush=True)
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
