"""Emulated relays for bench/control_plane.py: many relays in one load-generator process,
each an asyncio task holding one `skymesh.v1.RelayControl/Session` stream to a real controller
and speaking the relay's side of proto/skymesh/v1/relay.proto as relay/control.py does, with
its links measured by arithmetic instead of probes.

    python -m bench.emurelay --controller HOST:PORT --regions FILE --serve ID,ID,...
        [--certs DIR | --insecure] [--protocol 1|2|3|4] [--seed N] [--cpu N] [--ramp S]

`--regions` is JSON: {"seed": N, "regions": [{"id", "lat", "lon"}, ...]}, every region of the
catalogue (peers' coordinates give the links' RTTs). With --certs, relay R presents DIR/
relay-R-n1.pem (skymesh/certs.py names) and trusts DIR/bundle.pem.

Commands on stdin, one JSON object a line, each answered by one JSON line on stdout:

  {"cmd": "stats"}                       what was sent and received so far, and how late the
                                         report timers ran since the previous stats
  {"cmd": "arrivals", "since": T}        per relay, the route tables received at or after
                                         unix time T: [[arrival unix time, version], ...]
  {"cmd": "top", "k": K}                 per relay, the K next hops most rows of its table
                                         use: [[src, next_hop, rows], ...]
  {"cmd": "watch", "src": A, "dst": B, "since": T}
                                         from now on, note per relay the arrival of its first
                                         table at or after unix time T that changes the path
                                         or backup of a row whose path took link A->B (or
                                         removes it); answers how many relays had such rows
  {"cmd": "moved"}                       those tables: {relay: [arrival unix time, version]}
  {"cmd": "change", "src": A, "dst": B, "factor": F}
                                         link A->B's RTT becomes F times its built value
                                         (1: restored); A reports it at once; answers that
                                         report's send time (unix)
  {"cmd": "quit"}

The relay of one region, like relay/control.py and relay/probe.py:

- hello {region, node_id n1, probe_addr 127.0.0.1:<port of its own>, route_version, protocol};
  after the controller's first message, its channels (none) and a link report; again after a
  resync (protocol 4: the replica relaying the session carried it over to a new leader).
- Peer lists: protocol 1, each replaces the list; protocol 2, `incremental` ones add and
  remove. A new link has no sample until 0.3 s have passed (the relay probes a new link every
  0.1 s until it has 3 replies: relay/scheduler.py), then 3, then one more a second; it is
  reported UNSPECIFIED with zeros and age -1 before its first reply and UP from then on
  (LinkStats.state).
- RTT of a link: the fiber round trip over the great-circle distance times a per-pair
  inflation in skymesh.wan.INFLATION_RANGE (the Internet's detours: without them no detour
  ever wins and no link carries more than one route), plus 1-4 ms; fixed per pair. The
  smoothed RTT carries +-0.3% noise, the minimum RTT (what routing uses) is stable.
- Route tables are acknowledged at once, their arrival time and version recorded; the rows
  are read only when needed (partial mesh, `top`).
- Reports every report_interval_s (the phase differs per relay): protocol 1, every link;
  protocol 2 (relay/reporting.py), a full report (`full`) every full_report_interval_s and
  in between only the links whose state changed, that had fewer than settle_samples samples
  when last reported and have new ones, or whose minimum RTT moved beyond the thresholds; a
  report with no links is still sent.
- Partial mesh (protocol 2 and more than partial_mesh_above regions), as relay/scheduler.py:
  measured continuously are the `near` peers and the next hops and backups of the relay's
  routes; every other link takes a turn once every sample_every_s (its second of the period
  from a hash), which gives it 3 replies (a burst of min_samples); it is reported by change
  when that moved it, and in the full reports until the next one after its turn (a link no
  longer measured continuously, likewise after it left).

Messages are encoded and decoded by hand (bytes as relay_pb2 would make them; the tests
parse them back): building protobuf objects per link and report would make this process, not
the controller, the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import logging
import math
import os
import random
import struct
import sys
import time
import zlib
from collections import Counter, deque
from pathlib import Path

import grpc

from relay.sampling import FIRST_PASS_S
from skymesh.geo import fiber_one_way_ms, haversine_km
from skymesh.linkstate import (
    LINK,
    PROTOCOL_BY_CHANGE,
    PROTOCOL_FULL,
    PROTOCOL_RESYNC,
    PROTOCOL_TABLE_CHANGES,
)
from skymesh.v1 import relay_pb2
from skymesh.wan import INFLATION_RANGE

log = logging.getLogger("emurelay")

METHOD = "/skymesh.v1.RelayControl/Session"
NODE = "n1"
PROBE_PORT_BASE = 20000
NOISE = 0.003  # of the smoothed RTT
EXTRA_MS = (1.0, 4.0)  # added to each pair's RTT: the hosts and the last miles
FIRST_REPLIES = 3  # a new link's replies after its fast probes (relay/scheduler.py)
FAST_PROBES_S = 0.3  # ... which take this long
WINDOW = 50  # ProbeSettings.window: the loss's window
BACKOFF = (0.2, 5.0)  # RelaySettings.backoff_min_s, backoff_max_s
ARRIVALS_KEPT = 256
CHANNEL_OPTIONS = [
    # one connection per relay, as separate relay processes have (channels with the same
    # target and arguments would otherwise share one, and its 64-stream limit)
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]

# -- protobuf wire format by hand ------------------------------------------------------------
# the report intervals (1 s) of the first pass over never-measured peers
FIRST_PASS_INTERVALS = round(FIRST_PASS_S)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_VARINTS = [_varint(i) for i in range(1 << 14)]


def varint(n: int) -> bytes:
    return _VARINTS[n] if n < 16384 else _varint(n)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it)."""
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (`tag` is the key byte: field number << 3 | 2)."""
    return bytes((tag,)) + varint(len(payload)) + payload


_TAILS: list[bytes] = []


def tail(samples: int) -> bytes:
    """LinkSample's samples (5), state UP (8) and window (10) for a link with replies."""
    while len(_TAILS) <= samples:
        s = len(_TAILS)
        _TAILS.append(b"\x28" + varint(s) + b"\x40" + varint(relay_pb2.LINK_STATE_UP)
                      + b"\x50" + varint(min(s, WINDOW)))
    return _TAILS[samples]


