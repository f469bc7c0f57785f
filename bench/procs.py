"""The processes of a benchmark run: a server on core 0, the client fleet on core 1.

Each wrapper starts its process, talks to it (the server's control port, the fleet's stdin and
stdout), reads its CPU time and memory from /proc, and kills it. Every wait has a timeout.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = ROOT / "bench" / "loadgen"
SERVER_CORE = 0
LOADGEN_CORE = 1

SERVERS = {
    "rt": "bench.servers.rt_server",
    "websockets": "bench.servers.websockets_broadcast",
    "naive": "bench.servers.naive_trio",
    # Not a baseline: trio + wsproto without trio-websocket (only when named in --servers).
    "wsproto": "bench.servers.wsproto_trio",
}
DEFAULT_SERVERS = ("rt", "websockets", "naive")

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A run could not be carried out (a process died, a step timed out)."""


def pinned(core: int) -> list[str]:
    """The taskset prefix that pins a command to ``core`` (none on a one-core machine)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core)]
    return []


def pin_self(core: int) -> None:
    if (os.cpu_count() or 1) > core:
        os.sched_setaffinity(0, {core})


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def runq_wait_seconds(pid: int) -> float:
    """Time the process's main thread was ready to run but waited for the CPU (taken by
    another process on its core): how much the machine's other load held it back."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def write_syscalls(pid: int) -> int:
    """Write syscalls the process made (``syscw`` of /proc/<pid>/io: write, writev, send...)."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("syscw:"):
                return int(line.split()[1])
    raise BenchError(f"no syscw for pid {pid}")


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "node": node,
        "kernel": platform.release(),
        "load_avg_1m": os.getloadavg()[0],
    }


def _tail(log: Any) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-2000:]


def _json_ready(line: bytes) -> dict[str, Any]:
    return dict(json.loads(line))


def free_port() -> int:
    """A loopback port to bind for good: with port 0, a listener restarted by its supervisor
    would come back on another port, and the clients could not find it again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rt_ready(line: bytes) -> dict[str, Any]:
    """``rt serve``'s ready line (``rt ready ws=... http=...``), for ``_Process``."""
    text = line.decode(errors="replace").strip()
    if not text.startswith("rt ready "):
        raise ValueError(text)
    return {"line": text}


def rt_serve_env(shown: dict[str, str], *, secret: str, admin_token: str) -> dict[str, str]:
    """The environment for ``rt serve``: ours without any RT_* variable, then ``shown`` (the
    settings a result reports) and the two secrets (which it does not)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RT_")}
    env.pop("REDIS_URL", None)
    env.update(shown, RT_JWT_SECRET=secret, RT_ADMIN_TOKEN=admin_token)
    return env


def terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """SIGTERM, as an operator stops a server, then SIGKILL if it is still there after
    ``timeout_s``; True when it had to be killed."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
        return False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        return True


#: What in a server's stderr a result reports: WARNING and above, tracebacks, worker restarts.
PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback|exited with")


def log_problems(text: str) -> dict[str, Any]:
    """The lines of a server's stderr that ``PROBLEM`` finds: how many, and the first 20."""
    lines = [line for line in text.splitlines() if PROBLEM.search(line)]
    return {"problems": len(lines), "sample": lines[:20]}


class _Process:
    """A Python process of ours that prints one JSON ready line, with its stderr kept
    (``parse`` reads another kind of ready line: a ValueError means it is not one)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        timeout_s: float,
        parse: Callable[[bytes], dict[str, Any]] = _json_ready,
    ) -> None:
        self.name = name
        # BENCH_LOGS=<dir> keeps each server's stderr there (BENCH_RT_LOG=INFO for rt's logs)
        logs = os.environ.get("BENCH_LOGS")
        if logs:
            Path(logs).mkdir(parents=True, exist_ok=True)
            self.log = open(Path(logs) / f"{name}-{time.strftime('%H%M%S')}.log", "w+b")
        else:
            self.log = tempfile.TemporaryFile()
        self.stderr = ""
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            preexec_fn=_raise_nofile,
        )
        lines: queue.Queue[bytes] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            self.ready: dict[str, Any] = parse(lines.get(timeout=timeout_s))
        except (queue.Empty, ValueError):
            self.kill()
            raise BenchError(f"{name} did not start:\n{self.stderr[-2000:]}") from None

    def kill(self) -> None:
        """Results are in hand, and a graceful stop is not what is measured."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.close_log()

    def close_log(self) -> None:
        """Keep the process's stderr (``stderr``), then close the file (once it is gone)."""
        if not self.log.closed:
            self.log.seek(0)
            self.stderr = self.log.read().decode(errors="replace")
            self.log.close()


def http_publisher(
    ready: dict[str, Any], via: str, env: dict[str, str], timeout_s: float
) -> _Process:
    """bench/servers/http_publisher.py on LOADGEN_CORE, publishing to the server that
    printed ``ready`` over its API (``via``: override, batch, ws or ws-single)."""
    return _Process(
        "publisher",
        [
            *pinned(LOADGEN_CORE),
            sys.executable,
            "-m",
            "bench.servers.http_publisher",
            "--http-url",
            f"http://127.0.0.1:{ready['http_port']}",
            "--ws-url",
            f"ws://127.0.0.1:{ready['ws_port']}",
            "--via",
            via,
        ],
        env,
        timeout_s,
    )


