"""A relay's data plane between regions: channel datagrams in and out, fanned out along the
route tables (one copy per next hop), delivered to the local edge, with end-to-end reliable
messages. No sockets and no clock: the relay node hands it datagrams, its clock and its send
functions (`send(region, bytes)`, `send_sibling(node, bytes)`, and the socket's own for the
transit fast path).

Datagrams are sealed under the current fabric key, named by its epoch, and opened under the
key of the epoch they name (the controller hands the keys over and rotates them with an
overlap). A datagram for this relay that its sender's window (relay/replay.py) has seen, or
has left behind, is a replay: dropped and counted `dropped.replay`, nothing delivered (one
only for siblings is checked by each of them, in its own window).

A region may run several relay nodes (skymesh/nodes.py). A destination is for here when it is
the bare region or this relay's own "region/node"; one naming another node of this region (a
sibling) goes to that sibling directly, one hop, in a copy that names only it, so that the
sibling delivers it and never hands it on within the region. Destinations of other regions,
bare or node-qualified, go by their region's route: a datagram for several nodes of a region
crosses the wide area once, to the one node of it the previous hop sends to.

Message payload: base u64 | message id u64 | origin len u8 | origin | uid len u8 | uid | body
(the origin numbers the stream in the header's seq; see relay/reliable.py for base). The
origin is the publishing relay's node-qualified name when it has a node id, so that the
acknowledgements reach that node of its region and not only the region.
Acknowledgement: kind ACK to the origin, seq = cumulative, payload = the name the acking relay
was addressed as (its region or its node-qualified name, as the origin's members name it).

A stream's messages are numbered by its origin (the seq above) and the edge hands them to
clients with that number and the stream's name (`edgeproto.stream_id`: origin and stream), so
that a client moving to another edge can say where it left off. The origin keeps each stream's
recent messages (`HISTORY` of them, none older than the reliable give-up time) and the
session's stream for as long as the session is joined, numbering on where it left off. Asked
(kind REPLAY: seq = the last delivered, payload = who asks), it sends those after that point
again (kind REPLAYED, seq as first sent, payload as a message's) to the relay that asked,
which hands them to the sessions that asked.
"""

from __future__ import annotations

import dataclasses
import struct
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidTag

from relay import datagram
from relay.datagram import (
    _HEAD,
    ACK,
    COMMENTS,
    EPOCH_AT,
    MAX_DATAGRAM,
    MAX_REGIONS,
    MEDIA,
    MESSAGE,
    MIN_DATAGRAM,
    NONCE_AT,
    REPLAY,
    REPLAYED,
    SEALED_SIZE_AT,
    TAG_SIZE,
    VERSION,
    ZONE_LEN_AT,
    BadDatagram,
    Datagram,
    Nonces,
)
from relay.reliable import Copy, InStream, OutStream, ReliableSettings
from relay.replay import ACCEPTED, ReplayGuard
from relay.tables import RouteTables
from skymesh import edgeproto, nodes

HOP_LIMIT = 16
COMMENTS_STREAM = "comments"  # the publisher named in an edge's comment batches
HISTORY = 1024  # messages a stream's origin keeps to send again
MAX_REPLAY = 512  # messages one replay request is answered with
MAX_DROP_ZONES = 32  # foreign zones named in drop counts; beyond, "other"
_BASE = _MID = struct.Struct("!Q")

ChannelKey = tuple[str, str]  # (zone, "app/channel")


class LocalEdge(Protocol):
    """The relay's client edge as the fabric delivers to it (relay/edge.py's EdgeState); a
    protocol, so that the data plane does not load the edge's QUIC stack."""

    def delivers(self, key: ChannelKey) -> bool:
        """Whether the channel's traffic is wanted here (sessions, or a link)."""
        ...

    def deliver_media(self, key: ChannelKey, data: bytes, *, stream: str | None = None
                      ) -> None: ...

    def deliver_message(self, key: ChannelKey, uid: str, mid: int, body: str, *,
                        stream: str | None = None, seq: int | None = None) -> None: ...

    def deliver_replayed(self, key: ChannelKey, uid: str, mid: int, body: str, stream: str,
                         seq: int) -> None: ...

    def has_stream(self, stream: str) -> bool: ...

    def stream_settled(self, stream: str, mid: int) -> None: ...

    def members_changed(self, key: ChannelKey, names: frozenset[str]) -> None: ...

    def deliver_comments(self, key: ChannelKey, payload: bytes) -> None: ...


