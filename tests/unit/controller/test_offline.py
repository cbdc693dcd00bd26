"""Offline planning (controller/offline.py): the simulation of partial-mesh measurement on a
small synthetic geography, checked against brute force (paths walked and costed link by link,
optima from networkx)."""

from __future__ import annotations

import random
from dataclasses import replace
from itertools import pairwise

import networkx as nx
import numpy as np
import pytest

from controller import engine, offline
from skymesh.catalogue import Region
from skymesh.geo import nearest_regions
from skymesh.policy import Policy, Zone
from skymesh.wan import WanLink, geo_model

N = 40


def geography(n: int = N, seed: int = 5):
    """n regions spread over the world, latency from distance (skymesh/wan.py's model, whose
    per-pair inflation already makes detours win), a few direct links made three times
    slower (clear triangle-inequality violations) and a few pairs with no link at all."""
    rng = random.Random(seed)
    regions = {f"r{i:02d}": Region(id=f"r{i:02d}", name=f"r{i:02d}", country="DE",
                                   lat=rng.uniform(-60, 70), lon=rng.uniform(-180, 180))
               for i in range(n)}
    model = geo_model(regions.values(), seed=seed)
    ids = sorted(regions)
    for _ in range(12):
        a, b = rng.sample(ids, 2)
        for pair in ((a, b), (b, a)):
            link = model[pair]
            model[pair] = WanLink(link.delay_ms * 3, link.jitter_ms)
    for _ in range(6):
        a, b = rng.sample(ids, 2)
        model.pop((a, b), None)
        model.pop((b, a), None)
    # two zones: everything, and the northern half (routes of a zone stay inside it)
    north = frozenset(r for r in ids if regions[r].lat > 5)
    policy = Policy({"global": Zone("global", frozenset(ids)), "north": Zone("north", north)})
    return regions, policy, model


@pytest.fixture(scope="module")
def world():
    return geography()


def brute_force(graph: nx.DiGraph, policy: Policy, chosen: engine.RouteSet) -> dict:
    """Every ordered pair of every zone: the chosen path's cost summed link by link on the
    full graph, over the zone's own shortest distance by networkx."""
    pairs = unreachable = w1 = w5 = w10 = 0
    worst = 1.0
    for name, zone in policy.zones.items():
        sub = graph.subgraph(zone.regions)
        for src in sorted(zone.regions):
            best = nx.single_source_dijkstra_path_length(sub, src, weight="cost")
            for dst in sorted(zone.regions):
                if dst == src or dst not in best:
                    continue
                pairs += 1
                route = chosen.route(name, src, dst)
                if route is None:
                    unreachable += 1
                    continue
                assert set(route.path) <= zone.regions
                cost = sum(graph.edges[a, b]["cost"] for a, b in pairwise(route.path))
                ratio = cost / best[dst]
                w1 += ratio <= 1.01 + 1e-9
                w5 += ratio <= 1.05 + 1e-9
                w10 += ratio <= 1.10 + 1e-9
                worst = max(worst, ratio)
    return {"pairs": pairs, "unreachable": unreachable, "within_1pct": w1 / pairs,
            "within_5pct": w5 / pairs, "within_10pct": w10 / pairs, "worst_ratio": worst}


def near_matrix(regions, nodes: list[str], k: int) -> np.ndarray:
    index = {x: i for i, x in enumerate(nodes)}
    near = np.zeros((len(nodes), len(nodes)), dtype=bool)
    for src, peers in nearest_regions(regions, k).items():
        near[index[src], [index[p] for p in peers]] = True
    return near


def graph_of(full: nx.DiGraph, keep) -> nx.DiGraph:
    out = nx.DiGraph()
    out.add_nodes_from(full.nodes)
    out.add_edges_from((a, b, d) for a, b, d in full.edges(data=True) if keep(a, b))
    return out


def assert_matches(acc: offline.Accuracy, expected: dict) -> None:
    for key, value in expected.items():
        assert getattr(acc, key) == pytest.approx(value, rel=1e-9), key


# -- the comparison ------------------------------------------------------------------------


