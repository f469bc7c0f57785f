"""``rt serve --workers N``: N server processes on one port, supervised by the parent.

One Python process holds one core. Each worker is a whole node (`rt serve` in a process of
its own) listening with SO_REUSEPORT on the same port, so the kernel spreads connections over
them; they share topics through the Redis engine, the one thing that makes them one server
(with the memory engine each would have topics of its own, so more than one worker is
refused). Only the first worker runs the demo feeds.

The parent prints the ready line once every worker is ready, restarts a worker that exits
(one line on stderr, then again after RESTART_DELAY_S), and on SIGINT or SIGTERM stops them
all (SIGTERM, then SIGKILL after STOP_TIMEOUT_S).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping

import trio

from rt.engine import is_redis_url
from rt.settings import Settings

log = logging.getLogger(__name__)

RESTART_DELAY_S = 0.5
STOP_TIMEOUT_S = 15.0


def refusal(settings: Settings, workers: int) -> str | None:
    """Why ``workers`` processes cannot serve with ``settings``, if they cannot."""
    if workers < 1:
        return f"--workers must be at least 1, got {workers}"
    if workers > 1 and not is_redis_url(settings.engine_url):
        return (
            f"--workers {workers} needs a shared engine (--engine redis://HOST:PORT/DB): with "
            "the memory engine each worker would have topics of its own"
        )
    return None


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def worker_argv(argv: list[str]) -> list[str]:
    """``rt serve``'s arguments without ``--workers``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


class Workers:
    def __init__(
        self,
        count: int,
        argv: list[str],
        env: Mapping[str, str],
        on_ready: Callable[[str], None],
    ) -> None:
        self.count = count
        self.argv = argv
        self.env = dict(env)
        self.on_ready = on_ready
        self.stopping = False
        self.processes: dict[int, trio.Process] = {}
        self._ready: dict[int, str] = {}
        self._announced = False

    def _env(self, index: int) -> dict[str, str]:
        env = dict(self.env, RT_REUSE_PORT="true")
        if index > 0:
            env["RT_DEMO_FEED"] = "false"  # one demo is enough: they share the topics
        return env

    async def run(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                for index in range(self.count):
                    nursery.start_soon(self._keep, index)
                async for _ in signals:
                    break
                self.stopping = True
                await self._stop_all()
                nursery.cancel_scope.cancel()

    async def _keep(self, index: int) -> None:
        """Run worker ``index`` and start it again whenever it exits."""
        command = [sys.executable, "-m", "rt.cli", "serve", *self.argv]
        while not self.stopping:
            process = await trio.lowlevel.open_process(
                command, env=self._env(index), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
            )
            self.processes[index] = process
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_ready, index, process)
                code = await process.wait()
            if self.stopping:
                return
            print(
                f"rt: worker {index + 1} (pid {process.pid}) exited with {code}; restarting",
                file=sys.stderr,
                flush=True,
            )
            await trio.sleep(RESTART_DELAY_S)

    async def _read_ready(self, index: int, process: trio.Process) -> None:
        assert process.stdout is not None
        buffer = b""
        async for chunk in process.stdout:
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                text = line.decode(errors="replace").strip()
                if text.startswith("rt ready "):
                    self._ready[index] = text
                    if len(self._ready) == self.count and not self._announced:
                        self._announced = True
                        self.on_ready(self._ready[0])

    async def _stop_all(self) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_TIMEOUT_S):
            for process in self.processes.values():
                await process.wait()
        for process in self.processes.values():
            if process.returncode is None:
                process.kill()
                await process.wait()


def serve_workers(
    settings: Settings, count: int, argv: list[str], on_ready: Callable[[str], None]
) -> int:
    """Run ``count`` workers of ``rt serve argv`` until SIGINT or SIGTERM."""
    port = settings.port or free_port(settings.host)
    env = dict(os.environ, RT_PORT=str(port))
    # Every worker signs and checks tokens with the same secrets (generated once in --dev).
    env["RT_JWT_SECRET"] = settings.jwt_secret
    env["RT_ADMIN_TOKEN"] = settings.admin_token
    args = [*worker_argv(argv), "--port", str(port)]
    if settings.admin_port is not None:
        args += ["--admin-port", str(settings.admin_port or free_port(settings.host))]
    if settings.trading_port is not None:
        args += ["--trading-port", str(settings.trading_port or free_port(settings.host))]
    trio.run(Workers(count, args, env, on_ready).run)
    return 0
