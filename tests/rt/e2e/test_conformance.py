"""RFC 6455 conformance: the Autobahn TestSuite's cases 1.* to 10.*, run by kosoku, against
rt's echo endpoint (served only with ``echo_endpoint=True``) over 127.0.0.1.

The echo runs on the socket layer every dialect uses (the upgrade checks, the frame guard,
the Wire, the close), so this is the check that it speaks the protocol, including how it
fails a connection: each case must end OK, NON-STRICT or INFORMATIONAL. (Section 8 does not
exist in the suite; 12 and 13 test permessage-deflate, which rt does not negotiate.)
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import kosoku
import trio

from rt.server import open_server

from ._support import e2e_settings

SECTIONS = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}


def _run_cases(url: str) -> list[kosoku.CaseResult]:
    """Every case, in a thread of its own: kosoku runs on asyncio, rt on Trio."""

    async def run() -> list[kosoku.CaseResult]:
        try:
            return await kosoku.run_fuzzingclient(url, SECTIONS, concurrency=4)
        except kosoku.FailureError as failed:  # the results say which, below
            return failed.results

    return asyncio.run(run())


async def test_every_autobahn_case_from_1_to_10_passes() -> None:
    async with open_server(e2e_settings(echo_endpoint=True)) as server:
        url = f"ws://127.0.0.1:{server.ws_port}/ws/echo"
        started = time.monotonic()
        results = await trio.to_thread.run_sync(_run_cases, url)
        took_s = time.monotonic() - started
    verdicts = Counter((r.behavior.value, r.behavior_close.value) for r in results)
    failed = [
        f"{r.case_id}: {r.behavior.value}/{r.behavior_close.value} {r.result} {r.result_close}"
        for r in results
        if r.behavior.value not in ACCEPTED or r.behavior_close.value not in ACCEPTED
    ]
    assert not failed, "\n".join(failed)
    # Every connection rt fails gets a close frame with its code, never a bare TCP close:
    # the one case without a code is 7.3.1, where the client's own close carried none.
    without_code = [r.case_id for r in results if r.remote_close_code is None]
    assert without_code == ["7.3.1"]
    codes = Counter(r.remote_close_code for r in results)
    assert codes[1002] >= 40 and codes[1007] >= 70, codes  # protocol errors, bad UTF-8
    assert len(results) == 301, verdicts  # the whole of sections 1-7, 9 and 10
    assert took_s < 60, f"the suite took {took_s:.0f} s"


async def test_without_the_setting_there_is_no_echo() -> None:
    async with open_server(e2e_settings()) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.ws_port)
        try:
            await stream.send_all(
                b"GET /ws/echo HTTP/1.1\r\nHost: rt.test\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            with trio.fail_after(5):
                head = await stream.receive_some()
        finally:
            await stream.aclose()
        assert head.startswith(b"HTTP/1.1 404 ")
