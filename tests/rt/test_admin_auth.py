"""rt/http/admin.py: the admin token's gate, on explicit times (Trio's clock in the server)."""

from __future__ import annotations

import pytest

from rt.http.admin import AdminGate, Verdict
from rt.server import check_admin_token
from rt.settings import Settings

TOKEN = "t" * 32


def gate() -> AdminGate:
    return AdminGate(TOKEN, max_failures=10, window_s=60.0)


def test_ten_failures_in_a_minute_limit_the_address_even_for_the_right_token() -> None:
    g = gate()
    for second in range(10):
        assert g.check("guess", "10.0.0.1", float(second)) is Verdict.DENIED
    assert g.check(TOKEN, "10.0.0.1", 10.0) is Verdict.LIMITED
    assert g.check("guess", "10.0.0.1", 10.0) is Verdict.LIMITED
    assert g.retry_after_s("10.0.0.1", 10.0) == 50  # when the first failure leaves the window
    # Another address is not affected.
    assert g.check(TOKEN, "10.0.0.2", 10.0) is Verdict.OK
    # A minute after the first failure, one attempt is allowed again.
    assert g.check(TOKEN, "10.0.0.1", 60.0) is Verdict.OK
    assert g.check("guess", "10.0.0.1", 60.5) is Verdict.DENIED
    assert g.check(TOKEN, "10.0.0.1", 60.5) is Verdict.LIMITED


def test_limited_attempts_are_not_counted_so_waiting_is_enough() -> None:
    g = gate()
    for _ in range(10):
        g.check("guess", "p", 0.0)
    for second in range(1, 60):
        assert g.check("guess", "p", float(second)) is Verdict.LIMITED
    assert g.check(TOKEN, "p", 60.0) is Verdict.OK


def test_successes_cost_nothing() -> None:
    g = gate()
    for _ in range(1000):
        assert g.check(TOKEN, "p", 0.0) is Verdict.OK
    assert g.check("guess", "p", 0.0) is Verdict.DENIED


def test_no_admin_token_set_refuses_everything() -> None:
    g = AdminGate("", max_failures=10, window_s=60.0)
    assert g.check("", "p", 0.0) is Verdict.DENIED
    assert g.check(None, "p", 0.0) is Verdict.DENIED


@pytest.mark.parametrize(("token", "ok"), [("", True), ("x" * 31, False), ("x" * 32, True)])
def test_the_admin_token_must_be_32_bytes_or_none(token: str, ok: bool) -> None:
    settings = Settings(admin_token=token)
    if ok:
        check_admin_token(settings)
    else:
        with pytest.raises(ValueError, match="at least 32 bytes long, got 31"):
            check_admin_token(settings)
