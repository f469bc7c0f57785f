"""Scale-out on Redis (issue 15): rt on the Redis engine, as server kinds the scenarios drive.

    python -m bench compare s1 --servers rt,rt-redis,rt-2nodes
    python -m bench compare s4 --servers rt,rt-workers1,rt-workers2

Each run starts a redis-server of its own (fresh, persisting nothing; bench/engine_rate.py's
``start_redis``) and rt on it:

- ``rt-redis``: one node, bench/servers/rt_server.py ``--engine redis://...`` with the bench
  publisher in it (as ``rt``, but every publish is a script call on Redis and the node reads
  its topics back from Redis). rt and Redis on core 0.
- ``rt-2nodes``: two such nodes on one Redis, each on a port of its own; the publisher runs in
  node 1 and publishes into the engine, node 2 gets every update from Redis. The fleet
  alternates its clients over the two ports (client i on node i % 2), and S5 resumes each
  client on the other node. Both nodes and Redis on core 0.
- ``rt-workers1`` and ``rt-workers2``: ``rt serve --engine redis://... --workers N``, the real
  command: N worker processes on one port (SO_REUSEPORT, the kernel spreads the connections)
  under a supervising parent (``--workers 1`` is a plain ``rt serve``). ``rt serve`` has no
  bench publisher, so the plan runs in bench/servers/http_publisher.py on core 1 (``--publish-via
  batch`` unless another is named). rt and Redis run on every core (``taskset -c 0-1``): the
  server side may use both, and shares core 1 with the load generator.

The server's CPU is that of all its processes, Redis included; ``server_cpu_s_by_process``
in the results splits it. The scenarios' checks are the same as for every server: each
client checks every message (no gap, no step back), and after the publisher stops every
client must hold the last seq. What the processes wrote at WARNING or above (and any
traceback, or a worker restarted) is in each run's ``server_log``.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

from .engine_rate import start_redis
from .procs import (
    SERVER_CORE,
    BenchError,
    Server,
    _Process,
    free_port,
    http_publisher,
    pinned,
    rss_kb,
    rt_ready,
    rt_serve_env,
    terminate,
)

#: kind -> what it is (bench/README.md has the same table).
SCALE_OUT = {
    "rt-redis": "one rt node on the Redis engine (core 0, with Redis)",
    "rt-2nodes": "two rt nodes on one Redis, a port each, clients alternating (core 0)",
    "rt-workers1": "rt serve --engine redis:// (one process; rt and Redis on both cores)",
    "rt-workers2": "rt serve --engine redis:// --workers 2 (one port; on both cores)",
}
#: S3 measures one process's memory and S6 the predictions dialect: not for these kinds.
SCENARIOS = ("s1", "s2", "s4", "s5")

STOP_TIMEOUT_S = 20.0


def every_core() -> list[str]:
    """The taskset prefix that lets a command run on every core. Not pinning is not enough:
    this process is pinned to the load generator's core, and its children inherit that."""
    cores = os.cpu_count() or 1
    return ["taskset", "-c", f"0-{cores - 1}"] if shutil.which("taskset") and cores > 1 else []


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc: the kernel here has no
    /proc/<pid>/task/<tid>/children)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(entry))
    return sorted(out)


