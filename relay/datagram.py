"""Relay-to-relay channel datagrams: header encoding, strict decoding and BIER-style fan-out.

Pure functions, no I/O. Layout (network byte order):

    sealed part, authenticated:
      version u8 | kind u8 | zone_len u8 | channel_len u8 | publisher_len u8 | 0 u8
      | sealed_len u16 | sequence u64 | nonce[12] | zone | channel | publisher | payload
    tag[16]: AES-GMAC (AES-GCM over no plaintext) of the sealed part, under the fabric key
    routing state, rewritten by each relay:
      hop_limit u8 | region_count u8 | region_count x (len u8 | region id)

The hop limit and the destination set are routing state, like IP's TTL outside IPsec AH's
check: each relay splits the set by next hop and lowers the limit, and forwards the sealed part
as it came, so a transit relay verifies one tag and never signs. The origin, zone, channel,
publisher, sequence and payload are sealed; a relay checks the zone against its own before
carrying anything, which is what residency rests on. The nonce is unique per sealed datagram
(a random 8-byte prefix per process and a 4-byte counter).
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

VERSION = 2
MEDIA, MESSAGE, ACK = 1, 2, 3
KINDS = (MEDIA, MESSAGE, ACK)
MAX_DATAGRAM = 1400
TAG_SIZE = 16
MAX_ZONE, MAX_CHANNEL, MAX_PUBLISHER = 32, 64, 64
MAX_REGIONS = 64

_HEAD = struct.Struct("!BBBBBxHQ12s")
# offsets in _HEAD, for the transit fast path that reads single fields
ZONE_LEN_AT, SEALED_SIZE_AT, NONCE_AT = 2, 6, 16
MIN_DATAGRAM = _HEAD.size + TAG_SIZE + 2
_ZONE = re.compile(rb"[a-z0-9-]{1,32}\Z")
_REGION = re.compile(rb"[a-z0-9-]{2,32}\Z")


class BadDatagram(ValueError):
    """A datagram that cannot be encoded or was rejected on decoding; `reason_code` is one of
    "short", "too-large", "version", "kind", "field", "bad-tag" (stable, for counters)."""

    def __init__(self, reason_code: str, message: str = "") -> None:
        super().__init__(f"{reason_code}: {message}" if message else reason_code)
        self.reason_code = reason_code


@dataclass(frozen=True)
class Datagram:
    kind: int  # MEDIA, MESSAGE or ACK
    zone: str
    channel: str
    destinations: tuple[str, ...]  # destination region ids, 1..64, no duplicates
    hop_limit: int  # u8: hops this datagram may still be forwarded
    seq: int  # u64
    publisher: str  # <= 64 bytes UTF-8
    payload: bytes = b""
    version: int = VERSION
    # the sealed part and tag as received: forwarded copies reuse it (routing state aside)
    sealed: bytes = field(default=b"", compare=False, repr=False)


@lru_cache(maxsize=8)
def _aead(key: bytes) -> AESGCM:
    return AESGCM(hashlib.sha256(key).digest())


_PREFIX = os.urandom(8)
_COUNTER = itertools.count()


def _nonce() -> bytes:
    global _PREFIX, _COUNTER
    n = next(_COUNTER)
    if n >= 2**32:
        _PREFIX, _COUNTER = os.urandom(8), itertools.count(1)
        n = 0
    return _PREFIX + n.to_bytes(4, "big")


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


def routing_state(hop_limit: int, destinations: Iterable[str]) -> bytes:
    """The unsealed tail: hop limit and destination set."""
    dests = tuple(destinations)
    if not 0 <= hop_limit <= 0xFF:
        raise BadDatagram("field", "hop limit out of range")
    if not 1 <= len(dests) <= MAX_REGIONS or len(set(dests)) != len(dests):
        raise BadDatagram("field", "destinations must be 1..64 distinct region ids")
    regions = b"".join(bytes([len(r)]) + r for r in (_ids(x, _REGION, "region") for x in dests))
    return bytes([hop_limit, len(dests)]) + regions


def seal(d: Datagram, key: bytes, nonce: bytes | None = None) -> bytes:
    """The sealed part and its tag; raises BadDatagram for fields out of bounds."""
    if d.version != VERSION:
        raise BadDatagram("version", f"unsupported version {d.version}")
    if d.kind not in KINDS:
        raise BadDatagram("kind", f"unknown kind {d.kind}")
    if not isinstance(d.seq, int) or not 0 <= d.seq <= 0xFFFFFFFFFFFFFFFF:
        raise BadDatagram("field", "sequence out of range")
    zone = _ids(d.zone, _ZONE, "zone")
    channel = _text(d.channel, "channel", MAX_CHANNEL)
    publisher = _text(d.publisher, "publisher", MAX_PUBLISHER, empty_ok=True)
    if not isinstance(d.payload, bytes | bytearray | memoryview):
        raise BadDatagram("field", "payload must be bytes")
    size = _HEAD.size + len(zone) + len(channel) + len(publisher) + len(d.payload)
    if size + TAG_SIZE > MAX_DATAGRAM:
        raise BadDatagram("too-large", f"{size + TAG_SIZE} bytes > {MAX_DATAGRAM}")
    nonce = nonce or _nonce()
    body = b"".join((
        _HEAD.pack(d.version, d.kind, len(zone), len(channel), len(publisher), size, d.seq,
                   nonce),
        zone, channel, publisher, bytes(d.payload),
    ))
    return body + _aead(key).encrypt(nonce, b"", body)


def encode(d: Datagram, key: bytes) -> bytes:
    """Encode `d` (sealing it unless it carries its sealed part); raises BadDatagram for
    fields out of bounds or an oversized result."""
    sealed = d.sealed or seal(d, key)
    data = sealed + routing_state(d.hop_limit, d.destinations)
    if len(data) > MAX_DATAGRAM:
        raise BadDatagram("too-large", f"{len(data)} bytes > {MAX_DATAGRAM}")
    return data


def decode(data: bytes, key: bytes) -> Datagram:
    """Decode and verify; raises only BadDatagram. The tag is checked before any variable-length
    field of the sealed part is parsed, so unauthenticated bytes never reach the field parser
    (the routing state, which is not sealed, is parsed strictly)."""
    data = bytes(data)
    n = len(data)
    if n < MIN_DATAGRAM:
        raise BadDatagram("short", f"{n} bytes < {MIN_DATAGRAM}")
    if n > MAX_DATAGRAM:
        raise BadDatagram("too-large", f"{n} bytes > {MAX_DATAGRAM}")
    version, kind, zlen, clen, plen, size, seq, nonce = _HEAD.unpack_from(data)
    if version != VERSION:
        raise BadDatagram("version", f"unsupported version {version}")
    if kind not in KINDS:
        raise BadDatagram("kind", f"unknown kind {kind}")
    end = size + TAG_SIZE
    if size < _HEAD.size or end + 2 > n:
        raise BadDatagram("field", f"sealed length {size} does not fit {n} bytes")
    try:
        _aead(key).decrypt(nonce, data[size:end], memoryview(data)[:size])
    except InvalidTag:
        raise BadDatagram("bad-tag", "authentication tag mismatch") from None

    if zlen > MAX_ZONE or not 1 <= clen <= MAX_CHANNEL or plen > MAX_PUBLISHER:
        raise BadDatagram("field", "field length out of bounds")
    pos = _HEAD.size
    if pos + zlen + clen + plen > size:
        raise BadDatagram("field", "fields run past the sealed part")
    zone = data[pos:pos + zlen]
    if not _ZONE.match(zone):
        raise BadDatagram("field", "bad zone")
    try:
        channel = data[pos + zlen:pos + zlen + clen].decode()
        publisher = data[pos + zlen + clen:pos + zlen + clen + plen].decode()
    except UnicodeDecodeError:
        raise BadDatagram("field", "channel or publisher is not UTF-8") from None
    payload = data[pos + zlen + clen + plen:size]

    hop_limit, count = data[end], data[end + 1]
    if not 1 <= count <= MAX_REGIONS:
        raise BadDatagram("field", f"bad destination count {count}")
    dests = []
    pos = end + 2
    for _ in range(count):
        rlen = data[pos] if pos < n else 0
        rid = data[pos + 1:pos + 1 + rlen]
        if len(rid) != rlen or not _REGION.match(rid):
            raise BadDatagram("field", "bad region id")
        dests.append(rid.decode())
        pos += 1 + rlen
    if pos != n:
        raise BadDatagram("field", "bytes after the destination set")
    if len(set(dests)) != len(dests):
        raise BadDatagram("field", "duplicate destination region")
    return Datagram(kind, zone.decode(), channel, tuple(dests), hop_limit, seq, publisher,
                    payload, version, data[:end])


def split(
    dests: Iterable[str], next_hops: Mapping[str, str | None], here: str
) -> tuple[set[str], dict[str, frozenset[str]], set[str]]:
    """BIER-style fan-out of a destination set at region `here`, given the next hop per
    destination for the packet's zone (None or missing: unroutable within the zone).

    Returns (destinations delivered locally, {next hop: the destinations routed through it},
    unroutable destinations). Each next hop appears once, so each link carries one copy. A
    next hop equal to `here` is treated as unroutable rather than looping back."""
    local: set[str] = set()
    groups: dict[str, set[str]] = {}
    unroutable: set[str] = set()
    for dst in dests:
        if dst == here:
            local.add(dst)
            continue
        hop = next_hops.get(dst)
        if hop is None or hop == here:
            unroutable.add(dst)
        else:
            groups.setdefault(hop, set()).add(dst)
    return local, {hop: frozenset(s) for hop, s in groups.items()}, unroutable


def forward(
    d: Datagram, next_hops: Mapping[str, str | None], here: str
) -> tuple[bool, dict[str, Datagram], set[str]]:
    """Returns (deliver locally?, {next hop: copy with its destination subset and hop_limit - 1},
    dropped destinations). With hop_limit 0 nothing is forwarded: every non-local destination is
    dropped."""
    local, groups, dropped = split(d.destinations, next_hops, here)
    if d.hop_limit <= 0:
        return bool(local), {}, {x for x in d.destinations if x != here}
    copies = {
        hop: dataclasses.replace(d, destinations=tuple(sorted(sub)), hop_limit=d.hop_limit - 1,
                                 sealed=d.sealed)
        for hop, sub in groups.items()
    }
    return bool(local), copies, dropped
