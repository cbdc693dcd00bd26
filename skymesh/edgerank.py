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
from dataclasses import dataclass, field

import numpy as np

from skymesh.geo import EARTH_RADIUS_KM, FIBER_KM_PER_MS

PATH_INFLATION = 2.0  # Internet RTT over the fiber great-circle RTT, typical
LAST_MILE_MS = 5.0  # a client's own access network, both ways
ANCHOR_KM = 500.0  # a client this close to a region is taken to share its relay's paths
SHORTLIST_MIN = 4  # beyond the regions that could be nearest, at least this many are ranked


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


def geo_rtt_ms(distance_km: float | np.ndarray) -> float | np.ndarray:
    """A client's RTT over `distance_km` (a number or an array) on the Internet, as
    estimated from geography."""
    return 2 * distance_km / FIBER_KM_PER_MS * PATH_INFLATION + LAST_MILE_MS


class EdgeIndex:
    """The regions as arrays, built once (when the mesh changes) and ranked against for each
    client: a resolver sits in front of every join."""

    def __init__(self, regions: Iterable[EdgeRegion],
                 measured: Callable[[str, str], float | None] | np.ndarray | None = None,
                 ) -> None:
        """`measured(a, b)`: the mesh's RTT between two regions' relays, None where not
        measured (read once, here); or those RTTs as a matrix over `regions`, NaN where
        not measured."""
        self.regions = list(regions)
        n = len(self.regions)
        self.ids = [r.id for r in self.regions]
        self.nodes = [by_load(r.nodes) for r in self.regions]
        # each region as a unit vector: a client's distance to all of them is one product
        self.xyz = unit_vectors(np.radians([r.lat for r in self.regions]),
                                np.radians([r.lon for r in self.regions]))
        self.usable = np.array([not r.unusable and bool(r.nodes) for r in self.regions],
                               dtype=bool)
        self.loads = np.array([region_load(r) for r in self.regions], dtype=float)
        self.zones: dict[str, np.ndarray] = {}
        for i, r in enumerate(self.regions):
            for z in r.zones:
                self.zones.setdefault(z, np.zeros(n, dtype=bool))[i] = True
        self.candidates: dict[str, np.ndarray] = {}  # by zone, as first asked for
        self.measured: np.ndarray | None = None
        if isinstance(measured, np.ndarray):
            if measured.shape != (n, n):
                raise ValueError(f"measured: a {n}x{n} matrix expected, not {measured.shape}")
            self.measured = measured.astype(float)
        elif measured is not None:
            m = np.full((n, n), np.nan)
            for i, a in enumerate(self.regions):
                for j, b in enumerate(self.regions):
                    if i != j and (v := measured(a.id, b.id)) is not None:
                        m[i, j] = v
            self.measured = m

    def distances_km(self, where: Location) -> np.ndarray:
        """Great-circle distances from `where` to every region (from the chord between unit
        vectors: as haversine, to well under a metre)."""
        lat, lon = math.radians(where.lat), math.radians(where.lon)
        v = np.array((math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon),
                      math.sin(lat)))
        chord = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (self.xyz @ v)))
        return 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, chord / 2))

    def rank(self, where: Location | None, zone: str = "", count: int = 3
             ) -> list[RankedEdge]:
        """The best `count` edges for a client at `where` (None: not known), of regions
        that take clients, have an edge, and belong to `zone` (empty: any)."""
        candidates = self.candidates.get(zone)
        if candidates is None:
            ok = self.usable if not zone else self.usable & self.zones.get(
                zone, np.zeros(len(self.regions), dtype=bool))
            candidates = self.candidates[zone] = np.flatnonzero(ok)
        if not len(candidates) or count <= 0:
            return []
        if where is None:
            order = sorted(candidates, key=lambda i: (self.loads[i], self.ids[i]))
            return [RankedEdge(self.ids[i], self.nodes[i], None, None,
                               "no location for the client's address: usable, least loaded "
                               "first", int(self.loads[i]))
                    for i in order[:count]]
        d = self.distances_km(where)
        dc = d[candidates]
        # the regions that could be the nearest, given how far off the location may be
        short = candidates[dc <= dc.min() + 2 * where.accuracy_km]
        keep = max(count, SHORTLIST_MIN)
        if len(short) < keep:
            if keep < len(candidates):
                near = np.argpartition(dc, keep - 1)[:keep]
                short = candidates[near[np.argsort(dc[near], kind="stable")]]
            else:
                short = candidates[np.argsort(dc, kind="stable")]
        rtt = geo_rtt_ms(d[short])
        via = np.full(len(short), np.nan)
        # the region nearest the client, usable or not (a drained region's relay measures)
        anchor = int(np.argmin(d))
        if self.measured is not None and d[anchor] <= max(ANCHOR_KM, where.accuracy_km):
            via = self.measured[anchor, short]
            rtt = np.where(np.isnan(via), rtt, geo_rtt_ms(d[anchor]) + via)
        rtts, vias, loads = rtt.tolist(), via.tolist(), self.loads[short].tolist()
        shorts, ds = short.tolist(), d[short].tolist()
        order = sorted(range(len(shorts)), key=lambda k: (
            rtts[k], loads[k], self.ids[shorts[k]]))[:count]
        place = where.city or where.country or f"{where.lat:.2f},{where.lon:.2f}"
        near = f"client near {place} (within {where.accuracy_km:.0f} km): "
        out = []
        for k in order:
            i = shorts[k]
            how = "by distance" if vias[k] != vias[k] else \
                f"as measured from {self.ids[anchor]} ({vias[k]:.0f} ms)"
            out.append(RankedEdge(
                self.ids[i], self.nodes[i], round(ds[k], 1), round(rtts[k], 1),
                f"{near}{ds[k]:.0f} km, about {rtts[k]:.0f} ms {how}", int(loads[k])))
        return out


def rank(regions: Iterable[EdgeRegion], where: Location | None, *, zone: str = "",
         count: int = 3, measured: Callable[[str, str], float | None] | None = None,
         ) -> list[RankedEdge]:
    """`EdgeIndex(regions, measured).rank(where, zone, count)`, for one client."""
    return EdgeIndex(regions, measured).rank(where, zone, count)


def unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Points on the sphere (radians) as unit vectors, one a row."""
    cos_lat = np.cos(lat)
    return np.stack([cos_lat * np.cos(lon), cos_lat * np.sin(lon), np.sin(lat)], axis=-1)


def region_load(r: EdgeRegion) -> int:
    return sum(n.load for n in r.nodes)


def by_load(nodes: Sequence[EdgeNode]) -> tuple[EdgeNode, ...]:
    return tuple(sorted(nodes, key=lambda n: (n.load, n.node_id)))
