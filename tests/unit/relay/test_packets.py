"""Relay datagrams: encoding, and strict decoding that only ever raises MalformedPacket."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.packets import (
    MAGIC,
    MAX_DATAGRAM,
    PROBE,
    PROBE_REPLY,
    VERSION,
    MalformedPacket,
    Probe,
    decode,
    encode_probe,
)

HEAD = struct.Struct("!2sBBIB")
region_ids = st.from_regex(r"[a-z0-9-]{2,32}", fullmatch=True)
seqs = st.integers(0, 2**32 - 1)
kinds = st.sampled_from([PROBE, PROBE_REPLY])


def raw(magic=MAGIC, version=VERSION, kind=PROBE, seq=1, rlen=None, region=b"fra"):
    rlen = len(region) if rlen is None else rlen
    return HEAD.pack(magic, version, kind, seq, rlen) + region


def test_encode_layout():
    data = encode_probe(PROBE, 0x01020304, "fra")
    assert data == b"SM" + bytes([VERSION, PROBE]) + b"\x01\x02\x03\x04" + b"\x03" + b"fra"
    assert len(data) == HEAD.size + 3


def test_round_trip_example():
    assert decode(encode_probe(PROBE_REPLY, 7, "sao-paulo")) == Probe(PROBE_REPLY, 7, "sao-paulo")


@settings(max_examples=200, deadline=None)
@given(kinds, seqs, region_ids)
def test_round_trip(kind, seq, region):
    packet = decode(encode_probe(kind, seq, region))
    assert packet == Probe(kind, seq, region)
    assert isinstance(packet.region, str)


@settings(max_examples=100, deadline=None)
@given(st.integers(-(2**40), 2**40))
def test_sequence_wraps_to_32_bits(seq):
    assert decode(encode_probe(PROBE, seq, "ab")).seq == seq % 2**32


def test_raw_helper_builds_valid_packet():
    assert decode(raw()) == Probe(PROBE, 1, "fra")


@pytest.mark.parametrize("length", [0, 1, HEAD.size - 1])
def test_short_packet(length):
    with pytest.raises(MalformedPacket, match="bad length"):
        decode(encode_probe(PROBE, 1, "fra")[:length])


def test_header_only_is_a_bad_region():
    with pytest.raises(MalformedPacket, match="region"):
        decode(raw(region=b"", rlen=0))


def test_too_long_packet():
    data = raw() + b"a" * (MAX_DATAGRAM + 1 - len(raw()))
    assert len(data) == MAX_DATAGRAM + 1
    with pytest.raises(MalformedPacket, match=f"bad length {MAX_DATAGRAM + 1}"):
        decode(data)


def test_max_datagram_length_is_checked_by_content_not_length():
    data = raw() + b"a" * (MAX_DATAGRAM - len(raw()))
    assert len(data) == MAX_DATAGRAM
    with pytest.raises(MalformedPacket, match="region"):
        decode(data)


@pytest.mark.parametrize("magic", [b"SX", b"sm", b"\x00\x00", b"MS"])
def test_bad_magic(magic):
    with pytest.raises(MalformedPacket, match="magic"):
        decode(raw(magic=magic))


@pytest.mark.parametrize("version", [0, 2, 255])
def test_bad_version(version):
    with pytest.raises(MalformedPacket, match=f"version {version}"):
        decode(raw(version=version))


@pytest.mark.parametrize("kind", [0, 3, 255])
def test_unknown_type(kind):
    with pytest.raises(MalformedPacket, match=f"type {kind}"):
        decode(raw(kind=kind))


@pytest.mark.parametrize("rlen", [0, 2, 4, 255])
def test_region_length_mismatch(rlen):
    with pytest.raises(MalformedPacket, match="region"):
        decode(raw(region=b"fra", rlen=rlen))


def test_trailing_bytes_are_a_length_mismatch():
    with pytest.raises(MalformedPacket, match="region"):
        decode(encode_probe(PROBE, 1, "fra") + b"x")


@pytest.mark.parametrize(
    "region",
    [
        b"a",  # too short
        b"a" * 33,  # too long
        b"Fra",  # upper case
        b"fr_a",
        b"fr a",
        b"fr.a",
        b"fra\n",
        b"\nfra",
        b"fr\x00a",
        "zürich".encode(),
        b"\xff\xfe",
    ],
)
def test_invalid_region(region):
    with pytest.raises(MalformedPacket, match="region"):
        decode(raw(region=region))


@pytest.mark.parametrize("region", [b"ab", b"a" * 32, b"us-east-1", b"0-9"])
def test_valid_region_edges(region):
    assert decode(raw(region=region)).region == region.decode()


def test_malformed_packet_is_a_value_error():
    assert issubclass(MalformedPacket, ValueError)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=MAX_DATAGRAM + 20))
def test_arbitrary_bytes_only_raise_malformed(data):
    try:
        packet = decode(data)
    except MalformedPacket:
        return
    assert packet.kind in (PROBE, PROBE_REPLY)
    assert encode_probe(packet.kind, packet.seq, packet.region) == data


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([MAGIC, b"SN"]),
    st.integers(0, 3),
    st.integers(0, 4),
    seqs,
    st.integers(0, 255),
    st.binary(max_size=40),
)
def test_near_valid_headers_only_raise_malformed(magic, version, kind, seq, rlen, tail):
    data = HEAD.pack(magic, version, kind, seq, rlen) + tail
    try:
        packet = decode(data)
    except MalformedPacket:
        return
    assert (magic, version, kind in (PROBE, PROBE_REPLY), rlen) == (MAGIC, VERSION, True, len(tail))
    assert packet == Probe(kind, seq, tail.decode())
