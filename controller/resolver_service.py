"""The EdgeResolver gRPC service (proto/skymesh/v1/resolver.proto): clients ask which edges to
try. A thin shell over controller/resolver.py: the caller's address when the request names
none, the token's refusal as UNAUTHENTICATED with its reason, the answer as protobuf.

Speed (issue 16, bench/resolver.py): the reply but for its address is kept encoded per
(location, zone, count, region) until the resolver's index changes, so that a client costs
its token and GeoIP lookups and a concatenation of bytes (the address, field 1, encoded
alone and put in front: the bytes protobuf would give the whole message); and the resolver
is re-indexed on a timer of the shell's (`keep_indexed`), in steps between requests, rather
than by the request that finds its index old."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable

import grpc

from controller.resolver import Resolution, Resolver
from skymesh import token as tokens
from skymesh.edgerank import EdgeIndex, Location, RankedEdge
from skymesh.v1 import resolver_pb2

log = logging.getLogger("skymesh.controller")

UNKNOWN = -1.0  # a distance or RTT not known, on the wire
SERVICE = resolver_pb2.DESCRIPTOR.services_by_name["EdgeResolver"].full_name
# encoded replies kept per index (a few hundred bytes each), forgotten all at once beyond
ENCODED_KEPT = 20_000
# the shell re-indexes when the index is this part of reindex_s old, a margin for the timer's
# own lateness before a request would find it stale and build it itself
INDEX_AHEAD = 0.8
IDLE_CHECK_S = 0.5  # how often the timer looks for a resolver while there is none


def peer_address(peer: str) -> str:
    """The host of gRPC's peer string ("ipv4:1.2.3.4:5678", "ipv6:[::1]:5678"), or ""."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return ""
    return canonical_address(rest.rpartition(":")[0]) or ""


def canonical_address(text: str) -> str | None:
    """`text` (brackets allowed) as an IP address in its canonical form, or None if it is
    not one."""
    text = text.strip("[]")
    try:
        # a dotted quad inet_pton takes is already canonical (no leading zeros, four parts):
        # half a microsecond, not ipaddress's seven
        socket.inet_pton(socket.AF_INET, text)
        return text
    except (OSError, ValueError):  # not a dotted quad (ValueError: a NUL in it)
        pass
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def reply(r: Resolution) -> resolver_pb2.ResolveReply:
    """`r` as the wire's message."""
    out = located_reply(r.location, r.zone, r.edges)
    out.address = r.address
    return out


def located_reply(where: Location | None, zone: str, edges: list[RankedEdge]
                  ) -> resolver_pb2.ResolveReply:
    """The reply for a client at `where` in `zone` offered `edges`, but for its address."""
    out = resolver_pb2.ResolveReply(located=where is not None, zone=zone)
    if where is not None:
        out.lat, out.lon, out.accuracy_km = where.lat, where.lon, where.accuracy_km
        out.country, out.city = where.country, where.city
    for e in edges:
        out.edges.append(resolver_pb2.ResolvedEdge(
            region=e.region, load=e.load, reason=e.reason,
            distance_km=UNKNOWN if e.distance_km is None else e.distance_km,
            rtt_ms=UNKNOWN if e.rtt_ms is None else e.rtt_ms,
            nodes=[resolver_pb2.ResolvedNode(node_id=n.node_id, address=n.address, load=n.load)
                   for n in e.nodes]))
    return out


def encoded(message: resolver_pb2.ResolveReply | bytes) -> bytes:
    """A reply for the wire: the service's own come encoded already, a leader's as a
    message."""
    return message if isinstance(message, bytes) else message.SerializeToString()


Relay = Callable[[resolver_pb2.ResolveRequest], Awaitable[resolver_pb2.ResolveReply | None]]


class EdgeResolverService:
    """`resolver()`: the Resolver of the moment (None: this controller holds no view of the
    mesh yet). Without one, `relay(request)` asks the replica that leads (the request naming
    the client's address; None: none could be asked), or the answer is UNAVAILABLE.
    Resolve answers encoded bytes (add_to_server registers it so)."""

    def __init__(self, resolver: Callable[[], Resolver | None],
                 relay: Relay | None = None) -> None:
        self.resolver = resolver
        self.relay = relay
        self.encoded: dict[tuple[Location | None, str, int, str], bytes] = {}
        self.encoded_of: EdgeIndex | None = None  # the index the replies kept were made of

    async def Resolve(self, request: resolver_pb2.ResolveRequest,
                      context: grpc.aio.ServicerContext
                      ) -> bytes | resolver_pb2.ResolveReply:
        resolver = self.resolver()
        if resolver is None:
            return await self.relayed(request, context)
        if request.address:
            address = canonical_address(request.address)
            if address is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"address {request.address[:64]!r}: not an IP address")
        else:
            address = peer_address(context.peer())
        try:
            r = resolver.resolve(request.token, address, request.count, time.monotonic(),
                                 int(time.time()), request.region)
        except tokens.TokenError as e:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"token: {e.reason}")
        return self.encode(resolver, r, request.count, request.region)

    def encode(self, resolver: Resolver, r: Resolution, count: int, region: str = ""
               ) -> bytes:
        """`r` (asked for `count` edges of `region`) encoded: its address, and the rest as
        kept for its location, zone, count and region since the resolver's index changed
        (made now if not)."""
        if self.encoded_of is not resolver.edges:
            self.encoded, self.encoded_of = {}, resolver.edges
        key = (r.location, r.zone, count, region)
        rest = self.encoded.get(key)
        if rest is None:
            rest = located_reply(r.location, r.zone, r.edges).SerializeToString()
            if len(self.encoded) >= ENCODED_KEPT:
                self.encoded = {}
            self.encoded[key] = rest
        return resolver_pb2.ResolveReply(address=r.address).SerializeToString() + rest

    async def relayed(self, request: resolver_pb2.ResolveRequest,
                      context: grpc.aio.ServicerContext) -> resolver_pb2.ResolveReply:
        """The leader's answer, asked for the client (its address named)."""
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
        raise AssertionError("unreachable: abort raises")


async def keep_indexed(resolver: Callable[[], Resolver | None], until: Awaitable[object]
                       ) -> None:
    """Refresh the resolver of the moment every INDEX_AHEAD of its reindex_s until `until` is
    done (its server stopped): its index is never older than reindex_s (unless the event
    loop stalls), so that no request finds it so and pays for it (a millisecond or more at
    300 regions, waited for by every request behind it on the event loop); in steps, the
    requests that came meanwhile served between them."""
    stopped = asyncio.ensure_future(until)
    try:
        while not stopped.done():
            r = resolver()
            every = IDLE_CHECK_S
            if r is not None:
                every = r.reindex_s * INDEX_AHEAD
                try:
                    for _ in r.refresh_steps(time.monotonic(), older_than=every):
                        await asyncio.sleep(0)  # the requests that came meanwhile
                except Exception:  # the timer must outlive a bad round; requests rebuild
                    log.exception("edge resolver: indexing the mesh failed")
            await asyncio.wait([stopped], timeout=every)
    finally:
        stopped.cancel()


def add_to_server(service: EdgeResolverService, server: grpc.aio.Server) -> None:
    """Resolve on `server`, its replies encoded by the service (or by protobuf, for a
    leader's it passes on)."""
    handlers = {"Resolve": grpc.unary_unary_rpc_method_handler(
        service.Resolve, request_deserializer=resolver_pb2.ResolveRequest.FromString,
        response_serializer=encoded)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
