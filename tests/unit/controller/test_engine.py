"""The routing engine (controller/engine.py) in depth: residency zones, loop-free forwarding,
shortest paths, loop-free alternates (RFC 5286), hysteresis, incremental link updates and
failover plans; properties over hypothesis-generated topologies and policies, then hand-made
cases.

Checks read the engine's arrays and routes and compare them with networkx on the zone's own
subgraph: a route of a zone may only ever touch the zone's regions (DESIGN.md, "Zone")."""

from __future__ import annotations

import functools
import math
import random
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import engine
from controller.engine import (
    BACKUP_KINDS,
    EPSILON,
    NO_HYSTERESIS,
    FailoverPlan,
    Route,
    RouteSet,
    ZoneRoutes,
)
from controller.routing import Hysteresis, Link, build_graph
from skymesh.policy import Policy, Zone

OFF = NO_HYSTERESIS
STICKY = Hysteresis(0.1, 5.0, 1.0)
TOL = 1e-6
PROPERTY = settings(max_examples=150, deadline=None)
ABSENT = "zz-absent"  # a region some zones name but that has no relay in the topology


@contextmanager
def time_limit(seconds: float):
    """Building a route walks next hops: a forwarding loop would spin forever. Fail instead."""

    def stop(signum, frame):
        raise TimeoutError("the engine did not finish: next hops probably loop")

    previous = signal.signal(signal.SIGALRM, stop)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:  # an enclosing limit keeps (roughly) its remaining time
            signal.setitimer(signal.ITIMER_REAL, outer)


@pytest.fixture(autouse=True)
def no_hang():
    with time_limit(120):
        yield


def bounded(test):
    """Each hypothesis example under its own time limit (shrinking a loop must not hang)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        with time_limit(5):
            return test(*args, **kwargs)

    return run


# --- helpers ---------------------------------------------------------------------------------


def graph(rtts: dict[str, float], nodes: str = "", one_way: dict[str, float] | None = None,
          ) -> nx.DiGraph:
    """Single-letter regions; {"AB": 200} is a link A<->B of 200 ms RTT (both directions),
    one_way={"AB": 200} the direction A->B only."""
    links = [Link(a, b, rtt) for (a, b), rtt in (one_way or {}).items()]
    for (a, b), rtt in rtts.items():
        links += [Link(a, b, rtt), Link(b, a, rtt)]
    regions = set(nodes) | {r for pair in [*rtts, *(one_way or {})] for r in pair}
    return build_graph(regions, links)


def cost_graph(costs: dict[str, float]) -> nx.DiGraph:
    """Directed links with the given costs as the engine reads them: {"AB": 1.5} is A->B."""
    g = nx.DiGraph()
    g.add_nodes_from(sorted({r for pair in costs for r in pair}))
    for (a, b), c in sorted(costs.items()):
        g.add_edge(a, b, cost=c)
    return g


def policy(zones: dict[str, str | frozenset[str]]) -> Policy:
    """{"eu": "AB"}: zone eu of regions A and B (a string of letters or a set of ids)."""
    return Policy({name: Zone(name, frozenset(regions)) for name, regions in zones.items()})


def close(a: float | None, b: float | None) -> bool:
    """Equal within TOL (pytest.approx is too slow for the thousands of checks here)."""
    return a is not None and b is not None and abs(a - b) <= TOL


def cost_of(g: nx.DiGraph, path) -> float:
    return sum(g.edges[a, b]["cost"] for a, b in pairwise(path))


def route(rs: RouteSet, zone: str, src: str, dst: str) -> Route:
    r = rs.route(zone, src, dst)
    assert r is not None, f"no route {src}->{dst} in zone {zone}"
    return r


def zone_graph(g: nx.DiGraph, regions) -> nx.DiGraph:
    """The zone's own subgraph (a copy: views are slow to walk)."""
    return g.subgraph(regions).copy()


def distances(g: nx.DiGraph) -> dict[str, dict[str, float]]:
    return dict(nx.all_pairs_dijkstra_path_length(g, weight="cost"))


def forward(z: ZoneRoutes, start: int, d: int) -> list[int]:
    """Hop by hop along the primary next hops from `start` to `d` (node indices); fails on a
    dead end or a repeated node."""
    path, at = [start], start
    while at != d:
        nxt = int(z.next_hop[at, d])
        assert nxt >= 0, f"dead end at {z.nodes[at]} towards {z.nodes[d]}: {names(z, path)}"
        assert nxt not in path, f"forwarding loop towards {z.nodes[d]}: {names(z, path + [nxt])}"
        path.append(nxt)
        at = nxt
    return path


def names(z: ZoneRoutes, path: list[int]) -> list[str]:
    return [z.nodes[i] for i in path]


def failover_path(z: ZoneRoutes, u: int, d: int) -> list[int]:
    """The packet's path when the link u -> primary next hop fails: u sends to its backup,
    then every node follows its primary next hop."""
    return [u, *forward(z, int(z.backup[u, d]), d)]


def all_routes(rs: RouteSet) -> dict[tuple[str, str, str], Route]:
    return {(name, r.src, r.dst): r for name, z in rs.zones.items()
            for src in z.nodes for r in z.rows(src)}


# --- generated topologies and policies -------------------------------------------------------


