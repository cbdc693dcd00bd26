"""Who is in a channel (relay/presence.py): this edge's sessions, the other edges'
announcements, an edge gone, and what sessions are shown. No I/O, explicit times."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.presence import (
    ANNOUNCE_S,
    REFRESH_S,
    SMALL_CHANNEL,
    STALE_S,
    Presence,
    announcement,
    parse_announcement,
)

KEY = ("global", "demo/live")


def bodies(p: Presence, now: float) -> dict:
    return {key: json.loads(body) for key, body in p.due(now)}


def test_local_joins_are_announced_once_batched_and_refreshed():
    p = Presence("fra")
    p.joined(KEY, "ann", 0.0)
    p.joined(KEY, "bob", 0.05)
    p.joined(KEY, "ann", 0.1)  # a second session of ann: the same user
    assert p.due(0.1) == []  # not yet: changes are batched for ANNOUNCE_S
    assert bodies(p, ANNOUNCE_S) == {KEY: {"count": 2, "members": ["ann", "bob"]}}
    assert p.due(1.0) == []  # nothing changed
    assert bodies(p, ANNOUNCE_S + REFRESH_S) == {KEY: {"count": 2, "members": ["ann", "bob"]}}
    p.left(KEY, "ann", 6.0)  # one of ann's two sessions: still there
    assert p.due(7.0) == []
    p.left(KEY, "ann", 7.0)
    p.left(KEY, "bob", 7.0)
    assert bodies(p, 8.0) == {KEY: {"count": 0, "members": []}}  # said once, then forgotten
    assert KEY not in p.channels


def test_a_large_channel_is_announced_by_count():
    p = Presence("fra")
    for i in range(SMALL_CHANNEL + 1):
        p.joined(KEY, f"u{i}", 0.0)
    assert bodies(p, 1.0) == {KEY: {"count": SMALL_CHANNEL + 1}}
    view = p.view(KEY)
    assert view == {"count": SMALL_CHANNEL + 1, "regions": {"fra": SMALL_CHANNEL + 1}}


def test_the_view_adds_other_edges_and_names_who_joined_and_left():
    p = Presence("fra")
    p.joined(KEY, "ann", 0.0)
    assert p.heard(KEY, "ams", announcement(2, ["cat", "dan"]), 0.1)
    assert p.heard(KEY, "ams/n2", announcement(1, ["eve"]), 0.1)  # a second node of ams
    view = dict(p.changes())[KEY]
    assert view["count"] == 4 and view["regions"] == {"ams": 3, "fra": 1}
    assert view["members"] == ["ann", "cat", "dan", "eve"]
    assert sorted(view["joined"]) == [["ann", "fra"], ["cat", "ams"], ["dan", "ams"],
                                     ["eve", "ams"]]
    assert p.changes() == []  # shown: nothing new
    p.heard(KEY, "ams", announcement(1, ["cat"]), 1.0)
    view = dict(p.changes())[KEY]
    assert view["left"] == [["dan", "ams"]] and view["count"] == 3
    # a large edge elsewhere: counts only
    p.heard(KEY, "sin", announcement(SMALL_CHANNEL + 5, None), 1.0)
    view = dict(p.changes())[KEY]
    assert "members" not in view and "joined" not in view
    assert view["count"] == 3 + SMALL_CHANNEL + 5
    # this edge's own announcement coming back, or a body that is not one: ignored
    assert not p.heard(KEY, "fra", announcement(9, ["x"]), 1.0)
    assert not p.heard(KEY, "ams", "{not json", 1.0)
    assert not p.heard(KEY, "ams", json.dumps({"count": -1}), 1.0)


def test_an_edge_the_controller_no_longer_lists_is_gone_with_its_users():
    p = Presence("fra")
    p.joined(KEY, "ann", 0.0)
    p.due(ANNOUNCE_S)
    p.members_are(KEY, ["fra", "ams"], 0.5)
    p.heard(KEY, "ams", announcement(1, ["cat"]), 0.6)
    p.changes()
    p.members_are(KEY, ["fra"], 1.0)  # ams's relay died
    view = dict(p.changes())[KEY]
    assert view["count"] == 1 and view["left"] == [["cat", "ams"]]
    # a new member relay hears this edge's announcement soon, not at the next refresh
    p.members_are(KEY, ["fra", "sin"], 2.0)
    assert bodies(p, 2.0 + ANNOUNCE_S) == {KEY: {"count": 1, "members": ["ann"]}}


def test_announcements_not_refreshed_go_stale():
    p = Presence("fra")
    p.joined(KEY, "ann", 0.0)
    p.heard(KEY, "ams", announcement(1, ["cat"]), 0.0)
    p.expire(STALE_S - 1)
    assert p.view(KEY)["count"] == 2
    p.expire(STALE_S + 1)
    assert p.view(KEY) == {"count": 1, "regions": {"fra": 1}, "members": ["ann"]}


def test_parse_announcement_takes_only_what_it_should():
    assert parse_announcement(announcement(2, ["a", "b"])) == (2, frozenset({"a", "b"}))
    assert parse_announcement(announcement(70, None)) == (70, None)
    for bad in ("[]", "1", '{"count": true}', '{"count": 1, "members": "a"}',
                '{"count": 1, "members": [1]}',
                json.dumps({"count": 1, "members": [str(i) for i in range(SMALL_CHANNEL + 1)]})):
        assert parse_announcement(bad) is None, bad


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from("abcdef")), max_size=60))
def test_the_count_is_the_distinct_users_with_a_session_left(ops):
    p = Presence("fra")
    sessions: dict[str, int] = {}
    for t, (join, uid) in enumerate(ops):
        if join:
            p.joined(KEY, uid, float(t))
            sessions[uid] = sessions.get(uid, 0) + 1
        elif sessions.get(uid):
            p.left(KEY, uid, float(t))
            sessions[uid] -= 1
    there = sorted(u for u, n in sessions.items() if n)
    assert p.view(KEY).get("members", []) == there
    assert p.view(KEY)["count"] == len(there)
