"""What a controller replica that does not lead relays to the one that does: its relays'
sessions and operators' admin calls, each checked here first and relayed as bytes.

Every replica accepts relay sessions and admin calls. The one that leads serves them from its
core; another relays each to the leader over a call of its own, saying whom it relays for
(controller/callers.py). When the leader goes, the relay's session stays: it waits here for
the next leader, its relay forwarding on the tables it holds, and is carried over to it with
a hello saying which routes the relay holds and a resync telling the relay to send its state
again (protocol 4; an older relay's session is ended instead, and it reconnects). While no
replica is known to lead, admin calls are answered by the replica that last held the state,
read-only (a write needs the leader's fence on etcd).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from controller.callers import caller, on_behalf_of
from controller.relay_service import RelayControlService, check_hello, check_relay_identity
from skymesh.catalogue import Region
from skymesh.identity import stranger
from skymesh.linkstate import PROTOCOL_RESYNC
from skymesh.net.tls import TlsFiles, channel_credentials
from skymesh.v1 import admin_pb2, relay_pb2

log = logging.getLogger("skymesh.controller")

RELAY_SESSION = "/skymesh.v1.RelayControl/Session"
ADMIN = admin_pb2.DESCRIPTOR.services_by_name["Admin"]
SESSIONS_PER_CHANNEL = 48  # the leader's server takes 64 streams a connection
WAIT_POLL_S = 0.1  # how often a session waiting for a leader looks again
RETRY_SAME_S = 0.5  # a leader that could not be reached is tried again after this
ACK_KEY = bytes([3 << 3 | 2])  # a RelayMessage's first byte when it is a RouteAck
ADMIN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Target:
    """Who serves a call now: this replica (`local`), or the leader at `address`."""

    replica: str
    address: str
    local: bool


class Upstreams:
    """Channels to the leader, a new one for every SESSIONS_PER_CHANNEL sessions (each
    channel its own connection)."""

    def __init__(self, tls: TlsFiles | None) -> None:
        self.tls = tls
        self.channels: dict[str, list[list]] = {}  # address -> [[channel, sessions], ...]

    def take(self, address: str) -> list:
        pool = self.channels.setdefault(address, [])
        for entry in pool:
            if entry[1] < SESSIONS_PER_CHANNEL:
                entry[1] += 1
                return entry
        options = [("skymesh.upstream", len(pool))]  # distinct args: its own connection
        if self.tls is None:
            channel = grpc.aio.insecure_channel(address, options=options)
        else:
            channel = grpc.aio.secure_channel(address, channel_credentials(self.tls), options)
        entry = [channel, 1]
        pool.append(entry)
        return entry

    def release(self, entry: list) -> None:
        entry[1] -= 1

    def channel(self, address: str) -> grpc.aio.Channel:
        """A channel for unary calls (admin)."""
        entry = self.take(address)
        self.release(entry)
        return entry[0]

    async def close(self) -> None:
        for pool in self.channels.values():
            for channel, _ in pool:
                await channel.close()
        self.channels = {}


class RelayGateway:
    """The RelayControl service of a replica on etcd, as raw bytes."""

    def __init__(self, target: Callable[[], Target | None],
                 local: Callable[[], RelayControlService | None],
                 catalogue: Mapping[str, Region], mesh: str | None,
                 upstreams: Upstreams) -> None:
        self.target = target
        self.local = local
        self.catalogue = catalogue
        self.mesh = mesh
        self.upstreams = upstreams

    async def Session(self, request_iterator: AsyncIterator[bytes],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        try:
            raw = await anext(request_iterator)
        except StopAsyncIteration:
            return
        try:
            first = relay_pb2.RelayMessage.FromString(raw)
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a RelayMessage")
        if (target := await self.next_target(None, context)) is None:
            return  # the relay left while no replica led
        if target.local:
            async for msg in self.local().serve(first, decoded(request_iterator), context):
                yield msg
            return
        # checked here as the leader would: a relay this replica would refuse is not relayed
        if problem := check_hello(first, self.catalogue):
            await context.abort(*problem)
        # a session another replica relays here (it took this one for the leader) is
        # relayed on, for the relay it was relayed for
        who = caller(context, self.mesh)
        if self.mesh is not None and (why := check_relay_identity(who, first.hello,
                                                                  self.mesh)):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)
        carried = first.hello.protocol >= PROTOCOL_RESYNC  # may go on to a new leader
        pipe = Pipe(request_iterator, first.hello.route_version)
        pump = asyncio.get_running_loop().create_task(pipe.pump())
        started = False  # the relay has had an answer: it sends on as in a session
        ended = ""
        try:
            while True:
                opening = relay_pb2.RelayMessage(hello=first.hello)
                opening.hello.route_version = pipe.held
                if target.local:  # this replica leads now
                    requests = pipe.attempt(None)
                    if started:
                        yield resync(target)
                    async for msg in self.local().serve(opening, decoded(requests), context):
                        yield msg
                    return
                entry = self.upstreams.take(target.address)
                call = entry[0].stream_stream(RELAY_SESSION, request_serializer=None,
                                              response_deserializer=None)(
                    pipe.attempt(opening.SerializeToString()), metadata=on_behalf_of(who))
                answered = gone = False
                try:
                    async for msg in call:
                        # once this leader answers, the relay's state goes to it (not to a
                        # leader that could not be reached, its key not expired yet)
                        if started and not answered:
                            yield resync(target)
                        answered = started = True
                        yield msg
                    ended = f"the leader, replica {target.replica}, ended the session"
                except grpc.aio.AioRpcError as e:
                    if e.code() not in (grpc.StatusCode.UNAVAILABLE,
                                        grpc.StatusCode.CANCELLED):
                        await context.abort(e.code(), e.details())  # the leader refused it
                    gone = True
                    ended = (f"the leader, replica {target.replica} ({target.address}), "
                             f"went away: {e.details()}")
                finally:
                    call.cancel()
                    self.upstreams.release(entry)
                if pipe.closed or answered and not (carried and gone):
                    break
                # the leader went away, or could not be reached (dead, its key not expired
                # yet): the relay forwards on the tables it holds and waits for the next
                if (target := await self.next_target(target, context)) is None:
                    return
        finally:
            pump.cancel()
        await context.abort(grpc.StatusCode.UNAVAILABLE, ended)

    async def next_target(self, failed: Target | None, context: grpc.aio.ServicerContext,
                          ) -> Target | None:
        """The replica to serve the session now: once one is known to lead (or this one
        holds a state) and can take it; `failed`, the leader that could not be reached,
        only again after RETRY_SAME_S unless another leads first. None: the relay left."""
        since = time.monotonic()
        if failed is not None:
            await asyncio.sleep(WAIT_POLL_S)
        while True:
            if context.done():
                return None
            t = self.target()
            if t is not None and (not t.local or self.local() is not None) and (
                    failed is None or t.replica != failed.replica
                    or time.monotonic() - since >= RETRY_SAME_S):
                return t
            await asyncio.sleep(WAIT_POLL_S)


def resync(target: Target) -> bytes:
    """Tells a relay its session now reaches another leader (protocol 4)."""
    return relay_pb2.ControllerMessage(resync=relay_pb2.Resync(
        reason=f"replica {target.replica} leads")).SerializeToString()


class Pipe:
    """A relay's messages, to the upstream call of the moment: a call to a leader that could
    not be reached, or went away, is followed by another, which must not share what the
    relay sent to the one before. `held`: the newest route version the relay acknowledged,
    for the hello that opens the next call."""

    def __init__(self, requests: AsyncIterator[bytes], held: int) -> None:
        self.requests = requests
        self.current: asyncio.Queue | None = None
        self.closed = False
        self.held = held

    def attempt(self, first: bytes | None) -> Drain:
        if self.current is not None:
            self.current.put_nowait(None)  # the call before ends its reading too
        self.current = asyncio.Queue()
        if first is not None:
            self.current.put_nowait(first)
        if self.closed:
            self.current.put_nowait(None)
        return Drain(self.current)

    async def pump(self) -> None:
        try:
            async for raw in self.requests:
                if raw[:1] == ACK_KEY:
                    ack = relay_pb2.RelayMessage.FromString(raw).ack
                    if ack.accepted:
                        self.held = max(self.held, ack.version)
                if self.current is not None:
                    self.current.put_nowait(raw)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True
            if self.current is not None:
                self.current.put_nowait(None)


class Drain:
    """A queue as an async iterator until None. Not an async generator: gRPC would close
    a generator suspended in its await when the call ends, and fail doing it."""

    def __init__(self, queue: asyncio.Queue) -> None:
        self.queue = queue

    def __aiter__(self) -> Drain:
        return self

    async def __anext__(self) -> bytes:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        return item


async def decoded(requests: AsyncIterator[bytes]) -> AsyncIterator[relay_pb2.RelayMessage]:
    async for raw in requests:
        yield relay_pb2.RelayMessage.FromString(raw)


class AdminGateway:
    """The Admin service of a replica on etcd, as raw bytes: answered by this replica's
    AdminService while it is the target, relayed to the leader otherwise."""

    def __init__(self, target: Callable[[], Target | None],
                 local: Callable[[], object | None], upstreams: Upstreams,
                 unavailable: Callable[[], str], mesh: str | None,
                 fallback: Callable[[str, object], object | None] = lambda m, r: None,
                 ) -> None:
        """`fallback(method, request)`: the answer from what etcd holds, for a read that
        neither this replica nor the leader can answer now (None: none)."""
        self.fallback = fallback
        self.mesh = mesh
        self.target = target
        self.local = local
        self.upstreams = upstreams
        self.unavailable = unavailable  # why no replica can answer now

    def call(self, method: str) -> Callable[[bytes, grpc.aio.ServicerContext],
                                            Awaitable[bytes]]:
        request_type = getattr(admin_pb2, ADMIN.methods_by_name[method].input_type.name)

        async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            target = self.target()
            service = self.local() if target is not None and target.local else None
            if service is not None:
                try:
                    request = request_type.FromString(raw)
                except DecodeError:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                        f"not a {request_type.__name__}")
                reply = await getattr(service, method)(request, context)
                return reply.SerializeToString()
            if target is None or target.local:
                if (reply := await self.from_etcd(method, request_type, raw, context)):
                    return reply
                await context.abort(grpc.StatusCode.UNAVAILABLE, self.unavailable())
            channel = self.upstreams.channel(target.address)
            try:
                return await channel.unary_unary(
                    f"/{ADMIN.full_name}/{method}", request_serializer=None,
                    response_deserializer=None)(
                    raw, metadata=on_behalf_of(caller(context, self.mesh)),
                    timeout=ADMIN_TIMEOUT_S)
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE and \
                        (reply := await self.from_etcd(method, request_type, raw, context)):
                    return reply  # the leader is gone: what etcd holds
                await context.abort(e.code(), f"{e.details()} (relayed to the leader, "
                                    f"replica {target.replica} at {target.address})")
        return handle


    async def from_etcd(self, method: str, request_type, raw: bytes,
                        context: grpc.aio.ServicerContext) -> bytes | None:
        """A read answered from what etcd holds, for a caller allowed to read."""
        try:
            request = request_type.FromString(raw)
        except DecodeError:
            return None
        reply = self.fallback(method, request)
        if reply is None:
            return None
        who = caller(context, self.mesh)
        if self.mesh is not None and (stranger(who, self.mesh) or who is None
                                      or not who.may("read")):
            return None
        return reply.SerializeToString()


def add_to_server(relays: RelayGateway, admin: AdminGateway, server: grpc.aio.Server) -> None:
    """Serve RelayControl and Admin through the gateways (bytes in, bytes out)."""
    relay_name = relay_pb2.DESCRIPTOR.services_by_name["RelayControl"].full_name
    relay_handlers = {"Session": grpc.stream_stream_rpc_method_handler(
        relays.Session, request_deserializer=None, response_serializer=None)}
    admin_handlers = {m.name: grpc.unary_unary_rpc_method_handler(
        admin.call(m.name), request_deserializer=None, response_serializer=None)
        for m in ADMIN.methods}
    for name, handlers in ((relay_name, relay_handlers), (ADMIN.full_name, admin_handlers)):
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
        server.add_registered_method_handlers(name, handlers)
