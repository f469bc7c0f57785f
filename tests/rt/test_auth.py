from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest

from rt.auth import (
    MAX_TTL_S,
    AuthError,
    Claims,
    TokenVerifier,
    bearer_token,
    is_admin_token,
    issue_token,
    verify_token,
)

# 64 bytes, so that the HS384/HS512 tokens below are not refused for their key length first.
SECRET = "s" * 64
OTHER_SECRET = "o" * 64
NOW = 1_700_000_000.0


def b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(payload: dict[str, Any], *, key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=algorithm)


def test_round_trip() -> None:
    token, expires_at_ms = issue_token(
        secret=SECRET, user_id=42, scope_markets=None, ttl_s=3600, now_s=NOW
    )
    assert expires_at_ms == (int(NOW) + 3600) * 1000
    claims = verify_token(token, secret=SECRET, now_s=NOW + 10)
    assert claims == Claims(user_id=42, scope_markets=None, expires_at_ms=expires_at_ms)
    assert isinstance(claims.user_id, int)


def test_claims_on_the_wire() -> None:
    token, _ = issue_token(secret=SECRET, user_id=7, scope_markets=["1001"], ttl_s=60, now_s=NOW)
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert payload == {
        "sub": "7",
        "uid": 7,
        "scopeMarkets": ["1001"],
        "iat": int(NOW),
        "exp": int(NOW) + 60,
    }


def test_string_user_id_and_scope_round_trip() -> None:
    token, _ = issue_token(
        secret=SECRET, user_id="alice", scope_markets=["1001", "1002"], ttl_s=60, now_s=NOW
    )
    claims = verify_token(token, secret=SECRET, now_s=NOW)
    assert claims.user_id == "alice"
    assert claims.scope_markets == frozenset({"1001", "1002"})


def test_empty_scope_grants_nothing_rather_than_everything() -> None:
    token, _ = issue_token(secret=SECRET, user_id=1, scope_markets=[], ttl_s=60, now_s=NOW)
    assert verify_token(token, secret=SECRET, now_s=NOW).scope_markets == frozenset()


def test_system_clock_is_used_without_now_s() -> None:
    import time

    token, _ = issue_token(
        secret=SECRET, user_id=1, scope_markets=None, ttl_s=60, now_s=time.time()
    )
    assert verify_token(token, secret=SECRET).user_id == 1
    old, _ = issue_token(secret=SECRET, user_id=1, scope_markets=None, ttl_s=60, now_s=NOW)
    with pytest.raises(AuthError, match="expired"):
        verify_token(old, secret=SECRET)


def test_forged_with_another_key() -> None:
    token, _ = issue_token(secret=OTHER_SECRET, user_id=1, scope_markets=None, ttl_s=60, now_s=NOW)
    with pytest.raises(AuthError, match="signature"):
        verify_token(token, secret=SECRET, now_s=NOW)


def test_alg_none_rejected() -> None:
    header = b64url({"alg": "none", "typ": "JWT"})
    payload = b64url({"sub": "1", "uid": 1, "exp": int(NOW) + 60})
    with pytest.raises(AuthError, match="'none' is not allowed"):
        verify_token(f"{header}.{payload}.", secret=SECRET, now_s=NOW)


def test_header_without_alg_rejected() -> None:
    with pytest.raises(AuthError, match="names no algorithm"):
        verify_token(b64url({"typ": "JWT"}) + "." + b64url({"sub": "1"}) + ".", secret=SECRET)


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_algorithm_is_pinned(algorithm: str) -> None:
    token = signed({"sub": "1", "exp": int(NOW) + 60}, algorithm=algorithm)
    with pytest.raises(AuthError, match=f"{algorithm}' is not allowed"):
        verify_token(token, secret=SECRET, now_s=NOW)


def test_expired_rejected_within_leeway_accepted() -> None:
    token, _ = issue_token(secret=SECRET, user_id=1, scope_markets=None, ttl_s=60, now_s=NOW)
    exp = int(NOW) + 60
    assert verify_token(token, secret=SECRET, now_s=exp + 4.9, leeway_s=5).user_id == 1
    with pytest.raises(AuthError, match="expired"):
        verify_token(token, secret=SECRET, now_s=exp + 5, leeway_s=5)
    with pytest.raises(AuthError, match="expired"):
        verify_token(token, secret=SECRET, now_s=exp, leeway_s=0)