@dataclass
class Scenario:
    names: list[str]
    links: list[Link]
    policy: Policy

    @property
    def graph(self) -> nx.DiGraph:
        return build_graph(self.names, self.links)

    def __repr__(self) -> str:
        links = ", ".join(f"{x.src}>{x.dst}:{x.rtt_ms:g}" + (f"/{x.loss:g}" if x.loss else "")
                          for x in self.links)
        zones = {n: sorted(z.regions) for n, z in self.policy.zones.items() if n != "global"}
        return f"Scenario({len(self.names)} regions, zones={zones}, links=[{links}])"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))  # what hypothesis shows for a failing example


@st.composite
def scenarios(draw, rtts: str = "any") -> Scenario:
    """3-20 regions, a random directed edge subset (symmetric or not), RTTs of 1-300 ms
    (`rtts`: "integer", which makes ties, "float" or "any"), sometimes loss; zones: `global`
    of every region plus one or two random subsets (disconnected inside often enough, and
    sometimes naming a region with no relay)."""
    n = draw(st.integers(3, 20))
    density = draw(st.sampled_from([0.1, 0.2, 0.35, 0.6, 1.0]))
    symmetric = draw(st.booleans())
    lossy = draw(st.booleans())
    integers = rtts == "integer" or rtts == "any" and draw(st.booleans())
    extra_zones = draw(st.integers(1, 2))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))

    def rtt() -> float:
        return float(rng.randint(1, 300)) if integers else rng.uniform(1.0, 300.0)

    def loss() -> float:
        return rng.choice([0.0, 0.0, rng.uniform(0.0, 0.05)]) if lossy else 0.0

    regions = [f"r{i:02d}" for i in range(n)]
    links = []
    for i, a in enumerate(regions):
        for b in regions[i + 1:]:
            if symmetric:
                if rng.random() < density:
                    r, lo = rtt(), loss()
                    links += [Link(a, b, r, lo), Link(b, a, r, lo)]
            else:
                links += [Link(s, t, rtt(), loss()) for s, t in ((a, b), (b, a))
                          if rng.random() < density]
    zones: dict[str, frozenset[str]] = {"global": frozenset(regions)}
    for k in range(1, extra_zones + 1):
        share = rng.uniform(0.2, 0.9)
        members = {r for r in regions if rng.random() < share} or {rng.choice(regions)}
        if rng.random() < 0.2:
            members.add(ABSENT)
        zones[f"z{k}"] = frozenset(members)
    return Scenario(regions, links, policy(zones))


def perturb(sc: Scenario, rng: random.Random, removal: float, additions: int) -> Scenario:
    """Costs scaled by 0.6-1.6 each, some links removed, some new ones added."""
    links = [Link(x.src, x.dst, x.rtt_ms * rng.uniform(0.6, 1.6), x.loss)
             for x in sc.links if rng.random() >= removal]
    present = {(x.src, x.dst) for x in links}
    for _ in range(additions):
        a, b = rng.sample(sc.names, 2)
        if (a, b) not in present:
            present.add((a, b))
            links.append(Link(a, b, rng.uniform(1.0, 300.0)))
    return Scenario(sc.names, links, sc.policy)


@st.composite
def perturbed(draw) -> tuple[Scenario, Scenario]:
    sc = draw(scenarios())
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    removal = draw(st.sampled_from([0.0, 0.05, 0.2]))
    additions = draw(st.integers(0, 6))
    return sc, perturb(sc, rng, removal, additions)


# --- invariants, as checks shared by the properties ------------------------------------------


Routes = dict[tuple[str, str, str], Route]


def assert_residency(g: nx.DiGraph, pol: Policy, rs: RouteSet, routes: Routes | None = None,
                     ) -> None:
    """Every route (path and backup) stays inside its zone on existing links; a pair without
    a route has an explicit reason: outside the zone, no relay, or no path inside the zone."""
    routes = all_routes(rs) if routes is None else routes
    assert list(rs.zones) == list(pol.zones)
    regions = sorted(g.nodes)
    for name, zone in pol.zones.items():
        z = rs.zone(name)
        assert z.nodes == sorted(zone.regions & set(regions))
        assert z.members == zone.regions
        for src in regions:
            for dst in regions:
                r = routes.get((name, src, dst))
                reason = z.unreachable_reason(src, dst)
                if src not in zone.regions or dst not in zone.regions:
                    assert r is None and z.route(src, dst) is None, (
                        f"route {src}->{dst} exists outside zone {name}")
                    outside = src if src not in zone.regions else dst
                    assert reason == f"{outside} is not in zone {name}"
                elif src == dst:
                    assert r is None and reason is None
                elif r is None:
                    assert reason == f"no path from {src} to {dst} inside zone {name}"
                else:
                    assert reason is None
                    assert (r.zone, r.src, r.dst) == (name, src, dst)
                    assert r.path[0] == src and r.path[-1] == dst
                    assert len(set(r.path)) == len(r.path), f"path repeats a region: {r.path}"
                    assert set(r.path) <= zone.regions, f"{r.path} leaves zone {name}"
                    assert all(g.has_edge(a, b) for a, b in pairwise(r.path)), r.path
                    assert close(r.cost_ms, cost_of(g, r.path)), r
                    if r.backup_next_hop is not None:
                        assert r.backup_next_hop in zone.regions
                        assert g.has_edge(src, r.backup_next_hop)
        if ABSENT in zone.regions and z.nodes:
            assert z.unreachable_reason(ABSENT, z.nodes[0]) == (
                f"{ABSENT} has no relay in the topology")
    for region in regions:
        expected = [r for name in pol.zones_of(region) for r in rs.zone(name).rows(region)]
        assert rs.table(region) == expected


