"""Relay-to-relay channel datagrams: header encoding, strict decoding and BIER-style fan-out.

Pure functions, no I/O. Layout (network byte order):

    sealed part: AES-GCM under the fabric key of the epoch it names
      associated data (authenticated, in clear):
        version u8 | kind u8 | zone_len u8 | channel_len u8 | publisher_len u8 | epoch u8
        | sealed_len u16 | sequence u64 | nonce[12] | zone | channel | publisher
      payload, encrypted (sealed_len is where it ends)
    tag[16]
    routing state, rewritten by each relay:
      hop_limit u8 | count u8 | count x (len u8 | destination)

The payload is the AEAD's plaintext and everything before it its associated data; being last,
ciphertext and tag are contiguous. The hop limit and the destination set are routing state,
like IP's TTL outside IPsec's check: each relay splits the set by next hop and lowers the
limit, and forwards the sealed part as it came, so a transit relay checks one tag (decrypts
and discards) and never seals; the delivering relay opens the payload. The zone, channel,
publisher, sequence and payload are sealed; a relay checks the zone against its own before
carrying anything, which is what residency rests on.

A destination is a region id, or "region/node" for one relay node of a region that runs
several (skymesh/nodes.py): routing is per region, so a node-qualified destination travels by
its region's next hop, and the relay of that region that receives it hands it to the node it
names (relay/fabric.py).

The epoch says which fabric key sealed the datagram (the controller rotates keys with an
overlap, so relays hold a few at once): the receiver picks the key by epoch, no trial
decryption. The nonce is unique per key: a random 8-byte prefix per sender (`Nonces`, one per
relay) and a 4-byte counter, renewed with a fresh prefix before the counter wraps. The counter
numbers the sender's sealed datagrams, retransmissions included, which is what the delivering
relay's anti-replay window (relay/replay.py) keeps track of, per (epoch, prefix).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from skymesh import nodes

VERSION = 3  # 3: the payload is encrypted, the header names the key epoch
MEDIA, MESSAGE, ACK = 1, 2, 3
# REPLAY asks a stream's origin again for its messages after seq (the payload names who
# asks); REPLAYED is one of them, numbered as first sent, payload as a MESSAGE's
REPLAY, REPLAYED = 4, 5
# COMMENTS: viewers' comments of a channel, best-effort, a batch thinned at the edge it left
# (relay/danmaku.py)
COMMENTS = 6
KINDS = (MEDIA, MESSAGE, ACK, REPLAY, REPLAYED, COMMENTS)
MAX_DATAGRAM = 1400
TAG_SIZE = 16
MAX_ZONE, MAX_CHANNEL, MAX_PUBLISHER = 32, 64, 64
MAX_REGIONS = 64

_HEAD = struct.Struct("!BBBBBBHQ12s")
# offsets in _HEAD, for the transit fast path that reads single fields
ZONE_LEN_AT, EPOCH_AT, SEALED_SIZE_AT, NONCE_AT = 2, 5, 6, 16
NONCE_SIZE, NONCE_PREFIX = 12, 8
MAX_EPOCH = 0xFF
MIN_DATAGRAM = _HEAD.size + TAG_SIZE + 2
_ZONE = re.compile(rb"[a-z0-9-]{1,32}\Z")
_REGION = re.compile(rb"[a-z0-9-]{2,32}\Z")
_SEPARATOR = nodes.SEPARATOR.encode()


class BadDatagram(ValueError):
    """A datagram that cannot be encoded or was rejected on decoding; `reason_code` is one of
    "short", "too-large", "version", "kind", "field", "epoch" (no key of that epoch),
    "bad-tag" (stable, for counters)."""

    def __init__(self, reason_code: str, message: str = "") -> None:
        super().__init__(f"{reason_code}: {message}" if message else reason_code)
        self.reason_code = reason_code


@dataclass(frozen=True)
class Datagram:
    kind: int  # one of KINDS
    zone: str
    channel: str
    # 1..64 distinct destinations: region ids, or "region/node" (skymesh/nodes.py)
    destinations: tuple[str, ...]
    hop_limit: int  # u8: hops this datagram may still be forwarded
    seq: int  # u64
    publisher: str  # <= 64 bytes UTF-8
    payload: bytes = b""
    version: int = VERSION
    epoch: int = 0  # u8: the fabric key's epoch
    # the sealed part and tag as received: forwarded copies reuse it (routing state aside)
    sealed: bytes = field(default=b"", compare=False, repr=False)


@lru_cache(maxsize=8)
def _aead(key: bytes) -> AESGCM:
    return AESGCM(hashlib.sha256(key).digest())


class Nonces:
    """A sender's nonces: a random 8-byte prefix and a 4-byte counter, a fresh prefix before
    the counter wraps. The prefix names the sender's sequence space, the counter numbers its
    sealed datagrams (relay/replay.py)."""

    def __init__(self) -> None:
        self.prefix = os.urandom(NONCE_PREFIX)
        self.counter = itertools.count(1)

    def __call__(self) -> bytes:
        n = next(self.counter)
        if n >= 2**32:
            self.prefix, self.counter = os.urandom(NONCE_PREFIX), itertools.count(2)
            n = 1
        return self.prefix + n.to_bytes(4, "big")


_nonce = Nonces()  # for callers that bring no sender of their own (tools, tests)


def replay_id(sealed: bytes) -> tuple[bytes, int]:
    """(sender prefix, counter) of a sealed datagram's nonce."""
    return (sealed[NONCE_AT:NONCE_AT + NONCE_PREFIX],
            int.from_bytes(sealed[NONCE_AT + NONCE_PREFIX:NONCE_AT + NONCE_SIZE], "big"))


