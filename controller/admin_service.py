"""The Admin gRPC service: requests to controller core queries and commands, their results to
replies, the core's refusals to status codes (the reason is the core's message)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NoReturn

import grpc

from controller import translate
from controller.callers import caller
from controller.core import BadRequest, Controller, NotFound, NotReady, Refused
from controller.leadership import ClusterView, lone
from skymesh.identity import stranger
from skymesh.linkstate import TO_WIRE
from skymesh.v1 import admin_pb2, admin_pb2_grpc, relay_pb2

CODES = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    NotReady: grpc.StatusCode.FAILED_PRECONDITION,
    BadRequest: grpc.StatusCode.INVALID_ARGUMENT,
}


async def refuse(context: grpc.aio.ServicerContext, refusal: Refused) -> NoReturn:
    """Abort the call (context.abort raises)."""
    await context.abort(CODES[type(refusal)], str(refusal))


#: What each call does: "read" is open to viewers and operators, "change" to operators only.
ACTIONS = {"Status": "read", "Regions": "read", "Links": "read", "Routes": "read",
           "Path": "read", "Zones": "read", "PlanFailover": "read", "Channels": "read",
           "Events": "read", "Audit": "read", "Drain": "change", "Chaos": "change",
           "RotateFabricKey": "change"}


class AdminService(admin_pb2_grpc.AdminServicer):
    """`mesh`: the mesh whose admin certificates are accepted; None only for a controller run
    with --insecure, where every caller is an operator (audited as "insecure")."""

    def __init__(self, controller: Controller, mesh: str | None,
                 cluster: Callable[[], ClusterView] | None = None) -> None:
        self.controller = controller
        self.mesh = mesh
        self.cluster = cluster or (lambda: lone("controller", "", controller.store))
        self.metrics_addr = ""  # this process's Prometheus endpoint, host:port ("": none)
        self.dashboard_url = ""  # the live map this process serves ("": none)

    async def allow(self, context: grpc.aio.ServicerContext, rpc: str) -> str:
        """Who is calling `rpc`, if their certificate allows it; else the call is aborted
        with PERMISSION_DENIED (counted, logged, and audited when it would have changed
        something)."""
        if self.mesh is None:
            return "insecure"
        action = ACTIONS[rpc]
        who = caller(context, self.mesh)
        if why := stranger(who, self.mesh):  # also when there is no identity at all
            reason = why
        elif who is not None and who.may(action):
            return str(who)
        elif who is not None and who.kind != "admin":
            reason = f"{who} is a {who.kind}: only admin certificates call the admin service"
        else:
            reason = f"{who} may not call {rpc}: it takes an operator certificate"
        self.controller.refuse(f"admin-{action}", str(who or ""), f"{rpc}: {reason}",
                               unix=time.time(), audited=action == "change")
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)

    async def Status(self, request, context) -> admin_pb2.StatusReply:
        await self.allow(context, "Status")
        s, c = self.controller.status(time.monotonic()), self.cluster()
        return admin_pb2.StatusReply(
            relays=s.relays,
            regions=s.regions,
            route_version=s.route_version,
            converged=s.converged,
            links_up=s.links_up,
            links_measured=s.links_measured,
            links_expected=s.links_expected,
            relays_acked=s.relays_acked,
            uptime_s=s.uptime_s,
            converged_for_s=s.converged_for_s,
            rejected_samples=s.rejected_samples,
            rejected_tables=s.rejected_tables,
            refused=s.refused,
            reports=s.reports,
            samples=s.samples,
            reports_coalesced=s.reports_coalesced,
            report_delay_p50_ms=s.report_delay_p50_ms,
            report_delay_p99_ms=s.report_delay_p99_ms,
            report_delay_max_ms=s.report_delay_max_ms,
            recomputes=s.recomputes,
            recompute_ms=s.recompute_ms,
            partial_mesh=s.partial_mesh,
            replicas=[admin_pb2.ReplicaInfo(id=r.id, address=r.address, leader=r.leader,
                                            healthy=r.healthy) for r in c.replicas],
            leader=c.leader,
            store=admin_pb2.StoreInfo(kind=c.store_kind, where=c.store_where,
                                      healthy=c.store_healthy, error=c.store_error),
            replica=c.replica,
            metrics_addr=self.metrics_addr,
            dashboard_url=self.dashboard_url,
        )

    async def Regions(self, request, context) -> admin_pb2.RegionsReply:
        await self.allow(context, "Regions")
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
                    route_version=session.routes.acked_version if session else 0,
                    hello_version=session.relay.hello_version if session else 0,
                    counters=session.counters if session else {},
                    edge_addr=session.edge_addr if session else "",
                    metrics_addr=session.metrics_addr if session else "",
                    health_addr=session.health_addr if session else "",
                    drained=rid in ctl.drained,
                    nodes=[admin_pb2.NodeInfo(
                        node_id=n.relay.node_id, probe_addr=n.relay.probe_addr,
                        edge_addr=n.edge_addr, route_version=n.routes.acked_version,
                        lead=n is session, sessions=n.counters.get("edge.sessions", 0),
                        counters=n.counters, transit_weight=ctl.transit_weight(n),
                        replica=n.replica, metrics_addr=n.metrics_addr,
                        health_addr=n.health_addr)
                        for n in ctl.region_sessions(rid)],
                )
            )
        return admin_pb2.RegionsReply(regions=infos)

    async def Links(self, request, context) -> admin_pb2.LinksReply:
        await self.allow(context, "Links")
        infos = []
        for link in self.controller.links(time.monotonic()):
            r = link.record
            sample = relay_pb2.LinkSample(
                dst=r.dst,
                rtt_ms=r.rtt_ms,
                min_rtt_ms=r.min_rtt_ms,
                jitter_ms=r.jitter_ms,
                loss=r.loss,
                window=r.window,
                samples=r.samples,
                lost=r.lost,
                age_s=link.age_s,
                state=TO_WIRE[r.state],
            )
            infos.append(admin_pb2.LinkInfo(src=r.src, sample=sample, cost_ms=link.cost_ms,
                                            suppressed=link.suppressed))
        return admin_pb2.LinksReply(links=infos)

    async def Routes(self, request, context) -> admin_pb2.RoutesReply:
        await self.allow(context, "Routes")
        try:
            version, rows = self.controller.table_of(request.region, request.zone)
        except Refused as e:
            await refuse(context, e)
        return admin_pb2.RoutesReply(region=request.region, version=version,
                                     routes=[translate.route_entry(r) for r in rows])

    async def Path(self, request, context) -> admin_pb2.PathReply:
        await self.allow(context, "Path")
        try:
            p = self.controller.path(request.src, request.dst, request.zone)
        except Refused as e:
            await refuse(context, e)
        return admin_pb2.PathReply(src=p.src, dst=p.dst, version=p.version, zone=p.zone,
                                   path=list(p.path), cost_ms=p.cost_ms, reachable=p.reachable,
                                   backup_next_hop=p.backup_next_hop,
                                   backup_kind=p.backup_kind, reason=p.reason)

    async def Zones(self, request, context) -> admin_pb2.ZonesReply:
        await self.allow(context, "Zones")
        ctl = self.controller
        return admin_pb2.ZonesReply(policy=ctl.policy.source or "(every region: global)", zones=[
            admin_pb2.ZoneInfo(name=z.name, description=z.description,
                               regions=sorted(z.regions),
                               connected=sum(r in ctl.sessions for r in z.regions))
            for z in ctl.policy.zones.values()])

    async def PlanFailover(self, request, context) -> admin_pb2.FailoverReply:
        await self.allow(context, "PlanFailover")
        ctl = self.controller
        try:
            plan = ctl.plan_failover(request.region, (request.link_src, request.link_dst),
                                     request.zone)
        except Refused as e:
            await refuse(context, e)
        return admin_pb2.FailoverReply(
            failure=plan.failure, routes_total=plan.routes_total,
            lost_endpoints=plan.lost_endpoints, version=ctl.version,
            changes=[admin_pb2.RouteChange(
                zone=c.zone, src=c.src, dst=c.dst, old_path=list(c.old_path),
                new_path=list(c.new_path or ()), old_cost_ms=c.old_cost_ms,
                new_cost_ms=c.new_cost_ms or 0.0, reachable=c.new_path is not None,
                reason=c.reason) for c in plan.changes])

    async def Channels(self, request, context) -> admin_pb2.ChannelsReply:
        await self.allow(context, "Channels")
        return admin_pb2.ChannelsReply(channels=[
            admin_pb2.ChannelInfo(zone=c.zone, channel=c.channel,
                                  publisher_regions=c.publisher_regions,
                                  subscriber_regions=c.subscriber_regions,
                                  subscriber_nodes=c.subscriber_nodes)
            for c in self.controller.channels()])

    async def Drain(self, request, context) -> admin_pb2.DrainReply:
        actor = await self.allow(context, "Drain")
        ctl = self.controller
        unix = time.time()
        try:
            after, entry = ctl.drain_change(request.region, request.drained, unix, actor)
            await ctl.store.keep_first(drained=after, audit=[entry])
            ctl.drain(request.region, request.drained, time.monotonic(), unix, actor)
        except Refused as e:
            await refuse(context, e)
        except OSError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"could not keep the change in {ctl.store.where}: {e}")
        return admin_pb2.DrainReply(region=request.region, drained=request.drained,
                                    version=ctl.version, drained_regions=sorted(ctl.drained))

    async def Events(self, request, context) -> admin_pb2.EventsReply:
        await self.allow(context, "Events")
        return admin_pb2.EventsReply(events=[
            translate.event(e) for e in self.controller.events_since(request.since_unix_s)])

    async def Chaos(self, request, context) -> admin_pb2.ChaosReply:
        actor = await self.allow(context, "Chaos")
        ctl, chaos, unix = self.controller, translate.chaos(request.chaos), time.time()
        try:
            await ctl.store.keep_first(audit=[ctl.chaos_entry(request.region, chaos, unix,
                                                              actor)])
            ctl.chaos(request.region, chaos, unix, actor)
        except Refused as e:
            await refuse(context, e)
        except OSError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"could not keep the audit entry in "
                                f"{self.controller.store.where}: {e}")
        return admin_pb2.ChaosReply()

    async def RotateFabricKey(self, request, context) -> admin_pb2.RotateFabricKeyReply:
        actor = await self.allow(context, "RotateFabricKey")
        ctl = self.controller
        now, unix = time.monotonic(), time.time()
        try:
            await ctl.store.keep_first(audit=[ctl.rotation_entry(now, unix, actor)])
            change = ctl.rotate_fabric_key(now, unix, actor)
        except Refused as e:
            await refuse(context, e)
        except OSError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"could not keep the audit entry in {ctl.store.where}: {e}")
        ring = ctl.keyring
        seals_in, retires_in = ring.times(now)
        return admin_pb2.RotateFabricKeyReply(
            epoch=change.epoch, sealing_epoch=ring.sealing.epoch, seals_in_s=seals_in,
            retires_in_s=retires_in, epochs=list(ring.epochs))

    async def Audit(self, request, context) -> admin_pb2.AuditReply:
        await self.allow(context, "Audit")
        return admin_pb2.AuditReply(entries=[
            admin_pb2.AuditEntry(at_unix_s=e.at_unix_s, actor=e.actor, action=e.action,
                                 target=e.target, detail=e.detail)
            for e in self.controller.audit_log(request.since_unix_s, request.limit)])
