"""Link costs and the graph (controller/routing.py), and the routes the engine computes on it
(controller/engine.py): shortest in-trees, hysteresis, loop-free forwarding, per-relay tables.

Route computation is exercised through `engine.compute` with a one-zone policy holding every
region, plus a few zone cases; residency in depth belongs to the engine's own tests."""

import math
import random
import signal
from contextlib import contextmanager

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import engine
from controller.engine import NO_HYSTERESIS, Route, RouteSet, ZoneRoutes
from controller.routing import CostModel, Hysteresis, Link, build_graph, link_cost, loss_bound
from skymesh.policy import Policy, Zone

OFF = NO_HYSTERESIS
STICKY = Hysteresis(0.1, 5.0)
TOL = 1e-6
Z = "global"


@contextmanager
def no_hang(seconds: int = 5):
    """Building a route walks next hops: a forwarding loop would make it spin forever. Turn
    that into a failure (per call, so that hypothesis' replays are guarded too)."""

    def stop(signum, frame):
        raise TimeoutError("routing did not finish: next hops probably loop")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- helpers ---------------------------------------------------------------------------------


def one_zone(graph: nx.DiGraph) -> Policy:
    return Policy({Z: Zone(Z, frozenset(graph.nodes))})


def compute(graph: nx.DiGraph, previous: RouteSet | None = None,
            hysteresis: Hysteresis = OFF) -> RouteSet:
    with no_hang():
        return engine.compute(graph, one_zone(graph), previous, hysteresis)


def routes_of(rs: RouteSet, zone: str = Z) -> dict[tuple[str, str], Route]:
    z = rs.zone(zone)
    with no_hang():
        return {(r.src, r.dst): r for src in z.nodes for r in z.rows(src)}


def route(rs: RouteSet, src: str, dst: str) -> Route:
    with no_hang():
        r = rs.route(Z, src, dst)
    assert r is not None, f"no route {src}->{dst}"
    return r


def path_cost(graph: nx.DiGraph, path) -> float:
    return sum(graph.edges[u, v]["cost"] for u, v in zip(path, path[1:], strict=False))


def cost_graph(edges: dict[tuple[str, str], float], nodes: str = "") -> nx.DiGraph:
    """A graph with the given edge costs (what the engine reads)."""
    g = nx.DiGraph()
    g.add_nodes_from(sorted(set(nodes) | {n for e in edges for n in e}))
    for (u, v), c in sorted(edges.items()):
        g.add_edge(u, v, cost=c)
    return g


def both_ways(links: list[Link]) -> list[Link]:
    return links + [Link(x.dst, x.src, x.rtt_ms, x.loss) for x in links]


def walk(routes, src: str, dst: str, limit: int) -> list[str]:
    """Forward hop by hop on the next hop of each relay's own route."""
    at, seen = src, [src]
    while at != dst:
        at = routes[(at, dst)].next_hop
        assert at not in seen, f"forwarding loop {seen + [at]}"
        seen.append(at)
        assert len(seen) <= limit, f"no arrival within {limit} hops: {seen}"
    return seen


def assert_valid(graph: nx.DiGraph, routes) -> None:
    """Every route is a simple path on existing edges with its true cost, forwarding on next
    hops follows it, exactly the reachable pairs have routes, and backups are loop-free
    alternates."""
    n = graph.number_of_nodes()
    best = dict(nx.all_pairs_dijkstra_path_length(graph, weight="cost"))
    for (src, dst), r in routes.items():
        assert (r.src, r.dst) == (src, dst)
        assert src != dst
        assert r.path[0] == src and r.path[-1] == dst
        assert len(set(r.path)) == len(r.path)
        assert all(graph.has_edge(u, v) for u, v in zip(r.path, r.path[1:], strict=False))
        assert r.cost_ms == pytest.approx(path_cost(graph, r.path), abs=TOL)
        if len(r.path) > 2:
            assert routes[(r.path[1], dst)].path == r.path[1:]
        assert walk(routes, src, dst, n) == list(r.path)
        b = r.backup_next_hop
        if b is None:
            assert r.backup_kind == "none" and r.backup_cost_ms is None
            continue
        assert b != r.next_hop and b != src
        assert graph.has_edge(src, b)
        assert r.backup_kind in ("link", "node")
        # what forwarding through the backup costs, along the next hops in force
        onward = 0.0 if b == dst else routes[(b, dst)].cost_ms
        assert r.backup_cost_ms == pytest.approx(graph.edges[src, b]["cost"] + onward, abs=TOL)
        assert onward >= best[b][dst] - TOL
        # the backup's own forwarding never comes back here (RFC 5286 loop-free alternate)
        detour = [b] if b == dst else walk(routes, b, dst, n)
        assert src not in detour
        if r.backup_kind == "node":
            assert r.next_hop != dst
            assert r.next_hop not in detour
    reachable = {
        (s, d) for s, ds in nx.all_pairs_shortest_path_length(graph) for d in ds if s != d
    }
    assert set(routes) == reachable


