"""What the EdgeResolver answers clients from (issue 16): the core's view of the mesh as edges
(skymesh/edgerank.py), indexed again at most every REINDEX_S, the client's token checked
with its app's public keys (its zone bounds the edges offered), and its address placed by
the GeoIP database when one is configured. Pure but for the database: explicit time, no
store read on the request path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controller.core import Controller
from controller.topology import STATE_CODES
from skymesh import token as tokens
from skymesh.edgerank import EdgeIndex, EdgeNode, EdgeRegion, Location, RankedEdge
from skymesh.geoip import CityDatabase
from skymesh.linkstate import DEGRADED, UP

REINDEX_S = 1.0  # loads move with every report; the index follows at most this often
GEOIP_CHECK_S = 30.0  # how often the GeoIP database's file is looked at for an update
# tokens verified, kept until they expire: a client resolving again (hysteresis, an edge
# that died) costs a lookup, not an Ed25519 verification (~0.1 ms); forgotten all at once
# beyond this many, and whenever the apps' keys change
TOKENS_KEPT = 100_000
MAX_EDGES = 16
DEFAULT_EDGES = 3
_MEASURED = (STATE_CODES[UP], STATE_CODES[DEGRADED])


@dataclass(frozen=True)
class Resolution:
    address: str
    location: Location | None
    zone: str
    edges: list[RankedEdge]


def edge_regions(core: Controller) -> list[EdgeRegion]:
    """Every region of the catalogue as a resolver offers it: its nodes' client edges and
    loads, its zones, and why it takes no clients now, if it does not."""
    zones: dict[str, set[str]] = {}
    for z in core.policy.zones.values():
        for rid in z.regions:
            zones.setdefault(rid, set()).add(z.name)
    out = []
    for rid, region in sorted(core.catalogue.items()):
        nodes = tuple(EdgeNode(s.relay.node_id, s.edge_addr,
                               int(s.counters.get("edge.sessions", 0)))
                      for s in core.region_sessions(rid) if s.edge_addr)
        unusable = ("no relay connected" if rid not in core.sessions
                    else "drained" if rid in core.drained
                    else "unreachable from several relays" if rid in core.unreachable
                    else "")
        out.append(EdgeRegion(rid, region.lat, region.lon, nodes,
                              frozenset(zones.get(rid, ())), unusable))
    return out


def measured_rtts(core: Controller, regions: list[EdgeRegion]) -> np.ndarray:
    """The relays' measured RTTs (minimum, what routing uses) between `regions`, NaN where a
    link is not measured up."""
    t = core.topology
    idx = np.array([t.index[r.id] for r in regions], dtype=np.intp)
    state = t.state[np.ix_(idx, idx)]
    rtt = t.min_rtt[np.ix_(idx, idx)].astype(float)
    ok = np.isin(state, _MEASURED) & (rtt > 0)
    return np.where(ok, rtt, np.nan)


class Resolver:
    def __init__(self, core: Controller, geoip: CityDatabase | None = None,
                 reindex_s: float = REINDEX_S) -> None:
        self.core = core
        self.geoip = geoip
        self.reindex_s = reindex_s
        self.built_at = -np.inf
        self.checked_at = 0.0
        self.edges = EdgeIndex([])
        self.grants: dict[str, tokens.Grant] = {}
        self.keys = dict(core.apps)  # what the grants kept were verified with

    def index(self, now: float) -> EdgeIndex:
        if self.geoip is not None and now - self.checked_at >= GEOIP_CHECK_S:
            self.checked_at = now
            self.geoip.reload_if_changed()
        if now - self.built_at >= self.reindex_s:
            regions = edge_regions(self.core)
            self.edges = EdgeIndex(regions, measured_rtts(self.core, regions))
            self.built_at = now
        return self.edges

    def grant(self, token: str, unix: int) -> tokens.Grant:
        """The token's grant, verified once and kept until it expires."""
        if self.keys != self.core.apps:
            self.grants, self.keys = {}, dict(self.core.apps)
        grant = self.grants.get(token)
        if grant is not None and grant.issued_at <= unix + tokens.CLOCK_SKEW_S \
                and unix < grant.expires_at:
            return grant
        grant = tokens.verify(token, self.core.apps, now=unix)
        if len(self.grants) >= TOKENS_KEPT:
            self.grants = {}
        self.grants[token] = grant
        return grant

    def resolve(self, token: str, address: str, count: int, now: float, unix: int
                ) -> Resolution:
        """The edges for the client holding `token` at `address`, best first. TokenError
        for a token its app's keys do not verify (or expired)."""
        grant = self.grant(token, unix)
        where = self.geoip.locate(address) if self.geoip is not None else None
        count = min(MAX_EDGES, count or DEFAULT_EDGES)
        return Resolution(address, where, grant.zone,
                          self.index(now).rank(where, grant.zone, count))
