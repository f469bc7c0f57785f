"""The admin token's gate: checks it in constant time, and slows down whoever guesses.

Every admin route (HTTP and ``/ws/publish``) asks `AdminGate.check`. An address that has
failed ``max_failures`` times within ``window_s`` is refused (HTTP 429, with Retry-After)
until its oldest failure leaves the window, whatever token it sends meanwhile, the right one
included: a guesser learns nothing while limited. Successes cost nothing and are not counted.
Time is Trio's clock, so the tests run it virtually.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict, deque
from typing import Any

import trio

from rt.auth import bearer_token, is_admin_token
from rt.ws.handshake import Refusal

__all__ = ["AdminGate", "Verdict", "admin_refusal", "require_admin"]

#: Addresses whose failures are remembered at once; the least recently failing are forgotten.
MAX_TRACKED_PEERS = 10_000


class Verdict(enum.Enum):
    OK = "ok"
    DENIED = "denied"  # 401: not the admin token
    LIMITED = "limited"  # 429: too many failures from this address lately


class AdminGate:
    def __init__(self, token: str, *, max_failures: int, window_s: float) -> None:
        self._token = token
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, given: str | None, peer: str, now: float) -> Verdict:
        recent = self._recent(peer, now)
        if recent is not None and len(recent) >= self.max_failures:
            return Verdict.LIMITED
        if is_admin_token(given, self._token):
            return Verdict.OK
        if recent is None:
            recent = self._failures[peer] = deque()
            if len(self._failures) > MAX_TRACKED_PEERS:
                self._failures.popitem(last=False)
        recent.append(now)
        self._failures.move_to_end(peer)
        return Verdict.DENIED

    def check_bearer(self, authorization: str, peer: str) -> Verdict:
        """`check` for an ``Authorization: Bearer <token>`` header value, now."""
        return self.check(bearer_token(authorization), peer, trio.current_time())

    def limited_refusal(self, peer: str) -> Refusal:
        """The upgrade refusal (429, with Retry-After) for a limited address."""
        message, retry_s = self.limited_message(peer)
        return Refusal(
            429, "TOO_MANY_ATTEMPTS", message, ((b"retry-after", str(retry_s).encode()),)
        )

    def limited_message(self, peer: str) -> tuple[str, int]:
        """What a limited client is told, and its Retry-After in seconds."""
        retry = self.retry_after_s(peer, trio.current_time())
        return (
            f"too many failed admin authentications from {peer}; try again in {retry} s",
            retry,
        )

    def retry_after_s(self, peer: str, now: float) -> int:
        """Whole seconds until ``peer`` may try again (at least 1)."""
        recent = self._recent(peer, now)
        if not recent:
            return 1
        return max(1, math.ceil(recent[0] + self.window_s - now))

    def _recent(self, peer: str, now: float) -> deque[float] | None:
        recent = self._failures.get(peer)
        if recent is None:
            return None
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if not recent:
            del self._failures[peer]
            return None
        return recent


def admin_refusal(gate: AdminGate, request: Any) -> tuple[int, str, str, dict[str, str]] | None:
    """None when a Starlette ``request`` carries the admin token; else the status (401 or
    429), error code, message and headers to answer with."""
    peer = request.client.host if request.client else "unknown"
    verdict = gate.check_bearer(request.headers.get("authorization", ""), peer)
    if verdict is Verdict.OK:
        return None
    if verdict is Verdict.LIMITED:
        message, retry_s = gate.limited_message(peer)
        return 429, "TOO_MANY_ATTEMPTS", message, {"retry-after": str(retry_s)}
    return 401, "UNAUTHORIZED", "this route needs Authorization: Bearer <admin token>", {}


def require_admin(gate: AdminGate, request: Any) -> None:
    """The one admin check of every HTTP route: ApiError (401 or 429) unless ``request``
    carries the admin token."""
    from rt.http.errors import ApiError

    refusal = admin_refusal(gate, request)
    if refusal is not None:
        status, code, message, headers = refusal
        raise ApiError(status, code, message, headers=headers)
