"""The controller without its network: relays connect, report links, acknowledge tables and
report channels and events; the core keeps the topology, computes routes, and tells each
relay what to send it through the callback the relay's session gave when it connected.

No gRPC, no asyncio and no clock: every method that needs the time takes it (`now`, the
monotonic clock of the shell, and `unix`, its wall clock, for the event log), so a test or
an in-memory mesh drives it on a virtual clock. controller/relay_service.py and
controller/admin_service.py translate the wire to these calls; controller/server.py wires
them and runs the recompute loop.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

import networkx as nx
import numpy as np

from controller import engine, routing
from controller.distribution import Distribution, Push, RelayRoutes
from controller.engine import FailoverPlan, Route
from controller.fabrickeys import Change, KeyRing
from controller.membership import Channel, Interest, Members, Membership
from controller.routing import CostModel, Hysteresis
from controller.store import AuditEntry, ControllerState, MemoryStore, Store
from controller.topology import LinkRecord, Relay, SampleBatch, Topology
from skymesh.catalogue import Region
from skymesh.edgeproto import MAX_CHANNEL_ID
from skymesh.geo import nearest_regions
from skymesh.linkstate import LINK, PROTOCOL_BY_CHANGE, PROTOCOL_TABLE_CHANGES
from skymesh.metrics import Histogram
from skymesh.nodes import address, parse, region_of, transit_weights
from skymesh.policy import Policy
from skymesh.ratelimit import TokenBucket

log = logging.getLogger("skymesh.controller")

MAX_EVENT_KINDS = 48  # distinct event kinds counted by name (relay/ and controller/ have ~20)
MAX_PUSHES_TIMED = 16  # versions a session keeps push times of (as the distribution's cap)


@dataclass(frozen=True)
class Settings:
    # how relays probe and judge links (skymesh.linkstate), handed to every relay
    probe_interval_s: float = LINK.probe_interval_s
    neighbour_probe_interval_s: float = LINK.neighbour_probe_interval_s
    down_after: int = LINK.down_after
    degraded_loss: float = LINK.degraded_loss
    degraded_jitter_ms: float = LINK.degraded_jitter_ms
    report_interval_s: float = 1.0
    recompute_interval_s: float = 0.5
    stale_after_s: float = 5.0
    settle_samples: int = LINK.settle_samples  # replies before a link counts as measured
    # relays of protocol 2 report links by change, with a full report this often (and the
    # thresholds, skymesh/linkstate.py); their links stay this long and stale_after_s more
    # without a report
    full_report_interval_s: float = LINK.full_report_interval_s
    report_rtt_fraction: float = LINK.report_rtt_fraction
    report_rtt_ms: float = LINK.report_rtt_ms
    report_loss: float = LINK.report_loss
    # beyond this many relays, each measures its `nearest` regions continuously, the others
    # its routes use, and the rest by a rotating sample (every sample_every_s)
    partial_mesh_above: int = LINK.partial_mesh_above
    nearest: int = LINK.nearest
    sample_every_s: float = LINK.sample_every_s
    report_delays_kept: int = 4096  # recent reports' delays, for status
    # link cost changes below this fraction, or below dead_band_ms, do not recompute routes:
    # a short link's cost moves by more than 2% with scheduling noise alone, and a mesh of
    # 45 relays always had some link that did (a full recompute every interval)
    dead_band: float = 0.02
    dead_band_ms: float = 1.0
    # when some links came, went or moved by more than this fraction, a round takes in those
    # alone and the others (measurement noise beyond the dead band, thousands of links a
    # round at a thousand relays) the round after: a link that moves far is not computed
    # with a whole round of noise, which can cost the zone computed whole
    far_move: float = 0.25
    cost: CostModel = CostModel()
    hysteresis: Hysteresis = Hysteresis()
    # channel members are held back this long after a start, or until every region's relay
    # is back, so relays that reconnect first are not told that the others' subscribers left
    members_hold_s: float = 6.0
    # after a restart among relays that still forward on tables (static stability), no new
    # tables until every region's relay is back and measured, or this long: tables computed
    # from half the mesh would take routes away that still work
    resync_hold_s: float = 15.0
    # ... or, every region back and each relay's first report in, this long after the last
    # came back: a link a relay left out of its first report (not measured at the time)
    # comes in its later ones, and is no reason to hold every table for them
    resync_grace_s: float = 1.0
    # after a cold start (no relay holds tables), the first routes wait until every
    # connected relay has measured its links, or this long: routes of a partial measurement
    # change every round, and at a thousand relays each round's tables cost the controller
    # the seconds its measurement waits for (the reports it takes in late)
    first_routes_hold_s: float = 60.0
    # a changed row waits for its new next hop to have installed a working row of its own
    # (controller/ordering.py), at most this long
    order_hold_s: float = 1.0
    max_events: int = 10000  # relay events kept for `admin events` and drills
    # a relay sends a report a second, an ACK per push, and bursts when links change;
    # beyond this, its messages are dropped (counted as refused relay-rate)
    relay_messages_per_s: float = 50.0
    relay_messages_burst: float = 500.0
    # fabric keys (controller/fabrickeys.py): a rotation starts this often (0: only when an
    # operator asks); each phase lasts fabric_key_overlap_s, long beside a push's latency
    fabric_key_rotation_s: float = 24 * 3600.0
    fabric_key_overlap_s: float = 5.0
    # how often the nodes of a region are weighted again for the transit they take, by the
    # client sessions they hold (skymesh/nodes.py); a weight that moved is sent to every relay
    transit_weights_every_s: float = 10.0


# -- what relays send (as the relay service translates it from the wire) --------------------


@dataclass(frozen=True)
class Hello:
    region: str
    node_id: str
    probe_addr: str
    route_version: int = 0  # version of the tables the relay holds (0: none)
    edge_addr: str = ""
    protocol: int = 0  # PROTOCOL_BY_CHANGE: peer lists and reports by change
    metrics_addr: str = ""  # its Prometheus metrics ("": not served)
    health_addr: str = ""  # its gRPC health service ("": not served)


@dataclass(frozen=True)
class RelayEvent:
    """What a relay noticed and did on its own; times are the relay's wall clock."""

    at_unix_s: float
    kind: str
    peer: str = ""
    routes: int = 0
    detail: str = ""


@dataclass(frozen=True)
class Event:
    """An event as `admin events` lists it: the relay's (or the controller's own)."""

    region: str  # the relay that reported it, or "controller"
    event: RelayEvent
    received_unix_s: float


# -- what the controller sends relays -------------------------------------------------------


@dataclass(frozen=True)
class Peers:
    """The relays to probe, and how to probe and judge links."""

    # (region, probe address, node id): every node of every region but the receiver (of its
    # own region: its siblings); for relays of protocol < 2 one node per region, no node id
    peers: tuple[tuple[str, str, str], ...]
    probe_interval_s: float
    report_interval_s: float
    neighbour_probe_interval_s: float
    down_after: int
    degraded_loss: float
    degraded_jitter_ms: float
    # protocol 2 only (for older relays these stay empty: they would take a change for the
    # whole list)
    near: frozenset[str] = frozenset()  # of `peers`, the relay's nearest regions
    incremental: bool = False  # `peers` are changes to the list, `removed` left it
    removed: tuple[str, ...] = ()  # regions (every node) or nodes ("region/node")
    full_report_interval_s: float = 0.0
    report_rtt_fraction: float = 0.0
    report_rtt_ms: float = 0.0
    report_loss: float = 0.0
    partial_mesh_above: int = 0
    sample_every_s: float = 0.0
    # of `peers`, the nodes whose share of their region's transit is not 1, by address
    # ("region/node")
    weights: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RelayConfig:
    # app id -> its raw Ed25519 public keys: relays verify tokens but cannot mint them
    app_keys: Mapping[str, tuple[bytes, ...]]
    fabric_key: bytes  # seals
    accepted_keys: tuple[tuple[int, bytes], ...]  # (epoch, key): the others accepted
    zones: tuple[str, ...]
    drained: bool
    fabric_epoch: int = 0  # fabric_key's


