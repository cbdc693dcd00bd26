"""The EdgeResolver gRPC service (proto/skymesh/v1/resolver.proto): clients ask which edges to
try. A thin shell over controller/resolver.py: the caller's address when the request names
none, the token's refusal as UNAUTHENTICATED with its reason, the answer as protobuf."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable

import grpc

from controller.resolver import Resolution, Resolver
from skymesh import token as tokens
from skymesh.v1 import resolver_pb2, resolver_pb2_grpc

log = logging.getLogger("skymesh.controller")

UNKNOWN = -1.0  # a distance or RTT not known, on the wire


def peer_address(peer: str) -> str:
    """The host of gRPC's peer string ("ipv4:1.2.3.4:5678", "ipv6:[::1]:5678"), or ""."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return ""
    host = rest.rpartition(":")[0].strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return ""


def reply(r: Resolution) -> resolver_pb2.ResolveReply:
    where = r.location
    out = resolver_pb2.ResolveReply(address=r.address, located=where is not None, zone=r.zone)
    if where is not None:
        out.lat, out.lon, out.accuracy_km = where.lat, where.lon, where.accuracy_km
        out.country, out.city = where.country, where.city
    for e in r.edges:
        out.edges.append(resolver_pb2.ResolvedEdge(
            region=e.region, load=e.load, reason=e.reason,
            distance_km=UNKNOWN if e.distance_km is None else e.distance_km,
            rtt_ms=UNKNOWN if e.rtt_ms is None else e.rtt_ms,
            nodes=[resolver_pb2.ResolvedNode(node_id=n.node_id, address=n.address, load=n.load)
                   for n in e.nodes]))
    return out


Relay = Callable[[resolver_pb2.ResolveRequest], Awaitable[resolver_pb2.ResolveReply | None]]


class EdgeResolverService(resolver_pb2_grpc.EdgeResolverServicer):
    """`resolver()`: the Resolver of the moment (None: this controller holds no view of the
    mesh yet). Without one, `relay(request)` asks the replica that leads (the request naming
    the client's address; None: none could be asked), or the answer is UNAVAILABLE."""

    def __init__(self, resolver: Callable[[], Resolver | None],
                 relay: Relay | None = None) -> None:
        self.resolver = resolver
        self.relay = relay

    async def Resolve(self, request: resolver_pb2.ResolveRequest,
                      context: grpc.aio.ServicerContext) -> resolver_pb2.ResolveReply:
        resolver = self.resolver()
        if resolver is None:
            if self.relay is not None:
                asked = resolver_pb2.ResolveRequest()
                asked.CopyFrom(request)
                asked.address = request.address or peer_address(context.peer())
                try:
                    if (answer := await self.relay(asked)) is not None:
                        return answer
                except grpc.aio.AioRpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE:
                        await context.abort(e.code(), e.details())
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                "this controller holds no view of the mesh yet, and no "
                                "replica that leads could be asked")
        address = request.address or peer_address(context.peer())
        if request.address:
            try:
                address = str(ipaddress.ip_address(request.address.strip("[]")))
            except ValueError:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"address {request.address[:64]!r}: not an IP address")
        try:
            r = resolver.resolve(request.token, address, request.count, time.monotonic(),
                                 int(time.time()))
        except tokens.TokenError as e:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"token: {e.reason}")
        return reply(r)


def add_to_server(service: EdgeResolverService, server: grpc.aio.Server) -> None:
    resolver_pb2_grpc.add_EdgeResolverServicer_to_server(service, server)
