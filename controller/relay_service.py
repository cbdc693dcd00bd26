"""The RelayControl gRPC service: one long-lived stream per relay, translated to and from the
controller core (controller/core.py). It owns the session's queue, its reader task and the
clocks; every decision is the core's."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

import grpc

from controller import translate
from controller.callers import caller
from controller.core import Controller, Message, Session
from controller.distribution import MAX_HELD_VERSION, Push
from skymesh.catalogue import Region
from skymesh.identity import Identity, stranger
from skymesh.net.tls import peer_identity
from skymesh.nodes import BadNodeName, check_node_id
from skymesh.v1 import relay_pb2, relay_pb2_grpc

log = logging.getLogger("skymesh.controller")

_ADDR = re.compile(r"^[0-9A-Za-z.:\[\]-]+:\d{1,5}$")


# link reports are taken in by batch this often: reports of one relay that arrive within it
# are merged (the newest value of each link wins), so a controller that falls behind takes in
# one report per relay, not a queue of them
REPORT_BATCH_S = 0.05
# while routes are computed beside the event loop, reports wait (merged, as above) for the
# result, up to this long: on one core the computation would share the CPU with them, and it
# is what a changed link waits for (the next round starts after it)
REPORT_DEFER_S = 2.0


class PendingReport:
    """A relay's reports not taken in yet, merged."""

    def __init__(self, report: relay_pb2.LinkReport) -> None:
        self.reports = [report]  # as they came: read once, when taken in
        self.full = report.full
        self.sent = report.sent_unix_s  # the oldest's: how late the backlog is

    def add(self, report: relay_pb2.LinkReport) -> None:
        if report.full:  # every link the relay measures: the earlier ones are superseded
            self.reports = []
            self.full = True
        self.reports.append(report)
        if report.sent_unix_s and (not self.sent or report.sent_unix_s < self.sent):
            self.sent = report.sent_unix_s

    @property
    def merged(self) -> int:
        return len(self.reports) - 1

    def links(self) -> Iterable[relay_pb2.LinkSample]:
        """A lone report's samples as sent (each bad one counted); merged, the newest of
        each peer's."""
        if len(self.reports) == 1:
            return self.reports[0].links
        newest = {}
        for report in self.reports:
            newest.update((s.dst, s) for s in report.links)
        return newest.values()


class Outbox:
    """A session's messages to its relay, not written yet. A route table replaces the one
    before it, so a table still queued when a newer one comes is dropped unsent: a relay that
    reads slowly, or a controller pushing a thousand relays' tables round after round while
    routes settle, serialises each relay's latest table once, not every version (the
    versions skipped are never acknowledged, which the distribution allows for)."""

    def __init__(self) -> None:
        self.queue: deque[Message | None] = deque()
        self.ready = asyncio.Event()
        self.superseded = 0  # tables dropped unsent

    def put(self, msg: Message | None) -> None:
        if isinstance(msg, Push):
            before = len(self.queue)
            self.queue = deque(m for m in self.queue if not isinstance(m, Push))
            self.superseded += before - len(self.queue)
        self.queue.append(msg)
        self.ready.set()

    async def get(self) -> Message | None:
        while not self.queue:
            self.ready.clear()
            await self.ready.wait()
        return self.queue.popleft()


