"""Profile a server during a scenario's measurement window, and rank where its CPU goes.

`record` runs ``py-spy record --native`` (on the load generator's core) against the server
for the window and saves the samples as collapsed stacks,
bench/results/profiles/<s>-<server>.txt (speedscope.app opens that file as it is). `report`
reads it back and ranks:

- self time per layer: CPython's cyclic GC (any sample with gc_collect_main in its stack),
  the socket syscalls (libc send/recv), then the Python package of the top frame;
- self time per function (the frame on top of the stack: where the CPU actually is),
- inclusive time per function (the frame anywhere in the stack).

``--native`` matters: without it, the GC's time is charged to whichever Python line
allocated the object that triggered a collection (in rt, trio's send_all), which misleads.

Only samples where the server was running are recorded (py-spy leaves idle ones out), so
the shares are shares of the server's busy CPU time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .procs import LOADGEN_CORE, BenchError, Server, pinned

PROFILES = Path(__file__).resolve().parent / "results" / "profiles"
RATE_HZ = 250

#: Layers, by the file of the top frame: the first pattern that matches names it.
LAYERS = [
    ("CPython cyclic GC (gc_collect_main)", r"^gc$"),
    ("socket syscalls (libc send/recv/epoll)", r"^libc"),
    ("CPython runtime (alloc, refcounts, eval)", r"^libpython|^python"),
    ("wsproto (framing, handshake)", r"^wsproto/"),
    ("trio-websocket", r"^trio_websocket/"),
    ("websockets library", r"^websockets/"),
    ("json encode/decode", r"^json/"),
    ("trio: socket wrappers", r"^trio/(_socket|_highlevel_socket)\.py"),
    ("trio: locks, parking lots", r"^trio/(_sync|_core/_parking_lot)\.py"),
    ("trio: scheduler, cancel scopes, deadlines, I/O loop", r"^trio/"),
    ("asyncio", r"^asyncio/"),
    ("rt: outbox", r"^rt/outbox\.py"),
    ("rt: room", r"^rt/room\.py"),
    ("rt: connection", r"^rt/connection\.py"),
    ("rt: protocol codecs", r"^rt/protocol/"),
    ("rt: engine, hub, merge patch", r"^rt/(engine/|hub\.py|mergepatch\.py)"),
    ("rt: listeners, auth, jwt", r"^rt/(listeners|auth)\.py|^jwt/"),
    ("rt: other", r"^rt/"),
    ("actors runtime", r"^actors/"),
    ("bench publisher", r"^bench/"),
    ("contextlib", r"^contextlib\.py"),
    ("other (stdlib, hypercorn...)", r""),
]


def path_for(scenario: str, server: str) -> Path:
    return PROFILES / f"{scenario}-{server}.txt"


def record(server: Server, seconds: float, out: Path) -> Callable[[], None]:
    """Start py-spy on ``server`` for ``seconds``, saving to ``out``; the returned function
    waits for it to finish."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise BenchError("profiling needs py-spy: pip install '.[bench]'")
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            *pinned(LOADGEN_CORE),
            spy,
            "record",
            "--pid",
            str(server.pid),
            "--rate",
            str(RATE_HZ),
            "--duration",
            str(int(seconds)),
            "--format",
            "raw",
            "--function",
            "--native",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def finish() -> None:
        _, err = proc.communicate(timeout=seconds + 30)
        if proc.returncode != 0:
            raise BenchError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")

    return finish


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def _frame(raw: str) -> tuple[str, str]:
    m = _FRAME.match(raw.strip())
    if m is None:
        return raw.strip(), ""
    return m.group("func"), m.group("file")


def _short(file: str) -> str:
    """py-spy writes paths relative to sys.path (trio/_socket.py); strip any prefix left."""
    for marker in ("site-packages/", "/lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def report(path: Path, top: int = 25) -> str:
    selfs: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        frames = [f for f in frames if f[1]]  # drop the thread/process header frames
        if not frames:
            continue
        total += count
        frames = [(func, _short(file)) for func, file in frames]
        if any(fn.startswith("gc_collect") for fn, _ in frames):
            frames = [
                *frames[
                    : next(i for i, (fn, _) in enumerate(frames) if fn.startswith("gc_collect"))
                ],
                ("gc_collect", "gc"),
            ]
        func, file = frames[-1]
        selfs[f"{func} ({file})"] += count
        for name in {f"{fn} ({fl})" for fn, fl in frames}:
            inclusive[name] += count
        layers[next(label for label, pattern in LAYERS if re.search(pattern, file))] += count
    if total == 0:
        return f"{path}: no samples"

    def ranked(counter: Counter[str], n: int) -> list[str]:
        return [f"| {100 * c / total:5.1f}% | `{name}` |" for name, c in counter.most_common(n)]

    return "\n".join(
        [
            f"{path.name}: {total} samples at {RATE_HZ} Hz (busy time only)",
            "",
            "self time by layer:",
            "",
            "| share | layer |",
            "|---:|---|",
            *ranked(layers, len(LAYERS)),
            "",
            f"self time, top {top} functions:",
            "",
            "| share | function |",
            "|---:|---|",
            *ranked(selfs, top),
            "",
            f"inclusive time, top {top} functions:",
            "",
            "| share | function |",
            "|---:|---|",
            *ranked(inclusive, top),
        ]
    )
