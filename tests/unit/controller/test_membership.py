"""Channel members for publishers' relays (controller/membership.py), with explicit times: who
is told what, when the set changes, and the hold after a controller start."""

from __future__ import annotations

from controller.membership import Members, Membership

CH = ("eu", "demo/live")
SUB, PUB, BOTH = (True, False), (False, True), (True, True)
HOLD = 6.0


def membership(*connected: str, expected: int | None = None) -> Membership:
    """Relays `connected` at t=0; by default every expected region is back (no hold)."""
    m = Membership(expected if expected is not None else len(connected), HOLD, started=0.0)
    for r in connected:
        m.connect(r)
    return m


def told(updates: list[Members]) -> dict[str, tuple[str, ...]]:
    return {u.node: u.regions for u in updates}


def test_a_publisher_is_told_the_subscribers_when_it_starts_and_when_they_change():
    m = membership("aa", "bb", "cc")
    assert m.on_channels("bb", {CH: SUB}, 1.0) == []  # nobody publishes yet
    assert m.on_channels("aa", {CH: PUB}, 1.0) == [Members("aa", "eu", "demo/live", ("bb",))]
    assert told(m.on_channels("cc", {CH: SUB}, 2.0)) == {"aa": ("bb", "cc")}
    # the same set again: nothing to tell
    assert m.on_channels("cc", {CH: SUB}, 3.0) == []
    assert m.members_of(CH) == ("bb", "cc")
    assert m.publishers_of(CH) == ["aa"] and m.channels() == [CH]


def test_a_new_publisher_is_told_even_when_the_members_did_not_change():
    m = membership("aa", "bb", "cc")
    m.on_channels("bb", {CH: SUB}, 1.0)
    m.on_channels("aa", {CH: PUB}, 1.0)
    # cc starts publishing: only cc is told, aa already knows
    assert m.on_channels("cc", {CH: PUB}, 2.0) == [Members("cc", "eu", "demo/live", ("bb",))]


def test_a_publisher_that_also_subscribes_is_among_its_members():
    m = membership("aa", "bb")
    assert told(m.on_channels("aa", {CH: BOTH}, 1.0)) == {"aa": ("aa",)}


def test_subscribers_leaving_are_told_down_to_an_empty_set():
    m = membership("aa", "bb", "cc")
    m.on_channels("aa", {CH: PUB}, 1.0)
    m.on_channels("bb", {CH: SUB}, 1.0)
    m.on_channels("cc", {CH: SUB}, 1.0)
    # (with a region missing, the start-up hold would still apply before HOLD)
    assert told(m.disconnect("cc", HOLD + 1)) == {"aa": ("bb",)}
    assert told(m.on_channels("bb", {}, HOLD + 2)) == {"aa": ()}
    assert CH not in m.members and m.members_of(CH) == ()


def test_a_publisher_leaving_tells_nobody():
    m = membership("aa", "bb")
    m.on_channels("aa", {CH: PUB}, 1.0)
    m.on_channels("bb", {CH: SUB}, 1.0)
    assert m.disconnect("aa", HOLD + 1) == []
    assert m.channels() == [CH] and m.publishers_of(CH) == []


def test_a_reconnected_relay_starts_with_no_channels():
    m = membership("aa", "bb")
    m.on_channels("bb", {CH: SUB}, 1.0)
    m.connect("bb")
    assert m.members_of(CH) == () and m.channels() == []


def test_channels_of_a_relay_not_connected_are_ignored():
    m = membership("aa")
    m.on_channels("aa", {CH: PUB}, 1.0)
    assert m.on_channels("zz", {CH: SUB}, 1.0) == []
    assert m.members_of(CH) == ()


def test_members_are_held_after_a_start_until_every_region_is_back():
    m = membership("aa", "bb", expected=3)
    assert m.holding(0.0) and m.holding(HOLD - 0.01)
    assert m.on_channels("aa", {CH: PUB}, 1.0) == []
    assert m.on_channels("bb", {CH: SUB}, 1.0) == []
    assert m.release_due(2.0) == []
    m.connect("cc")  # the last region is back: the hold ends before its time
    assert not m.holding(2.0)
    assert told(m.release_due(2.0)) == {"aa": ("bb",)}
    assert m.released
    assert m.release_due(3.0) == []  # once