def assert_loop_free(rs: RouteSet) -> Routes:
    """From every source, following next hops reaches the destination without repeating a
    node, on links of the zone's cost matrix; every route's path is that walk. Returns the
    routes (built only once the arrays are known not to loop)."""
    walks = {}
    for name, z in rs.zones.items():
        for d in range(len(z.nodes)):
            for u in range(len(z.nodes)):
                if u == d or z.next_hop[u, d] < 0:
                    continue
                path = forward(z, u, d)
                assert all(math.isfinite(z.cost[a, b]) for a, b in pairwise(path))
                walks[name, z.nodes[u], z.nodes[d]] = tuple(names(z, path))
    routes = all_routes(rs)
    assert {key: r.path for key, r in routes.items()} == walks
    return routes


def assert_reachability(g: nx.DiGraph, pol: Policy, rs: RouteSet, optimal: bool,
                        routes: Routes | None = None) -> None:
    """A route exactly where networkx finds a path inside the zone; with `optimal`, its cost
    is the networkx shortest distance (otherwise never below it)."""
    routes = all_routes(rs) if routes is None else routes
    for name, zone in pol.zones.items():
        inside = zone_graph(g, zone.regions)
        best = distances(inside)
        z = rs.zone(name)
        for src in inside:
            for dst in inside:
                if src == dst:
                    continue
                r = routes.get((name, src, dst))
                i, j = z.index[src], z.index[dst]
                if dst not in best[src]:
                    assert r is None, f"{name}: route {src}->{dst} but networkx has no path"
                    assert np.isinf(z.dist[i, j])
                    continue
                assert r is not None, f"{name}: no route {src}->{dst} but networkx has a path"
                assert close(z.dist[i, j], best[src][dst])
                assert close(r.cost_ms, z.actual[i, j]), (r, z.actual[i, j])
                if optimal:
                    assert close(r.cost_ms, best[src][dst]), (r, best[src][dst])
                else:
                    assert r.cost_ms >= best[src][dst] - TOL


def assert_backups(g: nx.DiGraph, rs: RouteSet, exhaustive: bool,
                   routes: Routes | None = None) -> None:
    """Backups are neighbours other than the primary next hop whose forwarding never returns
    to the source (node-protecting ones avoid the primary next hop too). With `exhaustive`
    (no hysteresis, no slack), the choice is the brute-force one of `expected_backup`: in
    particular a missing backup means no neighbour is a loop-free alternate."""
    routes = all_routes(rs) if routes is None else routes
    for name, z in rs.zones.items():
        inside = zone_graph(g, z.nodes)
        best = distances(inside) if exhaustive else {}
        for u, src in enumerate(z.nodes):
            for d, dst in enumerate(z.nodes):
                p, b = int(z.next_hop[u, d]), int(z.backup[u, d])
                kind = BACKUP_KINDS[int(z.backup_kind[u, d])]
                if p < 0:
                    assert b < 0 and kind == "none", f"{name}: backup without a route"
                    continue
                r = routes[name, src, dst]
                if b >= 0:
                    where = f"{name}: {src}->{dst} primary {z.nodes[p]} backup {z.nodes[b]}"
                    assert b != p and b != u, where
                    assert g.has_edge(src, z.nodes[b]), where
                    detour = failover_path(z, u, d)
                    assert u not in detour[1:], f"{where}: back at the source {names(z, detour)}"
                    assert r.backup_next_hop == z.nodes[b] and r.backup_kind == kind
                    assert close(r.backup_cost_ms, cost_of(g, names(z, detour))), where
                    if kind == "node":
                        assert p != d and p not in detour, f"{where}: crosses the primary"
                    else:
                        assert kind == "link", where
                    continue
                assert kind == "none" and r.backup_next_hop is None
                assert r.backup_cost_ms is None
            if exhaustive:
                for d, dst in enumerate(z.nodes):
                    if z.next_hop[u, d] < 0:
                        continue
                    want = expected_backup(inside, best, src, dst, z.nodes[z.next_hop[u, d]])
                    r = routes[name, src, dst]
                    got = (r.backup_kind, r.backup_cost_ms)
                    assert got == ("none", None) if want is None else (
                        got[0] == want[0] and close(got[1], want[1])), (
                        f"{name}: {src}->{dst} via {r.next_hop}: backup {r.backup_next_hop} "
                        f"{got}, brute force {want}")


