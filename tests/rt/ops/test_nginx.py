"""docs/deploy/nginx.conf, run by Debian's nginx in front of two rt nodes on one Redis:
WebSocket upgrades and the REST API pass through it, over plain HTTP and TLS (a certificate
made with openssl for the test), and connections reach both nodes."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import trio
from trio_websocket import wrap_client_stream

from rt.server import Server, open_server
from tests.redis_server import RedisServer
from tests.rt.e2e._support import TIMEOUT_S, Peer, e2e_settings, make_token

CONF = Path(__file__).parents[3] / "docs" / "deploy" / "nginx.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def certificate(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    crt, key = tmp / "rt.crt", tmp / "rt.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True,
    )  # fmt: skip
    return crt, key


@contextmanager
def nginx(upstream_ports: list[int], tmp: Path) -> Iterator[tuple[int, int, Path]]:
    """docs/deploy/nginx.conf with its ports and certificate replaced, run in the
    foreground: (the plain port, the TLS port, the certificate)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), "nginx is needed (scripts/test installs Debian's nginx)"
    port, tls_port = free_port(), free_port()
    crt, key = certificate(tmp)
    text = CONF.read_text()
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    text = text.replace("listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;")
    text = text.replace("/etc/nginx/tls/rt.crt", str(crt)).replace(
        "/etc/nginx/tls/rt.key", str(key)
    )
    servers = "".join(f"server 127.0.0.1:{p};\n        " for p in upstream_ports)
    text = re.sub(r"(server 127\.0\.0\.1:\d+;\s*)+", servers, text)
    (tmp / "logs").mkdir()
    (tmp / "nginx.conf").write_text(text)
    process = subprocess.Popen(
        [binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g",
         f"daemon off; master_process off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(500):  # until it listens (at most 5 s)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert process.poll() is None, (tmp / "error.log").read_text()
                subprocess.run(["sleep", "0.01"], check=True)
        yield port, tls_port, crt
    finally:
        process.terminate()
        process.wait(timeout=10)


async def peer_via(
    nursery: trio.Nursery, port: int, resource: str, tls: ssl.SSLContext | None = None
) -> Peer:
    """A client WebSocket through nginx on ``port`` (wss:// with ``tls``)."""
    stream: trio.abc.Stream
    if tls is None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    else:
        stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=tls)
    with trio.fail_after(TIMEOUT_S):
        ws = await wrap_client_stream(nursery, stream, f"127.0.0.1:{port}", resource)
    return Peer(ws, stream)


async def test_two_nodes_behind_the_documented_nginx(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = redis_server.new_prefix()
    async with AsyncExitStack() as stack:
        nodes: list[Server] = []
        for _ in range(2):
            settings = e2e_settings(engine_url=redis_server.url, redis_key_prefix=prefix)
            nodes.append(await stack.enter_async_context(open_server(settings)))
        with nginx([n.port for n in nodes], tmp_path) as (port, tls_port, crt):
            base = f"http://127.0.0.1:{port}"
            tls = ssl.create_default_context(cafile=str(crt))
            admin = {"Authorization": f"Bearer {nodes[0].settings.admin_token}"}
            async with (
                httpx.AsyncClient(base_url=base, timeout=TIMEOUT_S) as http,
                httpx.AsyncClient(
                    base_url=f"https://127.0.0.1:{tls_port}", timeout=TIMEOUT_S, verify=tls
                ) as https,
            ):
                health = await http.get("/api/ws/health")
                assert health.status_code == 200, health.text
                health = await https.get("/api/ws/health")
                assert health.status_code == 200, health.text

                # WebSockets through nginx: four clients, round robin over the two nodes,
                # two of them over TLS.
                async with trio.open_nursery() as nursery:
                    token = quote(make_token(1))
                    resource = f"/ws/odds?token={token}"
                    peers = [await peer_via(nursery, port, resource) for _ in range(2)]
                    peers += [await peer_via(nursery, tls_port, resource, tls) for _ in range(2)]
                    for peer in peers:
                        await peer.subscribe(1001)
                    assert all(n.stats.open >= 1 for n in nodes)  # both nodes serve clients
                    body = {"marketId": 1001, "payload": {"home": 1.9}}
                    response = await http.post("/admin/odds/override", json=body, headers=admin)
                    assert response.status_code == 200, response.text
                    for peer in peers:
                        update = await peer.recv()
                        assert (update["type"], update["seq"]) == ("odds_update", 1)
                        assert update["payload"] == {"home": 1.9}
                        await peer.aclose()