@dataclass(frozen=True)
class Chaos:
    drop_peers: tuple[str, ...] = ()
    drop_all: bool = False
    until_unix_s: float = 0.0


@dataclass(frozen=True)
class Computed:
    """What a route computation gives (controller.begin_recompute's job)."""

    routes: engine.RouteSet
    patches: dict[str, dict[tuple[str, str], Route]]  # the relays whose rows changed: all


def changed_rows(old: engine.RouteSet, new: engine.RouteSet,
                 rows: Mapping[str, Mapping[tuple[str, str], Route]],
                 regions: Iterable[str], bulk_column: int = 8
                 ) -> dict[str, dict[tuple[str, str], Route]]:
    """The rows of each of `regions` after `old` became `new`, for the regions whose paths
    or backups changed only. Only the rows whose path or backup may have changed
    (`engine.changed_pairs`) are materialised again, so a round that moves a few trees costs
    the rows along them, not every row of every relay; a destination more than
    1/`bulk_column` of whose rows may have changed is built as a column (one walk of its
    tree of next hops). A region new to a zone is built whole; rows to regions that left go,
    rows that appear go at the end (the order a relay's rows are pushed in means nothing).
    Costs of rows whose path did not change are left as they were computed: they drift with
    every sample."""
    changed = {name: engine.changed_pairs(old.zones.get(name), z)
               for name, z in new.zones.items()}
    gone = [name for name in old.zones if name not in new.zones]
    left = {(name, n) for name, z in new.zones.items() if name in old.zones
            for n in old.zones[name].nodes if n not in z.index}
    bulk = {name: set(c.columns[c.rows.sum(axis=0) * bulk_column > len(new.zones[name].nodes)]
                      .tolist()) for name, c in changed.items() if c is not None}
    out: dict[str, dict[tuple[str, str], Route]] = {}
    built: dict[tuple[str, int], list[Route | None]] = {}  # each bulk column, once
    whole_regions = []
    for region in regions:
        current = rows.get(region)
        whole = current is None or bool(gone) or any(
            c is None and region in new.zones[name].index
            or region in new.zones[name].index and region not in old.zones[name].index
            for name, c in changed.items())
        if whole:
            whole_regions.append(region)
            continue
        assert current is not None
        patched: dict[tuple[str, str], Route] | None = None
        if left and any(key in current for key in left):
            patched = {k: r for k, r in current.items() if k not in left}
        for name, c in changed.items():
            z = new.zones[name]
            if c is None or region not in z.index or not len(c.columns):
                continue
            u = z.index[region]
            for k in np.flatnonzero(c.rows[u]).tolist():
                d = int(c.columns[k])
                if d in bulk[name]:
                    if (name, d) not in built:
                        built[(name, d)] = z.column(d)
                    r = built[(name, d)][u]
                else:
                    r = z.route(region, z.nodes[d])
                key = (name, z.nodes[d])
                was = current.get(key)
                if r is None and was is None:
                    continue
                if r is None or was is None or r.path != was.path \
                        or r.backup_next_hop != was.backup_next_hop:
                    if patched is None:
                        patched = dict(current)
                    if r is None:
                        del patched[key]
                    else:
                        patched[key] = r
        if patched is not None:
            out[region] = patched
    for region, table in new.tables(whole_regions).items():
        out[region] = {(r.zone, r.dst): r for r in table}
    return out


SLOW_ROUND_S = 0.5  # a route computation this long is logged
MAX_EVENT_TEXT = 256  # characters of a relay event's kind and peer kept; its detail: 4x


def kept_event(e: RelayEvent, unix: float) -> RelayEvent:
    """A relay's event as the log keeps it: a time that is no number (NaN, infinite) becomes
    the time it was received, and texts are cut to MAX_EVENT_TEXT (4x for the detail)."""
    at = e.at_unix_s if math.isfinite(e.at_unix_s) else unix
    return RelayEvent(at_unix_s=at, kind=e.kind[:MAX_EVENT_TEXT], peer=e.peer[:MAX_EVENT_TEXT],
                      routes=e.routes, detail=e.detail[:4 * MAX_EVENT_TEXT])


Message = Peers | RelayConfig | Push | Members | Chaos
Send = Callable[[Message | None], None]  # None: end the session


@dataclass(eq=False)
class Session:
    """A connected relay as the core sees it; `send` reaches that one session."""

    relay: Relay
    send: Send
    routes: RelayRoutes
    edge_addr: str = ""
    metrics_addr: str = ""  # where its Prometheus metrics are scraped ("": not served)
    health_addr: str = ""  # where its gRPC health service answers ("": not served)
    # when each version not acknowledged yet was pushed (lead sessions), for push-to-ACK
    pushed_at: dict[int, float] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)  # the relay's, as last reported
    bucket: TokenBucket | None = None  # its messages' flood limit
    protocol: int = 0
    peers_known: int = 0  # the peer changes its whole list held (Controller.send_peers)
    # it forwards on its peer list from before this controller (a restart, a new leader):
    # it gets its whole list once every relay is back (Controller.resyncing), not one
    # missing the relays not back yet (which would stop it measuring them) on connect
    peers_deferred: bool = False
    reported: bool = False  # a report of its links came in on this session
    replica: str = ""  # the controller replica holding its session ("": no replicas)

    @property
    def node(self) -> str:
        """The relay node's address, "region/node" (skymesh/nodes.py)."""
        return address(self.relay.region, self.relay.node_id)


# -- what admin queries get -----------------------------------------------------------------


class Refused(Exception):
    """An admin request the core does not carry out; the subclass says why, the message
    says what (the admin service turns the kind into a status code)."""


class NotFound(Refused):
    """A region or zone the catalogue or policy does not have."""


class NotReady(Refused):
    """The request is sound but the mesh is not in a state to serve it."""


class BadRequest(Refused):
    """The request itself is incomplete."""


@dataclass(frozen=True)
class Status:
    relays: int
    regions: int
    route_version: int
    converged: bool
    links_up: int
    links_measured: int
    links_expected: int
    relays_acked: int
    uptime_s: float
    converged_for_s: float
    rejected_samples: int
    rejected_tables: int
    refused: Mapping[str, int]  # sessions and calls refused, by kind
    reports: int = 0  # link reports taken in since the start
    samples: int = 0  # link samples in them
    reports_coalesced: int = 0  # reports merged into a newer one before they were taken in
    # how late reports are taken in (their send time to now, on the relays' clocks), over
    # the recent ones: a backlog shows here
    report_delay_p50_ms: float = 0.0
    report_delay_p99_ms: float = 0.0
    report_delay_max_ms: float = 0.0
    recomputes: int = 0  # route computations since the start
    recompute_ms: float = 0.0  # the last one's duration
    partial_mesh: bool = False  # relays measure their nearest regions and a sample


@dataclass(frozen=True)
class LinkView:
    record: LinkRecord
    age_s: float
    cost_ms: float
    suppressed: bool


@dataclass(frozen=True)
class PathAnswer:
    src: str
    dst: str
    version: int
    zone: str
    path: tuple[str, ...] = ()
    cost_ms: float = 0.0
    reachable: bool = False
    backup_next_hop: str = ""
    backup_kind: str = "none"
    reason: str = ""


@dataclass(frozen=True)
class ChannelView:
    zone: str
    channel: str
    publisher_regions: list[str]
    subscriber_regions: list[str]
    subscriber_nodes: list[str] = field(default_factory=list)  # by address, "region/node"