def expected_backup(inside: nx.DiGraph, best, src: str, dst: str, primary: str,
                    ) -> tuple[str, float] | None:
    """RFC 5286 by brute force, as the engine applies it: a neighbour v (not the primary
    next hop p) is a loop-free alternate when dist[v,d] < dist[v,u] + dist[u,d], node-
    protecting when also dist[v,d] < dist[v,p] + dist[p,d] (p != d), both by EPSILON. The
    cheapest node-protecting one wins, else the cheapest loop-free one, among u's
    BACKUP_CANDIDATES cheapest links first, then among all its links where those hold none;
    where that gives no node-protecting one, the direct link to d when it is one.
    Returns (kind, cost through the backup), or None."""

    def far(a: str, b: str) -> float:
        return best[a].get(b, math.inf)

    def kind(v: str) -> str | None:
        if v == primary or not far(v, dst) < far(v, src) + far(src, dst) - EPSILON:
            return None
        protects = primary != dst and far(v, dst) < far(v, primary) + far(primary, dst) - EPSILON
        return "node" if protects else "link"

    links = sorted(inside.successors(src), key=lambda v: (inside.edges[src, v]["cost"], v))
    found = None
    for group in (links[:engine.BACKUP_CANDIDATES], links):
        kinds = {v: kind(v) for v in group}
        for wanted, called in (({"node"}, "node"), ({"node", "link"}, "link")):
            vias = [inside.edges[src, v]["cost"] + far(v, dst)
                    for v in group if kinds[v] in wanted]
            if vias:
                found = called, min(vias)
                break
        if found:
            break
    if (found is None or found[0] == "link") and inside.has_edge(src, dst) \
            and kind(dst) == "node":
        return "node", inside.edges[src, dst]["cost"]
    return found


def assert_same_zone(got: ZoneRoutes, want: ZoneRoutes) -> None:
    assert got.nodes == want.nodes and got.members == want.members
    assert np.array_equal(got.cost, want.cost)
    assert np.allclose(got.dist, want.dist, rtol=0, atol=1e-9)
    assert np.allclose(got.actual, want.actual, rtol=0, atol=1e-9)
    for field in ("next_hop", "backup", "backup_kind"):
        a, b = getattr(got, field), getattr(want, field)
        bad = list(zip(*np.nonzero(a != b), strict=True))[:5]
        assert not bad, f"{got.zone}.{field} differs at " + ", ".join(
            f"({got.nodes[i]},{got.nodes[j]}): {a[i, j]} vs {b[i, j]}" for i, j in bad)


def assert_same_routes(a: RouteSet, b: RouteSet) -> None:
    assert list(a.zones) == list(b.zones)
    for name in a.zones:
        za, zb = a.zone(name), b.zone(name)
        assert za.nodes == zb.nodes
        for field in ("cost", "dist", "actual", "next_hop", "backup", "backup_kind"):
            assert np.array_equal(getattr(za, field), getattr(zb, field)), (name, field)


# --- properties: one computation -------------------------------------------------------------


@PROPERTY
@given(scenarios())
@bounded
def test_routes_and_backups_stay_inside_their_zone(sc):
    g = sc.graph
    assert_residency(g, sc.policy, engine.compute(g, sc.policy))


@PROPERTY
@given(scenarios())
@bounded
def test_forwarding_is_loop_free_in_every_zone(sc):
    assert_loop_free(engine.compute(sc.graph, sc.policy))


@PROPERTY
@given(scenarios())
@bounded
def test_routes_are_shortest_paths_inside_the_zone(sc):
    g = sc.graph
    assert_reachability(g, sc.policy, engine.compute(g, sc.policy), optimal=True)


@PROPERTY
@given(scenarios())
@bounded
def test_backups_are_loop_free_alternates_and_missing_only_when_none_exists(sc):
    g = sc.graph
    assert_backups(g, engine.compute(g, sc.policy), exhaustive=True)


@settings(max_examples=100, deadline=None)
@given(perturbed())
@bounded
def test_hysteresis_keeps_every_invariant_after_a_change(spec):
    before, after = spec
    g1, g2 = before.graph, after.graph
    pol = before.policy
    previous = engine.compute(g1, pol, None, STICKY)
    rs = engine.compute(g2, pol, previous, STICKY)
    # and back again, from a previous route set whose next hops and backups were kept
    back = engine.compute(g1, pol, rs, STICKY)
    for g, result in ((g2, rs), (g1, back)):
        routes = assert_loop_free(result)
        assert_residency(g, pol, result, routes)
        assert_reachability(g, pol, result, optimal=False, routes=routes)
        assert_backups(g, result, exhaustive=False, routes=routes)


@settings(max_examples=100, deadline=None)
@given(perturbed())
@bounded
def test_same_inputs_give_identical_arrays(spec):
    before, after = spec
    pol = before.policy

    def reversed_graph(sc: Scenario) -> nx.DiGraph:
        return build_graph(list(reversed(sc.names)), list(reversed(sc.links)))

    assert_same_routes(engine.compute(before.graph, pol), engine.compute(reversed_graph(before),
                                                                         pol))
    a = engine.compute(after.graph, pol, engine.compute(before.graph, pol), STICKY)
    b = engine.compute(reversed_graph(after), pol, engine.compute(reversed_graph(before), pol),
                       STICKY)
    assert_same_routes(a, b)
    assert all_routes(a) == all_routes(b)


# --- properties: incremental link updates ----------------------------------------------------


CHANGES = ("increase", "decrease", "remove", "add")


