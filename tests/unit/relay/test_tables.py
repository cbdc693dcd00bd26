"""RouteTables.apply: versions in order only, validated before use, kept on failure."""

import math

import pytest

from relay.tables import Entry, RouteTables


def entry(*path: str, cost: float = 10.0) -> Entry:
    return Entry(dst=path[-1], next_hop=path[1], path=tuple(path), cost_ms=cost)


GOOD = [entry("fra", "ams"), entry("fra", "ams", "lhr", cost=20.0), entry("fra", "sin")]


@pytest.fixture
def held() -> RouteTables:
    """A table at version 5 with known entries."""
    t = RouteTables("fra")
    assert t.apply(5, GOOD) is None
    return t


def snapshot(t: RouteTables):
    return t.version, dict(t.entries)


def test_fresh_table_is_empty_at_version_zero():
    t = RouteTables("fra")
    assert t.version == 0
    assert t.entries == {}
    assert t.next_hop("ams") is None


def test_apply_valid_table(held):
    assert held.version == 5
    assert set(held.entries) == {("global", "ams"), ("global", "lhr"), ("global", "sin")}
    assert held.next_hop("lhr") == "ams"
    assert held.next_hop("sin") == "sin"
    assert held.next_hop("nowhere") is None
    assert held.entries[("global", "lhr")].cost_ms == 20.0
    assert held.next_hop("lhr") == held.entries[("global", "lhr")].next_hop


def test_newer_version_replaces_whole_table(held):
    assert held.apply(6, [entry("fra", "sin", "lhr")]) is None
    assert held.version == 6
    assert set(held.entries) == {("global", "lhr")}
    assert held.next_hop("lhr") == "sin"
    assert held.next_hop("ams") is None


def test_versions_may_skip(held):
    assert held.apply(100, GOOD[:1]) is None
    assert held.version == 100


def test_empty_table_is_valid(held):
    assert held.apply(6, []) is None
    assert held.entries == {}


@pytest.mark.parametrize("version", [5, 4, 0, -1])
def test_equal_or_older_version_rejected(held, version):
    before = snapshot(held)
    reason = held.apply(version, [entry("fra", "sin", "lhr")])
    assert reason is not None
    assert "stale" in reason
    assert "holding version 5" in reason
    assert str(version) in reason
    assert snapshot(held) == before


def test_first_table_must_be_newer_than_zero():
    t = RouteTables("fra")
    assert t.apply(0, GOOD) is not None
    assert t.entries == {}


BAD = {
    "duplicate": ([entry("fra", "ams"), entry("fra", "lhr", "ams")], "duplicate destination 'ams'"),
    "self": ([Entry("fra", "ams", ("fra", "ams", "fra"), 1.0)], "route to self"),
    "not from here": ([entry("ams", "lhr")], "does not run from here to there"),
    "not to dst": ([Entry("lhr", "ams", ("fra", "ams"), 1.0)], "does not run from here to there"),
    "path of one": ([Entry("ams", "ams", ("fra",), 1.0)], "does not run from here to there"),
    "empty path": ([Entry("ams", "ams", (), 1.0)], "does not run from here to there"),
    "next hop": ([Entry("lhr", "sin", ("fra", "ams", "lhr"), 1.0)], "next hop 'sin'"),
    "loop": ([entry("fra", "ams", "fra", "lhr")], "loops"),
    "loop later": ([entry("fra", "ams", "sin", "ams", "lhr")], "loops"),
    "negative": ([entry("fra", "ams", cost=-1.0)], "bad cost -1.0"),
    "nan": ([entry("fra", "ams", cost=math.nan)], "bad cost nan"),
}


@pytest.mark.parametrize("entries, expected", BAD.values(), ids=BAD.keys())
def test_invalid_table_rejected_and_held_table_kept(held, entries, expected):
    before = snapshot(held)
    reason = held.apply(6, GOOD[2:] + entries)
    assert reason is not None
    assert expected in reason
    assert snapshot(held) == before
    # the rejected version is not consumed: a valid table with it still applies
    assert held.apply(6, GOOD[:1]) is None
    assert held.version == 6


def test_reason_names_the_destination():
    t = RouteTables("fra")
    reason = t.apply(1, [Entry("lhr", "sin", ("fra", "ams", "lhr"), 1.0)])
    assert "'lhr'" in reason
    assert "not the path's second hop" in reason


def test_check_does_not_apply():
    t = RouteTables("fra")
    assert t.check(GOOD) is None
    assert t.version == 0 and t.entries == {}


def test_zero_cost_accepted():
    t = RouteTables("fra")
    assert t.apply(1, [entry("fra", "ams", cost=0.0)]) is None
    assert t.entries[("global", "ams")].cost_ms == 0.0