def report_message(entries: list[bytes], sent_unix_s: float, full: bool) -> bytes:
    """RelayMessage{report: LinkReport{links, sent_unix_s, full}}; `entries` are LinkSamples
    already framed as LinkReport field 1."""
    body = b"".join(entries) + struct.pack("<Bd", 0x19, sent_unix_s) + (b"\x20\x01" if full
                                                                         else b"")
    return field(0x12, body)


def ack_message(version: int, nonce: bytes) -> bytes:
    """RelayMessage{ack: RouteAck{version, nonce, accepted: true}}."""
    return field(0x1A, b"\x08" + varint(version) + field(0x12, nonce) + b"\x18\x01")


CHANNELS_MESSAGE = field(0x22, b"")  # RelayMessage{channels: Channels{}}


def table_header(table: bytes) -> tuple[int, bytes]:
    """(version, nonce) of a serialized RouteTable, without decoding its rows (serializers
    write fields in number order, so this stops before them)."""
    version, nonce, pos, found = 0, b"", 0, 0
    while pos < len(table) and found < 2:
        key, pos = read_varint(table, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(table, pos)
            if number == 1:
                version, found = value, found + 1
        elif wire == 2:
            size, pos = read_varint(table, pos)
            if number == 2:
                nonce, found = table[pos:pos + size], found + 1
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"RouteTable: wire type {wire}")
    return version, nonce


def split_message(raw: bytes) -> tuple[int, bytes]:
    """ControllerMessage -> (its oneof's field number, that message's bytes)."""
    if not raw:
        return 0, b""
    key, pos = read_varint(raw, 0)
    if key & 7 != 2:
        return 0, b""
    size, pos = read_varint(raw, pos)
    return key >> 3, raw[pos:pos + size]


# -- links ----------------------------------------------------------------------------------


def pair_rtt_ms(seed: int, a: dict, b: dict) -> float:
    """A pair's RTT, the same both ways and on every run of a seed."""
    lo, hi = sorted((a["id"], b["id"]))
    u1 = zlib.crc32(f"{seed}:{lo}:{hi}".encode()) / 2**32
    u2 = zlib.crc32(f"{seed}:{hi}:{lo}:extra".encode()) / 2**32
    inflation = INFLATION_RANGE[0] + u1 * (INFLATION_RANGE[1] - INFLATION_RANGE[0])
    km = haversine_km(a["lat"], a["lon"], b["lat"], b["lon"])
    return 2 * fiber_one_way_ms(km) * inflation + EXTRA_MS[0] + u2 * (EXTRA_MS[1] - EXTRA_MS[0])


