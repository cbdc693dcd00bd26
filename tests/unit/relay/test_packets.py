"""Relay datagrams: encoding, and strict, authenticated decoding that only ever raises
MalformedPacket (with its reason)."""

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.packets import (
    MAGIC,
    MAX_DATAGRAM,
    PROBE,
    PROBE_REPLY,
    TAG_SIZE,
    VERSION,
    MalformedPacket,
    Probe,
    ProbeKeys,
    decode,
    encode_probe,
    probe_key,
)

HEAD = struct.Struct("!2sBBIB")
region_ids = st.from_regex(r"[a-z0-9-]{2,32}", fullmatch=True)
seqs = st.integers(0, 2**32 - 1)
kinds = st.sampled_from([PROBE, PROBE_REPLY])
FABRIC = {1: b"f" * 32, 3: b"g" * 32}  # fabric keys by epoch
KEYS = ProbeKeys.derive(1, FABRIC)  # sends under 1, accepts 1 and 3
TRAILER = 1 + TAG_SIZE


def mac(body: bytes, epoch: int = 1) -> bytes:
    """The tag the layout defines, computed here independently of the module."""
    key = hashlib.sha256(b"skymesh probe v2\0" + FABRIC[epoch]).digest()
    return hashlib.blake2s(body, key=key, digest_size=16).digest()


def raw(magic=MAGIC, version=VERSION, kind=PROBE, seq=1, rlen=None, region=b"fra", epoch=1):
    """A datagram with a valid tag over whatever header and region it is given."""
    rlen = len(region) if rlen is None else rlen
    body = HEAD.pack(magic, version, kind, seq, rlen) + region + bytes([epoch])
    return body + mac(body, epoch)


def reason(data: bytes, keys: ProbeKeys = KEYS) -> str:
    with pytest.raises(MalformedPacket) as e:
        decode(data, keys)
    return e.value.reason


def test_encode_layout():
    data = encode_probe(PROBE, 0x01020304, "fra", KEYS)
    body = b"SM" + bytes([VERSION, PROBE]) + b"\x01\x02\x03\x04" + b"\x03" + b"fra" + b"\x01"
    assert VERSION == 2
    assert data == body + mac(body)
    assert len(data) == HEAD.size + 3 + 1 + 16


def test_probe_keys_are_derived_with_domain_separation():
    assert KEYS.epoch == 1 and KEYS.can_send and KEYS.epochs == (1, 3)
    assert KEYS.by_epoch[1] == hashlib.sha256(b"skymesh probe v2\0" + FABRIC[1]).digest()
    assert KEYS.by_epoch[1] == probe_key(FABRIC[1])
    assert KEYS.by_epoch[1] not in (FABRIC[1], hashlib.sha256(FABRIC[1]).digest())
    assert b"f" * 32 not in repr(KEYS).encode() and "by_epoch" not in repr(KEYS)
    # what the fabric would leave out is left out; a relay may accept without sealing
    odd = ProbeKeys.derive(2, {1: b"", 256: b"x", -1: b"y", 3: b"z"})
    assert odd.epochs == (3,) and not odd.can_send
    with pytest.raises(ValueError, match="epoch 2"):
        encode_probe(PROBE, 1, "fra", odd)
    assert encode_probe(PROBE, 1, "fra", odd, epoch=3)


def test_round_trip_example():
    assert decode(encode_probe(PROBE_REPLY, 7, "sao-paulo", KEYS), KEYS) == \
        Probe(PROBE_REPLY, 7, "sao-paulo", 1)


def test_any_accepted_epoch_decodes():
    data = encode_probe(PROBE, 7, "fra", KEYS, epoch=3)
    assert data[-TRAILER] == 3
    assert decode(data, KEYS) == Probe(PROBE, 7, "fra", 3)
    # a relay that has moved to epoch 3 alone still accepts it, and no longer epoch 1
    later = ProbeKeys.derive(3, {3: FABRIC[3]})
    assert decode(data, later).epoch == 3
    assert reason(encode_probe(PROBE, 7, "fra", KEYS), later) == "epoch"


