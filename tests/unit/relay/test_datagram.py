"""Relay-to-relay datagrams: wire format, encryption, key epochs, strict decoding, BIER-style
fan-out."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import struct
from collections import Counter, deque

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.datagram import (
    ACK,
    EPOCH_AT,
    KINDS,
    MAX_DATAGRAM,
    MEDIA,
    MESSAGE,
    MIN_DATAGRAM,
    VERSION,
    BadDatagram,
    Datagram,
    Nonces,
    decode,
    encode,
    forward,
    replay_id,
    seal,
    split,
)

KEY = b"k" * 32
HEAD = struct.Struct("!BBBBBBHQ12s")
NONCE = b"n" * 12


def dg(**kw) -> Datagram:
    base = dict(kind=MEDIA, zone="eu", channel="room-1", destinations=("fra", "ams"),
                hop_limit=8, seq=7, publisher="alice", payload=b"hello")
    base.update(kw)
    return Datagram(**base)


def sign(body: bytes, key: bytes = KEY, nonce: bytes = NONCE) -> bytes:
    """A sealed part: the body (a head carrying `nonce`, then fields and payload) with what
    follows the fields its head announces encrypted, and the tag."""
    opened = min(len(body), HEAD.size + body[2] + body[3] + body[4])
    return body[:opened] + AESGCM(hashlib.sha256(key).digest()).encrypt(
        nonce, body[opened:], body[:opened])


def raw(version=VERSION, kind=MEDIA, hop=8, zone=b"eu", channel=b"ch", pub=b"p",
        regions=(b"fra", b"ams"), seq=1, payload=b"x", count=None, zlen=None, clen=None,
        size=None, tail=b"", epoch=0) -> bytes:
    """A datagram built by hand: any field may lie, the tag is genuine."""
    fields = zone + channel + pub + payload
    head = HEAD.pack(version, kind, len(zone) if zlen is None else zlen,
                     len(channel) if clen is None else clen, len(pub), epoch,
                     HEAD.size + len(fields) if size is None else size, seq, NONCE)
    regs = b"".join(bytes([len(r)]) + r for r in regions)
    return sign(head + fields) + bytes([hop, len(regions) if count is None else count]) + \
        regs + tail


def code_of(data: bytes, key: bytes = KEY) -> str:
    with pytest.raises(BadDatagram) as e:
        decode(data, key)
    return e.value.reason_code


# --- wire format -----------------------------------------------------------------------------

_regions = st.from_regex(r"[a-z0-9-]{2,32}", fullmatch=True)
_utf8 = st.text(st.characters(blacklist_categories=("Cs",)), max_size=64)
_datagrams = st.builds(
    Datagram,
    kind=st.sampled_from(list(KINDS)),
    zone=st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True),
    channel=_utf8.filter(lambda s: 1 <= len(s.encode()) <= 64),
    destinations=st.lists(_regions, min_size=1, max_size=8, unique=True).map(tuple),
    hop_limit=st.integers(0, 255),
    seq=st.integers(0, 2**64 - 1),
    publisher=_utf8.filter(lambda s: len(s.encode()) <= 64),
    payload=st.binary(max_size=600),
)


@settings(max_examples=200, deadline=None)
@given(_datagrams)
def test_round_trip(d):
    data = encode(d, KEY)
    assert MIN_DATAGRAM <= len(data) <= MAX_DATAGRAM
    assert decode(data, KEY) == d


def test_layout_is_compact():
    d = dg(payload=b"")
    # 28-byte fixed header (12 of them the nonce), the fields, a 16-byte tag, then the hop
    # limit, the region count and one length byte per region
    assert len(encode(d, KEY)) == 28 + 2 + 6 + 5 + 16 + 2 + (1 + 3) * 2


def test_wrong_key_is_bad_tag():
    assert code_of(encode(dg(), KEY), b"other key") == "bad-tag"


def test_tampering_the_sealed_part_is_rejected():
    """Anywhere in the sealed part: header, epoch, nonce, fields, ciphertext, tag."""
    data = encode(dg(), KEY)
    sealed = len(data) - 2 - 2 * 4  # routing state: hop limit, count, two 3-letter regions
    for i, flip in itertools.product(range(sealed), (0x01, 0x80, 0xFF)):
        bad = bytearray(data)
        bad[i] ^= flip
        code = code_of(bytes(bad))
        assert code in ("bad-tag", "version", "kind", "field")
        if i >= 5 and i not in (6, 7):  # past version, kind, field lengths and sealed length
            assert code == "bad-tag"
    for bad in (data[:-1], data + b"\0", data[1:]):
        assert code_of(bad) in ("bad-tag", "version", "kind", "short", "field")


def test_payload_is_encrypted():
    """Nothing of the payload shows in the wire bytes; the header, zone, channel and publisher
    travel in clear (authenticated), as routing needs them."""
    payload = b"the secret words of a chat message, long enough to spot" * 4
    data = encode(dg(payload=payload, publisher="alice-stream"), KEY)
    for i in range(len(payload) - 7):
        assert payload[i:i + 8] not in data
    assert b"room-1" in data and b"alice-stream" in data
    assert decode(data, KEY).payload == payload
    # the same payload sealed twice (fresh nonces) gives different ciphertexts
    again = encode(dg(payload=payload, publisher="alice-stream"), KEY)
    assert again[28 + 2 + 6 + 12:] != data[28 + 2 + 6 + 12:]


def test_epoch_picks_the_key():
    old, new = b"o" * 32, b"n" * 32
    for epoch, key in ((7, old), (8, new)):
        data = encode(dg(epoch=epoch), key)
        assert data[EPOCH_AT] == epoch
        assert decode(data, {7: old, 8: new}).epoch == epoch
        assert decode(data, {7: old, 8: new}).payload == b"hello"
    assert code_of(encode(dg(epoch=9), new), {7: old, 8: new}) == "epoch"
    assert code_of(encode(dg(epoch=9), new), {}) == "epoch"
    # a key of the right epoch that is not the one sealed: the tag says so
    assert code_of(encode(dg(epoch=7), new), {7: old, 8: new}) == "bad-tag"
    # the epoch is sealed: moving a datagram to another epoch breaks its tag
    moved = bytearray(encode(dg(epoch=8), new))
    moved[EPOCH_AT] = 7
    assert code_of(bytes(moved), {7: new, 8: new}) == "bad-tag"
    for bad in (-1, 256, "1"):
        with pytest.raises(BadDatagram) as e:
            encode(dg(epoch=bad), KEY)
        assert e.value.reason_code == "field"


def test_transit_checks_the_tag_over_ciphertext_and_tag_alone():
    """What a transit relay does: decrypt the contiguous ciphertext and tag, with the head and
    fields as associated data, and discard the result."""
    data = encode(dg(payload=b"p" * 300), KEY)
    size = HEAD.unpack_from(data)[6]
    opened = HEAD.size + 2 + 6 + 5
    aead = AESGCM(hashlib.sha256(KEY).digest())
    view = memoryview(data)
    assert aead.decrypt(data[16:28], view[opened:size + 16], view[:opened]) == b"p" * 300
    bad = bytearray(data)
    bad[size - 1] ^= 1
    with pytest.raises(InvalidTag):
        aead.decrypt(bytes(bad[16:28]), memoryview(bad)[opened:size + 16],
                     memoryview(bad)[:opened])


def test_nonces_number_a_senders_datagrams():
    nonces = Nonces()
    a, b = seal(dg(), KEY, nonces()), seal(dg(), KEY, nonces())
    assert replay_id(a) == (nonces.prefix, 1) and replay_id(b) == (nonces.prefix, 2)
    assert Nonces().prefix != nonces.prefix
    nonces.counter = itertools.count(2**32 - 1)
    last, wrapped = nonces(), nonces()
    assert last[8:] == b"\xff" * 4 and wrapped[:8] == nonces.prefix != last[:8]
    assert wrapped[8:] == (1).to_bytes(4, "big")


def test_routing_state_is_not_sealed_but_parsed_strictly():
    """Relays rewrite the hop limit and split the destination set without re-sealing."""
    data = encode(dg(), KEY)
    tail = len(data) - 2 - 2 * 4
    lowered = bytearray(data)
    lowered[tail] = 3
    assert decode(bytes(lowered), KEY).hop_limit == 3
    only_fra = data[:tail] + bytes([8, 1, 3]) + b"fra"
    assert decode(only_fra, KEY).destinations == ("fra",)
    assert decode(only_fra, KEY).payload == b"hello"
    for bad in (data[:tail] + bytes([8, 0]), data[:tail] + bytes([8, 1, 3]) + b"FRA",
                data[:tail] + bytes([8, 2, 3]) + b"fra", only_fra + b"!"):
        assert code_of(bad) == "field"


def test_forwarded_copies_keep_the_sealed_part():
    d = decode(encode(dg(destinations=("fra", "ams", "waw")), KEY), KEY)
    _, copies, _ = forward(d, {"fra": "fra", "ams": "fra", "waw": "waw"}, "here")
    for copy in copies.values():
        data = encode(copy, b"a key that is not used: the seal is reused")
        assert data.startswith(d.sealed)
        assert decode(data, KEY) == copy


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "short"),
        (raw()[: MIN_DATAGRAM - 1], "short"),
        (b"\x02\x01" + b"\0" * (MAX_DATAGRAM - 1), "too-large"),
        (raw(version=0), "version"),
        (raw(version=1), "version"),
        (raw(version=2), "version"),  # the payload in clear under a GMAC: no longer taken
        (raw(kind=0), "kind"),
        (raw(kind=7), "kind"),
        (raw(zone=b""), "field"),
        (raw(zone=b"EU"), "field"),
        (raw(zone=b"e_u"), "field"),
        (raw(zone=b"z" * 33), "field"),
        (raw(channel=b""), "field"),
        (raw(channel=b"c" * 65), "field"),
        (raw(channel=b"\xff\xfe"), "field"),
        (raw(pub=b"p" * 65), "field"),
        (raw(pub=b"\xc3"), "field"),
        (raw(regions=()), "field"),
        (raw(regions=tuple(b"r%02d" % i for i in range(65))[:1], count=65), "field"),
        (raw(regions=(b"f",)), "field"),
        (raw(regions=(b"FRA",)), "field"),
        (raw(regions=(b"r" * 33,)), "field"),
        (raw(regions=(b"fra", b"fra")), "field"),
        (raw(regions=(b"fra",), count=3, payload=b""), "field"),
        (raw(zlen=200, payload=b""), "field"),
        (raw(clen=250, payload=b""), "field"),
        (raw(zlen=30, payload=b""), "field"),
        (raw(size=10), "field"),
        (raw(size=2000), "field"),
        (raw(tail=b"?"), "field"),
    ],
)
def test_malformed(data, code):
    assert code_of(data) == code


def test_max_size_accepted_and_over_rejected():
    d = dg(payload=b"")
    room = MAX_DATAGRAM - len(encode(d, KEY))
    assert len(encode(dg(payload=b"x" * room), KEY)) == MAX_DATAGRAM
    with pytest.raises(BadDatagram) as e:
        encode(dg(payload=b"x" * (room + 1)), KEY)
    assert e.value.reason_code == "too-large"
    assert code_of(b"\x01\x01" + b"\0" * MAX_DATAGRAM) == "too-large"


@pytest.mark.parametrize(
    "changes, code",
    [
        (dict(version=1), "version"),
        (dict(kind=9), "kind"),
        (dict(zone=""), "field"),
        (dict(zone="EU"), "field"),
        (dict(zone="z" * 33), "field"),
        (dict(channel=""), "field"),
        (dict(channel="é" * 33), "field"),
        (dict(channel="\ud800"), "field"),
        (dict(publisher="p" * 65), "field"),
        (dict(destinations=()), "field"),
        (dict(destinations=("fra", "fra")), "field"),
        (dict(destinations=("f",)), "field"),
        (dict(destinations=("münchen",)), "field"),
        (dict(destinations=tuple(f"r{i:02d}" for i in range(65))), "field"),
        (dict(hop_limit=256), "field"),
        (dict(hop_limit=-1), "field"),
        (dict(seq=2**64), "field"),
        (dict(seq=-1), "field"),
    ],
)
def test_encode_rejects_bad_fields(changes, code):
    with pytest.raises(BadDatagram) as e:
        encode(dg(**changes), KEY)
    assert e.value.reason_code == code


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500))
def test_arbitrary_bytes_raise_only_bad_datagram(data):
    with pytest.raises(BadDatagram):
        decode(data, KEY)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([MEDIA, MESSAGE, ACK]), st.integers(0, 255), st.integers(0, 255),
       st.integers(0, 255), st.binary(max_size=200), st.binary(max_size=40))
def test_sealed_arbitrary_fields_decode_strictly(kind, zlen, clen, plen, fields, tail):
    """Even genuinely sealed garbage raises only BadDatagram; what decodes re-encodes exactly."""
    head = HEAD.pack(VERSION, kind, zlen, clen, plen, 0, HEAD.size + len(fields), 1, NONCE)
    data = sign(head + fields) + tail
    try:
        d = decode(data, KEY)
    except BadDatagram:
        return
    assert encode(d, KEY) == data
    assert encode(dataclasses.replace(d, sealed=b""), KEY)[:16] == head[:16]  # nonce aside


# --- fan-out ---------------------------------------------------------------------------------

def test_split_groups_by_next_hop():
    hops = {"ams": "ams", "lon": "lon", "nyc": "lon", "sin": None}
    local, groups, unroutable = split(["fra", "ams", "lon", "nyc", "sin", "syd"], hops, "fra")
    assert local == {"fra"}
    assert groups == {"ams": frozenset({"ams"}), "lon": frozenset({"lon", "nyc"})}
    assert unroutable == {"sin", "syd"}


def test_split_next_hop_to_self_is_unroutable():
    assert split(["ams"], {"ams": "fra"}, "fra") == (set(), {}, {"ams"})


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from("abcdefgh"), max_size=10),
    st.dictionaries(st.sampled_from("abcdefgh"), st.none() | st.sampled_from("wxyz")),
    st.sampled_from("abcdefgh"),
)
def test_split_partitions_the_destinations(dests, hops, here):
    local, groups, unroutable = split(dests, hops, here)
    parts = [local, unroutable, *groups.values()]
    assert set().union(*parts) == set(dests)
    assert sum(len(p) for p in parts) == len(set(dests))  # pairwise disjoint
    assert all(groups.values())  # no empty copies
    assert local <= {here}
    for hop, sub in groups.items():
        assert all(hops[x] == hop for x in sub)


def test_forward_decrements_hop_limit():
    d = dg(destinations=("fra", "ams", "nyc", "lon", "sin"), hop_limit=3)
    local, copies, dropped = forward(d, {"ams": "ams", "nyc": "lon", "lon": "lon"}, "fra")
    assert local is True
    assert set(copies) == {"ams", "lon"}
    assert copies["ams"] == dg(destinations=("ams",), hop_limit=2)
    assert copies["lon"] == dg(destinations=("lon", "nyc"), hop_limit=2)
    assert dropped == {"sin"}


def test_forward_with_zero_hop_limit_only_delivers_locally():
    d = dg(destinations=("fra", "ams"), hop_limit=0)
    assert forward(d, {"ams": "ams"}, "fra") == (True, {}, {"ams"})
    assert forward(dg(destinations=("ams",), hop_limit=0), {"ams": "ams"}, "fra") == (
        False, {}, {"ams"})


# --- a small mesh ----------------------------------------------------------------------------

# Tree of links fra-ams, fra-lon, lon-nyc, fra-sin: every relay's next hop per destination.
REGIONS = ("fra", "ams", "lon", "nyc", "sin")
TABLES = {
    "fra": {"ams": "ams", "lon": "lon", "nyc": "lon", "sin": "sin"},
    "ams": {"fra": "fra", "lon": "fra", "nyc": "fra", "sin": "fra"},
    "lon": {"fra": "fra", "ams": "fra", "nyc": "nyc", "sin": "fra"},
    "nyc": {"fra": "lon", "ams": "lon", "lon": "lon", "sin": "lon"},
    "sin": {"fra": "fra", "ams": "fra", "lon": "fra", "nyc": "fra"},
}


def simulate(src: str, d: Datagram, tables=TABLES):
    delivered, links, dropped = Counter(), Counter(), set()
    queue = deque([(src, encode(d, KEY))])
    while queue:
        here, data = queue.popleft()
        local, copies, lost = forward(decode(data, KEY), tables[here], here)
        delivered[here] += local
        dropped |= lost
        for hop, copy in copies.items():
            links[here, hop] += 1
            queue.append((hop, encode(copy, KEY)))
    return delivered, links, dropped


def test_tables_are_loop_free():
    for src, dst in itertools.permutations(REGIONS, 2):
        seen, at = {src}, src
        while at != dst:
            at = TABLES[at][dst]
            assert at not in seen
            seen.add(at)


@pytest.mark.parametrize("src", REGIONS)
def test_mesh_delivers_each_destination_once(src):
    for n in range(1, len(REGIONS) + 1):
        for dests in itertools.combinations(REGIONS, n):
            delivered, links, dropped = simulate(src, dg(destinations=dests, hop_limit=8))
            assert +delivered == Counter(dict.fromkeys(dests, 1))
            assert all(c == 1 for c in links.values())
            assert not dropped


def test_mesh_one_copy_on_shared_link():
    delivered, links, _ = simulate("ams", dg(destinations=("lon", "nyc", "sin")))
    assert links[("ams", "fra")] == 1
    assert set(links) == {("ams", "fra"), ("fra", "lon"), ("lon", "nyc"), ("fra", "sin")}
    assert +delivered == Counter({"lon": 1, "nyc": 1, "sin": 1})


def test_mesh_hop_limit_and_unroutable():
    delivered, _, dropped = simulate("sin", dg(destinations=("fra", "lon", "nyc"), hop_limit=2))
    assert +delivered == Counter({"fra": 1, "lon": 1})
    assert dropped == {"nyc"}
    tables = {**TABLES, "fra": {**TABLES["fra"], "nyc": None}}  # outside the zone
    delivered, _, dropped = simulate("ams", dg(destinations=("lon", "nyc")), tables)
    assert +delivered == Counter({"lon": 1})
    assert dropped == {"nyc"}
