"""Lowest-latency overlay routes: a pure function of (topology, previous routes) -> routes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import networkx as nx
import numpy as np
from scipy.sparse import csgraph


@dataclass(frozen=True)
class CostModel:
    hop_cost_ms: float = 0.5  # forwarding cost of one relay hop
    loss_penalty_ms: float = 1000.0  # per unit of loss: 1% loss costs as much as 10 ms


@dataclass(frozen=True)
class Hysteresis:
    """A route moves only when the new path is better by more than `fraction` of the old
    path's cost and by more than `min_ms`, both."""

    fraction: float = 0.10
    min_ms: float = 5.0


EPSILON = 1e-7  # distance comparisons tolerate floating-point noise


@dataclass(frozen=True)
class Link:
    src: str
    dst: str
    rtt_ms: float
    loss: float = 0.0


@dataclass(frozen=True)
class Route:
    src: str
    dst: str
    path: tuple[str, ...]
    cost_ms: float

    @property
    def next_hop(self) -> str:
        return self.path[1]


Routes = dict[tuple[str, str], Route]


def link_cost(rtt_ms: float, loss: float, model: CostModel = CostModel()) -> float:
    """One-way latency estimate with a loss penalty and the per-hop cost."""
    return rtt_ms / 2 + loss * model.loss_penalty_ms + model.hop_cost_ms


def build_graph(regions: Iterable[str], links: Iterable[Link],
                model: CostModel = CostModel()) -> nx.DiGraph:
    """Nodes are regions, edges carry `cost`; insertion is sorted so ties break the same way
    every time."""
    graph = nx.DiGraph()
    graph.add_nodes_from(sorted(regions))
    for link in sorted(links, key=lambda x: (x.src, x.dst)):
        if link.src in graph and link.dst in graph and link.src != link.dst:
            if math.isfinite(link.rtt_ms) and link.rtt_ms >= 0 and 0 <= link.loss <= 1:
                graph.add_edge(link.src, link.dst, cost=link_cost(link.rtt_ms, link.loss, model),
                               rtt_ms=link.rtt_ms, loss=link.loss)
    return graph


def compute_routes(graph: nx.DiGraph, previous: Mapping[tuple[str, str], Route] | None = None,
                   hysteresis: Hysteresis = Hysteresis()) -> Routes:
    """Shortest paths towards every destination, one in-tree per destination, so that the
    next hops of all sources agree. A source keeps its previous next hop when the new best is
    not clearly better and that next hop is downstream (strictly closer to the destination
    by the new distances): every hop then gets closer, so forwarding cannot loop."""
    nodes = list(graph.nodes)
    index = {name: i for i, name in enumerate(nodes)}
    cost = cost_matrix(graph, index)
    # Dijkstra from every destination over the reversed graph: dist[d, u] is the distance
    # from u to d, and u's predecessor in that tree is its next hop towards d.
    dist, pred = csgraph.dijkstra(csgraph.csgraph_from_dense(cost.T, null_value=np.inf),
                                  directed=True, return_predecessors=True)
    next_hop = pred.T.copy()  # next_hop[u, d]
    for (src, dst), old in (previous or {}).items():
        u, d, h = index.get(src), index.get(dst), index.get(old.next_hop)
        if None not in (u, d, h) and next_hop[u, d] >= 0 and next_hop[u, d] != h:
            if _keep(cost[u, h], dist[d, h], dist[d, u], hysteresis):
                next_hop[u, d] = h
    hops, costs = next_hop.tolist(), cost.tolist()  # plain lists walk much faster
    routes: Routes = {}
    for u, src in enumerate(nodes):
        for d, dst in enumerate(nodes):
            if u == d or hops[u][d] < 0:
                continue
            path, total, at = [src], 0.0, u
            while at != d:
                hop = hops[at][d]
                total += costs[at][hop]
                path.append(nodes[hop])
                at = hop
            routes[(src, dst)] = Route(src, dst, tuple(path), total)
    return routes


def cost_matrix(graph: nx.DiGraph, index: Mapping[str, int]) -> np.ndarray:
    """Edge costs as a dense matrix, inf where there is no edge (walking the adjacency
    directly: nx.to_scipy_sparse_array is far slower on dense graphs)."""
    cost = np.full((len(index), len(index)), np.inf)
    for u, neighbours in graph.adjacency():
        i = index[u]
        for v, data in neighbours.items():
            cost[i, index[v]] = data["cost"]
    return cost


def _keep(edge: float, hop_dist: float, own_dist: float, hysteresis: Hysteresis) -> bool:
    if not np.isfinite(edge) or not hop_dist < own_dist - EPSILON:
        return False
    via_old = edge + hop_dist
    gain = via_old - own_dist
    return gain <= hysteresis.fraction * via_old or gain <= hysteresis.min_ms


def path_cost(graph: nx.DiGraph, path: Iterable[str]) -> float:
    path = list(path)
    return sum(graph.edges[u, v]["cost"] for u, v in zip(path, path[1:], strict=False))


def tables(routes: Routes) -> dict[str, list[Route]]:
    """Each relay's own rows, sorted by destination."""
    out: dict[str, list[Route]] = {}
    for (src, _), route in sorted(routes.items()):
        out.setdefault(src, []).append(route)
    return out