def change_link(sc: Scenario, kind: str, rng: random.Random) -> tuple[Scenario, str, str]:
    """One link changed: cost up or down, removed, or a link that did not exist added."""
    links = list(sc.links)
    present = {(x.src, x.dst) for x in links}
    missing = [(a, b) for a in sc.names for b in sc.names if a != b and (a, b) not in present]
    if kind == "add" and not missing or kind != "add" and not links:
        kind = "add" if missing else "decrease"
    if kind == "add":
        a, b = rng.choice(missing)
        links.append(Link(a, b, rng.uniform(1.0, 300.0), rng.choice([0.0, 0.01])))
        return Scenario(sc.names, links, sc.policy), a, b
    i = rng.randrange(len(links))
    x = links[i]
    if kind == "remove":
        del links[i]
    else:
        factor = rng.uniform(1.05, 4.0) if kind == "increase" else rng.uniform(0.05, 0.95)
        links[i] = Link(x.src, x.dst, x.rtt_ms * factor, x.loss)
    return Scenario(sc.names, links, sc.policy), x.src, x.dst


@PROPERTY
@given(scenarios(rtts="float"), st.lists(st.sampled_from(CHANGES), min_size=1, max_size=3),
       st.integers(0, 2**32 - 1))
@bounded
def test_update_link_equals_a_full_recompute(sc, kinds, seed):
    # float RTTs: with exact ties both answers would be right and could differ
    rng = random.Random(seed)
    rs = engine.compute(sc.graph, sc.policy)
    for kind in kinds:  # chained: each update's result is the next one's previous
        sc, a, b = change_link(sc, kind, rng)
        g = sc.graph
        updated = engine.update_link(rs, g, a, b)
        full = engine.compute(g, sc.policy)
        for name, zone in sc.policy.zones.items():
            if a not in zone.regions or b not in zone.regions:
                assert updated.zones[name] is rs.zones[name]
            assert_same_zone(updated.zone(name), full.zone(name))
        rs = updated


@settings(max_examples=100, deadline=None)
@given(scenarios(rtts="integer"), st.lists(st.sampled_from(CHANGES), min_size=1, max_size=3),
       st.integers(0, 2**32 - 1))
@bounded
def test_update_link_with_ties_is_as_good_as_a_full_recompute(sc, kinds, seed):
    # integer RTTs tie often: the next hops may be other equal-cost ones, but the distances
    # are the same and every invariant and backup rule holds
    rng = random.Random(seed)
    rs = engine.compute(sc.graph, sc.policy)
    for kind in kinds:
        sc, a, b = change_link(sc, kind, rng)
        g = sc.graph
        rs = engine.update_link(rs, g, a, b)
        full = engine.compute(g, sc.policy)
        for name in sc.policy.zones:
            assert np.allclose(rs.zone(name).dist, full.zone(name).dist, rtol=0, atol=1e-9)
        routes = assert_loop_free(rs)
        assert_residency(g, sc.policy, rs, routes)
        assert_reachability(g, sc.policy, rs, optimal=True, routes=routes)
        assert_backups(g, rs, exhaustive=True, routes=routes)


# --- properties: failover plans --------------------------------------------------------------


@PROPERTY
@given(scenarios(), st.data())
@bounded
def test_failover_plan_avoids_the_failure_and_matches_networkx(sc, data):
    # with the controller's hysteresis, replacements may be kept off the shortest paths
    sticky = data.draw(st.booleans(), label="hysteresis")
    g, pol = sc.graph, sc.policy
    current = engine.compute(g, pol)
    edges = sorted(g.edges)
    damaged = g.copy()
    if edges and data.draw(st.booleans(), label="link failure"):
        a, b = data.draw(st.sampled_from(edges), label="link")
        region, failed = None, {(a, b), (b, a)}
        plan = engine.plan_failover(g, pol, current, link=(a, b),
                                    hysteresis=STICKY if sticky else OFF)
        damaged.remove_edges_from(failed)
        assert plan.failure == f"link {a}-{b}"
    else:
        region = data.draw(st.sampled_from(sc.names), label="region")
        failed = set()
        plan = engine.plan_failover(g, pol, current, region=region,
                                    hysteresis=STICKY if sticky else OFF)
        damaged.remove_node(region)
        assert plan.failure == f"region {region}"
    assert isinstance(plan, FailoverPlan)

    def hit(path) -> bool:
        return region in path or any(e in failed for e in pairwise(path))

    changes = {(c.zone, c.src, c.dst): c for c in plan.changes}
    assert len(changes) == len(plan.changes), "a pair is listed twice"
    assert plan.unreachable == [c for c in plan.changes if c.new_path is None]
    zones = {name: zone_graph(damaged, zone.regions) for name, zone in pol.zones.items()}
    total = lost = 0
    for (name, src, dst), r in all_routes(current).items():
        if region in (src, dst):
            lost += 1
            assert (name, src, dst) not in changes
            continue
        total += 1
        inside = zones[name]
        c = changes.pop((name, src, dst), None)
        if not hit(r.path):
            assert c is None, f"untouched route {r.path} listed as a change: {c}"
            continue
        assert c is not None, f"route {r.path} crosses the failure but is not in the plan"
        assert (c.old_path, c.old_cost_ms) == (r.path, r.cost_ms)
        if not nx.has_path(inside, src, dst):
            assert c.new_path is None and c.new_cost_ms is None
            assert c.reason == f"no path from {src} to {dst} inside zone {name}"
            continue
        assert c.new_path is not None, f"{name}: {src}->{dst} unreachable but networkx: path"
        assert not hit(c.new_path), f"new path {c.new_path} crosses the failure"
        assert set(c.new_path) <= pol.zones[name].regions
        assert all(inside.has_edge(x, y) for x, y in pairwise(c.new_path))
        assert close(c.new_cost_ms, cost_of(inside, c.new_path))
        best = nx.dijkstra_path_length(inside, src, dst, weight="cost")
        assert c.new_cost_ms >= best - TOL if sticky else close(c.new_cost_ms, best)
        assert c.to_dict()["reachable"] is True
    assert not changes, f"changes for pairs that had no route: {list(changes)}"
    assert (plan.routes_total, plan.lost_endpoints) == (total, lost)


