"""The routing engine: a pure function of (topology, residency policy, previous route set) ->
route set, per zone, on arrays.

Per zone the engine takes the zone's regions only, so no route of a zone ever touches a region
outside it. Shortest paths come from one tree per destination (scipy on the reversed graph),
so all next hops towards a destination agree and forwarding cannot loop. Hysteresis keeps a
previous next hop only while it is strictly downstream. Backups are loop-free alternates
(RFC 5286): node-protecting where one exists, else link-protecting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
from scipy.sparse import csgraph, csr_matrix

from controller.routing import Hysteresis
from skymesh.policy import Policy

NO_HYSTERESIS = Hysteresis(0.0, 0.0, 0.0)

EPSILON = 1e-7  # distance comparisons tolerate floating-point noise
BACKUP_CANDIDATES = 6  # backups are searched among each node's cheapest links first
NO_BACKUP, LINK_PROTECTING, NODE_PROTECTING = 0, 1, 2
BACKUP_KINDS = {NO_BACKUP: "none", LINK_PROTECTING: "link", NODE_PROTECTING: "node"}
AVOID_MS = 10_000.0  # added to each link out of a drained region: transit there is a last resort


# Not frozen, though nothing changes a Route once made (but its `encoded` cache): a frozen
# dataclass is five times as dear to construct, and a thousand relays' tables are a million
# rows. Hashable by value all the same.
@dataclass(slots=True, unsafe_hash=True)
class Route:
    zone: str
    src: str
    dst: str
    path: tuple[str, ...]
    cost_ms: float
    backup_next_hop: str | None = None
    backup_kind: str = "none"  # "node" (avoids the primary next hop's region), "link", "none"
    backup_cost_ms: float | None = None
    # the row as the relay protocol frames it, once a shell has encoded it: a row that does
    # not change is the same object round after round, and goes out in many tables (whole
    # ones to new and follower nodes, after a rejection)
    encoded: bytes = field(default=b"", compare=False, repr=False)

    @property
    def next_hop(self) -> str:
        return self.path[1]


@dataclass
class ZoneRoutes:
    """One zone's routes as arrays over its regions present in the topology (sorted)."""

    zone: str
    members: frozenset[str]  # the zone's regions by policy, present or not
    nodes: list[str]
    cost: np.ndarray  # cost[u, v]: link cost, inf where there is no link
    dist: np.ndarray  # dist[u, d]: shortest distance
    actual: np.ndarray  # actual[u, d]: distance along the next hops in force
    next_hop: np.ndarray  # next_hop[u, d]: node index, -1 where unreachable or u == d
    backup: np.ndarray  # backup[u, d]: node index, -1 where none
    backup_kind: np.ndarray
    exact: bool = True  # a fresh computation: no hysteresis state carried in
    # per region, what `cost` adds to each of its links (drained regions), None: nothing
    penalty: np.ndarray | None = None
    # wide[u, d]: u's backup towards d was searched among all its links (its cheapest gave
    # none), so it reads every neighbour; None: not known (all are taken to)
    wide: np.ndarray | None = None
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {name: i for i, name in enumerate(self.nodes)}

    def route(self, src: str, dst: str) -> Route | None:
        u, d = self.index.get(src), self.index.get(dst)
        if u is None or d is None or u == d or self.next_hop[u, d] < 0:
            return None
        path, total = self._walk(u, d)
        b = int(self.backup[u, d])
        backup_cost = None
        if b >= 0:
            backup_cost = self.latency(u, b) + (self._walk(b, d)[1] if b != d else 0.0)
        return Route(self.zone, src, dst, tuple(path), total,
                     self.nodes[b] if b >= 0 else None,
                     BACKUP_KINDS[int(self.backup_kind[u, d])], backup_cost)

    def latency(self, u: int, v: int) -> float:
        """The link's cost without the penalty of a drained region."""
        extra = 0.0 if self.penalty is None else float(self.penalty[u])
        return float(self.cost[u, v]) - extra

    def _walk(self, u: int, d: int) -> tuple[list[str], float]:
        """The path from u to d along the next hops in force, and its cost."""
        hops = self.next_hop[:, d]
        path, total, at = [self.nodes[u]], 0.0, u
        while at != d:
            nxt = int(hops[at])
            total += self.latency(at, nxt)
            path.append(self.nodes[nxt])
            at = nxt
        return path, total

    def rows(self, src: str) -> list[Route]:
        """The routes of one source, by destination."""
        return [r for dst in self.nodes if (r := self.route(src, dst)) is not None]

    def column(self, d: int) -> list[Route | None]:
        """Every region's route to destination `d` (by index; None where there is none), as
        `route` gives them but walking d's tree of next hops once for all of them: a path
        is the next hop's path with one region in front."""
        n = len(self.nodes)
        column = self.next_hop[:, d]
        hops = column.tolist()
        dst = self.nodes[d]
        rows = np.arange(n)
        # each region's link to its next hop and to its backup, as `latency` gives them
        extra = 0.0 if self.penalty is None else self.penalty
        edge = (self.cost[rows, np.maximum(column, 0)] - extra).tolist()
        backup_col = self.backup[:, d]
        to_backup = (self.cost[rows, np.maximum(backup_col, 0)] - extra).tolist()
        paths: list[tuple[str, ...] | None] = [None] * n
        costs = [0.0] * n
        paths[d] = (dst,)
        for u in range(n):
            if paths[u] is not None or hops[u] < 0:
                continue
            chain = []
            at = u
            while paths[at] is None and hops[at] >= 0:
                chain.append(at)
                at = hops[at]
            if paths[at] is None:  # the chain ends where there is no route
                continue
            for v in reversed(chain):
                h = hops[v]
                paths[v] = (self.nodes[v], *paths[h])
                costs[v] = edge[v] + costs[h]
        backup, kind = backup_col.tolist(), self.backup_kind[:, d].tolist()
        out: list[Route | None] = []
        for u in range(n):
            path = paths[u]
            if u == d or path is None:
                out.append(None)
                continue
            b = backup[u]
            out.append(Route(self.zone, path[0], dst, path, costs[u],
                             self.nodes[b] if b >= 0 else None, BACKUP_KINDS[kind[u]],
                             to_backup[u] + costs[b] if b >= 0 else None))
        return out

    def unreachable_reason(self, src: str, dst: str) -> str | None:
        for rid in (src, dst):
            if rid not in self.members:
                return f"{rid} is not in zone {self.zone}"
        for rid in (src, dst):
            if rid not in self.index:
                return f"{rid} has no relay in the topology"
        if src != dst and self.next_hop[self.index[src], self.index[dst]] < 0:
            return f"no path from {src} to {dst} inside zone {self.zone}"
        return None


