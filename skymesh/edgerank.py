"""Which edges a client should try, best first: the resolver's ranking (controller replicas
answer it for clients; the SDK ranks the same way from a catalogue shipped with the
application when no resolver answers). Pure: the regions, where the client is, and the
mesh's measured latencies go in; ranked edges and why each was chosen come out.

The estimate of a client's RTT to a region:
- from geography, its GeoIP location's great-circle distance at the Internet's usual
  inflation over fiber (about 2x, WonderNetwork's measurements) plus a last mile;
- from the mesh, where it has measured: a client near a relay's region (its anchor) is as
  far from the other regions as that relay is, plus its own way to the anchor. Real paths
  bend (Jakarta to Sydney goes through Singapore), and the relays' probes know it.
GeoIP's accuracy radius makes the shortlist: every region that could be the nearest given
how far off the location may be is kept, ranked by the estimate, and ties go to the least
loaded. With no location the usable regions go by load, and the SDK's handshake race
decides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from skymesh.geo import EARTH_RADIUS_KM, FIBER_KM_PER_MS

PATH_INFLATION = 2.0  # Internet RTT over the fiber great-circle RTT, typical
LAST_MILE_MS = 5.0  # a client's own access network, both ways
ANCHOR_KM = 500.0  # a client this close to a region is taken to share its relay's paths
SHORTLIST_MIN = 4  # beyond the regions that could be nearest, at least this many are ranked
# shortlists kept (EdgeIndex.place) per index and the indexes of the same regions that share
# them (about a kilobyte each): forgotten all at once beyond this many
PLACEMENTS_KEPT = 20_000


@dataclass(frozen=True)
class EdgeNode:
    node_id: str
    address: str  # the node's QUIC client edge, host:port
    load: int = 0  # client sessions it holds, as it last reported


@dataclass(frozen=True)
class EdgeRegion:
    id: str
    lat: float
    lon: float
    nodes: tuple[EdgeNode, ...] = ()
    zones: frozenset[str] = frozenset()  # the residency zones it belongs to
    unusable: str = ""  # why it takes no clients now (not connected, drained, ...): "" none


@dataclass(frozen=True)
class Location:
    """Where the client is, as GeoIP places it (skymesh/geoip.py)."""

    lat: float
    lon: float
    accuracy_km: float = 0.0  # the radius around (lat, lon) it is within, likely
    country: str = ""  # ISO 3166-1 alpha-2
    city: str = ""


@dataclass(frozen=True)
class RankedEdge:
    region: str
    nodes: tuple[EdgeNode, ...]  # least loaded first
    distance_km: float | None  # from the client's location; None: no location
    rtt_ms: float | None  # estimated; None: no estimate
    reason: str
    load: int = field(default=0)  # the region's client sessions, all nodes


# a client's shortlist (EdgeIndex.place): the reasons' opening, the anchor region (its
# index), the client's RTT to it by geography if near enough to stand for the client (else
# None), and the regions (indexes) with their distances (km) and RTTs by geography
Placement = tuple[str, int, float | None, list[int], list[float], list[float]]


def geo_rtt_ms(distance_km: float | np.ndarray) -> float | np.ndarray:
    """A client's RTT over `distance_km` (a number or an array) on the Internet, as
    estimated from geography."""
    return 2 * distance_km / FIBER_KM_PER_MS * PATH_INFLATION + LAST_MILE_MS


class EdgeIndex:
    """The regions as arrays, built once (when the mesh changes) and ranked against for each
    client: a resolver sits in front of every join. Never changed once built (what it
    memoises is derived from it), so that it may be shared, and swapped whole; an index of
    the same regions in another state (`with_state`) shares what does not move."""

    def __init__(self, regions: Iterable[EdgeRegion],
                 measured: Callable[[str, str], float | None] | np.ndarray | None = None,
                 ) -> None:
        """`measured(a, b)`: the mesh's RTT between two regions' relays, None where not
        measured (read once, here); or those RTTs as a matrix over `regions`, NaN where
        not measured."""
        self._regions: list[EdgeRegion] | None = list(regions)
        # what does not move: the regions' places and zones
        self.places = self._regions
        n = len(self.places)
        self.ids = [r.id for r in self.places]
        # each region as a unit vector: a client's distance to all of them is one product
        self.xyz = unit_vectors(np.radians([r.lat for r in self.places]),
                                np.radians([r.lon for r in self.places]))
        self.zones: dict[str, np.ndarray] = {}
        for i, r in enumerate(self.places):
            for z in r.zones:
                self.zones.setdefault(z, np.zeros(n, dtype=bool))[i] = True
        self._set_state([r.nodes for r in self.places], [r.unusable for r in self.places],
                        _matrix(self.places, measured, copy=True))

    def with_state(self, nodes: Sequence[tuple[EdgeNode, ...]], unusable: Sequence[str],
                   measured: np.ndarray | None) -> EdgeIndex:
        """An index of the same regions (places and zones, in the same order) with these
        nodes, reasons not to take clients ("" none) and measured RTTs (a matrix, NaN where
        not measured: kept as given, not copied), as EdgeIndex would build from their
        EdgeRegions; what does not move is shared with this one (a resolver re-indexing
        every second pays for the state alone): the clients' shortlists too while the same
        regions are usable, and the measured RTTs read when `measured` is this index's own
        matrix."""
        if len(nodes) != len(self.ids) or len(unusable) != len(self.ids):
            raise ValueError(f"with_state: {len(self.ids)} regions' nodes and states expected")
        new = object.__new__(EdgeIndex)
        new._regions = None  # made when asked for
        new.places, new.ids, new.xyz, new.zones = self.places, self.ids, self.xyz, self.zones
        new._set_state(list(nodes), list(unusable), _matrix(self.places, measured, copy=False))
        if np.array_equal(new.usable, self.usable):
            # the same regions usable: the clients' shortlists (by geography) stand
            new.candidates, new.placements = self.candidates, self.placements
        if measured is self.measured:  # the same RTTs (the same matrix given)
            new.measured_rows = self.measured_rows
        return new

    def _set_state(self, nodes: list[tuple[EdgeNode, ...]], unusable: list[str],
                   measured: np.ndarray | None) -> None:
        self.given_nodes, self.unusable = nodes, unusable
        self.nodes = [by_load(ns) for ns in nodes]
        self.usable = np.array([not u and bool(ns) for ns, u in zip(nodes, unusable,
                                                                       strict=True)],
                               dtype=bool)
        # the loads as Python numbers too: a shortlist's few are read one by one (indexing a
        # list is a tenth of indexing an array)
        self.load_list = [float(sum(n.load for n in ns)) for ns in nodes]
        self.loads = np.array(self.load_list, dtype=float)
        self.measured = measured
        # memos, as first asked for: the candidates by zone (and region), the same least
        # loaded first (for clients that cannot be placed), the measured RTTs by anchor as
        # Python numbers, the clients' shortlists by (location, zone, region, length)
        self.candidates: dict[tuple[str, str], np.ndarray] = {}  # by (zone, region)
        self.by_load: dict[tuple[str, str], list[int]] = {}
        self.measured_rows: dict[int, list[float]] = {}
        self.placements: dict[tuple[Location, str, str, int], Placement] = {}

    @property
    def regions(self) -> list[EdgeRegion]:
        """The regions as indexed (their nodes as given)."""
        if self._regions is None:
            self._regions = [replace(p, nodes=ns, unusable=u) for p, ns, u in zip(
                self.places, self.given_nodes, self.unusable, strict=True)]
        return self._regions

    def distances_km(self, where: Location) -> np.ndarray:
        """Great-circle distances from `where` to every region (from the chord between unit
        vectors: as haversine, to well under a metre)."""
        lat, lon = math.radians(where.lat), math.radians(where.lon)
        v = np.array((math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon),
                      math.sin(lat)))
        chord = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (self.xyz @ v)))
        return 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, chord / 2))

    def zone_candidates(self, zone: str, region: str = "") -> np.ndarray:
        """The regions that take clients, have an edge, and belong to `zone` (empty: any),
        by index; of `region` only, when given."""
        candidates = self.candidates.get((zone, region))
        if candidates is None:
            ok = self.usable if not zone else self.usable & self.zones.get(
                zone, np.zeros(len(self.ids), dtype=bool))
            if region:
                ok = ok & (np.array(self.ids) == region)
            candidates = self.candidates[(zone, region)] = np.flatnonzero(ok)
        return candidates

    def rank(self, where: Location | None, zone: str = "", count: int = 3, region: str = ""
             ) -> list[RankedEdge]:
        """The best `count` edges for a client at `where` (None: not known), of regions
        that take clients, have an edge, and belong to `zone` (empty: any); of `region`
        only, when given (none if it takes no clients now or is outside the zone)."""
        candidates = self.zone_candidates(zone, region)
        if not len(candidates) or count <= 0:
            return []
        ids, loads = self.ids, self.load_list
        if where is None:
            order = self.by_load.get((zone, region))
            if order is None:
                order = self.by_load[(zone, region)] = sorted(
                    candidates.tolist(), key=lambda i: (loads[i], ids[i]))
            return [RankedEdge(ids[i], self.nodes[i], None, None,
                               "no location for the client's address: usable, least loaded "
                               "first", int(loads[i]))
                    for i in order[:count]]
        keep = max(count, SHORTLIST_MIN)
        key = (where, zone, region, keep)
        placed = self.placements.get(key)
        if placed is None:
            placed = self.place(where, candidates, keep)
            if len(self.placements) >= PLACEMENTS_KEPT:
                self.placements = {}
            self.placements[key] = placed
        near, anchor, base, shorts, ds, rtts = placed
        vias = [math.nan] * len(shorts)
        if base is not None and self.measured is not None:
            # the mesh's RTTs from the anchor (as Python numbers, by anchor, as first asked)
            row = self.measured_rows.get(anchor)
            if row is None:
                row = self.measured_rows[anchor] = self.measured[anchor].tolist()
            vias = [row[i] for i in shorts]
            rtts = [r if v != v else base + v for r, v in zip(rtts, vias, strict=True)]
        order = sorted(range(len(shorts)), key=lambda k: (
            rtts[k], loads[shorts[k]], ids[shorts[k]]))[:count]
        out = []
        for k in order:
            i = shorts[k]
            how = "by distance" if vias[k] != vias[k] else \
                f"as measured from {ids[anchor]} ({vias[k]:.0f} ms)"
            out.append(RankedEdge(
                ids[i], self.nodes[i], round(ds[k], 1), round(rtts[k], 1),
                f"{near}{ds[k]:.0f} km, about {rtts[k]:.0f} ms {how}", int(loads[i])))
        return out

    def place(self, where: Location, candidates: np.ndarray, keep: int) -> Placement:
        """The shortlist of `candidates` for a client at `where`, at least `keep` long, by
        geography alone: what ranks them but for the mesh's RTTs (read at each ranking: they
        move) and their loads (a tie's breaker)."""
        d = self.distances_km(where)
        dc = d[candidates]
        # the regions that could be the nearest, given how far off the location may be
        short = candidates[dc <= dc.min() + 2 * where.accuracy_km]
        if len(short) < keep:
            if keep < len(candidates):
                near = np.argpartition(dc, keep - 1)[:keep]
                short = candidates[near[np.argsort(dc[near], kind="stable")]]
            else:
                short = candidates[np.argsort(dc, kind="stable")]
        # the shortlist is a few regions: estimated in Python numbers (the same IEEE
        # arithmetic as numpy's, a microsecond less per operation on so few)
        ds = d[short].tolist()
        # the region nearest the client, usable or not (a drained region's relay measures),
        # if near enough to stand for the client's paths
        anchor = int(d.argmin())
        d_anchor = float(d[anchor])
        base = geo_rtt_ms(d_anchor) if d_anchor <= max(ANCHOR_KM, where.accuracy_km) \
            else None
        place = where.city or where.country or f"{where.lat:.2f},{where.lon:.2f}"
        return (f"client near {place} (within {where.accuracy_km:.0f} km): ", anchor, base,
                short.tolist(), ds, [geo_rtt_ms(x) for x in ds])


def rank(regions: Iterable[EdgeRegion], where: Location | None, *, zone: str = "",
         count: int = 3, measured: Callable[[str, str], float | None] | None = None,
         region: str = "") -> list[RankedEdge]:
    """`EdgeIndex(regions, measured).rank(where, zone, count, region)`, for one client."""
    return EdgeIndex(regions, measured).rank(where, zone, count, region)


def _matrix(regions: Sequence[EdgeRegion],
            measured: Callable[[str, str], float | None] | np.ndarray | None, copy: bool,
            ) -> np.ndarray | None:
    """The measured RTTs between `regions` as a matrix, NaN where not measured (a matrix
    given: as floats, copied if `copy`)."""
    n = len(regions)
    if isinstance(measured, np.ndarray):
        if measured.shape != (n, n):
            raise ValueError(f"measured: a {n}x{n} matrix expected, not {measured.shape}")
        return measured.astype(float, copy=copy)
    if measured is None:
        return None
    m = np.full((n, n), np.nan)
    for i, a in enumerate(regions):
        for j, b in enumerate(regions):
            if i != j and (v := measured(a.id, b.id)) is not None:
                m[i, j] = v
    return m


def unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Points on the sphere (radians) as unit vectors, one a row."""
    cos_lat = np.cos(lat)
    return np.stack([cos_lat * np.cos(lon), cos_lat * np.sin(lon), np.sin(lat)], axis=-1)


def region_load(r: EdgeRegion) -> int:
    return sum(n.load for n in r.nodes)


def by_load(nodes: Sequence[EdgeNode]) -> tuple[EdgeNode, ...]:
    if len(nodes) < 2:  # most regions: one node, nothing to sort
        return tuple(nodes)
    return tuple(sorted(nodes, key=lambda n: (n.load, n.node_id)))