def test_failover_plan_needs_a_region_or_a_link():
    g = graph({"AB": 10})
    pol = policy({"global": "AB"})
    with pytest.raises(ValueError, match="region or a link"):
        engine.plan_failover(g, pol, engine.compute(g, pol))


# --- hand-made cases -------------------------------------------------------------------------

TRIANGLE = {"AB": 200, "AC": 10, "CB": 10}


def test_slow_direct_link_is_routed_around():
    rs = engine.compute(graph(TRIANGLE), policy({"global": "ABC"}))
    r = route(rs, "global", "A", "B")
    assert r.path == ("A", "C", "B")
    assert r.cost_ms == pytest.approx(2 * (10 / 2 + 0.5))


def test_zone_without_the_relay_region_takes_the_direct_link():
    rs = engine.compute(graph(TRIANGLE), policy({"global": "ABC", "ab": "AB"}))
    assert route(rs, "ab", "A", "B").path == ("A", "B")
    assert route(rs, "ab", "A", "B").cost_ms == pytest.approx(200 / 2 + 0.5)
    assert route(rs, "global", "A", "B").path == ("A", "C", "B")
    assert rs.route("ab", "A", "C") is None
    assert rs.zone("ab").unreachable_reason("A", "C") == "C is not in zone ab"


def test_zone_split_in_two_is_an_explicit_error_naming_the_zone():
    # A and B are linked only through C, which zone eu excludes: no silent detour
    rs = engine.compute(graph({"AC": 10, "CB": 10, "AD": 5}), policy({"global": "ABCD",
                                                                      "eu": "ABD"}))
    assert route(rs, "global", "A", "B").path == ("A", "C", "B")
    assert rs.route("eu", "A", "B") is None
    assert rs.route("eu", "A", "D") is not None
    assert rs.zone("eu").unreachable_reason("A", "B") == "no path from A to B inside zone eu"
    assert rs.zone("eu").unreachable_reason("A", "D") is None


def test_zone_region_without_relay_is_explained():
    rs = engine.compute(graph({"AB": 10}), policy({"global": "AB", "eu": "ABX"}))
    assert rs.zone("eu").nodes == ["A", "B"]
    assert rs.zone("eu").unreachable_reason("X", "A") == "X has no relay in the topology"
    assert rs.route("eu", "X", "A") is None


def hysteresis_case(via_rtt: float) -> tuple[Route, Route]:
    """A->B direct (200 ms RTT, cost 100.5) first; then A->C->B becomes cheaper: each of its
    two links costs via_rtt / 2 + 0.5."""
    pol = policy({"global": "ABC"})
    before = engine.compute(graph({"AB": 200, "AC": 400, "CB": 400}), pol, None, STICKY)
    after = engine.compute(graph({"AB": 200, "AC": via_rtt, "CB": via_rtt}), pol, before,
                           STICKY)
    fresh = engine.compute(graph({"AB": 200, "AC": via_rtt, "CB": via_rtt}), pol)
    assert route(before, "global", "A", "B").path == ("A", "B")
    assert route(fresh, "global", "A", "B").path == ("A", "C", "B")  # the better path
    return route(after, "global", "A", "B"), route(fresh, "global", "A", "B")


def test_hysteresis_keeps_a_path_when_the_new_one_is_only_2_percent_better():
    kept, best = hysteresis_case(97.5)  # 2 * 49.25 = 98.5 vs 100.5: 2 ms, 2% better
    assert best.cost_ms == pytest.approx(98.5)
    assert kept.path == ("A", "B")
    assert kept.cost_ms == pytest.approx(100.5)


def test_hysteresis_moves_when_the_new_path_is_30_percent_and_20_ms_better():
    moved, best = hysteresis_case(69.0)  # 2 * 35 = 70 vs 100.5: 30.5 ms, 30% better
    assert best.cost_ms == pytest.approx(70.0)
    assert moved.path == ("A", "C", "B")


def test_hysteresis_keeps_a_next_hop_off_the_shortest_path_with_valid_backups():
    # A->D via B first; then via C is 2% better: A keeps B although the tree says C
    pol = policy({"global": "ABCD"})
    g1 = graph({"AB": 100, "BD": 100, "AC": 110, "CD": 110, "BC": 300})
    g2 = graph({"AB": 100, "BD": 100, "AC": 98, "CD": 98, "BC": 300})
    rs = engine.compute(g2, pol, engine.compute(g1, pol, None, STICKY), STICKY)
    z = rs.zone("global")
    a, d = z.index["A"], z.index["D"]
    assert route(rs, "global", "A", "D").path == ("A", "B", "D")
    assert z.actual[a, d] > z.dist[a, d] + 1
    assert route(rs, "global", "A", "D").backup_next_hop == "C"
    assert_loop_free(rs)
    assert_backups(g2, rs, exhaustive=False)


