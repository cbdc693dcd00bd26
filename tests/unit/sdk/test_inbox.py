"""The session's inbox: every publisher's messages handed on once and in order, across a move
to another edge where replayed and live messages interleave; gaps asked for again, then
skipped and counted."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from sdk.inbox import Inbox, Message


def m(seq: int, stream: str = "fra:abc") -> Message:
    return Message("pub", seq, f"m{seq}", stream, seq)


def bodies(inbox: Inbox) -> list[str]:
    out = [x.body for x in inbox.ready]
    inbox.ready.clear()
    return out


def test_in_order_once_and_unnumbered_as_they_come():
    inbox = Inbox()
    for seq in (5, 6, 6, 7):  # a stream is first heard of wherever the session came in
        inbox.add(m(seq), 0.0)
    inbox.add(Message("pub", 1, "early"), 0.0)
    assert bodies(inbox) == ["m5", "m6", "m7", "early"]
    assert inbox.duplicates == 1 and inbox.positions() == {"fra:abc": 7}


def test_a_gap_holds_what_follows_until_the_replay_fills_it():
    inbox = Inbox(ask_again_s=0.5, give_up_s=5.0)
    inbox.add(m(1), 0.0)
    for seq in (4, 5):  # live, on the new edge
        inbox.add(m(seq), 1.0)
    assert bodies(inbox) == ["m1"] and inbox.gaps == 1
    assert inbox.due(1.2) == {}
    assert inbox.due(1.5) == {"fra:abc": 1}  # asked again ...
    assert inbox.due(1.7) == {}  # ... not at every look
    for seq in (2, 3, 4, 5):  # the replay: some of it the live stream already brought
        inbox.add(m(seq), 1.8)
    assert bodies(inbox) == ["m2", "m3", "m4", "m5"]
    assert inbox.gaps == 0 and inbox.duplicates == 2 and inbox.lost == 0


def test_a_gap_nobody_fills_is_skipped_and_counted():
    inbox = Inbox(ask_again_s=0.5, give_up_s=5.0)
    inbox.add(m(1), 0.0)
    inbox.add(m(4), 1.0)
    inbox.add(m(7), 1.0)
    inbox.expire(5.9)
    assert bodies(inbox) == ["m1"]
    inbox.expire(6.0)  # 4 goes on; 7 waits on its own gap, from now
    assert bodies(inbox) == ["m4"] and inbox.lost == 2 and inbox.gaps == 1
    inbox.expire(10.9)
    assert bodies(inbox) == []
    inbox.expire(11.0)
    assert bodies(inbox) == ["m7"] and inbox.lost == 4 and inbox.gaps == 0


def test_a_publisher_that_moved_is_taken_past_what_was_delivered_of_it():
    inbox = Inbox()
    for i in range(1, 6):  # ids 1..5 through fra
        inbox.add(Message("host", i, f"m{i}", "fra:p1", i), 0.0)
    # its edge died; at ams it sends again what fra may not have passed on, then goes on
    for seq, i in enumerate((4, 5, 6, 7), 1):
        inbox.add(Message("host", i, f"m{i}", "ams:p1", seq), 1.0)
    assert bodies(inbox) == [f"m{i}" for i in range(1, 8)] and inbox.duplicates == 2
    # what fra still had on its way is taken no more either
    inbox.add(Message("host", 6, "m6", "fra:p1", 6), 1.1)
    assert bodies(inbox) == [] and inbox.duplicates == 3
    # at an edge that has not numbered it yet (no seq), a message sent again is known too
    inbox.add(Message("host", 7, "m7", "lon:p1", None), 1.15)
    inbox.add(Message("host", 8, "m8", "lon:p1", None), 1.15)
    assert bodies(inbox) == ["m8"] and inbox.duplicates == 4
    # another publisher with the same ids is another stream
    inbox.add(Message("guest", 1, "g1", "ams:p2", 1), 1.2)
    assert bodies(inbox) == ["g1"]


def test_streams_are_independent_and_bounded():
    inbox = Inbox()
    inbox.add(m(1, "a:p1"), 0.0)
    inbox.add(m(3, "a:p1"), 0.0)
    inbox.add(m(1, "b:p2"), 0.0)
    assert bodies(inbox) == ["m1", "m1"] and inbox.positions() == {"a:p1": 1, "b:p2": 1}
    for k in range(300):
        inbox.add(m(1, f"s:{k}"), 0.0)
    assert len(inbox.positions()) == 256 and "a:p1" not in inbox.positions()
    assert inbox.gaps == 0  # the forgotten stream's gap went with it


@given(st.integers(1, 60), st.integers(0, 2**32), st.floats(0.0, 0.5))
def test_any_interleaving_of_live_and_replayed_copies_is_handed_on_once_in_order(
        n, seed, dup_rate):
    rng = random.Random(seed)
    copies = [m(seq) for seq in range(1, n + 1)]
    copies += [m(seq) for seq in range(1, n + 1) if rng.random() < dup_rate]
    first, rest = copies[0], copies[1:]
    rng.shuffle(rest)
    inbox = Inbox()
    for i, c in enumerate([first, *rest]):
        inbox.add(c, i * 0.001)
    assert bodies(inbox) == [f"m{seq}" for seq in range(1, n + 1)]
    assert inbox.gaps == 0 and inbox.lost == 0
