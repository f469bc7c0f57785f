"""rt/http/hypercorn_adapter.py leans on Hypercorn internals (TCPServer, WorkerContext) to serve
connections the front door accepted; this fails loudly if the pin or those internals change."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def test_hypercorn_is_pinned_to_the_version_the_adapter_was_written_for() -> None:
    (pinned,) = re.findall(r'"hypercorn==([\d.]+)"', PYPROJECT.read_text())
    assert version("hypercorn") == pinned == "0.18.0"


def test_the_internals_the_adapter_calls_keep_their_shape() -> None:
    assert list(inspect.signature(TCPServer.__init__).parameters) == [
        "self",
        "app",
        "config",
        "context",
        "state",
        "stream",
    ]
    assert list(inspect.signature(WorkerContext.__init__).parameters) == ["self", "max_requests"]
    context = WorkerContext(None)
    assert hasattr(context, "terminated") and hasattr(context.terminated, "set")
    # A stream without do_handshake is served as plain HTTP: TCPServer.run tells TLS that way.
    assert "do_handshake" in inspect.getsource(TCPServer.run)
