"""The controller's work in proportion to change (issue 14): link state in arrays agrees with
the records and the graph built from them; the changed-rows diff agrees with a full
recompute; nothing is recomputed or pushed while no link moves beyond the dead band; peers
hear of connects and disconnects as changes (protocol 2); report delays and coalescing
show in the status."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import engine, routing, translate
from controller.core import Hello, Peers, Settings, changed_rows
from controller.distribution import Push
from controller.routing import CostModel, Hysteresis
from controller.routing import costs_within as same_within
from controller.topology import Topology
from skymesh.linkstate import (
    DEGRADED,
    DOWN,
    PROTOCOL_BY_CHANGE,
    PROTOCOL_TABLE_CHANGES,
    UNKNOWN,
    UP,
)
from skymesh.policy import Policy, Zone
from tests.unit.controller.test_controller import REGIONS, Rig, ack_all, report, tables
from tests.unit.controller.test_controller import rtt as rtt_of
from tests.unit.controller.test_distribution import paths_of

NAMES = [f"r{i:02d}" for i in range(12)]


def sample(dst: str, rtt: float, state: str = UP, loss: float = 0.0, window: int = 50,
           samples: int = 10) -> dict:
    return {"dst": dst, "rtt_ms": rtt, "min_rtt_ms": rtt, "jitter_ms": 0.0, "loss": loss,
            "window": window, "samples": samples, "lost": 0, "state": state}


links = st.dictionaries(
    st.tuples(st.sampled_from(NAMES[:8]), st.sampled_from(NAMES[:8])).filter(
        lambda k: k[0] != k[1]),
    st.tuples(st.floats(1.0, 300.0), st.sampled_from([UP, UP, UP, DEGRADED, DOWN, UNKNOWN]),
              st.sampled_from([0.0, 0.02, 0.1])),
    max_size=40)


@settings(max_examples=60, deadline=None)
@given(links)
def test_array_link_costs_agree_with_the_graph_of_the_records(found):
    from controller.core import Controller
    from skymesh.catalogue import Region

    catalogue = {n: Region(id=n, name=n, country="DE", lat=0.0, lon=0.0) for n in NAMES[:8]}
    ctl = Controller(catalogue, Policy({"global": Zone("global", frozenset(catalogue))}),
                     now=0.0)
    for n in NAMES[:8]:
        ctl.connect(Hello(n, n, "127.0.0.1:1"), lambda m: None, 0.0, 0.0)
    for (src, dst), (rtt, state, loss) in found.items():
        ctl.on_report(ctl.sessions[src], [sample(dst, rtt, state, loss)], {}, 1.0)
    graph = routing.build_graph(ctl.sessions, ctl.topology.usable_links(1.0), CostModel())
    costs = ctl.link_costs(1.0)
    index = ctl.topology.index
    for src in NAMES[:8]:
        for dst in NAMES[:8]:
            c = costs[index[src], index[dst]]
            if graph.has_edge(src, dst):
                assert c == pytest.approx(graph.edges[src, dst]["cost"])
            else:
                assert not np.isfinite(c)


def _graph(n: int, costs: dict) -> object:
    nodes = NAMES[:n]
    return routing.build_graph(nodes, [routing.Link(a, b, 2 * (c - 0.5))
                                       for (a, b), c in costs.items()
                                       if a in nodes and b in nodes])


pair_costs = st.dictionaries(
    st.tuples(st.sampled_from(NAMES[:7]), st.sampled_from(NAMES[:7])).filter(
        lambda k: k[0] != k[1]),
    st.floats(1.0, 200.0), min_size=4, max_size=42)


@pytest.mark.parametrize("bulk_column", [1, 10**9])  # rows by route, or by column
@settings(max_examples=120, deadline=None)
@given(pair_costs, pair_costs, st.integers(4, 7), st.integers(4, 7), st.booleans())
def test_changed_rows_agree_with_a_full_recompute(bulk_column, before, after, n1, n2,
                                                  hysteresis):
    """Patching the previous tables with the changed rows gives every relay the paths and
    backups that building its table afresh gives (regions coming and going too)."""
    policy = Policy({"global": Zone("global", frozenset(NAMES[:7])),
                     "half": Zone("half", frozenset(NAMES[:4]))})
    old = engine.compute(_graph(n1, before), policy)
    h = Hysteresis() if hysteresis else engine.NO_HYSTERESIS
    new = engine.compute(_graph(n2, {**before, **after}), policy, old, h)
    regions = NAMES[:n2]
    rows = {r: {(x.zone, x.dst): x for x in old.table(r)} for r in NAMES[:n1]}
    patches = changed_rows(old, new, rows, regions, bulk_column)
    for region in regions:
        got = patches.get(region, rows.get(region))
        assert got is not None, f"{region} has no rows"
        assert sorted(paths_of(list(got.values()))) == sorted(paths_of(new.table(region)))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 12), st.booleans())
def test_rows_not_marked_changed_keep_their_paths_and_backups(seed, moves, hysteresis):
    """On sparse meshes of 40 regions (paths many hops long), every row `changed_pairs`
    leaves unmarked has the path and backup it had."""
    import random

    rng = random.Random(seed)
    names = [f"n{i:02d}" for i in range(40)]
    policy = Policy({"global": Zone("global", frozenset(names))})
    costs = {}
    for i, a in enumerate(names):  # a ring, so that everything is reachable, and chords
        costs[(a, names[(i + 1) % 40])] = costs[(names[(i + 1) % 40], a)] = rng.uniform(5, 50)
        for b in rng.sample(names, 2):
            if b != a:
                costs[(a, b)] = rng.uniform(5, 200)

    def graph(c: dict) -> object:
        return routing.build_graph(names, [routing.Link(a, b, v) for (a, b), v in c.items()])

    old = engine.compute(graph(costs), policy)
    for key in rng.sample(sorted(costs), moves):
        costs[key] *= rng.choice([0.2, 3.0])
    new = engine.compute(graph(costs), policy, old,
                         Hysteresis() if hysteresis else engine.NO_HYSTERESIS)
    z_old, z_new = old.zones["global"], new.zones["global"]
    marked = engine.changed_pairs(z_old, z_new)
    assert marked is not None
    may = np.zeros((40, 40), dtype=bool)
    may[:, marked.columns] = marked.rows
    for u, src in enumerate(names):
        for d, dst in enumerate(names):
            if not may[u, d]:
                a, b = z_old.route(src, dst), z_new.route(src, dst)
                assert (a is None) == (b is None)
                if a is not None and b is not None:
                    assert (a.path, a.backup_next_hop) == (b.path, b.backup_next_hop)


def test_same_within_is_the_graphs_dead_band():
    a = np.array([[np.inf, 10.0], [20.0, np.inf]])
    assert same_within(a, a.copy(), 0.02, 1.0)
    assert same_within(a + 0.9, a, 0.02, 1.0)  # under 1 ms
    assert not same_within(a * 1.5, a, 0.02, 1.0)
    b = a.copy()
    b[0, 1] = np.inf
    assert not same_within(a, b, 0.02, 1.0)  # a link came


def converged_rig(**settings_kw) -> Rig:
    r = Rig(Settings(**settings_kw))
    for region in REGIONS:
        r.connect(region)
    for region in REGIONS:
        report(r, region)
    r.recompute()
    for region, push in tables(r).items():
        r.c.on_ack(r.c.sessions[region], push.version, True)
    r.recompute()
    tables(r)
    return r


def test_nothing_is_recomputed_or_pushed_while_no_link_moves_beyond_the_dead_band():
    r = converged_rig()
    done = r.c.recomputes
    for _ in range(5):
        r.advance(1.0)
        for region in REGIONS:
            report(r, region)  # the same values again
        assert not r.c.dirty
        assert not r.recompute()
    assert r.c.recomputes == done and tables(r) == {}


def test_a_link_moving_beyond_the_dead_band_recomputes_and_pushes_only_the_changed():
    r = converged_rig()
    done = r.c.recomputes
    before = {region: paths_of(r.c.routes.table(region)) for region in REGIONS}
    # a-x triples: a goes to b (60) directly now; d's rows stay as they were
    links = [sample("x", 60.0), sample("b", 60.0), sample("d", 200.0)]
    r.c.on_report(r.c.sessions["a"], links, {}, r.now)
    assert r.c.dirty
    assert r.recompute()
    assert r.c.recomputes == done + 1
    pushed = tables(r)
    moved = {region for region in REGIONS
             if paths_of(r.c.routes.table(region)) != before[region]}
    assert set(pushed) == moved and "a" in moved and "d" not in moved
    rows = {row.dst: row.path for row in pushed["a"].rows}
    assert rows["b"] == ("a", "b")


def test_links_that_moved_far_are_computed_before_the_noise():
    """When some links came, went or moved by more than far_move, a round takes those
    alone; the links that moved a little beyond the dead band go in the next round, which
    comes at once; then the routes are those of the latest costs."""
    r = converged_rig()
    idx = r.c.topology.index
    a, b, x = idx["a"], idx["b"], idx["x"]
    before = r.c.computed.copy()
    wakes = r.wakes
    links = [sample("x", 3 * rtt_of("a", "x")), sample("b", 1.1 * rtt_of("a", "b"))]
    r.c.on_report(r.c.sessions["a"], links, {}, r.now, full=False)
    assert r.recompute()
    assert np.argwhere(r.c.computed != before).tolist() == [[a, x]]
    assert r.c.dirty and r.wakes > wakes
    r.recompute()
    assert {tuple(t) for t in np.argwhere(r.c.computed != before)} == {(a, x), (a, b)}
    assert not r.c.dirty and np.array_equal(r.c.computed, r.c.latest)


def test_far_moved_is_links_that_came_went_or_moved_past_the_fraction():
    old = np.array([[np.inf, 10.0, 10.0], [10.0, np.inf, np.inf], [10.0, 10.0, np.inf]])
    new = old.copy()
    new[0, 1], new[0, 2], new[1, 2], new[2, 0] = 10.5, 30.0, 5.0, np.inf
    moved = routing.moved_links(new, old, 0.02)
    assert {tuple(t) for t in np.argwhere(routing.far_moved(moved, new, old, 0.25))} == {
        (0, 2), (1, 2), (2, 0)}


def test_a_relay_of_protocol_2_hears_of_peers_by_change():
    """The relay that connects gets the whole list at once; the others hear of connects and
    disconnects as one change a round."""
    r = Rig()
    boxes = {}
    for i, region in enumerate(REGIONS):
        box = boxes[region] = r.outbox[region] = []
        r.c.connect(Hello(region, region, f"127.0.0.1:{i + 1}", protocol=PROTOCOL_BY_CHANGE),
                    box.append, r.now, r.unix)
        if region == "b":
            r.c.tick(r.now, r.unix)  # a round between b and d
    first = [m for m in boxes["a"] if isinstance(m, Peers)]
    assert not first[0].incremental and first[0].peers == ()  # alone at first: everything
    later = first[1:]
    assert [m.peers for m in later] == [(("b", "127.0.0.1:2", "b"),)]  # d and x: next round
    assert all(m.incremental for m in later)
    assert all(m.full_report_interval_s > 0 for m in first)
    r.c.tick(r.now, r.unix)
    later = [m for m in boxes["a"] if isinstance(m, Peers)][2:]
    assert [m.peers for m in later] == [(("d", "127.0.0.1:3", "d"), ("x", "127.0.0.1:4", "x"))]
    assert [m.peers for m in boxes["d"] if isinstance(m, Peers)][1:] == [
        (("x", "127.0.0.1:4", "x"),)]  # d's own list had a and b; x came after
    last = [m for m in boxes["x"] if isinstance(m, Peers)]
    assert len(last) == 1 and not last[0].incremental
    assert [p for p, *_ in last[0].peers] == ["a", "b", "d"]
    assert last[0].near == frozenset({"a", "b", "d"})  # a mesh of four: all are near
    for box in boxes.values():
        box.clear()
    r.c.disconnect(r.c.sessions["d"], r.now, r.unix)
    assert not [m for m in boxes["a"] if isinstance(m, Peers)]
    r.c.tick(r.now, r.unix)
    gone = [m for m in boxes["a"] if isinstance(m, Peers)]
    assert len(gone) == 1 and gone[0].incremental and gone[0].removed == ("d",)
    assert gone[0].peers == ()


def test_a_relay_of_protocol_1_gets_whole_lists():
    r = Rig()
    for region in REGIONS:
        r.connect(region)
    peers = [m for m in r.take("a") if isinstance(m, Peers)]
    assert all(not m.incremental and not m.near and m.full_report_interval_s == 0
               for m in peers)
    assert [p for p, *_ in peers[-1].peers] == ["b", "d", "x"]


def test_a_full_report_lets_go_of_the_links_it_leaves_out():
    t = Topology(["a", "b", "c"])
    from controller.topology import Relay
    for n in "abc":
        t.add_relay(Relay(n, n, "h:1", 0.0))
    t.report("a", [sample("b", 10.0), sample("c", 20.0)], 0.0)
    t.report("a", [sample("b", 11.0)], 1.0)  # by change: c is as it was
    assert set(t.links) == {("a", "b"), ("a", "c")}
    t.report("a", [sample("b", 11.0)], 2.0, full=True)
    assert set(t.links) == {("a", "b")}


def test_links_of_a_relay_reporting_by_change_stay_until_its_full_reports_lapse():
    s = Settings()
    r = Rig(s)
    for region in REGIONS:
        r.outbox[region] = []
        r.c.connect(Hello(region, region, "127.0.0.1:1", protocol=PROTOCOL_BY_CHANGE),
                    r.outbox[region].append, r.now, r.unix)
    report(r, "a")
    r.advance(s.stale_after_s + s.full_report_interval_s)
    r.recompute()
    assert ("a", "b") in r.c.topology.links  # an unchanged link is not reported each second
    r.advance(s.full_report_interval_s + 0.1)
    r.recompute()
    assert ("a", "b") not in r.c.topology.links


def test_report_delays_and_coalescing_show_in_the_status():
    r = converged_rig()
    session = r.c.sessions["a"]
    for delay in (0.010, 0.020, 0.030, 2.0):
        r.c.on_report(session, [], {}, r.now, full=False, sent_unix_s=r.unix - delay,
                      unix=r.unix, coalesced=1)
    st_ = r.c.status(r.now)
    assert st_.reports_coalesced == 4
    assert st_.report_delay_max_ms == pytest.approx(2000.0)
    assert 10.0 <= st_.report_delay_p50_ms <= 30.0
    assert st_.reports >= 4


def test_a_push_goes_to_a_relay_that_connects_while_nothing_changes():
    r = converged_rig()
    r.c.disconnect(r.c.sessions["d"], r.now, r.unix)
    r.recompute()
    tables(r)
    r.connect("d")
    report(r, "d")
    for region in "abx":
        report(r, region)
    r.recompute()
    pushed = tables(r)
    assert "d" in pushed and isinstance(pushed["d"], Push)


@settings(max_examples=80, deadline=None)
@given(pair_costs, st.integers(3, 7), st.sampled_from(["", "r01", "r02"]))
def test_tables_by_column_are_the_tables_by_route(costs, n, drained):
    policy = Policy({"global": Zone("global", frozenset(NAMES[:7])),
                     "half": Zone("half", frozenset(NAMES[:4]))})
    routes = engine.compute(_graph(n, costs), policy, avoid={drained} - {""})
    fast = routes.tables(NAMES[:n])
    for region in NAMES[:n]:
        slow = routes.table(region)
        assert [(r.zone, r.dst, r.path, r.backup_next_hop, r.backup_kind) for r in fast[region]] \
            == [(r.zone, r.dst, r.path, r.backup_next_hop, r.backup_kind) for r in slow]
        for a, b in zip(fast[region], slow, strict=True):
            assert a.cost_ms == pytest.approx(b.cost_ms)
            assert (a.backup_cost_ms is None) == (b.backup_cost_ms is None)
            if a.backup_cost_ms is not None:
                assert a.backup_cost_ms == pytest.approx(b.backup_cost_ms)


def test_beyond_partial_mesh_above_a_full_report_keeps_the_links_sampled_before():
    s = Settings(partial_mesh_above=2)
    r = Rig(s)
    for i, region in enumerate(REGIONS):
        r.outbox[region] = []
        r.c.connect(Hello(region, region, f"127.0.0.1:{i + 1}", protocol=PROTOCOL_BY_CHANGE),
                    r.outbox[region].append, r.now, r.unix)
    r.c.tick(r.now, r.unix)
    assert r.c.partial_mesh
    session = r.c.sessions["a"]
    r.c.on_report(session, [sample("b", 20.0), sample("x", 30.0)], {}, r.now, full=True)
    r.advance(10.0)
    r.c.on_report(session, [sample("x", 30.0)], {}, r.now, full=True)  # b between turns
    r.c.tick(r.now, r.unix)
    assert ("a", "b") in r.c.topology.links
    r.advance(1.5 * s.sample_every_s + s.full_report_interval_s + s.stale_after_s)
    r.c.tick(r.now, r.unix)
    assert ("a", "b") not in r.c.topology.links  # its turn is long overdue


wire_samples = st.lists(st.tuples(
    st.sampled_from(["a", "b", "c", "d", "zz", "a"]),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0.5, 300.0)),
    st.floats(-1.0, 300.0), st.floats(-1.0, 50.0), st.floats(-0.5, 1.5),
    st.integers(0, 60), st.integers(0, 100), st.integers(0, 10), st.integers(-1, 5)),
    max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(wire_samples, min_size=1, max_size=4), st.booleans())
def test_samples_by_column_are_taken_as_samples_one_by_one(reports, full):
    """The relay service's columns (report_batch) and the dicts (report) give the same
    records, the same problems in the same order, and the same flap damping."""
    from controller.topology import Relay, SampleBatch
    from skymesh.linkstate import FROM_WIRE

    def topology() -> Topology:
        t = Topology(["a", "b", "c", "d"])
        for n in "abcd":
            t.add_relay(Relay(n, n, "h:1", 0.0))
        return t

    one, cols = topology(), topology()
    for step, sent in enumerate(reports):
        batch = SampleBatch()
        dicts = []
        for dst, rtt, min_rtt, jitter, loss, window, n, lost, state in sent:
            for column, value in zip(
                    (batch.dst, batch.rtt_ms, batch.min_rtt_ms, batch.jitter_ms, batch.loss,
                     batch.window, batch.samples, batch.lost, batch.state),
                    (dst, rtt, min_rtt, jitter, loss, window, n, lost, state), strict=True):
                column.append(value)
            dicts.append({"dst": dst, "rtt_ms": rtt, "min_rtt_ms": min_rtt,
                          "jitter_ms": jitter, "loss": loss, "window": window, "samples": n,
                          "lost": lost, "state": FROM_WIRE.get(state, "?")})
        now = float(step)
        if len({d["dst"] for d in dicts}) != len(dicts):
            continue  # one peer twice in a report: the last wins one way, not the other
        assert one.report("a", dicts, now, full) == cols.report_batch("a", batch, now, full)
        assert one.links == cols.links
        assert one.rejected_samples == cols.rejected_samples
        assert {k: (e.penalty, e.usable) for k, e in one.damper.entries.items()} == \
            {k: (e.penalty, e.usable) for k, e in cols.damper.entries.items()}
    assert np.array_equal(one.bound, cols.bound)


# -- route tables by change (protocol 3) ------------------------------------------------------


def changes_rig():
    """Every region's relay speaks protocol 3, has measured its links and acknowledged its
    first (whole) table."""
    r = Rig()
    for i, region in enumerate(REGIONS):
        box = r.outbox[region] = []
        r.c.connect(Hello(region, f"{region}-1", f"127.0.0.1:{i + 1}",
                          protocol=PROTOCOL_TABLE_CHANGES), box.append, r.now, r.unix)
    for region in REGIONS:
        report(r, region)
    assert r.recompute()
    first = tables(r)
    assert all(not p.base_version for p in first.values())  # nothing acknowledged yet
    ack_all(r, first)
    return r, first


def test_a_relay_of_protocol_3_is_pushed_the_rows_that_changed():
    r, first = changes_rig()
    r.c.drain("x", True, r.now, r.unix)  # routes through x move
    pushed = tables(r)
    assert pushed
    for region, push in pushed.items():
        before = {(row.zone, row.dst): row for row in first[region].rows}
        assert push.base_version == first[region].version
        now = {(row.zone, row.dst): row for row in push.rows}
        assert {(row.zone, row.dst) for row in push.changes} == {
            k for k, row in now.items() if before.get(k) != row}
        assert len(push.changes) < len(push.rows) or region == "x"
        assert set(push.removed) == set(before) - set(now)
        # on the wire: the changes only, with the version they apply to
        wire = translate.controller_message(push).routes
        assert wire.base_version == push.base_version and len(wire.routes) == len(push.changes)


def test_after_a_rejected_table_the_next_goes_whole():
    r, first = changes_rig()
    a = r.c.sessions["a"]
    r.c.on_ack(a, first["a"].version, accepted=False, reason="changes to a table not held")
    r.advance(1.0)
    r.recompute()
    push = tables(r)["a"]
    assert push.base_version == 0 and push.changes == ()
    assert translate.controller_message(push).routes.base_version == 0


def test_a_follower_node_is_mirrored_whole_tables():
    """The lead's changes are to the lead's own table: a follower gets the table whole."""
    r, _ = changes_rig()
    box = r.outbox["a/2"] = []
    r.c.connect(Hello("a", "a-2", "127.0.0.9:1", protocol=PROTOCOL_TABLE_CHANGES), box.append,
                r.now, r.unix)
    r.c.drain("x", True, r.now, r.unix)
    lead = tables(r)["a"]
    follower = [m for m in box if isinstance(m, Push)]
    assert lead.base_version and follower[-1].version == lead.version
    assert not follower[-1].base_version and follower[-1].rows == lead.rows


def test_after_a_cold_start_the_first_routes_wait_for_the_measurement():
    """No tables while some connected relay has not measured its links (for at most
    first_routes_hold_s): routes of a partial measurement would change every round."""
    r = Rig()
    for region in REGIONS:
        r.connect(region)
    for region in REGIONS[:-1]:
        report(r, region)
    assert not r.recompute() and not tables(r)
    report(r, REGIONS[-1])  # every relay has measured its links: routes go out
    assert r.recompute() and set(tables(r)) == set(REGIONS)
    # held at most first_routes_hold_s
    late = Rig()
    for region in REGIONS:
        late.connect(region)
    report(late, REGIONS[0])
    assert not late.recompute()
    late.advance(late.c.settings.first_routes_hold_s)
    assert late.recompute() and tables(late)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.integers(8, 30), st.integers(1, 12), st.booleans(),
       st.booleans(), st.sampled_from([2, 4, 29]))
def test_a_zone_updated_where_links_moved_is_the_zone_computed_whole(seed, n, moves,
                                                                     hysteresis, drained,
                                                                     degree):
    """update_zone on the links that moved gives what compute_zone gives on all of them,
    with the same previous routes (next hops kept by hysteresis, backups kept, links
    coming, going, dearer and cheaper, drained regions), on sparse and full meshes."""
    import random

    rng = random.Random(seed)
    names = [f"n{i:02d}" for i in range(n)]
    h = Hysteresis() if hysteresis else engine.NO_HYSTERESIS
    cost = np.full((n, n), np.inf)
    for i in range(n):
        for j in rng.sample(range(n), min(n - 1, degree)):
            if i != j:
                cost[i, j] = rng.uniform(5, 200)
    penalty = None
    if drained:
        penalty = np.array([engine.AVOID_MS if rng.random() < 0.2 else 0.0 for _ in names])
    members = frozenset(names)

    def whole(c: np.ndarray, previous: engine.ZoneRoutes | None) -> engine.ZoneRoutes:
        c = c if penalty is None else c + penalty[:, None]
        return engine.compute_zone("z", members, names, c, previous, h, penalty)

    first = whole(cost, None)
    cost2 = cost.copy()  # a round of small moves, so that hysteresis keeps some hops
    cost2[np.isfinite(cost2)] *= np.array([rng.uniform(0.85, 1.15)
                                           for _ in range(int(np.isfinite(cost2).sum()))])
    old = whole(cost2, first)
    cost3 = cost2.copy()
    for _ in range(moves):
        i, j = rng.sample(range(n), 2)
        cost3[i, j] = rng.choice([np.inf, rng.uniform(1, 300), cost3[i, j] * 3,
                                  cost3[i, j] / 3])
    moved = (np.isfinite(cost3) != np.isfinite(cost2)) | (
        np.isfinite(cost3) & np.isfinite(cost2) & (cost3 != cost2))
    want = whole(cost3, old)
    c3 = cost3 if penalty is None else cost3 + penalty[:, None]
    got = engine.update_zone(old, c3, moved, h, at_most=1.0, at_most_trees=1.0)
    assert np.array_equal(got.next_hop, want.next_hop)
    assert np.allclose(got.dist, want.dist) and np.allclose(got.actual, want.actual)
    assert np.array_equal(got.backup, want.backup)
    assert np.array_equal(got.backup_kind, want.backup_kind)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(2, 40), st.integers(1, 30), st.integers(1, 40))
def test_the_cheapest_links_are_a_stable_sort_cut_short(seed, n, rows, k):
    """engine.cheapest picks what a stable sort of each row would put first, ties (costs
    drawn from five values) and missing links (inf) included."""
    rng = np.random.default_rng(seed)
    k = min(k, n)
    links = rng.integers(0, 5, (rows, n)).astype(float)
    links[rng.random((rows, n)) < 0.3] = np.inf
    want = np.argsort(links, axis=1, kind="stable")[:, :k]
    assert np.array_equal(engine.cheapest(links, k), want)