class Link:
    """One directed link as its relay measures it, and its LinkSample's bytes."""

    __slots__ = ("dst", "base_rtt", "factor", "head", "fixed", "noisy", "blank", "born",
                 "samples", "continuous", "sampled_at", "rep_state", "rep_samples",
                 "rep_min", "phase", "min_rtt")

    def __init__(self, dst: str, rtt_ms: float, born: float, phase: int) -> None:
        self.dst = dst
        self.base_rtt = rtt_ms
        self.factor = 1.0
        name = dst.encode()
        self.head = b"\x0a" + varint(len(name)) + name
        self.blank = field(0x0A, self.head + struct.pack("<Bd", 0x39, -1.0))
        self.born = born
        self.samples = 0
        self.continuous = True
        self.sampled_at = -math.inf
        self.rep_state = -1  # as last reported (-1: never)
        self.rep_samples = 0
        self.rep_min = 0.0
        self.phase = phase
        self.set_factor(1.0)

    def set_factor(self, factor: float) -> None:
        self.factor = factor
        rtt = self.min_rtt = self.base_rtt * factor
        jitter = min(2.0, 0.01 * rtt)
        age = 0.05 + 0.9 * ((self.phase * 0.618034) % 1.0)  # since its last reply
        self.fixed = self.head + struct.pack("<BdBdBd", 0x19, jitter, 0x39, age, 0x49, rtt)
        self.noisy = [struct.pack("<Bd", 0x11, rtt * (1 + NOISE * math.sin(i * 2.4 + self.phase)))
                      for i in range(8)]

    @property
    def state(self) -> int:
        return relay_pb2.LINK_STATE_UP if self.samples else relay_pb2.LINK_STATE_UNSPECIFIED

    def entry(self, k: int) -> bytes:
        """This link as a LinkReport's `links` field; `k` varies the noise."""
        if not self.samples:
            return self.blank
        body = self.fixed + self.noisy[(k + self.phase) & 7] + tail(self.samples)
        return b"\x0a" + varint(len(body)) + body

    def advance(self, now: float) -> None:
        """One report interval of probing."""
        if self.samples:
            self.samples += 1
        elif now - self.born >= FAST_PROBES_S:
            self.samples = FIRST_REPLIES


# -- one relay ------------------------------------------------------------------------------


class Settings:
    """A peer list's settings, zero meaning the defaults (skymesh.linkstate.LINK)."""

    def __init__(self) -> None:
        self.report_interval_s = 1.0
        self.full_report_interval_s = LINK.full_report_interval_s
        self.report_rtt_fraction = LINK.report_rtt_fraction
        self.report_rtt_ms = LINK.report_rtt_ms
        self.partial_mesh_above = LINK.partial_mesh_above
        self.sample_every_s = LINK.sample_every_s

    def take(self, peers: relay_pb2.PeerList) -> None:
        for name in ("report_interval_s", "full_report_interval_s", "report_rtt_fraction",
                     "report_rtt_ms", "partial_mesh_above", "sample_every_s"):
            if (value := getattr(peers, name)) > 0:
                setattr(self, name, value)