class Server:
    """One server under test, started on SERVER_CORE; its publisher behind ``control``.

    ``publish_via`` (rt only): "inprocess" runs the plan inside rt; "override", "batch", "ws"
    or "ws-single" run it in bench/servers/http_publisher.py on LOADGEN_CORE, publishing over
    rt's API.
    """

    def __init__(
        self,
        kind: str,
        *,
        secret: str,
        admin_token: str,
        publish_via: str = "inprocess",
        timeout_s: float = 30,
    ) -> None:
        self.kind = kind
        self.secret = secret  # S6 mints tokens with a tier
        env = dict(os.environ, RT_JWT_SECRET=secret, RT_ADMIN_TOKEN=admin_token)
        argv = [*pinned(SERVER_CORE), sys.executable, "-m", SERVERS[kind]]
        external = publish_via != "inprocess"
        if external and kind != "rt":
            raise BenchError(f"--publish-via {publish_via} is for rt only")
        self._server = _Process(
            kind, argv + (["--publisher", "none"] if external else []), env, timeout_s
        )
        self._publisher: _Process | None = None
        self.ready = dict(self._server.ready)
        self.pid: int = self.ready["pid"]
        self.ws_url = f"ws://127.0.0.1:{self.ready['ws_port']}/ws/odds?token="
        #: Where clients connect: more than one for several nodes of one server (the fleet
        #: spreads its clients over them; bench/scaleout.py).
        self.ws_urls = [self.ws_url]
        #: The server's processes by name, whose CPU time is the server's.
        self.processes: dict[str, int] = {kind: self.pid}
        if external:
            self._publisher = http_publisher(self.ready, publish_via, env, timeout_s)
            self.ready["control_port"] = self._publisher.ready["control_port"]
        self._connect_control()

    def _connect_control(self) -> None:
        self._control = socket.create_connection(("127.0.0.1", self.ready["control_port"]), 5)
        self._control_file = self._control.makefile("rwb")

    def helper_pids(self) -> list[int]:
        """Processes of the bench that serve the server but are not it (the publisher)."""
        return [self._publisher.proc.pid] if self._publisher is not None else []

    def control(self, cmd: str, **args: Any) -> dict[str, Any]:
        self._control_file.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        self._control_file.flush()
        reply = json.loads(self._control_file.readline())
        if not reply.get("ok"):
            raise BenchError(f"{self.kind} control {cmd}: {reply}")
        return dict(reply)

    def published(self) -> dict[str, int]:
        return dict(self.control("stats")["published"])

    def wait_published(self, total: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while self.control("stats")["total"] < total:
            if time.monotonic() > deadline:
                raise BenchError(f"{self.kind}: the publisher did not reach {total} in time")
            time.sleep(0.01)

    def cpu_s(self) -> float:
        return sum(self.cpu_by_process().values())

    def cpu_by_process(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.processes.items()}

    def runq_wait_s(self) -> float:
        return sum(runq_wait_seconds(pid) for pid in self.processes.values())

    def write_syscalls(self) -> int:
        return sum(write_syscalls(pid) for pid in self.processes.values())

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def log_tail(self) -> str:
        return _tail(self._server.log)

    def log_text(self) -> str:
        """The server's whole stderr, once it is closed."""
        return str(getattr(self._server, "stderr", ""))

    def close(self) -> None:
        self._control.close()
        if self._publisher is not None:
            self._publisher.kill()
        self._server.kill()


class Fleet:
    """The Node client fleet (bench/loadgen/fleet.mjs), started on LOADGEN_CORE."""

    @staticmethod
    def check_installed() -> None:
        if not (LOADGEN / "node_modules" / "ws").is_dir():
            raise SystemExit("bench: the load generator needs `npm ci --prefix bench/loadgen`")

    def __init__(self, workers: int = 1) -> None:
        self._start("fleet.mjs", "--workers", str(workers))

    def _start(self, script: str, *args: str) -> None:
        """Run ``script`` of bench/loadgen with ``args``; wait for its hello."""
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [*pinned(LOADGEN_CORE), "node", str(LOADGEN / script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            preexec_fn=_raise_nofile,
        )
        self._replies: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.pids: list[int] = self.op("hello")["pids"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._replies.put(line)
        self._replies.put(b"")

    def op(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one command; ``timeout_s`` (if any) bounds it in the fleet, and this waits
        for the answer a little longer than that."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
        self.proc.stdin.flush()
        wait_s = float(args.get("timeout_s", 60)) + 15
        try:
            line = self._replies.get(timeout=wait_s)
        except queue.Empty:
            raise BenchError(f"fleet {op}: no answer in {wait_s:.0f} s") from None
        if not line:
            raise BenchError(f"fleet exited during {op}:\n{_tail(self._log)}")
        reply = dict(json.loads(line))
        if "error" in reply:
            raise BenchError(f"fleet {op}: {reply['error']}")
        return reply

    def cpu_s(self) -> float:
        total = 0.0
        for pid in self.pids:
            try:
                total += cpu_seconds(pid)
            except FileNotFoundError:
                pass
        return total

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.op("exit", timeout_s=2)
            except (BenchError, BrokenPipeError, OSError):
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()
