"""The controller's gRPC services: relay sessions and admin. A thin shell around Topology and
the routing core; one recompute loop pushes each relay its own rows when they change."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from controller import engine, ordering, routing
from controller.engine import Route
from controller.routing import CostModel, Hysteresis
from controller.topology import Relay, Topology
from skymesh.catalogue import Region
from skymesh.linkstate import FROM_WIRE, LINK, TO_WIRE
from skymesh.policy import Policy
from skymesh.v1 import admin_pb2, admin_pb2_grpc, relay_pb2, relay_pb2_grpc

log = logging.getLogger("skymesh.controller")

_ADDR = re.compile(r"^[0-9A-Za-z.:\[\]-]+:\d{1,5}$")


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
    settle_samples: int = 8  # replies before a link counts as measured
    # link cost changes below this fraction, or below dead_band_ms, do not recompute routes:
    # a short link's cost moves by more than 2% with scheduling noise alone, and a mesh of
    # 45 relays always had some link that did (a full recompute every interval)
    dead_band: float = 0.02
    dead_band_ms: float = 1.0
    cost: CostModel = CostModel()
    hysteresis: Hysteresis = Hysteresis()
    # channel members are held back this long after a start, or until every region's relay
    # is back, so relays that reconnect first are not told that the others' subscribers left
    members_hold_s: float = 6.0
    # after a restart among relays that still forward on tables (static stability), no new
    # tables until every region's relay is back and measured, or this long: tables computed
    # from half the mesh would take routes away that still work
    resync_hold_s: float = 15.0
    # a changed row waits for its new next hop to have installed a working row of its own
    # (controller/ordering.py), at most this long
    order_hold_s: float = 1.0
    max_events: int = 10000  # relay events kept for `admin events` and drills


@dataclass(eq=False)
class Session:
    relay: Relay
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    pushed: list[tuple[str, tuple[str, ...]]] | None = None  # paths of the rows last pushed
    pushed_version: int = 0
    acked_version: int = 0
    # rows of the versions pushed and not acknowledged yet: an ack may come for one that a
    # newer push has already followed
    unacked: dict[int, list[Route]] = field(default_factory=dict)
    installed: dict[ordering.Key, Route] = field(default_factory=dict)  # as last acked
    sent: dict[ordering.Key, Route] = field(default_factory=dict)  # as last pushed
    held: int = 0  # target rows not pushed yet, waiting for their next hop
    held_since: float | None = None
    counters: dict[str, int] = field(default_factory=dict)  # the relay's, as last reported
    interest: dict[tuple[str, str], tuple[bool, bool]] = field(default_factory=dict)
    edge_addr: str = ""

    def send(self, msg: relay_pb2.ControllerMessage | None) -> None:
        self.queue.put_nowait(msg)

    @property
    def in_sync(self) -> bool:
        return self.pushed is not None and self.acked_version == self.pushed_version \
            and not self.held


class Controller:
    def __init__(self, catalogue: Mapping[str, Region], policy: Policy,
                 settings: Settings = Settings(), apps: Mapping[str, bytes] | None = None,
                 fabric_keys: list[bytes] | None = None, state_file: Path | None = None
                 ) -> None:
        self.catalogue = dict(catalogue)
        # what the operator changed (drains), kept in `state_file` across restarts
        self.state_file = state_file
        self.drained: set[str] = self.load_state()
        self.apps = dict(apps or {})
        # the first key signs; the others are still accepted (rotation)
        self.fabric_keys = list(fabric_keys or [os.urandom(32)])
        self.members: dict[tuple[str, str], tuple[str, ...]] = {}  # as last pushed
        self.settings = settings
        self.topology = Topology(self.catalogue, settings.stale_after_s,
                                 settings.settle_samples)
        self.sessions: dict[str, Session] = {}
        self.policy = policy.restrict(self.catalogue)
        self.graph = routing.build_graph([], [])
        self.links_up: Callable[[str, str], bool] = self.graph.has_edge  # as last measured
        self.routes = engine.compute(self.graph, self.policy)
        self.tables: dict[str, list[Route]] = {}  # each relay's rows
        self.version = 0
        self.routes_complete = False  # computed when every relay had measured all its links
        self.dirty = True
        self.started = time.monotonic()
        self.converged_since: float | None = None
        self.rejected_tables = 0
        self.members_released = False
        self.warm = False  # some relay held tables when it connected: resynchronising
        self.avoid_changed = False
        self.awaited: set[str] = set()  # the next hops that held rows wait for
        # regions that several relays report down: carry no transit until they are back
        self.unreachable: frozenset[str] = frozenset()
        self.events: deque[admin_pb2.Event] = deque(maxlen=settings.max_events)
        self.wake = asyncio.Event()  # recompute now rather than at the next interval

    # -- relay sessions --------------------------------------------------------------------

    def connect(self, hello: relay_pb2.Hello) -> Session:
        relay = Relay(hello.region, hello.node_id, hello.probe_addr, time.monotonic(),
                      hello.route_version)
        old = self.sessions.pop(hello.region, None)
        if old:
            log.info("%s: node %s replaces %s", relay.region, relay.node_id, old.relay.node_id)
            old.send(None)
        self.topology.add_relay(relay)
        session = Session(relay, edge_addr=hello.edge_addr)
        self.sessions[relay.region] = session
        # versions only grow, across controller restarts too
        self.version = max(self.version, hello.route_version)
        if hello.route_version and not self.tables:
            self.warm = True  # relays run on tables from before this controller started
        self.broadcast_peers()
        session.send(self.config_for(relay.region))
        self.dirty = True
        self.record("relay-connected", relay.region,
                    f"{relay.node_id}, holding routes v{hello.route_version}")
        log.info(
            "%s: relay %s connected from %s (holds routes v%d)",
            relay.region,
            relay.node_id,
            relay.probe_addr,
            hello.route_version,
        )
        return session

    def disconnect(self, session: Session) -> None:
        region = session.relay.region
        if self.sessions.get(region) is session:
            del self.sessions[region]
            self.topology.remove_relay(region)
            self.broadcast_peers()
            self.update_members(set(session.interest))
            self.dirty = True
            self.wake.set()
            self.record("relay-disconnected", region, session.relay.node_id)
            log.info("%s: relay %s disconnected", region, session.relay.node_id)

    def broadcast_peers(self) -> None:
        for session in self.sessions.values():
            peers = [
                relay_pb2.Peer(region=r.region, probe_addr=r.probe_addr)
                for r in sorted(self.topology.relays.values(), key=lambda r: r.region)
                if r.region != session.relay.region
            ]
            session.send(
                relay_pb2.ControllerMessage(
                    peers=relay_pb2.PeerList(
                        peers=peers,
                        probe_interval_s=self.settings.probe_interval_s,
                        report_interval_s=self.settings.report_interval_s,
                        neighbour_probe_interval_s=self.settings.neighbour_probe_interval_s,
                        down_after=self.settings.down_after,
                        degraded_loss=self.settings.degraded_loss,
                        degraded_jitter_ms=self.settings.degraded_jitter_ms,
                    )
                )
            )

    def config_for(self, region: str) -> relay_pb2.ControllerMessage:
        zones = [z.name for z in self.policy.zones.values() if region in z.regions]
        return relay_pb2.ControllerMessage(config=relay_pb2.RelayConfig(
            app_secrets=self.apps, fabric_key=self.fabric_keys[0],
            accepted_keys=self.fabric_keys[1:], zones=zones, drained=region in self.drained))

    # -- drains ----------------------------------------------------------------------------

    def load_state(self) -> set[str]:
        if self.state_file is None or not self.state_file.exists():
            return set()
        try:
            data = json.loads(self.state_file.read_text())
            drained = data.get("drained", []) if isinstance(data, dict) else None
            if not isinstance(drained, list) or not all(isinstance(r, str) for r in drained):
                raise ValueError("field 'drained' must be a list of region ids")
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.state_file}: {e}") from None
        unknown = [r for r in drained if r not in self.catalogue]
        if unknown:
            log.warning("%s: drained regions not in the catalogue ignored: %s",
                        self.state_file, ", ".join(unknown))
        return {r for r in drained if r in self.catalogue}

    def save_state(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"drained": sorted(self.drained)}, indent=1))
        tmp.replace(self.state_file)  # the change is acknowledged only once it is kept

    def drain(self, region: str, drained: bool) -> None:
        """Drain (or undrain) a region: its edge refuses new sessions and routes move their
        transit off it, make-before-break (it keeps forwarding what still comes its way)."""
        before = set(self.drained)
        (self.drained.add if drained else self.drained.discard)(region)
        try:
            self.save_state()
        except OSError:
            self.drained = before
            raise
        if self.drained != before:
            self.record("drain" if drained else "undrain", region)
            log.info("%s: %s", region, "drained" if drained else "undrained")
            self.avoid_changed = True
            self.dirty = True
            if (session := self.sessions.get(region)) is not None:
                session.send(self.config_for(region))
            self.recompute()

    # -- channels --------------------------------------------------------------------------

    def on_channels(self, session: Session, msg: relay_pb2.Channels) -> None:
        old = session.interest
        session.interest = {(c.zone, c.channel): (c.subscribers, c.publishers)
                            for c in msg.channels}
        new_publisher = {k for k, (_, pub) in session.interest.items()
                         if pub and not old.get(k, (False, False))[1]}
        self.update_members(set(old) | set(session.interest), also_to={
            k: session for k in new_publisher})

    def members_of(self, key: tuple[str, str]) -> tuple[str, ...]:
        return tuple(sorted(r for r, s in self.sessions.items()
                            if s.interest.get(key, (False, False))[0]))

    def holding_members(self) -> bool:
        return (len(self.sessions) < len(self.catalogue)
                and time.monotonic() - self.started < self.settings.members_hold_s)

    def update_members(self, keys: set[tuple[str, str]],
                       also_to: Mapping[tuple[str, str], Session] | None = None) -> None:
        """Push the subscriber regions of `keys` to their publishers' relays where the set
        changed (and to `also_to`, relays that just started publishing)."""
        if self.holding_members():
            return
        also_to = also_to or {}
        for key in keys:
            members = self.members_of(key)
            changed = members != self.members.get(key, ())
            if members:
                self.members[key] = members
            else:
                self.members.pop(key, None)
            for s in self.sessions.values():
                publishes = s.interest.get(key, (False, False))[1]
                if publishes and (changed or also_to.get(key) is s):
                    s.send(relay_pb2.ControllerMessage(members=relay_pb2.ChannelMembers(
                        zone=key[0], channel=key[1], regions=members)))

    def release_members(self) -> None:
        """After the hold: push every publisher the members of its channels."""
        keys = {k for s in self.sessions.values() for k in s.interest}
        publishing = {k: s for s in self.sessions.values() for k, (_, pub) in s.interest.items()
                      if pub}
        self.members_released = True
        for key in keys:
            self.members.pop(key, None)  # force a push
        self.update_members(keys, also_to=publishing)

    def on_report(self, session: Session, report: relay_pb2.LinkReport) -> None:
        samples = [
            {
                "dst": s.dst,
                "rtt_ms": s.rtt_ms,
                "min_rtt_ms": s.min_rtt_ms,
                "jitter_ms": s.jitter_ms,
                "loss": s.loss,
                "window": s.window,
                "samples": s.samples,
                "lost": s.lost,
                "state": FROM_WIRE.get(s.state, "?"),
            }
            for s in report.links
        ]
        session.counters = dict(report.counters)
        problems = self.topology.report(session.relay.region, samples, time.monotonic())
        for problem in problems:
            log.warning("%s: rejected sample: %s", session.relay.region, problem)
        self.dirty = True

    def on_events(self, session: Session, events: relay_pb2.RelayEvents) -> None:
        now = time.time()
        for e in events.events:
            self.events.append(admin_pb2.Event(region=session.relay.region, event=e,
                                               received_unix_s=now))
            if e.kind in ("link-down", "link-up", "reroute"):
                log.info("%s: %s %s %s", session.relay.region, e.kind, e.peer, e.detail)
                self.dirty = True
                self.wake.set()

    def record(self, kind: str, peer: str = "", detail: str = "") -> None:
        """An event of the controller's own, beside the relays'."""
        now = time.time()
        self.events.append(admin_pb2.Event(region="controller", received_unix_s=now,
                                           event=relay_pb2.RelayEvent(
                                               at_unix_s=now, kind=kind, peer=peer,
                                               detail=detail)))

    def resyncing(self) -> bool:
        """After a restart among relays that forward on earlier tables: hold new tables until
        every region is back and measured, or for resync_hold_s."""
        if not self.warm:
            return False
        done = (len(self.sessions) == len(self.catalogue) and self.all_measured()) or \
            time.monotonic() - self.started >= self.settings.resync_hold_s
        if done:
            self.warm = False
            log.info("resynchronised with %d relays after %.1f s", len(self.sessions),
                     time.monotonic() - self.started)
        return not done

    def on_ack(self, session: Session, ack: relay_pb2.RouteAck) -> None:
        if ack.accepted:
            session.acked_version = max(session.acked_version, ack.version)
            rows = session.unacked.get(ack.version)
            if rows is not None:
                session.installed = {(r.zone, r.dst): r for r in rows}
                session.unacked = {v: r for v, r in session.unacked.items() if v > ack.version}
                if session.relay.region in self.awaited:
                    self.wake.set()  # rows held for this relay's may go now
        else:
            self.rejected_tables += 1
            log.warning(
                "%s: rejected routes v%d: %s", session.relay.region, ack.version, ack.reason
            )
            session.pushed = None  # push again at the next version
            self.dirty = True

    # -- routing ---------------------------------------------------------------------------

    def recompute(self) -> bool:
        """Expire stale links, recompute routes, push changed rows. True if anything moved."""
        now = time.monotonic()
        if self.topology.expire(now):
            self.dirty = True
        # held rows go out when their next hop acknowledges, or after order_hold_s
        waiting = bool(self.awaited)
        if not (self.dirty or waiting) or self.resyncing():
            return False
        if not self.dirty:
            return self.push_staged(now)
        self.dirty = False
        # routes from a partial measurement are no reason to hold on to a path
        previous = self.routes if self.routes_complete else None
        self.routes_complete = self.all_measured()
        graph = routing.build_graph(self.sessions, self.topology.usable_links(now),
                                    self.settings.cost)
        unreachable = self.topology.unreachable() & set(self.sessions)
        if unreachable != self.unreachable:
            for region in sorted(unreachable - self.unreachable):
                self.record("region-unreachable", region, "links to it down at several relays")
                log.warning("%s: unreachable from several relays: no transit through it",
                            region)
            for region in sorted(self.unreachable - unreachable):
                self.record("region-reachable", region)
                log.info("%s: reachable again", region)
            self.unreachable = unreachable
            self.avoid_changed = True
        # nothing to compute while no link moved beyond measurement noise
        if previous is None or self.avoid_changed or not routing.same_within(
                graph, self.graph, self.settings.dead_band, self.settings.dead_band_ms):
            self.graph = graph
            self.avoid_changed = False
            self.routes = engine.compute(graph, self.policy, previous, self.settings.hysteresis,
                                         self.drained | self.unreachable)
            self.tables = {region: self.routes.table(region) for region in self.sessions}
        self.links_up = graph.has_edge
        return self.push_staged(now)

    def push_staged(self, now: float) -> bool:
        """Push each relay whose staged rows changed; True if any did."""
        staged = self.stage(now)
        # a new version when some relay's paths change; costs alone drift with every sample
        changed = [s for s in self.sessions.values()
                   if s.pushed != paths_of(staged[s.relay.region])]
        if changed:
            self.version += 1
            held = sum(s.held for s in self.sessions.values())
            log.info("routes v%d: %d relays' tables changed%s", self.version, len(changed),
                     f", {held} rows wait for their next hop" if held else "")
            for session in changed:
                self.push(session, staged[session.relay.region])
        return bool(changed)

    def stage(self, now: float) -> dict[str, list[Route]]:
        """Each relay's rows to push now: the target tables, less the changed rows whose new
        next hop is not ready (controller/ordering.py), unless they waited order_hold_s."""
        installed = {region: s.installed for region, s in self.sessions.items()}
        staged = {}
        self.awaited = set()
        for region, session in self.sessions.items():
            target = self.tables.get(region, [])
            rows, held = ordering.stage(region, target, installed, self.links_up,
                                        self.unreachable, session.sent)
            if held and session.held_since is None:
                session.held_since = now
            if held and now - session.held_since >= self.settings.order_hold_s:
                # routine while routes settle (at start-up they change every few hundred ms)
                log.info("%s: %d rows pushed after waiting %.1f s for their next hops",
                         region, held, self.settings.order_hold_s)
                rows, held = target, 0
            if not held:
                session.held_since = None
            else:
                self.awaited |= {t.next_hop for t, r in zip(target, rows, strict=True)
                                 if t is not r}
            session.held = held
            staged[region] = rows
        return staged

    def push(self, session: Session, rows: list[Route]) -> None:
        session.pushed, session.pushed_version = paths_of(rows), self.version
        session.unacked[self.version] = rows
        session.sent = {(r.zone, r.dst): r for r in rows}
        for version in sorted(session.unacked)[:-16]:  # a relay that stopped acknowledging
            del session.unacked[version]
        session.send(
            relay_pb2.ControllerMessage(
                routes=relay_pb2.RouteTable(
                    version=self.version,
                    nonce=uuid.uuid4().hex[:12],
                    routes=[route_entry(r) for r in rows],
                )
            )
        )

    def converged(self) -> bool:
        ok = (
            bool(self.sessions)
            and self.routes_complete
            and self.all_measured()
            and all(s.in_sync for s in self.sessions.values())
        )
        now = time.monotonic()
        if not ok:
            self.converged_since = None
        elif self.converged_since is None:
            self.converged_since = now
        return ok

    def all_measured(self) -> bool:
        return all(self.topology.measured(r) for r in self.sessions)

    async def run(self) -> None:
        while True:
            try:
                if not self.members_released and not self.holding_members():
                    self.release_members()
                self.recompute()
                self.converged()
            except Exception:  # the loop must survive any one bad round
                log.exception("route computation failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.settings.recompute_interval_s)


def paths_of(rows: list[Route]) -> list[tuple]:
    """What makes a table different for a relay: paths and backups, not drifting costs."""
    return [(r.zone, r.dst, r.path, r.backup_next_hop) for r in rows]


def route_entry(r: Route) -> relay_pb2.RouteEntry:
    return relay_pb2.RouteEntry(
        dst=r.dst, next_hop=r.next_hop, path=list(r.path), cost_ms=round(r.cost_ms, 3),
        zone=r.zone, backup_next_hop=r.backup_next_hop or "", backup_kind=r.backup_kind,
        backup_cost_ms=round(r.backup_cost_ms or 0.0, 3))


class RelayControlService(relay_pb2_grpc.RelayControlServicer):
    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    async def Session(
        self,
        request_iterator: AsyncIterator[relay_pb2.RelayMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator:
        ctl = self.controller
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            return
        problem = check_hello(first, ctl.catalogue)
        if problem:
            code, reason = problem
            log.warning("refused a relay session: %s", reason)
            await context.abort(code, reason)
        session = ctl.connect(first.hello)
        reader = asyncio.create_task(self._read(session, request_iterator, context))
        try:
            while (msg := await session.queue.get()) is not None:
                yield msg
        finally:
            reader.cancel()
            ctl.disconnect(session)

    async def _read(
        self, session: Session, requests: AsyncIterator, context: grpc.aio.ServicerContext
    ) -> None:
        try:
            async for msg in requests:
                kind = msg.WhichOneof("msg")
                if kind == "report":
                    self.controller.on_report(session, msg.report)
                elif kind == "ack":
                    self.controller.on_ack(session, msg.ack)
                elif kind == "channels":
                    self.controller.on_channels(session, msg.channels)
                elif kind == "events":
                    self.controller.on_events(session, msg.events)
                else:
                    log.warning("%s: unexpected %s message ignored", session.relay.region, kind)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            session.send(None)


def check_hello(
    msg: relay_pb2.RelayMessage, catalogue: Mapping[str, Region]
) -> tuple[grpc.StatusCode, str] | None:
    if msg.WhichOneof("msg") != "hello":
        return grpc.StatusCode.INVALID_ARGUMENT, "the first message of a session must be a hello"
    hello = msg.hello
    if hello.region not in catalogue:
        return grpc.StatusCode.NOT_FOUND, f"unknown region {hello.region!r}: not in the catalogue"
    if not _ADDR.match(hello.probe_addr):
        return (
            grpc.StatusCode.INVALID_ARGUMENT,
            f"probe_addr {hello.probe_addr!r} is not host:port",
        )
    if hello.edge_addr and not _ADDR.match(hello.edge_addr):
        return grpc.StatusCode.INVALID_ARGUMENT, f"edge_addr {hello.edge_addr!r} is not host:port"
    return None


class AdminService(admin_pb2_grpc.AdminServicer):
    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    async def Status(self, request, context) -> admin_pb2.StatusReply:
        ctl = self.controller
        up, measured, expected = ctl.topology.counts()
        converged = ctl.converged()
        now = time.monotonic()
        return admin_pb2.StatusReply(
            relays=len(ctl.sessions),
            regions=len(ctl.catalogue),
            route_version=ctl.version,
            converged=converged,
            links_up=up,
            links_measured=measured,
            links_expected=expected,
            relays_acked=sum(s.in_sync for s in ctl.sessions.values()),
            uptime_s=now - ctl.started,
            converged_for_s=now - ctl.converged_since if converged else 0.0,
            rejected_samples=ctl.topology.rejected_samples,
            rejected_tables=ctl.rejected_tables,
        )

    async def Regions(self, request, context) -> admin_pb2.RegionsReply:
        ctl = self.controller
        infos = []
        for rid, region in sorted(ctl.catalogue.items()):
            session = ctl.sessions.get(rid)
            infos.append(
                admin_pb2.RegionInfo(
                    id=rid,
                    name=region.name,
                    country=region.country,
                    lat=region.lat,
                    lon=region.lon,
                    tags=list(region.tags),
                    connected=session is not None,
                    probe_addr=session.relay.probe_addr if session else "",
                    route_version=session.acked_version if session else 0,
                    hello_version=session.relay.hello_version if session else 0,
                    counters=session.counters if session else {},
                    edge_addr=session.edge_addr if session else "",
                    drained=rid in ctl.drained,
                )
            )
        return admin_pb2.RegionsReply(regions=infos)

    async def Links(self, request, context) -> admin_pb2.LinksReply:
        ctl = self.controller
        infos = []
        for (src, dst), r in sorted(ctl.topology.links.items()):
            sample = relay_pb2.LinkSample(
                dst=dst,
                rtt_ms=r.rtt_ms,
                min_rtt_ms=r.min_rtt_ms,
                jitter_ms=r.jitter_ms,
                loss=r.loss,
                window=r.window,
                samples=r.samples,
                lost=r.lost,
                age_s=time.monotonic() - r.received_at,
                state=TO_WIRE[r.state],
            )
            cost = routing.link_cost(r.latency_ms, r.routing_loss, ctl.settings.cost)
            suppressed = ctl.topology.damper.suppressed((src, dst), time.monotonic())
            infos.append(admin_pb2.LinkInfo(src=src, sample=sample, cost_ms=cost,
                                            suppressed=suppressed))
        return admin_pb2.LinksReply(links=infos)

    async def Routes(self, request, context) -> admin_pb2.RoutesReply:
        ctl = self.controller
        await self._known(context, request.region)
        rows = ctl.tables.get(request.region, [])
        if request.zone:
            await self._zone(context, request.zone)
            rows = [r for r in rows if r.zone == request.zone]
        session = ctl.sessions.get(request.region)
        return admin_pb2.RoutesReply(region=request.region,
                                     version=session.pushed_version if session else 0,
                                     routes=[route_entry(r) for r in rows])

    async def Path(self, request, context) -> admin_pb2.PathReply:
        ctl = self.controller
        await self._known(context, request.src, request.dst)
        zone = await self._zone(context, request.zone or "global")
        reply = admin_pb2.PathReply(src=request.src, dst=request.dst, version=ctl.version,
                                    zone=zone.zone, backup_kind="none")
        route = zone.route(request.src, request.dst)
        reason = zone.unreachable_reason(request.src, request.dst)
        if route:
            reply.path[:] = list(route.path)
            reply.cost_ms = round(route.cost_ms, 3)
            reply.reachable = True
            reply.backup_next_hop = route.backup_next_hop or ""
            reply.backup_kind = route.backup_kind
        elif request.src == request.dst and not reason:
            reply.path[:] = [request.src]
            reply.reachable = True
        else:
            reply.reason = reason or f"no path from {request.src} to {request.dst}"
            if ctl.warm:
                reply.reason += ("; the controller is resynchronising after a restart (the "
                                 "relays forward on their own tables meanwhile)")
        return reply

    async def Zones(self, request, context) -> admin_pb2.ZonesReply:
        ctl = self.controller
        return admin_pb2.ZonesReply(policy=ctl.policy.source or "(every region: global)", zones=[
            admin_pb2.ZoneInfo(name=z.name, description=z.description,
                               regions=sorted(z.regions),
                               connected=sum(r in ctl.sessions for r in z.regions))
            for z in ctl.policy.zones.values()])

    async def PlanFailover(self, request, context) -> admin_pb2.FailoverReply:
        ctl = self.controller
        zones = None
        if request.zone:
            zones = [(await self._zone(context, request.zone)).zone]
        if request.region:
            await self._known(context, request.region)
            if request.region not in ctl.graph:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"{request.region} has no relay in the topology")
            plan = engine.plan_failover(ctl.graph, ctl.policy, ctl.routes,
                                        region=request.region, zones=zones,
                                        hysteresis=ctl.settings.hysteresis, avoid=ctl.drained)
        elif request.link_src and request.link_dst:
            await self._known(context, request.link_src, request.link_dst)
            plan = engine.plan_failover(ctl.graph, ctl.policy, ctl.routes,
                                        link=(request.link_src, request.link_dst), zones=zones,
                                        hysteresis=ctl.settings.hysteresis, avoid=ctl.drained)
        else:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                 "name a region, or both ends of a link")
        return admin_pb2.FailoverReply(
            failure=plan.failure, routes_total=plan.routes_total,
            lost_endpoints=plan.lost_endpoints, version=ctl.version,
            changes=[admin_pb2.RouteChange(
                zone=c.zone, src=c.src, dst=c.dst, old_path=list(c.old_path),
                new_path=list(c.new_path or ()), old_cost_ms=c.old_cost_ms,
                new_cost_ms=c.new_cost_ms or 0.0, reachable=c.new_path is not None,
                reason=c.reason) for c in plan.changes])

    async def Channels(self, request, context) -> admin_pb2.ChannelsReply:
        ctl = self.controller
        keys = sorted({k for s in ctl.sessions.values() for k in s.interest})
        return admin_pb2.ChannelsReply(channels=[
            admin_pb2.ChannelInfo(
                zone=zone, channel=channel,
                publisher_regions=sorted(r for r, s in ctl.sessions.items()
                                         if s.interest.get((zone, channel), (0, 0))[1]),
                subscriber_regions=list(ctl.members_of((zone, channel))))
            for zone, channel in keys])

    async def Drain(self, request, context) -> admin_pb2.DrainReply:
        await self._known(context, request.region)
        ctl = self.controller
        try:
            ctl.drain(request.region, request.drained)
        except OSError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"could not keep the change in {ctl.state_file}: {e}")
        return admin_pb2.DrainReply(region=request.region, drained=request.drained,
                                    version=ctl.version, drained_regions=sorted(ctl.drained))

    async def Events(self, request, context) -> admin_pb2.EventsReply:
        since = request.since_unix_s
        return admin_pb2.EventsReply(events=[e for e in self.controller.events
                                             if e.event.at_unix_s >= since])

    async def Chaos(self, request, context) -> admin_pb2.ChaosReply:
        await self._known(context, request.region)
        session = self.controller.sessions.get(request.region)
        if session is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"region {request.region!r} has no relay connected")
        await self._known(context, *request.chaos.drop_peers)
        session.send(relay_pb2.ControllerMessage(chaos=request.chaos))
        what = ("every peer" if request.chaos.drop_all else
                ", ".join(request.chaos.drop_peers) or "nothing")
        self.controller.record("chaos", request.region, f"dropping traffic with {what}")
        return admin_pb2.ChaosReply()

    async def _known(self, context, *regions: str) -> None:
        for rid in regions:
            if rid not in self.controller.catalogue:
                await context.abort(grpc.StatusCode.NOT_FOUND,
                                    f"unknown region {rid!r}: not in the catalogue")

    async def _zone(self, context, name: str) -> engine.ZoneRoutes:
        zones = self.controller.routes.zones
        if name not in zones:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"unknown zone {name!r} (zones: {', '.join(zones)})")
        return zones[name]


async def serve(catalogue: Mapping[str, Region], policy: Policy, listen: str,
                settings: Settings = Settings(), apps: Mapping[str, bytes] | None = None,
                fabric_keys: list[bytes] | None = None, state_file: Path | None = None
                ) -> tuple[grpc.aio.Server, Controller, int]:
    controller = Controller(catalogue, policy, settings, apps, fabric_keys, state_file)
    server = grpc.aio.server()
    relay_pb2_grpc.add_RelayControlServicer_to_server(RelayControlService(controller), server)
    admin_pb2_grpc.add_AdminServicer_to_server(AdminService(controller), server)
    port = server.add_insecure_port(listen)
    if not port:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    return server, controller, port