# --- link_cost and build_graph ---------------------------------------------------------------


def test_link_cost_is_one_way_latency_plus_loss_penalty_plus_hop():
    assert link_cost(100.0, 0.0) == pytest.approx(50.5)
    assert link_cost(100.0, 0.01) == pytest.approx(50.0 + 10.0 + 0.5)
    assert link_cost(0.0, 0.0) == pytest.approx(0.5)
    model = CostModel(hop_cost_ms=2.0, loss_penalty_ms=100.0)
    assert link_cost(10.0, 0.5, model) == pytest.approx(5.0 + 50.0 + 2.0)


def test_build_graph_edges_carry_cost_rtt_and_loss():
    g = build_graph(["a", "b"], [Link("a", "b", 40.0, 0.1)])
    assert dict(g.edges["a", "b"]) == {"cost": link_cost(40.0, 0.1), "rtt_ms": 40.0, "loss": 0.1}
    assert not g.has_edge("b", "a")  # links are directed


def test_build_graph_keeps_isolated_regions_sorted():
    g = build_graph(["c", "a", "b"], [])
    assert list(g.nodes) == ["a", "b", "c"]
    assert g.number_of_edges() == 0


@pytest.mark.parametrize(
    "link",
    [
        Link("a", "b", math.nan),
        Link("a", "b", -1.0),
        Link("a", "b", math.inf),
        Link("a", "b", -math.inf),
        Link("a", "b", 10.0, -0.1),
        Link("a", "b", 10.0, 1.5),
        Link("a", "b", 10.0, math.nan),
        Link("a", "a", 10.0),
        Link("a", "x", 10.0),
        Link("x", "a", 10.0),
    ],
    ids=["nan", "negative", "inf", "-inf", "loss<0", "loss>1", "loss nan", "self", "to unknown",
         "from unknown"],
)
def test_build_graph_ignores_bad_links(link):
    g = build_graph(["a", "b"], [link, Link("b", "a", 10.0)])
    assert list(g.edges) == [("b", "a")]
    assert set(g.nodes) == {"a", "b"}


def test_build_graph_accepts_zero_rtt_and_full_loss():
    g = build_graph(["a", "b"], [Link("a", "b", 0.0, 1.0)])
    assert g.edges["a", "b"]["cost"] == pytest.approx(1000.5)


def test_build_graph_cost_model():
    g = build_graph(["a", "b"], [Link("a", "b", 10.0)], CostModel(hop_cost_ms=3.0))
    assert g.edges["a", "b"]["cost"] == pytest.approx(8.0)


def test_hysteresis_defaults():
    h = Hysteresis()
    assert (h.fraction, h.min_ms) == (0.10, 5.0)
    assert (OFF.fraction, OFF.min_ms) == (0.0, 0.0)


# --- hand-made routing cases -----------------------------------------------------------------


