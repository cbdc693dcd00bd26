"""sdk/edges.py's choice of edge: the edge in use is kept unless another is at least 10 ms
and a third faster over recent measurements (Tailscale's rule); the fastest when none is in
use."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdk.edges import keep_or_switch


def test_the_fastest_when_no_edge_is_in_use_or_it_was_not_measured():
    assert keep_or_switch(None, {"a:1": [30.0, 25.0], "b:1": [20.0]}) == "b:1"
    assert keep_or_switch("gone:1", {"a:1": [30.0], "b:1": [20.0]}) == "b:1"


@pytest.mark.parametrize(("mine", "theirs", "switch"), [
    (30.0, 19.0, True),    # 11 ms and 37% faster
    (30.0, 21.0, False),   # 9 ms: not enough
    (100.0, 70.0, False),  # 30 ms but 30%: not a third
    (100.0, 66.0, True),   # 34 ms and 34%
    (12.0, 1.0, True),
    (9.0, 0.5, False),     # a third faster, but under 10 ms
])
def test_the_edge_in_use_is_kept_unless_another_is_10_ms_and_a_third_faster(mine, theirs,
                                                                            switch):
    got = keep_or_switch("cur:1", {"cur:1": [mine + 5, mine], "new:1": [theirs, theirs + 3]})
    assert got == ("new:1" if switch else "cur:1")


def test_nothing_measured_keeps_the_edge_in_use():
    assert keep_or_switch("cur:1", {"cur:1": [], "new:1": []}) == "cur:1"
    with pytest.raises(ValueError):
        keep_or_switch(None, {})


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]),
                       st.lists(st.floats(0.1, 500), min_size=1, max_size=4), min_size=1),
       st.sampled_from(["a", "b", "c", "d", None]))
def test_a_switch_is_always_to_a_much_faster_edge(recent, current):
    got = keep_or_switch(current, recent)
    assert got in recent or got == current
    if current in recent and got != current:
        assert min(recent[current]) - min(recent[got]) >= 10
