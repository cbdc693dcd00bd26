"""What the EdgeResolver answers clients from (issue 16): the core's view of the mesh as edges
(skymesh/edgerank.py), indexed again within REINDEX_S, the client's token checked with its
app's public keys (its zone bounds the edges offered), and its address placed by the GeoIP
database when one is configured. Pure but for the database: explicit time, no store read on
the request path.

Speed (bench/resolver.py; 300 regions):
- a client costs a token lookup, a GeoIP lookup and, most often, a ranking already made:
  rankings are kept per (location, zone, count) until the index changes (clients share
  locations: a city, a network); the index keeps the clients' shortlists (by geography,
  most of a ranking's cost) while the same regions are usable: loads and the mesh's RTTs,
  which move every second, are read at each ranking;
- re-indexing reads the core on its event loop (the core is not thread-safe) and builds
  only what moved: the catalogue's places and zones once, a region's nodes when its
  sessions or their counters changed, the index when some region or measured link did;
- the shell (resolver_service.py) re-indexes on a timer of its own, in steps between which
  the event loop serves requests (`refresh_steps`); `resolve` re-indexes itself only when
  the index has grown older than `reindex_s` (nobody refreshed it: the pure core, tests).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from controller.core import Controller
from controller.topology import STATE_CODES
from skymesh import token as tokens
from skymesh.edgerank import EdgeIndex, EdgeNode, EdgeRegion, Location, RankedEdge
from skymesh.geoip import CityDatabase
from skymesh.linkstate import DEGRADED, UP

# loads move with every report; the index follows within this (the shell's timer refreshes
# it a little sooner, resolver_service.INDEX_AHEAD; a request finding it older does it)
REINDEX_S = 1.0
GEOIP_CHECK_S = 30.0  # how often the GeoIP database's file is looked at for an update
# tokens verified, kept until they expire: a client resolving again (hysteresis, an edge
# that died) costs a lookup, not an Ed25519 verification (~0.1 ms); forgotten all at once
# beyond this many, and whenever the apps' keys change
TOKENS_KEPT = 100_000
# rankings kept per index, by (location, zone, count, region): forgotten all at once beyond
# this many (about a kilobyte each), and with the index they were made from (every second
# or so in a live mesh: loads move)
RANKINGS_KEPT = 20_000
# regions read between two of a refresh's steps (refresh_steps): about 0.1 ms of the event
# loop's time on a quiet machine
REGIONS_PER_STEP = 50
MAX_EDGES = 16
DEFAULT_EDGES = 3
_UP, _DEGRADED = STATE_CODES[UP], STATE_CODES[DEGRADED]

RankingKey = tuple[Location | None, str, int, str]


@dataclass(frozen=True)
class Resolution:
    address: str
    location: Location | None
    zone: str
    edges: list[RankedEdge]  # may be shared with other resolutions: not to be changed


def region_zones(core: Controller) -> dict[str, frozenset[str]]:
    """Each region's residency zones (by the core's policy, fixed for its life)."""
    zones: dict[str, set[str]] = {}
    for z in core.policy.zones.values():
        for rid in z.regions:
            zones.setdefault(rid, set()).add(z.name)
    return {rid: frozenset(z) for rid, z in zones.items()}


def unusable_reason(core: Controller, rid: str) -> str:
    """Why region `rid` takes no clients now; "" if it does."""
    return ("no relay connected" if rid not in core.sessions
            else "drained" if rid in core.drained
            else "unreachable from several relays" if rid in core.unreachable
            else "")


def edge_regions(core: Controller, zones: dict[str, frozenset[str]] | None = None
                 ) -> list[EdgeRegion]:
    """Every region of the catalogue as a resolver offers it: its nodes' client edges and
    loads, its zones (`zones`: region_zones(core), if known), and why it takes no clients
    now, if it does not."""
    if zones is None:
        zones = region_zones(core)
    return [EdgeRegion(rid, region.lat, region.lon, edge_nodes(core, rid),
                       zones.get(rid, frozenset()), unusable_reason(core, rid))
            for rid, region in sorted(core.catalogue.items())]


def edge_nodes(core: Controller, rid: str) -> tuple[EdgeNode, ...]:
    """Region `rid`'s connected nodes with a client edge, and their loads."""
    return tuple(EdgeNode(s.relay.node_id, s.edge_addr, int(s.counters.get("edge.sessions", 0)))
                 for s in core.nodes.get(rid, {}).values() if s.edge_addr)


def measured_rtts(core: Controller, regions: list[EdgeRegion]) -> np.ndarray:
    """The relays' measured RTTs (minimum, what routing uses) between `regions`, NaN where a
    link is not measured up."""
    t = core.topology
    if len(regions) == len(t.names) and all(
            r.id == name for r, name in zip(regions, t.names, strict=True)):
        # the topology's own order (the catalogue's, sorted, as edge_regions gives): whole
        # arrays, no gather (a tenth of the cost at 300 regions)
        state, rtt = t.state, t.min_rtt
    else:
        idx = np.array([t.index[r.id] for r in regions], dtype=np.intp)
        state, rtt = t.state[np.ix_(idx, idx)], t.min_rtt[np.ix_(idx, idx)]
    ok = (state == _UP) | (state == _DEGRADED)
    ok &= rtt > 0
    return np.where(ok, rtt, np.nan)


