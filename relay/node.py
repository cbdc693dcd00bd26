"""The relay process, wired: one UDP socket for probes and channel datagrams between relays
(relay/transport.py, with the emulated WAN and chaos in front of it), the data plane
(relay/fabric.py), probing and fast reroute (relay/scheduler.py), the QUIC client edge
(relay/edge.py) and the session with the controller (relay/control.py). What is here is the
wiring and the loop that feeds the scheduler and the fabric the time."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from relay import history, packets
from relay.control import ControlSession
from relay.edge import EdgeState, start_edge, watch_certificate
from relay.edgesession import EdgeLimits
from relay.fabric import Fabric
from relay.historystore import HistoryStore
from relay.scheduler import ProbeScheduler, RelaySettings
from relay.tables import RouteTables
from relay.transport import Chaos, Direct, EmulatedWan, peer_sender
from skymesh import nodes
from skymesh.net.tls import TlsFiles
from skymesh.net.udpio import BatchedUDP
from skymesh.v1 import relay_pb2
from skymesh.wan import WanLink

log = logging.getLogger("skymesh.relay")

__all__ = ["EdgeSettings", "RelayNode", "RelaySettings", "settle_heap"]

DEFAULT_SETTINGS = RelaySettings()


@dataclass(frozen=True)
class EdgeSettings:
    cert: str
    key: str
    port: int = 0  # on the relay's bind host; 0 picks a free port
    limits: EdgeLimits | None = None  # flood limits (None: EdgeLimits' defaults)
    history_messages: int = history.DEFAULT_MESSAGES  # kept per channel (0: none)
    history_age_s: float = history.DEFAULT_MAX_AGE_S
    history_db: str | None = None  # SQLite file keeping them across restarts (None: not)


class RelayNode:
    def __init__(
        self,
        region: str,
        controller: str,
        bind: tuple[str, int],
        wan: dict[str, WanLink] | None = None,
        settings: RelaySettings = DEFAULT_SETTINGS,
        edge: EdgeSettings | None = None,
        *,
        tls: TlsFiles | None,
        node_id: str = "",
        advertise: str | None = None,
        metrics_listen: str | None = None,
        health_listen: str | None = None,
    ) -> None:
        """`tls`: the relay's mesh certificate, which names its region and node (None:
        plaintext, --insecure, and a random node id unless `node_id` is given). The node id
        names the relay in datagrams' destinations: one that cannot is refused here
        (ValueError) rather than by every relay that would route to it. `advertise`: the
        host the others reach this relay at, when not the one it binds (its public address
        behind NAT, or any address bound to 0.0.0.0)."""
        self.node_id = nodes.check_node_id(node_id or f"{region}-{uuid.uuid4().hex[:6]}")
        self.region = region
        self.controller = controller  # its address
        self.bind = bind
        self.advertise = advertise
        self.metrics_listen = metrics_listen  # HOST:PORT of the Prometheus endpoint, or None
        self.health_listen = health_listen  # HOST:PORT of the gRPC health service, or None
        self.health = None  # relay.health.RelayHealth, once it listens
        self.wan = wan  # None: a real network, send at once
        self.settings = settings
        self.rng = random.Random()
        self.counters: Counter[str] = Counter()
        self.tables = RouteTables(region)
        self.udp: BatchedUDP | None = None
        self.transport = Direct() if wan is None else EmulatedWan(
            wan, self.counters, self.rng, _call_later)
        self.chaos = Chaos()
        self.scheduler = ProbeScheduler(region, settings, self.tables, self.transport.send,
                                        self.rng, self.counters)
        self.fabric = Fabric(region, self.tables,
                             peer_sender(self.transport, self.scheduler.peers, self.counters),
                             time.monotonic, self.counters, node=self.node_id,
                             send_sibling=self.send_sibling)
        self.control = ControlSession(region, self.node_id, controller, settings,
                                      self.scheduler, self.fabric, self.chaos, self.counters,
                                      self.rng, tls=tls)
        self.scheduler.on_forwarding_changed = self.fabric.tables_changed
        self.scheduler.on_links_changed = self.control.links_changed
        self.fabric.on_interest = self.control.interest_changed
        self.edge_settings = edge
        self.edge: EdgeState | None = None
        self.history_store: HistoryStore | None = None

    async def start_udp(self) -> tuple[str, int]:
        self.udp = await BatchedUDP.bind(self.bind, self.on_datagram, self._socket_error)
        self.transport.socket = self.udp
        self.chaos.attach(self.udp, self.scheduler.peers)
        self.udp.take = self.fabric.transit_run
        if self.wan is None:  # no emulated delay: transit goes straight to the socket
            self.fabric.direct_send = self.udp.send
            self.fabric.direct_send_run = self.udp.send_run
            self.fabric.peer_addr = self.scheduler.peers.get
        return self.udp.sockname()

    def send_sibling(self, node: str, data: bytes) -> bool:
        """The fabric's datagram for a sibling (another node of this region): straight to its
        socket, never through the emulated WAN, which models the links between regions."""
        addr = self.control.nodes.siblings.get(node)
        if addr is None or self.udp is None:
            self.counters["dropped.no-node"] += 1
            return False
        self.udp.send(data, addr)
        self.counters["sibling.sent"] += 1
        return True

    def _socket_error(self, error: OSError) -> None:
        self.counters["socket_errors"] += 1

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """What the fast path left: channel datagrams to the fabric, probes to the
        scheduler."""
        if not data.startswith(packets.MAGIC):
            self.fabric.on_datagram(data)
            return
        self.scheduler.on_probe_packet(data, addr, time.monotonic())

    def on_control(self, msg: relay_pb2.ControllerMessage) -> relay_pb2.RelayMessage | None:
        return self.control.on_control(msg)

    async def probe_loop(self) -> None:
        settings, scheduler, fabric = self.settings, self.scheduler, self.fabric
        next_tick = 0.0
        while True:
            now = time.monotonic()
            if now >= scheduler.next_pass:  # with the scheduler's pass over everyone
                self.control.end_expired_chaos(time.time())
            wake = scheduler.step(now, fabric.sent_to)
            if now >= next_tick:
                fabric.tick(now)
                # an idle fabric has no timers to keep
                next_tick = now + (settings.tick_s if fabric.has_streams
                                   else settings.full_pass_s)
            await asyncio.sleep(max(settings.probe_granularity_s,
                                    min(wake, next_tick) - time.monotonic()))

    async def run(self) -> None:
        host, port = await self.start_udp()
        log.info("relay %s listening on udp %s:%d", self.node_id, host, port)
        shown = self.advertise or host  # "host:port", split at its last colon by the peers
        if self.advertise:
            log.info("advertised to the controller and the clients as %s", shown)
        if self.edge_settings is not None:
            e = self.edge_settings
            kept = history.History(e.history_messages, e.history_age_s)
            if e.history_db:  # before the edge listens: a bad file stops the start
                self.history_store = HistoryStore(e.history_db, kept)
                restored = self.history_store.open()
                log.info("chat history in %s: %d messages restored", e.history_db, restored)
            server, self.edge = await start_edge(host, e.port, e.cert, e.key, {}, self.region,
                                                 set(), fabric=self.fabric, limits=e.limits,
                                                 history=kept)
            if self.history_store is not None:
                self.edge.on_kept = self.history_store.add
                self.history_store.start()
            self.edge_watch = asyncio.create_task(watch_certificate(server, e.cert, e.key))
            self.fabric.edge = self.edge
            self.control.edge = self.edge
            self.control.edge_addr = f"{shown}:{self.edge.port}"
            log.info("client edge (QUIC) on %s", self.control.edge_addr)
        if self.metrics_listen:
            from relay.metrics import RelayCollector
            from skymesh.net import metricsserver

            self.metrics_server = await metricsserver.serve(
                self.metrics_listen, metricsserver.registry_with(RelayCollector(self)))
            scraped = metricsserver.bound_address(self.metrics_server).rpartition(":")[2]
            bound = self.metrics_listen.rpartition(":")[0].strip("[]")
            self.control.metrics_addr = f"{self.advertise or bound}:{scraped}"
        if self.health_listen:
            from relay import health
            self.health = await health.serve(self.health_listen, lambda: self.control.serving)
            bound = self.health_listen.rpartition(":")[0].strip("[]")
            self.control.health_addr = f"{self.advertise or bound}:{self.health.port}"
        settle_heap()
        try:
            await asyncio.gather(self.probe_loop(), self.control.report_loop(),
                                 self.control.control_loop(f"{shown}:{port}"))
        finally:
            if self.health is not None:  # NOT_SERVING before it stops
                await self.health.close()
            if self.history_store is not None:  # what is queued, written
                await self.history_store.close()


def _call_later(delay_s: float, function, *args) -> asyncio.TimerHandle:
    """The running loop's call_later (the emulated WAN is built before the loop runs)."""
    return asyncio.get_running_loop().call_later(delay_s, function, *args)


# the cyclic collector's thresholds: a young-generation pass every 50,000 allocations, not
# 700. A relay's per-packet objects (aioquic's sent-packet records, frames, events) die young
# by reference counting; passes over thousands of live sessions' objects found little and
# took a sixth of an edge's time in a danmaku storm (bench/danmaku.py).
GC_THRESHOLDS = (50_000, 20, 20)


def settle_heap() -> None:
    """Once started: leave what exists now out of the cyclic garbage collector's passes.
    Per-packet work allocates short-lived objects that trigger collections, and the older
    generations' passes walked every module and protobuf object: pauses of several ms that
    showed in the edge's p99 (15 ms without this, 3.5 ms with it, in one bench run)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