def _text(value: str, what: str, limit: int, empty_ok: bool = False) -> bytes:
    try:
        raw = value.encode()
    except (AttributeError, UnicodeEncodeError):
        raise BadDatagram("field", f"{what} must be a valid UTF-8 string") from None
    if len(raw) > limit or (not raw and not empty_ok):
        raise BadDatagram("field", f"{what} must be {0 if empty_ok else 1}..{limit} bytes")
    return raw


def _ids(value: str, pattern: re.Pattern[bytes], what: str) -> bytes:
    raw = value.encode("ascii", "replace") if isinstance(value, str) else b""
    if not pattern.match(raw):
        raise BadDatagram("field", f"bad {what} {value!r}")
    return raw


def is_destination(raw: bytes) -> bool:
    """Whether `raw` names a destination: a region id, or "region/node" with a node id as
    skymesh/nodes.py defines it."""
    region, sep, node = raw.partition(_SEPARATOR)
    if not _REGION.match(region):
        return False
    if not sep:
        return True
    try:
        nodes.check_node_id(node.decode("ascii"))
    except (UnicodeDecodeError, nodes.BadNodeName):
        return False
    return True


def _destination(value: str) -> bytes:
    raw = value.encode("ascii", "replace") if isinstance(value, str) else b""
    if not is_destination(raw):
        raise BadDatagram("field", f"bad destination {value!r}")
    return raw


def routing_state(hop_limit: int, destinations: Iterable[str]) -> bytes:
    """The unsealed tail: hop limit and destination set."""
    dests = tuple(destinations)
    if not 0 <= hop_limit <= 0xFF:
        raise BadDatagram("field", "hop limit out of range")
    if not 1 <= len(dests) <= MAX_REGIONS or len(set(dests)) != len(dests):
        raise BadDatagram("field", "destinations must be 1..64 distinct names")
    names = b"".join(bytes([len(r)]) + r for r in map(_destination, dests))
    return bytes([hop_limit, len(dests)]) + names


def seal(d: Datagram, key: bytes, nonce: bytes | None = None) -> bytes:
    """The sealed part (payload encrypted under `key`, d.epoch naming it) and its tag; raises
    BadDatagram for fields out of bounds."""
    if d.version != VERSION:
        raise BadDatagram("version", f"unsupported version {d.version}")
    if d.kind not in KINDS:
        raise BadDatagram("kind", f"unknown kind {d.kind}")
    if not isinstance(d.seq, int) or not 0 <= d.seq <= 0xFFFFFFFFFFFFFFFF:
        raise BadDatagram("field", "sequence out of range")
    if not isinstance(d.epoch, int) or not 0 <= d.epoch <= MAX_EPOCH:
        raise BadDatagram("field", "epoch out of range")
    zone = _ids(d.zone, _ZONE, "zone")
    channel = _text(d.channel, "channel", MAX_CHANNEL)
    publisher = _text(d.publisher, "publisher", MAX_PUBLISHER, empty_ok=True)
    if not isinstance(d.payload, bytes | bytearray | memoryview):
        raise BadDatagram("field", "payload must be bytes")
    size = _HEAD.size + len(zone) + len(channel) + len(publisher) + len(d.payload)
    if size + TAG_SIZE > MAX_DATAGRAM:
        raise BadDatagram("too-large", f"{size + TAG_SIZE} bytes > {MAX_DATAGRAM}")
    nonce = nonce or _nonce()
    head = b"".join((
        _HEAD.pack(d.version, d.kind, len(zone), len(channel), len(publisher), d.epoch, size,
                   d.seq, nonce),
        zone, channel, publisher,
    ))
    return head + _aead(key).encrypt(nonce, bytes(d.payload), head)


def encode(d: Datagram, key: bytes) -> bytes:
    """Encode `d` (sealing it unless it carries its sealed part); raises BadDatagram for
    fields out of bounds or an oversized result."""
    sealed = d.sealed or seal(d, key)
    data = sealed + routing_state(d.hop_limit, d.destinations)
    if len(data) > MAX_DATAGRAM:
        raise BadDatagram("too-large", f"{len(data)} bytes > {MAX_DATAGRAM}")
    return data