class ScaleOutServer(Server):
    """rt on a fresh Redis, as one of the SCALE_OUT kinds; the same interface as Server."""

    def __init__(
        self,
        kind: str,
        *,
        secret: str,
        admin_token: str,
        publish_via: str = "inprocess",
        timeout_s: float = 30,
    ) -> None:
        if kind not in SCALE_OUT:
            raise BenchError(f"unknown scale-out kind {kind!r}")
        self.kind = kind
        self.secret = secret
        self._nodes: list[_Process] = []
        self._serve: _Process | None = None
        self._workers: list[int] = []
        self._publisher: _Process | None = None
        self._control: Any = None
        self.stop_info: dict[str, Any] = {}
        self._directory = tempfile.TemporaryDirectory(prefix="rt-bench-redis-")
        workers = kind.startswith("rt-workers")
        placement = every_core() if workers else pinned(SERVER_CORE)
        self.placement = " ".join(placement) or "not pinned"
        self._redis, self.engine_url = start_redis(placement, self._directory.name)
        try:
            if workers:
                self._start_serve(int(kind.removeprefix("rt-workers")), secret, admin_token)
                via = "batch" if publish_via == "inprocess" else publish_via
            else:
                self._start_nodes(2 if kind == "rt-2nodes" else 1, secret, admin_token, publish_via)
                via = publish_via
            self.processes["redis"] = self._redis.pid
            if via != "inprocess":
                self._start_publisher(via, admin_token, timeout_s)
            self.publish_via = via
            self._connect_control()
        except BaseException:
            self.close()
            raise

    def _start_nodes(self, count: int, secret: str, admin_token: str, publish_via: str) -> None:
        env = dict(os.environ, RT_JWT_SECRET=secret, RT_ADMIN_TOKEN=admin_token)
        for i in range(count):
            # The bench publisher runs in node 1 only; node 2 reads every update from Redis.
            publisher = "inprocess" if i == 0 and publish_via == "inprocess" else "none"
            argv = [*pinned(SERVER_CORE), sys.executable, "-m", "bench.servers.rt_server"]
            argv += ["--engine", self.engine_url, "--publisher", publisher]
            self._nodes.append(_Process(f"{self.kind}-node{i + 1}", argv, env, 30))
        self.ready = dict(self._nodes[0].ready)
        self.pid = self.ready["pid"]
        self.ws_urls = [
            f"ws://127.0.0.1:{node.ready['ws_port']}/ws/odds?token=" for node in self._nodes
        ]
        self.ws_url = self.ws_urls[0]
        self.processes = {f"node{i + 1}": n.ready["pid"] for i, n in enumerate(self._nodes)}

    def _start_serve(self, count: int, secret: str, admin_token: str) -> None:
        port = free_port()
        self.env_shown = {
            "RT_HOST": "127.0.0.1",
            "RT_PORT": str(port),
            "RT_ENGINE": self.engine_url,
            "RT_TRADING_PORT": "off",
            "RT_DEMO_FEED": "false",
            # every benchmark client connects from 127.0.0.1 (as in rt_server.py)
            "RT_MAX_CONNECTIONS_PER_IP": "100000",
            "RT_MAX_CONNECTIONS": "100000",
            "RT_LOG_LEVEL": os.environ.get("BENCH_RT_LOG", "WARNING"),
        }
        env = rt_serve_env(self.env_shown, secret=secret, admin_token=admin_token)
        argv = [*every_core(), sys.executable, "-m", "rt.cli", "serve", "--workers", str(count)]
        self._serve = _Process(self.kind, argv, env, 60, parse=rt_ready)
        self.pid = self._serve.proc.pid
        self.processes = {"rt serve": self.pid}
        if count > 1:  # the parent supervises; the workers serve
            self.processes = {"supervisor": self.pid}
            self._workers = children(self.pid)
            if len(self._workers) != count:
                raise BenchError(f"{self.kind}: {len(self._workers)} workers, not {count}")
            for i, pid in enumerate(self._workers):
                self.processes[f"worker{i + 1}"] = pid
            self.pid = self._workers[0]  # the one a profile looks at
        self.ready = {
            "pid": self.pid,
            "ws_port": port,
            "http_port": port,
            "line": self._serve.ready["line"],
        }
        self.ws_url = f"ws://127.0.0.1:{port}/ws/odds?token="
        self.ws_urls = [self.ws_url]

    def _start_publisher(self, via: str, admin_token: str, timeout_s: float) -> None:
        env = dict(os.environ, RT_ADMIN_TOKEN=admin_token)
        self._publisher = http_publisher(self.ready, via, env, timeout_s)
        self.ready["control_port"] = self._publisher.ready["control_port"]

    def rss_kb(self) -> int:
        return sum(rss_kb(pid) for name, pid in self.processes.items() if name != "redis")

    def description(self) -> dict[str, Any]:
        """What ran, and where, for the results."""
        return {
            "kind": self.kind,
            "what": SCALE_OUT[self.kind],
            "placement": self.placement,
            "processes": dict(self.processes),
            "ws_urls": len(self.ws_urls),
            "publish_via": self.publish_via if hasattr(self, "publish_via") else None,
            "engine": self.engine_url,
            **({"env": self.env_shown} if hasattr(self, "env_shown") else {}),
        }

    def helper_pids(self) -> list[int]:
        return [self._publisher.proc.pid] if self._publisher is not None else []

    def log_text(self) -> str:
        parts = [p.stderr for p in [*self._nodes, self._serve, self._publisher] if p is not None]
        return "\n".join(parts)

    def workers_alive(self) -> dict[str, Any]:
        """Whether the workers that were ready at the start still serve (none restarted)."""
        if self._serve is None or not self._workers:
            return {}
        now = children(self._serve.proc.pid)
        return {"workers_at_start": self._workers, "workers_at_end": now}

    def close(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._publisher is not None:
            self._publisher.kill()
        for node in self._nodes:
            node.kill()
        if self._serve is not None and self._serve.proc.poll() is None:
            self.stop_info = {**self.workers_alive(), **self._stop_serve(self._serve)}
        elif self._serve is not None:
            self.stop_info = {"exited_before_stop": self._serve.proc.returncode}
            self._serve.close_log()
        if self._redis.poll() is None:
            self._redis.kill()
        self._redis.wait(timeout=10)
        self._directory.cleanup()

    def _stop_serve(self, serve: _Process) -> dict[str, Any]:
        """SIGTERM, as an operator stops ``rt serve`` (the parent stops its workers); SIGKILL
        to it and to each worker of ours still there after STOP_TIMEOUT_S."""
        started = time.monotonic()
        killed = terminate(serve.proc, STOP_TIMEOUT_S)
        left = []
        for pid in self._workers:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    ours = b"rt.cli" in f.read()  # the worker, not a new process on its pid
            except FileNotFoundError:
                continue
            if ours:
                left.append(pid)
                os.kill(pid, signal.SIGKILL)
        serve.close_log()
        return {
            "returncode": serve.proc.returncode,
            "killed": killed,
            "workers_left_running": left,
            "stop_s": round(time.monotonic() - started, 2),
        }
