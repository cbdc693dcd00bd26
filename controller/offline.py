"""Offline planning: the route set for a catalogue, a policy and a latency matrix, without
running a mesh (what-if planning, and CI checks of policy changes)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from controller import engine
from controller.routing import CostModel, Link, build_graph
from skymesh.policy import Policy
from skymesh.wan import WanModel


def plan(regions: Mapping, policy: Policy, model: WanModel,
         cost: CostModel | None = None) -> tuple[engine.RouteSet, float]:
    """(route set, the engine's own time in ms). Each WAN link becomes a graph edge with the
    RTT the relays would measure on it."""
    links = [Link(src, dst, link.delay_ms + model[(dst, src)].delay_ms
                  if (dst, src) in model else 2 * link.delay_ms, link.loss)
             for (src, dst), link in model.items()]
    graph = build_graph(regions, links, cost or CostModel())
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
