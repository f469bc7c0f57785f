"""JWT access tokens: issue them, and verify the ones that clients present.

Tokens are HS256 JWTs signed with the server's secret (``RT_JWT_SECRET``). Their claims:

- ``sub``: the user id as a string (JWT requires a string subject),
- ``uid``: the user id as it was given, so an integer id stays an integer,
- ``scopeMarkets``: the market ids the token may subscribe to; absent means every market,
- ``iat`` and ``exp``: issued-at and expiry, in whole seconds since the Unix epoch.

Verification pins the algorithm to HS256, whatever the token's header says: a token claiming
``none``, or HS384/HS512 under the same secret, is rejected. Every way a token can be bad ends in
one `AuthError`, so the caller has one thing to catch and one reply to send.
"""

from __future__ import annotations

import hmac
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

__all__ = ["MAX_TTL_S", "MIN_SECRET_BYTES", "AuthError", "Claims", "issue_token", "verify_token"]

ALGORITHM = "HS256"

#: The longest lifetime a token may be issued with: one day.
MAX_TTL_S = 86_400

#: RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32


class AuthError(Exception):
    """The client's token is not acceptable; the message says why, and can be sent back."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token grants."""

    user_id: int | str
    scope_markets: frozenset[str] | None  # None: every market
    expires_at_ms: int
    #: What the user's plan allows (the predictions dialect enforces it): one of TIERS.
    tier: str = "free"


#: The plans a token may name; a token without one is "free".
TIERS = ("free", "premium")


def issue_token(
    *,
    secret: str,
    user_id: int | str,
    scope_markets: list[str] | None,
    ttl_s: int,
    now_s: float,
    tier: str = "free",
) -> tuple[str, int]:
    """Sign a token for ``user_id`` valid for ``ttl_s`` seconds from ``now_s``.

    Returns the token and its expiry in milliseconds since the Unix epoch. Market ids in
    ``scope_markets`` are stored as strings; None grants every market. Raises ValueError when
    ``ttl_s`` is outside 1..MAX_TTL_S or the secret is shorter than MIN_SECRET_BYTES.
    """
    _check_secret(secret)
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be between 1 and {MAX_TTL_S} seconds, got {ttl_s!r}")
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
    issued_at = int(now_s)
    expires_at = issued_at + ttl_s
    claims: dict[str, Any] = {"sub": str(user_id), "uid": user_id, "iat": issued_at}
    if scope_markets is not None:
        claims["scopeMarkets"] = [str(market) for market in scope_markets]
    if tier != "free":
        claims["tier"] = tier
    claims["exp"] = expires_at
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires_at * 1000


def verify_token(
    token: str, *, secret: str, now_s: float | None = None, leeway_s: float = 5.0
) -> Claims:
    """Check ``token``'s signature and lifetime, and return its claims.

    ``now_s`` (seconds since the Unix epoch) replaces the system clock, for tests and for callers
    that already read it. The token is valid while ``now_s < exp + leeway_s`` (and, when it has
    them, ``iat`` and ``nbf`` are not later than ``now_s + leeway_s``). Raises AuthError for any
    bad token, and ValueError for a secret shorter than MIN_SECRET_BYTES (a server mistake, not
    the client's).
    """
    _check_secret(secret)
    try:
        # PyJWT can only read the system clock, so it checks the signature, the algorithm and
        # the claims' presence and types, and the lifetime is checked below against `now`, in
        # the same way whether or not a clock was injected.
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={
                "require": ["exp", "sub"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidAlgorithmError as exc:
        raise AuthError(_algorithm_message(token)) from exc
    except jwt.InvalidSignatureError as exc:
        raise AuthError("token signature is invalid (signed with another key?)") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token has no {exc.claim!r} claim") from exc
    except jwt.DecodeError as exc:
        raise AuthError(f"token is malformed: {exc}") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"token is invalid: {exc}") from exc

    now = time.time() if now_s is None else now_s
    exp = _numeric_date(payload, "exp")
    _check_not_expired(exp, now, leeway_s)
    for claim in ("iat", "nbf"):
        if claim in payload and _numeric_date(payload, claim) > now + leeway_s:
            raise AuthError(f"token is not valid yet ({claim} is in the future)")

    tier = payload.get("tier", "free")
    if tier not in TIERS:
        raise AuthError(f"token names an unknown tier {tier!r}; tiers: {', '.join(TIERS)}")
    return Claims(
        user_id=_user_id(payload),
        scope_markets=_scope_markets(payload),
        expires_at_ms=int(exp * 1000),
        tier=tier,
    )


class TokenVerifier:
    """``verify_token`` that remembers the tokens it has accepted (the last ``remember``).

    A client that reconnects presents the same token again, and in a reconnect storm
    thousands do at once: the signature and the claims need checking only once per token.
    The lifetime is checked on every use. Only accepted tokens are remembered.
    """

    def __init__(self, secret: str, *, leeway_s: float = 5.0, remember: int = 10_000) -> None:
        _check_secret(secret)
        self._secret = secret
        self._leeway_s = leeway_s
        self._remember = remember
        self._accepted: OrderedDict[str, Claims] = OrderedDict()

    def verify(self, token: str, *, now_s: float | None = None) -> Claims:
        now = time.time() if now_s is None else now_s
        claims = self._accepted.get(token)
        if claims is None:
            claims = verify_token(token, secret=self._secret, now_s=now, leeway_s=self._leeway_s)
            self._accepted[token] = claims
            if len(self._accepted) > self._remember:
                self._accepted.popitem(last=False)
            return claims
        # iat and nbf were in the past then, so they still are; exp is the one that can pass.
        _check_not_expired(claims.expires_at_ms / 1000, now, self._leeway_s)
        self._accepted.move_to_end(token)
        return claims


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (None for any other)."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def is_admin_token(given: str | None, expected: str) -> bool:
    """``given`` is the admin token (compared in constant time); never true when none is set."""
    return (
        bool(expected)
        and given is not None
        and hmac.compare_digest(given.encode(), expected.encode())
    )


def _check_not_expired(exp: float, now: float, leeway_s: float) -> None:
    if now >= exp + leeway_s:
        raise AuthError(f"token expired at {exp:.0f} (now {now:.0f})")


def _check_secret(secret: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes for HS256, "
            f"got {len(secret.encode())}"
        )


def _algorithm_message(token: str) -> str:
    alg = jwt.get_unverified_header(token).get("alg")  # decodable: decode() got past it
    if alg is None:
        return "token header names no algorithm; use HS256"
    return f"token algorithm {alg!r} is not allowed; use HS256"


def _numeric_date(payload: dict[str, Any], claim: str) -> float:
    value = payload[claim]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AuthError(f"token claim {claim!r} must be a number of seconds, got {value!r}")
    return float(value)


def _user_id(payload: dict[str, Any]) -> int | str:
    subject: str = payload["sub"]  # PyJWT checked that it is a string
    if "uid" not in payload:
        return subject
    uid = payload["uid"]
    if isinstance(uid, bool) or not isinstance(uid, int | str) or str(uid) != subject:
        raise AuthError(f"token claim 'uid' must match 'sub' {subject!r}, got {uid!r}")
    return uid


def _scope_markets(payload: dict[str, Any]) -> frozenset[str] | None:
    if "scopeMarkets" not in payload:
        return None
    markets = payload["scopeMarkets"]
    if not isinstance(markets, list) or not all(isinstance(m, str) for m in markets):
        raise AuthError(f"token claim 'scopeMarkets' must be a list of strings, got {markets!r}")
    return frozenset(markets)
