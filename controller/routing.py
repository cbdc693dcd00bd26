"""The topology model: link costs and the networkx graph the routing engine reads."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx
import numpy as np


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
    # a new backup must clear the loop-free (and node-protecting) inequalities by this much;
    # one already chosen is kept while it clears them at all
    backup_slack_ms: float = 1.0


@dataclass(frozen=True)
class Link:
    src: str
    dst: str
    rtt_ms: float
    loss: float = 0.0


LOSS_CONFIDENCE_Z = 1.645  # one-sided 95%


def loss_bound(loss: float, window: int, z: float = LOSS_CONFIDENCE_Z) -> float:
    """The loss rate routing pays for, measured as `loss` over `window` probes (as measured
    when the window is unknown): one lost probe is forgiven and the rest counted at their
    lower Wilson bound. A busy host drops a probe now and then, and at 10 ms per 1% a lone
    miss in a window of 13 would cost a link 77 ms; sustained loss still shows (5 lost in 50
    bound at 3.6%)."""
    if window <= 0:
        return max(loss, 0.0)
    lost = round(loss * window) - 1
    if lost <= 0:
        return 0.0
    n, p, z2 = window, lost / window, z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z2 / n))


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


def same_within(a: nx.DiGraph, b: nx.DiGraph, fraction: float, floor_ms: float = 0.0) -> bool:
    """Same regions and links, every cost within `fraction` or `floor_ms`, whichever is
    larger (a dead band for noise)."""
    if set(a.nodes) != set(b.nodes):
        return False
    nodes = sorted(a.nodes)
    return costs_within(*(nx.to_numpy_array(g, nodes, weight="cost", nonedge=np.inf)
                          for g in (a, b)), fraction, floor_ms)


def moved_links(a: np.ndarray, b: np.ndarray, fraction: float, floor_ms: float = 0.0
                ) -> np.ndarray:
    """Where cost matrix `a` differs from the old `b` beyond `fraction` of the old cost and
    `floor_ms` (inf: no link), or has a link where `b` has none or none where it has one."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    with np.errstate(invalid="ignore"):  # inf - inf where neither has a link
        far = np.abs(a - b) > np.maximum(fraction * b, floor_ms)
    return (fa != fb) | (fa & fb & far)


def far_moved(moved: np.ndarray, a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """Of the links `moved` marks (cost matrix `a` against the old `b`), those that came or
    went or whose cost moved by more than `fraction` of the old."""
    return moved & moved_links(a, b, fraction)


def costs_within(a: np.ndarray, b: np.ndarray, fraction: float, floor_ms: float = 0.0) -> bool:
    """`same_within` on cost matrices over the same regions (inf: no link): links in the
    same places, every cost within `fraction` of the old (`b`) or `floor_ms`."""
    return not moved_links(a, b, fraction, floor_ms).any()