def test_zones_are_separate_tables_and_backups_must_be_alternatives():
    t = RouteTables("fra")
    eu = Entry("ams", "ams", ("fra", "ams"), 4.0, "eu", "par")
    glob = Entry("ams", "lhr", ("fra", "lhr", "ams"), 9.0, "global", None)
    assert t.apply(1, [eu, glob]) is None
    assert t.next_hop("ams", "eu") == "ams" and t.next_hop("ams") == "lhr"
    same = Entry("ams", "ams", ("fra", "ams"), 4.0, "eu", "ams")
    assert "no alternative" in t.apply(2, [same])
    assert t.version == 1


# --- fast reroute --------------------------------------------------------------------------

def backed(*path: str, backup: str | None, cost: float = 10.0) -> Entry:
    return Entry(dst=path[-1], next_hop=path[1], path=tuple(path), cost_ms=cost,
                 backup_next_hop=backup)


@pytest.fixture
def protected() -> RouteTables:
    t = RouteTables("fra")
    assert t.apply(3, [backed("fra", "ams", backup="par"),
                       backed("fra", "ams", "lhr", backup="par"),
                       backed("fra", "par", "mad", backup="ams"),
                       backed("fra", "sin", backup=None)]) is None
    return t


def test_a_down_next_hop_switches_its_destinations_to_their_backups(protected):
    changed = protected.set_down({"ams"})
    assert {e.dst for e in changed} == {"ams", "lhr"}
    assert protected.next_hop("lhr") == "par" and protected.next_hop("ams") == "par"
    assert protected.next_hop("mad") == "par"  # untouched
    assert {e.dst for e in protected.rerouted()} == {"ams", "lhr"}


def test_no_backup_or_a_down_backup_leaves_no_next_hop(protected):
    protected.set_down({"sin", "ams", "par"})
    assert protected.next_hop("sin") is None
    assert protected.next_hop("lhr") is None and protected.next_hop("mad") is None


def test_the_primary_comes_back_with_its_link(protected):
    protected.set_down({"ams"})
    changed = protected.set_down(set())
    assert {e.dst for e in changed} == {"ams", "lhr"}
    assert protected.next_hop("lhr") == "ams" and not protected.rerouted()


def test_down_links_carry_over_to_a_new_table(protected):
    """A table the controller pushed before it knew of the failure still avoids the link."""
    protected.set_down({"ams"})
    assert protected.apply(4, [backed("fra", "ams", "lhr", backup="par")]) is None
    assert protected.next_hop("lhr") == "par"


def test_neighbours_in_use_are_primaries_and_backups(protected):
    assert protected.neighbours_in_use() == {"ams", "par", "sin"}


def test_watched_are_the_hops_traffic_went_to_and_their_routes_backups(protected):
    assert protected.watch_list(set()) == frozenset()
    # ams carries ams and lhr, both backed up by par
    assert protected.watch_list({"ams"}) == {"ams", "par"}
    assert protected.watch_list({"sin"}) == {"sin"}  # no backup
    assert protected.watch_list({"par", "sin"}) == {"par", "ams", "sin"}


# -- tables of changes (protocol 3) -----------------------------------------------------------


def test_changes_to_a_table_held_make_the_new_table(held):
    new_lhr = entry("fra", "sin", "lhr", cost=30.0)
    assert held.apply_changes(6, 5, [new_lhr, entry("fra", "par")], [("global", "sin")]) \
        is None
    assert held.version == 6
    assert held.entries == {("global", "ams"): GOOD[0], ("global", "lhr"): new_lhr,
                            ("global", "par"): entry("fra", "par")}
    # version 5 is still held: changes to it give another table of its own
    assert held.apply_changes(7, 5, [], []) is None
    assert set(held.entries) == {("global", "ams"), ("global", "lhr"), ("global", "sin")}


def test_changes_to_a_table_not_held_are_rejected_and_change_nothing(held):
    before = snapshot(held)
    why = held.apply_changes(6, 4, [entry("fra", "par")], [])
    assert why is not None and "version 4" in why and "not held" in why
    assert snapshot(held) == before


def test_changes_are_checked_as_a_whole_table(held):
    before = snapshot(held)
    assert "loops" in held.apply_changes(6, 5, [entry("fra", "ams", "fra", "lhr")], [])
    assert "duplicate" in held.apply_changes(6, 5, [entry("fra", "par"), entry("fra", "par")],
                                             [])
    assert snapshot(held) == before


def test_only_the_last_tables_are_kept_to_build_on():
    from relay.tables import KEPT_VERSIONS
    t = RouteTables("fra")
    for v in range(1, KEPT_VERSIONS + 3):
        assert t.apply(v, GOOD) is None
    assert sorted(t.kept) == list(range(3, KEPT_VERSIONS + 3))
    assert t.apply_changes(KEPT_VERSIONS + 3, 2, [], []) is not None
