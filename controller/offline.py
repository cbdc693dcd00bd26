"""Offline planning: the route set for a catalogue, a policy and a latency matrix, without
running a mesh (what-if planning, and CI checks of policy changes); and the simulation of
partial-mesh measurement, to show what routing on a partial graph costs against the full
mesh."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import networkx as nx
import numpy as np

from controller import engine
from controller.routing import CostModel, Link, build_graph
from skymesh.geo import nearest_regions
from skymesh.linkstate import LINK
from skymesh.policy import Policy
from skymesh.wan import WanModel


def wan_graph(regions: Mapping, model: WanModel, cost: CostModel | None = None) -> nx.DiGraph:
    """The full mesh as the controller would see it: each WAN link becomes a graph edge with
    the RTT the relays would measure on it."""
    links = [Link(src, dst, link.delay_ms + model[(dst, src)].delay_ms
                  if (dst, src) in model else 2 * link.delay_ms, link.loss)
             for (src, dst), link in model.items()]
    return build_graph(regions, links, cost or CostModel())


def plan(regions: Mapping, policy: Policy, model: WanModel,
         cost: CostModel | None = None) -> tuple[engine.RouteSet, float]:
    """(route set, the engine's own time in ms) on the full mesh of the model's links."""
    graph = wan_graph(regions, model, cost)
    start = time.perf_counter()
    routes = engine.compute(graph, policy)
    return routes, (time.perf_counter() - start) * 1000


def routes_json(routes: engine.RouteSet) -> list[dict]:
    """Every ordered pair of every zone: the route, or why there is none."""
    out = []
    for name, zone in routes.zones.items():
        members = sorted(zone.members)
        for src in members:
            for dst in members:
                if src == dst:
                    continue
                r = zone.route(src, dst)
                if r is None:
                    out.append({"zone": name, "src": src, "dst": dst, "path": [],
                                "cost_ms": None, "backup_next_hop": None,
                                "backup_kind": "none", "reachable": False,
                                "reason": zone.unreachable_reason(src, dst)})
                else:
                    out.append({"zone": name, "src": src, "dst": dst, "path": list(r.path),
                                "cost_ms": round(r.cost_ms, 3),
                                "backup_next_hop": r.backup_next_hop,
                                "backup_kind": r.backup_kind, "reachable": True})
    return out


def summary(rows: list[dict]) -> list[dict]:
    """Per zone: pairs, reachable, indirect, backups by kind."""
    zones: dict[str, dict] = {}
    for r in rows:
        z = zones.setdefault(r["zone"], {"zone": r["zone"], "pairs": 0, "reachable": 0,
                                         "indirect": 0, "node_backups": 0,
                                         "link_backups": 0, "no_backup": 0})
        z["pairs"] += 1
        if r["reachable"]:
            z["reachable"] += 1
            z["indirect"] += len(r["path"]) > 2
            z[{"node": "node_backups", "link": "link_backups"}.get(r["backup_kind"],
                                                                   "no_backup")] += 1
    return list(zones.values())


# -- partial-mesh measurement --------------------------------------------------------------
#
# Beyond a few dozen regions a relay cannot probe every peer every second. It measures
# continuously (a) its `nearest` regions by great-circle distance and (b) the next hops and
# backups of its current routes; (c) every other peer gets a short burst once per cycle of
# `sample_every_s`, a rotating 1/`slots` slice of them per slot. The controller's graph holds
# the links measured in the last `keep_slots` slots (continuous ones always are). Routes on
# that graph pull the links they use into continuous measurement, so a good detour found by a
# sample is kept. The simulation runs that process on a latency matrix, with no measurement
# noise and no hysteresis (every slot is a fresh `engine.compute`, so what is measured is the
# graph's coverage, not the controller's damping of route changes).


@dataclass(frozen=True)
class Accuracy:
    """Chosen paths against the full-mesh optimum, over the ordered pairs of every zone that
    the full mesh connects."""

    pairs: int
    within_1pct: float
    within_5pct: float
    within_10pct: float
    worst_ratio: float  # over the pairs reached
    worst_pair: tuple[str, str, str] | None  # (zone, src, dst)
    unreachable: int  # pairs the full mesh connects and the partial graph does not
    unreachable_full: int  # pairs not even the full mesh connects (left out of `pairs`)


AIM_RATIO = 1.05  # a path within 5% of the optimum ...
AIM_SHARE = 0.95  # ... for at least 95% of pairs


@dataclass(frozen=True)
class Slot:
    """One slot of the simulation: the routes computed at its end against the optimum."""

    t: int  # slots since the start
    within_1pct: float
    within_5pct: float
    within_10pct: float
    worst_ratio: float
    unreachable: int
    links_graph: int  # links in the controller's graph
    links_continuous: int  # links measured continuously (near, and used by routes)
    samples: int  # links sampled in this slot (bursts)


@dataclass(frozen=True)
class PartialMeshResult:
    regions: int
    nearest: int
    slots: int
    keep_slots: int
    sample_every_s: float
    probe_interval_s: float
    sample_probes: int
    cycles: int  # cycles of `sample_every_s` run
    converged: bool  # the last cycle changed no continuously measured link
    accuracy: Accuracy  # the routes at the end of the last slot
    history: tuple[Slot, ...]
    links_full: int  # directed links of the full mesh

    @property
    def last_cycle(self) -> tuple[Slot, ...]:
        return self.history[-self.slots:]

    @property
    def worst_slot_within_5pct(self) -> float:
        """Over the slots of the last cycle: what "stays within" is judged on."""
        return min(x.within_5pct for x in self.last_cycle)

    @property
    def worst_slot_unreachable(self) -> int:
        return max(x.unreachable for x in self.last_cycle)

    @property
    def aim_met_after_s(self) -> float | None:
        """From a cold start (near links and the first slice of samples), the time after which
        every slot met the aim (None: the last slot did not)."""
        t = len(self.history)
        while t > 0 and self.history[t - 1].within_5pct >= AIM_SHARE:
            t -= 1
        if t == len(self.history):
            return None
        return (t + 1) * self.sample_every_s / self.slots

    @property
    def links_graph(self) -> float:
        return sum(x.links_graph for x in self.last_cycle) / self.slots

    @property
    def links_continuous(self) -> float:
        return sum(x.links_continuous for x in self.last_cycle) / self.slots

    @property
    def probes_per_relay_s(self) -> float:
        """Over the last cycle: a probe per `probe_interval_s` on each continuous link, a
        burst of `sample_probes` per sample."""
        n = max(self.regions, 1)
        continuous = self.links_continuous / n / self.probe_interval_s
        bursts = sum(x.samples for x in self.last_cycle) / n
        return continuous + bursts * self.sample_probes / self.sample_every_s

    @property
    def probes_per_relay_s_full(self) -> float:
        return max(self.regions - 1, 0) / self.probe_interval_s

    def to_dict(self) -> dict:
        out = asdict(self)
        out["accuracy"]["worst_pair"] = (list(self.accuracy.worst_pair)
                                         if self.accuracy.worst_pair else None)
        out["history"] = [asdict(x) for x in self.history]
        for name in ("worst_slot_within_5pct", "worst_slot_unreachable", "aim_met_after_s",
                     "links_graph", "links_continuous", "probes_per_relay_s",
                     "probes_per_relay_s_full"):
            out[name] = getattr(self, name)
        return out


def path_costs(next_hop: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """cost_of[u, d]: the sum of `cost` over the links of the path the next hops give from u
    to d (0 on the diagonal, inf where there is no next hop or a link is missing from
    `cost`). The walk does not trust any distance the route set carries."""
    n = len(next_hop)
    cols = np.broadcast_to(np.arange(n), (n, n))
    at = np.broadcast_to(np.arange(n)[:, None], (n, n)).copy()
    total = np.zeros((n, n))
    active = next_hop >= 0
    np.fill_diagonal(active, False)
    total[~active] = np.inf
    np.fill_diagonal(total, 0.0)
    for _ in range(n):
        if not active.any():
            return total
        hop = next_hop[at, cols]
        lost = active & (hop < 0)
        total[lost] = np.inf
        active &= ~lost
        safe = np.maximum(hop, 0)
        total[active] += cost[at, safe][active]
        at = np.where(active, safe, at)
        active &= at != cols
    raise ValueError("next hops loop")  # a shortest-path tree never does


def compare(full: engine.RouteSet, partial: engine.RouteSet) -> Accuracy:
    """The partial route set's paths, each costed link by link on the full mesh's costs (the
    true matrix), against the full route set's shortest distances (the optimum)."""
    pairs = unreachable = unreachable_full = 0
    w1 = w5 = w10 = 0
    worst, worst_pair = 1.0, None
    for name, best in full.zones.items():
        chosen = partial.zones[name]
        if chosen.nodes != best.nodes:
            raise ValueError(f"zone {name}: the two route sets cover different regions")
        n = len(best.nodes)
        if n < 2:
            continue
        opt = best.dist
        off_diagonal = ~np.eye(n, dtype=bool)
        connected = off_diagonal & np.isfinite(opt)
        unreachable_full += int((off_diagonal & ~connected).sum())
        got = path_costs(chosen.next_hop, best.cost)
        reached = connected & np.isfinite(got)
        unreachable += int((connected & ~reached).sum())
        pairs += int(connected.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(reached, got / np.where(connected, opt, 1.0), np.inf)
        # within x%: to 1e-9 of the bound, so that a path equal to the optimum counts
        w1 += int((ratio <= 1.01 + 1e-9).sum())
        w5 += int((ratio <= AIM_RATIO + 1e-9).sum())
        w10 += int((ratio <= 1.10 + 1e-9).sum())
        if reached.any():
            r = np.where(reached, ratio, -np.inf)
            u, d = np.unravel_index(int(np.argmax(r)), r.shape)
            if worst_pair is None or r[u, d] > worst:
                worst, worst_pair = float(r[u, d]), (name, best.nodes[u], best.nodes[d])
    share = (lambda k: k / pairs) if pairs else (lambda k: 1.0)
    return Accuracy(pairs, share(w1), share(w5), share(w10), worst, worst_pair, unreachable,
                    unreachable_full)


def used_links(routes: engine.RouteSet, index: Mapping[str, int], n: int) -> np.ndarray:
    """used[u, v]: some route of some zone has v as u's next hop or backup."""
    used = np.zeros((n, n), dtype=bool)
    for z in routes.zones.values():
        glob = np.array([index[x] for x in z.nodes], dtype=np.intp)
        for hops in (z.next_hop, z.backup):
            u, d = np.nonzero(hops >= 0)
            used[glob[u], glob[hops[u, d]]] = True
    return used


def sample_slots(near: np.ndarray, slots: int, seed: int = 0) -> np.ndarray:
    """slot[u, v] in 0..slots-1: when u samples v; -1 for u itself and its near peers. Each
    relay's other peers are shuffled and dealt round the slots, so every slot holds a 1/slots
    slice of them, spread over the map rather than in id order."""
    n = len(near)
    rng = np.random.default_rng(seed)
    slot = np.full((n, n), -1, dtype=np.intp)
    for u in range(n):
        others = np.flatnonzero(~near[u])
        others = others[others != u]
        slot[u, rng.permutation(others)] = np.arange(len(others)) % slots
    return slot


def partial_mesh(regions: Mapping, policy: Policy, model: WanModel,
                 nearest: int = LINK.nearest, slots: int = 12, rounds: int = 3,
                 keep_slots: int = 1, sample_every_s: float = LINK.sample_every_s,
                 probe_interval_s: float = LINK.probe_interval_s, sample_probes: int = 5,
                 cost: CostModel | None = None, seed: int = 0) -> PartialMeshResult:
    """Simulate partial-mesh measurement (see above) for `rounds` cycles of `slots` slots,
    fewer once a whole cycle left the continuously measured links unchanged (the schedule
    repeats, so nothing would change again). The measured RTTs are the matrix's, so the
    graph's links carry their true costs; the comparison still costs every chosen path on
    the full mesh. `sample_every_s`, the probe interval and the burst size only scale the
    probe rates: on a static matrix accuracy depends on `nearest`, `slots` and
    `keep_slots`."""
    if nearest < 0 or slots < 1 or rounds < 1 or keep_slots < 0:
        raise ValueError("nearest and keep_slots must be >= 0, slots and rounds >= 1")
    full_graph = wan_graph(regions, model, cost)
    nodes = sorted(full_graph.nodes)
    index = {x: i for i, x in enumerate(nodes)}
    n = len(nodes)
    true_cost = engine.cost_matrix(full_graph, index)
    exists = np.isfinite(true_cost)
    near = np.zeros((n, n), dtype=bool)
    for src, peers in nearest_regions({x: regions[x] for x in nodes}, nearest).items():
        near[index[src], [index[p] for p in peers]] = True
    slot = sample_slots(near, slots, seed)
    best = engine.compute(full_graph, policy)

    last = np.full((n, n), -np.inf)  # the slot in which a link was last measured
    used = np.zeros((n, n), dtype=bool)
    history: list[Slot] = []
    converged = False
    for cycle in range(rounds):
        changed = False
        for s in range(slots):
            t = cycle * slots + s
            continuous = near | used
            sample = (slot == s) & ~continuous  # a continuously measured peer needs none
            last[continuous | sample] = t
            in_graph = exists & (t - last <= keep_slots)
            routes = engine.compute(_graph(nodes, true_cost, in_graph), policy)
            now_used = used_links(routes, index, n)
            changed |= bool((now_used != used).any())
            used = now_used
            acc = compare(best, routes)
            history.append(Slot(t, acc.within_1pct, acc.within_5pct, acc.within_10pct,
                                acc.worst_ratio, acc.unreachable, int(in_graph.sum()),
                                int(continuous.sum()), int(sample.sum())))
        if cycle > 0 and not changed:
            converged = True
            break
    return PartialMeshResult(
        regions=n, nearest=nearest, slots=slots, keep_slots=keep_slots,
        sample_every_s=sample_every_s, probe_interval_s=probe_interval_s,
        sample_probes=sample_probes, cycles=len(history) // slots, converged=converged,
        accuracy=acc, history=tuple(history),
        links_full=int(exists.sum()))


def _graph(nodes: list[str], cost: np.ndarray, keep: np.ndarray) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    u, v = np.nonzero(keep)
    graph.add_edges_from((nodes[a], nodes[b], {"cost": float(cost[a, b])})
                         for a, b in zip(u.tolist(), v.tolist(), strict=True))
    return graph
