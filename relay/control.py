"""The relay's session with the controller: one long-lived gRPC stream, reconnected with
backoff, and the translation between its protobuf messages and the relay's parts. Peers,
probe settings, configuration, channel members, route tables and chaos come in (route tables
are acknowledged or rejected with a reason); link reports, channel interest and what the
relay noticed or did on its own go out. The scheduler, tables, fabric and edge know nothing
of protobuf.

The relay speaks protocol 4 (PROTOCOL_RESYNC): a peer list may be changes to the list it
holds (`incremental`); a link report holds every link it measures only every
full_report_interval_s (`full`), the others the links that moved (relay/reporting.py); a
route table may be the changes to one it applied (`base_version`, relay/tables.py); and the
controller replica relaying the session may carry it over to a new leader (`resync`): the
relay sends again what a session begins with, without reconnecting.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol

import grpc

from relay import reporting
from relay.fabric import ChannelKey, Fabric
from relay.peernodes import Listed, PeerNodes
from relay.probe import LinkStats
from relay.scheduler import Addr, ProbeScheduler, RelayEvent, RelaySettings
from relay.tables import Entry
from relay.transport import Chaos, ChaosPlan
from skymesh.linkstate import PROTOCOL_RESYNC, TO_WIRE
from skymesh.metrics import Histogram
from skymesh.net.tls import TlsError, TlsFiles
from skymesh.net.tls import channel as tls_channel
from skymesh.v1 import relay_pb2, relay_pb2_grpc

log = logging.getLogger("skymesh.relay")

# terminal statuses: retrying cannot help, but the relay keeps trying slowly in case the
# operator fixes the controller's catalogue
FATAL = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT,
         grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


class ClientEdge(Protocol):
    """The relay's client edge as the control session sees it."""

    counters: Mapping[str, int]

    def interest(self) -> Mapping[ChannelKey, tuple[bool, bool]]: ...

    def joined(self) -> int: ...

    def configure(self, app_keys: dict[str, tuple[bytes, ...]], zones: set[str],
                  drained: bool) -> None: ...


class Outbox(Protocol):
    """Where messages to the controller go while connected (the gRPC stream's queue)."""

    def put_nowait(self, msg: relay_pb2.RelayMessage) -> None: ...


