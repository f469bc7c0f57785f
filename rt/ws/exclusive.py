"""Keys that one connection at a time may hold (the topics dialect's ``client_id``).

A client that reconnects before its old socket timed out must not be locked out, so the newer
connection wins: taking a key displaces its holder, which closes with ``CLOSE_REPLACED``.
"""

from __future__ import annotations

from typing import Protocol

#: The close code of a connection displaced by a newer one with its key.
CLOSE_REPLACED = 4409


class Holder(Protocol):
    def displace(self, code: int, reason: str) -> None: ...


class ExclusiveKeys:
    def __init__(self) -> None:
        self._holders: dict[str, Holder] = {}

    def take(self, key: str, holder: Holder) -> None:
        """``holder`` holds ``key`` now; the previous holder, if any, is closed."""
        previous = self._holders.get(key)
        self._holders[key] = holder
        if previous is not None and previous is not holder:
            previous.displace(CLOSE_REPLACED, "replaced by a newer connection with its key")

    def release(self, key: str, holder: Holder) -> None:
        """``holder`` is closing: the key is free, unless a newer holder took it already."""
        if self._holders.get(key) is holder:
            del self._holders[key]

    def __len__(self) -> int:
        return len(self._holders)
