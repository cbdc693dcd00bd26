"""Relay-to-relay probe datagrams: encoding and strict, authenticated decoding, no I/O.

Layout (network byte order):

    magic "SM" | version u8 | type u8 | sequence u32 | region_len u8 | region
    | epoch u8 | tag[16]

The tag is keyed BLAKE2s (16 bytes) over everything before it, under the probe key of the
epoch the datagram names. A probe key is derived from the fabric key of that epoch (the key
relay/datagram.py seals channel datagrams with) with domain separation, never the fabric key
itself; every relay accepts the epochs the controller lists, so a key rotation, whose
overlap has every relay accept both epochs, leaves probes and their replies valid throughout.
A receiver checks the fixed header (magic, version, length), picks the key by epoch and checks
the tag before it reads anything else: the type, the region's length and the region.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

MAGIC = b"SM"
VERSION = 2  # 2: authenticated (key epoch and tag)
PROBE, PROBE_REPLY = 1, 2
MAX_DATAGRAM = 1500
TAG_SIZE = 16
MAX_EPOCH = 0xFF

_HEAD = struct.Struct("!2sBBIB")  # magic, version, type, sequence, length of the region id
_TRAILER = 1 + TAG_SIZE  # epoch, tag
_REGION = re.compile(rb"[a-z0-9-]{2,32}\Z")
_DOMAIN = b"skymesh probe v2\0"
REASONS = ("malformed", "epoch", "bad-tag")


class MalformedPacket(ValueError):
    """A datagram rejected on decoding; `reason` is "malformed", "epoch" (no key of the epoch
    it names) or "bad-tag" (forged, tampered with or under another key), for counters."""

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


def probe_key(fabric_key: bytes) -> bytes:
    """The probe MAC key of a fabric key (domain separated: never the fabric key raw)."""
    return hashlib.sha256(_DOMAIN + fabric_key).digest()


@dataclass(frozen=True)
class ProbeKeys:
    """The epoch probes are sent under and every accepted epoch's probe key (derived)."""

    epoch: int
    by_epoch: Mapping[int, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def derive(cls, epoch: int, fabric_keys: Mapping[int, bytes]) -> ProbeKeys:
        """From the fabric keys by epoch, as the fabric gets them (empty keys and epochs
        outside u8 are left out)."""
        return cls(epoch, {e: probe_key(k) for e, k in fabric_keys.items()
                           if k and 0 <= e <= MAX_EPOCH})

    @property
    def can_send(self) -> bool:
        return self.epoch in self.by_epoch

    @property
    def epochs(self) -> tuple[int, ...]:
        return tuple(sorted(self.by_epoch))


NO_KEYS = ProbeKeys(0)


def _tag(key: bytes, data: bytes | memoryview) -> bytes:
    return hashlib.blake2s(data, key=key, digest_size=TAG_SIZE).digest()


@dataclass(frozen=True)
class Probe:
    kind: int  # PROBE or PROBE_REPLY
    seq: int
    region: str  # the sender's region
    epoch: int  # the key epoch it was authenticated under


def encode_probe(kind: int, seq: int, region: str, keys: ProbeKeys,
                 epoch: int | None = None) -> bytes:
    """A probe or reply under `keys`' sending epoch (or `epoch`, one it accepts); ValueError
    when it holds no key of that epoch."""
    epoch = keys.epoch if epoch is None else epoch
    key = keys.by_epoch.get(epoch)
    if key is None:
        raise ValueError(f"no probe key of epoch {epoch}")
    rid = region.encode()
    body = _HEAD.pack(MAGIC, VERSION, kind, seq & 0xFFFFFFFF, len(rid)) + rid + bytes([epoch])
    return body + _tag(key, body)


def decode(data: bytes, keys: ProbeKeys) -> Probe:
    """The probe `data` carries, authenticated under `keys`; MalformedPacket (with its
    reason) for anything else."""
    if len(data) < _HEAD.size + _TRAILER or len(data) > MAX_DATAGRAM:
        raise MalformedPacket(f"bad length {len(data)}")
    magic, version, kind, seq, rlen = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise MalformedPacket("bad magic")
    if version != VERSION:
        raise MalformedPacket(f"unsupported version {version}")
    epoch = data[-_TRAILER]
    key = keys.by_epoch.get(epoch)
    if key is None:
        raise MalformedPacket(f"no key of epoch {epoch}", "epoch")
    view = memoryview(data)
    if not hmac.compare_digest(_tag(key, view[:-TAG_SIZE]), view[-TAG_SIZE:]):
        raise MalformedPacket("bad tag", "bad-tag")
    if kind not in (PROBE, PROBE_REPLY):
        raise MalformedPacket(f"unknown type {kind}")
    rid = data[_HEAD.size:-_TRAILER]
    if len(rid) != rlen or not _REGION.match(rid):
        raise MalformedPacket("bad region id")
    return Probe(kind, seq, rid.decode(), epoch)