def decode(data: bytes, keys: bytes | Mapping[int, bytes]) -> Datagram:
    """Decode, verify and decrypt; raises only BadDatagram. `keys`: the fabric keys by epoch
    (an epoch without one is refused as "epoch"), or one key for whatever epoch the datagram
    names. The tag is checked before any variable-length field of the sealed part is parsed, so
    unauthenticated bytes never reach the field parser (the routing state, which is not
    sealed, is parsed strictly)."""
    data = bytes(data)
    n = len(data)
    if n < MIN_DATAGRAM:
        raise BadDatagram("short", f"{n} bytes < {MIN_DATAGRAM}")
    if n > MAX_DATAGRAM:
        raise BadDatagram("too-large", f"{n} bytes > {MAX_DATAGRAM}")
    version, kind, zlen, clen, plen, epoch, size, seq, nonce = _HEAD.unpack_from(data)
    if version != VERSION:
        raise BadDatagram("version", f"unsupported version {version}")
    if kind not in KINDS:
        raise BadDatagram("kind", f"unknown kind {kind}")
    end = size + TAG_SIZE
    if size < _HEAD.size or end + 2 > n:
        raise BadDatagram("field", f"sealed length {size} does not fit {n} bytes")
    pos = _HEAD.size
    opened = pos + zlen + clen + plen  # where the payload starts
    if opened > size:
        raise BadDatagram("field", "fields run past the sealed part")
    if isinstance(keys, bytes | bytearray):
        key = keys
    else:
        key = keys.get(epoch)
        if not key:
            raise BadDatagram("epoch", f"no fabric key of epoch {epoch}")
    view = memoryview(data)
    try:
        payload = _aead(key).decrypt(nonce, view[opened:end], view[:opened])
    except InvalidTag:
        raise BadDatagram("bad-tag", "authentication tag mismatch") from None

    if zlen > MAX_ZONE or not 1 <= clen <= MAX_CHANNEL or plen > MAX_PUBLISHER:
        raise BadDatagram("field", "field length out of bounds")
    zone = data[pos:pos + zlen]
    if not _ZONE.match(zone):
        raise BadDatagram("field", "bad zone")
    try:
        channel = data[pos + zlen:pos + zlen + clen].decode()
        publisher = data[pos + zlen + clen:pos + zlen + clen + plen].decode()
    except UnicodeDecodeError:
        raise BadDatagram("field", "channel or publisher is not UTF-8") from None

    hop_limit, count = data[end], data[end + 1]
    if not 1 <= count <= MAX_REGIONS:
        raise BadDatagram("field", f"bad destination count {count}")
    dests = []
    pos = end + 2
    for _ in range(count):
        rlen = data[pos] if pos < n else 0
        rid = data[pos + 1:pos + 1 + rlen]
        if len(rid) != rlen or not is_destination(rid):
            raise BadDatagram("field", "bad destination")
        dests.append(rid.decode())
        pos += 1 + rlen
    if pos != n:
        raise BadDatagram("field", "bytes after the destination set")
    if len(set(dests)) != len(dests):
        raise BadDatagram("field", "duplicate destination")
    return Datagram(kind, zone.decode(), channel, tuple(dests), hop_limit, seq, publisher,
                    payload, version, epoch, data[:end])


def split(
    dests: Iterable[str], next_hops: Mapping[str, str | None], here: str
) -> tuple[set[str], dict[str, frozenset[str]], set[str]]:
    """BIER-style fan-out of a destination set at region `here`, given the next hop per
    destination region for the packet's zone (None or missing: unroutable within the zone).
    A node-qualified destination ("region/node") goes by its region's next hop.

    Returns (destinations of region `here`, bare or naming any of its nodes, {next hop: the
    destinations routed through it}, unroutable destinations). Each next hop appears once, so
    each link carries one copy. A next hop equal to `here` is treated as unroutable rather
    than looping back."""
    local: set[str] = set()
    groups: dict[str, set[str]] = {}
    unroutable: set[str] = set()
    for dst in dests:
        region = nodes.region_of(dst)
        if region == here:
            local.add(dst)
            continue
        hop = next_hops.get(region)
        if hop is None or hop == here:
            unroutable.add(dst)
        else:
            groups.setdefault(hop, set()).add(dst)
    return local, {hop: frozenset(s) for hop, s in groups.items()}, unroutable


def forward(
    d: Datagram, next_hops: Mapping[str, str | None], here: str
) -> tuple[bool, dict[str, Datagram], set[str]]:
    """Returns (any destination of region `here`?, {next hop: copy with its destination subset
    and hop_limit - 1}, dropped destinations), `next_hops` by destination region as for
    `split`. With hop_limit 0 nothing is forwarded: every destination of another region is
    dropped."""
    local, groups, dropped = split(d.destinations, next_hops, here)
    if d.hop_limit <= 0:
        return bool(local), {}, {x for x in d.destinations if nodes.region_of(x) != here}
    copies = {
        hop: dataclasses.replace(d, destinations=tuple(sorted(sub)), hop_limit=d.hop_limit - 1,
                                 sealed=d.sealed)
        for hop, sub in groups.items()
    }
    return bool(local), copies, dropped
