"""Danmaku storms (relay/danmaku.py): fair thinning, per-user limits, what goes on to the
other edges and what sessions are shown, per tick. No I/O, explicit times, a seeded RNG."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.danmaku import TICK_S, Danmaku, DanmakuLimits, fair_sample
from skymesh.edgeproto import (
    COMMENTS_DATAGRAM,
    MAX_BATCH_BYTES,
    comments_datagrams,
    decode_batch,
    encode_batches,
)

KEY = ("global", "demo/live")


def test_every_user_is_taken_once_before_anyone_twice():
    items = [("spammer", f"s{i}") for i in range(50)] + [("ann", "a1"), ("bob", "b1")]
    got = fair_sample(items, 5, random.Random(1))
    assert len(got) == 5 and ("ann", "a1") in got and ("bob", "b1") in got
    assert fair_sample(items, 0, random.Random(1)) == []
    assert fair_sample(items[:3], 10, random.Random(1)) == items[:3]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.text(max_size=5)), max_size=80),
       st.integers(0, 40), st.integers(0, 2**32))
def test_a_sample_is_fair_and_bounded(items, k, seed):
    got = fair_sample(items, k, random.Random(seed))
    assert len(got) == min(k, len(items))
    assert not Counter(got) - Counter(items)  # only what came, never twice
    per_user = Counter(u for u, _ in got)
    everyone = Counter(u for u, _ in items)
    if per_user:  # a user taken n + 1 times means every user with n + 1 had at least n
        top = max(per_user.values())
        assert all(per_user[u] >= min(everyone[u], top - 1) for u in everyone)


def test_a_storm_is_thinned_to_the_show_rate_and_the_forward_rate():
    d = Danmaku(DanmakuLimits(per_user_per_s=1, per_user_burst=1, show_per_s=20,
                              forward_per_s=100), random.Random(7))
    now = 0.0
    for i in range(1000):  # a thousand viewers comment in one tick
        assert d.comment(KEY, f"v{i}", f"c{i}", now)
    d.heard(KEY, [("far", "from another edge")])
    forward, show = d.tick({KEY: True})
    (key, sent), = forward
    assert key == KEY and len(sent) == int(100 * TICK_S)
    (_, shown), = show
    assert len(shown) == int(20 * TICK_S)
    assert d.counters["thinned"] == 1001 - len(shown)
    # the next tick has nothing pending: nothing is queued from one tick to the next
    assert d.tick({KEY: True}) == ([], [])
    assert KEY not in d.channels


def test_a_user_commenting_too_fast_is_refused():
    d = Danmaku(DanmakuLimits(per_user_per_s=1, per_user_burst=3), random.Random(1))
    assert [d.comment(KEY, "spam", "x", 0.0) for _ in range(5)] == [True] * 3 + [False] * 2
    assert d.comment(KEY, "other", "y", 0.0)  # another user's own budget
    assert d.comment(KEY, "spam", "x", 1.0)  # a second later: one more
    assert d.counters["refused"] == 2


def test_no_sessions_here_nothing_shown_but_still_sent_on():
    d = Danmaku(rng=random.Random(1))
    d.comment(KEY, "v", "hello", 0.0)
    forward, show = d.tick({})
    assert forward == [(KEY, [("v", "hello")])] and show == []


def test_batches_fit_a_datagram_and_decode_back():
    comments = [(f"user{i}", "弹幕" * 30) for i in range(40)]
    batches = encode_batches(comments)
    assert all(len(b) <= MAX_BATCH_BYTES for b in batches) and len(batches) > 1
    assert [c for b in batches for c in decode_batch(b)] == comments
    assert decode_batch(b"not json") == [] and decode_batch(b'[[1, "x"], ["u"]]') == []
    shown = comments_datagrams(comments)  # what a session is shown: the same, kind byte first
    assert [d[:1] for d in shown] == [COMMENTS_DATAGRAM] * len(batches)
    assert [d[1:] for d in shown] == batches


def test_a_late_tick_shows_what_the_time_it_covers_allows():
    """A busy edge ticks late; its viewers are still shown `show_per_s` a second, not
    `show_per_s` per TICK_S ticks."""
    d = Danmaku(DanmakuLimits(show_per_s=20.0, per_user_burst=1000), rng=random.Random(3))
    for i in range(100):
        d.comment(KEY, f"v{i}", "x", 0.0)
    _, show = d.tick({KEY: True}, elapsed=3 * TICK_S)
    assert len(show[0][1]) == round(20 * 3 * TICK_S)  # 20/s over the time of three ticks
    for i in range(100):
        d.comment(KEY, f"w{i}", "x", 0.0)
    _, show = d.tick({KEY: True}, elapsed=TICK_S)
    assert len(show[0][1]) == round(20 * TICK_S)