def test_members_are_released_after_the_hold_with_regions_still_missing():
    m = membership("aa", "bb", expected=5)
    m.on_channels("aa", {CH: PUB}, 1.0)
    m.on_channels("bb", {CH: SUB}, 1.0)
    assert m.release_due(HOLD - 0.01) == []
    assert not m.holding(HOLD)
    assert told(m.release_due(HOLD)) == {"aa": ("bb",)}


def test_the_release_tells_every_publisher_even_of_an_empty_channel():
    """After a restart a publisher's relay may hold members from before: the release
    replaces them, for every channel it publishes to."""
    other = ("eu", "demo/other")
    m = membership("aa", "bb", expected=3)
    m.on_channels("aa", {CH: PUB, other: PUB}, 1.0)
    m.on_channels("bb", {CH: SUB}, 1.0)
    updates = m.release(HOLD)
    assert sorted((u.node, u.channel, u.regions) for u in updates) == [
        ("aa", "demo/live", ("bb",)), ("aa", "demo/other", ())]


def test_during_the_start_up_hold_a_relay_leaving_tells_nobody_yet():
    """With a region missing, the hold applies to every change until hold_s has passed."""
    m = membership("aa", "bb", "cc")
    m.on_channels("aa", {CH: PUB}, 1.0)
    m.on_channels("bb", {CH: SUB}, 1.0)
    assert m.disconnect("bb", 2.0) == []
    assert m.members == {CH: ("bb",)}  # as last pushed
    assert told(m.on_channels("cc", {CH: SUB}, HOLD)) == {"aa": ("cc",)}


def test_once_released_a_relay_leaving_within_the_hold_time_holds_nothing_back():
    """Every region came back (the hold ended early), then one went within HOLD of the start:
    the hold must not come back with it, or what the others report next is told to nobody
    (found by tests/integration/test_flood.py: messages held at the publisher's relay)."""
    m = membership("aa", "dd", "ee")
    assert m.release_due(1.0) == [] and m.released
    m.disconnect("ee", 2.0)
    assert not m.holding(2.5)
    assert m.on_channels("dd", {CH: SUB}, 3.0) == []  # no publisher yet
    assert told(m.on_channels("aa", {CH: PUB}, 3.5)) == {"aa": ("dd",)}


def test_a_region_with_several_nodes_has_each_subscribed_node_as_a_member():
    """Members are nodes by address, however many a region has: a second node adds itself,
    and a node leaving takes only itself away (no destination is ever renamed)."""
    m = membership("aa/n1", "bb/n1", expected=2)
    m.on_channels("aa/n1", {CH: PUB}, 1.0)
    assert told(m.on_channels("bb/n1", {CH: SUB}, 1.0)) == {"aa/n1": ("bb/n1",)}
    m.connect("bb/n2")
    assert told(m.on_channels("bb/n2", {CH: SUB}, 2.0)) == {"aa/n1": ("bb/n1", "bb/n2")}
    assert m.members_of(CH) == ("bb/n1", "bb/n2")
    assert m.publishers_of(CH) == ["aa"]
    assert told(m.disconnect("bb/n1", 3.0)) == {"aa/n1": ("bb/n2",)}
    assert m.members_of(CH) == ("bb/n2",)


def test_a_node_reconnecting_keeps_its_members_until_it_reports():
    m = membership("aa/n1", "bb/n1", "bb/n2", expected=2)
    m.on_channels("aa/n1", {CH: PUB}, 1.0)
    m.on_channels("bb/n2", {CH: SUB}, 1.0)
    m.connect("bb/n2")  # the same node again: nothing told until it reports
    assert told(m.on_channels("bb/n2", {}, 2.0)) == {"aa/n1": ()}


def test_a_publisher_on_a_sibling_node_gets_its_sibling_as_a_member():
    m = membership("aa/n1", "aa/n2", expected=1)
    m.on_channels("aa/n2", {CH: SUB}, 1.0)
    assert told(m.on_channels("aa/n1", {CH: (True, True)}, 1.0)) == {
        "aa/n1": ("aa/n1", "aa/n2")}