class Resolver:
    def __init__(self, core: Controller, geoip: CityDatabase | None = None,
                 reindex_s: float = REINDEX_S, rankings_kept: int = RANKINGS_KEPT) -> None:
        """`rankings_kept`: how many rankings are kept per index (0: none, every client
        ranked afresh from its shortlist, which the index keeps)."""
        self.core = core
        self.geoip = geoip
        self.reindex_s = reindex_s
        self.rankings_kept = rankings_kept
        self.built_at = -np.inf
        self.checked_at = 0.0
        self.edges = EdgeIndex([])
        self.reindexed = 0  # indexes built (not counting refreshes that found nothing moved)
        self.rankings: dict[RankingKey, list[RankedEdge]] = {}  # of self.edges
        self.grants: dict[str, tokens.Grant] = {}
        self.keys = dict(core.apps)  # what the grants kept were verified with
        # the catalogue and the policy are fixed for the core's life: its regions in order,
        # their places and zones are indexed once, and their state follows
        self.zones = region_zones(core)
        self.ids = sorted(core.catalogue)
        # by region, in that order: the (session, counters) the nodes indexed were read from
        self.read: list[tuple] = [()] * len(self.ids)

    def refresh(self, now: float, older_than: float | None = None) -> bool:
        """Index the core's view again if the index is `older_than` (default reindex_s);
        True if it was looked at. The index (and the rankings made from it) is replaced only
        if something in it moved."""
        steps = self.refresh_steps(now, older_than)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def refresh_steps(self, now: float, older_than: float | None = None,
                      regions_per_step: int = REGIONS_PER_STEP) -> Generator[None, None, bool]:
        """`refresh` in steps of `regions_per_step` regions read: the shell's event loop
        serves requests between them (a whole re-indexing would hold it a few milliseconds
        with 300 regions' loads moved, and every request waiting behind). The regions are
        read a step apart (milliseconds); what was read is taken in only at the end, with
        the index, so that a refresh left unfinished leaves the resolver as it was (but
        for the time, which keeps another from starting meanwhile)."""
        if self.geoip is not None and now - self.checked_at >= GEOIP_CHECK_S:
            self.checked_at = now
            # rankings are by location, not address: those kept hold for the new database
            self.geoip.reload_if_changed()
        if now - self.built_at < (self.reindex_s if older_than is None else older_than):
            return False
        self.built_at = now
        old = self.edges
        if self.reindexed == 0:  # the first: the regions' places and zones as well
            listed = edge_regions(self.core, self.zones)
            self.read = [self.read_of(r.id) for r in listed]
            self.edges = EdgeIndex(listed, measured_rtts(self.core, listed))
        else:
            core, read = self.core, list(self.read)
            nodes, unusable = old.given_nodes, old.unusable
            for k, rid in enumerate(self.ids):
                if k and not k % regions_per_step:
                    yield
                reason = unusable_reason(core, rid)
                if reason != unusable[k]:
                    if unusable is old.unusable:
                        unusable = list(unusable)  # copied once something moved
                    unusable[k] = reason
                now_read = self.read_of(rid)
                if now_read != read[k]:  # sessions by identity, counters by value
                    read[k] = now_read
                    if nodes is old.given_nodes:
                        nodes = list(nodes)
                    nodes[k] = edge_nodes(core, rid)
            yield
            measured = measured_rtts(core, old.places)
            yield
            if old.measured is not None and np.array_equal(old.measured, measured,
                                                           equal_nan=True):
                # the index's own matrix: what it read of it stands
                measured = old.measured
                if nodes is old.given_nodes and unusable is old.unusable:
                    return True  # nothing moved: the index and its rankings stand
            self.edges = old.with_state(nodes, unusable, measured)
            self.read = read
        self.rankings = {}
        self.reindexed += 1
        return True

    def read_of(self, rid: str) -> tuple:
        """What region `rid`'s nodes are read from: its sessions and their counters (a
        report replaces a session's counters; a report of the same counters leaves them
        equal)."""
        here = self.core.nodes.get(rid)
        return tuple([(s, s.counters) for s in here.values()]) if here else ()

    def index(self, now: float) -> EdgeIndex:
        """The index, built again first if it is older than reindex_s."""
        self.refresh(now)
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

    def ranking(self, where: Location | None, zone: str, count: int, now: float,
                region: str = "") -> list[RankedEdge]:
        """The best `count` edges in `zone` (of `region` only, when given) for a client at
        `where`: as ranked before for the same location since the index last changed, else
        ranked now (and kept; the same list is given to every client it is for, not to be
        changed)."""
        edges = self.index(now)
        key = (where, zone, count, region)
        ranked = self.rankings.get(key)
        if ranked is None:
            ranked = edges.rank(where, zone, count, region)
            if self.rankings_kept > 0:
                if len(self.rankings) >= self.rankings_kept:
                    self.rankings = {}
                self.rankings[key] = ranked
        return ranked

    def resolve(self, token: str, address: str, count: int, now: float, unix: int,
                region: str = "") -> Resolution:
        """The edges for the client holding `token` at `address`, best first; of `region`
        only, when given (none when it takes no clients now or is outside the token's
        zone: the client decides whether another will do). TokenError for a token its
        app's keys do not verify (or expired)."""
        grant = self.grant(token, unix)
        where = self.geoip.locate(address) if self.geoip is not None else None
        count = min(MAX_EDGES, count or DEFAULT_EDGES)
        return Resolution(address, where, grant.zone,
                          self.ranking(where, grant.zone, count, now, region))
