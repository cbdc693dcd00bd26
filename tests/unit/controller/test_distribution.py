"""What each relay was pushed and acknowledged (controller/distribution.py), fed pushes, ACKs
and NACKs with explicit times: versions, the ordering hold, the unacknowledged cap."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.distribution import MAX_UNACKED, Distribution, Push
from controller.engine import Route

Z = "global"


def paths_of(rows: list[Route]) -> list[tuple]:
    """What makes a table different for a relay: paths and backups, not drifting costs."""
    return [(r.zone, r.dst, r.path, r.backup_next_hop) for r in rows]


def row(*path: str, cost: float | None = None) -> Route:
    return Route(Z, path[0], path[-1], tuple(path), cost if cost is not None else len(path))


def always_up(a: str, b: str) -> bool:
    return True


def counter():
    n = iter(range(10**6))
    return lambda: f"n{next(n)}"


def dist(order_hold_s: float = 1.0, *regions: str) -> Distribution:
    d = Distribution(order_hold_s, nonce=counter())
    for r in regions or ("a", "b"):
        d.attach(r)
    return d


def installed_rows(d: Distribution, region: str) -> dict:
    return d.relays[region].installed


def test_a_push_records_what_went_out_at_one_new_version_for_every_changed_relay():
    d = dist()
    tables = {"a": [row("a", "b")], "b": [row("b", "a")]}
    pushes = d.push_staged(tables, always_up, frozenset(), now=0.0)
    assert [(p.region, p.version, p.rows) for p in pushes] == [
        ("a", 1, (row("a", "b"),)), ("b", 1, (row("b", "a"),))]
    assert pushes[0].nonce != pushes[1].nonce
    assert d.version == 1
    a = d.relays["a"]
    assert paths_of(a.pushed) == paths_of(tables["a"]) and a.pushed_version == 1
    assert a.unacked == {1: {("global", "b"): tables["a"][0]}} and not a.in_sync
    # nothing changed: no push, no new version
    assert d.push_staged(tables, always_up, frozenset(), now=1.0) == []
    assert d.version == 1


def test_costs_alone_make_no_new_version():
    d = dist()
    d.push_staged({"a": [row("a", "b", cost=10)]}, always_up, frozenset(), 0.0)
    assert d.push_staged({"a": [row("a", "b", cost=11)]}, always_up, frozenset(), 1.0) == []
    pushes = d.push_staged({"a": [row("a", "b")], "b": [row("b", "a")]}, always_up,
                           frozenset(), 2.0)
    assert [p.region for p in pushes] == ["b"] and pushes[0].version == 2


def test_only_relays_whose_paths_changed_are_pushed():
    d = dist()
    tables = {"a": [row("a", "b")], "b": [row("b", "a")]}
    d.push_staged(tables, always_up, frozenset(), 0.0)
    tables["b"] = [row("b", "a"), Route(Z, "b", "c", ("b", "c"), 1.0)]
    pushes = d.push_staged(tables, always_up, frozenset(), 1.0)
    assert [(p.region, p.version) for p in pushes] == [("b", 2)]
    assert d.relays["a"].pushed_version == 1


def test_an_ack_installs_the_rows_of_its_version_even_after_a_newer_push():
    d = dist()
    a = d.relays["a"]
    first = [row("a", "b")]
    d.push_staged({"a": first}, always_up, frozenset(), 0.0)
    second = [row("a", "b"), row("a", "c")]
    d.push_staged({"a": second}, always_up, frozenset(), 1.0)
    assert set(a.unacked) == {1, 2}
    d.on_ack(a, 1)
    assert a.installed == {(Z, "b"): first[0]}
    assert a.acked_version == 1 and set(a.unacked) == {2}
    assert not a.in_sync  # v2 is out and not acknowledged
    d.on_ack(a, 2)
    assert a.installed == {(Z, "b"): second[0], (Z, "c"): second[1]} and a.unacked == {}
    assert a.in_sync
    d.on_ack(a, 1)  # a late duplicate of an older ack changes nothing
    assert a.acked_version == 2 and a.installed == {(Z, "b"): second[0], (Z, "c"): second[1]}


def test_an_ack_of_a_version_never_pushed_is_ignored():
    # (found by tests/unit/fuzz) it made the relay look in sync with the next push before
    # that push had even been sent
    d = dist()
    a = d.relays["a"]
    d.push_staged({"a": [row("a", "b")]}, always_up, frozenset(), 0.0)
    assert not d.on_ack(a, 2) and not d.on_ack(a, 2**64 - 1)
    assert a.acked_version == 0 and set(a.unacked) == {1}
    d.push_staged({"a": [row("a", "b"), row("a", "c")]}, always_up, frozenset(), 1.0)
    assert a.pushed_version == 2 and not a.in_sync


def test_a_nack_pushes_the_same_rows_again_at_the_next_version():
    d = dist()
    a = d.relays["a"]
    tables = {"a": [row("a", "b")], "b": [row("b", "a")]}
    d.push_staged(tables, always_up, frozenset(), 0.0)
    d.on_nack(a)
    assert a.pushed is None and not a.in_sync
    pushes = d.push_staged(tables, always_up, frozenset(), 1.0)
    assert [(p.region, p.version, p.rows) for p in pushes] == [("a", 2, (row("a", "b"),))]
    d.on_ack(a, 2)
    assert a.in_sync


def test_a_relay_that_stops_acknowledging_keeps_only_the_last_versions():
    d = dist()
    a = d.relays["a"]
    for i in range(MAX_UNACKED + 4):
        # a new destination each time: nothing to hold
        d.push_staged({"a": [row("a", "b", f"c{i}")]}, always_up, frozenset(), float(i))
    assert sorted(a.unacked) == list(range(5, MAX_UNACKED + 5))
    # an ack of a dropped version still counts as acknowledged, but installs nothing known
    assert not d.on_ack(a, 3)
    assert a.acked_version == 3 and a.installed == {}
    d.on_ack(a, MAX_UNACKED + 4)
    last = f"c{MAX_UNACKED + 3}"
    assert a.installed == {(Z, last): row("a", "b", last)}


def test_versions_continue_above_what_a_connecting_relay_holds():
    d = dist()
    d.attach("c", holds_version=41)
    assert d.version == 41
    d.attach("e", holds_version=7)
    assert d.version == 41  # never back
    pushes = d.push_staged({"c": [row("c", "a")]}, always_up, frozenset(), 0.0)
    assert {p.version for p in pushes} == {42}


def test_a_replaced_relay_is_not_detached_by_its_old_session():
    d = dist()
    old = d.relays["a"]
    new = d.attach("a")
    assert new is not old and d.relays["a"] is new
    d.detach(old)
    assert d.relays["a"] is new
    d.detach(new)
    assert "a" not in d.relays


# -- ordering: a changed row waits for its new next hop ---------------------------------------


def moved_tables() -> tuple[Distribution, dict]:
    """a and b reached d through x; now a should go through b, and b straight to d."""
    d = dist(1.0, "a", "b")
    old = {"a": [row("a", "x", "d")], "b": [row("b", "x", "d")]}
    for p in d.push_staged(old, always_up, frozenset(), 0.0):
        d.on_ack(d.relays[p.region], p.version)
    return d, {"a": [row("a", "b", "d")], "b": [row("b", "d")]}


def test_a_row_onto_a_new_next_hop_waits_for_that_hop_to_install_its_own():
    d, new = moved_tables()
    pushes = {p.region: p for p in d.push_staged(new, always_up, frozenset({"x"}), 10.0)}
    assert pushes["b"].rows == (row("b", "d"),)  # next to the destination: ready at once
    assert "a" not in pushes  # a keeps its row through x, as it was sent
    a = d.relays["a"]
    assert a.held == 1 and a.held_since == 10.0 and d.awaited == {"b"}
    assert not a.in_sync
    # b's ack makes a's row ready: the ack asks for a recompute
    assert d.on_ack(d.relays["b"], pushes["b"].version)
    second = d.push_staged(new, always_up, frozenset({"x"}), 10.1)
    assert [(p.region, p.rows) for p in second] == [("a", (row("a", "b", "d"),))]
    assert a.held == 0 and a.held_since is None and d.awaited == set()


def test_an_ack_from_a_relay_nobody_waits_for_asks_for_nothing():
    d, new = moved_tables()
    pushes = {p.region: p for p in d.push_staged(new, always_up, frozenset({"x"}), 10.0)}
    d.relays["a"].unacked[99] = []
    assert not d.on_ack(d.relays["a"], 99)
    assert d.on_ack(d.relays["b"], pushes["b"].version)


def test_held_rows_go_out_after_order_hold_s_without_the_ack():
    d, new = moved_tables()
    d.push_staged(new, always_up, frozenset({"x"}), 10.0)
    assert d.push_staged(new, always_up, frozenset({"x"}), 10.5) == []
    assert d.relays["a"].held_since == 10.0  # the wait counts from the first hold
    pushes = d.push_staged(new, always_up, frozenset({"x"}), 11.0)
    assert [(p.region, p.rows) for p in pushes] == [("a", (row("a", "b", "d"),))]
    assert d.relays["a"].held == 0 and d.awaited == set()


# -- properties ------------------------------------------------------------------------------

TABLES = [
    {"a": [row("a", "b")], "b": [row("b", "a")]},
    {"a": [row("a", "c", "b")], "b": [row("b", "a")]},
    {"a": [row("a", "c", "b")], "b": [row("b", "c", "a")]},
    {"a": [row("a", "b")], "b": [row("b", "c", "a")]},
]
STEPS = st.lists(st.one_of(
    st.tuples(st.just("push"), st.integers(0, len(TABLES) - 1)),
    st.tuples(st.just("ack"), st.sampled_from("ab"), st.integers(0, 40)),
    st.tuples(st.just("nack"), st.sampled_from("ab"), st.integers(0, 40)),
), max_size=60)


@settings(max_examples=200, deadline=None)
@given(STEPS)
def test_whatever_the_order_of_acks_and_nacks(steps):
    """Versions only grow and each relay's pushes go out in order; acked_version never
    decreases; what is installed is always the rows of a version pushed to that relay."""
    d = dist(1.0, "a", "b")
    pushed: dict[str, dict[int, list[Route]]] = {"a": {}, "b": {}}
    now = 0.0
    for step in steps:
        now += 0.1
        if step[0] == "push":
            before = d.version
            out: list[Push] = d.push_staged(TABLES[step[1]], always_up, frozenset(), now)
            for p in out:
                assert p.version == before + 1
                assert all(p.version > v for v in pushed[p.region])
                pushed[p.region][p.version] = list(p.rows)
            assert d.version == before + bool(out)
            continue
        relay = d.relays[step[1]]
        versions = sorted(pushed[step[1]])
        if not versions:
            continue
        version = versions[step[2] % len(versions)]
        acked = relay.acked_version
        if step[0] == "ack":
            d.on_ack(relay, version)
            assert relay.acked_version == max(acked, version)
        else:
            d.on_nack(relay)
            assert relay.pushed is None and relay.acked_version == acked
        installed = relay.installed
        assert not installed or any(
            installed == {(r.zone, r.dst): r for r in rows} for rows in pushed[step[1]].values())
        assert all(v > 0 for v in relay.unacked) and len(relay.unacked) <= MAX_UNACKED