def test_slow_direct_link_is_routed_around():
    g = build_graph("ABC", both_ways([Link("A", "B", 200.0), Link("A", "C", 10.0),
                                      Link("C", "B", 10.0)]))
    rs = compute(g)
    assert route(rs, "A", "B").path == ("A", "C", "B")
    assert route(rs, "A", "B").next_hop == "C"
    assert route(rs, "A", "B").cost_ms == pytest.approx(2 * link_cost(10.0, 0.0))
    assert route(rs, "B", "A").path == ("B", "C", "A")
    assert route(rs, "A", "C").path == ("A", "C")
    assert_valid(g, routes_of(rs))


def test_hop_cost_makes_direct_path_win_a_near_tie():
    links = [Link("A", "B", 20.4), Link("A", "C", 10.0), Link("C", "B", 10.0)]
    without = compute(build_graph("ABC", links, CostModel(hop_cost_ms=0.0)))
    assert route(without, "A", "B").path == ("A", "C", "B")  # 10.2 ms vs 10 ms
    with_hops = compute(build_graph("ABC", links))
    assert route(with_hops, "A", "B").path == ("A", "B")  # 10.7 ms vs 11 ms


def test_exact_latency_tie_goes_to_fewer_hops():
    links = [Link("A", "B", 20.0), Link("A", "C", 10.0), Link("C", "B", 10.0)]
    assert route(compute(build_graph("ABC", links)), "A", "B").path == ("A", "B")


def test_loss_penalty_moves_route_off_lossy_link():
    clean = [Link("A", "B", 20.0), Link("A", "C", 20.0), Link("C", "B", 20.0)]
    assert route(compute(build_graph("ABC", clean)), "A", "B").path == ("A", "B")
    lossy = [Link("A", "B", 20.0, 0.05), Link("A", "C", 20.0), Link("C", "B", 20.0)]
    r = route(compute(build_graph("ABC", lossy)), "A", "B")
    assert r.path == ("A", "C", "B")
    assert r.cost_ms == pytest.approx(21.0)


def test_unreachable_pairs_are_absent():
    g = build_graph("ABCD", [Link("A", "B", 10.0), Link("B", "C", 10.0)])
    rs = compute(g)
    assert set(routes_of(rs)) == {("A", "B"), ("B", "C"), ("A", "C")}
    assert route(rs, "A", "C").path == ("A", "B", "C")
    assert rs.route(Z, "B", "A") is None
    assert rs.route(Z, "A", "D") is None
    assert rs.route(Z, "A", "A") is None
    assert "no path from B to A" in rs.zone(Z).unreachable_reason("B", "A")
    assert rs.zone(Z).unreachable_reason("A", "C") is None


def test_no_routes_without_links():
    assert routes_of(compute(build_graph("ABC", []))) == {}
    assert routes_of(compute(nx.DiGraph())) == {}


def test_zero_cost_edges_are_edges():
    g = build_graph("ABC", [Link("A", "B", 0.0), Link("B", "C", 0.0)], CostModel(hop_cost_ms=0.0))
    r = route(compute(g), "A", "C")
    assert r.path == ("A", "B", "C")
    assert r.cost_ms == 0.0


def test_route_next_hop_is_second_node():
    assert Route(Z, "a", "c", ("a", "b", "c"), 2.0).next_hop == "b"


def test_routes_stay_inside_their_zone():
    # the short way from a to c is through x, which zone "in" does not include
    g = cost_graph({("a", "x"): 1.0, ("x", "c"): 1.0, ("a", "b"): 10.0, ("b", "c"): 10.0})
    policy = Policy({"in": Zone("in", frozenset("abc")), "all": Zone("all", frozenset("abcx"))})
    rs = engine.compute(g, policy)
    assert rs.route("all", "a", "c").path == ("a", "x", "c")
    assert rs.route("in", "a", "c").path == ("a", "b", "c")
    assert rs.route("in", "a", "x") is None
    assert "not in zone in" in rs.zone("in").unreachable_reason("a", "x")


def test_unroutable_inside_zone_is_absent_not_a_detour():
    g = cost_graph({("a", "x"): 1.0, ("x", "c"): 1.0})
    rs = engine.compute(g, Policy({"in": Zone("in", frozenset("ac"))}))
    assert rs.route("in", "a", "c") is None
    assert "no path from a to c inside zone in" == rs.zone("in").unreachable_reason("a", "c")