@dataclass
class RouteSet:
    zones: dict[str, ZoneRoutes]

    def zone(self, name: str) -> ZoneRoutes:
        try:
            return self.zones[name]
        except KeyError:
            raise KeyError(f"unknown zone {name!r} (zones: {', '.join(self.zones)})") from None

    def route(self, zone: str, src: str, dst: str) -> Route | None:
        return self.zone(zone).route(src, dst)

    def table(self, region: str) -> list[Route]:
        """A relay's own rows: every zone it belongs to, every destination."""
        return [r for z in self.zones.values() if region in z.index for r in z.rows(region)]

    def tables(self, regions: Iterable[str]) -> dict[str, list[Route]]:
        """`table` of each of `regions`, built a destination at a time (`column`): for many
        relays at once, far cheaper."""
        regions = list(regions)
        out: dict[str, list[Route]] = {r: [] for r in regions}
        for z in self.zones.values():
            rows = [(r, z.index[r]) for r in regions if r in z.index]
            if not rows:
                continue
            columns = [z.column(d) for d in range(len(z.nodes))]
            for region, u in rows:
                out[region].extend(c[u] for c in columns if c[u] is not None)
        return out


@dataclass(frozen=True)
class Changed:
    """The rows of a zone that may differ from an earlier computation's, by destination:
    `rows[:, k]` marks the sources whose route to destination `columns[k]` (an index of the
    new zone) may differ; every other row has the same path and backup as before."""

    columns: np.ndarray
    rows: np.ndarray  # bool, (len(nodes), len(columns))


def changed_pairs(old: ZoneRoutes | None, new: ZoneRoutes) -> Changed | None:
    """Which rows of `new` may differ from `old`'s: those whose next hop or backup differs,
    and those whose path runs through one that does (a path is its next hops, followed), or
    towards a destination new to the zone or whose rows led through a region that left.
    None without an `old`."""
    if old is None:
        return None
    if old.nodes == new.nodes:
        hops, backup, kind = old.next_hop, old.backup, old.backup_kind
    else:  # regions came or went: the old arrays at the new indices
        hops = _carry(new.nodes, old, old.next_hop, -1)
        backup = _carry(new.nodes, old, old.backup, -1)
        kind = _carry(new.nodes, old, old.backup_kind, NO_BACKUP, hops=False)
    diff = (hops != new.next_hop) | (backup != new.backup) | (kind != new.backup_kind)
    whole = np.zeros(len(new.nodes), dtype=bool)
    whole[[i for i, n in enumerate(new.nodes) if n not in old.index]] = True
    left = [old.index[n] for n in old.nodes if n not in new.index]
    if left:  # a hop to a region that left reads -1 above, as "no route" does
        via = (np.isin(old.next_hop, left) | np.isin(old.backup, left)).any(axis=0)
        whole[[new.index[old.nodes[d]] for d in np.flatnonzero(via)
               if old.nodes[d] in new.index]] = True
    columns = np.flatnonzero(diff.any(axis=0) | whole)
    rows = diff[:, columns] | whole[columns]
    # a row differs where its path meets one that does: spread the marks from each next
    # hop back to the rows that lead to it, as often as the longest path is long
    next_hop = new.next_hop[:, columns]
    leads = next_hop >= 0
    at = np.maximum(next_hop, 0)
    while True:
        spread = rows | (np.take_along_axis(rows, at, axis=0) & leads)
        if np.array_equal(spread, rows):
            return Changed(columns, rows)
        rows = spread


# -- computation ---------------------------------------------------------------------------


