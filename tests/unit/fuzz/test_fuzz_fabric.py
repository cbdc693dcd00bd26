"""Hostile fabric datagrams: relay/datagram.py's decoder, the message payload decoder, and a
relay's whole receive path (relay/fabric.py `on_datagram` and the transit fast path
`transit_run`) fed anything, genuine datagrams with forged routing state, and sealed parts
that a key holder filled with garbage."""

from __future__ import annotations

import dataclasses
import inspect
import struct

from fuzzing import fuzz, mutations, uints
from hypothesis import event, given
from hypothesis import strategies as st

from relay import datagram
from relay.datagram import (
    _HEAD,
    ACK,
    COMMENTS,
    KINDS,
    MEDIA,
    MESSAGE,
    REPLAY,
    REPLAYED,
    BadDatagram,
    Datagram,
)
from relay.fabric import Fabric, decode_message, encode_message_tail
from relay.tables import Entry, RouteTables

KEY, OLD_KEY, OTHER_KEY = b"k" * 32, b"o" * 32, b"x" * 32
REASONS = {"short", "too-large", "version", "kind", "field", "epoch", "bad-tag"}
HERE = "ams"
# ams routes fra and waw through fra, lon and nyc through lon, in zones eu and global
ROUTES = {"fra": "fra", "waw": "fra", "lon": "lon", "nyc": "lon"}
REGIONS = [HERE, *ROUTES, "sfo"]  # sfo: no route
ZONES = ["eu", "global"]
CHANNEL = "app/room"

text64 = st.text(max_size=20).filter(lambda t: len(t.encode("utf-8", "surrogatepass")) <= 64
                                     and t.encode("utf-8", "ignore").decode() == t)


@st.composite
def message_payloads(draw: st.DrawFn) -> bytes:
    tail = encode_message_tail(draw(uints(64)), draw(st.sampled_from(REGIONS + ["", "x" * 40])),
                               draw(text64), draw(st.text(max_size=30).filter(
                                   lambda t: t.encode("utf-8", "ignore").decode() == t)))
    base = draw(st.one_of(st.just(0), st.just(0), st.integers(0, 8), uints(64)))
    return struct.pack("!Q", base) + tail


@st.composite
def datagrams(draw: st.DrawFn) -> Datagram:
    kind = draw(st.sampled_from(KINDS))
    payload = draw(st.one_of(st.binary(max_size=64), message_payloads(),
                             st.sampled_from([r.encode() for r in REGIONS])))
    # mostly this relay's zone and channel, for here: the inputs that go deepest
    return Datagram(
        kind=kind,
        zone=draw(st.sampled_from(["eu", "eu", "eu", "global", "us", "a"])),
        channel=draw(st.sampled_from([CHANNEL, CHANNEL, CHANNEL, "app/other", "x"])),
        destinations=tuple(draw(st.lists(st.sampled_from([HERE, HERE, *REGIONS, "zz", "nope"]),
                                         min_size=1, max_size=6, unique=True))),
        hop_limit=draw(st.sampled_from([0, 1, 2, 17, 255])),
        seq=draw(st.one_of(st.integers(0, 8), uints(64))),
        publisher=draw(st.sampled_from(["pub", "", "p" * 64])),
        payload=payload,
    )


genuine = st.builds(datagram.encode, datagrams(), st.sampled_from([KEY, KEY, OLD_KEY,
                                                                   OTHER_KEY]))


HEAD_FIELDS = len(_HEAD.unpack(bytes(_HEAD.size)))


@st.composite
def sealed_junk(draw: st.DrawFn) -> bytes:
    """A sealed part a key holder filled with anything, and any routing state after it."""
    fields = draw(st.binary(max_size=120))
    size = _HEAD.size + len(fields)
    lengths = [draw(st.integers(0, 40)), draw(st.integers(0, 70)), draw(st.integers(0, 70))]
    epoch = [draw(st.sampled_from([0, 0, 1, 9]))] if HEAD_FIELDS == 9 else []  # version 3 on
    head = _HEAD.pack(draw(st.sampled_from([datagram.VERSION, datagram.VERSION, 1, 2, 3])),
                      draw(st.integers(0, 4)), *lengths, *epoch,
                      draw(st.sampled_from([size, size, 0, 24, 0xFFFF])), draw(uints(64)),
                      b"n" * 12)
    body = head + fields
    if datagram.VERSION >= 3:  # the payload is encrypted, the rest its associated data
        zlen, clen, plen = head[2], head[3], head[4]
        cut = min(len(body), _HEAD.size + zlen + clen + plen)
        sealed = body[:cut] + datagram._aead(KEY).encrypt(b"n" * 12, body[cut:], body[:cut])
    else:  # the whole sealed part authenticated (AES-GMAC)
        sealed = body + datagram._aead(KEY).encrypt(b"n" * 12, b"", body)
    return sealed + draw(routing_tails())