def backup_case(e_rtt: float) -> Route:
    """A->D runs via B; C and E are node-protecting alternates (via C costs 41 ms, via E
    2 * (e_rtt / 2 + 0.5)). C is the backup first, then E's links get faster."""
    pol = policy({"global": "ABCDE"})
    base = {"AB": 10, "BD": 10, "AC": 40, "CD": 40}
    before = engine.compute(graph({**base, "AE": 42, "ED": 42}), pol, None, STICKY)
    assert route(before, "global", "A", "D").backup_next_hop == "C"
    after = engine.compute(graph({**base, "AE": e_rtt, "ED": e_rtt}), pol, before, STICKY)
    r = route(after, "global", "A", "D")
    assert r.path == ("A", "B", "D") and r.backup_kind == "node"
    return r


def test_hysteresis_keeps_a_backup_while_a_new_one_is_barely_cheaper():
    assert backup_case(39.5).backup_next_hop == "C"  # via E 40.5 ms: 0.5 ms better


def test_hysteresis_moves_a_backup_when_a_new_one_is_clearly_cheaper():
    r = backup_case(20)  # via E 21 ms: 20 ms and 49% better
    assert r.backup_next_hop == "E"
    assert r.backup_cost_ms == pytest.approx(21)


SQUARE = {"AB": 10, "BC": 10, "CD": 10, "DA": 14}  # A-B-C-D-A, D-A the slowest side


def test_backup_in_a_square_protects_the_next_hop_region():
    rs = engine.compute(graph(SQUARE), policy({"global": "ABCD"}))
    r = route(rs, "global", "A", "C")
    assert r.path == ("A", "B", "C")
    assert (r.backup_next_hop, r.backup_kind) == ("D", "node")  # D-C never crosses B
    assert r.backup_cost_ms == pytest.approx(7.5 + 5.5)
    # towards a neighbour, a backup can only protect the link
    r = route(rs, "global", "A", "B")
    assert r.path == ("A", "B")
    assert (r.backup_next_hop, r.backup_kind) == ("D", "link")
    assert r.backup_cost_ms == pytest.approx(7.5 + 5.5 + 5.5)


def test_backup_is_link_protecting_when_every_path_crosses_the_next_hop():
    # A reaches C only through B; D is loop-free towards C but its path crosses B
    rs = engine.compute(graph({"AB": 10, "BC": 10, "AD": 10, "DB": 10}),
                        policy({"global": "ABCD"}))
    r = route(rs, "global", "A", "C")
    assert r.path == ("A", "B", "C")
    assert (r.backup_next_hop, r.backup_kind) == ("D", "link")


def test_no_backup_when_the_only_neighbour_would_loop_back():
    # a chain A-B-C: B's only other neighbour, A, reaches C through B
    rs = engine.compute(graph({"AB": 10, "BC": 10}), policy({"global": "ABC"}))
    r = route(rs, "global", "B", "C")
    assert r.path == ("B", "C")
    assert (r.backup_next_hop, r.backup_kind, r.backup_cost_ms) == (None, "none", None)


def test_backup_never_leaves_the_zone():
    # outside zone eu, X would be a perfect node-protecting alternate for A->C
    g = graph({"AB": 10, "BC": 10, "AX": 1, "XC": 1, "AD": 30, "DC": 30})
    rs = engine.compute(g, policy({"global": "ABCDX", "eu": "ABCD"}))
    assert route(rs, "global", "A", "C").path == ("A", "X", "C")
    r = route(rs, "eu", "A", "C")
    assert r.path == ("A", "B", "C")
    assert (r.backup_next_hop, r.backup_kind) == ("D", "node")


def test_table_holds_the_rows_of_every_zone_the_region_belongs_to():
    g = graph({"AB": 10, "BC": 10, "CD": 10})
    rs = engine.compute(g, policy({"global": "ABCD", "eu": "AB", "us": "CD"}))
    rows = rs.table("A")
    assert [(r.zone, r.src, r.dst) for r in rows] == [
        ("eu", "A", "B"), ("global", "A", "B"), ("global", "A", "C"), ("global", "A", "D")]
    assert {r.zone for r in rs.table("C")} == {"global", "us"}
    assert all(r.src == "C" for r in rs.table("C"))


def test_route_to_itself_is_none():
    rs = engine.compute(graph({"AB": 10}), policy({"global": "AB"}))
    z = rs.zone("global")
    assert z.route("A", "A") is None
    assert z.unreachable_reason("A", "A") is None
    assert z.route("A", "B") is not None