def test_the_comparison_matches_brute_force_on_a_poor_graph(world):
    regions, policy, model = world
    full = offline.wan_graph(regions, model)
    near = nearest_regions(regions, 3)
    # the nearest three and a few random links: connected, far from optimal
    rng = random.Random(2)
    extra = {(a, b) for a in full for b in rng.sample(sorted(full), 2)}
    poor = graph_of(full, lambda a, b: b in near[a] or (a, b) in extra)
    best, chosen = engine.compute(full, policy), engine.compute(poor, policy)
    acc = offline.compare(best, chosen)
    expected = brute_force(full, policy, chosen)
    assert_matches(acc, expected)
    assert acc.within_5pct < 0.9  # a real test of the counting, not of 100% everywhere
    assert acc.unreachable_full == 0
    z, src, dst = acc.worst_pair
    route = chosen.route(z, src, dst)
    cost = sum(full.edges[a, b]["cost"] for a, b in pairwise(route.path))
    assert cost / best.route(z, src, dst).cost_ms == pytest.approx(acc.worst_ratio)


def test_the_comparison_counts_unreachable_pairs_apart(world):
    regions, policy, model = world
    full = offline.wan_graph(regions, model)
    cut = graph_of(full, lambda a, b: "r00" not in (a, b) or b == "r01")  # r00: no way in
    best, chosen = engine.compute(full, policy), engine.compute(cut, policy)
    acc = offline.compare(best, chosen)
    assert_matches(acc, brute_force(full, policy, chosen))
    zones_with_r00 = [z for z in policy.zones.values() if "r00" in z.regions]
    assert acc.unreachable == sum(len(z.regions) - 1 for z in zones_with_r00)  # to r00
    # pairs the full mesh cannot connect either are not counted against the partial one
    again = offline.compare(engine.compute(cut, policy), chosen)
    assert again.unreachable == 0 and again.unreachable_full == acc.unreachable


def test_path_costs_walk_the_next_hops():
    inf = np.inf
    cost = np.array([[inf, 1.0, 9.0], [inf, inf, 2.0], [4.0, inf, inf]])
    next_hop = np.array([[-1, 1, 1], [2, -1, 2], [0, 0, -1]])
    assert offline.path_costs(next_hop, cost).tolist() == [[0, 1, 3], [6, 0, 2], [4, 5, 0]]
    looping = np.array([[-1, 1, 1], [0, -1, 0], [-1, -1, -1]])
    with pytest.raises(ValueError, match="loop"):
        offline.path_costs(looping, cost)


# -- the simulation ------------------------------------------------------------------------


def test_the_first_slot_is_the_near_links_and_the_first_sample_slice(world):
    regions, policy, model = world
    r = offline.partial_mesh(regions, policy, model, nearest=4, slots=6, rounds=1, seed=3)
    full = offline.wan_graph(regions, model)
    nodes = sorted(full)
    near = near_matrix(regions, nodes, 4)
    slot = offline.sample_slots(near, 6, seed=3)
    index = {x: i for i, x in enumerate(nodes)}
    first = graph_of(full, lambda a, b: near[index[a], index[b]] or slot[index[a], index[b]] == 0)
    chosen = engine.compute(first, policy)
    expected = brute_force(full, policy, chosen)
    h = r.history[0]
    for key in ("within_1pct", "within_5pct", "within_10pct", "worst_ratio", "unreachable"):
        assert getattr(h, key) == pytest.approx(expected[key], rel=1e-9), key
    assert h.links_graph == first.number_of_edges()
    assert h.links_continuous == int(near.sum())
    assert h.within_5pct < 1.0  # the cold start is not yet the optimum