def routing_tails() -> st.SearchStrategy[bytes]:
    valid = st.builds(datagram.routing_state, st.integers(0, 255),
                      st.lists(st.sampled_from([*REGIONS, "zz"]), min_size=1, max_size=5,
                               unique=True))
    return st.one_of(valid, mutations(valid), st.binary(max_size=12))


@st.composite
def forged_routing(draw: st.DrawFn) -> bytes:
    """A genuine sealed part with routing state anyone on the path could have written."""
    d = draw(datagrams())
    sealed = datagram.encode(d, KEY)[:len(datagram.seal(d, KEY, b"n" * 12))]
    return sealed + draw(routing_tails())


# genuine messages for this relay's subscribers: a stream's first few, in any order
for_here = st.builds(
    lambda d, seq, payload: datagram.encode(
        dataclasses.replace(d, kind=MESSAGE, zone="eu", channel=CHANNEL, seq=seq,
                            destinations=(HERE, *d.destinations[:1]) if HERE not in
                            d.destinations[:1] else (HERE,), payload=payload), KEY),
    datagrams(), st.integers(1, 5), message_payloads())
hostile = st.one_of(st.binary(max_size=200), genuine, mutations(genuine), sealed_junk(),
                    forged_routing(), for_here, mutations(for_here))


def check_wellformed(d: Datagram) -> None:
    assert d.kind in KINDS and d.version == datagram.VERSION
    assert datagram._ZONE.match(d.zone.encode())
    assert 1 <= len(d.channel.encode()) <= datagram.MAX_CHANNEL
    assert len(d.publisher.encode()) <= datagram.MAX_PUBLISHER
    assert 1 <= len(d.destinations) <= datagram.MAX_REGIONS
    assert len(set(d.destinations)) == len(d.destinations)
    assert all(datagram._REGION.match(r.encode()) for r in d.destinations)
    assert 0 <= d.hop_limit <= 255 and 0 <= d.seq < 2**64


@fuzz()
@given(hostile)
def test_decode_raises_only_bad_datagram_and_accepts_only_wellformed(data):
    try:
        d = datagram.decode(data, KEY)
    except BadDatagram as e:
        assert e.reason_code in REASONS and str(e)
        return
    check_wellformed(d)
    assert datagram.encode(d, KEY) == data  # one encoding: nothing was read past or around


@fuzz()
@given(st.one_of(st.binary(max_size=120), message_payloads(), mutations(message_payloads())))
def test_message_payload_decoder(payload):
    try:
        base, mid, origin, uid, body = decode_message(payload)
    except ValueError as e:
        assert str(e)
        return
    assert 0 <= base < 2**64 and 0 <= mid < 2**64 and origin
    assert struct.pack("!Q", base) + encode_message_tail(mid, origin, uid, body) == payload


class Edge:
    def __init__(self) -> None:
        self.delivered: list = []

    def members(self, key):
        return {"session"} if key == ("eu", CHANNEL) else set()

    def delivers(self, key):
        return bool(self.members(key))

    def deliver_media(self, key, data, stream=None):
        assert isinstance(data, bytes)
        self.delivered.append(("media", key, data))

    def deliver_message(self, key, uid, mid, body, stream=None, seq=None):
        assert isinstance(uid, str) and isinstance(body, str) and 0 <= mid < 2**64
        self.delivered.append(("message", key, uid, mid, body))

    def deliver_replayed(self, key, uid, mid, body, stream, seq):
        assert isinstance(uid, str) and isinstance(body, str) and 0 <= mid < 2**64
        self.delivered.append(("replayed", key, uid, mid, body))

    def has_stream(self, stream):
        return False

    def stream_settled(self, stream, mid):
        assert isinstance(stream, str) and 0 <= mid < 2**64

    def members_changed(self, key, names):
        pass

    def deliver_comments(self, key, payload):
        pass


