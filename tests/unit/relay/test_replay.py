"""The anti-replay window (relay/replay.py), against a model that remembers everything."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.replay import ACCEPTED, SEEN, TOO_OLD, ReplayGuard, Window


def model(size: int, seqs: list[int]) -> list[str]:
    """RFC 4303 3.4.3 spelled out: every number ever accepted remembered."""
    seen: set[int] = set()
    top = -1
    out = []
    for s in seqs:
        if s <= top - size:
            out.append(TOO_OLD)
        elif s in seen:
            out.append(SEEN)
        else:
            seen.add(s)
            top = max(top, s)
            out.append(ACCEPTED)
    return out


def test_in_order_then_replays():
    w = Window(4)
    assert [w.update(s) for s in (1, 2, 3)] == [ACCEPTED] * 3
    assert [w.update(s) for s in (3, 2, 1)] == [SEEN] * 3
    assert w.update(10) == ACCEPTED
    assert [w.update(s) for s in (6, 7, 8, 9, 10)] == [TOO_OLD, ACCEPTED, ACCEPTED, ACCEPTED,
                                                       SEEN]
    assert w.update(7) == SEEN


def test_reordered_within_the_window_is_accepted_once():
    w = Window(8)
    for s in (5, 3, 4, 1, 2, 8, 6, 7):
        assert w.update(s) == ACCEPTED
    assert all(w.update(s) == SEEN for s in range(1, 9))
    assert w.update(0) == TOO_OLD  # 8 - 0 = 8: just out of a window of 8


def test_a_jump_past_the_window_forgets_everything_before():
    w = Window(8)
    w.update(1)
    assert w.update(1000) == ACCEPTED and w.bits == 1
    assert w.update(1) == TOO_OLD and w.update(993) == ACCEPTED and w.update(992) == TOO_OLD


def test_zero_is_a_number_like_any_other():
    w = Window(4)
    assert w.update(0) == ACCEPTED and w.update(0) == SEEN


def test_check_says_what_update_would_and_changes_nothing():
    w = Window(4)
    w.update(5)
    before = (w.top, w.bits)
    assert [w.check(s) for s in (1, 2, 5, 6)] == [TOO_OLD, ACCEPTED, SEEN, ACCEPTED]
    assert (w.top, w.bits) == before


@settings(max_examples=400, deadline=None)
@given(size=st.integers(1, 70),
       seqs=st.lists(st.integers(0, 300), max_size=300))
def test_window_matches_the_model(size, seqs):
    w = Window(size)
    got = []
    for s in seqs:
        expected = w.check(s)
        got.append(w.update(s))
        assert got[-1] == expected
        assert 0 <= w.bits < 1 << size  # bounded: never more than `size` bits
    assert got == model(size, seqs)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 64), seqs=st.lists(st.integers(0, 2**32), max_size=100))
def test_no_number_is_ever_accepted_twice(size, seqs):
    w = Window(size)
    accepted = [s for s in seqs + seqs if w.update(s) == ACCEPTED]
    assert len(accepted) == len(set(accepted))


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 64), n=st.integers(1, 200), data=st.data())
def test_reordering_within_the_window_loses_nothing(size, n, data):
    """A permutation that moves no number further back than the window accepts all of it."""
    order = list(range(n))
    # swap neighbours within `size - 1` of each other: displacement below the window
    for _ in range(n):
        i = data.draw(st.integers(0, n - 1))
        j = min(n - 1, i + data.draw(st.integers(0, max(0, (size - 1) // 2))))
        order[i], order[j] = order[j], order[i]
    w = Window(size)
    if all(max(order[:k + 1]) - order[k] < size for k in range(n)):
        assert all(w.update(s) == ACCEPTED for s in order)


def test_guard_keeps_one_window_per_epoch_and_sender():
    g = ReplayGuard(size=16, max_windows=8)
    assert g.accept(1, b"a", 5) == ACCEPTED
    assert g.accept(1, b"b", 5) == ACCEPTED  # another sender's numbers are its own
    assert g.accept(2, b"a", 5) == ACCEPTED  # and another epoch's
    assert g.accept(1, b"a", 5) == SEEN
    assert len(g) == 3


def test_guard_forgets_retired_epochs_only():
    g = ReplayGuard(size=16)
    for epoch in (1, 2, 3):
        g.accept(epoch, b"a", 1)
    g.retain({2, 3})
    assert sorted(k[0] for k in g.windows) == [2, 3]
    assert g.accept(2, b"a", 1) == SEEN


def test_guard_is_bounded_and_evicts_the_least_recently_used():
    g = ReplayGuard(size=16, max_windows=3)
    for sender in (b"a", b"b", b"c"):
        g.accept(1, sender, 1)
    g.accept(1, b"a", 2)  # a is used again: b is now the oldest
    g.accept(1, b"d", 1)
    assert len(g) == 3 and g.evicted == 1
    assert {k[1] for k in g.windows} == {b"a", b"c", b"d"}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([b"a", b"b", b"c", b"d", b"e"]),
                          st.integers(0, 50)), max_size=200))
def test_guard_matches_a_model_per_window_while_nothing_is_evicted(events):
    g = ReplayGuard(size=8, max_windows=1000)
    streams: dict = {}
    for epoch, sender, seq in events:
        streams.setdefault((epoch, sender), []).append(seq)
        got = g.accept(epoch, sender, seq)
        assert got == model(8, streams[(epoch, sender)])[-1]
    assert g.evicted == 0 and len(g) == len(streams)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        ReplayGuard(size=0)
    with pytest.raises(ValueError):
        ReplayGuard(max_windows=0)