def test_unknown_zone_is_a_clear_error():
    rs = compute(cost_graph({("a", "b"): 1.0}))
    with pytest.raises(KeyError, match="unknown zone 'eu'"):
        rs.route("eu", "a", "b")


def test_table_is_a_relays_own_rows_sorted_by_destination():
    g = build_graph("dcba", both_ways([Link("a", "b", 5.0), Link("b", "c", 5.0),
                                       Link("c", "d", 5.0)]))
    rs = compute(g)
    assert [r.dst for r in rs.table("a")] == ["b", "c", "d"]
    assert [r.dst for r in rs.table("c")] == ["a", "b", "d"]
    for region in "abcd":
        assert all(r.src == region and r.zone == Z for r in rs.table(region))
    assert sum(len(rs.table(x)) for x in "abcd") == len(routes_of(rs))


def test_table_groups_zones_and_omits_unroutable():
    g = cost_graph({("a", "b"): 1.0, ("b", "c"): 1.0})
    policy = Policy({"ab": Zone("ab", frozenset("ab")), "all": Zone("all", frozenset("abc"))})
    rs = engine.compute(g, policy)
    assert [(r.zone, r.dst) for r in rs.table("a")] == [("ab", "b"), ("all", "b"), ("all", "c")]
    assert rs.table("c") == []
    assert rs.table("nowhere") == []


# --- hysteresis, hand-made -------------------------------------------------------------------


def diamond(via_b: float, via_c: float) -> nx.DiGraph:
    """A reaches D via B or via C, each half of the given total."""
    return cost_graph({("A", "B"): via_b / 2, ("B", "D"): via_b / 2,
                       ("A", "C"): via_c / 2, ("C", "D"): via_c / 2})


def previous_via_b() -> RouteSet:
    return compute(diamond(100.0, 120.0))


def test_previous_route_fixture_goes_via_b():
    assert route(previous_via_b(), "A", "D").path == ("A", "B", "D")


def test_slightly_better_route_does_not_move():
    new = diamond(100.0, 98.0)  # 2% and 2 ms better via C
    assert route(compute(new), "A", "D").path == ("A", "C", "D")
    kept = route(compute(new, previous_via_b(), STICKY), "A", "D")
    assert kept.path == ("A", "B", "D")
    assert kept.cost_ms == pytest.approx(100.0)


def test_clearly_better_route_moves():
    new = diamond(100.0, 70.0)  # 30% and 30 ms better
    moved = route(compute(new, previous_via_b(), STICKY), "A", "D")
    assert moved.path == ("A", "C", "D")
    assert moved.cost_ms == pytest.approx(70.0)


def test_better_by_fraction_but_not_by_ms_does_not_move():
    new = diamond(15.0, 12.0)  # 20% but only 3 ms better
    old = compute(diamond(15.0, 20.0))
    assert route(compute(new, old, STICKY), "A", "D").path == ("A", "B", "D")


def test_better_by_ms_but_not_by_fraction_does_not_move():
    new = diamond(100.0, 92.0)  # 8 ms but only 8% better
    assert route(compute(new, previous_via_b(), STICKY), "A", "D").path == ("A", "B", "D")


def test_better_by_both_thresholds_moves():
    new = diamond(100.0, 80.0)  # 20% and 20 ms better
    assert route(compute(new, previous_via_b(), STICKY), "A", "D").path == ("A", "C", "D")


def test_hysteresis_off_always_takes_the_best():
    new = diamond(100.0, 99.9)
    assert route(compute(new, previous_via_b(), OFF), "A", "D").path == ("A", "C", "D")


def test_route_moves_when_previous_next_hop_link_disappears():
    new = diamond(100.0, 98.0)
    new.remove_edge("A", "B")
    assert route(compute(new, previous_via_b(), STICKY), "A", "D").path == ("A", "C", "D")


def test_route_moves_when_previous_next_hop_region_disappears():
    new = diamond(100.0, 98.0)
    new.remove_node("B")
    assert route(compute(new, previous_via_b(), STICKY), "A", "D").path == ("A", "C", "D")