class ControlSession:
    """One relay's side of the session; `on_control` is also what a bench or a test feeds
    controller messages through without one. `clock` (monotonic) and `wall` (unix) are the
    real clocks unless a test runs the relay on a virtual one."""

    def __init__(self, region: str, node_id: str, controller: str, settings: RelaySettings,
                 scheduler: ProbeScheduler, fabric: Fabric, chaos: Chaos,
                 counters: Counter[str], rng: random.Random, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, tls: TlsFiles | None = None) -> None:
        self.region = region
        # the relay's mesh certificate, read at every connect (a rotated one is picked up
        # then); None: plaintext (--insecure)
        self.tls = tls
        self.node_id = node_id
        # the controller's address, or its replicas' ("A,B,C"): a session that ends or cannot
        # begin is tried next on the next one
        self.controllers = [a.strip() for a in controller.split(",") if a.strip()]
        if not self.controllers:
            raise ValueError("no controller address given")
        self.at = 0
        self.settings = settings
        self.scheduler = scheduler
        self.tables = scheduler.tables
        self.fabric = fabric
        self.chaos = chaos
        self.counters = counters
        self.rng = rng  # the backoff's jitter
        self.clock = clock
        self.wall = wall
        self.edge: ClientEdge | None = None
        self.edge_addr = ""
        self.metrics_addr = ""  # host:port of the relay's Prometheus metrics ("": none)
        self.health_addr = ""  # host:port of its gRPC health service ("": none)
        self.report_interval_s = 1.0
        self.outbox: Outbox | None = None  # messages to the controller while connected
        self.apply_seconds = Histogram()  # route tables' decoding, checking and applying
        self.events: list[relay_pb2.RelayEvent] = []  # not yet sent to the controller
        # the controller's peer list by node (valid addresses, not this relay), which
        # increments change: the transit node of each region, the siblings
        self.nodes = PeerNodes(region, node_id)
        self.reports = reporting.ReportFilter()

    @property
    def listed(self) -> dict[str, dict[str, Addr]]:
        """The other regions listed: {region: {node id: address}}."""
        return self.nodes.listed

    @property
    def near(self) -> frozenset[str]:
        return self.nodes.near

    # -- from the controller ---------------------------------------------------------------

    def on_control(self, msg: relay_pb2.ControllerMessage) -> relay_pb2.RelayMessage | None:
        """Act on one message; returns the reply it calls for (a route table's ACK or NACK)."""
        kind = msg.WhichOneof("msg")
        if kind == "peers":
            self.set_peers(msg.peers)
            return None
        if kind == "config":
            cfg = msg.config
            zones = set(cfg.zones)
            accepted = {k.epoch: k.key for k in cfg.accepted_fabric_keys}
            self.fabric.configure(cfg.fabric_key, accepted, zones, cfg.fabric_epoch)
            # probes are authenticated with keys derived from the same fabric keys
            self.scheduler.configure_keys(cfg.fabric_epoch, {
                **accepted, **({cfg.fabric_epoch: cfg.fabric_key} if cfg.fabric_key else {})})
            if self.edge is not None:
                app_keys = {app: tuple(keys.public_keys)
                            for app, keys in cfg.app_keys.items()}
                self.edge.configure(app_keys, zones, cfg.drained)
            return None
        if kind == "members":
            m = msg.members
            self.fabric.set_members((m.zone, m.channel), m.regions)
            return None
        if kind == "routes":
            return self.apply_routes(msg.routes)
        if kind == "chaos":
            c = msg.chaos
            self.set_chaos(ChaosPlan(tuple(c.drop_peers), c.drop_all, c.until_unix_s))
            return None
        if kind == "resync" and self.outbox is not None:
            log.info("controller session carried over: %s; sending this relay's state again",
                     msg.resync.reason or "another leader")
            self.started(self.outbox)
        return None

    def set_peers(self, peers: relay_pb2.PeerList) -> None:
        """The peer list and, with it, the probe, report and sampling settings (zero on the
        wire: unchanged; until set, skymesh/linkstate.py's defaults). An incremental list
        changes the list held: its peers (relay nodes) are added or take their new address
        (and nearness), its `removed` entries leave it, a region with every node of it or
        "region/node" that node (the scheduler keeps a region that left a while as
        unlisted); any other replaces it. A peer without a valid address is not listed. The
        peers of this relay's own region are its siblings, never probed (relay/peernodes.py);
        of every other region the scheduler probes and sends to one node, the transit node."""
        scheduler = self.scheduler
        now = self.clock()
        if peers.probe_interval_s > 0:
            scheduler.probe_interval_s = peers.probe_interval_s
        if peers.report_interval_s > 0:
            self.report_interval_s = peers.report_interval_s
        if peers.neighbour_probe_interval_s > 0:
            scheduler.neighbour_probe_interval_s = peers.neighbour_probe_interval_s
        scheduler.set_probe_settings(**{name: value for name, value in (
            ("down_after", peers.down_after), ("degraded_loss", peers.degraded_loss),
            ("degraded_jitter_ms", peers.degraded_jitter_ms)) if value > 0})
        report_changes = {name: value for name, value in (
            ("full_report_interval_s", peers.full_report_interval_s),
            ("rtt_fraction", peers.report_rtt_fraction), ("rtt_ms", peers.report_rtt_ms),
            ("loss", peers.report_loss)) if value > 0}
        if report_changes:
            self.reports.settings = replace(self.reports.settings, **report_changes)
        # the peers are set next, and the mode is decided with them
        if peers.partial_mesh_above > 0:
            scheduler.partial_mesh_above = peers.partial_mesh_above
        if peers.sample_every_s > 0:
            scheduler.sample_every_s = peers.sample_every_s
        entries = []
        for p in peers.peers:
            host, _, port = p.probe_addr.rpartition(":")
            addr = (host.strip("[]"), int(port)) if host and port.isdigit() else None
            weight = p.weight if math.isfinite(p.weight) and p.weight > 0 else 1.0
            entries.append(Listed(p.region, p.node_id, addr, p.near, weight))
        self.nodes.update(entries, peers.removed, peers.incremental)
        self.peers_changed(now)

    def peers_changed(self, now: float) -> None:
        """The nodes held changed, or a transit node failed: the scheduler takes each region's
        transit node (a region whose transit node moved to another of its nodes keeps its
        link's measurements), the fabric the siblings and the nodes' names, chaos every
        node's address."""
        addrs, moved = self.nodes.transit(now)
        self.fabric.siblings = frozenset(self.nodes.siblings)
        self.fabric.peer_nodes = self.nodes.node_ids()
        self.scheduler.set_peers(addrs, now, self.nodes.near, moved)
        self.fabric.tables_changed()  # the fast path sends to the transit nodes' addresses
        self.chaos.apply(self.scheduler.peers, self.nodes.addresses())

    def apply_routes(self, table: relay_pb2.RouteTable) -> relay_pb2.RelayMessage:
        started = time.perf_counter()
        entries = [Entry(r.dst, r.next_hop, tuple(r.path), r.cost_ms, r.zone or "global",
                         r.backup_next_hop or None) for r in table.routes]
        if table.base_version:  # changes to a table acknowledged earlier (protocol 3)
            reason = self.tables.apply_changes(
                table.version, table.base_version, entries,
                [(k.zone or "global", k.dst) for k in table.removed])
        else:
            reason = self.tables.apply(table.version, entries)
        self.scheduler.tables_replaced(self.clock())
        self.fabric.tables_changed()
        self.apply_seconds.observe(time.perf_counter() - started)
        if reason:
            self.counters["tables_rejected"] += 1
            log.warning("rejected routes v%d: %s", table.version, reason)
        else:
            log.info("applied routes v%d (%d destinations%s)", table.version,
                     len(self.tables.entries),
                     f", {len(entries)} changed from v{table.base_version}"
                     if table.base_version else "")
        return relay_pb2.RelayMessage(
            ack=relay_pb2.RouteAck(
                version=table.version,
                nonce=table.nonce,
                accepted=reason is None,
                reason=reason or "",
            )
        )

    def set_chaos(self, plan: ChaosPlan) -> None:
        self.chaos.set(plan, self.scheduler.peers)
        what = plan.describe()
        self.record([RelayEvent(self.clock(), "chaos", detail=f"dropping traffic with {what}")])
        log.warning("chaos: dropping traffic with %s", what)
        self.flush_events()

    def end_expired_chaos(self, now_unix_s: float) -> None:
        if self.chaos.expired(now_unix_s):
            self.set_chaos(ChaosPlan())

    # -- to the controller -----------------------------------------------------------------

    def links_changed(self, events: list[RelayEvent]) -> None:
        """Links changed state or routes moved: the controller hears of it at once (a report
        by change, full if it would be the session's first). A link down to a region that
        lists other nodes moves to the next of them (the link comes up when that one answers;
        the routes stay on their backups until then)."""
        self.record(events)
        now = self.clock()
        failed = []
        for e in events:
            if e.kind == "link-down" and (node := self.nodes.failover(e.peer, now)) is not None:
                failed.append(RelayEvent(e.at, "transit-node", e.peer, detail=(
                    f"to node {node}: node {self.nodes.chosen[e.peer]} does not answer")))
        if failed:
            self.record(failed)
            for e in failed:
                log.warning("%s: transit %s", e.peer, e.detail)
            self.peers_changed(now)
        if self.outbox is not None:
            self.outbox.put_nowait(relay_pb2.RelayMessage(
                report=self.link_report(full=self.reports.last_full is None)))
        self.flush_events()

    def record(self, events: list[RelayEvent]) -> None:
        """Keep events for the controller (the last max_events while it is away), their
        times on the wall clock."""
        to_unix = self.wall() - self.clock()
        self.events.extend(
            relay_pb2.RelayEvent(at_unix_s=e.at + to_unix, kind=e.kind, peer=e.peer,
                                 routes=e.routes, detail=e.detail)
            for e in events)
        del self.events[:-self.settings.max_events]

    def flush_events(self) -> None:
        if self.events and self.outbox is not None:
            self.outbox.put_nowait(relay_pb2.RelayMessage(
                events=relay_pb2.RelayEvents(events=self.events)))
            self.events = []

    def send_now(self, msg: relay_pb2.RelayMessage) -> None:
        if self.outbox is not None:
            self.outbox.put_nowait(msg)

    def link_report(self, full: bool = True) -> relay_pb2.LinkReport:
        """The next link report, taken as sent: `full`, every link the relay measures (in a
        partial mesh, those probed all the time and those in their turn; the session's
        first also those sampled over the last period); else the links that moved since
        they were last reported, or whose state is newly known to have changed. Its time is
        the wall clock's."""
        now = self.clock()
        stats = self.scheduler.stats
        since = self.reports.since(now, self.scheduler.sample_every_s)
        if full and self.reports.last_full is not None:
            # beyond the first, a full report of a partial mesh holds the links measured
            # all the time and those in their turn: one sampled earlier was reported after
            # its turn, and the controller keeps it until the next (a thousand relays'
            # samples would otherwise come twice)
            since = now
        measured = self.scheduler.measured_links(since)
        if not full:  # a link last reported may have changed since its turn ended
            measured |= self.reports.reported.keys() & stats.keys()
        chosen = self.reports.select({r: reporting.view(stats[r]) for r in measured}, now,
                                     full)
        return relay_pb2.LinkReport(
            links=[self.link_sample(region, stats[region], now) for region in chosen],
            counters=self.all_counters(),
            sent_unix_s=self.wall(),
            full=full,
        )

    @staticmethod
    def link_sample(region: str, s: LinkStats, now: float) -> relay_pb2.LinkSample:
        return relay_pb2.LinkSample(
            dst=region,
            rtt_ms=s.srtt or 0.0,
            min_rtt_ms=s.min_rtt or 0.0,
            jitter_ms=s.jitter,
            loss=s.loss,
            window=len(s.outcomes),
            samples=s.samples,
            lost=s.lost,
            age_s=s.age(now),
            state=TO_WIRE[s.state],
        )

    def report_round(self) -> None:
        """One round of the report loop: a full report when due (at the round nearest the
        full interval), else one by change; it goes out even with no links, as the
        controller's heartbeat and for the counters. A transit node avoided for long enough
        is tried again (with the controller away too: relays forward on what they hold)."""
        if self.nodes.avoidance_over(self.clock()):
            self.peers_changed(self.clock())
        if self.outbox is not None:
            full = self.reports.full_due(self.clock(), within=self.report_interval_s / 2)
            self.outbox.put_nowait(relay_pb2.RelayMessage(report=self.link_report(full)))

    def all_counters(self) -> dict[str, int]:
        counters = dict(self.counters)
        if self.edge is not None:
            counters.update({f"edge.{k}": v for k, v in self.edge.counters.items()})
            # a gauge beside the counters: clients pick a region's least loaded node by it
            counters["edge.sessions"] = self.edge.joined()
        return counters

    def channels_message(self) -> relay_pb2.RelayMessage:
        interest = self.edge.interest() if self.edge is not None else {}
        return relay_pb2.RelayMessage(channels=relay_pb2.Channels(channels=[
            relay_pb2.ChannelInterest(zone=zone, channel=channel, subscribers=sub,
                                      publishers=pub)
            for (zone, channel), (sub, pub) in sorted(interest.items())]))

    def interest_changed(self) -> None:
        if self.outbox is not None:
            self.outbox.put_nowait(self.channels_message())

    # -- the session -----------------------------------------------------------------------

    def hello(self, probe_addr: str) -> relay_pb2.RelayMessage:
        """The first message of a session: who this relay is and the tables it holds."""
        return relay_pb2.RelayMessage(hello=relay_pb2.Hello(
            region=self.region, node_id=self.node_id, probe_addr=probe_addr,
            route_version=self.tables.version, edge_addr=self.edge_addr,
            metrics_addr=self.metrics_addr, health_addr=self.health_addr,
            protocol=PROTOCOL_RESYNC))

    def started(self, outbox: Outbox) -> None:
        """The controller answered: from now on messages go to `outbox`, starting with the
        relay's channels, a full report of its links (this controller may know nothing of
        them) and the events kept while it was away."""
        self.outbox = outbox
        self.reports.start()
        outbox.put_nowait(self.channels_message())
        outbox.put_nowait(relay_pb2.RelayMessage(report=self.link_report()))
        self.flush_events()

    async def report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.report_interval_s)
            self.report_round()

    @property
    def serving(self) -> bool:
        """A controller answered this session and the relay holds a route table: what its
        health service says (relay/health.py)."""
        return self.outbox is not None and self.tables.version > 0

    @property
    def controller(self) -> str:
        """The replica this relay is connected to, or tries next."""
        return self.controllers[self.at]

    async def control_loop(self, probe_addr: str) -> None:
        backoff = self.settings.backoff_min_s
        while True:
            try:
                async with tls_channel(self.controller, self.tls, aio=True) as channel:
                    stub = relay_pb2_grpc.RelayControlStub(channel)
                    outbox: asyncio.Queue = asyncio.Queue()
                    outbox.put_nowait(self.hello(probe_addr))
                    call = stub.Session(_drain(outbox))
                    async for msg in call:
                        if self.outbox is None:
                            log.info("connected to controller %s", self.controller)
                            self.started(outbox)
                            backoff = self.settings.backoff_min_s
                        if (reply := self.on_control(msg)) is not None:
                            outbox.put_nowait(reply)
                log.warning("controller closed the session")
            except grpc.aio.AioRpcError as e:
                level = logging.ERROR if e.code() in FATAL else logging.INFO
                log.log(level, "controller %s: %s: %s", self.controller, e.code().name, e.details())
                if e.code() in FATAL:
                    backoff = self.settings.backoff_max_s
            except TlsError as e:  # e.g. a certificate being replaced: try again later
                log.error("cannot connect to controller %s: %s", self.controller, e)
            finally:
                self.outbox = None
            self.at = (self.at + 1) % len(self.controllers)
            await asyncio.sleep(backoff * self.rng.uniform(0.8, 1.2))
            if self.at == 0:  # every replica tried once more: wait longer
                backoff = min(backoff * 2, self.settings.backoff_max_s)


class _drain:
    """The session's outbox as the call's request iterator. Not an async generator: when a
    session ends, gRPC closes its request iterator while it waits on the queue, which an
    async generator refuses (and logs) while it is suspended there."""

    def __init__(self, queue: asyncio.Queue) -> None:
        self.queue = queue

    def __aiter__(self) -> _drain:
        return self

    async def __anext__(self) -> relay_pb2.RelayMessage:
        return await self.queue.get()
