"""``/ws/echo``: sends every message back as it came. Served only with ``Settings.echo_endpoint``
(a test setting): the conformance suite (tests/rt/e2e/test_conformance.py, the Autobahn cases
run by kosoku) drives rt's socket layer through it, the same layer every dialect uses: the
handshake checks, the frame guard, the Wire and the close. It takes no token, accepts binary
messages, and allows messages as large as the Autobahn cases send (16 MiB, in up to 2^20
fragments).
"""

from __future__ import annotations

from typing import ClassVar

import trio

from rt.ws.frames import frame_binary, frame_text
from rt.ws.inbound import GuardLimits
from rt.ws.socket_actor import SocketActor

__all__ = ["ECHO_LIMITS", "ECHO_PATH", "EchoSocket"]

ECHO_PATH = "/ws/echo"

ECHO_LIMITS = GuardLimits(max_message_bytes=16 * 1024 * 1024, max_fragments=1 << 20, binary=True)


class EchoSocket(SocketActor):
    kind: ClassVar[str] = "echo"
    mailbox_capacity: ClassVar[int] = 8

    async def run(self) -> None:
        await self.serve_socket()
        await self.close_socket()

    async def on_frame(self, message: str | bytes) -> bool:
        self.wire.write(frame_text(message) if isinstance(message, str) else frame_binary(message))
        # The next message is read once this one is out: an echo holds at most one.
        try:
            return self.wire.idle or await self._flush()
        except trio.BrokenResourceError:
            return False  # the peer is gone