@settings(max_examples=200, deadline=None)
@given(kinds, seqs, region_ids)
def test_round_trip(kind, seq, region):
    packet = decode(encode_probe(kind, seq, region, KEYS), KEYS)
    assert packet == Probe(kind, seq, region, 1)
    assert isinstance(packet.region, str)


@settings(max_examples=100, deadline=None)
@given(st.integers(-(2**40), 2**40))
def test_sequence_wraps_to_32_bits(seq):
    assert decode(encode_probe(PROBE, seq, "ab", KEYS), KEYS).seq == seq % 2**32


def test_raw_helper_builds_valid_packet():
    assert decode(raw(), KEYS) == Probe(PROBE, 1, "fra", 1)
    assert decode(raw(epoch=3), KEYS) == Probe(PROBE, 1, "fra", 3)


# -- authentication ----------------------------------------------------------------------------


def test_tampering_with_any_byte_is_refused():
    """Every bit of every byte: the fixed header's magic and version fail as malformed, the
    epoch as unknown (or as a bad tag under the other accepted key), everything else (type,
    sequence, region length, region, tag) as a bad tag."""
    data = encode_probe(PROBE_REPLY, 0x01020304, "us-east-1", KEYS)
    for at in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[at] ^= 1 << bit
            got = reason(bytes(bad))
            if at < 3:  # magic, version
                assert got == "malformed", (at, bit)
            elif at == len(data) - TRAILER:  # the epoch: 1 -> 3 is accepted, under another key
                assert got == ("bad-tag" if bad[at] == 3 else "epoch"), (at, bit)
            else:
                assert got == "bad-tag", (at, bit)


def test_forgeries_are_bad_tags_or_unknown_epochs():
    genuine = encode_probe(PROBE_REPLY, 9, "ams", KEYS)
    other = ProbeKeys.derive(1, {1: b"x" * 32})
    assert reason(encode_probe(PROBE_REPLY, 9, "ams", other)) == "bad-tag"
    raw_fabric = ProbeKeys(1, {1: FABRIC[1]})  # keyed with the fabric key itself
    assert reason(encode_probe(PROBE_REPLY, 9, "ams", raw_fabric)) == "bad-tag"
    assert reason(genuine[:-TAG_SIZE] + bytes(TAG_SIZE)) == "bad-tag"
    # cut or extended, the epoch and tag are read at other offsets: never accepted
    for cut in (genuine[:-1], genuine + b"x", genuine[:-2] + genuine[-1:]):
        assert reason(cut) in ("epoch", "bad-tag")
    assert reason(encode_probe(PROBE, 9, "ams", ProbeKeys.derive(2, {2: b"f" * 32}))) == \
        "epoch"
    # no key at all: nothing decodes
    with pytest.raises(MalformedPacket, match="epoch 1") as e:
        decode(genuine, ProbeKeys(0))
    assert e.value.reason == "epoch"


def test_the_unauthenticated_version_1_is_malformed():
    v1 = HEAD.pack(MAGIC, 1, PROBE_REPLY, 9, 3) + b"ams"
    assert reason(v1) == "malformed"
    assert reason(v1 + bytes(TRAILER)) == "malformed"  # long enough: still version 1


def test_reasons_default_to_malformed():
    assert MalformedPacket("x").reason == "malformed"
    assert MalformedPacket("x", "bad-tag").reason == "bad-tag"


# -- strict decoding ---------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, HEAD.size - 1, HEAD.size, HEAD.size + TRAILER - 1])
def test_short_packet(length):
    with pytest.raises(MalformedPacket, match="bad length") as e:
        decode(encode_probe(PROBE, 1, "fra", KEYS)[:length], KEYS)
    assert e.value.reason == "malformed"


