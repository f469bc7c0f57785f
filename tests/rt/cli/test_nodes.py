"""Three `rt serve` processes on one Redis: publish through one node, receive through another,
SIGKILL that one mid-stream, and the client resumes on the third with no gap and no
duplicate (rt.client.KMarketClient checks every message)."""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
import trio

from rt.client import KMarketClient
from tests.redis_server import RedisServer
from tests.rt.cli.test_cli import RT, SECRET, _env, serving
from tests.rt.e2e._support import make_token

ADMIN = "admin-token-for-the-nodes-test-0123456789"
UPDATES = 60


def node_env(redis: RedisServer) -> dict[str, str]:
    """The environment of `rt serve` nodes sharing a fresh, empty part of ``redis``."""
    return _env(
        RT_JWT_SECRET=SECRET,
        RT_ADMIN_TOKEN=ADMIN,
        RT_ENGINE=redis.url,
        RT_REDIS_KEY_PREFIX=redis.new_prefix(),
        RT_DEMO_FEED="false",
    )


async def wait_for(predicate: Any, what: str, within_s: float = 15.0) -> None:
    with trio.fail_after(within_s):
        for _ in range(100_000):  # every 10 ms, bounded by the deadline
            if predicate():
                return
            await trio.sleep(0.01)
    raise AssertionError(f"never: {what}")


# trio-websocket's client leaves its TCP socket open when the server dies under it; that
# client-side ResourceWarning is not a server fault (as in tests/chaos).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_client_resumes_on_another_node_when_its_node_is_killed(
    redis_server: RedisServer,
) -> None:
    env = node_env(redis_server)
    with ExitStack() as stack:
        nodes = [stack.enter_context(serving("--port", "0", env=env)) for _ in range(3)]
        (a, _), (b, b_ready), (c, c_ready) = [(p, m) for p, m in nodes]
        a_url = f"http://127.0.0.1:{nodes[0][1].group(4)}"
        client = KMarketClient(
            f"ws://127.0.0.1:{b_ready.group(2)}", make_token(1), [1001], backoff=lambda _: 0.05
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run)
            await wait_for(lambda: "1001" in client.markets, "the snapshot from node B")
            headers = {"Authorization": f"Bearer {ADMIN}"}
            async with httpx.AsyncClient(base_url=a_url, headers=headers, timeout=5) as http:
                for n in range(1, UPDATES + 1):
                    body = {"marketId": 1001, "payload": {"n": n, f"k{n % 7}": n}}
                    response = await http.post("/admin/odds/override", json=body)
                    assert response.status_code == 200, response.text
                    if n == UPDATES // 3:
                        await wait_for(lambda: client.markets["1001"].seq >= 5, "updates via B")
                        b.kill()  # SIGKILL: node B dies mid-stream
                        client.ws_url = f"ws://127.0.0.1:{c_ready.group(2)}"
                    await trio.sleep(0.005)
                snapshot = (await http.get("/api/markets/1001/odds/snapshot")).json()
            assert snapshot["seq"] == UPDATES
            await wait_for(lambda: client.markets["1001"].seq == UPDATES, "the last update via C")
            assert client.markets["1001"].state == snapshot["payload"]
            assert client.connects == 2  # B, then C: resumed there, not resubscribed
            nursery.cancel_scope.cancel()
        assert a.poll() is None and c.poll() is None


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (made by any of its threads)."""
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(p) for p in f.read().split()]
    return sorted(found)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_workers_share_one_port_and_a_worker_that_dies_is_restarted(
    redis_server: RedisServer,
) -> None:
    env = node_env(redis_server)
    with serving("--workers", "2", "--port", "0", env=env) as (parent, ready):
        port = ready.group(2)
        workers = children(parent.pid)
        assert len(workers) == 2
        clients = [
            KMarketClient(f"ws://127.0.0.1:{port}", make_token(1), [1001], backoff=lambda _: 0.05)
            for _ in range(8)
        ]
        headers = {"Authorization": f"Bearer {ADMIN}"}
        base = f"http://127.0.0.1:{port}"
        async with (
            trio.open_nursery() as nursery,
            httpx.AsyncClient(base_url=base, headers=headers, timeout=5) as http,
        ):
            for client in clients:
                nursery.start_soon(client.run)
            await wait_for(lambda: all("1001" in c.markets for c in clients), "8 subscribed")
            for n in range(1, 6):
                body = {"marketId": 1001, "payload": {"n": n}}
                assert (await http.post("/admin/odds/override", json=body)).status_code == 200
            # Whichever worker each client reached, it gets every update, in order.
            await wait_for(lambda: all(c.markets["1001"].seq == 5 for c in clients), "seq 5")
            nursery.cancel_scope.cancel()

        os.kill(workers[1], signal.SIGKILL)
        await wait_for(
            lambda: len(children(parent.pid)) == 2 and workers[1] not in children(parent.pid),
            "the worker restarted",
        )
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 0
        assert children_of_none(workers) == []


def children_of_none(pids: list[int]) -> list[int]:
    """``pids`` that still exist as processes (zombies reaped by their parent are gone)."""
    return [p for p in pids if os.path.exists(f"/proc/{p}")]


def test_more_than_one_worker_needs_a_shared_engine() -> None:
    env = _env(RT_JWT_SECRET=SECRET, RT_DEMO_FEED="false")
    result = subprocess.run(
        [*RT, "serve", "--workers", "2", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "rt: --workers 2 needs a shared engine (--engine redis://HOST:PORT/DB): with the memory "
        "engine each worker would have topics of its own"
    ]
