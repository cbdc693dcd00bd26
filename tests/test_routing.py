"""The routing engine: costs, the graph, shortest in-trees, hysteresis and per-relay tables."""

import math
import random

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.routing import (
    CostModel,
    Hysteresis,
    Link,
    Route,
    build_graph,
    compute_routes,
    link_cost,
    path_cost,
    tables,
)

OFF = Hysteresis(0.0, 0.0)
STICKY = Hysteresis(0.1, 5.0)
TOL = 1e-6


def cost_graph(edges: dict[tuple[str, str], float], nodes: str = "") -> nx.DiGraph:
    """A graph with the given edge costs (what compute_routes reads)."""
    g = nx.DiGraph()
    g.add_nodes_from(sorted(set(nodes) | {n for e in edges for n in e}))
    for (u, v), c in sorted(edges.items()):
        g.add_edge(u, v, cost=c)
    return g


def both_ways(links: list[Link]) -> list[Link]:
    return links + [Link(x.dst, x.src, x.rtt_ms, x.loss) for x in links]


def walk(routes, src: str, dst: str, limit: int) -> list[str]:
    """Forward hop by hop on the next hops of each relay's own route."""
    at, seen = src, [src]
    while at != dst:
        at = routes[(at, dst)].next_hop
        assert at not in seen, f"forwarding loop {seen + [at]}"
        seen.append(at)
        assert len(seen) <= limit, f"no arrival within {limit} hops: {seen}"
    return seen


def assert_valid(graph: nx.DiGraph, routes) -> None:
    """Every route is a simple path on existing edges with its true cost, forwarding on next
    hops follows it, and exactly the reachable pairs have routes."""
    n = graph.number_of_nodes()
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


# --- hand-made routing cases -----------------------------------------------------------------


def test_slow_direct_link_is_routed_around():
    g = build_graph("ABC", both_ways([Link("A", "B", 200.0), Link("A", "C", 10.0),
                                      Link("C", "B", 10.0)]))
    routes = compute_routes(g)
    assert routes[("A", "B")].path == ("A", "C", "B")
    assert routes[("A", "B")].next_hop == "C"
    assert routes[("A", "B")].cost_ms == pytest.approx(2 * link_cost(10.0, 0.0))
    assert routes[("B", "A")].path == ("B", "C", "A")
    assert routes[("A", "C")].path == ("A", "C")
    assert_valid(g, routes)


def test_hop_cost_makes_direct_path_win_a_near_tie():
    links = [Link("A", "B", 20.4), Link("A", "C", 10.0), Link("C", "B", 10.0)]
    without = compute_routes(build_graph("ABC", links, CostModel(hop_cost_ms=0.0)))
    assert without[("A", "B")].path == ("A", "C", "B")  # 10.2 ms vs 10 ms
    with_hops = compute_routes(build_graph("ABC", links))
    assert with_hops[("A", "B")].path == ("A", "B")  # 10.7 ms vs 11 ms


def test_exact_latency_tie_goes_to_fewer_hops():
    links = [Link("A", "B", 20.0), Link("A", "C", 10.0), Link("C", "B", 10.0)]
    assert compute_routes(build_graph("ABC", links))[("A", "B")].path == ("A", "B")


def test_loss_penalty_moves_route_off_lossy_link():
    clean = [Link("A", "B", 20.0), Link("A", "C", 20.0), Link("C", "B", 20.0)]
    assert compute_routes(build_graph("ABC", clean))[("A", "B")].path == ("A", "B")
    lossy = [Link("A", "B", 20.0, 0.05), Link("A", "C", 20.0), Link("C", "B", 20.0)]
    route = compute_routes(build_graph("ABC", lossy))[("A", "B")]
    assert route.path == ("A", "C", "B")
    assert route.cost_ms == pytest.approx(21.0)


def test_unreachable_pairs_are_absent():
    g = build_graph("ABCD", [Link("A", "B", 10.0), Link("B", "C", 10.0)])
    routes = compute_routes(g)
    assert set(routes) == {("A", "B"), ("B", "C"), ("A", "C")}
    assert routes[("A", "C")].path == ("A", "B", "C")
    assert all("D" not in pair for pair in routes)
    assert ("B", "A") not in routes


def test_no_routes_without_links():
    assert compute_routes(build_graph("ABC", [])) == {}
    assert compute_routes(nx.DiGraph()) == {}


def test_zero_cost_edges_are_edges():
    g = build_graph("ABC", [Link("A", "B", 0.0), Link("B", "C", 0.0)], CostModel(hop_cost_ms=0.0))
    routes = compute_routes(g)
    assert routes[("A", "C")].path == ("A", "B", "C")
    assert routes[("A", "C")].cost_ms == 0.0


def test_route_next_hop_is_second_node():
    assert Route("a", "c", ("a", "b", "c"), 2.0).next_hop == "b"