def relay() -> tuple[Fabric, list[tuple[str, bytes]]]:
    tables = RouteTables(HERE)
    entries = [Entry(dst, hop, (HERE, dst) if hop == dst else (HERE, hop, dst), 5.0, zone)
               for dst, hop in ROUTES.items() for zone in ZONES]
    assert tables.apply(1, entries) is None
    sent: list[tuple[str, bytes]] = []

    def send(hop: str, data: bytes) -> bool:
        sent.append((hop, bytes(data)))
        return True

    fabric = Fabric(HERE, tables, send, lambda: 0.0, edge=Edge())
    if "epoch" in inspect.signature(Fabric.configure).parameters:  # keys by epoch
        fabric.configure(KEY, {1: OLD_KEY}, ["eu", "global"], epoch=0)
    else:
        fabric.configure(KEY, [OLD_KEY], ["eu", "global"])
    fabric.set_members(("eu", CHANNEL), ["ams", "fra", "lon"])
    return fabric, sent


def decode_any(data: bytes) -> Datagram:
    """Decoded as the next hop does: under the current key or the one still accepted."""
    try:
        return datagram.decode(data, KEY)
    except BadDatagram as e:
        if e.reason_code != "bad-tag":
            raise
        return datagram.decode(data, OLD_KEY)


def check_sent(fabric: Fabric, received: list[bytes], sent: list[tuple[str, bytes]]) -> None:
    """What a relay sends on is a datagram its next hop accepts, to a next hop of its table;
    or what it received, with only the hop limit lowered (the fast path, which checks the tag
    and not the sealed fields)."""
    hops = set(ROUTES.values())
    lowered = set()
    for data in received:
        for at in range(len(data)):
            if data[at]:
                lowered.add(data[:at] + bytes([data[at] - 1]) + data[at + 1:])
    for hop, data in sent:
        assert hop in hops, hop
        try:
            d = decode_any(data)
        except BadDatagram:
            assert data in lowered, data
            continue
        check_wellformed(d)
        assert d.zone in fabric.zones  # residency: never a foreign zone's traffic
    for name, value in fabric.counters.items():
        assert isinstance(name, str) and value >= 0


@fuzz(0.5)
@given(st.lists(hostile, min_size=1, max_size=12), st.lists(st.floats(0, 100), max_size=3))
def test_fabric_receive_path_takes_anything(inputs, ticks):
    fabric, sent = relay()
    now = 0.0
    for data in inputs:
        now += 0.01
        fabric.on_datagram(data, now)
    for t in ticks:
        fabric.tick(now + t)
    check_sent(fabric, inputs, sent)
    # how deep the inputs went (pytest --hypothesis-show-statistics)
    for name in fabric.counters:
        event(name.replace("zone.eu.", "zone.").replace("zone.global.", "zone."))
    for what, *_ in fabric.edge.delivered:
        event(f"edge got {what}")


@fuzz(0.5)
@given(st.lists(st.one_of(genuine, forged_routing(), mutations(genuine)), min_size=1,
                max_size=8), st.integers(1, 1500), st.booleans())
def test_transit_fast_path_takes_any_run(inputs, segment, same_size):
    """A receive of several datagrams in one buffer (GRO): cut at `segment` bytes."""
    fabric, sent = relay()
    if same_size:  # a run as the kernel joins it: equal sizes (pad or cut), the last shorter
        inputs = [(d + bytes(segment))[:segment] for d in inputs[:-1]] + inputs[-1:]
    buf = b"".join(inputs)
    left = fabric.transit_run(buf, segment)
    assert left == sorted(set(left)) and all(0 <= o < len(buf) and o % segment == 0
                                             for o in left)
    for o in left:
        fabric.on_datagram(buf[o:o + segment], 0.0)
    check_sent(fabric, [buf[o:o + segment] for o in range(0, len(buf), segment)], sent)


@fuzz(0.5)
@given(datagrams())
def test_fast_path_and_full_path_agree_on_genuine_datagrams(d):
    """A genuine datagram takes the same way (hop, bytes) by the fast path as by the full one."""
    data = datagram.encode(d, KEY)
    fast, fast_sent = relay()
    full, full_sent = relay()
    full.seal_check, full.seal_checks = None, {}  # no fast path: all by the strict decoder
    fast.on_datagram(data, 0.0)
    full.on_datagram(data, 0.0)
    # (what either relay seals itself, an ACK, carries a fresh nonce: compared decoded)
    assert [(hop, decode_any(x)) for hop, x in fast_sent] == \
        [(hop, decode_any(x)) for hop, x in full_sent]
    assert fast.edge.delivered == full.edge.delivered


def test_kinds_are_covered():
    # the strategies reach every kind (a guard against a strategy that silently shrank)
    assert {MEDIA, MESSAGE, ACK, REPLAY, REPLAYED, COMMENTS} == set(KINDS)
    assert dataclasses.is_dataclass(Datagram)