def test_empty_and_single_region_zones_have_no_routes_and_explain_why():
    pol = policy({"global": "AB", "none": "", "solo": "A"})
    g = graph({"AB": 10})
    rs = engine.compute(g, pol)
    assert rs.zone("none").nodes == [] and rs.zone("solo").nodes == ["A"]
    assert rs.route("solo", "A", "B") is None
    assert rs.zone("none").unreachable_reason("A", "B") == "A is not in zone none"
    assert [r.zone for r in rs.table("A")] == ["global"]
    plan = engine.plan_failover(g, pol, rs, region="A")
    assert (plan.routes_total, plan.lost_endpoints, plan.changes) == (0, 2, [])


def test_unknown_zone_names_the_known_ones():
    rs = engine.compute(graph({"AB": 10}), policy({"global": "AB", "eu": "A"}))
    with pytest.raises(KeyError, match="unknown zone 'cn'.*eu, global"):
        rs.zone("cn")


def test_update_link_leaves_zones_without_the_link_untouched():
    pol = policy({"global": "ABCD", "eu": "AB", "us": "CD"})
    g = graph(SQUARE)
    rs = engine.compute(g, pol)
    g2 = graph({"AB": 10, "CD": 10, "DA": 14}, one_way={"BC": 100, "CB": 10})
    updated = engine.update_link(rs, g2, "B", "C")
    assert updated.zones["eu"] is rs.zones["eu"] and updated.zones["us"] is rs.zones["us"]
    assert route(updated, "global", "A", "C").path == ("A", "D", "C")
    # only B->C changed here: C->B still costs 5.5
    assert route(updated, "global", "C", "B").path == ("C", "B")


def test_update_link_rechecks_node_protection_behind_a_changed_distance():
    # X->D runs via P; W is X's alternate. W->D (direct) is shorter than W->P->D by less
    # than EPSILON, so W does not count as node-protecting. Making W->P dearer changes only
    # the distances towards P, yet X's backup towards D becomes node-protecting.
    pol = policy({"global": "DPWX"})
    near_tie = {"XP": 1, "PD": 1, "XW": 1, "WD": 3 - EPSILON / 2}
    rs = engine.compute(cost_graph({**near_tie, "WP": 2}), pol)
    assert route(rs, "global", "X", "D").backup_kind == "link"
    g = cost_graph({**near_tie, "WP": 5})
    updated = engine.update_link(rs, g, "W", "P")
    assert_same_zone(updated.zone("global"), engine.compute(g, pol).zone("global"))
    r = route(updated, "global", "X", "D")
    assert (r.path, r.backup_next_hop, r.backup_kind) == (("X", "P", "D"), "W", "node")


def test_update_link_to_a_region_new_to_the_topology_recomputes_its_zones():
    pol = policy({"global": "ABN"})
    rs = engine.compute(graph({"AB": 10}), pol)
    g = graph({"AB": 10}, one_way={"AN": 10})  # N joins with its first link
    updated = engine.update_link(rs, g, "A", "N")
    assert_same_zone(updated.zone("global"), engine.compute(g, pol).zone("global"))
    assert route(updated, "global", "A", "N").path == ("A", "N")


def test_update_link_after_hysteresis_equals_a_full_recompute():
    # W is a loop-free alternate for X->D by 0.5 ms: not enough for a new backup under the
    # controller's 1 ms slack, enough without hysteresis. E-F is unrelated to X->D.
    pol = policy({"global": "DEFPWX"})
    costs = {"XP": 1, "PD": 1, "XW": 1, "WX": 1, "WD": 2.5, "EF": 1, "FE": 1}
    rs = engine.compute(cost_graph(costs), pol, None, Hysteresis())
    assert route(rs, "global", "X", "D").backup_next_hop is None
    g = cost_graph({**costs, "EF": 2})
    updated = engine.update_link(rs, g, "E", "F")
    assert route(engine.compute(g, pol), "global", "X", "D").backup_next_hop == "W"
    assert_same_zone(updated.zone("global"), engine.compute(g, pol).zone("global"))


def test_failover_plan_for_a_region():
    pol = policy({"global": "ABCD"})
    g = graph(SQUARE)
    rs = engine.compute(g, pol)
    plan = engine.plan_failover(g, pol, rs, region="B")
    changes = {(c.src, c.dst): c for c in plan.changes}
    assert changes[("A", "C")].new_path == ("A", "D", "C")
    assert changes[("A", "C")].to_dict()["delta_ms"] == pytest.approx(13 - 11)
    assert plan.lost_endpoints == 6  # B's routes to and from A, C, D
    assert plan.routes_total == 6
    assert plan.unreachable == []


def test_failover_plan_for_a_link_reports_unreachable_pairs_with_a_reason():
    pol = policy({"global": "ABC", "eu": "AB"})
    g = graph({"AB": 10, "BC": 10, "AC": 50})
    rs = engine.compute(g, pol)
    plan = engine.plan_failover(g, pol, rs, link=("A", "B"))
    by_pair = {(c.zone, c.src, c.dst): c for c in plan.changes}
    assert by_pair[("global", "A", "B")].new_path == ("A", "C", "B")
    lost = by_pair[("eu", "A", "B")]
    assert lost.new_path is None and lost.reason == "no path from A to B inside zone eu"
    assert lost.to_dict()["reachable"] is False
    assert plan.lost_endpoints == 0
    # a plan for one zone only
    only = engine.plan_failover(g, pol, rs, link=("A", "B"), zones=["eu"])
    assert {c.zone for c in only.changes} == {"eu"}