def test_kept_next_hop_follows_its_new_best_path():
    # A keeps B, but B's own path to D changed: A's route follows B's new path
    g = cost_graph({("A", "B"): 50.0, ("B", "D"): 80.0, ("B", "E"): 20.0, ("E", "D"): 29.0,
                    ("A", "C"): 49.0, ("C", "D"): 49.0})
    rs = compute(g, previous_via_b(), STICKY)
    r = route(rs, "A", "D")
    assert r.path == ("A", "B", "E", "D")
    assert r.cost_ms == pytest.approx(99.0)
    assert_valid(g, routes_of(rs))


def test_previous_next_hop_upstream_is_not_kept():
    # previously A went via B and B direct; now B's best way to D is back through A: keeping
    # A's old next hop would loop
    before = compute(cost_graph({("A", "B"): 1.0, ("B", "A"): 1.0, ("A", "D"): 50.0,
                                 ("B", "D"): 1.0}))
    assert route(before, "A", "D").path == ("A", "B", "D")
    g = cost_graph({("A", "B"): 1.0, ("B", "A"): 1.0, ("A", "D"): 50.0, ("B", "D"): 500.0})
    rs = compute(g, before, Hysteresis(10.0, 1e9))  # keep whatever can be kept safely
    assert route(rs, "A", "D").path == ("A", "D")
    assert route(rs, "B", "D").path == ("B", "D")  # downstream: kept, however much worse
    assert_valid(g, routes_of(rs))


def forged_previous(nodes: str, hops: dict[tuple[str, str], str]) -> RouteSet:
    """A previous route set with the given next hops, whether or not they make sense."""
    names = sorted(nodes)
    index = {x: i for i, x in enumerate(names)}
    n = len(names)
    next_hop = np.full((n, n), -1, dtype=np.intp)
    for (u, d), h in hops.items():
        next_hop[index[u], index[d]] = index[h]
    zr = ZoneRoutes(zone=Z, members=frozenset(names), nodes=names,
                    cost=np.full((n, n), np.inf), dist=np.zeros((n, n)),
                    actual=np.zeros((n, n)), next_hop=next_hop,
                    backup=np.full((n, n), -1, dtype=np.intp),
                    backup_kind=np.zeros((n, n), dtype=np.int8))
    return RouteSet({Z: zr})


def test_mutually_pointing_previous_routes_cannot_loop():
    g = cost_graph({("A", "B"): 1.0, ("B", "A"): 1.0, ("A", "D"): 10.0, ("B", "D"): 10.0})
    prev = forged_previous("ABD", {("A", "D"): "B", ("B", "D"): "A"})
    rs = compute(g, prev, Hysteresis(10.0, 1e9))  # keep whatever can be kept safely
    assert_valid(g, routes_of(rs))
    assert route(rs, "A", "D").path == ("A", "D")
    assert route(rs, "B", "D").path == ("B", "D")


def test_previous_routes_naming_unknown_regions_are_ignored():
    g = diamond(100.0, 98.0)
    old_graph = cost_graph({("A", "X"): 1.0, ("X", "D"): 1.0, ("A", "B"): 50.0,
                            ("B", "D"): 50.0})
    before = compute(old_graph)
    assert route(before, "A", "D").path == ("A", "X", "D")
    assert routes_of(compute(g, before, STICKY)) == routes_of(compute(g))


def test_previous_route_for_now_unreachable_pair_is_dropped():
    g = diamond(100.0, 98.0)
    g.remove_edge("B", "D")
    g.remove_edge("C", "D")
    rs = compute(g, previous_via_b(), Hysteresis(10.0, 1e9))
    assert rs.route(Z, "A", "D") is None


def backup_graph(a_to_d: float) -> nx.DiGraph:
    """b reaches d via c (3.5); its only alternate is a, whose own path to d is the direct
    link a->d: node-protecting for c as long as a->d costs less than a->c->d (3.5)."""
    return cost_graph({("b", "a"): 2.0, ("b", "c"): 1.0, ("a", "c"): 1.0, ("a", "d"): a_to_d,
                       ("c", "d"): 2.5})


