"""rt/ws/limits.py: the per-connection limits, fed numbers as the time."""

from __future__ import annotations

from rt.ws.limits import LogBudget, TokenBucket, WindowBudget


def test_a_token_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = TokenBucket(50, 100, now=0.0)
    assert all(bucket.take(0.0) for _ in range(100))
    assert not bucket.take(0.0)
    assert not bucket.take(0.019)  # 0.95 of a token
    assert bucket.take(0.02)  # one token per 20 ms
    assert not bucket.take(0.02)
    # Sustained, once the burst is spent: 50 a second pass.
    while bucket.take(1.0):
        pass
    passed = sum(bucket.take(1.0 + (i + 1) / 1000) for i in range(1000))
    assert passed == 50
    # Idle long enough, it is full again, and never more than full.
    assert sum(bucket.take(100.0) for _ in range(150)) == 100


def test_a_refused_take_spends_nothing() -> None:
    bucket = TokenBucket(1, 1, now=0.0)
    assert bucket.take(0.0)
    for i in range(1, 10):  # asking often does not push the next token back
        assert not bucket.take(i / 10)
    assert bucket.take(1.0)


def test_a_window_budget_counts_within_a_sliding_window() -> None:
    budget = WindowBudget(10, 60.0)
    assert all(budget.spend(t) for t in range(10))  # 0..9 s
    assert not budget.spend(30.0)
    assert budget.used(30.0) == 10
    assert not budget.spend(59.9)
    assert budget.spend(60.0)  # the event at 0 s has left the window
    assert not budget.spend(60.5)
    assert budget.spend(61.0)
    assert budget.used(200.0) == 0


def test_a_log_budget_says_how_many_lines_it_held_back() -> None:
    budget = LogBudget(2, 1.0)
    assert budget.take(0.0) == 0
    assert budget.take(0.1) == 0
    assert [budget.take(0.2 + i / 100) for i in range(5)] == [None] * 5
    assert budget.take(1.05) == 5
    assert budget.take(1.5) == 0
