"""A connection that cannot be started in time is refused alone; the listener carries on."""

from __future__ import annotations

import pytest
import trio

from rt.server import Server

from ._support import connect


@pytest.mark.server_settings(connection_start_timeout_s=0.3)
async def test_a_stalled_connections_supervisor_refuses_new_clients_with_1013(
    server: Server,
) -> None:
    async with connect(server) as existing:
        await existing.ping()
        fault = server.system.faults.arm("stall", actor="conns")
        async with connect(server) as refused:
            reason = await refused.closed()
            assert (reason.code, reason.reason) == (1013, "TRY_AGAIN_LATER")
        await existing.ping()  # a client already connected is untouched
        server.system.faults.disarm(fault.id)
        listener = server.system.tree()["children"][-1]
        assert (listener["name"], listener["restarts"]) == ("public", 0)  # never crashed
        with trio.fail_after(5):
            async with connect(server) as fresh:
                await fresh.ping()
