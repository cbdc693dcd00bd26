"""Relay-to-relay datagrams: encoding and strict decoding, no I/O."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

MAGIC = b"SM"
VERSION = 1
PROBE, PROBE_REPLY = 1, 2
MAX_DATAGRAM = 1500

_HEAD = struct.Struct("!2sBBIB")  # magic, version, type, sequence, length of the region id
_REGION = re.compile(rb"[a-z0-9-]{2,32}\Z")


class MalformedPacket(ValueError):
    pass


@dataclass(frozen=True)
class Probe:
    kind: int  # PROBE or PROBE_REPLY
    seq: int
    region: str  # the sender's region


def encode_probe(kind: int, seq: int, region: str) -> bytes:
    rid = region.encode()
    return _HEAD.pack(MAGIC, VERSION, kind, seq & 0xFFFFFFFF, len(rid)) + rid


def decode(data: bytes) -> Probe:
    if len(data) < _HEAD.size or len(data) > MAX_DATAGRAM:
        raise MalformedPacket(f"bad length {len(data)}")
    magic, version, kind, seq, rlen = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise MalformedPacket("bad magic")
    if version != VERSION:
        raise MalformedPacket(f"unsupported version {version}")
    if kind not in (PROBE, PROBE_REPLY):
        raise MalformedPacket(f"unknown type {kind}")
    rid = data[_HEAD.size:]
    if len(rid) != rlen or not _REGION.match(rid):
        raise MalformedPacket("bad region id")
    return Probe(kind, seq, rid.decode())
