"""The Admin gRPC service: requests to controller core queries and commands, their results to
replies, the core's refusals to status codes (the reason is the core's message)."""

from __future__ import annotations

import time
from typing import NoReturn

import grpc

from controller import translate
from controller.core import BadRequest, Controller, NotFound, NotReady, Refused
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


class AdminService(admin_pb2_grpc.AdminServicer):
    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    async def Status(self, request, context) -> admin_pb2.StatusReply:
        s = self.controller.status(time.monotonic())
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
                    route_version=session.routes.acked_version if session else 0,
                    hello_version=session.relay.hello_version if session else 0,
                    counters=session.counters if session else {},
                    edge_addr=session.edge_addr if session else "",
                    drained=rid in ctl.drained,
                )
            )
        return admin_pb2.RegionsReply(regions=infos)

    async def Links(self, request, context) -> admin_pb2.LinksReply:
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
        try:
            version, rows = self.controller.table_of(request.region, request.zone)
        except Refused as e:
            await refuse(context, e)
        return admin_pb2.RoutesReply(region=request.region, version=version,
                                     routes=[translate.route_entry(r) for r in rows])

    async def Path(self, request, context) -> admin_pb2.PathReply:
        try:
            p = self.controller.path(request.src, request.dst, request.zone)
        except Refused as e:
            await refuse(context, e)
        return admin_pb2.PathReply(src=p.src, dst=p.dst, version=p.version, zone=p.zone,
                                   path=list(p.path), cost_ms=p.cost_ms, reachable=p.reachable,
                                   backup_next_hop=p.backup_next_hop,
                                   backup_kind=p.backup_kind, reason=p.reason)

    async def Zones(self, request, context) -> admin_pb2.ZonesReply:
        ctl = self.controller
        return admin_pb2.ZonesReply(policy=ctl.policy.source or "(every region: global)", zones=[
            admin_pb2.ZoneInfo(name=z.name, description=z.description,
                               regions=sorted(z.regions),
                               connected=sum(r in ctl.sessions for r in z.regions))
            for z in ctl.policy.zones.values()])

    async def PlanFailover(self, request, context) -> admin_pb2.FailoverReply:
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
        return admin_pb2.ChannelsReply(channels=[
            admin_pb2.ChannelInfo(zone=c.zone, channel=c.channel,
                                  publisher_regions=c.publisher_regions,
                                  subscriber_regions=c.subscriber_regions)
            for c in self.controller.channels()])

    async def Drain(self, request, context) -> admin_pb2.DrainReply:
        ctl = self.controller
        try:
            ctl.drain(request.region, request.drained, time.monotonic(), time.time())
        except Refused as e:
            await refuse(context, e)
        except OSError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"could not keep the change in {ctl.store.where}: {e}")
        return admin_pb2.DrainReply(region=request.region, drained=request.drained,
                                    version=ctl.version, drained_regions=sorted(ctl.drained))

    async def Events(self, request, context) -> admin_pb2.EventsReply:
        return admin_pb2.EventsReply(events=[
            translate.event(e) for e in self.controller.events_since(request.since_unix_s)])

    async def Chaos(self, request, context) -> admin_pb2.ChaosReply:
        try:
            self.controller.chaos(request.region, translate.chaos(request.chaos), time.time())
        except Refused as e:
            await refuse(context, e)
        return admin_pb2.ChaosReply()
