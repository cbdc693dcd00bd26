"""An in-memory mesh: the relay cores of several regions (probe scheduler, route tables,
fabric) and the controller core, wired without sockets on a virtual clock, with the checks of
DESIGN.md's invariants built in so that every run defends them.

Why it exists: the real-process tests (tests/integration/) show that the shells work, but a
failure there happens when the machine's timing says so and cannot be replayed; here the same
cores meet generated link cuts and region failures, deterministically, at about a second of
wall time per virtual minute of a six-region mesh.

What is real: every decision (probing, link state, fast reroute, routes, ordering, versions,
membership, fan-out, end-to-end retransmission), the datagram encoding, and the controller
<-> relay contract, which goes through protobuf both ways (controller/translate.py and
controller/relay_service.py's `dispatch` on one side, relay/control.py's `ControlSession` on
the other) after a small virtual delay, as the processes speak it. What stands in: the UDP
socket and the WAN (`Network`: one-way delays per directed link, cuttable), the gRPC stream
(`Pipe`: two delayed FIFO directions), the QUIC client edge (`RecordingEdge`), the asyncio
loops (`Clock`: a heap of timed callbacks).

The invariants checked as the run goes (a breach raises `Violation` at once, with the virtual
time, so that a hypothesis example shrinks to the first breach):

- residency: every channel datagram on the wire belongs to a zone that holds both the region
  it leaves and the region it reaches; every delivery to an edge is in a region of its zone;
  every route the controller computed and every table a relay applied stays in its zone;
- loop-freedom and ordered versions: the controller's route set at each version is loop-free
  following next hops region to region; a relay applies versions in increasing order only,
  never rejects one (a rejection would mean the controller pushed something wrong) and never
  holds a looping path; no datagram arrives where the next hops in force across the relays
  (tables and fast reroutes) would take it round a loop, and none is dropped for its hop
  limit;
- messages: each subscriber region gets each publisher stream's messages in order and at most
  once; `check_streams` (at the end) requires all of them where the region stayed alive and
  reachable within the zone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx

from controller import engine, relay_service, translate
from controller.core import Controller, Message, Session, Settings
from controller.distribution import Push
from controller.routing import Link, build_graph
from controller.store import MemoryStore
from relay import datagram, packets
from relay.control import ControlSession
from relay.datagram import MESSAGE, Datagram
from relay.fabric import ChannelKey, Fabric
from relay.scheduler import ProbeScheduler, RelaySettings
from relay.tables import RouteTables
from relay.transport import Chaos, peer_sender
from skymesh import nodes
from skymesh.catalogue import ID_PATTERN, Region
from skymesh.policy import Policy, Zone
from skymesh.v1 import relay_pb2
from skymesh.wan import WanLink, WanModel, geo_model

EPOCH = 1.7e9  # the wall clock at virtual time 0 (the controller's event log wants one)
FABRIC_KEY = b"meshsim-fabric-key-for-tests-32b"
# the demo app's token key as relays get it: public (32 raw bytes), never a secret
DEMO_PUBLIC_KEY = hashlib.sha256(b"meshsim-demo-app").digest()
PORT = 4000
# the controller's settings for a mesh that measures quickly (as the CLI tests' meshes do)
SETTINGS = Settings(probe_interval_s=0.3)
RELAY_SETTINGS = RelaySettings()

Addr = tuple[str, int]


class Violation(AssertionError):
    """An invariant of DESIGN.md did not hold."""


# -- the clock --------------------------------------------------------------------------------


class Clock:
    """Virtual time: a heap of timed callbacks, run in time order and, at equal times, in the
    order they were scheduled (so a FIFO pipe with a fixed delay stays FIFO)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple]] = []
        self._seq = itertools.count()
        self.events = 0  # callbacks run, for the tests' budget

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, fn: Callable[..., None], *args: object) -> None:
        heapq.heappush(self._heap, (max(when, self.now), next(self._seq), fn, args))

    def call_later(self, delay: float, fn: Callable[..., None], *args: object) -> None:
        self.call_at(self.now + delay, fn, *args)

    def run_until(self, t: float, stop: Callable[[], bool] | None = None) -> bool:
        """Run every callback due by `t` (or until `stop()` holds after one); True if stopped."""
        while self._heap and self._heap[0][0] <= t:
            when, _, fn, args = heapq.heappop(self._heap)
            self.now = when
            self.events += 1
            fn(*args)
            if stop is not None and stop():
                return True
        self.now = max(self.now, t)
        return False


# -- the client edge --------------------------------------------------------------------------


