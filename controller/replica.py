"""A controller replica on etcd (`--store etcd://...`): its campaign, its core while it leads,
and the gateway to the leader while it does not.

The core (controller/core.py and its recompute loop) is built when this replica first leads,
from the state read from etcd, and kept: when the replica stops leading it keeps serving its
relays and admin reads from what it holds (read-only: the store refuses every write without
the fence, and no route version is reserved), until another replica is known to lead; then its
relays' sessions are ended so that they come back through a replica that relays them to the
leader. When it leads again, the state is read again and versions go on above every earlier
term's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from controller import etcdstate, translate
from controller.admin_service import AdminService
from controller.gateway import AdminGateway, RelayGateway, Target, Upstreams
from controller.leadership import Leadership
from controller.mirror import EtcdMirror
from controller.relay_service import RelayControlService
from skymesh.v1 import admin_pb2

log = logging.getLogger("skymesh.controller")

CHECK_S = 0.1  # how often the replica looks at who leads
ROUTE_SET_EVERY_S = 10.0  # the latest route set goes to etcd at most this often


class Replica:
    def __init__(self, leadership: Leadership, make_loop: Callable[[], object],
                 catalogue: dict, mesh: str | None, tls) -> None:
        """`make_loop()` builds the recompute loop (controller/server.py) on the store's
        state, once, when this replica first leads."""
        self.leadership = leadership
        self.make_loop = make_loop
        self.mesh = mesh
        self.loop = None  # RecomputeLoop, once this replica has led
        self.metrics_addr = ""  # its Prometheus endpoint, host:port ("": none)
        self.dashboard_url = ""  # the live map it serves ("": none)
        self.resolver_server = None  # --resolve-listen
        self.health: list = []  # its servers' health services (skymesh/net/health.py)
        self.relays: RelayControlService | None = None
        self.admin: AdminService | None = None
        self.rounds: asyncio.Task | None = None
        self.upstreams = Upstreams(tls)
        self.catalogue = catalogue
        self.mirror = EtcdMirror(leadership.etcd, leadership.keys)
        self.relay_gateway = RelayGateway(self.target, lambda: self.relays, catalogue, mesh,
                                          self.upstreams)
        self.admin_gateway = AdminGateway(self.target, lambda: self.admin, self.upstreams,
                                          self.unavailable, mesh, self.from_etcd)
        leadership.began = self._began

    @property
    def name(self) -> str:
        return self.leadership.replica

    def target(self) -> Target | None:
        """Who serves relays and admin calls now: this replica while it leads (or, with no
        other replica known to lead, while it holds a state); the leader otherwise."""
        lead = self.leadership
        if lead.leading:
            return Target(self.name, lead.address, True)
        top = lead.leader()
        if top is not None and top.replica != self.name and top.address:
            return Target(top.replica, top.address, False)
        if self.loop is not None:
            return Target(self.name, lead.address, True)
        return None

    def carries_sessions(self) -> bool:
        """A relay's session would be served now: by this replica's core, or relayed to the
        replica that leads (the gateway's condition; otherwise the session waits)."""
        t = self.target()
        return t is not None and (not t.local or self.relays is not None)

    def answers_admin(self) -> bool:
        """Admin calls are answered now: by this replica's core or the leader's, or (reads)
        from what etcd holds."""
        t = self.target()
        return t is not None and (not t.local or self.admin is not None) \
            or self.mirror.ready.is_set()

    def unavailable(self) -> str:
        lead = self.leadership
        why = lead.etcd_error or "no replica leads yet"
        return f"replica {self.name} cannot answer: no replica leads ({why})"

    def publish(self, store) -> None:
        """What this replica serves (its files' catalogue, policy and apps), on etcd for
        whoever reads the mesh there; written when it differs."""
        assert self.loop is not None
        core = self.loop.core
        changed = store.publish_config(etcdstate.config_values(
            self.leadership.keys, core.catalogue, core.policy, core.apps))
        if changed:
            log.info("configuration on etcd: %d keys written", changed)

    def from_etcd(self, method: str, request) -> object | None:
        """A read no core can answer now (no leader reachable, none held here), from what
        etcd holds: status (replicas, store, live relays), regions, the audit log, and
        routes and paths from the latest route set (None: not from there)."""
        m = self.mirror
        if not m.ready.is_set():
            return None
        if method == "Audit":
            return admin_pb2.AuditReply(entries=[
                admin_pb2.AuditEntry(at_unix_s=e.at_unix_s, actor=e.actor, action=e.action,
                                     target=e.target, detail=e.detail)
                for e in m.audit(request.since_unix_s, request.limit)])
        if method == "Status":
            c = self.leadership.view()
            sets = [held[0] for zone in m.route_sets if (held := m.route_set(zone))]
            return admin_pb2.StatusReply(
                relays=len({region for region, _ in m.relays}), regions=len(self.catalogue),
                route_version=max(sets, default=0), converged=False, replica=c.replica,
                leader=c.leader, metrics_addr=self.metrics_addr,
                dashboard_url=self.dashboard_url,
                replicas=[admin_pb2.ReplicaInfo(id=r.id, address=r.address, leader=r.leader,
                                                healthy=r.healthy) for r in c.replicas],
                store=admin_pb2.StoreInfo(kind=c.store_kind, where=c.store_where,
                                          healthy=c.store_healthy, error=c.store_error))
        if method == "Regions":
            return admin_pb2.RegionsReply(regions=[self.region_from_etcd(rid, region)
                                                   for rid, region in sorted(
                                                       self.catalogue.items())])
        if method == "Routes":
            if request.region not in self.catalogue:
                return None
            version, rows = 0, []
            for zone in [request.zone] if request.zone else sorted(m.route_sets):
                if (held := m.route_set(zone)) is None:
                    continue
                version = max(version, held[0])
                rows += held[1].rows(request.region) if request.region in held[1].index \
                    else []
            if not version:
                return None
            return admin_pb2.RoutesReply(region=request.region, version=version,
                                         routes=[translate.route_entry(r) for r in rows])
        if method == "Path":
            zone = request.zone or "global"
            if (held := m.route_set(zone)) is None or \
                    not {request.src, request.dst} <= self.catalogue.keys():
                return None
            version, z = held
            reply = admin_pb2.PathReply(src=request.src, dst=request.dst, version=version,
                                        zone=zone)
            if (route := z.route(request.src, request.dst)) is not None:
                reply.path[:] = route.path
                reply.cost_ms, reply.reachable = round(route.cost_ms, 3), True
                reply.backup_next_hop = route.backup_next_hop or ""
                reply.backup_kind = route.backup_kind
            elif request.src == request.dst and request.src in z.index:
                reply.path[:], reply.reachable = [request.src], True
            else:
                reply.reason = z.unreachable_reason(request.src, request.dst) or \
                    f"no path from {request.src} to {request.dst}"
            return reply
        return None

    def region_from_etcd(self, rid: str, region) -> admin_pb2.RegionInfo:
        """A region as etcd holds it: its catalogue entry, whether it is drained, and its
        live relays (bound to the leader's lease: gone once a dead leader's lease is)."""
        nodes = sorted((node, entry) for (r, node), entry in self.mirror.relays.items()
                       if r == rid)
        return admin_pb2.RegionInfo(
            id=rid, name=region.name, country=region.country, lat=region.lat,
            lon=region.lon, tags=list(region.tags), connected=bool(nodes),
            probe_addr=nodes[0][1]["probe_addr"] if nodes else "",
            drained=rid in self.mirror.drained,
            nodes=[admin_pb2.NodeInfo(node_id=node, probe_addr=entry["probe_addr"],
                                      replica=entry["replica"], lead=i == 0)
                   for i, (node, entry) in enumerate(nodes)])

    async def _began(self) -> None:
        """A term begins: the state as etcd holds it now."""
        store = self.leadership.store
        await store.open()
        if self.loop is None:
            self.loop = self.make_loop()
            core = self.loop.core
            self.relays = RelayControlService(core, self.mesh)
            self.relays.replica = self.name
            self.relays.began = lambda s: store.relay_up(
                s.relay.region, s.relay.node_id, s.replica, s.relay.probe_addr, time.time())
            # a node that came back on another session before this one ended stays listed
            self.relays.ended = lambda s: core.node_session(s.node) is None and \
                store.relay_down(s.relay.region, s.relay.node_id)
            self.loop.computed = self.relays.take_reports
            self.admin = AdminService(core, self.mesh, self.leadership.view)
            self.admin.metrics_addr = self.metrics_addr
            self.admin.dashboard_url = self.dashboard_url
            follow(self.loop, self.leadership)
            self.rounds = asyncio.get_running_loop().create_task(self.loop.run())
        else:
            core = self.loop.core
            core.restore(store.load(core.catalogue), time.monotonic(), time.time())
            core.distribution.version = max(core.distribution.version, store.reserved)
            assert self.relays is not None
            self.relays.resume()
        self.publish(store)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        campaign = loop.create_task(self.leadership.run())
        mirror = loop.create_task(self.mirror.run())
        routes = loop.create_task(self.keep_routes())
        try:
            while True:
                self.check()
                await asyncio.sleep(CHECK_S)
        finally:
            campaign.cancel()
            mirror.cancel()
            routes.cancel()
            if self.rounds is not None:
                self.rounds.cancel()

    async def keep_routes(self) -> None:
        """While leading, the latest route set on etcd, a zone a key: when the version
        moved, at most every ROUTE_SET_EVERY_S (bounded, however many rounds)."""
        kept = 0
        while True:
            await asyncio.sleep(CHECK_S * 10)
            core = self.loop.core if self.loop is not None else None
            if core is None or not self.leadership.leading or not core.routes.zones \
                    or core.version == kept:
                continue
            version, zones = core.version, dict(core.routes.zones)
            sets = await asyncio.to_thread(encoded_route_sets, version, zones)
            for zone, (value, parts) in sets.items():
                self.leadership.store.save_route_set(zone, version, value, parts)
            kept = version
            await asyncio.sleep(ROUTE_SET_EVERY_S)

    def check(self) -> None:
        """Once another replica leads, this one's relays go to it."""
        lead = self.leadership
        if self.relays is None or lead.leading or self.relays.ending:
            return
        top = lead.leader()
        if top is not None and top.replica != self.name:
            log.info("replica %s leads: ending %d relay sessions held here (they come back "
                     "through a replica that relays them)", top.replica, len(self.relays.open))
            self.relays.end_all(f"replica {self.name} no longer leads; {top.replica} does")

    async def wait_ready(self, timeout_s: float) -> None:
        """Until etcd has answered once and this replica leads or knows who does; OSError
        saying why not within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        lead = self.leadership
        while time.monotonic() < deadline:
            await lead.turn()
            if lead.etcd_ok and (lead.leading or lead.leader() is not None):
                return
            await asyncio.sleep(0.1)
        raise OSError(f"{lead.store.where}: no answer within {timeout_s:.0f} s"
                      + (f": {lead.etcd_error}" if lead.etcd_error else ""))

    async def close(self) -> None:
        """Resign (the next replica leads at once, not after the lease's TTL) and let go of
        etcd and the leader's channels."""
        if self.resolver_server is not None:
            await self.resolver_server.stop(0.5)
        await self.leadership.resign()
        await self.leadership.store.close()
        await self.leadership.etcd.close()
        await self.upstreams.close()


def encoded_route_sets(version: int, zones: dict) -> dict[str, tuple[bytes, list[bytes]]]:
    return {name: etcdstate.encode_route_set(version, z) for name, z in zones.items()}


def follow(loop, leadership: Leadership) -> None:
    """The core pushes route versions only within what the leadership reserved, above
    every version an earlier leader may have pushed."""
    core = loop.core
    dist = core.distribution

    def limit(upto: int | None) -> None:
        dist.limit = upto
        core.wake()  # what waited for versions goes now

    dist.version = max(dist.version, leadership.store.reserved)
    dist.limit = dist.version  # until this term's reservation, just after
    leadership.pushed = lambda: dist.version
    leadership.limit = limit