def test_header_only_is_a_bad_region():
    with pytest.raises(MalformedPacket, match="region"):
        decode(raw(region=b"", rlen=0), KEYS)


def test_too_long_packet():
    data = raw(region=b"a" * (MAX_DATAGRAM + 1 - len(raw(region=b""))), rlen=0)
    assert len(data) == MAX_DATAGRAM + 1
    with pytest.raises(MalformedPacket, match=f"bad length {MAX_DATAGRAM + 1}"):
        decode(data, KEYS)


def test_max_datagram_length_is_checked_by_content_not_length():
    data = raw(region=b"a" * (MAX_DATAGRAM - len(raw(region=b""))), rlen=0)
    assert len(data) == MAX_DATAGRAM
    with pytest.raises(MalformedPacket, match="region"):
        decode(data, KEYS)


@pytest.mark.parametrize("magic", [b"SX", b"sm", b"\x00\x00", b"MS"])
def test_bad_magic(magic):
    with pytest.raises(MalformedPacket, match="magic"):
        decode(raw(magic=magic), KEYS)


@pytest.mark.parametrize("version", [0, 1, 3, 255])
def test_bad_version(version):
    with pytest.raises(MalformedPacket, match=f"version {version}"):
        decode(raw(version=version), KEYS)


@pytest.mark.parametrize("kind", [0, 3, 255])
def test_unknown_type(kind):
    with pytest.raises(MalformedPacket, match=f"type {kind}"):
        decode(raw(kind=kind), KEYS)


@pytest.mark.parametrize("rlen", [0, 2, 4, 255])
def test_region_length_mismatch(rlen):
    with pytest.raises(MalformedPacket, match="region"):
        decode(raw(region=b"fra", rlen=rlen), KEYS)


def test_trailing_bytes_under_a_valid_tag_are_a_length_mismatch():
    with pytest.raises(MalformedPacket, match="region"):
        decode(raw(region=b"fra\x01" + mac(raw()[:-TAG_SIZE]), rlen=3), KEYS)


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
        decode(raw(region=region), KEYS)


@pytest.mark.parametrize("region", [b"ab", b"a" * 32, b"us-east-1", b"0-9"])
def test_valid_region_edges(region):
    assert decode(raw(region=region), KEYS).region == region.decode()


def test_malformed_packet_is_a_value_error():
    assert issubclass(MalformedPacket, ValueError)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=MAX_DATAGRAM + 20))
def test_arbitrary_bytes_only_raise_malformed(data):
    try:
        packet = decode(data, KEYS)
    except MalformedPacket as e:
        assert e.reason in ("malformed", "epoch", "bad-tag")
        return
    assert packet.kind in (PROBE, PROBE_REPLY)
    assert encode_probe(packet.kind, packet.seq, packet.region, KEYS, packet.epoch) == data


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([MAGIC, b"SN"]),
    st.integers(0, 3),
    st.integers(0, 4),
    seqs,
    st.integers(0, 255),
    st.binary(max_size=40),
    st.sampled_from([1, 2, 3]),
)
def test_near_valid_headers_only_raise_malformed(magic, version, kind, seq, rlen, tail, epoch):
    """Validly tagged (under epoch 1 or 3; 2 is unknown) whatever the header says."""
    body = HEAD.pack(magic, version, kind, seq, rlen) + tail + bytes([epoch])
    data = body + mac(body, epoch if epoch in FABRIC else 1)
    try:
        packet = decode(data, KEYS)
    except MalformedPacket as e:
        assert e.reason != "bad-tag"
        assert (e.reason == "epoch") == (magic == MAGIC and version == VERSION and epoch == 2)
        return
    assert (magic, version, kind in (PROBE, PROBE_REPLY), rlen) == (MAGIC, VERSION, True, len(tail))
    assert packet == Probe(kind, seq, tail.decode(), epoch)