@dataclass
class RecordingEdge:
    """Stands for a relay's QUIC client edge: who subscribes and publishes here, and every
    media datagram and message the fabric delivered, with its virtual time. `check` sees each
    delivery first (the harness's residency and ordering checks)."""

    region: str
    check: Callable[[str, ChannelKey, str, str, int], None]
    clock: Clock
    subscribed: set[ChannelKey] = field(default_factory=set)
    publishing: set[ChannelKey] = field(default_factory=set)
    media: dict[ChannelKey, list[tuple[float, bytes]]] = field(default_factory=dict)
    messages: dict[ChannelKey, list[tuple[float, str, int, str]]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    zones: set[str] = field(default_factory=set)
    drained: bool = False

    def members(self, key: ChannelKey) -> set[str]:
        return {"subscriber"} if key in self.subscribed else set()

    def delivers(self, key: ChannelKey) -> bool:
        return bool(self.members(key))

    def deliver_media(self, key: ChannelKey, data: bytes, stream=None) -> None:
        self.check(self.region, key, "media", "", 0)
        self.media.setdefault(key, []).append((self.clock.now, bytes(data)))

    def deliver_message(self, key: ChannelKey, uid: str, mid: int, body: str,
                        stream: str | None = None, seq: int | None = None) -> None:
        self.check(self.region, key, "message", uid, mid)
        self.messages.setdefault(key, []).append((self.clock.now, uid, mid, body))

    def deliver_replayed(self, key: ChannelKey, uid: str, mid: int, body: str, stream: str,
                         seq: int) -> None:
        self.check(self.region, key, "message", uid, mid)

    def has_stream(self, stream: str) -> bool:
        return False

    def stream_settled(self, stream: str, mid: int) -> None:
        pass

    def members_changed(self, key, names) -> None:
        pass

    def deliver_comments(self, key, payload):
        pass

    def joined(self) -> int:
        return len(self.subscribed | self.publishing)

    def interest(self) -> dict[ChannelKey, tuple[bool, bool]]:
        return {k: (k in self.subscribed, k in self.publishing)
                for k in sorted(self.subscribed | self.publishing)}

    def configure(self, app_keys: dict[str, tuple[bytes, ...]], zones: set[str],
                  drained: bool) -> None:
        self.zones, self.drained = set(zones), drained


# -- the network ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WireRecord:
    """One channel datagram that left a region, as the wire log keeps it."""

    at: float
    src: str
    dst: str
    kind: int
    zone: str
    channel: str
    publisher: str
    destinations: tuple[str, ...]


class Network:
    """The WAN between regions: one-way delay, jitter and loss per directed link (a pair not
    in the model has no link), links cut both ways, failed regions that nothing reaches or
    leaves. Datagrams are routed by address, as a socket does."""

    def __init__(self, mesh: Mesh, wan: WanModel, rng: random.Random) -> None:
        self.mesh = mesh
        self.wan = dict(wan)
        self.rng = rng
        self.cut: set[frozenset[str]] = set()
        self.failed: set[str] = set()
        self.region_of: dict[Addr, str] = {}
        self.counters: Counter[str] = Counter()

    def up(self, src: str, dst: str) -> bool:
        return ((src, dst) in self.wan and frozenset((src, dst)) not in self.cut
                and src not in self.failed and dst not in self.failed)

    def transmit(self, src: str, data: bytes, addr: Addr, injected: bool = False) -> None:
        dst = self.region_of.get(addr)
        if dst is None:
            self.counters["no-such-address"] += 1
            return
        info = None if data.startswith(packets.MAGIC) else \
            self.mesh.on_wire(src, dst, bytes(data), injected)
        if not self.up(src, dst):
            self.counters["dropped"] += 1
            return
        link = self.wan[(src, dst)]
        if link.loss and self.rng.random() < link.loss:
            self.counters["lost"] += 1
            return
        delay = max(0.0, link.delay_ms + self.rng.uniform(-link.jitter_ms, link.jitter_ms))
        self.mesh.clock.call_later(delay / 1000, self.arrive, src, dst, bytes(data), info)

    def arrive(self, src: str, dst: str, data: bytes, info: WireRecord | None) -> None:
        # a datagram in flight is lost when its link is cut or its destination fails meanwhile
        if not self.up(src, dst):
            self.counters["dropped-in-flight"] += 1
            return
        if info is not None:
            self.mesh.on_arrival(dst, data, info)
        self.mesh.relays[dst].on_datagram(data, self.mesh.relays[src].addr)


class SimTransport:
    """relay/transport.py's seam (`send(data, addr, region)`) onto the network."""

    def __init__(self, network: Network, region: str) -> None:
        self.network = network
        self.region = region

    def send(self, data: bytes | bytearray | memoryview, addr: Addr, region: str) -> None:
        self.network.transmit(self.region, bytes(data), addr)


# -- the controller session -------------------------------------------------------------------


class Pipe:
    """One relay's gRPC stream to the controller: protobuf messages each way, in order, after
    `delay_s`. It breaks when the relay's region fails (or the controller ends it); messages
    in flight on a broken pipe are lost, as on a broken stream."""

    def __init__(self, mesh: Mesh, relay: SimRelay, delay_s: float) -> None:
        self.mesh = mesh
        self.relay = relay
        self.delay_s = delay_s
        self.session: Session | None = None  # the core's, once the hello is in
        self.closed = False

    # relay -> controller (ControlSession's outbox)
    def put_nowait(self, msg: relay_pb2.RelayMessage) -> None:
        if not self.closed:
            self.mesh.clock.call_later(self.delay_s, self._at_controller, msg)

    def _at_controller(self, msg: relay_pb2.RelayMessage) -> None:
        if self.closed or not self.relay.alive:  # a dark region's stream stalls
            return
        mesh = self.mesh
        if self.session is None:
            problem = relay_service.check_hello(msg, mesh.catalogue)
            if problem:
                raise Violation(f"{mesh.clock.now:.3f}: hello refused: {problem[1]}")
            self.session = mesh.controller.connect(translate.hello(msg.hello), self._to_relay,
                                                   mesh.clock.now, mesh.unix)
            return
        relay_service.dispatch(mesh.controller, self.session, msg, mesh.clock.now, mesh.unix)

    # controller -> relay (the session's send callback)
    def _to_relay(self, message: Message | None) -> None:
        if self.closed:
            return
        if message is None:  # the controller ends the session
            self.mesh.clock.call_later(self.delay_s, self.break_, False)
            return
        if isinstance(message, Push):
            self.mesh.on_push(message)
        pb = translate.controller_message(message)
        self.mesh.clock.call_later(self.delay_s, self._at_relay, pb)

    def _at_relay(self, pb: relay_pb2.ControllerMessage) -> None:
        if self.closed or not self.relay.alive:
            return
        control = self.relay.control
        if control.outbox is not self:
            control.started(self)
        before = self.relay.tables.version
        reply = control.on_control(pb)
        if pb.WhichOneof("msg") == "routes":
            self.mesh.on_applied(self.relay, pb.routes, before, reply)
        if reply is not None:
            self.put_nowait(reply)

    def break_(self, tell_controller: bool = True) -> None:
        """The stream ends: the controller forgets the session, the relay reconnects later."""
        if self.closed:
            return
        self.closed = True
        mesh, relay = self.mesh, self.relay
        if tell_controller and self.session is not None:
            mesh.controller.disconnect(self.session, mesh.clock.now, mesh.unix)
        if relay.pipe is self:
            relay.pipe = None
            relay.control.outbox = None
            if relay.alive:
                relay.reconnect_later()


# -- a relay ----------------------------------------------------------------------------------


class SimRelay:
    """One region's relay, wired as relay/node.py wires it, with its loops on the clock."""

    def __init__(self, mesh: Mesh, region: str, index: int, settings: RelaySettings) -> None:
        self.mesh = mesh
        self.region = region
        self.addr: Addr = (f"10.0.{index}.1", PORT)
        self.settings = settings
        self.rng = random.Random(f"{mesh.seed}:relay:{region}")
        self.counters: Counter[str] = Counter()
        self.tables = RouteTables(region)
        transport = SimTransport(mesh.network, region)
        self.scheduler = ProbeScheduler(region, settings, self.tables, transport.send,
                                        self.rng, self.counters)
        self.fabric = Fabric(region, self.tables,
                             peer_sender(transport, self.scheduler.peers, self.counters),
                             mesh.clock.time, self.counters, node=f"{region}-1")
        self.control = ControlSession(region, self.fabric.node, "controller", settings,
                                      self.scheduler, self.fabric, Chaos(), self.counters,
                                      self.rng, clock=mesh.clock.time, wall=lambda: mesh.unix)
        self.edge = RecordingEdge(region, mesh.on_delivery, mesh.clock)

        def forwarding_changed() -> None:
            self.fabric.tables_changed()
            mesh.on_forwarding_changed(self)

        self.scheduler.on_forwarding_changed = forwarding_changed
        self.scheduler.on_links_changed = self.control.links_changed
        self.fabric.on_interest = self.control.interest_changed
        self.fabric.edge = self.edge
        self.control.edge = self.edge
        self.alive = True
        self.epoch = 0  # bumped when the region fails: its scheduled loops stop
        self.pipe: Pipe | None = None
        self.next_tick = 0.0
        self.applied: list[tuple[float, int]] = []  # (time, version) of each table applied

    @property
    def probe_addr(self) -> str:
        return f"{self.addr[0]}:{self.addr[1]}"

    def start(self) -> None:
        """The relay's loops (probing and the fabric's timers; link reports) and its session."""
        epoch = self.epoch
        self.next_tick = 0.0
        self.mesh.clock.call_later(0.0, self._probe_round, epoch)
        self.mesh.clock.call_later(self.control.report_interval_s, self._report, epoch)
        self.connect()

    def connect(self) -> None:
        if not self.alive or self.pipe is not None:
            return
        self.pipe = Pipe(self.mesh, self, self.mesh.control_delay_s)
        self.pipe.put_nowait(self.control.hello(self.probe_addr))

    def reconnect_later(self) -> None:
        epoch = self.epoch
        delay = self.settings.backoff_min_s * self.rng.uniform(0.8, 1.2)
        self.mesh.clock.call_later(delay, lambda: self.epoch == epoch and self.connect())

    def _probe_round(self, epoch: int) -> None:
        """relay/node.py's probe loop, one wakeup."""
        if epoch != self.epoch:
            return
        now, s = self.mesh.clock.now, self.settings
        if now >= self.scheduler.next_pass:
            self.control.end_expired_chaos(self.mesh.unix)
        wake = self.scheduler.step(now, self.fabric.sent_to)
        if now >= self.next_tick:
            self.fabric.tick(now)
            self.next_tick = now + (s.tick_s if self.fabric.has_streams else s.full_pass_s)
        delay = max(s.probe_granularity_s, min(wake, self.next_tick) - now)
        self.mesh.clock.call_later(delay, self._probe_round, epoch)

    def _report(self, epoch: int) -> None:
        """ControlSession.report_loop, one round."""
        if epoch != self.epoch:
            return
        if self.control.outbox is not None:
            self.control.outbox.put_nowait(
                relay_pb2.RelayMessage(report=self.control.link_report()))
        self.mesh.clock.call_later(self.control.report_interval_s, self._report, epoch)

    def on_datagram(self, data: bytes, addr: Addr) -> None:
        """relay/node.py's dispatch: probes to the scheduler, the rest to the fabric."""
        if not self.alive:
            return
        if data.startswith(packets.MAGIC):
            self.scheduler.on_probe_packet(data, addr, self.mesh.clock.now)
        else:
            self.fabric.on_datagram(data, self.mesh.clock.now)


# -- streams ----------------------------------------------------------------------------------


@dataclass
class Stream:
    """A publisher session at a region's edge: messages (and media) at a steady rate."""

    region: str
    key: ChannelKey
    name: str
    uid: str
    published: list[int] = field(default_factory=list)  # message ids, in order
    media_sent: int = 0


# -- the mesh ---------------------------------------------------------------------------------


class Mesh:
    """Relays of `regions`, one controller, the network between them, and the checks."""

    def __init__(self, regions: Sequence[Region], policy: Policy | None = None,
                 wan: WanModel | None = None, *, seed: int = 0, settings: Settings = SETTINGS,
                 relay_settings: RelaySettings = RELAY_SETTINGS, control_delay_s: float = 0.005,
                 jitter: bool = True) -> None:
        self.seed = seed
        self.clock = Clock()
        self.catalogue = {r.id: r for r in regions}
        for rid in self.catalogue:  # what the catalogue loader would refuse, probes too
            if not ID_PATTERN.match(rid):
                raise ValueError(f"region id {rid!r} does not match {ID_PATTERN.pattern}")
        ids = sorted(self.catalogue)
        self.policy = (policy or Policy({"global": Zone("global", frozenset(ids))})
                       ).restrict(ids)
        wan = dict(wan if wan is not None else geo_model(regions, seed))
        if not jitter:
            wan = {k: WanLink(v.delay_ms, 0.0, v.loss) for k, v in wan.items()}
        self.control_delay_s = control_delay_s
        self.network = Network(self, wan, random.Random(f"{seed}:network"))
        nonces = itertools.count(1)
        self.controller = Controller(self.catalogue, self.policy, settings,
                                     {"demo": (DEMO_PUBLIC_KEY,)},
                                     [FABRIC_KEY], MemoryStore(), now=0.0, wake=self._wake)
        self.controller.distribution.nonce = lambda: f"n{next(nonces)}"
        self.relays: dict[str, SimRelay] = {}
        for i, rid in enumerate(ids):
            relay = self.relays[rid] = SimRelay(self, rid, i + 1, relay_settings)
            self.network.region_of[relay.addr] = rid
        self.streams: list[Stream] = []
        self.ever_failed: set[str] = set()
        self.wire: list[WireRecord] = []
        self.stats: Counter[str] = Counter()
        # loops across the relays' next hops in force: open ones, by (zone, destination,
        # cycle), with when they opened and what the relays held; closed ones in the log
        self.open_loops: dict[tuple[str, str, tuple[str, ...]], tuple[float, dict]] = {}
        self.loop_log: list[tuple] = []
        self._visited: dict[tuple[bytes, str], set[str]] = {}
        self._route_versions: set[int] = set()
        self._last_mid: dict[tuple[str, ChannelKey, str], int] = {}
        self._tick_gen = 0
        self._woken = False
        self.started = False

    @property
    def unix(self) -> float:
        return EPOCH + self.clock.now

    # -- running ----------------------------------------------------------------------------

    def start(self) -> None:
        """Every relay starts (probing, reporting, connecting) and the controller's loop."""
        self.started = True
        for relay in self.relays.values():
            relay.start()
        self.clock.call_later(0.0, self._tick, self._tick_gen)

    def _wake(self) -> None:
        """The core asks for a round now (RecomputeLoop's event); one is enough."""
        if not self._woken:
            self._woken = True
            self.clock.call_later(0.0, self._tick, self._tick_gen)

    def _tick(self, gen: int) -> None:
        """controller/server.py's RecomputeLoop, one round: a wake during the round asks for
        the next at once there too (the event is cleared before it)."""
        if gen != self._tick_gen:
            return
        self._tick_gen += 1
        self._woken = False
        self.controller.tick(self.clock.now, self.unix)
        self.clock.call_later(self.controller.settings.recompute_interval_s, self._tick,
                              self._tick_gen)

    def run(self, seconds: float) -> None:
        if not self.started:
            self.start()
        self.clock.run_until(self.clock.now + seconds)

    def run_until(self, t: float) -> None:
        if not self.started:
            self.start()
        self.clock.run_until(t)

    def converged(self) -> bool:
        """Every live relay connected, measured and holding what it was pushed."""
        ctl = self.controller
        live = {r for r in self.relays if r not in self.network.failed}
        return (set(ctl.sessions) == live and ctl.converged(self.clock.now)
                and all(ctl.sessions[r].routes.pushed_version == self.relays[r].tables.version
                        for r in live))

    def converge(self, timeout: float = 30.0) -> float:
        """Run until converged; the virtual time it took (a Violation if it did not)."""
        if not self.started:
            self.start()
        start = self.clock.now
        if not self.clock.run_until(start + timeout, self.converged):
            raise Violation(f"{self.clock.now:.3f}: not converged within {timeout} s")
        return self.clock.now - start

    # -- faults -----------------------------------------------------------------------------

    def cut(self, a: str, b: str) -> None:
        """Cut the link between a and b, both ways (what is in flight on it is lost)."""
        self.network.cut.add(frozenset((a, b)))

    def heal(self, a: str, b: str) -> None:
        self.network.cut.discard(frozenset((a, b)))

    def fail(self, region: str, notice_s: float = 0.0) -> None:
        """The region goes dark: nothing reaches or leaves it, its relay's loops stop, and the
        controller loses its session after `notice_s` (a stream's keepalive)."""
        relay = self.relays[region]
        if not relay.alive:
            return
        relay.alive = False
        relay.epoch += 1
        self.ever_failed.add(region)
        self.network.failed.add(region)
        self.on_forwarding_changed()
        pipe = relay.pipe
        if pipe is not None:
            self.clock.call_later(notice_s, pipe.break_)

    def revive(self, region: str) -> None:
        """The region is back with the state it had (its tables, streams, statistics): it
        reconnects to the controller and its loops run again."""
        relay = self.relays[region]
        if relay.alive:
            return
        self.network.failed.discard(region)
        relay.alive = True
        self.on_forwarding_changed()
        if relay.pipe is not None:
            relay.pipe.break_()  # the stream broke while the region was dark
        relay.start()

    # -- channels ---------------------------------------------------------------------------

    def subscribe(self, region: str, key: ChannelKey) -> None:
        """A subscriber joins at the region's edge (the edge tells the fabric)."""
        relay = self.relays[region]
        relay.edge.subscribed.add(key)
        relay.fabric.interest_changed()

    def stream(self, region: str, key: ChannelKey, start: float, stop: float,
               message_hz: float = 20.0, media_hz: float = 0.0, name: str = "s1",
               uid: str = "") -> Stream:
        """A publisher at the region's edge: messages (ids 1, 2, ...) and media datagrams at
        steady rates from `start` until `stop` (virtual times; (stop - start) * rate of
        each)."""
        relay = self.relays[region]
        relay.edge.publishing.add(key)
        relay.fabric.interest_changed()
        s = Stream(region, key, name, uid or f"{region}-{name}")
        self.streams.append(s)
        for i in range(round((stop - start) * message_hz)):
            self.clock.call_at(start + i / message_hz, self._publish_message, s)
        for i in range(round((stop - start) * media_hz)):
            self.clock.call_at(start + i / media_hz, self._publish_media, s)
        return s

    def _publish_message(self, s: Stream) -> None:
        relay = self.relays[s.region]
        if relay.alive:
            mid = len(s.published) + 1
            s.published.append(mid)
            relay.fabric.message_published(s.key, s.name, s.uid, mid, f"m{mid}",
                                           now=self.clock.now)

    def _publish_media(self, s: Stream) -> None:
        relay = self.relays[s.region]
        if relay.alive:
            s.media_sent += 1
            relay.fabric.media_published(s.key, s.name, b"%s:%d" % (s.uid.encode(),
                                                                     s.media_sent))

    def inject(self, src: str, dst: str, d: Datagram) -> None:
        """A channel datagram put on the wire from `src` to `dst` as a misbehaving relay
        would, outside the residency check of that one hop: what the receiver does with it
        is still checked."""
        d = dataclasses.replace(d, epoch=self.controller.keyring.sealing.epoch)
        self.network.transmit(src, datagram.encode(d, FABRIC_KEY), self.relays[dst].addr,
                              injected=True)

    # -- the checks, as the run goes --------------------------------------------------------

    def violation(self, what: str) -> Violation:
        return Violation(f"t={self.clock.now:.3f}: {what}")

    def zone_regions(self, zone: str) -> frozenset[str]:
        z = self.policy.zones.get(zone)
        return z.regions if z is not None else frozenset()

    def on_wire(self, src: str, dst: str, data: bytes, injected: bool) -> WireRecord:
        """A channel datagram leaves `src` for `dst`: its zone must hold both (residency),
        and it must decode under the mesh's key."""
        try:
            d = datagram.decode(data, FABRIC_KEY)
        except datagram.BadDatagram as e:
            raise self.violation(f"{src}->{dst}: undecodable channel datagram: {e}") from None
        # the regions it is for: routing and the checks are per region, whichever node a
        # destination names there
        rec = WireRecord(self.clock.now, src, dst, d.kind, d.zone, d.channel, d.publisher,
                         tuple(dict.fromkeys(nodes.region_of(x) for x in d.destinations)))
        nonce = data[datagram.NONCE_AT:datagram.NONCE_AT + 12]
        for dest in rec.destinations:  # where this sealed datagram has been, towards each
            self._visited.setdefault((nonce, dest), set()).add(src)
        self.wire.append(rec)
        inside = self.zone_regions(d.zone)
        if not injected and not {src, dst} <= inside:
            raise self.violation(
                f"residency: a datagram of zone {d.zone!r} (kind {d.kind}, channel "
                f"{d.channel!r}, for {list(d.destinations)}) goes {src}->{dst}, outside the "
                f"zone {sorted(inside)}")
        return rec

    def on_arrival(self, dst: str, data: bytes, rec: WireRecord) -> None:
        """A channel datagram reaches `dst`: the next hops in force from there must not take
        it round a loop. (A datagram that left a region by the old tables and arrives where
        the new ones send it back passes that region twice without a loop in any state of
        the tables: counted as a U-turn, not a breach; the hop limit bounds those.)"""
        nonce = data[datagram.NONCE_AT:datagram.NONCE_AT + 12]
        for dest in rec.destinations:
            seen = self._visited.setdefault((nonce, dest), set())
            if dst in seen:
                self.stats["u-turns"] += 1
            seen.add(dst)
            if dest == dst:
                continue
            way = self.forwarding_path(dst, dest, rec.zone)
            end = way[-1]
            if end != dest and end not in self.network.failed:
                hop = self.relays[end].tables.next_hop(dest, rec.zone)
                if hop is not None and hop in way:
                    raise self.violation(
                        f"loop: a datagram of zone {rec.zone!r} for {dest} reaches {dst} "
                        f"(from {rec.src}), where the next hops in force go round "
                        f"{' -> '.join([*way, hop])}")

    def on_delivery(self, region: str, key: ChannelKey, kind: str, uid: str, mid: int) -> None:
        """The fabric delivered to an edge: only in the channel's zone, and messages of each
        stream in order and once."""
        if region not in self.zone_regions(key[0]):
            raise self.violation(f"residency: {kind} of zone {key[0]!r} delivered in {region}")
        if kind == "message":
            last = self._last_mid.get((region, key, uid), 0)
            if mid <= last:
                raise self.violation(
                    f"message {mid} of {uid} on {key} delivered in {region} after {last}"
                    f" ({'again' if mid == last else 'out of order'})")
            self._last_mid[(region, key, uid)] = mid

    def on_push(self, push: Push) -> None:
        """The controller pushes a table: the route set it computed for this version must be
        loop-free and stay in each zone."""
        if push.version in self._route_versions:
            return
        self._route_versions.add(push.version)
        self.stats["versions"] += 1
        for name, z in self.controller.routes.zones.items():
            inside = self.zone_regions(name)
            if not set(z.nodes) <= inside:
                raise self.violation(f"v{push.version}: zone {name} routes over "
                                     f"{sorted(set(z.nodes) - inside)}, outside it")
            n = len(z.nodes)
            for d in range(n):
                for u in range(n):
                    at, steps = u, 0
                    while at != d and z.next_hop[at, d] >= 0:
                        at, steps = int(z.next_hop[at, d]), steps + 1
                        if steps > n:
                            raise self.violation(
                                f"v{push.version}: zone {name}: next hops from {z.nodes[u]} "
                                f"towards {z.nodes[d]} loop")

    def on_applied(self, relay: SimRelay, table: relay_pb2.RouteTable, before: int,
                   reply: relay_pb2.RelayMessage | None) -> None:
        """A relay took a table: applied in version order, loop-free, in its zones; rejected
        never (the controller must not push what a relay refuses)."""
        ack = reply.ack if reply is not None else None
        if ack is None or not ack.accepted:
            raise self.violation(f"{relay.region} rejected routes v{table.version}: "
                                 f"{ack.reason if ack else 'no reply'}")
        if not table.version > before or relay.tables.version != table.version:
            raise self.violation(f"{relay.region} applied v{table.version} after v{before}")
        relay.applied.append((self.clock.now, table.version))
        for e in relay.tables.entries.values():
            if len(set(e.path)) != len(e.path) or e.path[0] != relay.region:
                raise self.violation(f"{relay.region} v{table.version}: path {e.path} loops")
            if not set(e.path) <= self.zone_regions(e.zone) or (
                    e.backup_next_hop and e.backup_next_hop not in self.zone_regions(e.zone)):
                raise self.violation(f"{relay.region} v{table.version}: route {e} of zone "
                                     f"{e.zone} leaves it")
        self.on_forwarding_changed(relay)

    def on_forwarding_changed(self, relay: SimRelay | None = None) -> None:
        """Forwarding moved somewhere (a table, a fast reroute, a region failed or back):
        follow every live relay's next hops now in force and keep a log of the loops across
        relays, when each opened and closed, and what the relays on it held when it opened.
        Those are states between versions, which no check above forbids as such: what
        traffic meets of them is (on_arrival)."""
        now = self.clock.now
        current: set[tuple[str, str, tuple[str, ...]]] = set()
        for zone, dst in sorted({k for r in self.relays.values() for k in r.tables.entries}):
            for start in self.relays:
                way = self.forwarding_path(start, dst, zone)
                end = way[-1]
                if end == dst or end in self.network.failed:
                    continue
                hop = self.relays[end].tables.next_hop(dst, zone)
                if hop is not None and hop in way:
                    cycle = way[way.index(hop):]
                    turn = cycle.index(min(cycle))
                    current.add((zone, dst, tuple(cycle[turn:] + cycle[:turn])))
        for loop in current - self.open_loops.keys():
            zone, dst, cycle = loop
            held = {r: (self.relays[r].tables.version,
                        self.relays[r].tables.entries[(zone, dst)].next_hop,
                        self.relays[r].tables.entries[(zone, dst)].backup_next_hop,
                        sorted(self.relays[r].tables.down)) for r in cycle}
            self.open_loops[loop] = (now, held)
            self.stats["forwarding-loops"] += 1
        for loop in self.open_loops.keys() - current:
            opened, held = self.open_loops.pop(loop)
            self.loop_log.append((*loop, opened, now, held))

    # -- the checks at the end --------------------------------------------------------------

    def reachable(self, src: str, dst: str, zone: str) -> bool:
        """Whether dst can be reached from src now, over live links inside the zone."""
        inside = self.zone_regions(zone)
        g = nx.DiGraph()
        g.add_nodes_from(inside)
        g.add_edges_from((a, b) for (a, b) in self.network.wan
                         if a in inside and b in inside and self.network.up(a, b))
        return src in g and dst in g and nx.has_path(g, src, dst)

    def forwarding_path(self, src: str, dst: str, zone: str = "global") -> list[str]:
        """The regions traffic from src to dst goes through now, by the next hops the live
        relays have in force (their tables and fast reroutes); it ends early where one has
        none, or at a failed region, or where it would loop."""
        out = [src]
        while out[-1] != dst and out[-1] not in self.network.failed:
            hop = self.relays[out[-1]].tables.next_hop(dst, zone)
            if hop is None or hop in out:
                break
            out.append(hop)
        return out

    def delivered(self, region: str, s: Stream) -> list[int]:
        return [mid for _, uid, mid, _ in self.relays[region].edge.messages.get(s.key, [])
                if uid == s.uid]

    def check_streams(self) -> dict[str, dict[str, int]]:
        """Every stream's messages reached every subscriber region that never failed and is
        reachable within the zone now, all of them, once and in order (the order and once are
        checked as they arrive). Returns, per stream, how many each region got."""
        out = {}
        for s in self.streams:
            got = {}
            for region, relay in self.relays.items():
                if region == s.region or s.key not in relay.edge.subscribed:
                    continue
                mids = self.delivered(region, s)
                got[region] = len(mids)
                required = region not in self.ever_failed and self.reachable(
                    s.region, region, s.key[0])
                if required and mids != s.published:
                    missing = sorted(set(s.published) - set(mids))
                    raise self.violation(
                        f"{s.uid} on {s.key}: {region} got {len(mids)} of "
                        f"{len(s.published)} messages; missing {missing[:10]}")
            out[s.uid] = got
        return out

    def check_counters(self, allow: Iterable[str] = ()) -> None:
        """No relay dropped a datagram for its hop limit, nor (unless `allow`ed, after an
        injection) one of a foreign zone, nor a probe that failed to decode or authenticate
        (relays share the controller's keys, through key rotations too)."""
        for region, relay in self.relays.items():
            for name in ("dropped.hop-limit", "dropped.foreign-zone", "malformed",
                         "probe.epoch", "probe.bad-tag"):
                if name not in allow and relay.counters[name]:
                    raise self.violation(f"{region}: {name} = {relay.counters[name]}")

    def finish(self, allow: Iterable[str] = ()) -> dict[str, dict[str, int]]:
        """The end-of-run checks; returns check_streams' counts."""
        self.check_counters(allow)
        return self.check_streams()

    # -- what tests look at -----------------------------------------------------------------

    def optimum(self, hysteresis: bool = False) -> engine.RouteSet:
        """The engine's routes on the emulated network as it is now: RTT = both one-way
        delays (no jitter), links up only."""
        links = [Link(a, b, self.network.wan[(a, b)].delay_ms + self.network.wan[(b, a)].delay_ms)
                 for (a, b) in self.network.wan
                 if (b, a) in self.network.wan and self.network.up(a, b)
                 and self.network.up(b, a)]
        live = [r for r in self.relays if r not in self.network.failed]
        graph = build_graph(live, links, self.controller.settings.cost)
        hyst = self.controller.settings.hysteresis if hysteresis else engine.NO_HYSTERESIS
        return engine.compute(graph, self.policy, None, hyst)

    def wire_links(self, key: ChannelKey, since: float = 0.0, kind: int = MESSAGE
                   ) -> Counter[tuple[str, str]]:
        """Links that carried the channel's datagrams of `kind` since `since`."""
        return Counter((w.src, w.dst) for w in self.wire
                       if w.at >= since and (w.zone, w.channel) == key and w.kind == kind)

    def media_received(self, region: str, key: ChannelKey) -> int:
        return len(self.relays[region].edge.media.get(key, []))

    def media_lost(self, s: Stream) -> dict[str, int]:
        """Media of the stream each subscriber region did not get (lost in a failure, or
        never sent its way): counted, never required."""
        return {r: s.media_sent - self.media_received(r, s.key)
                for r, relay in self.relays.items()
                if r != s.region and s.key in relay.edge.subscribed}

    def trace(self) -> str:
        """A digest of what happened: equal for equal runs in one process. (Not across
        processes: relay/scheduler.py iterates two sets of region names, whose order follows
        PYTHONHASHSEED, and draws its probe jitter in that order.)"""
        h = hashlib.sha256()
        for w in self.wire:
            h.update(repr((round(w.at, 9), w.src, w.dst, w.kind, w.destinations)).encode())
        for region in sorted(self.relays):
            r = self.relays[region]
            h.update(repr((region, r.applied, sorted(r.counters.items()))).encode())
        return h.hexdigest()


def regions(*specs: tuple[str, float, float] | tuple[str, float, float, str]) -> list[Region]:
    """Regions from (id, lat, lon[, country])."""
    return [Region(id=s[0], name=s[0].upper(), country=s[3] if len(s) > 3 else "DE",
                   lat=s[1], lon=s[2]) for s in specs]


def given_delays(delays: Mapping[tuple[str, str], float]) -> WanModel:
    """A WAN model from one-way delays in ms per undirected pair (the same both ways; pairs
    not given have no link)."""
    out: WanModel = {}
    for (a, b), ms in delays.items():
        out[(a, b)] = out[(b, a)] = WanLink(ms)
    return out