def compute(graph: nx.DiGraph, policy: Policy, previous: RouteSet | None = None,
            hysteresis: Hysteresis = NO_HYSTERESIS,
            avoid: frozenset[str] | set[str] = frozenset()) -> RouteSet:
    """Routes for every zone of the policy over the graph (edges carry `cost`). Regions in
    `avoid` (drained) carry transit only where nothing else can: each of their links costs
    AVOID_MS more, which changes no route from or to them, only routes through them."""
    nodes = sorted(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    return compute_costs(nodes, cost_matrix(graph, index), policy, previous, hysteresis,
                         avoid)


def compute_costs(nodes: list[str], full: np.ndarray, policy: Policy,
                  previous: RouteSet | None = None, hysteresis: Hysteresis = NO_HYSTERESIS,
                  avoid: frozenset[str] | set[str] = frozenset(),
                  moved: np.ndarray | None = None) -> RouteSet:
    """`compute` on the link costs as a matrix over `nodes` (sorted; inf where there is no
    link, and on the diagonal): what the controller holds its links in. With `moved` (a
    mask over `full`), `previous` was computed on these same costs but at the links it
    marks: a zone whose regions did not change is then updated where those links matter
    (`update_zone`), with the result a whole computation would give."""
    index = {n: i for i, n in enumerate(nodes)}
    penalty = None
    if any(n in avoid for n in nodes):
        penalty = np.array([AVOID_MS if n in avoid else 0.0 for n in nodes])
        full = full + penalty[:, None]
    zones = {}
    for name, zone in policy.zones.items():
        members = [n for n in nodes if n in zone.regions]
        if len(members) == len(nodes):
            cost, pen = full, penalty  # every region: no copy (the engine never writes to it)
        else:
            idx = np.array([index[n] for n in members], dtype=np.intp)
            cost = full[np.ix_(idx, idx)]
            pen = None if penalty is None else penalty[idx]
        old = previous.zones.get(name) if previous else None
        if moved is not None and old is not None and old.nodes == members \
                and _same_penalty(old.penalty, pen):
            sub = moved if cost is full else moved[np.ix_(idx, idx)]
            zones[name] = update_zone(old, cost, sub, hysteresis)
        else:
            zones[name] = compute_zone(name, frozenset(zone.regions), members, cost, old,
                                       hysteresis, pen)
    return RouteSet(zones)


def _same_penalty(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None
                                         and np.array_equal(a, b))


# beyond this share of a zone's links moved at once, or of its destinations' trees touched
# by them, it is computed whole (trees one by one cost more than all at once: on a dense
# mesh twice as much)
UPDATE_AT_MOST = 0.05
UPDATE_TREES_AT_MOST = 0.5


def update_zone(old: ZoneRoutes, cost: np.ndarray, moved: np.ndarray,
                hysteresis: Hysteresis = NO_HYSTERESIS, at_most: float = UPDATE_AT_MOST,
                at_most_trees: float = UPDATE_TREES_AT_MOST, fresh: bool = False) -> ZoneRoutes:
    """What `compute_zone` gives on `cost` with `old` as the previous routes (or, `fresh`,
    with none: nothing kept by hysteresis), where `old`
    was computed on the same costs but at the links `moved` marks. Only the destinations
    whose shortest distances or paths in force those links touch are looked at again, and
    in their trees only the regions whose distance can change (`repair`); backups only
    where what they read changed. A thousand regions' routes cost a second whole; one
    relay's report moving a few links costs a few milliseconds. Beyond `at_most` of the
    links moved, or `at_most_trees` of the destinations touched, the zone is computed
    whole."""
    us, vs = np.nonzero(moved)
    if not len(us):
        return old
    previous = None if fresh else old
    if len(us) > at_most * max(1, np.isfinite(cost).sum()):
        return compute_zone(old.zone, old.members, old.nodes, cost, previous, hysteresis,
                            old.penalty)
    n = len(old.nodes)
    touched = np.zeros(n, dtype=bool)
    dist = old.dist
    for at in range(0, len(us), 256):  # a few links at a time: thousands may have moved
        u, v = us[at:at + 256], vs[at:at + 256]
        before, after = old.cost[u, v], cost[u, v]
        with np.errstate(invalid="ignore"):  # inf - inf, inf <= inf: no link before or after
            # a destination whose shortest paths used a link (before), or that a link now
            # shortens, or whose paths in force use one
            tight = np.isfinite(before)[:, None] & (before[:, None] + dist[v] <= dist[u] + EPSILON)
            shorter = after[:, None] + dist[v] < dist[u] - EPSILON
        touched |= (tight | shorter | (old.next_hop[u] == v[:, None])).any(axis=0)
        if touched.sum() > at_most_trees * n:  # as dear as the whole, or dearer
            return compute_zone(old.zone, old.members, old.nodes, cost, previous, hysteresis,
                                old.penalty)
    cols = np.flatnonzero(touched)
    dist, next_hop, actual = old.dist.copy(), old.next_hop.copy(), old.actual.copy()
    if len(cols):
        d_new, again, hops = repair(old.cost, cost, old.dist, old.next_hop, us, vs, cols)
        dist[:, cols] = d_new
        r, k = np.nonzero(again)
        next_hop[r, cols[k]] = hops
        if previous is not None:
            keep_previous(old.nodes, cost, dist, next_hop, old, hysteresis, at=(r, cols[k]))
        actual[:, cols] = actual_dist(cost, d_new, next_hop[:, cols])
    redo = backups_to_redo(old, cost, dist, actual, next_hop, us, cols)
    backup, kind = old.backup.copy(), old.backup_kind.copy()
    wide = old.wide.copy() if old.wide is not None else np.ones((n, n), dtype=bool)
    backups(cost, dist, actual, next_hop, hysteresis.backup_slack_ms, pairs=redo,
            into=(backup, kind), wide=wide)
    if previous is not None:
        keep_previous_backups(old.nodes, cost, dist, actual, next_hop, backup, kind, old,
                              hysteresis, at=redo)
    return ZoneRoutes(old.zone, old.members, old.nodes, cost, dist, actual, next_hop, backup,
                      kind, fresh and hysteresis.backup_slack_ms == 0, old.penalty, wide)


def backups_to_redo(old: ZoneRoutes, cost: np.ndarray, dist: np.ndarray, actual: np.ndarray,
                    next_hop: np.ndarray, us: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The pairs whose backup may differ from `old`'s, now that distances, distances in
    force and next hops changed (in the columns `cols` only) and the links of the regions
    `us` moved. The backup of (u, x), primary next hop p, reads (`backups`,
    `keep_previous_backups`): u's links; its next hop; the distances in force to x of u, p,
    u's candidates (its BACKUP_CANDIDATES cheapest links, or all of them where those gave
    none: `wide`) and its backup; the distances to u and to p of the candidates, the backup
    and x."""
    n = len(dist)
    redo = np.zeros((n, n), dtype=bool)
    redo[us] = True
    if not len(cols) or n < 2:
        return redo
    path = (actual[:, cols] != old.actual[:, cols]) | (next_hop[:, cols] != old.next_hop[:, cols])
    moved = dist[:, cols] != old.dist[:, cols]
    cands = cheapest(cost, min(BACKUP_CANDIDATES, n - 1))
    wide = old.wide if old.wide is not None else np.ones((n, n), dtype=bool)
    b0, p = np.maximum(old.backup, 0), np.maximum(next_hop, 0)  # -1: any row, a spare look
    # the distances in force to x
    at = np.flatnonzero(path.any(axis=0))
    if len(at):
        changed, x, w = path[:, at], cols[at], np.arange(len(at))
        hit = changed | changed[p[:, x], w] | changed[b0[:, x], w]
        for j in range(cands.shape[1]):
            hit |= changed[cands[:, j]]
        hit |= wide[:, x] & changed.any(axis=0)
        redo[:, x] |= hit
    # the distances to u and to p
    at = np.flatnonzero(moved.any(axis=0))
    if len(at):
        changed, y, w = moved[:, at], cols[at], np.arange(len(at))
        anywhere = changed.any(axis=0)
        by_cand = changed[cands[y], w[:, None]].any(axis=1)
        redo[y] |= changed.T | changed.T[w[:, None], b0[y]] | by_cand[:, None] | \
            (wide[y] & anywhere[:, None])
        index = np.full(n + 1, -1)
        index[y] = w
        column = index[next_hop]  # -1 (no next hop) reads index[n]: -1
        u, x = np.nonzero(column >= 0)
        j = column[u, x]
        hit = changed[cands[u], j[:, None]].any(axis=1) | changed[b0[u, x], j] | \
            changed[x, j] | (wide[u, x] & anywhere[j])
        redo[u[hit], x[hit]] = True
    return redo


def repair(old_cost: np.ndarray, cost: np.ndarray, dist: np.ndarray, next_hop: np.ndarray,
           us: np.ndarray, vs: np.ndarray, cols: np.ndarray,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shortest distances to the destinations `cols` on `cost`, from `dist` on `old_cost`,
    which differs only at the links (us, vs), looking again only at the regions whose
    distance can change (dynamic shortest paths, in the manner of Ramalingam and Reps, on
    many destinations at once): those whose shortest paths may run over a link that became
    dearer or went are set from their other neighbours; then every fall in a distance is
    carried to the regions with a link to it, a step at a time (Bellman-Ford), until none is
    left. Returns the new columns; which regions' next hops must be chosen again (`again`,
    over the columns: those whose distance changed or could have, those whose links moved,
    those whose next hop in force, `next_hop`, changed distance); and, in the order of
    np.nonzero(again), those next hops on the shortest paths (-1: no route)."""
    n, t = len(cost), len(cols)
    d = np.ascontiguousarray(dist[:, cols])
    width = np.arange(t)
    before, after = old_cost[us, vs], cost[us, vs]
    with np.errstate(invalid="ignore"):  # inf - inf, inf <= inf: no link before or after
        dearer, cheaper = after > before, after < before
        ui, vi, bi = us[dearer], vs[dearer], before[dearer]
        seeds = np.isfinite(bi)[:, None] & (bi[:, None] + d[vi] <= d[ui] + EPSILON)
    # the regions whose shortest paths may use a dearer link: the links' sources where it
    # was tight, and every region with a tight link to one of those
    stale = np.zeros((n, t), dtype=bool)
    r, c = np.nonzero(seeds)
    stale[ui[r], c] = True
    ys, ks = np.nonzero(stale)
    while len(ys):
        found = []
        for at in range(0, len(ys), 512):
            y, k = ys[at:at + 512], ks[at:at + 512]
            edge = old_cost[:, y]
            with np.errstate(invalid="ignore"):
                tight = np.isfinite(edge) & (edge + d[y, k] <= d[:, k] + EPSILON)
            x, j = np.nonzero(tight & ~stale[:, k])
            found.append(x * t + k[j])
        ys, ks = np.divmod(np.unique(np.concatenate(found)), t)
        stale[ys, ks] = True
    stale[cols, width] = False  # a destination stays where it is
    d[stale] = np.inf
    xs, ks = np.nonzero(stale)
    for at in range(0, len(xs), 512):  # from their neighbours (whose distances hold)
        x, k = xs[at:at + 512], ks[at:at + 512]
        d[x, k] = (cost[x] + d[:, k].T).min(axis=1)
    fell = np.zeros((n, t), dtype=bool)
    if cheaper.any():  # a link cheaper now: its source's distance may fall
        ud, vd = us[cheaper], vs[cheaper]
        cand = after[cheaper][:, None] + d[vd]
        r, c = np.nonzero(cand < d[ud])
        np.minimum.at(d, (ud[r], c), cand[r, c])
        fell[ud[r], c] = True
    frontier = np.flatnonzero((stale | fell).ravel() & np.isfinite(d).ravel())
    while len(frontier):
        found = []
        for at in range(0, len(frontier), 512):
            x, k = np.divmod(frontier[at:at + 512], t)  # sorted by x, not by k
            order = np.argsort(k, kind="stable")
            x, k = x[order], k[order]
            starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
            ks = k[starts]
            cand = np.minimum.reduceat(cost[:, x] + d[x, k], starts, axis=1)
            w, j = np.nonzero(cand < d[:, ks])
            d[w, ks[j]] = cand[w, j]
            fell[w, ks[j]] = True
            found.append(w * t + ks[j])
        frontier = np.unique(np.concatenate(found))
    moved = d != dist[:, cols]
    again = stale | fell | moved
    again[us] = True
    hops = next_hop[:, cols]
    again |= (hops >= 0) & moved[np.maximum(hops, 0), width]
    again[cols, width] = False
    xs, ks = np.nonzero(again)
    best = np.empty(len(xs), dtype=next_hop.dtype)
    for at in range(0, len(xs), 512):
        x, k = xs[at:at + 512], ks[at:at + 512]
        via = cost[x] + d[:, k].T
        pick = via.argmin(axis=1)
        best[at:at + 512] = np.where(np.isfinite(via[np.arange(len(x)), pick]), pick, -1)
    return d, again, best


def compute_zone(zone: str, members: frozenset[str], nodes: list[str], cost: np.ndarray,
                 previous: ZoneRoutes | None = None,
                 hysteresis: Hysteresis = NO_HYSTERESIS,
                 penalty: np.ndarray | None = None) -> ZoneRoutes:
    dist, next_hop = shortest(cost)
    kept = keep_previous(nodes, cost, dist, next_hop, previous, hysteresis) if previous else 0
    actual = actual_dist(cost, dist, next_hop) if kept else dist
    wide = np.zeros(dist.shape, dtype=bool)
    backup, kind = backups(cost, dist, actual, next_hop, hysteresis.backup_slack_ms, wide=wide)
    if previous is not None:
        keep_previous_backups(nodes, cost, dist, actual, next_hop, backup, kind, previous,
                              hysteresis)
    exact = previous is None and hysteresis.backup_slack_ms == 0
    return ZoneRoutes(zone, members, nodes, cost, dist, actual, next_hop, backup, kind, exact,
                      penalty, wide)


def actual_dist(cost: np.ndarray, dist: np.ndarray, next_hop: np.ndarray) -> np.ndarray:
    """Distances along the next hops in force (which hysteresis may have kept off the
    shortest paths): actual[u, d] = cost[u, h] + actual[h, d] with h = next_hop[u, d].
    `dist` and `next_hop` may be some destinations' columns only."""
    n = len(cost)
    actual = dist.copy()
    u, d = np.nonzero(next_hop >= 0)
    h = next_hop[u, d]
    edge = cost[u, h]
    for _ in range(n):
        new = edge + actual[h, d]
        if np.allclose(new, actual[u, d], rtol=0, atol=1e-12):
            break
        actual[u, d] = new
    return actual


def cost_matrix(graph: nx.DiGraph, index: Mapping[str, int]) -> np.ndarray:
    """Edge costs as a dense matrix, inf where there is no edge (walking the adjacency
    directly: nx.to_scipy_sparse_array is far slower on dense graphs)."""
    n = len(index)
    rows, cols, vals = [], [], []
    for u, neighbours in graph.adjacency():
        i = index[u]
        for v, data in neighbours.items():
            rows.append(i)
            cols.append(index[v])
            vals.append(data["cost"])
    cost = np.full((n, n), np.inf)
    cost[rows, cols] = vals
    np.fill_diagonal(cost, np.inf)
    return cost


def shortest(cost: np.ndarray, destinations: np.ndarray | None = None,
             ) -> tuple[np.ndarray, np.ndarray]:
    """(dist[u, d], next_hop[u, d]) from one tree per destination on the reversed graph: the
    predecessor of u in d's tree is u's next hop towards d. Only the given destinations'
    columns are computed when `destinations` is set."""
    n = len(cost)
    if n == 0:
        return np.zeros((0, 0)), np.zeros((0, 0), dtype=np.intp)
    dst_idx, src_idx = np.nonzero(np.isfinite(cost.T))
    edges = len(dst_idx)
    reverse = csr_matrix((cost.T[dst_idx, src_idx], (dst_idx, src_idx)), shape=(n, n))
    if destinations is None and edges > n * n / 8:
        dist_t, pred_t = csgraph.floyd_warshall(reverse, directed=True,
                                                return_predecessors=True)
    else:
        dist_t, pred_t = csgraph.dijkstra(reverse, directed=True, indices=destinations,
                                          return_predecessors=True)
    next_hop = pred_t.T  # int32 indexes as well as intp, and saves a copy
    next_hop[next_hop < 0] = -1
    return dist_t.T, next_hop


def _carry(nodes: list[str], previous: ZoneRoutes, values: np.ndarray, empty: int,
           hops: bool = True) -> np.ndarray:
    """A previous per-pair matrix at this zone's node indices (`empty` where a pair is new).
    With `hops`, its values are node indices and are translated too (-1 stays -1)."""
    index = {n: i for i, n in enumerate(nodes)}
    to_new = np.array([index.get(n, -1) for n in previous.nodes], dtype=np.intp)
    present = to_new >= 0
    out = np.full((len(nodes), len(nodes)), empty, dtype=values.dtype)
    old_idx, new_idx = np.flatnonzero(present), to_new[present]
    prev = values[np.ix_(old_idx, old_idx)]
    if hops:
        prev = np.where(prev >= 0, to_new[np.maximum(prev, 0)], -1)
    out[np.ix_(new_idx, new_idx)] = prev
    return out


def _translate(nodes: list[str], previous: ZoneRoutes, hops: np.ndarray) -> np.ndarray:
    """A previous per-pair node-index matrix in this zone's node indices (-1: none)."""
    return _carry(nodes, previous, hops, -1)


def protection(u: np.ndarray, d: np.ndarray, b: np.ndarray, p: np.ndarray, cost: np.ndarray,
               dist: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """The protection backup b gives u towards d (primary next hop p), judged with the
    tolerance of a chosen backup (EPSILON), not the slack a new one must clear."""
    via = cost[u, b] + actual[b, d]
    loop_free = np.isfinite(via) & (b != p) & (actual[b, d] < dist[b, u] + actual[u, d]
                                               - EPSILON)
    safe_p = np.maximum(p, 0)
    node = loop_free & (p != d) & (actual[b, d] < dist[b, safe_p] + actual[safe_p, d]
                                   - EPSILON)
    return np.where(node, NODE_PROTECTING, np.where(loop_free, LINK_PROTECTING, NO_BACKUP))


def keep_previous_backups(nodes: list[str], cost: np.ndarray, dist: np.ndarray,
                          actual: np.ndarray, next_hop: np.ndarray, backup: np.ndarray,
                          kind: np.ndarray, previous: ZoneRoutes, hysteresis: Hysteresis,
                          at: np.ndarray | None = None) -> int:
    """Keep a previous backup while it is still a loop-free alternate, unless the new one
    protects more (node rather than link) or is clearly cheaper at the same protection: so
    that backups do not flap either. Only at the pairs the mask `at` marks when given
    (`previous` then has these same nodes)."""
    if not len(nodes) or not len(previous.nodes):
        return 0
    if at is None:
        old = _translate(nodes, previous, previous.backup)
        old_kind = _carry(nodes, previous, previous.backup_kind, NO_BACKUP, hops=False)
    else:
        old, old_kind = previous.backup, previous.backup_kind
    # pairs that chose the same backup again are looked at too: its protection label is
    # decided with the tolerance of a chosen backup, not the slack of a new one
    look = (old >= 0) & (next_hop >= 0)
    u, d = np.nonzero(look if at is None else look & at)
    if not len(u):
        return 0
    b, p, new = old[u, d], next_hop[u, d], backup[u, d]
    via_old = cost[u, b] + actual[b, d]
    # a chosen backup keeps its label while it still gives that protection: it is not
    # promoted by the tolerance it is kept with (only a fresh choice, clearing the slack, is)
    was = old_kind[u, d]
    old_kind = np.minimum(protection(u, d, b, p, cost, dist, actual), was)
    new_kind = kind[u, d]
    via_new = np.where(new >= 0, cost[u, np.maximum(new, 0)] + actual[np.maximum(new, 0), d],
                       np.inf)
    with np.errstate(invalid="ignore"):  # inf - inf, 0 * inf where neither has a path
        gain = via_old - via_new
        close = (gain <= hysteresis.fraction * via_old) | (gain <= hysteresis.min_ms)
    keep = (old_kind > NO_BACKUP) & ((old_kind > new_kind) | ((old_kind == new_kind) & close))
    backup[u[keep], d[keep]] = b[keep]
    kind[u[keep], d[keep]] = old_kind[keep]
    return int(keep.sum())


def keep_previous(nodes: list[str], cost: np.ndarray, dist: np.ndarray, next_hop: np.ndarray,
                  previous: ZoneRoutes, hysteresis: Hysteresis,
                  at: tuple[np.ndarray, np.ndarray] | None = None) -> int:
    """Put back previous next hops where the new path is not clearly better and the old hop
    is strictly downstream; only at the pairs (rows, columns) `at` when given (`previous`
    then has these same nodes). Returns how many were kept."""
    if not len(nodes) or not len(previous.nodes):
        return 0
    if at is None:
        old = _translate(nodes, previous, previous.next_hop)
        u, d = np.nonzero((old >= 0) & (next_hop >= 0) & (old != next_hop))
        h = old[u, d]
    else:
        u, d = at
        h, now = previous.next_hop[u, d], next_hop[u, d]
        differ = (h >= 0) & (now >= 0) & (h != now)
        u, d, h = u[differ], d[differ], h[differ]
    if not len(u):
        return 0
    edge = cost[u, h]
    via_old = edge + dist[h, d]
    with np.errstate(invalid="ignore"):  # inf - inf, 0 * inf: such hops are not kept
        gain = via_old - dist[u, d]
        close = (gain <= hysteresis.fraction * via_old) | (gain <= hysteresis.min_ms)
    keep = np.isfinite(edge) & (dist[h, d] < dist[u, d] - EPSILON) & close
    next_hop[u[keep], d[keep]] = h[keep]
    return int(keep.sum())


def cheapest(links: np.ndarray, k: int) -> np.ndarray:
    """The column indices of each row's k cheapest links, cheapest first (ties in index
    order): np.argsort(links, kind="stable")[:, :k], without sorting whole rows where they
    are mostly links (rows mostly of inf sort fast)."""
    n = links.shape[1]
    if k >= n or np.isfinite(links).sum() < links.size / 4:
        return np.argsort(links, axis=1, kind="stable")[:, :k]
    kth = np.partition(links, k - 1, axis=1)[:, k - 1]
    r, c = np.nonzero(links <= kth[:, None])  # k or more a row (ties at the kth)
    ranked = np.lexsort((c, links[r, c], r))
    r, c = r[ranked], c[ranked]
    first = np.searchsorted(r, np.arange(len(links)))
    return c[first[:, None] + np.arange(k)]


def backups(cost: np.ndarray, dist: np.ndarray, actual: np.ndarray, next_hop: np.ndarray,
            slack: float = 0.0, pairs: np.ndarray | None = None,
            into: tuple[np.ndarray, np.ndarray] | None = None,
            wide: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loop-free alternates (RFC 5286) for every (u, d), or for the pairs the mask `pairs`
    marks only (written into `into`). A neighbour v of u is loop-free towards d when its
    forwarding path cannot come back through u: actual[v,d] < dist[v,u] + actual[u,d] (a
    path through u would cost at least that); it is node-protecting when that path also
    avoids the primary next hop p: actual[v,d] < dist[v,p] + actual[p,d]. The cheapest
    node-protecting alternate wins, else the cheapest link-protecting one. Inequalities
    must hold by `slack` ms (at least EPSILON) so that measurement noise does not flip a
    choice at once. Candidates are each node's cheapest links first, then all its links
    for the pairs where those gave none (marked in `wide`, when given, the others
    cleared)."""
    n = len(cost)
    backup, kind = into if into is not None else (np.full((n, n), -1, dtype=np.intp),
                                                  np.zeros((n, n), dtype=np.int8))
    rows = np.arange(n) if pairs is None else np.flatnonzero(pairs.any(axis=1))
    if n < 2 or not len(rows):
        return backup, kind
    k = min(BACKUP_CANDIDATES, n - 1)
    margin = max(EPSILON, slack)
    links = cost[rows]
    order = cheapest(links, k)  # rows' links, cheapest first
    degree = np.isfinite(links).sum(axis=1)
    step = 32 if pairs is None else max(1, 32_768 // n)  # a few tens of thousands of pairs
    everywhere = np.arange(n)

    def all_links(r: np.ndarray, u: np.ndarray, d: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Where the cheapest links gave nothing: all of the region's links (pairs (u, d) of
        rows r of `order`)."""
        b, t = np.full(len(u), -1, dtype=np.intp), np.zeros(len(u), dtype=np.int8)
        for i in np.unique(r).tolist():
            gap = np.flatnonzero(r == i)
            c = np.argsort(links[i], kind="stable")[:degree[i], None]
            b[gap], t[gap] = _alternates(u[gap], d[gap], c, actual[c, d[gap]], cost, dist,
                                         actual, next_hop, margin)
        return b, t

    for start in range(0, len(rows), step):
        us = rows[start:start + step]
        cands = order[start:start + step, :k]
        if pairs is None:  # every column: the candidates' rows are gathered whole
            b, t = _alternates(us[:, None], everywhere[None, :], cands.T[:, :, None],
                               actual[cands].transpose(1, 0, 2), cost, dist, actual,
                               next_hop, margin)
            r, d = np.nonzero((b < 0) & (next_hop[us] >= 0))
            if len(r):
                b[r, d], t[r, d] = all_links(start + r, us[r], d)
            if wide is not None:
                wide[us] = False
                wide[us[r], d] = True
            backup[us], kind[us] = b, t
            p = next_hop[us]
            r, d = np.nonzero((p >= 0) & (p != everywhere) & (t != NODE_PROTECTING)
                              & np.isfinite(cost[us]))
            _direct_where_unprotected(us[r], d, cost, dist, actual, next_hop, backup, kind,
                                      margin)
        else:
            r, d = np.nonzero(pairs[us])
            u = us[r]
            c = cands[r].T
            b, t = _alternates(u, d, c, actual[c, d], cost, dist, actual, next_hop, margin)
            gap = np.flatnonzero((b < 0) & (next_hop[u, d] >= 0))
            if len(gap):
                b[gap], t[gap] = all_links(start + r[gap], u[gap], d[gap])
            if wide is not None:
                wide[u, d] = False
                wide[u[gap], d[gap]] = True
            backup[u, d], kind[u, d] = b, t
            _direct_where_unprotected(u, d, cost, dist, actual, next_hop, backup, kind,
                                      margin)
    return backup, kind


def _direct_where_unprotected(u: np.ndarray, d: np.ndarray, cost: np.ndarray,
                              dist: np.ndarray, actual: np.ndarray, next_hop: np.ndarray,
                              backup: np.ndarray, kind: np.ndarray, margin: float) -> None:
    """Where the candidates gave no node-protecting alternate, the direct link to the
    destination is one whenever it exists (nothing lies between): a link-protecting backup
    often runs through the very node that failed, and only a relay beyond it could see
    that. At the pairs (u, d)."""
    p = next_hop[u, d]
    at = (p >= 0) & (p != d) & (kind[u, d] != NODE_PROTECTING) & np.isfinite(cost[u, d])
    u, d, p = u[at], d[at], p[at]
    with np.errstate(invalid="ignore"):
        ok = (margin < dist[d, u] + actual[u, d]) & (margin < dist[d, p] + actual[p, d])
    backup[u[ok], d[ok]] = d[ok]
    kind[u[ok], d[ok]] = NODE_PROTECTING


def _alternates(u: np.ndarray, d: np.ndarray, cands: np.ndarray, a_vd: np.ndarray,
                cost: np.ndarray, dist: np.ndarray, actual: np.ndarray, next_hop: np.ndarray,
                margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Best backups of the pairs (u, d) among their candidates `cands`, whose distances in
    force to d are `a_vd`: u and d broadcast to the pairs' shape (rows x columns, or pairs),
    the candidates put an axis in front of it (k x the pairs' shape: the reductions over the
    candidates are then elementwise)."""
    p = next_hop[u, d]
    safe_p = np.maximum(p, 0)
    a_ud = actual[u, d]
    loop_free = a_vd < dist[cands, u] + a_ud - margin
    loop_free &= cands != p
    loop_free &= p >= 0
    edge = cost[u, cands]
    via = a_vd + edge
    via[~loop_free] = np.inf  # the score: inf where not loop-free
    best = via.argmin(axis=0)[None]
    best_via = np.take_along_axis(via, best, axis=0)[0]
    found = np.isfinite(best_via)
    cands = np.broadcast_to(cands, via.shape)
    backup = np.where(found, np.take_along_axis(cands, best, axis=0)[0], -1)
    kind = found.astype(np.int8) * LINK_PROTECTING
    # node-protecting: already so for most pairs; search again only where it is not. The
    # distances from p and from the backup follow from u's own row (p is u's next hop:
    # actual[u,d] = cost[u,p] + actual[p,d]), which is far cheaper than gathering them.
    with np.errstate(invalid="ignore"):  # inf - inf where there is no route
        a_pd = a_ud - cost[u, safe_p]
        a_bd = best_via - cost[u, np.maximum(backup, 0)]
    transit = found & (p != d)
    node = transit & (a_bd < dist[np.maximum(backup, 0), safe_p] + a_pd - margin)
    kind[node] = NODE_PROTECTING
    where = np.nonzero(transit & ~node)
    if len(where[0]):
        at = (slice(None), *where)
        v = cands[at]  # (k, q)
        sc = via[at]  # inf where not loop-free
        with np.errstate(invalid="ignore"):  # inf - inf: no link, stays excluded
            a_v = sc - np.broadcast_to(edge, via.shape)[at]
        sc[~(a_v < dist[v, safe_p[where]] + a_pd[where] - margin)] = np.inf
        bb = sc.argmin(axis=0)
        q = np.arange(len(bb))
        hit = np.isfinite(sc[bb, q])
        hit_at = tuple(a[hit] for a in where)
        backup[hit_at] = v[bb[hit], q[hit]]
        kind[hit_at] = NODE_PROTECTING
    return backup, kind


# -- incremental updates -------------------------------------------------------------------


def update_link(previous: RouteSet, graph: nx.DiGraph, src: str, dst: str) -> RouteSet:
    """The route set after one link's change (its cost in `graph`, or its absence), without a
    full recompute where it can: only the destinations whose shortest-path trees used the
    link (or that it now shortens) are recomputed, and the backups that depend on them.
    Zones whose node set changed, or that carry hysteresis state, are recomputed whole; the
    result equals a fresh `compute` on the new graph. Route sets computed with drained
    regions to avoid need a fresh `compute`."""
    zones = {}
    for name, z in previous.zones.items():
        if z.penalty is not None:
            raise ValueError("update_link cannot carry drained regions: use compute")
        nodes = sorted(n for n in graph.nodes if n in z.members)
        if nodes != z.nodes or not z.exact:
            # regions came or went, or hysteresis state is carried in: recompute whole
            full = cost_matrix(graph.subgraph(nodes), {n: i for i, n in enumerate(nodes)})
            zones[name] = compute_zone(name, z.members, nodes, full)
        elif src not in z.index or dst not in z.index:
            zones[name] = z
        else:
            u, v = z.index[src], z.index[dst]
            cost = z.cost.copy()
            cost[u, v] = graph.edges[src, dst]["cost"] if graph.has_edge(src, dst) else np.inf
            zones[name] = _update_zone(z, cost, u, v)
    return RouteSet(zones)


def _update_zone(z: ZoneRoutes, cost: np.ndarray, u: int, v: int) -> ZoneRoutes:
    moved = np.zeros(cost.shape, dtype=bool)
    moved[u, v] = True
    return update_zone(z, cost, moved, at_most=1.0, at_most_trees=1.0, fresh=True)


# -- failover plans ------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    zone: str
    src: str
    dst: str
    old_path: tuple[str, ...]
    new_path: tuple[str, ...] | None  # None: unreachable after the failure
    old_cost_ms: float
    new_cost_ms: float | None
    reason: str = ""

    def to_dict(self) -> dict:
        return {"zone": self.zone, "src": self.src, "dst": self.dst,
                "old_path": list(self.old_path),
                "new_path": list(self.new_path) if self.new_path else [],
                "old_cost_ms": round(self.old_cost_ms, 3),
                "new_cost_ms": None if self.new_cost_ms is None else round(self.new_cost_ms, 3),
                "delta_ms": None if self.new_cost_ms is None
                else round(self.new_cost_ms - self.old_cost_ms, 3),
                "reachable": self.new_path is not None, "reason": self.reason}


@dataclass(frozen=True)
class FailoverPlan:
    failure: str
    routes_total: int  # routes between surviving regions before the failure
    changes: list[Change]
    lost_endpoints: int  # routes from or to the failed region

    @property
    def unreachable(self) -> list[Change]:
        return [c for c in self.changes if c.new_path is None]


def plan_failover(graph: nx.DiGraph, policy: Policy, current: RouteSet,
                  region: str | None = None, link: tuple[str, str] | None = None,
                  zones: Iterable[str] | None = None,
                  hysteresis: Hysteresis = NO_HYSTERESIS,
                  avoid: frozenset[str] | set[str] = frozenset()) -> FailoverPlan:
    """What a region's (or a link's, both directions) failure does to the routes: which
    change, what replaces them, the latency change, which pairs become unreachable."""
    damaged = graph.copy()
    if region is not None:
        damaged.remove_node(region)
        failure = f"region {region}"
    elif link is not None:
        a, b = link
        damaged.remove_edges_from([(a, b), (b, a)])
        failure = f"link {a}-{b}"
    else:
        raise ValueError("a failover plan needs a region or a link")
    names = list(zones) if zones is not None else list(current.zones)
    # with the controller's hysteresis, only what the failure moves shows as a change
    after = compute(damaged, Policy({z: policy.zones[z] for z in names}), current, hysteresis,
                    avoid)
    changes, total, lost = [], 0, 0
    for name in names:
        before, now = current.zones[name], after.zones[name]
        for src in before.nodes:
            for route in before.rows(src):
                if region in (route.src, route.dst):
                    lost += 1
                    continue
                total += 1
                new = now.route(route.src, route.dst)
                if new is None:
                    changes.append(Change(name, route.src, route.dst, route.path, None,
                                          route.cost_ms, None,
                                          now.unreachable_reason(route.src, route.dst) or ""))
                elif new.path != route.path:
                    changes.append(Change(name, route.src, route.dst, route.path, new.path,
                                          route.cost_ms, new.cost_ms))
    return FailoverPlan(failure, total, changes, lost)