class Relay:
    def __init__(self, emu: Emulator, rid: str, index: int) -> None:
        self.emu = emu
        self.region = rid
        self.index = index
        self.protocol = emu.protocol
        self.settings = Settings()
        self.links: dict[str, Link] = {}
        self.order: list[Link] = []  # by region, as relay/control.py sorts them
        self.dsts: list[str] = []  # their regions
        self.near: set[str] = set()
        self.hops: set[str] = set()  # next hops and backups of the routes
        self.keep: set[str] = set()  # partial mesh: the links measured continuously
        self.cont: list[Link] = []  # measured continuously, by region
        self.unsettled: set[Link] = set()  # to report by change while measured continuously
        self.sampled_recent: deque[Link] = deque()  # sampled within a full interval
        self.partial = False
        # peer lists not applied yet, in order (protocol 1: the last, not decoded yet)
        self.pending: list[relay_pb2.PeerList | bytes] = []
        self.pending_at = 0.0
        # RouteTables received, not applied yet (undecoded), with their arrival (unix)
        self.tables: list[tuple[float, bytes]] = []
        # the table as the relay holds it: (zone, dst) -> (next hop, backup, path); protocol
        # 3's tables by change applied in order, as relay/tables.py does
        self.rows: dict[tuple[str, str], tuple[str, str, tuple[str, ...]]] | None = None
        # Emulator.watch: the rows that took the watched link then, and when one moved
        self.watched: frozenset[tuple[str, str]] = frozenset()
        self.moved_at: tuple[float, int] | None = None  # arrival, version
        self.table_version = 0
        self.top_cache: tuple[int, list] | None = None
        self.arrivals: deque[tuple[float, int]] = deque(maxlen=ARRIVALS_KEPT)
        self.outbox: asyncio.Queue[bytes | None] | None = None
        self.k = 0  # report intervals so far
        self.last_full = -math.inf
        self.connected_once = False
        self.sample_period = 1
        self.buckets: dict[int, list[Link]] = {}
        # links never sampled, by the interval of the first pass they take their turn in
        self.buckets_first: dict[int, list[Link]] = {}
        self.tls: grpc.ChannelCredentials | None = None

    # -- the session -----------------------------------------------------------------------

    def hello(self) -> bytes:
        return relay_pb2.RelayMessage(hello=relay_pb2.Hello(
            region=self.region, node_id=NODE,
            probe_addr=f"127.0.0.1:{PROBE_PORT_BASE + self.index}",
            route_version=self.table_version, protocol=self.protocol)).SerializeToString()

    async def session_loop(self, delay: float) -> None:
        await asyncio.sleep(delay)
        rng = random.Random(self.region)
        backoff = BACKOFF[0]
        # controller replicas ("A,B,C"): the relays spread over them, and a session that
        # ends or cannot begin is tried on the next, as relay/control.py does
        targets = self.emu.controller.split(",")
        at = self.index % len(targets)
        while True:
            target = targets[at]
            try:
                if self.tls is None:
                    channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
                else:
                    channel = grpc.aio.secure_channel(target, self.tls, options=CHANNEL_OPTIONS)
                async with channel:
                    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
                    queue.put_nowait(self.hello())
                    call = channel.stream_stream(METHOD)(Drain(queue))
                    try:
                        async for raw in call:
                            if self.outbox is None:
                                self.started(queue)
                                backoff = BACKOFF[0]
                            self.on_message(raw)
                    finally:
                        queue.put_nowait(None)  # ends gRPC's task that reads the outbox
                log.warning("%s: the controller closed the session", self.region)
            except grpc.aio.AioRpcError as e:
                log.warning("%s: %s: %s", self.region, e.code().name, e.details())
            except Exception:  # a message this emulator failed on: a new session, as a relay
                log.exception("%s: session", self.region)
            finally:
                if self.outbox is not None:
                    self.emu.disconnects += 1
                    self.emu.connected -= 1
                else:  # refused, or given up on before the controller took it
                    self.emu.failed_sessions += 1
                self.outbox = None
            at = (at + 1) % len(targets)
            await asyncio.sleep(backoff * rng.uniform(0.8, 1.2))
            if at == self.index % len(targets):  # every replica tried once more
                backoff = min(backoff * 2, BACKOFF[1])

    def started(self, outbox: asyncio.Queue[bytes | None]) -> None:
        """The controller answered (relay/control.py `started`)."""
        self.outbox = outbox
        self.emu.connected += 1
        if not self.connected_once:
            self.connected_once = True
            now = time.time()
            if self.emu.first_connect is None or now < self.emu.first_connect:
                self.emu.first_connect = now
        self.resend(outbox)

    def resend(self, outbox: asyncio.Queue[bytes | None]) -> None:
        """What a session begins with: the channels, every link."""
        self.last_full = -math.inf
        outbox.put_nowait(CHANNELS_MESSAGE)
        self.send_report()

    def on_message(self, raw: bytes) -> None:
        number, body = split_message(raw)
        if number == 6:  # resync (protocol 4): a new leader, through the same replica
            if self.outbox is not None:
                self.resend(self.outbox)
            return
        if number == 2:  # routes (whole or, protocol 3, changes): acknowledged at once
            version, nonce = table_header(body)
            if self.outbox is not None:
                self.outbox.put_nowait(ack_message(version, nonce))
            now = time.time()
            self.arrivals.append((now, version))
            self.tables.append((now, body))
            self.table_version = version
            self.emu.tables += 1
        elif number == 1:  # peers: applied at the next report, protocol 1's coalesced
            if self.protocol >= PROTOCOL_BY_CHANGE:
                msg = relay_pb2.PeerList.FromString(body)
                if not msg.incremental:
                    self.pending.clear()
                self.pending.append(msg)
            else:
                self.pending[:] = [body]
            self.pending_at = time.monotonic()
            self.emu.peer_lists += 1
        # config, members, chaos: nothing of the controller's load depends on them

    # -- links -----------------------------------------------------------------------------

    def apply_peers(self) -> None:
        """The peer lists received since the last report, in order (changed in place: in a
        mesh of a thousand, every connect is a change to every relay's list)."""
        regions = self.emu.regions
        me = regions[self.region]
        for msg in self.pending:
            if isinstance(msg, bytes):
                msg = relay_pb2.PeerList.FromString(msg)
            self.settings.take(msg)
            listed = {p.region for p in msg.peers}
            listed.discard(self.region)
            if self.protocol >= PROTOCOL_BY_CHANGE and msg.incremental:
                gone = set(msg.removed) - listed
                self.near -= gone
            elif self.protocol >= PROTOCOL_BY_CHANGE:
                # a whole list (a new session): a peer missing from it may only not have
                # reconnected yet to this controller (one that has just begun to lead), so
                # its link stays, measured, as relay/scheduler.py keeps an unlisted peer
                gone = set()
                self.near = set()
            else:
                gone = set(self.links) - listed
                self.near = set()
            for p in msg.peers:
                (self.near.add if p.near else self.near.discard)(p.region)
            for rid in gone:
                if (link := self.links.pop(rid, None)) is not None:
                    self.unsettled.discard(link)
                    i = bisect.bisect_left(self.dsts, rid)
                    del self.dsts[i], self.order[i]
                    self.buckets[link.phase % self.sample_period].remove(link)
                    first = self.buckets_first.get(link.phase % FIRST_PASS_INTERVALS, [])
                    if link in first:
                        first.remove(link)
            for rid in listed:
                if rid not in self.links and rid in regions:
                    phase = zlib.crc32(f"{self.region}>{rid}".encode()) & 0xFFFF
                    link = Link(rid, pair_rtt_ms(self.emu.seed, me, regions[rid]),
                                self.pending_at, phase)
                    # in a partial mesh, measured once `measure` says so
                    link.continuous = not self.partial
                    if link.continuous:
                        self.unsettled.add(link)
                    self.links[rid] = link
                    i = bisect.bisect_left(self.dsts, rid)
                    self.dsts.insert(i, rid)
                    self.order.insert(i, link)
                    self.buckets.setdefault(link.phase % self.sample_period, []).append(link)
                    self.buckets_first.setdefault(link.phase % FIRST_PASS_INTERVALS,
                                                  []).append(link)
        self.pending = []
        period = max(1, round(self.settings.sample_every_s / self.settings.report_interval_s))
        if period != self.sample_period:
            self.sample_period = period
            self.buckets = {}
            for link in self.order:
                self.buckets.setdefault(link.phase % period, []).append(link)

    def become_continuous(self, link: Link, now: float) -> None:
        if not link.samples:
            link.born = now
        link.continuous = True
        link.rep_state = -1  # measured again: said at once, not at the next full report
        self.unsettled.add(link)

    def measure(self, now: float, flipped: bool) -> None:
        """Which links are measured continuously: every one, or in a partial mesh the near
        peers' and the next hops and backups of the relay's routes (the others only when
        sampled). `flipped`: the mesh became partial, or full again."""
        if not self.partial:
            if flipped:
                for link in self.order:
                    if not link.continuous:
                        self.become_continuous(link, now)
            self.cont = self.order
            self.keep = set()
            return
        links = self.links
        keep = (self.near | self.hops) & links.keys()
        if flipped:
            for link in self.order:
                link.continuous = link.continuous and link.dst in keep
        else:
            for dst in self.keep - keep:
                if dst in links:  # measured until now: in full reports for a while yet
                    link = links[dst]
                    link.continuous, link.sampled_at = False, now
                    self.sampled_recent.append(link)
        for dst in keep:
            if not links[dst].continuous:
                self.become_continuous(links[dst], now)
        self.keep = keep
        self.cont = [links[dst] for dst in sorted(keep)]

    def tick(self) -> None:
        """One report interval: peer lists and routes taken in, links measured, a report."""
        now = time.monotonic()
        changed = bool(self.pending)
        if changed:
            self.apply_peers()
        partial = (self.protocol >= PROTOCOL_BY_CHANGE
                   and len(self.links) + 1 > self.settings.partial_mesh_above)
        flipped, self.partial = partial != self.partial, partial
        table_new = self.apply_tables()
        if self.partial and (table_new or flipped) and self.rows is not None:
            self.hops = {hop for row in self.rows.values() for hop in row[:2]}
            self.hops.discard("")
            changed = True
        if changed or flipped:
            self.measure(now, flipped)
        self.k += 1
        for link in self.cont:
            link.advance(now)
        sampled: list[Link] = []
        if self.partial:
            half = self.settings.sample_every_s / 2
            for link in self.buckets.get(self.k % self.sample_period, ()):
                # a link of the first pass waits for its phase's turn a period on (the
                # relay's rotation puts it at the back of the queue)
                if not link.continuous and now - link.sampled_at >= half:
                    link.samples += FIRST_REPLIES
                    link.sampled_at = now
                    sampled.append(link)
            # peers never measured take their first turns within FIRST_PASS_S, as the
            # relay's rotation (relay/sampling.py) gives them
            bucket = self.buckets_first.pop(self.k % FIRST_PASS_INTERVALS, ())
            for link in bucket:
                if not link.continuous and link.sampled_at == -math.inf:
                    link.samples += FIRST_REPLIES
                    link.sampled_at = now
                    sampled.append(link)
            self.sampled_recent.extend(sampled)
        self.send_report(sampled)

    def moved(self, link: Link) -> bool:
        """Whether a link is due in a report by change (protocol 2)."""
        s = self.settings
        return (link.rep_state != link.state
                or (link.rep_samples < LINK.settle_samples and link.samples != link.rep_samples)
                or abs(link.min_rtt - link.rep_min) > max(s.report_rtt_fraction * link.rep_min,
                                                          s.report_rtt_ms))

    def send_report(self, sampled: list[Link] | None = None) -> float:
        """Put a report in the outbox (when connected); returns its send time (unix)."""
        if self.outbox is None:
            return 0.0
        k, sent = self.k, time.time()
        if self.protocol < PROTOCOL_BY_CHANGE:
            entries = [link.entry(k) for link in self.order]
            msg = report_message(entries, sent, full=False)  # protocol 1 has no `full`
        else:
            now = time.monotonic()
            s = self.settings
            interval = s.full_report_interval_s
            # the round nearest the full interval, as relay/reporting.py's full_due
            full = now - self.last_full >= interval - s.report_interval_s / 2
            recent = self.sampled_recent
            while recent and (recent[0].sampled_at < now - max(interval, s.sample_every_s)
                              or recent[0].continuous or recent[0].dst not in self.links):
                recent.popleft()
            if full:
                # over the period before a session's first; later ones, those in their turn
                # (relay/control.py `link_report`)
                since = now - s.sample_every_s if self.last_full == -math.inf else now
                self.last_full = now
                links = self.cont + list({link.dst: link for link in recent
                                          if not link.continuous and link.sampled_at >= since
                                          and self.links.get(link.dst) is link}.values())
            else:
                # a link sampled in its turn is reported after it, moved or not: a relay's
                # full report forgets the links not in their turn (relay/reporting.py
                # `select`), so each turn's is news to it, and refreshes the controller's
                # record before it goes stale
                links = [link for link in self.unsettled if link.continuous
                         and self.moved(link)] + list(sampled or ())
            for link in links:
                link.rep_state, link.rep_samples, link.rep_min = \
                    link.state, link.samples, link.min_rtt
            self.unsettled = {link for link in self.unsettled
                              if link.rep_samples < LINK.settle_samples or self.moved(link)}
            entries = [link.entry(k) for link in links]
            msg = report_message(entries, sent, full=full)
            self.emu.full_reports += full
        self.outbox.put_nowait(msg)
        self.emu.reports += 1
        self.emu.samples += len(entries)
        self.emu.bytes_sent += len(msg)
        return sent

    async def report_loop(self, phase: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(phase)
        due = loop.time()
        while True:
            self.emu.late.append(loop.time() - due)
            try:
                self.tick()
            except Exception:  # one relay's bad message must not stop the others
                log.exception("%s: report", self.region)
            due += self.settings.report_interval_s
            await asyncio.sleep(max(0.0, due - loop.time()))

    def top(self, k: int) -> list[list]:
        """The next hops most rows of the relay's table use, as [src, next_hop, rows]."""
        self.apply_tables()
        if self.rows is None:
            return []
        if self.top_cache is None or self.top_cache[0] != self.table_version:
            counts = Counter(row[0] for row in self.rows.values()
                             if row[0] and row[0] != self.region)
            self.top_cache = (self.table_version, counts.most_common(8))
        return [[self.region, hop, n] for hop, n in self.top_cache[1][:k]]

    def apply_tables(self) -> bool:
        """Apply the tables received since the last call, in order; True if there were any."""
        tables, self.tables = self.tables, []
        names = self.emu.names
        for t, body in tables:
            table = relay_pb2.RouteTable.FromString(body)
            if self.watched and self.moved_at is None and self.emu.watch is not None \
                    and t >= self.emu.watch[2] and self.rows is not None \
                    and self.moves_watched(table):
                self.moved_at = (t, table.version)
            if not table.base_version or self.rows is None:
                self.rows = {}
            for key in table.removed:
                self.rows.pop((key.zone, key.dst), None)
            for r in table.routes:
                self.rows[(r.zone, r.dst)] = (
                    names.get(r.next_hop, r.next_hop), names.get(r.backup_next_hop, ""),
                    tuple(names.get(n, n) for n in r.path))
        return bool(tables)

    def traversing(self) -> set[tuple[str, str]]:
        """The keys of the rows whose path takes the watched link."""
        assert self.emu.watch is not None
        src, dst = self.emu.watch[:2]
        return {key for key, (_, _, path) in (self.rows or {}).items()
                if any(a == src and b == dst for a, b in itertools.pairwise(path))}

    def moves_watched(self, table: relay_pb2.RouteTable) -> bool:
        """Whether `table` changes the path or backup of a row that takes the watched link."""
        assert self.rows is not None
        keys = self.watched
        new = {(r.zone, r.dst): r for r in table.routes}
        gone = {(k.zone, k.dst) for k in table.removed}
        for k in keys:
            r, was = new.get(k), self.rows.get(k)
            if r is None:
                # a whole table leaves out the rows that went
                if k in gone or not table.base_version:
                    return True
            elif was is None or tuple(r.path) != was[2] or r.backup_next_hop != was[1]:
                return True
        return False

    def change(self, dst: str, factor: float) -> float:
        link = self.links[dst]
        link.set_factor(factor)
        self.unsettled.add(link)
        return self.send_report()


class Drain:
    """A session's requests: its outbox, as an async iterator. Not an async generator: when
    the controller cancels a session, gRPC would close a generator suspended in its await
    (an error per session)."""

    def __init__(self, queue: asyncio.Queue[bytes | None]) -> None:
        self.queue = queue

    def __aiter__(self) -> Drain:
        return self

    async def __anext__(self) -> bytes:
        msg = await self.queue.get()
        if msg is None:  # the session is over
            raise StopAsyncIteration
        return msg


# -- the process ----------------------------------------------------------------------------


class Emulator:
    def __init__(self, controller: str, regions: dict[str, dict], seed: int, protocol: int,
                 serve: list[str]) -> None:
        self.controller = controller
        self.regions = regions
        self.seed = seed
        self.protocol = protocol
        index = {rid: i for i, rid in enumerate(sorted(regions))}
        self.relays = {rid: Relay(self, rid, index[rid]) for rid in serve}
        self.first_connect: float | None = None
        self.connected = 0
        self.disconnects = 0
        self.failed_sessions = 0
        self.reports = 0
        self.full_reports = 0
        self.samples = 0
        self.bytes_sent = 0
        self.tables = 0
        self.names = {rid: rid for rid in regions}  # one string per region name
        self.watch: tuple[str, str, float] | None = None  # ("watch" command) src, dst, since
        self.peer_lists = 0
        self.late: list[float] = []

    def credentials(self, certs: Path) -> None:
        bundle = (certs / "bundle.pem").read_bytes()
        for rid, relay in self.relays.items():
            stem = certs / f"relay-{rid}-{NODE}"
            relay.tls = grpc.ssl_channel_credentials(
                root_certificates=bundle, private_key=stem.with_suffix(".key").read_bytes(),
                certificate_chain=stem.with_suffix(".pem").read_bytes())

    def command(self, cmd: dict) -> dict:
        what = cmd.get("cmd")
        if what == "stats":
            late, self.late = sorted(self.late), []
            return {"relays": len(self.relays), "connected": self.connected,
                    "first_connect": self.first_connect, "disconnects": self.disconnects,
                    "failed_sessions": self.failed_sessions,
                    "reports": self.reports, "full_reports": self.full_reports,
                    "samples": self.samples, "bytes": self.bytes_sent, "tables": self.tables,
                    "peer_lists": self.peer_lists,
                    "late_p99_ms": 1000 * late[int(0.99 * (len(late) - 1))] if late else None,
                    "late_max_ms": 1000 * late[-1] if late else None}
        if what == "arrivals":
            since = float(cmd.get("since", 0.0))
            out = {}
            for rid, relay in self.relays.items():
                got = [[t, v] for t, v in relay.arrivals if t >= since]
                if got:
                    out[rid] = got
            return {"arrivals": out}
        if what == "top":
            k = int(cmd.get("k", 3))
            return {"top": [row for relay in self.relays.values() for row in relay.top(k)]}
        if what == "watch":
            self.watch = (str(cmd["src"]), str(cmd["dst"]), float(cmd["since"]))
            traversing = 0
            for relay in self.relays.values():
                relay.moved_at, relay.watched = None, frozenset()
                relay.apply_tables()
                relay.watched = frozenset(relay.traversing())
                traversing += bool(relay.watched)
            return {"traversing": traversing}
        if what == "moved":
            for relay in self.relays.values():
                relay.apply_tables()
            out = {rid: relay.moved_at for rid, relay in self.relays.items()
                   if relay.moved_at is not None}
            return {"moved": out}
        if what == "change":
            relay = self.relays[cmd["src"]]
            return {"sent": relay.change(cmd["dst"], float(cmd["factor"]))}
        return {"error": f"unknown command {what!r}"}

    async def serve_commands(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            try:
                cmd = json.loads(line)
                if cmd.get("cmd") == "quit":
                    return
                reply = self.command(cmd)
            except Exception as e:  # the driver reads the reason; the relays go on
                reply = {"error": f"{type(e).__name__}: {e}"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()

    async def run(self, ramp_s: float) -> None:
        rng = random.Random(self.seed)
        tasks = []  # kept: the loop holds tasks only weakly
        for relay in self.relays.values():
            tasks.append(asyncio.create_task(relay.session_loop(rng.uniform(0, ramp_s))))
            tasks.append(asyncio.create_task(relay.report_loop(
                rng.uniform(0, relay.settings.report_interval_s))))
        sys.stdout.write(json.dumps({"ready": len(self.relays)}) + "\n")
        sys.stdout.flush()
        await self.serve_commands()
        # the sessions end with the process, as a relay's do when it is killed: cancelling
        # hundreds of streams one by one only makes noise
        sys.stdout.flush()
        logging.shutdown()
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--controller", required=True, metavar="HOST:PORT[,HOST:PORT...]")
    p.add_argument("--regions", required=True, type=Path, metavar="JSON")
    p.add_argument("--serve", required=True, help="comma-separated region ids")
    p.add_argument("--certs", type=Path, metavar="DIR")
    p.add_argument("--insecure", action="store_true")
    p.add_argument("--protocol", type=int, default=PROTOCOL_RESYNC,
                   choices=(PROTOCOL_FULL, PROTOCOL_BY_CHANGE, PROTOCOL_TABLE_CHANGES,
                            PROTOCOL_RESYNC))
    p.add_argument("--seed", type=int, default=None, help="default: the regions file's")
    p.add_argument("--cpu", type=int, action="append", help="pin to these CPUs")
    p.add_argument("--ramp", type=float, default=1.0, metavar="S",
                   help="spread the relays' first connects over this long")
    p.add_argument("--log-level", default="warning")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.cpu:
        # before gRPC starts its threads, which inherit it
        os.sched_setaffinity(0, set(args.cpu))
    data = json.loads(args.regions.read_text())
    regions = {r["id"]: r for r in data["regions"]}
    seed = data.get("seed", 0) if args.seed is None else args.seed
    emu = Emulator(args.controller, regions, seed, args.protocol, args.serve.split(","))
    if not args.insecure:
        if args.certs is None:
            p.error("--certs DIR or --insecure")
        emu.credentials(args.certs)
    try:
        import uvloop
    except ImportError:
        asyncio.run(emu.run(args.ramp))
    else:
        uvloop.run(emu.run(args.ramp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
