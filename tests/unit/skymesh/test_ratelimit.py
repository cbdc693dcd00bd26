"""The token bucket every flood limit is made of, on an explicit clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skymesh.ratelimit import TokenBucket


def test_a_full_bucket_admits_its_burst_then_its_rate():
    b = TokenBucket(rate=10.0, burst=5, now=0.0)
    assert [b.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert b.limited
    assert b.take(0.1) and not b.take(0.1)  # 0.1 s at 10/s: one more
    assert b.limited
    assert sum(b.take(100.0) for _ in range(10)) == 5  # never more than the burst saved


def test_a_clock_going_backwards_grants_nothing():
    b = TokenBucket(rate=1.0, burst=1, now=10.0)
    assert b.take(10.0)
    assert not b.take(5.0)
    assert not b.take(10.5)
    assert b.take(11.0)


@pytest.mark.parametrize("rate, burst", [(0, 1), (-1, 5), (1, 0.5), (float("nan"), 3)])
def test_nonsense_limits_are_refused(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, 0.0)


@given(st.lists(st.floats(0, 1000), max_size=200), st.floats(0.1, 100), st.integers(1, 50))
def test_admitted_never_exceeds_burst_plus_rate_times_time(times, rate, burst):
    times = sorted(times)
    b = TokenBucket(rate, burst, 0.0)
    admitted = sum(b.take(t) for t in times)
    span = times[-1] if times else 0.0
    assert admitted <= burst + rate * span + 1e-6