def test_new_backup_must_clear_node_protection_by_the_slack():
    r = route(compute(backup_graph(3.0), None, STICKY), "b", "d")
    assert (r.next_hop, r.backup_next_hop) == ("c", "a")
    assert r.backup_kind == "link"  # 3.0 < 3.5 holds, but not by backup_slack_ms (1.0)
    assert route(compute(backup_graph(3.0)), "b", "d").backup_kind == "node"


def test_chosen_node_protecting_backup_keeps_its_kind_while_it_still_protects():
    before = route(compute(backup_graph(2.0), None, STICKY), "b", "d")
    assert (before.next_hop, before.backup_next_hop, before.backup_kind) == ("c", "a", "node")
    after = compute(backup_graph(3.0), compute(backup_graph(2.0), None, STICKY), STICKY)
    r = route(after, "b", "d")
    assert (r.next_hop, r.backup_next_hop) == ("c", "a")
    assert r.backup_kind == "node"  # a->d (3.0) still avoids c (a->c->d is 3.5)


def test_same_input_same_output():
    g = diamond(100.0, 98.0)
    a = routes_of(compute(g, previous_via_b(), STICKY))
    b = routes_of(compute(g, previous_via_b(), STICKY))
    assert a == b


def test_input_order_does_not_change_routes():
    rng = random.Random(4)
    names = [f"r{i}" for i in range(12)]
    links = [Link(a, b, float(rng.choice([10, 20, 30]))) for a in names for b in names
             if a != b and rng.random() < 0.4]  # small integers: many ties
    expected = routes_of(compute(build_graph(names, links)))
    for _ in range(5):
        rng.shuffle(links)
        rng.shuffle(names)
        assert routes_of(compute(build_graph(names, links))) == expected


# --- properties over random graphs -----------------------------------------------------------

rtts = st.one_of(st.integers(1, 40).map(float), st.floats(0.1, 400.0))  # integers give ties
losses = st.one_of(st.just(0.0), st.just(0.0), st.floats(0.0, 0.2))


@st.composite
def graphs(draw, min_nodes: int = 5, max_nodes: int = 25):
    n = draw(st.integers(min_nodes, max_nodes))
    names = [f"r{i:02d}" for i in range(n)]
    node = st.integers(0, n - 1)
    edges = draw(st.lists(st.tuples(node, node, rtts, losses), max_size=n * 5,
                          unique_by=lambda e: (e[0], e[1])))
    links = [Link(names[a], names[b], rtt, loss) for a, b, rtt, loss in edges]
    return names, links


@settings(max_examples=150, deadline=None)
@given(graphs())
def test_routes_are_shortest_paths_and_forwarding_cannot_loop(spec):
    names, links = spec
    g = build_graph(names, links)
    routes = routes_of(compute(g))
    assert_valid(g, routes)
    for (src, dst), r in routes.items():
        assert r.cost_ms == pytest.approx(nx.dijkstra_path_length(g, src, dst, weight="cost"),
                                          abs=TOL)


@settings(max_examples=100, deadline=None)
@given(graphs(), st.data())
def test_zone_routes_are_shortest_paths_inside_the_zone(spec, data):
    names, links = spec
    members = frozenset(data.draw(st.sets(st.sampled_from(names), min_size=2)))
    g = build_graph(names, links)
    rs = engine.compute(g, Policy({"z": Zone("z", members)}))
    inside = g.subgraph(members)
    routes = routes_of(rs, "z")
    assert all(set(r.path) <= members for r in routes.values())
    assert_valid(inside, routes)
    for (src, dst), r in routes.items():
        assert r.cost_ms == pytest.approx(
            nx.dijkstra_path_length(inside, src, dst, weight="cost"), abs=TOL)