class Controller:
    """Topology, routes, what each relay was pushed, channel members, drains and events."""

    def __init__(self, catalogue: Mapping[str, Region], policy: Policy,
                 settings: Settings = Settings(),
                 apps: Mapping[str, tuple[bytes, ...]] | None = None,
                 fabric_keys: list[bytes] | None = None, store: Store | None = None, *,
                 now: float, wake: Callable[[], None] = lambda: None) -> None:
        self.catalogue = dict(catalogue)
        # what the operator changed (drains), kept across restarts
        self.store: Store = store if store is not None else MemoryStore()
        state = self.store.load(self.catalogue)
        self.drained: set[str] = set(state.drained)
        self.apps = {app: tuple(keys) for app, keys in (apps or {}).items()}
        if not all(isinstance(k, bytes) for keys in self.apps.values() for k in keys):
            raise TypeError("apps maps an app id to a sequence of raw public keys (bytes)")
        # the first key seals; the others are still accepted; rotated on schedule
        self.keyring = self._keyring(state.fabric_keys, fabric_keys, settings, now)
        self.settings = settings
        self.wake = wake  # asks the shell to recompute now rather than at the next interval
        self.started = now
        self.topology = Topology(self.catalogue, settings.stale_after_s,
                                 settings.settle_samples)
        # each region's nearest others, which its relay measures at all times
        self.near = nearest_regions(self.catalogue, settings.nearest)
        index = self.topology.index
        self.near_mask = np.zeros((len(index), len(index)), dtype=bool)
        for region, near in self.near.items():
            self.near_mask[index[region], [index[n] for n in near]] = True
        # each region's lead node: the one whose link reports route the region
        self.sessions: dict[str, Session] = {}
        # every connected node, by region and node id, in the order they connected
        self.nodes: dict[str, dict[str, Session]] = {}
        self.distribution = Distribution(settings.order_hold_s)
        self.membership = Membership(len(self.catalogue), settings.members_hold_s, now)
        self.policy = policy.restrict(self.catalogue)
        # the link costs the routes in force were computed from (over the catalogue's
        # regions, inf: no usable link): what a report is compared with for the dead band
        n = len(self.topology.names)
        self.computed = np.full((n, n), np.inf)
        self.computed_nodes: list[str] = []
        self.routes = engine.compute_costs([], np.zeros((0, 0)), self.policy)
        self.tables: dict[str, list[Route]] = {}  # each relay's rows
        # the same rows by (zone, destination), patched where the routes changed
        self.rows: dict[str, dict[tuple[str, str], Route]] = {}
        self.changed: set[str] | None = set()  # relays whose rows changed (None: all)
        self.latest = self.computed  # the link costs as last measured
        self.suppressed: frozenset[tuple[str, str]] = frozenset()  # links being damped
        self.pushed = False  # whether the last round pushed anything
        # connects and disconnects not yet told to relays of protocol 2 (flush_peers)
        self.peers_added: dict[str, int] = {}  # node address -> the change's number
        self.peers_removed: dict[str, int] = {}
        self.peer_changes = 0
        # each node's share of its region's transit, where it is not 1, by address; and
        # when the nodes are weighted next
        self.transit_weights: dict[str, float] = {}
        self.weights_due = now
        self.was_partial = False
        self.computing = False  # a route computation is under way (off the shell's loop)
        self.recomputes = 0
        self.recompute_ms = 0.0
        self.recompute_seconds = Histogram()  # every round's duration, for the metrics
        self.push_ack_seconds = Histogram()  # from a table's push to its relay's ACK
        self.event_counts: Counter[str] = Counter()  # events by kind since start
        self.round_moved = -1  # links the round under way took in (-1: computed whole)
        self.reports = 0
        self.samples_taken = 0
        self.reports_coalesced = 0
        self.report_delays: deque[float] = deque(maxlen=settings.report_delays_kept)
        self.routes_complete = False  # computed when every relay had measured all its links
        self.dirty = True
        self.converged_since: float | None = None
        self.rejected_tables = 0
        self.warm = False  # some relay held tables when it connected: resynchronising
        self.peers_due = False  # resynchronised: the peer lists held back go next round
        self.back_at: float | None = None  # every region was back (resynchronising)
        self.first_routes_done = False  # the first routes are no longer held back
        self.avoid_changed = False
        # regions that several relays report down: carry no transit until they are back
        self.unreachable: frozenset[str] = frozenset()
        self.events: deque[Event] = deque(maxlen=settings.max_events)
        self.refused: Counter[str] = Counter()  # sessions and calls refused, by kind

    @property
    def version(self) -> int:
        """The route-set version last pushed (or held by a relay that connected)."""
        return self.distribution.version

    # -- relay sessions --------------------------------------------------------------------

    def connect(self, hello: Hello, send: Send, now: float, unix: float) -> Session:
        """A relay node's session begins. The first node of a region leads it (its reports
        route the region); another node of the region follows, and takes over when the lead
        leaves. A node that connects again replaces its earlier session."""
        relay = Relay(hello.region, hello.node_id, hello.probe_addr, now, hello.route_version)
        region = relay.region
        here = self.nodes.setdefault(region, {})
        old = here.pop(relay.node_id, None)
        if old is not None:
            log.info("%s: node %s connects again: its earlier session ends", region,
                     relay.node_id)
            old.send(None)
        bucket = TokenBucket(self.settings.relay_messages_per_s,
                             self.settings.relay_messages_burst, now)
        lead = self.sessions.get(region)
        follows = lead is not None and lead is not old
        if follows:
            routes = RelayRoutes(region)
        else:
            # versions only grow, across controller restarts too
            routes = self.distribution.attach(
                region, hello.route_version, changes=hello.protocol >= PROTOCOL_TABLE_CHANGES)
        session = Session(relay, send, routes, edge_addr=hello.edge_addr, bucket=bucket,
                          protocol=hello.protocol, metrics_addr=hello.metrics_addr,
                          health_addr=hello.health_addr)
        here[relay.node_id] = session
        self.membership.connect(session.node)
        if follows:
            self.send_peers(added=session)
            session.send(self.config_for(region))
            self.send_table(session)
        else:
            self.topology.add_relay(relay, self.stale_for(hello.protocol,
                                                          len(self.sessions) + 1))
            self.sessions[region] = session
            if hello.route_version and not self.tables:
                self.warm = True  # relays run on tables from before this controller started
            session.peers_deferred = self.warm and hello.route_version > 0 and \
                hello.protocol >= PROTOCOL_BY_CHANGE
            self.send_peers(added=session)
            session.send(self.config_for(region))
            self.dirty = True
        role = f"follows {lead.relay.node_id}" if follows else "leads"
        self.record("relay-connected", region,
                    f"{relay.node_id}, holding routes v{hello.route_version}"
                    + (f", {role}" if len(here) > 1 else ""), unix=unix)
        log.info("%s: relay %s connected from %s (holds routes v%d)%s", region,
                 relay.node_id, relay.probe_addr, hello.route_version,
                 f", {role}" if len(here) > 1 else "")
        return session

    def disconnect(self, session: Session, now: float, unix: float) -> None:
        """A relay node's session ended. The region's next node takes over from a lead that
        leaves (its links stay until the new lead's reports replace them); the region leaves
        the topology with its last node."""
        region, node = session.relay.region, session.relay.node_id
        here = self.nodes.get(region, {})
        if here.get(node) is not session:
            return  # replaced by a newer session of the same node
        del here[node]
        self.send_members(self.membership.disconnect(session.node, now))
        self.record("relay-disconnected", region, node, unix=unix)
        log.info("%s: relay %s disconnected", region, node)
        if self.sessions.get(region) is not session:  # a follower
            self.send_peers(removed=session)
            self.flush_peers()  # its region's siblings take its transit now, not next round
            return
        self.distribution.detach(session.routes)
        if here:
            successor = next(iter(here.values()))
            successor.routes = self.distribution.attach(
                region, successor.routes.acked_version,
                changes=successor.protocol >= PROTOCOL_TABLE_CHANGES)
            self.sessions[region] = successor
            self.topology.lead_changed(successor.relay)
            self.send_peers(removed=session)
            self.flush_peers()
            self.record("lead", region, f"{successor.relay.node_id} takes over from {node}",
                        unix=unix)
            log.info("%s: node %s leads the region now", region, successor.relay.node_id)
        else:
            del self.nodes[region]
            del self.sessions[region]
            self.topology.remove_relay(region)
            self.send_peers(removed=session)
        self.dirty = True
        self.wake()

    def current(self, session: Session) -> bool:
        """Whether `session` is still its node's (the node may have connected again)."""
        return self.nodes.get(session.relay.region, {}).get(session.relay.node_id) is session

    def node_session(self, node: str) -> Session | None:
        """The session of the node at address `node` ("region/node"), if connected."""
        region, node_id = parse(node)
        return self.nodes.get(region, {}).get(node_id)

    def region_sessions(self, region: str) -> list[Session]:
        """Every node of `region` connected, the lead first."""
        return list(self.nodes.get(region, {}).values())

    def send_region(self, region: str, msg: Message) -> None:
        """To every node of `region`."""
        for session in self.region_sessions(region):
            session.send(msg)

    def send_table(self, session: Session) -> None:
        """A follower gets the table last pushed to its region's lead (at its version)."""
        lead = self.sessions.get(session.relay.region)
        if lead is None or lead.routes.pushed is None:
            return
        rows = tuple(lead.routes.sent.values())
        self.mirror(session, Push(lead.relay.region, lead.routes.pushed_version,
                                  self.distribution.nonce(), rows))

    def mirror(self, session: Session, push: Push) -> None:
        """A push to a follower: what its lead was pushed."""
        session.send(self.distribution.follow(session.routes, push))

    def stale_for(self, protocol: int, relays: int) -> float:
        """How long a relay's link stays without being reported: an unchanged link of a relay
        reporting by change is refreshed only by its full reports, and beyond
        partial_mesh_above relays a link measured by sample only at its next turn."""
        s = self.settings
        if protocol < PROTOCOL_BY_CHANGE:
            return s.stale_after_s
        if relays > s.partial_mesh_above:
            return s.stale_after_s + s.full_report_interval_s + 1.5 * s.sample_every_s
        return s.stale_after_s + 2 * s.full_report_interval_s

    def peer_entries(self, to: Session) -> tuple[tuple[str, str, str], ...]:
        """The peers `to` is told: every other node, its siblings included (for a relay of
        protocol < 2, each other region's lead, without node ids)."""
        if to.protocol < PROTOCOL_BY_CHANGE:
            return tuple((r, s.relay.probe_addr, "") for r, s in sorted(self.sessions.items())
                         if r != to.relay.region)
        return tuple((r, s.relay.probe_addr, n) for r in sorted(self.nodes)
                     for n, s in sorted(self.nodes[r].items()) if s is not to)

    def send_peers(self, added: Session | None = None, removed: Session | None = None,
                   ) -> None:
        """Tell relays who their peers are: the node that connected (`added`) gets the whole
        list at once, and so does every relay of protocol 1; the others of protocol 2 hear
        of connects and disconnects as changes, gathered over a round (`flush_peers`), so
        that a thousand relays connecting cost each a message a round, not a message each."""
        self.peer_changes += 1
        if added is not None:
            self.peers_removed.pop(added.node, None)
            self.peers_added[added.node] = self.peer_changes
            added.peers_known = self.peer_changes  # its whole list
        if removed is not None:
            self.peers_added.pop(removed.node, None)
            self.peers_removed[removed.node] = self.peer_changes
        for region, here in self.nodes.items():
            for session in here.values():
                if session.protocol < PROTOCOL_BY_CHANGE:
                    if session is self.sessions.get(region):
                        session.send(self.peers_message(self.peer_entries(session)))
                elif (session is added or not (added or removed)) and \
                        not session.peers_deferred:
                    session.send(self.peers_message(self.peer_entries(session),
                                                    near=self.near.get(region, ())))

    def send_deferred_peers(self) -> None:
        """Every relay whose peer list waited for the others to come back: its whole list."""
        self.peers_due = False
        self.flush_peers()
        for region, here in self.nodes.items():
            for session in here.values():
                if session.peers_deferred:
                    session.peers_deferred = False
                    session.peers_known = self.peer_changes
                    session.send(self.peers_message(self.peer_entries(session),
                                                    near=self.near.get(region, ())))

    def flush_peers(self) -> None:
        """The connects and disconnects of the round, to every relay of protocol 2 as one
        change to its list."""
        if not (self.peers_added or self.peers_removed):
            return
        added = sorted((s.relay.region, s.relay.probe_addr, s.relay.node_id, n)
                       for node, n in self.peers_added.items()
                       if (s := self.node_session(node)) is not None)
        # a region none of whose nodes is left goes whole, as an older relay expects
        removed = sorted({(node if region_of(node) in self.nodes else region_of(node), n)
                          for node, n in self.peers_removed.items()})
        self.peers_added, self.peers_removed = {}, {}
        for region, here in self.nodes.items():
            for session in here.values():
                if session.protocol < PROTOCOL_BY_CHANGE or session.peers_deferred:
                    continue
                # what came before a relay's whole list is in it
                known = session.peers_known
                mine = tuple((r, a, i) for r, a, i, n in added
                             if n > known and (r, i) != (region, session.relay.node_id))
                gone = tuple(x for x, n in removed if n > known and x != session.node)
                if mine or gone:
                    session.send(self.peers_message(mine, incremental=True, removed=gone,
                                                    near=self.near.get(region, ())))

    def transit_weight(self, session: Session) -> float:
        """A node's share of its region's transit, as relays were last told."""
        return self.transit_weights.get(session.node, 1.0)

    def weigh_transit(self, now: float) -> None:
        """Every transit_weights_every_s: weigh the nodes of each region that has several by
        the client sessions they hold, so that the relays sending the region's transit
        spread over them by load (weighted rendezvous, skymesh/nodes.py); the nodes whose
        weight moved are listed again, with it, to every relay of protocol 2."""
        if now < self.weights_due:
            return
        self.weights_due = now + self.settings.transit_weights_every_s
        weights: dict[str, float] = {}
        for region, here in self.nodes.items():
            if len(here) > 1:
                load = {n: s.counters.get("edge.sessions", 0) for n, s in here.items()}
                weights.update((address(region, n), w)
                               for n, w in transit_weights(load).items() if w != 1.0)
        moved = {a for a in weights.keys() | self.transit_weights.keys()
                 if weights.get(a, 1.0) != self.transit_weights.get(a, 1.0)}
        self.transit_weights = weights
        entries = sorted((s.relay.region, s.relay.probe_addr, s.relay.node_id)
                         for a in moved if (s := self.node_session(a)) is not None)
        if not entries:
            return
        log.info("transit weights moved: %s", ", ".join(
            f"{address(r, n)} {weights.get(address(r, n), 1.0):g}" for r, _, n in entries))
        for region, here in self.nodes.items():
            mine = tuple(e for e in entries if e[0] != region)  # siblings take no transit
            if not mine:
                continue
            for session in here.values():
                if session.protocol >= PROTOCOL_BY_CHANGE:
                    session.send(self.peers_message(mine, incremental=True,
                                                    near=self.near.get(region, ())))

    def peers_message(self, peers: tuple[tuple[str, str, str], ...], *, near: Iterable[str] = (),
                      incremental: bool = False, removed: tuple[str, ...] = (),
                      ) -> Peers:
        s = self.settings
        base = Peers(peers=peers, probe_interval_s=s.probe_interval_s,
                     report_interval_s=s.report_interval_s,
                     neighbour_probe_interval_s=s.neighbour_probe_interval_s,
                     down_after=s.down_after, degraded_loss=s.degraded_loss,
                     degraded_jitter_ms=s.degraded_jitter_ms)
        if not (near or incremental or removed):
            return base
        listed = {region for region, _, _ in peers}
        weights = {a: w for r, _, n in peers
                   if (w := self.transit_weights.get(a := address(r, n))) is not None}
        return replace(base, near=frozenset(listed & set(near)), incremental=incremental,
                       weights=weights,
                       removed=removed, full_report_interval_s=s.full_report_interval_s,
                       report_rtt_fraction=s.report_rtt_fraction,
                       report_rtt_ms=s.report_rtt_ms, report_loss=s.report_loss,
                       partial_mesh_above=s.partial_mesh_above,
                       sample_every_s=s.sample_every_s)

    def config_for(self, region: str) -> RelayConfig:
        zones = tuple(z.name for z in self.policy.zones.values() if region in z.regions)
        ring = self.keyring
        return RelayConfig(app_keys=dict(self.apps), fabric_key=ring.sealing.key,
                           accepted_keys=tuple((k.epoch, k.key) for k in ring.accepted),
                           zones=zones, drained=region in self.drained,
                           fabric_epoch=ring.sealing.epoch)

    def push_config(self) -> None:
        """Every connected relay's configuration again (the fabric keys changed)."""
        for region in self.nodes:
            self.send_region(region, self.config_for(region))

    def admit(self, session: Session, now: float) -> bool:
        """Whether a relay's next message is within its flood limit; one that is not is
        dropped by the caller, counted, and logged once per flood."""
        if session.bucket is None:
            return True
        flooding = session.bucket.limited
        if session.bucket.take(now):
            return True
        if not flooding:
            log.warning("%s: relay %s sends faster than %.0f messages/s: dropping the excess",
                        session.relay.region, session.relay.node_id,
                        self.settings.relay_messages_per_s)
        self.refused["relay-rate"] += 1
        return False

    def on_report(self, session: Session, samples: list[Mapping] | SampleBatch,
                  counters: Mapping[str, int],
                  now: float, *, full: bool = True, sent_unix_s: float = 0.0,
                  unix: float | None = None, coalesced: int = 0) -> None:
        """A relay's link samples (dicts as controller/topology.py checks them): `full`, every
        link it measures, else only those that moved (protocol 2); sent at `sent_unix_s` on
        its clock (0: not said), and merged from `coalesced` more reports that came while
        the shell was busy. Routes are recomputed only when some link moved beyond the dead
        band (or came or went)."""
        session.counters = dict(counters)
        session.reported = True
        self.reports += 1
        if self.sessions.get(session.relay.region) is not session:
            return  # a follower's links: its region's lead speaks for the region
        self.samples_taken += len(samples)
        self.reports_coalesced += coalesced
        if sent_unix_s > 0 and unix is not None and math.isfinite(sent_unix_s):
            self.report_delays.append(max(0.0, unix - sent_unix_s))
        # beyond partial_mesh_above, a full report leaves out the links sampled in earlier
        # turns: they stay until their next turn is overdue (stale_for)
        full = full and not self.partial_mesh
        if isinstance(samples, SampleBatch):
            problems = self.topology.report_batch(session.relay.region, samples, now, full)
        else:
            problems = self.topology.report(session.relay.region, samples, now, full)
        if problems:  # one line per report: a relay that sends thousands does not flood the log
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            log.warning("%s: rejected sample: %s%s", session.relay.region, problems[0], more)
        self.note_moved(now)
        if self.warm and len(self.sessions) == len(self.catalogue):
            self.wake()  # every region is back: routes as soon as the last is measured

    def note_moved(self, now: float) -> None:
        """Mark the routes dirty if a link written, removed or expired since the last look
        moved beyond the dead band from the cost the routes in force were computed with, or
        became usable or unusable."""
        rows, cols = self.topology.take_touched()
        if not len(rows) or self.dirty:
            return
        new = self.link_costs(now, rows, cols)
        old = self.computed[rows, cols]
        with np.errstate(invalid="ignore"):  # inf - inf: a link unusable before and after
            moved = np.isfinite(new) != np.isfinite(old)
            both = np.isfinite(new) & np.isfinite(old)
            moved |= both & (np.abs(new - old) > np.maximum(self.settings.dead_band * old,
                                                            self.settings.dead_band_ms))
        if moved.any():
            self.dirty = True
            self.wake()  # a round now, not at the next interval: routes should move at once

    def link_costs(self, now: float, rows: np.ndarray | None = None,
                   cols: np.ndarray | None = None) -> np.ndarray:
        """Each link's cost (routing.link_cost), inf where it is not usable: every link's,
        or those at (rows, cols)."""
        t, model = self.topology, self.settings.cost
        if rows is None:
            usable, latency, bound = t.usable(now), t.latency(), t.bound
        else:
            usable, latency, bound = t.usable(now, rows, cols), t.latency(rows, cols), \
                t.bound[rows, cols]
        cost = latency / 2 + bound * model.loss_penalty_ms + model.hop_cost_ms
        return np.where(usable, cost, np.inf)

    def on_ack(self, session: Session, version: int, accepted: bool, reason: str = "",
               now: float | None = None) -> None:
        """A relay's ACK or NACK of the routes of `version` (`now`: when it came, for the
        push-to-ACK latency)."""
        pushed = session.pushed_at.pop(version, None)
        for older in [v for v in session.pushed_at if v < version]:
            del session.pushed_at[older]  # superseded unsent, or never to be acknowledged
        if pushed is not None and now is not None and accepted:
            self.push_ack_seconds.observe(max(0.0, now - pushed))
        if self.sessions.get(session.relay.region) is not session:  # a follower
            if accepted:
                session.routes.acknowledge(version)
            else:
                self.rejected_tables += 1
                log.warning("%s: node %s rejected routes v%d: %s", session.relay.region,
                            session.relay.node_id, version, reason)
            return
        if accepted:
            if self.distribution.on_ack(session.routes, version):
                self.wake()  # rows held for this relay's may go now
        else:
            self.rejected_tables += 1
            log.warning("%s: rejected routes v%d: %s", session.relay.region, version, reason)
            self.distribution.on_nack(session.routes)
            self.dirty = True

    def on_events(self, session: Session, events: Iterable[RelayEvent], unix: float) -> None:
        for e in events:
            e = kept_event(e, unix)
            self.events.append(Event(session.relay.region, e, unix))
            self.count_event(e.kind)
            if e.kind in ("link-down", "link-up", "reroute"):
                log.info("%s: %s %s %s", session.relay.region, e.kind, e.peer, e.detail)
                self.dirty = True
                self.wake()

    def record(self, kind: str, peer: str = "", detail: str = "", *, unix: float) -> None:
        """An event of the controller's own, beside the relays'."""
        self.events.append(Event("controller", RelayEvent(at_unix_s=unix, kind=kind, peer=peer,
                                                          detail=detail), unix))
        self.count_event(kind)

    def count_event(self, kind: str) -> None:
        """Count an event by kind, for the metrics: the kinds relays send are theirs to name,
        so past MAX_EVENT_KINDS new ones count as "other" (a label's values stay bounded)."""
        if kind not in self.event_counts and len(self.event_counts) >= MAX_EVENT_KINDS:
            kind = "other"
        self.event_counts[kind] += 1

    # -- channels --------------------------------------------------------------------------

    def on_channels(self, session: Session, interest: Interest, now: float) -> None:
        """The channels a relay's edge has sessions in, replacing what it reported before.
        A session that a newer relay of its region replaced speaks for nobody."""
        if self.current(session):
            interest = self.channels_served(session.relay.region, interest)
            self.send_members(self.membership.on_channels(session.node, interest, now))

    def channels_served(self, region: str, interest: Interest) -> Interest:
        """The channels of `interest` that `region`'s edge can serve: of a zone the region is
        in, with a name of 1..MAX_CHANNEL_ID bytes; the others are dropped (and logged)."""
        def problem(zone: str, channel: str) -> str:
            if region not in getattr(self.policy.zones.get(zone), "regions", ()):
                return f"zone {zone[:40]!r} is not one of the region's"
            if not 0 < len(channel.encode(errors="replace")) <= MAX_CHANNEL_ID:
                return f"channel name of {len(channel)} characters"
            return ""
        kept, dropped = {}, []
        for (zone, channel), value in interest.items():
            if why := problem(zone, channel):
                dropped.append(why)
            else:
                kept[(zone, channel)] = value
        if dropped:
            more = f" (and {len(dropped) - 1} more)" if len(dropped) > 1 else ""
            log.warning("%s: channels ignored: %s%s", region, dropped[0], more)
        return kept

    def send_members(self, updates: list[Members]) -> None:
        for update in updates:
            if (session := self.node_session(update.node)) is not None:
                session.send(update)

    # -- routing ---------------------------------------------------------------------------

    def tick(self, now: float, unix: float) -> None:
        """One round of the shell's loop: fabric keys' rotation, members after their hold,
        routes, convergence."""
        self.pre_tick(now, unix)
        self.recompute(now, unix)
        self.converged(now)

    def pre_tick(self, now: float, unix: float) -> None:
        """What a round does before routes: fabric keys' rotation, members after their hold."""
        if (change := self.keyring.tick(now)) is not None:
            self.fabric_keys_changed(change, unix)
        if self.peers_due and not self.computing:
            self.send_deferred_peers()
        self.send_members(self.membership.release_due(now))
        self.flush_peers()
        self.weigh_transit(now)
        if self.partial_mesh != self.was_partial:
            self.was_partial = self.partial_mesh
            for region, session in self.sessions.items():
                self.topology.stale_for[self.topology.index[region]] = self.stale_for(
                    session.protocol, len(self.sessions))

    def resyncing(self, now: float) -> bool:
        """After a restart among relays that forward on earlier tables: hold new tables until
        every region is back and measured (or has reported, for resync_grace_s since the
        last came back), or for resync_hold_s."""
        if not self.warm:
            return False
        s = self.settings
        back = len(self.sessions) == len(self.catalogue)
        if back and self.back_at is None:
            self.back_at = now
        done = back and (self.all_measured() or (
            now - self.back_at >= s.resync_grace_s
            and all(r.reported for r in self.sessions.values()))) or \
            now - self.started >= s.resync_hold_s
        if done:
            self.warm = False
            log.info("resynchronised with %d relays after %.1f s", len(self.sessions),
                     now - self.started)
            self.peers_due = True  # after the first routes, which go out first
        return not done

    def holding_first_routes(self, now: float) -> bool:
        """After a cold start, until every connected relay has measured its links or for
        first_routes_hold_s: no routes yet (see Settings)."""
        if self.first_routes_done:
            return False
        if not self.sessions:
            return True  # nothing to route yet, and nothing measured
        if self.warm or self.all_measured() or \
                now - self.started >= self.settings.first_routes_hold_s:
            self.first_routes_done = True
            return False
        return True

    def recompute(self, now: float, unix: float) -> bool:
        """Expire stale links, recompute routes if a link moved beyond the dead band, push
        changed rows. True if anything was pushed. (The shell runs the computation itself
        off its event loop: `begin_recompute`, the job, `finish_recompute`.)"""
        job = self.begin_recompute(now, unix)
        if job is None:
            return self.pushed
        return self.finish_recompute(job(), now, unix)

    def begin_recompute(self, now: float, unix: float) -> Callable[[], Computed] | None:
        """The first half of a round: expire stale links, decide whether routes must be
        computed and, if so, return the computation as a job (a pure function of copies of
        the state: it may run on another thread while the core takes reports and ACKs);
        otherwise push what is staged and return None."""
        self.pushed = False
        if self.computing:  # the shell's job is under way: its result comes first
            return None
        self.topology.expire(now)
        if self.holding_first_routes(now):
            return None
        suppressed = frozenset(self.topology.suppressed_links(now))
        if suppressed != self.suppressed:  # a damped link's penalty decayed, or a new one
            self.suppressed = suppressed
            self.dirty = True
        self.note_moved(now)
        if not self.routes_complete and self.sessions and self.all_measured():
            self.dirty = True  # the routes of a partial measurement are not held on to
        # held rows go out when their next hop acknowledges, or after order_hold_s
        # and rows staged while no version could be pushed (Distribution.limit)
        waiting = bool(self.distribution.awaited) or self.changed is None or bool(self.changed)
        if not (self.dirty or waiting) or self.resyncing(now):
            return None
        if not self.dirty:
            self.pushed = self.push_staged(now)
            return None
        self.dirty = False
        # routes from a partial measurement are no reason to hold on to a path
        previous = self.routes if self.routes_complete else None
        self.routes_complete = self.all_measured()
        latest = self.link_costs(now)
        self.latest = latest
        unreachable = self.topology.unreachable() & set(self.sessions)
        if unreachable != self.unreachable:
            for region in sorted(unreachable - self.unreachable):
                self.record("region-unreachable", region, "links to it down at several relays",
                            unix=unix)
                log.warning("%s: unreachable from several relays: no transit through it",
                            region)
            for region in sorted(self.unreachable - unreachable):
                self.record("region-reachable", region, unix=unix)
                log.info("%s: reachable again", region)
            self.unreachable = unreachable
            self.avoid_changed = True
        nodes = sorted(self.sessions)
        idx = np.array([self.topology.index[n] for n in nodes], dtype=np.intp)
        cost = latest[np.ix_(idx, idx)]
        moved = None
        if previous is not None and not self.avoid_changed and nodes == self.computed_nodes:
            # the routes in force move where links moved beyond measurement noise, and only
            # there: the others keep the costs they were computed with
            computed = self.computed[np.ix_(idx, idx)]
            moved = routing.moved_links(cost, computed, self.settings.dead_band,
                                        self.settings.dead_band_ms)
            if not moved.any():
                self.pushed = self.push_staged(now)
                return None
            far = routing.far_moved(moved, cost, computed, self.settings.far_move)
            if far.any() and far.sum() < moved.sum():  # the noise next round, at once
                moved = far
                self.dirty = True
                self.wake()
            cost = np.where(moved, cost, computed)
            at = np.nonzero(moved)
            self.computed = self.computed.copy()
            self.computed[idx[at[0]], idx[at[1]]] = cost[at]
        else:
            self.computed = latest
        self.computed_nodes = nodes
        self.avoid_changed = False
        self.computing = True
        self.round_moved = -1 if moved is None else int(moved.sum())
        old, rows, policy = self.routes, dict(self.rows), self.policy
        hysteresis, avoid = self.settings.hysteresis, frozenset(self.drained | self.unreachable)
        regions = tuple(nodes)

        def job() -> Computed:
            routes = engine.compute_costs(nodes, cost, policy, previous, hysteresis, avoid,
                                          moved)
            return Computed(routes, changed_rows(old, routes, rows, regions))
        return job

    def finish_recompute(self, done: Computed, now: float, unix: float,
                         took_s: float = 0.0) -> bool:
        """The second half of a round: the routes computed by the job (in `took_s`, as the
        shell measured it) are in force; the relays whose rows changed (or that connected
        meanwhile) are pushed."""
        self.computing = False
        self.routes = done.routes
        self.recomputes += 1
        self.recompute_ms = took_s * 1000
        self.recompute_seconds.observe(took_s)
        if took_s > SLOW_ROUND_S:  # what a push waits for shows in the log
            log.info("routes computed in %.2f s (%s): %d relays' rows changed", took_s,
                     "all links" if self.round_moved < 0 else
                     f"{self.round_moved} links moved", len(done.patches))
        for region, rows in done.patches.items():
            self.rows[region] = rows
            self.tables[region] = list(rows.values())
        changed = set(done.patches)
        for region in list(self.rows):
            if region not in self.sessions:
                del self.rows[region], self.tables[region]
        for region in self.sessions.keys() - self.rows.keys():  # connected meanwhile
            self.rows[region] = {(r.zone, r.dst): r for r in self.routes.table(region)}
            self.tables[region] = list(self.rows[region].values())
            changed.add(region)
        self.changed = (self.changed or set()) | changed if self.changed is not None else None
        self.pushed = self.push_staged(now)
        return self.pushed

    def links_up(self, src: str, dst: str) -> bool:
        """Whether the link was usable as last measured (by the latest round)."""
        i, j = self.topology.index.get(src), self.topology.index.get(dst)
        return i is not None and j is not None and bool(np.isfinite(self.latest[i, j]))

    @property
    def graph(self) -> nx.DiGraph:
        """The links the routes in force were computed from, as a networkx graph (for
        failover plans; built when asked)."""
        nodes = self.computed_nodes
        idx = np.array([self.topology.index[n] for n in nodes], dtype=np.intp)
        cost = self.computed[np.ix_(idx, idx)]
        graph = nx.DiGraph()
        graph.add_nodes_from(nodes)
        for i, j in zip(*np.nonzero(np.isfinite(cost)), strict=True):
            graph.add_edge(nodes[i], nodes[j], cost=float(cost[i, j]))
        return graph

    def push_staged(self, now: float) -> bool:
        """Push each relay whose staged rows changed; True if any did. Nothing goes while no
        version may be pushed (the store has not reserved more, or this replica does not
        lead): what changed waits for it."""
        if self.distribution.blocked():
            return False
        pushes = self.distribution.push_staged(self.tables, self.links_up, self.unreachable,
                                               now, self.changed)
        self.changed = set()
        for push in pushes:
            for session in self.region_sessions(push.region):
                if session is self.sessions[push.region]:
                    session.send(push)
                    session.pushed_at[push.version] = now
                    if len(session.pushed_at) > MAX_PUSHES_TIMED:  # a relay that is silent
                        del session.pushed_at[min(session.pushed_at)]
                else:
                    self.mirror(session, push)
        return bool(pushes)

    def converged(self, now: float) -> bool:
        ok = (
            bool(self.sessions)
            and self.routes_complete
            and self.all_measured()
            and all(s.routes.in_sync for s in self.sessions.values())
        )
        if not ok:
            self.converged_since = None
        elif self.converged_since is None:
            self.converged_since = now
        return ok

    @property
    def partial_mesh(self) -> bool:
        """Whether relays measure only their nearest regions continuously (and the rest
        by sample): then a relay has measured its links once its nearest are."""
        return len(self.sessions) > self.settings.partial_mesh_above

    def all_measured(self) -> bool:
        return self.topology.all_measured(self.near_mask if self.partial_mesh else None)

    # -- operator requests -----------------------------------------------------------------

    def known(self, *regions: str) -> None:
        for rid in regions:
            if rid not in self.catalogue:
                raise NotFound(f"unknown region {rid!r}: not in the catalogue")

    def zone(self, name: str) -> engine.ZoneRoutes:
        zones = self.routes.zones
        if name not in zones:
            raise NotFound(f"unknown zone {name!r} (zones: {', '.join(zones)})")
        return zones[name]

    def drain(self, region: str, drained: bool, now: float, unix: float,
              actor: str = "insecure") -> None:
        """Drain (or undrain) a region: its edge refuses new sessions and routes move their
        transit off it, make-before-break (it keeps forwarding what still comes its way).
        `actor` (who asked) goes to the audit log first. Raises OSError, with nothing
        changed, if the store could not keep the audit entry or the change."""
        after, entry = self.drain_change(region, drained, unix, actor)
        self.keep_audit(entry)
        before = set(self.drained)
        self.drained = set(after)
        try:
            self.store.save_drained(self.drained)
        except OSError:
            self.drained = before
            raise
        if self.drained != before:
            self.record("drain" if drained else "undrain", region, unix=unix)
            log.info("%s: %s", region, "drained" if drained else "undrained")
            self.avoid_changed = True
            self.dirty = True
            self.send_region(region, self.config_for(region))
            self.recompute(now, unix)
            self.wake()

    def restore(self, state: ControllerState, now: float, unix: float) -> None:
        """Take up the state as the store holds it now (a replica that leads again: another
        may have led meanwhile): drains made or undone since move routes, as a drain does."""
        drained = set(state.drained)
        if drained == self.drained:
            return
        moved, self.drained = drained ^ self.drained, drained
        for region in sorted(moved):
            self.record("drain" if region in drained else "undrain", region, unix=unix)
            log.info("%s: %s (as the store holds it)", region,
                     "drained" if region in drained else "undrained")
            self.send_region(region, self.config_for(region))
        self.avoid_changed = True
        self.dirty = True
        self.wake()

    def drain_change(self, region: str, drained: bool, unix: float,
                     actor: str = "insecure") -> tuple[frozenset[str], AuditEntry]:
        """What draining (or undraining) `region` keeps: the drained regions after it and
        its audit entry (Refused for a region not in the catalogue). A store that cannot
        keep them as the core writes them (etcd) keeps them first (Store.keep_first)."""
        self.known(region)
        after = self.drained | {region} if drained else self.drained - {region}
        return frozenset(after), AuditEntry(unix, actor, "drain" if drained else "undrain",
                                            region)

    def chaos(self, region: str, chaos: Chaos, unix: float, actor: str = "insecure") -> None:
        """Hand a relay a fault to inject (drills); `actor` (who asked) goes to the audit log
        first (OSError, nothing done, if it could not be kept)."""
        self.keep_audit(self.chaos_entry(region, chaos, unix, actor))
        self.send_region(region, chaos)
        what = "every peer" if chaos.drop_all else ", ".join(chaos.drop_peers) or "nothing"
        self.record("chaos", region, f"dropping traffic with {what}", unix=unix)

    def chaos_entry(self, region: str, chaos: Chaos, unix: float,
                    actor: str = "insecure") -> AuditEntry:
        """The audit entry of a fault handed to a relay (Refused when it cannot be)."""
        self.known(region)
        session = self.sessions.get(region)
        if session is None:
            raise NotReady(f"region {region!r} has no relay connected")
        self.known(*chaos.drop_peers)
        what = "every peer" if chaos.drop_all else ", ".join(chaos.drop_peers) or "nothing"
        until = f" until {chaos.until_unix_s:.0f}" if chaos.until_unix_s else ""
        return AuditEntry(unix, actor, "chaos", region, f"drop traffic with {what}{until}")

    # -- fabric keys -----------------------------------------------------------------------

    def rotate_fabric_key(self, now: float, unix: float, actor: str = "insecure") -> Change:
        """Start a rotation of the fabric key now (phase a; controller/fabrickeys.py). NotReady
        while one is under way; `actor` goes to the audit log first (OSError, nothing done,
        if it could not be kept)."""
        self.keep_audit(self.rotation_entry(now, unix, actor))
        change = self.keyring.rotate(now)
        self.fabric_keys_changed(change, unix)
        return change

    def rotation_entry(self, now: float, unix: float, actor: str = "insecure") -> AuditEntry:
        """The audit entry of a fabric key rotation started now (NotReady while one is under
        way)."""
        ring = self.keyring
        if busy := ring.busy(now):
            raise NotReady(busy)
        return AuditEntry(unix, actor, "rotate-fabric-key", "fabric",
                          f"epoch {ring.next_epoch()}")

    def _keyring(self, kept: tuple[tuple[int, bytes], ...], given: list[bytes] | None,
                 settings: Settings, now: float) -> KeyRing:
        """The keys kept in the store win over those given (a --fabric-keys file, or none:
        a random one), which only seed the first start: after a rotation, a restart must hand
        relays the keys their peers hold, not go back to epoch 1. What a start seeds is kept
        at once (OSError if it cannot be)."""
        timing = {"rotation_s": settings.fabric_key_rotation_s,
                  "overlap_s": settings.fabric_key_overlap_s}
        if kept:
            if given and set(given) != {k for _, k in kept}:
                log.warning("fabric keys: using the ones kept in %s (epochs %s), not those "
                            "given", self.store.where, ", ".join(str(e) for e, _ in kept))
            return KeyRing([k for _, k in kept], now=now, epochs=[e for e, _ in kept],
                           **timing)
        ring = KeyRing(list(given or [os.urandom(32)]), now=now, **timing)
        self.store.save_fabric_keys(ring.kept)
        return ring

    def fabric_keys_changed(self, change: Change, unix: float) -> None:
        try:
            self.store.save_fabric_keys(self.keyring.kept)
        except OSError as e:  # relays still get them; a restart would go back a rotation
            log.error("fabric keys could not be kept in %s: %s", self.store.where, e)
        self.push_config()
        self.record("fabric-key", change.phase, change.detail, unix=unix)
        log.info("fabric key: %s", change.detail)

    # -- who did what ----------------------------------------------------------------------

    def audit(self, actor: str, action: str, target: str, detail: str = "", *,
              unix: float) -> None:
        """Append to the audit log through the store (OSError if it could not be kept)."""
        self.keep_audit(AuditEntry(unix, actor, action, target, detail))

    def keep_audit(self, entry: AuditEntry) -> None:
        self.store.append_audit(entry)
        log.info("audit: %s %s %s %s", entry.actor, entry.action, entry.target, entry.detail)

    def audit_log(self, since_unix_s: float = 0.0, limit: int = 0) -> list[AuditEntry]:
        return self.store.audit(since_unix_s, limit)

    def refuse(self, kind: str, who: str, reason: str, *, unix: float,
               audited: bool = False) -> None:
        """Count and log a session or call refused for who it came from; an admin call that
        would have changed something also goes to the audit log (as far as it can be
        kept: a refusal is never turned into something else by a full disk)."""
        self.refused[kind] += 1
        log.warning("refused %s: %s", who or "an unauthenticated peer", reason)
        if audited:
            try:
                self.audit(who or "unauthenticated", "denied", kind, reason, unix=unix)
            except OSError as e:
                log.error("audit log %s: %s", self.store.where, e)

    def status(self, now: float) -> Status:
        up, measured, expected = self.topology.counts()
        if self.partial_mesh:  # what convergence waits for: each relay's nearest links
            connected = self.topology.connected_mask()
            want = self.near_mask & np.outer(connected, connected)
            expected = int(want.sum())
            measured = int((self.topology.settled_mask() & want).sum())
        converged = self.converged(now)
        delays = sorted(self.report_delays)

        def delay(q: float) -> float:
            return round(delays[min(len(delays) - 1, int(q * len(delays)))] * 1000, 3) \
                if delays else 0.0
        return Status(
            relays=len(self.sessions),
            regions=len(self.catalogue),
            route_version=self.version,
            converged=converged,
            links_up=up,
            links_measured=measured,
            links_expected=expected,
            relays_acked=self.distribution.relays_in_sync(),
            uptime_s=now - self.started,
            converged_for_s=now - self.converged_since if converged else 0.0,
            rejected_samples=self.topology.rejected_samples,
            rejected_tables=self.rejected_tables,
            refused=dict(self.refused),
            reports=self.reports,
            samples=self.samples_taken,
            reports_coalesced=self.reports_coalesced,
            report_delay_p50_ms=delay(0.5),
            report_delay_p99_ms=delay(0.99),
            report_delay_max_ms=delay(1.0),
            recomputes=self.recomputes,
            recompute_ms=round(self.recompute_ms, 3),
            partial_mesh=self.partial_mesh,
        )

    def links(self, now: float) -> list[LinkView]:
        return [LinkView(record=r, age_s=now - r.received_at,
                         cost_ms=routing.link_cost(r.latency_ms, r.routing_loss,
                                                   self.settings.cost),
                         suppressed=self.topology.damper.suppressed((src, dst), now))
                for (src, dst), r in sorted(self.topology.links.items())]

    def table_of(self, region: str, zone: str = "") -> tuple[int, list[Route]]:
        """(the version last pushed to the region's relay, 0: none; its rows, of `zone` or of
        every zone)."""
        self.known(region)
        rows = self.tables.get(region, [])
        if zone:
            self.zone(zone)
            rows = [r for r in rows if r.zone == zone]
        session = self.sessions.get(region)
        return (session.routes.pushed_version if session else 0), rows

    def path(self, src: str, dst: str, zone: str = "") -> PathAnswer:
        """The route from `src` to `dst` in `zone` (default: global), or why there is none."""
        self.known(src, dst)
        routes = self.zone(zone or "global")
        route = routes.route(src, dst)
        reason = routes.unreachable_reason(src, dst)
        if route:
            return PathAnswer(src, dst, self.version, routes.zone, path=route.path,
                              cost_ms=round(route.cost_ms, 3), reachable=True,
                              backup_next_hop=route.backup_next_hop or "",
                              backup_kind=route.backup_kind)
        if src == dst and not reason:
            return PathAnswer(src, dst, self.version, routes.zone, path=(src,), reachable=True)
        reason = reason or f"no path from {src} to {dst}"
        if self.warm:
            reason += ("; the controller is resynchronising after a restart (the relays "
                       "forward on their own tables meanwhile)")
        return PathAnswer(src, dst, self.version, routes.zone, reason=reason)

    def plan_failover(self, region: str = "", link: tuple[str, str] | None = None,
                      zone: str = "") -> FailoverPlan:
        """What losing `region`, or the link both ways, would do to the routes in force."""
        zones = [self.zone(zone).zone] if zone else None
        if region:
            self.known(region)
            if region not in self.graph:
                raise NotReady(f"{region} has no relay in the topology")
            return engine.plan_failover(self.graph, self.policy, self.routes, region=region,
                                        zones=zones, hysteresis=self.settings.hysteresis,
                                        avoid=self.drained)
        if link and link[0] and link[1]:
            self.known(*link)
            return engine.plan_failover(self.graph, self.policy, self.routes, link=link,
                                        zones=zones, hysteresis=self.settings.hysteresis,
                                        avoid=self.drained)
        raise BadRequest("name a region, or both ends of a link")

    def channels(self) -> list[ChannelView]:
        views = []
        for zone, channel in self.membership.channels():
            members = self.membership.members_of((zone, channel))
            views.append(ChannelView(zone, channel,
                                     self.membership.publishers_of((zone, channel)),
                                     sorted({region_of(m) for m in members}), list(members)))
        return views

    def members_of(self, key: Channel) -> tuple[str, ...]:
        return self.membership.members_of(key)

    def events_since(self, since_unix_s: float) -> list[Event]:
        return [e for e in self.events if e.event.at_unix_s >= since_unix_s]