class RelayControlService(relay_pb2_grpc.RelayControlServicer):
    """`mesh`: the mesh whose relay certificates are accepted; None only for a controller run
    with --insecure, where any peer may say it is any relay."""

    def __init__(self, controller: Controller, mesh: str | None,
                 defer_s: float = REPORT_DEFER_S) -> None:
        self.controller = controller
        self.defer_s = defer_s
        self.mesh = mesh
        self.pending: dict[Session, PendingReport] = {}
        self.flush_at: asyncio.TimerHandle | None = None
        self.deferred_since: float | None = None  # reports held for a computation since
        self.open: dict[Session, Outbox] = {}  # the sessions being served
        self.replica = ""  # this replica's id, on etcd
        # a session began or ended (a replica on etcd registers its relays there)
        self.began: Callable[[Session], None] = lambda session: None
        self.ended: Callable[[Session], None] = lambda session: None
        self.ending = ""  # why sessions are being ended (end_all)

    def take_reports(self) -> None:
        """Take every relay's pending reports in, as one batch (after the route computation
        under way, if there is one and they have not waited REPORT_DEFER_S for it)."""
        if self.flush_at is not None:  # called before its time: once the computation ended
            self.flush_at.cancel()
        self.flush_at = None
        if not self.pending:
            return
        now = time.monotonic()
        if self.controller.computing:
            if self.deferred_since is None:
                self.deferred_since = now
            if now - self.deferred_since < self.defer_s:
                self.flush_at = asyncio.get_running_loop().call_later(REPORT_BATCH_S,
                                                                      self.take_reports)
                return
        self.deferred_since = None
        pending, self.pending = self.pending, {}
        for session, p in pending.items():
            self.take(session, p)

    def take(self, session: Session, p: PendingReport) -> None:
        self.controller.on_report(session, translate.sample_batch(p.links()),
                                  p.reports[-1].counters, time.monotonic(), full=p.full,
                                  sent_unix_s=p.sent, unix=time.time(), coalesced=p.merged)

    def queue_report(self, session: Session, report: relay_pb2.LinkReport) -> None:
        if not self.controller.admit(session, time.monotonic()):
            return
        if (p := self.pending.get(session)) is None:
            self.pending[session] = PendingReport(report)
        else:
            p.add(report)
        if self.flush_at is None:
            self.flush_at = asyncio.get_running_loop().call_later(REPORT_BATCH_S,
                                                                  self.take_reports)

    async def Session(
        self,
        request_iterator: AsyncIterator[relay_pb2.RelayMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator:
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            return
        async for msg in self.serve(first, request_iterator, context):
            yield msg

    async def serve(self, first: relay_pb2.RelayMessage,
                    request_iterator: AsyncIterator[relay_pb2.RelayMessage],
                    context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """A relay's session from its first message on (read already by whoever routed the
        session here); the messages to send it, encoded."""
        ctl = self.controller
        if problem := self.refusal(first, context):
            await context.abort(*problem)
        queue = Outbox()
        session = ctl.connect(translate.hello(first.hello), queue.put, time.monotonic(),
                              time.time())
        # relayed by another replica, or held here
        via = peer_identity(context) if self.mesh is not None else None
        session.replica = via.name if via is not None and via.kind == "controller" \
            else self.replica
        self.open[session] = queue
        self.began(session)
        reader = asyncio.create_task(self._read(session, queue, request_iterator))
        try:
            while (msg := await queue.get()) is not None:
                yield translate.encoded_message(msg)
        finally:
            reader.cancel()
            self.open.pop(session, None)
            ctl.disconnect(session, time.monotonic(), time.time())
            self.ended(session)
        if self.ending:
            await context.abort(grpc.StatusCode.UNAVAILABLE, self.ending)

    def refusal(self, first: relay_pb2.RelayMessage, context: grpc.aio.ServicerContext
                ) -> tuple[grpc.StatusCode, str] | None:
        """Why a session that begins with `first` is refused (logged, and counted when the
        certificate does not allow it), or None."""
        ctl = self.controller
        problem = check_hello(first, ctl.catalogue)
        if problem:
            log.warning("refused a relay session: %s", problem[1])
            return problem
        if self.mesh is not None:
            who = caller(context, self.mesh)
            reason = check_relay_identity(who, first.hello, self.mesh)
            if reason:
                ctl.refuse("relay-identity", str(who or ""), reason, unix=time.time())
                return grpc.StatusCode.PERMISSION_DENIED, reason
        return None

    def end_all(self, reason: str) -> None:
        """End every relay session this service holds with UNAVAILABLE and `reason` (this
        replica no longer leads: its relays go to one that can reach the leader)."""
        self.ending = reason
        for queue in list(self.open.values()):
            queue.put(None)

    def resume(self) -> None:
        """Take sessions again (this replica leads again)."""
        self.ending = ""

    async def _read(self, session: Session, queue: Outbox,
                    requests: AsyncIterator[relay_pb2.RelayMessage]) -> None:
        ctl = self.controller
        try:
            async for msg in requests:
                if msg.WhichOneof("msg") == "report":
                    self.queue_report(session, msg.report)
                else:
                    dispatch(ctl, session, msg, time.monotonic(), time.time())
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            # what the relay sent before it left is taken in, not dropped with the session
            if (p := self.pending.pop(session, None)) is not None:
                self.take(session, p)
            queue.put(None)


def add_to_server(service: RelayControlService, server: grpc.aio.Server) -> None:
    """Serve `service` as relay.proto's RelayControl, as the generated
    `add_RelayControlServicer_to_server` would, except that the service sends messages
    already encoded (translate.encoded_message: route tables are encoded by hand, a row
    once for every table it is in)."""
    name = relay_pb2.DESCRIPTOR.services_by_name["RelayControl"].full_name
    handlers = {"Session": grpc.stream_stream_rpc_method_handler(
        service.Session, request_deserializer=relay_pb2.RelayMessage.FromString,
        response_serializer=bytes)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


def dispatch(ctl: Controller, session: Session, msg: relay_pb2.RelayMessage, now: float,
             unix: float) -> None:
    """One message of a relay's session, after its hello, to the core (on the shell's
    clocks, or a test's virtual ones)."""
    if not ctl.admit(session, now):
        return
    kind = msg.WhichOneof("msg")
    if kind == "report":
        ctl.on_report(session, translate.samples(msg.report), msg.report.counters, now,
                      full=msg.report.full, sent_unix_s=msg.report.sent_unix_s, unix=unix)
    elif kind == "ack":
        ctl.on_ack(session, msg.ack.version, msg.ack.accepted, msg.ack.reason, now)
    elif kind == "channels":
        ctl.on_channels(session, translate.interest(msg.channels), now)
    elif kind == "events":
        ctl.on_events(session, [translate.relay_event(e) for e in msg.events.events], unix)
    else:
        log.warning("%s: unexpected %s message ignored", session.relay.region, kind)


def check_relay_identity(who: Identity | None, hello: relay_pb2.Hello, mesh: str) -> str:
    """Why a relay whose certificate names `who` may not open the session its hello asks
    for ("" when it may): it speaks only for the region and node its certificate names."""
    if why := stranger(who, mesh):  # also when there is no identity at all
        return why
    assert who is not None
    if who.kind != "relay":
        return f"{who} is not a relay: only relay certificates open relay sessions"
    if hello.region != who.region:
        return (f"certificate of relay {who.name} names region {who.region!r}; its hello "
                f"claims {hello.region!r}")
    if hello.node_id != who.name:
        return (f"certificate names node {who.name!r} of {who.region}; its hello claims "
                f"node {hello.node_id!r}")
    return ""


def check_hello(
    msg: relay_pb2.RelayMessage, catalogue: Mapping[str, Region]
) -> tuple[grpc.StatusCode, str] | None:
    if msg.WhichOneof("msg") != "hello":
        return grpc.StatusCode.INVALID_ARGUMENT, "the first message of a session must be a hello"
    hello = msg.hello
    if hello.region not in catalogue:
        return (grpc.StatusCode.NOT_FOUND,
                f"unknown region {hello.region[:64]!r}: not in the catalogue")
    try:
        check_node_id(hello.node_id)
    except BadNodeName as e:
        return grpc.StatusCode.INVALID_ARGUMENT, str(e)[:200]
    if not _host_port(hello.probe_addr):
        return (
            grpc.StatusCode.INVALID_ARGUMENT,
            f"probe_addr {hello.probe_addr[:64]!r} is not host:port (port 1-65535)",
        )
    if hello.edge_addr and not _host_port(hello.edge_addr):
        return (grpc.StatusCode.INVALID_ARGUMENT,
                f"edge_addr {hello.edge_addr[:64]!r} is not host:port (port 1-65535)")
    for name in ("metrics_addr", "health_addr"):
        if (value := getattr(hello, name)) and not _host_port(value):
            return (grpc.StatusCode.INVALID_ARGUMENT,
                    f"{name} {value[:64]!r} is not host:port (port 1-65535)")
    if hello.route_version > MAX_HELD_VERSION:  # versions go on above it: a uint64 would overflow
        return (grpc.StatusCode.INVALID_ARGUMENT,
                f"route_version {hello.route_version} is beyond any version pushed "
                f"(at most {MAX_HELD_VERSION})")
    return None


def _host_port(addr: str) -> bool:
    """Whether `addr` is host:port with a port a socket can use (the peers' probes go there)."""
    return bool(_ADDR.match(addr)) and 0 < int(addr.rpartition(":")[2]) <= 0xFFFF
