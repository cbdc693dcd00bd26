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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from skymesh.geo import FIBER_KM_PER_MS, haversine_km

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
    """Where the client is: a GeoIP place (skymesh/geoip.py's Place has these fields)."""

    lat: float
    lon: float
    accuracy_km: float = 0.0
    country: str = ""
    city: str = ""


@dataclass(frozen=True)
class RankedEdge:
    region: str
    nodes: tuple[EdgeNode, ...]  # least loaded first
    distance_km: float | None  # from the client's location; None: no location
    rtt_ms: float | None  # estimated; None: no estimate
    reason: str
    load: int = field(default=0)  # the region's client sessions, all nodes


def geo_rtt_ms(distance_km: float) -> float:
    """A client's RTT over `distance_km` on the Internet, as estimated from geography."""
    return 2 * distance_km / FIBER_KM_PER_MS * PATH_INFLATION + LAST_MILE_MS


def rank(regions: Iterable[EdgeRegion], where: Location | None, *, zone: str = "",
         count: int = 3, measured: Callable[[str, str], float | None] | None = None,
         ) -> list[RankedEdge]:
    """The best `count` edges for a client at `where` (None: not known), of regions that
    take clients, have an edge, and belong to `zone` (empty: any). `measured(a, b)`: the
    mesh's RTT between two regions' relays, None where not measured."""
    regions = list(regions)
    usable = [r for r in regions
              if not r.unusable and r.nodes and (not zone or zone in r.zones)]
    if not usable or count <= 0:
        return []
    if where is None:
        ranked = sorted(usable, key=lambda r: (region_load(r), r.id))
        return [RankedEdge(r.id, by_load(r.nodes), None, None,
                           "no location for the client's address: usable, least loaded "
                           "first", region_load(r))
                for r in ranked[:count]]
    distance = {r.id: haversine_km(where.lat, where.lon, r.lat, r.lon) for r in regions}
    nearest = min(distance[r.id] for r in usable)
    # the regions that could be the nearest, given how far off the location may be
    shortlist = sorted((r for r in usable
                        if distance[r.id] <= nearest + 2 * where.accuracy_km),
                       key=lambda r: distance[r.id])
    if len(shortlist) < max(count, SHORTLIST_MIN):
        shortlist = sorted(usable, key=lambda r: distance[r.id])[:max(count, SHORTLIST_MIN)]
    # the region nearest the client, usable or not (a drained region's relay still measures)
    anchor = min(regions, key=lambda r: distance[r.id])
    anchored = measured is not None and distance[anchor.id] <= max(ANCHOR_KM,
                                                                    where.accuracy_km)
    place = where.city or where.country or f"{where.lat:.2f},{where.lon:.2f}"
    out = []
    for r in shortlist:
        rtt, how = geo_rtt_ms(distance[r.id]), "by distance"
        if anchored and r.id != anchor.id:
            via = measured(anchor.id, r.id)
            if via is not None:
                rtt = geo_rtt_ms(distance[anchor.id]) + via
                how = f"as measured from {anchor.id} ({via:.0f} ms)"
        out.append(RankedEdge(
            r.id, by_load(r.nodes), round(distance[r.id], 1), round(rtt, 1),
            f"client near {place} (within {where.accuracy_km:.0f} km): "
            f"{distance[r.id]:.0f} km, about {rtt:.0f} ms {how}", region_load(r)))
    out.sort(key=lambda e: (e.rtt_ms, e.load, e.region))
    return out[:count]


def region_load(r: EdgeRegion) -> int:
    return sum(n.load for n in r.nodes)


def by_load(nodes: Sequence[EdgeNode]) -> tuple[EdgeNode, ...]:
    return tuple(sorted(nodes, key=lambda n: (n.load, n.node_id)))
