"""Relay-to-relay channel datagrams: header encoding, strict decoding and BIER-style fan-out.

Pure functions, no I/O. Layout (network byte order), then the payload, then the tag:

    version u8 | kind u8 | hop_limit u8 | zone_len u8 | channel_len u8 | publisher_len u8
    | region_count u8 | sequence u64
    | zone | channel | publisher | region_count x (len u8 | region id) | payload | tag[16]

The tag is HMAC-SHA256(key, everything before it) truncated to 16 bytes. The key is passed in
by the caller: the controller will hand keys out to relays later (distribution and rotation
are out of scope here), so this module neither stores nor chooses keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

VERSION = 1
MEDIA, MESSAGE, ACK = 1, 2, 3
KINDS = (MEDIA, MESSAGE, ACK)
MAX_DATAGRAM = 1400
TAG_SIZE = 16
MAX_ZONE, MAX_CHANNEL, MAX_PUBLISHER = 32, 64, 64
MAX_REGIONS = 64

_HEAD = struct.Struct("!BBBBBBBQ")
MIN_DATAGRAM = _HEAD.size + TAG_SIZE
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


def _tag(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:TAG_SIZE]


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


def encode(d: Datagram, key: bytes) -> bytes:
    """Encode and sign `d`; raises BadDatagram for fields out of bounds or an oversized result."""
    if d.version != VERSION:
        raise BadDatagram("version", f"unsupported version {d.version}")
    if d.kind not in KINDS:
        raise BadDatagram("kind", f"unknown kind {d.kind}")
    if not 0 <= d.hop_limit <= 0xFF or not 0 <= d.seq <= 0xFFFFFFFFFFFFFFFF:
        raise BadDatagram("field", "hop limit or sequence out of range")
    zone = _ids(d.zone, _ZONE, "zone")
    channel = _text(d.channel, "channel", MAX_CHANNEL)
    publisher = _text(d.publisher, "publisher", MAX_PUBLISHER, empty_ok=True)
    dests = tuple(d.destinations)
    if not 1 <= len(dests) <= MAX_REGIONS or len(set(dests)) != len(dests):
        raise BadDatagram("field", "destinations must be 1..64 distinct region ids")
    regions = b"".join(bytes([len(r)]) + r for r in (_ids(x, _REGION, "region") for x in dests))
    if not isinstance(d.payload, bytes | bytearray | memoryview):
        raise BadDatagram("field", "payload must be bytes")
    body = b"".join((
        _HEAD.pack(d.version, d.kind, d.hop_limit, len(zone), len(channel), len(publisher),
                   len(dests), d.seq),
        zone, channel, publisher, regions, bytes(d.payload),
    ))
    if len(body) + TAG_SIZE > MAX_DATAGRAM:
        raise BadDatagram("too-large", f"{len(body) + TAG_SIZE} bytes > {MAX_DATAGRAM}")
    return body + _tag(key, body)


def decode(data: bytes, key: bytes) -> Datagram:
    """Decode and verify; raises only BadDatagram. The tag is checked before any variable-length
    field is parsed, so unauthenticated bytes never reach the field parser."""
    data = bytes(data)
    if len(data) < MIN_DATAGRAM:
        raise BadDatagram("short", f"{len(data)} bytes < {MIN_DATAGRAM}")
    if len(data) > MAX_DATAGRAM:
        raise BadDatagram("too-large", f"{len(data)} bytes > {MAX_DATAGRAM}")
    version, kind, hop_limit, zlen, clen, plen, count, seq = _HEAD.unpack_from(data)
    if version != VERSION:
        raise BadDatagram("version", f"unsupported version {version}")
    if kind not in KINDS:
        raise BadDatagram("kind", f"unknown kind {kind}")
    body, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
    if not hmac.compare_digest(tag, _tag(key, body)):
        raise BadDatagram("bad-tag", "authentication tag mismatch")

    pos = _HEAD.size

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(body):
            raise BadDatagram("field", "field runs past the end of the datagram")
        pos += n
        return body[pos - n:pos]

    if zlen > MAX_ZONE or not 1 <= clen <= MAX_CHANNEL or plen > MAX_PUBLISHER:
        raise BadDatagram("field", "field length out of bounds")
    if not 1 <= count <= MAX_REGIONS:
        raise BadDatagram("field", f"bad destination count {count}")
    zone = take(zlen)
    if not _ZONE.match(zone):
        raise BadDatagram("field", "bad zone")
    try:
        channel = take(clen).decode()
        publisher = take(plen).decode()
    except UnicodeDecodeError:
        raise BadDatagram("field", "channel or publisher is not UTF-8") from None
    dests = []
    for _ in range(count):
        rid = take(take(1)[0])
        if not _REGION.match(rid):
            raise BadDatagram("field", "bad region id")
        dests.append(rid.decode())
    if len(set(dests)) != len(dests):
        raise BadDatagram("field", "duplicate destination region")
    return Datagram(kind, zone.decode(), channel, tuple(dests), hop_limit, seq, publisher,
                    body[pos:], version)


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
        hop: dataclasses.replace(d, destinations=tuple(sorted(sub)), hop_limit=d.hop_limit - 1)
        for hop, sub in groups.items()
    }
    return bool(local), copies, dropped