def test_path_cost_sums_edge_costs():
    g = cost_graph({("a", "b"): 1.5, ("b", "c"): 2.25})
    assert path_cost(g, ["a", "b", "c"]) == pytest.approx(3.75)
    assert path_cost(g, ("a",)) == 0
    with pytest.raises(KeyError):
        path_cost(g, ["c", "a"])


def test_tables_group_by_source_sorted_by_destination():
    g = build_graph("dcba", both_ways([Link("a", "b", 5.0), Link("b", "c", 5.0),
                                       Link("c", "d", 5.0)]))
    routes = compute_routes(g)
    out = tables(routes)
    assert sorted(out) == ["a", "b", "c", "d"]
    assert [r.dst for r in out["a"]] == ["b", "c", "d"]
    assert [r.dst for r in out["c"]] == ["a", "b", "d"]
    assert all(r.src == src for src, rows in out.items() for r in rows)
    assert sum(len(rows) for rows in out.values()) == len(routes)


def test_tables_omit_sources_without_routes():
    routes = compute_routes(build_graph("abc", [Link("a", "b", 1.0)]))
    assert tables(routes) == {"a": [routes[("a", "b")]]}
    assert tables({}) == {}


# --- hysteresis, hand-made -------------------------------------------------------------------


def diamond(via_b: float, via_c: float) -> nx.DiGraph:
    """A reaches D via B or via C, each half of the given total."""
    return cost_graph({("A", "B"): via_b / 2, ("B", "D"): via_b / 2,
                       ("A", "C"): via_c / 2, ("C", "D"): via_c / 2})


def previous_via_b() -> dict:
    return compute_routes(diamond(100.0, 120.0), None, OFF)


def test_previous_route_fixture_goes_via_b():
    assert previous_via_b()[("A", "D")].path == ("A", "B", "D")


def test_slightly_better_route_does_not_move():
    new = diamond(100.0, 98.0)  # 2% and 2 ms better via C
    assert compute_routes(new)[("A", "D")].path == ("A", "C", "D")
    kept = compute_routes(new, previous_via_b(), STICKY)[("A", "D")]
    assert kept.path == ("A", "B", "D")
    assert kept.cost_ms == pytest.approx(100.0)


def test_clearly_better_route_moves():
    new = diamond(100.0, 70.0)  # 30% and 30 ms better
    moved = compute_routes(new, previous_via_b(), STICKY)[("A", "D")]
    assert moved.path == ("A", "C", "D")
    assert moved.cost_ms == pytest.approx(70.0)


def test_better_by_fraction_but_not_by_ms_does_not_move():
    new = diamond(15.0, 12.0)  # 20% but only 3 ms better
    old = compute_routes(diamond(15.0, 20.0))
    assert compute_routes(new, old, STICKY)[("A", "D")].path == ("A", "B", "D")


def test_better_by_ms_but_not_by_fraction_does_not_move():
    new = diamond(100.0, 92.0)  # 8 ms but only 8% better
    assert compute_routes(new, previous_via_b(), STICKY)[("A", "D")].path == ("A", "B", "D")


def test_better_by_both_thresholds_moves():
    new = diamond(100.0, 80.0)  # 20% and 20 ms better
    assert compute_routes(new, previous_via_b(), STICKY)[("A", "D")].path == ("A", "C", "D")


def test_hysteresis_off_always_takes_the_best():
    new = diamond(100.0, 99.9)
    assert compute_routes(new, previous_via_b(), OFF)[("A", "D")].path == ("A", "C", "D")


def test_route_moves_when_previous_next_hop_link_disappears():
    new = diamond(100.0, 98.0)
    new.remove_edge("A", "B")
    route = compute_routes(new, previous_via_b(), STICKY)[("A", "D")]
    assert route.path == ("A", "C", "D")


def test_route_moves_when_previous_next_hop_region_disappears():
    new = diamond(100.0, 98.0)
    new.remove_node("B")
    route = compute_routes(new, previous_via_b(), STICKY)[("A", "D")]
    assert route.path == ("A", "C", "D")


def test_kept_next_hop_follows_its_new_best_path():
    # A keeps B, but B's own path to D changed: A's route follows B's new path
    g = cost_graph({("A", "B"): 50.0, ("B", "D"): 80.0, ("B", "E"): 20.0, ("E", "D"): 29.0,
                    ("A", "C"): 49.0, ("C", "D"): 49.0})
    route = compute_routes(g, previous_via_b(), STICKY)[("A", "D")]
    assert route.path == ("A", "B", "E", "D")
    assert route.cost_ms == pytest.approx(99.0)
    assert_valid(g, compute_routes(g, previous_via_b(), STICKY))