def test_not_yet_valid_rejected() -> None:
    token, _ = issue_token(secret=SECRET, user_id=1, scope_markets=None, ttl_s=60, now_s=NOW)
    with pytest.raises(AuthError, match="not valid yet"):
        verify_token(token, secret=SECRET, now_s=NOW - 60)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"sub": "1"}, "no 'exp' claim"),
        ({"exp": int(NOW) + 60}, "no 'sub' claim"),
        ({"sub": 1, "exp": int(NOW) + 60}, "Subject must be a string"),
        ({"sub": "1", "exp": "tomorrow"}, "'exp' must be a number"),
        ({"sub": "1", "uid": 2, "exp": int(NOW) + 60}, "'uid' must match 'sub'"),
        ({"sub": "1", "scopeMarkets": "1001", "exp": int(NOW) + 60}, "list of strings"),
    ],
)
def test_bad_claims_rejected(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(AuthError, match=message):
        verify_token(signed(payload), secret=SECRET, now_s=NOW)


def test_non_finite_exp_rejected() -> None:
    # Python's json accepts NaN, and NaN compares false with everything: never "expired".
    header = b64url({"alg": "HS256", "typ": "JWT"})
    body = base64.urlsafe_b64encode(b'{"sub":"1","exp":NaN}').rstrip(b"=").decode()
    signing_input = f"{header}.{body}".encode()
    algorithm = jwt.get_algorithm_by_name("HS256")
    signature = algorithm.sign(signing_input, algorithm.prepare_key(SECRET))
    token = f"{header}.{body}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    with pytest.raises(AuthError, match="'exp' must be a number"):
        verify_token(token, secret=SECRET, now_s=NOW)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "a.b", "🙂.🙂.🙂", "..", "W10.e30."])
def test_garbage_rejected(garbage: str) -> None:
    with pytest.raises(AuthError, match="malformed"):
        verify_token(garbage, secret=SECRET, now_s=NOW)


@pytest.mark.parametrize("ttl_s", [0, -1, MAX_TTL_S + 1])
def test_ttl_out_of_range(ttl_s: int) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        issue_token(secret=SECRET, user_id=1, scope_markets=None, ttl_s=ttl_s, now_s=NOW)


def test_max_ttl_accepted() -> None:
    issue_token(secret=SECRET, user_id=1, scope_markets=None, ttl_s=MAX_TTL_S, now_s=NOW)


def test_short_secret_is_a_server_error() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        issue_token(secret="short", user_id=1, scope_markets=None, ttl_s=60, now_s=NOW)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        verify_token("a.b.c", secret="short")


# -- TokenVerifier: a reconnecting client's token is checked once --------------------------


def test_a_token_seen_before_is_not_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    token, _ = issue_token(secret=SECRET, user_id=7, scope_markets=["1"], ttl_s=60, now_s=NOW)
    verifier = TokenVerifier(SECRET)
    first = verifier.verify(token, now_s=NOW)
    decodes = []
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: decodes.append(a))
    assert verifier.verify(token, now_s=NOW + 30) == first
    assert decodes == []


def test_a_remembered_token_still_expires() -> None:
    token, _ = issue_token(secret=SECRET, user_id=7, scope_markets=None, ttl_s=60, now_s=NOW)
    verifier = TokenVerifier(SECRET, leeway_s=5.0)
    verifier.verify(token, now_s=NOW)
    assert verifier.verify(token, now_s=NOW + 64).user_id == 7  # inside the leeway
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token, now_s=NOW + 65)


def test_a_refused_token_is_refused_every_time() -> None:
    forged, _ = issue_token(secret=OTHER_SECRET, user_id=7, scope_markets=None, ttl_s=60, now_s=NOW)
    verifier = TokenVerifier(SECRET)
    for _ in range(2):
        with pytest.raises(AuthError, match="signature"):
            verifier.verify(forged, now_s=NOW)


def test_the_verifier_remembers_a_bounded_number_of_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokens = [
        issue_token(secret=SECRET, user_id=n, scope_markets=None, ttl_s=60, now_s=NOW)[0]
        for n in range(3)
    ]
    verifier = TokenVerifier(SECRET, remember=2)
    for token in tokens:
        verifier.verify(token, now_s=NOW)
    real_decode = jwt.decode
    decodes = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        decodes.append(args[0])
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    assert verifier.verify(tokens[0], now_s=NOW).user_id == 0  # forgotten: decoded again
    assert verifier.verify(tokens[2], now_s=NOW).user_id == 2  # remembered
    assert decodes == [tokens[0]]


# -- the admin token, as every admin route and /ws/publish checks it ----------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Bearer ", ""),
        ("Basic abc", None),
        ("", None),
        ("abc", None),
    ],
)
def test_bearer_token_reads_only_the_bearer_scheme(header: str, token: str | None) -> None:
    assert bearer_token(header) == token


def test_the_admin_token_must_be_set_and_equal() -> None:
    assert is_admin_token("admin", "admin")
    assert not is_admin_token("admin2", "admin")
    assert not is_admin_token("", "admin")
    assert not is_admin_token(None, "admin")
    assert not is_admin_token("", "")  # no admin token set: nobody is admin