def test_every_pair_is_reachable_and_one_cycle_of_samples_finds_the_optimum(world):
    regions, policy, model = world
    r = offline.partial_mesh(regions, policy, model, nearest=2, slots=8, rounds=3)
    # from a cold start with only two near peers, a region whose near peers lie outside one
    # of its zones may have no link inside it until a sample brings one; never after
    assert all(h.unreachable == 0 for h in r.history[1:])
    assert all(h.unreachable == 0
               for h in offline.partial_mesh(regions, policy, model, nearest=4, slots=8,
                                             rounds=1).history)
    # every link of an optimal path is the optimal path between its own two ends, so the
    # sample that brings it in makes it a route's next hop, and it is kept from then on:
    # on a static matrix, a whole cycle of samples is enough
    assert r.history[0].within_1pct < 1.0
    for h in r.history[r.slots - 1:]:
        assert h.within_1pct == 1.0 and h.worst_ratio == pytest.approx(1.0)
    # routes only ever gain links: the share of good paths never falls
    shares = [h.within_1pct for h in r.history]
    assert shares == sorted(shares)
    assert r.accuracy.pairs == brute_force(offline.wan_graph(regions, model), policy,
                                           engine.compute(offline.wan_graph(regions, model),
                                                          policy))["pairs"]
    assert r.accuracy.within_5pct == 1.0 and r.worst_slot_within_5pct == 1.0
    assert r.aim_met_after_s is not None and r.aim_met_after_s <= r.sample_every_s
    # the saving: fewer links, fewer probes than the full mesh
    assert r.links_graph < r.links_full
    assert r.probes_per_relay_s < r.probes_per_relay_s_full


def test_with_every_peer_near_it_is_the_full_mesh(world):
    regions, policy, model = world
    r = offline.partial_mesh(regions, policy, model, nearest=N - 1, slots=4, rounds=2)
    assert r.cycles == 2 and r.converged
    for h in r.history:
        assert h.within_1pct == 1.0 and h.worst_ratio == pytest.approx(1.0)
        assert h.unreachable == 0 and h.samples == 0
        assert h.links_graph == r.links_full
    assert r.probes_per_relay_s == pytest.approx(r.probes_per_relay_s_full) == N - 1


def test_probes_are_continuous_links_and_bursts(world):
    regions, policy, model = world
    r = offline.partial_mesh(regions, policy, model, nearest=3, slots=5, rounds=2,
                             sample_every_s=30.0, probe_interval_s=2.0, sample_probes=4)
    last = r.history[-5:]
    continuous = sum(h.links_continuous for h in last) / 5 / N / 2.0
    bursts = sum(h.samples for h in last) / N * 4 / 30.0
    assert r.probes_per_relay_s == pytest.approx(continuous + bursts)
    # a peer measured continuously is not sampled as well
    for h in r.history:
        assert h.links_continuous + h.samples <= N * (N - 1)
    d = r.to_dict()
    assert d["accuracy"]["pairs"] == r.accuracy.pairs and len(d["history"]) == len(r.history)
    assert d["probes_per_relay_s"] == r.probes_per_relay_s


def test_sample_slots_deal_each_relays_other_peers_round_the_slots():
    regions, _, _ = geography(25, seed=9)
    nodes = sorted(regions)
    near = near_matrix(regions, nodes, 5)
    slot = offline.sample_slots(near, 4, seed=1)
    for u in range(len(nodes)):
        assert slot[u, u] == -1 and (slot[u][near[u]] == -1).all()
        others = slot[u][(~near[u]) & (np.arange(len(nodes)) != u)]
        counts = np.bincount(others, minlength=4)
        assert counts.sum() == len(nodes) - 1 - 5 and counts.max() - counts.min() <= 1
    assert (offline.sample_slots(near, 4, seed=1) == slot).all()


def test_the_simulation_refuses_nonsense(world):
    regions, policy, model = world
    for bad in ({"nearest": -1}, {"slots": 0}, {"rounds": 0}, {"keep_slots": -1}):
        with pytest.raises(ValueError):
            offline.partial_mesh(regions, policy, model, **bad)


def test_a_longer_memory_only_adds_links(world):
    regions, policy, model = world
    short = offline.partial_mesh(regions, policy, model, nearest=3, slots=6, rounds=1)
    long = offline.partial_mesh(regions, policy, model, nearest=3, slots=6, rounds=1,
                                keep_slots=5)
    assert all(b.links_graph >= a.links_graph for a, b in zip(short.history, long.history,
                                                               strict=True))
    assert long.history[-1].links_graph == long.links_full  # every sample still fresh
    assert replace(long.accuracy, worst_pair=None) == replace(short.accuracy, worst_pair=None)