def test_previous_next_hop_upstream_is_not_kept():
    # previously A went via B; now B's only way to D is back through A: keeping B would loop
    g = cost_graph({("A", "B"): 1.0, ("B", "A"): 1.0, ("A", "D"): 50.0, ("B", "D"): 500.0})
    prev = {("A", "D"): Route("A", "D", ("A", "B", "D"), 10.0),
            ("B", "D"): Route("B", "D", ("B", "D"), 10.0)}
    routes = compute_routes(g, prev, STICKY)
    assert routes[("A", "D")].path == ("A", "D")
    assert routes[("B", "D")].path == ("B", "A", "D")
    assert_valid(g, routes)


def test_mutually_pointing_previous_routes_cannot_loop():
    g = cost_graph({("A", "B"): 1.0, ("B", "A"): 1.0, ("A", "D"): 10.0, ("B", "D"): 10.0})
    prev = {("A", "D"): Route("A", "D", ("A", "B", "D"), 11.0),
            ("B", "D"): Route("B", "D", ("B", "A", "D"), 11.0)}
    routes = compute_routes(g, prev, Hysteresis(10.0, 1e9))  # keep whatever can be kept
    assert_valid(g, routes)


def test_previous_routes_naming_unknown_regions_are_ignored():
    g = diamond(100.0, 98.0)
    prev = {("A", "D"): Route("A", "D", ("A", "X", "D"), 1.0),
            ("X", "D"): Route("X", "D", ("X", "D"), 1.0),
            ("A", "Y"): Route("A", "Y", ("A", "B", "Y"), 1.0)}
    assert compute_routes(g, prev, STICKY) == compute_routes(g)


def test_previous_route_for_now_unreachable_pair_is_dropped():
    g = diamond(100.0, 98.0)
    g.remove_edge("B", "D")
    g.remove_edge("C", "D")
    routes = compute_routes(g, previous_via_b(), Hysteresis(10.0, 1e9))
    assert ("A", "D") not in routes


def test_same_input_same_output():
    g = diamond(100.0, 98.0)
    assert compute_routes(g, previous_via_b(), STICKY) == compute_routes(g, previous_via_b(),
                                                                         STICKY)


def test_input_order_does_not_change_routes():
    rng = random.Random(4)
    names = [f"r{i}" for i in range(12)]
    links = [Link(a, b, float(rng.choice([10, 20, 30]))) for a in names for b in names
             if a != b and rng.random() < 0.4]  # small integers: many ties
    expected = compute_routes(build_graph(names, links))
    for _ in range(5):
        rng.shuffle(links)
        rng.shuffle(names)
        assert compute_routes(build_graph(names, links)) == expected


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


def dijkstra_lengths(graph: nx.DiGraph) -> dict[str, dict[str, float]]:
    return dict(nx.all_pairs_dijkstra_path_length(graph, weight="cost"))


@settings(max_examples=150, deadline=None)
@given(graphs())
def test_routes_are_shortest_paths_and_forwarding_cannot_loop(spec):
    names, links = spec
    g = build_graph(names, links)
    routes = compute_routes(g, None, OFF)
    assert_valid(g, routes)
    for (src, dst), r in routes.items():
        assert r.cost_ms == pytest.approx(nx.dijkstra_path_length(g, src, dst, weight="cost"),
                                          abs=TOL)


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
    previous = compute_routes(old_graph, None, OFF)
    routes = compute_routes(new_graph, previous, STICKY)
    assert_valid(new_graph, routes)
    best = dijkstra_lengths(new_graph)
    f, m = STICKY.fraction, STICKY.min_ms
    for (src, dst), r in routes.items():
        optimum = best[src][dst]
        hops = len(r.path) - 1
        assert r.cost_ms >= optimum - TOL
        # each kept hop costs at most max(f/(1-f) * distance, m) more than the best
        assert r.cost_ms <= optimum * (1 + hops * f / (1 - f)) + hops * m + TOL
        old = previous.get((src, dst))
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
@given(perturbed(), st.floats(0.0, 0.5), st.floats(0.0, 50.0))
def test_any_hysteresis_is_loop_free_and_deterministic(spec, fraction, min_ms):
    names, old_links, new_links = spec
    previous = compute_routes(build_graph(names, old_links), None, OFF)
    new_graph = build_graph(names, new_links)
    h = Hysteresis(fraction, min_ms)
    routes = compute_routes(new_graph, previous, h)
    assert_valid(new_graph, routes)
    assert compute_routes(build_graph(list(reversed(names)), list(reversed(new_links))),
                          previous, h) == routes


@settings(max_examples=100, deadline=None)
@given(perturbed())
def test_unchanged_graph_keeps_all_routes(spec):
    names, links, _ = spec
    g = build_graph(names, links)
    previous = compute_routes(g, None, OFF)
    assert compute_routes(g, previous, STICKY) == previous