@st.composite
def perturbed(draw):
    names, links = draw(graphs())
    seed = draw(st.integers(0, 2**32 - 1))
    removal = draw(st.sampled_from([0.0, 0.1, 0.3]))
    rng = random.Random(seed)
    new_links = [Link(x.src, x.dst, x.rtt_ms * rng.uniform(0.7, 1.3), x.loss)
                 for x in links if rng.random() >= removal]
    return names, links, new_links


@settings(max_examples=150, deadline=None)
@given(perturbed())
def test_hysteresis_keeps_routes_valid_and_loop_free(spec):
    names, old_links, new_links = spec
    old_graph, new_graph = build_graph(names, old_links), build_graph(names, new_links)
    previous = compute(old_graph)
    prev_routes = routes_of(previous)
    routes = routes_of(compute(new_graph, previous, STICKY))
    assert_valid(new_graph, routes)
    best = dict(nx.all_pairs_dijkstra_path_length(new_graph, weight="cost"))
    f, m = STICKY.fraction, STICKY.min_ms
    for (src, dst), r in routes.items():
        optimum = best[src][dst]
        hops = len(r.path) - 1
        assert r.cost_ms >= optimum - TOL
        # each kept hop costs at most max(f/(1-f) * distance, m) more than the best
        assert r.cost_ms <= optimum * (1 + hops * f / (1 - f)) + hops * m + TOL
        old = prev_routes.get((src, dst))
        nh = r.next_hop
        if old is None or nh == old.next_hop:
            continue
        # a route that moved moved onto a best path
        assert new_graph.edges[src, nh]["cost"] + best[nh][dst] == pytest.approx(optimum, abs=TOL)
        # and only when the gain over the old next hop (if still usable and downstream) was
        # larger than both margins
        h = old.next_hop
        if new_graph.has_edge(src, h) and dst in best[h] and best[h][dst] < optimum - TOL:
            via_old = new_graph.edges[src, h]["cost"] + best[h][dst]
            gain = via_old - optimum
            assert gain > f * via_old - TOL and gain > m - TOL


@settings(max_examples=100, deadline=None)
@given(perturbed(), st.floats(0.0, 0.5), st.floats(0.0, 50.0), st.floats(0.0, 5.0))
def test_any_hysteresis_is_loop_free_and_deterministic(spec, fraction, min_ms, slack):
    names, old_links, new_links = spec
    previous = compute(build_graph(names, old_links))
    new_graph = build_graph(names, new_links)
    h = Hysteresis(fraction, min_ms, slack)
    routes = routes_of(compute(new_graph, previous, h))
    assert_valid(new_graph, routes)
    again = compute(build_graph(list(reversed(names)), list(reversed(new_links))), previous, h)
    assert routes_of(again) == routes


@settings(max_examples=60, deadline=None)
@given(perturbed())
def test_chained_recomputations_stay_loop_free(spec):
    # the controller feeds each result back as the next previous
    names, a_links, b_links = spec
    graphs_in_turn = [build_graph(names, x) for x in (a_links, b_links, a_links, b_links)]
    rs = None
    for g in graphs_in_turn:
        rs = compute(g, rs, STICKY)
        assert_valid(g, routes_of(rs))


@settings(max_examples=100, deadline=None)
@given(graphs())
def test_unchanged_graph_keeps_all_routes(spec):
    names, links = spec
    g = build_graph(names, links)
    previous = compute(g, None, STICKY)
    assert routes_of(compute(g, previous, STICKY)) == routes_of(previous)


def test_loss_bound_forgives_a_lone_lost_probe():
    assert loss_bound(0.0, 50) == 0.0
    assert loss_bound(1 / 13, 13) == 0.0
    assert loss_bound(1 / 50, 50) == 0.0
    assert loss_bound(0.02, 0) == 0.02  # window unknown: the rate as measured
    two = loss_bound(2 / 50, 50)
    assert 0 < two < 0.01
    # more probes lost, or the same rate over more probes, bound higher
    assert loss_bound(5 / 50, 50) > two
    assert loss_bound(0.04, 500) > two
    assert loss_bound(10 / 50, 50) == pytest.approx(0.108, abs=0.002)
    assert loss_bound(1.0, 50) < 1.0