@dataclass
class _Out:
    stream: OutStream
    last_used: float
    # (seq, when sent, message tail): what a replay request is answered from
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY))
    settled: int = 0  # every message up to this seq is acknowledged or given up on


@dataclass
class _In:
    stream: InStream
    last_used: float
    origin: str = ""


@dataclass
class FabricKeys:
    current: bytes = b""  # seals what this relay sends
    epoch: int = 0  # the current key's
    by_epoch: dict[int, bytes] = field(default_factory=dict)  # opens: every key accepted

    @property
    def accepted(self) -> dict[int, bytes]:
        """The keys accepted on receipt other than the current one, by epoch."""
        return {e: k for e, k in self.by_epoch.items() if e != self.epoch}


@dataclass
class Fabric:
    region: str
    tables: RouteTables
    send: Callable[[str, bytes], bool]  # (next-hop region, datagram) -> sent?
    clock: Callable[[], float]  # monotonic seconds, for calls that do not say the time
    counters: Counter = field(default_factory=Counter)
    sent_to: Counter = field(default_factory=Counter)  # datagrams by next hop, for the relay
    edge: LocalEdge | None = None
    keys: FabricKeys = field(default_factory=FabricKeys)
    zones: frozenset[str] = frozenset()
    on_interest: Callable[[], None] = lambda: None
    reliable: ReliableSettings = ReliableSettings()
    members: dict[ChannelKey, frozenset[str]] = field(default_factory=dict)
    known: set[ChannelKey] = field(default_factory=set)  # channels the controller told about
    # messages published before the controller told who subscribes: sent when it does
    held: dict[ChannelKey, list[tuple]] = field(default_factory=dict)
    media_seq: int = 0
    outgoing: dict[tuple[str, str, str], _Out] = field(default_factory=dict)
    incoming: dict[tuple[str, str, str, str], _In] = field(default_factory=dict)
    transit_index: dict[tuple[bytes, bytes], tuple] = field(default_factory=dict)
    # per key epoch: checks a sealed part's tag, decrypting it into a buffer the fast path
    # discards: (nonce, ciphertext and tag, associated data, buffer of the payload's size)
    seal_checks: dict[int, Callable] = field(default_factory=dict)
    scratch: memoryview = field(default_factory=lambda: memoryview(bytearray(MAX_DATAGRAM)))
    nonces: Nonces = field(default_factory=Nonces)  # this relay's sequence space
    replay: ReplayGuard = field(default_factory=lambda: ReplayGuard(size=4096))
    # where there is no emulated WAN: send straight to a peer's address, found by region
    direct_send: Callable[[bytes | bytearray, tuple[str, int]], None] | None = None
    # the same for a run of equal-sized datagrams in one buffer: (buffer, size, address)
    direct_send_run: Callable[[bytearray, int, tuple[str, int]], None] | None = None
    peer_addr: Callable[[str], tuple[str, int] | None] = lambda region: None
    # this relay's node id ("": the region's one relay, named by the region alone)
    node: str = ""
    # straight to a sibling (another node of this region): (node id, datagram) -> sent?
    send_sibling: Callable[[str, bytes], bool] = lambda node, data: False
    siblings: frozenset[str] = frozenset()  # their node ids, as the controller lists them
    # the other regions' node ids, whose node-qualified names take the fast path too
    peer_nodes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    drop_zones: set[str] = field(default_factory=set)  # foreign zones named in drop counts

    # -- configuration from the controller -------------------------------------------------

    def configure(self, key: bytes, accepted: Mapping[int, bytes], zones: Iterable[str],
                  epoch: int = 0) -> None:
        """The fabric key that seals (of `epoch`), the other keys still (or already)
        accepted on receipt by epoch, and the zones this relay's region is in."""
        by_epoch = {e: k for e, k in accepted.items() if k and 0 <= e <= datagram.MAX_EPOCH}
        if key:
            by_epoch[epoch] = key
        self.keys = FabricKeys(key, epoch, by_epoch)
        self.zones = frozenset(zones)
        self.seal_checks = {e: datagram._aead(k).decrypt_into for e, k in by_epoch.items()}
        self.replay.retain(by_epoch)  # a retired key's datagrams no longer open at all
        self.tables_changed()

    @property
    def name(self) -> str:
        """What this relay is called as a destination: its node-qualified name when it has a
        node id, else its region."""
        return nodes.address(self.region, self.node) if self.node else self.region

    def is_here(self, destination: str) -> bool:
        """Whether `destination` is for this relay: its region, or its own node's name."""
        return destination == self.region or (bool(self.node) and destination == self.name)

    def drop(self, reason: str, zone: str, n: int = 1) -> None:
        """Count `n` datagrams of `zone` dropped for `reason`: `dropped.REASON` as ever, and
        `zonedrop.ZONE.REASON` for the zone's share (what a drop with no zone known yet,
        undecodable say, is not). A foreign zone is named as it came, up to MAX_DROP_ZONES
        names; beyond, "other", so a metric's labels stay bounded."""
        self.counters[f"dropped.{reason}"] += n
        if zone not in self.zones and zone not in self.drop_zones:
            if len(self.drop_zones) >= MAX_DROP_ZONES:
                zone = "other"
            else:
                self.drop_zones.add(zone)
        self.counters[f"zonedrop.{zone}.{reason}"] += n

    def tables_changed(self) -> None:
        """Rebuild the transit index: (zone, destination) as wire bytes -> (next hop, the
        counters to bump), for this relay's zones only; the node-qualified names of another
        region's listed nodes take that region's route. Also after the peers' addresses
        change: the index holds the address of each next hop's transit node."""
        self.transit_index = {}
        for (zone, dst), e in self.tables.entries.items():
            hop = self.tables.hop_of(e)
            if zone in self.zones and dst != self.region and hop is not None:
                route = (hop, f"zone.{zone}.received", f"zone.{zone}.forwarded",
                         self.peer_addr(hop) if self.direct_send else None)
                z = zone.encode()
                self.transit_index[(z, dst.encode())] = route
                for node in self.peer_nodes.get(dst, ()):
                    self.transit_index[(z, nodes.address(dst, node).encode())] = route

    def set_members(self, key: ChannelKey, regions: Iterable[str],
                    now: float | None = None) -> None:
        self.known.add(key)
        regions = frozenset(regions)
        if regions:
            self.members[key] = regions
        else:
            self.members.pop(key, None)
        for (zone, channel, _), out in self.outgoing.items():
            if (zone, channel) == key:
                out.stream.set_destinations(self.destinations(key))
        for args in self.held.pop(key, []):
            self.message_published(key, *args[:4], now=now)
        if self.edge is not None:
            self.edge.members_changed(key, regions)

    def destinations(self, key: ChannelKey) -> frozenset[str]:
        """Where the channel's traffic from here goes: its members but this relay (its
        siblings stay: they are reached one hop away)."""
        return self.members.get(key, frozenset()) - {self.region, self.name}

    # -- from the local edge ---------------------------------------------------------------

    def interest_changed(self) -> None:
        self.on_interest()

    def media_published(self, key: ChannelKey, stream: str, data: bytes) -> None:
        self._send_best_effort(MEDIA, key, stream, data)

    def comments_published(self, key: ChannelKey, payload: bytes) -> None:
        """A batch of the local edge's viewers' comments, best-effort, to the channel's other
        edges (as media go: no retransmission, no order)."""
        self._send_best_effort(COMMENTS, key, COMMENTS_STREAM, payload)

    def _send_best_effort(self, kind: int, key: ChannelKey, stream: str, payload: bytes) -> None:
        dests = self.destinations(key)
        if not dests or not self.keys.current:
            return
        self.media_seq += 1
        zone, channel = key
        self._route(Datagram(kind, zone, channel, tuple(sorted(dests)), HOP_LIMIT + 1,
                             self.media_seq, stream, payload))

    def message_published(self, key: ChannelKey, stream: str, uid: str, mid: int, body: str,
                          now: float | None = None) -> tuple[str, int | None]:
        """Send a message of the local edge's publisher `stream`; returns its stream's name and
        number (None while it is held until the controller says who subscribes)."""
        now = self.clock() if now is None else now
        if key not in self.known:
            self.held.setdefault(key, []).append((stream, uid, mid, body, now))
            self.counters["messages.held"] += 1
            return edgeproto.stream_id(self.name, stream), None
        zone, channel = key
        out = self.outgoing.get((zone, channel, stream))
        if out is None:
            out = self.outgoing[(zone, channel, stream)] = _Out(OutStream(self.reliable), now)
        out.last_used = now
        tail = encode_message_tail(mid, self.name, uid, body)
        self._send_copies(zone, channel, stream,
                          out.stream.send(tail, self.destinations(key), now, self.rto))
        seq = out.stream.next_seq - 1
        out.history.append((seq, now, tail))
        self._settle(stream, out)
        return edgeproto.stream_id(self.name, stream), seq

    def replay_requested(self, key: ChannelKey, stream: str, after: int) -> None:
        """Ask the origin of `stream` (a stream_id) for its messages after `after`, for the
        local edge's sessions that asked (`LocalEdge.deliver_replayed`)."""
        try:
            origin, publisher = edgeproto.parse_stream_id(stream)
        except ValueError:
            return
        self.counters["messages.replay-requested"] += 1
        zone, channel = key
        if self.is_here(origin):
            self._replay(zone, channel, publisher, after, self.name)
            return
        try:
            self._route(Datagram(REPLAY, zone, channel, (origin,), HOP_LIMIT + 1, after,
                                 publisher, self.name.encode()))
        except BadDatagram:
            self.drop("field", zone)

    def _send_copies(self, zone: str, channel: str, stream: str, copies: list[Copy]) -> None:
        for c in copies:
            self._route(Datagram(MESSAGE, zone, channel, tuple(sorted(c.destinations)),
                                 HOP_LIMIT + 1, c.seq, stream, _BASE.pack(c.base) + c.body))

    # -- from other relays -----------------------------------------------------------------

    def on_datagram(self, data: bytes, now: float | None = None) -> None:
        if type(data) is not bytes:
            data = bytes(data)
        if self.transit(data):
            return
        if now is None:
            now = self.clock()
        try:
            d = self._decode(data)
        except BadDatagram as e:
            self.counters[f"dropped.{e.reason_code}"] += 1
            return
        if d.zone not in self.zones:
            # never carry a zone's traffic through a region outside it
            self.drop("foreign-zone", d.zone)
            return
        if any(map(self.is_here, d.destinations)):  # its sender's window says if it is new
            sender, seq = datagram.replay_id(d.sealed)
            if self.replay.accept(d.epoch, sender, seq) != ACCEPTED:
                self.drop("replay", d.zone)
                return
        self.counters[f"zone.{d.zone}.received"] += 1
        self._route(d, now)

    def transit(self, data: bytes) -> bool:
        """The common case in one pass (see `transit_run`): True when `data` went on."""
        return bool(data) and not self.transit_run(data, len(data))

    def transit_run(self, buf: bytes, segment: int) -> list[int]:
        """The common case, over a run of datagrams of `segment` bytes (the last may be
        shorter) as one receive handed them over: each genuine datagram of one of this relay's
        zones for a single destination elsewhere goes on to its next hop with the hop limit
        lowered and everything else as it came. When the whole run goes to one address it
        leaves in one send. Returns the offsets of the datagrams left to the full path (which
        also counts whatever is wrong with them). The tag is checked under the key of the
        datagram's epoch by decrypting the payload, which is then discarded: a transit relay
        has no use for it, and passes the ciphertext on as it came."""
        total = len(buf)
        checks = self.seal_checks
        if not checks or segment <= 0:
            return list(range(0, total, max(segment, 1)))
        view = memoryview(buf)
        out = bytearray(buf)
        index = self.transit_index
        left: list[int] = []
        taken: list[int] = []
        routes: list[tuple] = []
        # a run from one sender is mostly one stream: once a datagram has been parsed, the
        # next ones of its size are compared with it (header, zone and routing state) rather
        # than parsed; what differs is parsed again
        like = -1
        head = zone = tail = b""
        zone_at = zone_end = open_at = tag_at = tail_at = 0
        route: tuple = ()
        check = None  # the key of the datagram parsed last (its epoch is in `head`)
        into = None  # where its payload is decrypted to, and dropped (no allocation)
        for o in range(0, total, segment):
            stop = o + segment
            if stop > total:
                stop = total
            if (stop - o == like and buf[o:o + 8] == head
                    and buf[o + zone_at:o + zone_end] == zone
                    and buf[o + tail_at:stop] == tail):
                try:
                    check(buf[o + NONCE_AT:o + zone_at], view[o + open_at:o + tail_at],
                          view[o:o + open_at], into)
                except InvalidTag:
                    left.append(o)
                    continue
                out[o + tail_at] -= 1
                taken.append(o)
                routes.append(route)
                continue
            n = stop - o
            if buf[o] != VERSION or n < MIN_DATAGRAM or n > MAX_DATAGRAM:
                left.append(o)
                continue
            tag_at = buf[o + SEALED_SIZE_AT] << 8 | buf[o + SEALED_SIZE_AT + 1]
            zone_at = _HEAD.size
            zone_end = zone_at + buf[o + ZONE_LEN_AT]
            # the payload (the ciphertext) starts after the zone, channel and publisher
            open_at = zone_end + buf[o + ZONE_LEN_AT + 1] + buf[o + ZONE_LEN_AT + 2]
            tail_at = tag_at + TAG_SIZE  # the routing state: hop limit, count, one name
            end = o + tail_at
            if (open_at > tag_at or end + 3 > stop or buf[end + 1] != 1
                    or end + 3 + buf[end + 2] != stop or not buf[end]):
                left.append(o)
                like = -1
                continue
            zone = buf[o + zone_at:o + zone_end]
            found = index.get((zone, buf[end + 3:stop]))
            if found is None:
                left.append(o)
                like = -1
                continue
            route = found
            check = checks.get(buf[o + EPOCH_AT])
            if check is None:  # no key of that epoch: the full path counts it
                left.append(o)
                like = -1
                continue
            into = self.scratch[:tag_at - open_at]
            try:
                check(buf[o + NONCE_AT:o + zone_at], view[o + open_at:end], view[o:o + open_at],
                      into)
            except InvalidTag:
                left.append(o)
                like = -1
                continue
            out[end] -= 1
            taken.append(o)
            routes.append(route)
            like, head, tail = n, buf[o:o + 8], buf[end:stop]
        if not taken:
            return left
        counters = self.counters
        first = routes[0]
        if (not left and first[3] is not None and self.direct_send_run
                and routes.count(first) == len(routes)):
            self.direct_send_run(out, segment, first[3])
            self.sent_to[first[0]] += len(taken)
            counters[first[1]] += len(taken)
            counters[first[2]] += len(taken)
            return left
        sent_to = self.sent_to
        for o, (hop, received, forwarded, addr) in zip(taken, routes, strict=True):
            n = min(segment, total - o)
            counters[received] += 1
            sent_to[hop] += 1
            if addr is not None:
                self.direct_send(out[o:o + n], addr)
                counters[forwarded] += 1
            elif self.send(hop, bytes(out[o:o + n])):
                counters[forwarded] += 1
        return left

    def _decode(self, data: bytes) -> Datagram:
        if not self.keys.current:
            raise BadDatagram("no-key", "no fabric key from the controller yet")
        return datagram.decode(data, self.keys.by_epoch)

    # -- forwarding ------------------------------------------------------------------------

    def _route(self, d: Datagram, now: float = 0.0) -> None:
        """Deliver what is for here, send one copy per next hop for the rest and one to each
        sibling named (sealed once, here if this relay is where the datagram starts)."""
        here = [dst for dst in d.destinations if self.is_here(dst)]
        if not d.sealed and len(here) != len(d.destinations):
            sealed = self._seal(d)
            if sealed is None:
                return
            d = sealed
        regions = {nodes.region_of(dst) for dst in d.destinations} - {self.region}
        hops = {region: self.tables.next_hop(region, d.zone) for region in regions}
        local, copies, dropped = datagram.forward(d, hops, self.region)
        if dropped:
            self.drop("hop-limit" if d.hop_limit <= 0 else "unroutable", d.zone, len(dropped))
        for hop, copy in copies.items():
            self.sent_to[hop] += 1
            for raw in self._encode(copy):
                if self.send(hop, raw):
                    self.counters[f"zone.{d.zone}.forwarded"] += 1
        if local and len(here) != len(d.destinations):
            self._to_siblings(d, here)
        if here:
            self._deliver(d, now)

    def _to_siblings(self, d: Datagram, here: list[str]) -> None:
        """One copy to each sibling `d` names, naming only it: the sibling delivers it and,
        seeing no other name of this region, hands nothing on."""
        for dst in d.destinations:
            region, node = nodes.parse(dst)
            if region != self.region or dst in here:
                continue
            if node not in self.siblings:
                self.drop("no-node", d.zone)
                continue
            if d.hop_limit <= 0:
                self.drop("hop-limit", d.zone)
                continue
            copy = dataclasses.replace(d, destinations=(dst,), hop_limit=d.hop_limit - 1)
            for raw in self._encode(copy):
                if self.send_sibling(node, raw):
                    self.counters[f"zone.{d.zone}.forwarded"] += 1

    def _encode(self, d: Datagram) -> list[bytes]:
        """One datagram; several (each for part of the destinations) only when the set is too
        large to fit beside the payload or has more than MAX_REGIONS regions. What this relay
        seals takes the current key's epoch and its own next nonce."""
        if not d.sealed:
            sealed = self._seal(d)
            if sealed is None:
                return []
            d = sealed
        if len(d.destinations) <= MAX_REGIONS:
            try:
                return [datagram.encode(d, self.keys.current)]
            except BadDatagram as e:
                if e.reason_code != "too-large" or len(d.destinations) < 2:
                    self.drop(e.reason_code, d.zone)
                    return []
        sealed = d.sealed
        if len(sealed) + 3 + max(len(x) for x in d.destinations) > MAX_DATAGRAM:
            self.drop("too-large", d.zone)  # not even one destination fits
            return []
        self.counters["split"] += 1
        d = dataclasses.replace(d, sealed=sealed)
        half = len(d.destinations) // 2
        return [raw for part in (d.destinations[:half], d.destinations[half:])
                for raw in self._encode(dataclasses.replace(d, destinations=part))]

    def _seal(self, d: Datagram) -> Datagram | None:
        """`d` with its sealed part, under the current key and epoch and this relay's next
        nonce; None (counted) when it cannot be sealed."""
        if not self.keys.current:
            self.drop("no-key", d.zone)
            return None
        d = dataclasses.replace(d, epoch=self.keys.epoch)
        try:
            return dataclasses.replace(d, sealed=datagram.seal(d, self.keys.current,
                                                               self.nonces()))
        except BadDatagram as e:
            self.drop(e.reason_code, d.zone)
            return None

    def _deliver(self, d: Datagram, now: float) -> None:
        key = (d.zone, d.channel)
        if d.kind == MEDIA:
            if self.edge is not None and self.edge.delivers(key):
                self.counters[f"zone.{d.zone}.delivered"] += 1
                self.edge.deliver_media(key, d.payload, stream=d.publisher)
        elif d.kind == MESSAGE:
            self._on_message(d, now)
        elif d.kind == COMMENTS:
            if self.edge is not None and self.edge.delivers(key):
                self.counters[f"zone.{d.zone}.delivered"] += 1
                self.edge.deliver_comments(key, d.payload)
        elif d.kind == ACK:
            out = self.outgoing.get((d.zone, d.channel, d.publisher))
            origin = d.payload.decode("ascii", "replace")
            if out is not None:
                out.stream.on_ack(origin, d.seq)
                self._settle(d.publisher, out)
        elif d.kind == REPLAY:
            self._replay(d.zone, d.channel, d.publisher, d.seq,
                         d.payload.decode("ascii", "replace"))
        elif d.kind == REPLAYED:
            self._on_replayed(d)

    def _settle(self, stream: str, out: _Out) -> None:
        """Tell the local edge how far the publisher `stream`'s messages are settled (by the
        client's id of the last), when that moved on; the publisher keeps the rest, to send
        again should it move to another edge."""
        pending = out.stream.pending
        upto = min(pending) - 1 if pending else out.stream.next_seq - 1
        if upto <= out.settled or self.edge is None:
            return
        out.settled = upto
        for seq, _, tail in reversed(out.history):
            if seq == upto:
                self.edge.stream_settled(stream, _MID.unpack_from(tail)[0])
                return
            if seq < upto:
                return

    def _replay(self, zone: str, channel: str, publisher: str, after: int, to: str) -> None:
        """Send `to` (a relay's name; this one's: straight to the edge) the stream's kept
        messages after `after`, at most MAX_REPLAY."""
        out = self.outgoing.get((zone, channel, publisher))
        if out is None:
            self.counters["messages.replay-unknown"] += 1
            return
        horizon = self.clock() - self.reliable.give_up_s
        sent = 0
        for seq, when, tail in out.history:
            if seq <= after or when < horizon:
                continue
            if sent == MAX_REPLAY:
                break
            sent += 1
            d = Datagram(REPLAYED, zone, channel, (to,), HOP_LIMIT + 1, seq, publisher,
                         _BASE.pack(0) + tail)
            if self.is_here(to):
                self._on_replayed(d)
                continue
            try:
                self._route(d)
            except BadDatagram:
                self.drop("field", zone)
                return
        self.counters["messages.replayed"] += sent

    def _on_replayed(self, d: Datagram) -> None:
        if self.edge is None:
            return
        try:
            _, mid, origin, uid, body = decode_message(d.payload)
        except ValueError:
            self.drop("malformed-message", d.zone)
            return
        self.edge.deliver_replayed((d.zone, d.channel), uid, mid, body,
                                   edgeproto.stream_id(origin, d.publisher), d.seq)

    def _on_message(self, d: Datagram, now: float) -> None:
        try:
            base, mid, origin, uid, body = decode_message(d.payload)
        except ValueError:
            self.drop("malformed-message", d.zone)
            return
        key = (d.zone, d.channel)
        if self.edge is None or not self.edge.delivers(key):
            # nobody here any more: acknowledge so the origin stops retransmitting
            self._ack(d, origin, d.seq)
            return
        ident = (origin, d.zone, d.channel, d.publisher)
        inc = self.incoming.get(ident)
        if inc is None:
            inc = self.incoming[ident] = _In(InStream(self.reliable), now, origin)
        inc.last_used = now
        for seq, raw in inc.stream.receive(d.seq, base, d.payload, now):
            self._deliver_message(key, d.publisher, seq, raw)
        self._ack(d, origin, inc.stream.cumulative)

    def _deliver_message(self, key: ChannelKey, publisher: str, seq: int, raw: bytes) -> None:
        if self.edge is None:
            return
        _, mid, origin, uid, body = decode_message(raw)
        self.counters[f"zone.{key[0]}.delivered"] += 1
        self.edge.deliver_message(key, uid, mid, body,
                                  stream=edgeproto.stream_id(origin, publisher), seq=seq)

    def _ack(self, d: Datagram, origin: str, cumulative: int) -> None:
        if cumulative <= 0 or self.is_here(origin):
            return
        # named as the message named this relay: that is the destination the origin's stream
        # waits on (its node-qualified name where the region has several nodes)
        me = self.name if self.node and self.name in d.destinations else self.region
        self._route(Datagram(ACK, d.zone, d.channel, (origin,), HOP_LIMIT + 1, cumulative,
                             d.publisher, me.encode()))

    # -- timers ----------------------------------------------------------------------------

    @property
    def has_streams(self) -> bool:
        """Whether any message stream (or message held for its members) needs `tick`."""
        return bool(self.outgoing or self.incoming or self.held)

    # Streams with nothing outstanding are forgotten after being idle this long. A destination
    # forgets first: its last use is at most give_up_s after the origin's last send, so it
    # never holds on to a stream whose origin forgot it and numbers afresh from 1.
    @property
    def out_stream_idle_s(self) -> float:
        return 4 * self.reliable.give_up_s

    @property
    def in_stream_idle_s(self) -> float:
        return 2 * self.reliable.give_up_s

    def rto(self, dst: str) -> float:
        """Retransmission timeout towards `dst`: three one-way route costs (none to a
        sibling) and 50 ms."""
        region = nodes.region_of(dst)
        if region == self.region:
            return 0.05
        costs = [e.cost_ms for (_, d), e in self.tables.entries.items() if d == region]
        return (3 * max(costs, default=100.0) + 50) / 1000

    def tick(self, now: float) -> None:
        """Retransmit what is due, skip gaps given up on, forget idle streams."""
        for key, held in list(self.held.items()):
            keep = [h for h in held if now - h[4] < self.reliable.give_up_s]
            self.counters["messages.expired"] += len(held) - len(keep)
            if keep:
                self.held[key] = keep
            else:
                del self.held[key]
        for (zone, channel, stream), out in list(self.outgoing.items()):
            copies = out.stream.due(now, self.rto)
            if copies:
                self.counters["messages.retransmitted"] += sum(len(c.destinations)
                                                               for c in copies)
                self._send_copies(zone, channel, stream, copies)
            if out.stream.expired:
                self.counters["messages.expired"] += out.stream.expired
                out.stream.expired = 0
                self._settle(stream, out)
            # a joined session's stream is kept: numbered afresh, its subscribers could not
            # say where they left off
            if not out.stream.pending and now - out.last_used > self.out_stream_idle_s \
                    and not (self.edge is not None and self.edge.has_stream(stream)):
                del self.outgoing[(zone, channel, stream)]
        for ident, inc in list(self.incoming.items()):
            key = (ident[1], ident[2])
            for seq, payload in inc.stream.expire(now):
                self._deliver_message(key, ident[3], seq, payload)
            if not inc.stream.buffer and now - inc.last_used > self.in_stream_idle_s:
                del self.incoming[ident]


def encode_message_tail(mid: int, origin: str, uid: str, body: str) -> bytes:
    o, u = origin.encode(), uid.encode()
    return _MID.pack(mid) + bytes([len(o)]) + o + bytes([len(u)]) + u + body.encode()


def decode_message(payload: bytes) -> tuple[int, int, str, str, str]:
    """(base, message id, origin region, uid, body) of a message payload; ValueError when
    malformed."""
    try:
        base, mid = _BASE.unpack_from(payload)[0], _MID.unpack_from(payload, 8)[0]
        pos = 16
        origin = payload[pos + 1:pos + 1 + payload[pos]]
        pos += 1 + payload[pos]
        uid = payload[pos + 1:pos + 1 + payload[pos]]
        if len(uid) != payload[pos] or len(origin) == 0:
            raise ValueError("truncated")
        body = payload[pos + 1 + len(uid):]
        return base, mid, origin.decode(), uid.decode(), body.decode()
    except (IndexError, struct.error, UnicodeDecodeError) as e:
        raise ValueError(f"malformed message payload: {e}") from None
