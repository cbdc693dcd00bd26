"""SFrame (RFC 9605) as sdk/e2ee.py seals a call's frames and messages, checked against the
RFC's own test vectors, then the ways a frame is refused and the text round trip.

The vectors are RFC 9605 Appendix C ("Test Vectors"): C.1 header encoding (all 289 KID/CTR
pairs) and C.4 SFrame encryption/decryption for cipher suite 0x0004, AES_128_GCM_SHA256_128
(its intermediate sframe_key, sframe_salt and nonce included). They are copied from the
working group's repository, github.com/sframe-wg/sframe, file test-vectors/test-vectors.json
at commit 025d568a506937c901af8e7f0a663f39aeaf67ad, the JSON form the RFC cites as
[TestVectors] (the header and suite 0x0004 vectors are unchanged at the repository's HEAD,
3d07d8ffb23795cd7acc188bd8910dce0c5aa253). The RFC's ct is header || ciphertext || tag, and
its aad is header || metadata.
"""

from __future__ import annotations

import pytest

from sdk.e2ee import NT, E2EEError, SFrame, _nonce, decode_header, derive, encode_header

# (kid, ctr, encoded header): RFC 9605 C.1, test-vectors.json "header"
HEADER_VECTORS = [
    (0x0, 0x0, "00"),
    (0x0, 0x1, "01"),
    (0x0, 0xff, "08ff"),
    (0x0, 0x100, "090100"),
    (0x0, 0xffff, "09ffff"),
    (0x0, 0x10000, "0a010000"),
    (0x0, 0xffffff, "0affffff"),
    (0x0, 0x1000000, "0b01000000"),
    (0x0, 0xffffffff, "0bffffffff"),
    (0x0, 0x100000000, "0c0100000000"),
    (0x0, 0xffffffffff, "0cffffffffff"),
    (0x0, 0x10000000000, "0d010000000000"),
    (0x0, 0xffffffffffff, "0dffffffffffff"),
    (0x0, 0x1000000000000, "0e01000000000000"),
    (0x0, 0xffffffffffffff, "0effffffffffffff"),
    (0x0, 0x100000000000000, "0f0100000000000000"),
    (0x0, 0xffffffffffffffff, "0fffffffffffffffff"),
    (0x1, 0x0, "10"),
    (0x1, 0x1, "11"),
    (0x1, 0xff, "18ff"),
    (0x1, 0x100, "190100"),
    (0x1, 0xffff, "19ffff"),
    (0x1, 0x10000, "1a010000"),
    (0x1, 0xffffff, "1affffff"),
    (0x1, 0x1000000, "1b01000000"),
    (0x1, 0xffffffff, "1bffffffff"),
    (0x1, 0x100000000, "1c0100000000"),
    (0x1, 0xffffffffff, "1cffffffffff"),
    (0x1, 0x10000000000, "1d010000000000"),
    (0x1, 0xffffffffffff, "1dffffffffffff"),
    (0x1, 0x1000000000000, "1e01000000000000"),
    (0x1, 0xffffffffffffff, "1effffffffffffff"),
    (0x1, 0x100000000000000, "1f0100000000000000"),
    (0x1, 0xffffffffffffffff, "1fffffffffffffffff"),
    (0xff, 0x0, "80ff"),
    (0xff, 0x1, "81ff"),
    (0xff, 0xff, "88ffff"),
    (0xff, 0x100, "89ff0100"),
    (0xff, 0xffff, "89ffffff"),
    (0xff, 0x10000, "8aff010000"),
    (0xff, 0xffffff, "8affffffff"),
    (0xff, 0x1000000, "8bff01000000"),
    (0xff, 0xffffffff, "8bffffffffff"),
    (0xff, 0x100000000, "8cff0100000000"),
    (0xff, 0xffffffffff, "8cffffffffffff"),
    (0xff, 0x10000000000, "8dff010000000000"),
    (0xff, 0xffffffffffff, "8dffffffffffffff"),
    (0xff, 0x1000000000000, "8eff01000000000000"),
    (0xff, 0xffffffffffffff, "8effffffffffffffff"),
    (0xff, 0x100000000000000, "8fff0100000000000000"),
    (0xff, 0xffffffffffffffff, "8fffffffffffffffffff"),
    (0x100, 0x0, "900100"),
    (0x100, 0x1, "910100"),
    (0x100, 0xff, "980100ff"),
    (0x100, 0x100, "9901000100"),
    (0x100, 0xffff, "990100ffff"),
    (0x100, 0x10000, "9a0100010000"),
    (0x100, 0xffffff, "9a0100ffffff"),
    (0x100, 0x1000000, "9b010001000000"),
    (0x100, 0xffffffff, "9b0100ffffffff"),
    (0x100, 0x100000000, "9c01000100000000"),
    (0x100, 0xffffffffff, "9c0100ffffffffff"),
    (0x100, 0x10000000000, "9d0100010000000000"),
    (0x100, 0xffffffffffff, "9d0100ffffffffffff"),
    (0x100, 0x1000000000000, "9e010001000000000000"),
    (0x100, 0xffffffffffffff, "9e0100ffffffffffffff"),
    (0x100, 0x100000000000000, "9f01000100000000000000"),
    (0x100, 0xffffffffffffffff, "9f0100ffffffffffffffff"),
    (0xffff, 0x0, "90ffff"),
    (0xffff, 0x1, "91ffff"),
    (0xffff, 0xff, "98ffffff"),
    (0xffff, 0x100, "99ffff0100"),
    (0xffff, 0xffff, "99ffffffff"),
    (0xffff, 0x10000, "9affff010000"),
    (0xffff, 0xffffff, "9affffffffff"),
    (0xffff, 0x1000000, "9bffff01000000"),
    (0xffff, 0xffffffff, "9bffffffffffff"),
    (0xffff, 0x100000000, "9cffff0100000000"),
    (0xffff, 0xffffffffff, "9cffffffffffffff"),
    (0xffff, 0x10000000000, "9dffff010000000000"),
    (0xffff, 0xffffffffffff, "9dffffffffffffffff"),
    (0xffff, 0x1000000000000, "9effff01000000000000"),
    (0xffff, 0xffffffffffffff, "9effffffffffffffffff"),
    (0xffff, 0x100000000000000, "9fffff0100000000000000"),
    (0xffff, 0xffffffffffffffff, "9fffffffffffffffffffff"),
    (0x10000, 0x0, "a0010000"),
    (0x10000, 0x1, "a1010000"),
    (0x10000, 0xff, "a8010000ff"),
    (0x10000, 0x100, "a90100000100"),
    (0x10000, 0xffff, "a9010000ffff"),
    (0x10000, 0x10000, "aa010000010000"),
    (0x10000, 0xffffff, "aa010000ffffff"),
    (0x10000, 0x1000000, "ab01000001000000"),
    (0x10000, 0xffffffff, "ab010000ffffffff"),
    (0x10000, 0x100000000, "ac0100000100000000"),
    (0x10000, 0xffffffffff, "ac010000ffffffffff"),
    (0x10000, 0x10000000000, "ad010000010000000000"),
    (0x10000, 0xffffffffffff, "ad010000ffffffffffff"),
    (0x10000, 0x1000000000000, "ae01000001000000000000"),
    (0x10000, 0xffffffffffffff, "ae010000ffffffffffffff"),
    (0x10000, 0x100000000000000, "af0100000100000000000000"),
    (0x10000, 0xffffffffffffffff, "af010000ffffffffffffffff"),
    (0xffffff, 0x0, "a0ffffff"),
    (0xffffff, 0x1, "a1ffffff"),
    (0xffffff, 0xff, "a8ffffffff"),
    (0xffffff, 0x100, "a9ffffff0100"),
    (0xffffff, 0xffff, "a9ffffffffff"),
    (0xffffff, 0x10000, "aaffffff010000"),
    (0xffffff, 0xffffff, "aaffffffffffff"),
    (0xffffff, 0x1000000, "abffffff01000000"),
    (0xffffff, 0xffffffff, "abffffffffffffff"),
    (0xffffff, 0x100000000, "acffffff0100000000"),
    (0xffffff, 0xffffffffff, "acffffffffffffffff"),
    (0xffffff, 0x10000000000, "adffffff010000000000"),
    (0xffffff, 0xffffffffffff, "adffffffffffffffffff"),
    (0xffffff, 0x1000000000000, "aeffffff01000000000000"),
    (0xffffff, 0xffffffffffffff, "aeffffffffffffffffffff"),
    (0xffffff, 0x100000000000000, "afffffff0100000000000000"),
    (0xffffff, 0xffffffffffffffff, "afffffffffffffffffffffff"),
    (0x1000000, 0x0, "b001000000"),
    (0x1000000, 0x1, "b101000000"),
    (0x1000000, 0xff, "b801000000ff"),
    (0x1000000, 0x100, "b9010000000100"),
    (0x1000000, 0xffff, "b901000000ffff"),
    (0x1000000, 0x10000, "ba01000000010000"),
    (0x1000000, 0xffffff, "ba01000000ffffff"),
    (0x1000000, 0x1000000, "bb0100000001000000"),
    (0x1000000, 0xffffffff, "bb01000000ffffffff"),
    (0x1000000, 0x100000000, "bc010000000100000000"),
    (0x1000000, 0xffffffffff, "bc01000000ffffffffff"),
    (0x1000000, 0x10000000000, "bd01000000010000000000"),
    (0x1000000, 0xffffffffffff, "bd01000000ffffffffffff"),
    (0x1000000, 0x1000000000000, "be0100000001000000000000"),
    (0x1000000, 0xffffffffffffff, "be01000000ffffffffffffff"),
    (0x1000000, 0x100000000000000, "bf010000000100000000000000"),
    (0x1000000, 0xffffffffffffffff, "bf01000000ffffffffffffffff"),
    (0xffffffff, 0x0, "b0ffffffff"),
    (0xffffffff, 0x1, "b1ffffffff"),
    (0xffffffff, 0xff, "b8ffffffffff"),
    (0xffffffff, 0x100, "b9ffffffff0100"),
    (0xffffffff, 0xffff, "b9ffffffffffff"),
    (0xffffffff, 0x10000, "baffffffff010000"),
    (0xffffffff, 0xffffff, "baffffffffffffff"),
    (0xffffffff, 0x1000000, "bbffffffff01000000"),
    (0xffffffff, 0xffffffff, "bbffffffffffffffff"),
    (0xffffffff, 0x100000000, "bcffffffff0100000000"),
    (0xffffffff, 0xffffffffff, "bcffffffffffffffffff"),
    (0xffffffff, 0x10000000000, "bdffffffff010000000000"),
    (0xffffffff, 0xffffffffffff, "bdffffffffffffffffffff"),
    (0xffffffff, 0x1000000000000, "beffffffff01000000000000"),
    (0xffffffff, 0xffffffffffffff, "beffffffffffffffffffffff"),
    (0xffffffff, 0x100000000000000, "bfffffffff0100000000000000"),
    (0xffffffff, 0xffffffffffffffff, "bfffffffffffffffffffffffff"),
    (0x100000000, 0x0, "c00100000000"),
    (0x100000000, 0x1, "c10100000000"),
    (0x100000000, 0xff, "c80100000000ff"),
    (0x100000000, 0x100, "c901000000000100"),
    (0x100000000, 0xffff, "c90100000000ffff"),
    (0x100000000, 0x10000, "ca0100000000010000"),
    (0x100000000, 0xffffff, "ca0100000000ffffff"),
    (0x100000000, 0x1000000, "cb010000000001000000"),
    (0x100000000, 0xffffffff, "cb0100000000ffffffff"),
    (0x100000000, 0x100000000, "cc01000000000100000000"),
    (0x100000000, 0xffffffffff, "cc0100000000ffffffffff"),
    (0x100000000, 0x10000000000, "cd0100000000010000000000"),
    (0x100000000, 0xffffffffffff, "cd0100000000ffffffffffff"),
    (0x100000000, 0x1000000000000, "ce010000000001000000000000"),
    (0x100000000, 0xffffffffffffff, "ce0100000000ffffffffffffff"),
    (0x100000000, 0x100000000000000, "cf01000000000100000000000000"),
    (0x100000000, 0xffffffffffffffff, "cf0100000000ffffffffffffffff"),
    (0xffffffffff, 0x0, "c0ffffffffff"),
    (0xffffffffff, 0x1, "c1ffffffffff"),
    (0xffffffffff, 0xff, "c8ffffffffffff"),
    (0xffffffffff, 0x100, "c9ffffffffff0100"),
    (0xffffffffff, 0xffff, "c9ffffffffffffff"),
    (0xffffffffff, 0x10000, "caffffffffff010000"),
    (0xffffffffff, 0xffffff, "caffffffffffffffff"),
    (0xffffffffff, 0x1000000, "cbffffffffff01000000"),
    (0xffffffffff, 0xffffffff, "cbffffffffffffffffff"),
    (0xffffffffff, 0x100000000, "ccffffffffff0100000000"),
    (0xffffffffff, 0xffffffffff, "ccffffffffffffffffffff"),
    (0xffffffffff, 0x10000000000, "cdffffffffff010000000000"),
    (0xffffffffff, 0xffffffffffff, "cdffffffffffffffffffffff"),
    (0xffffffffff, 0x1000000000000, "ceffffffffff01000000000000"),
    (0xffffffffff, 0xffffffffffffff, "ceffffffffffffffffffffffff"),
    (0xffffffffff, 0x100000000000000, "cfffffffffff0100000000000000"),
    (0xffffffffff, 0xffffffffffffffff, "cfffffffffffffffffffffffffff"),
    (0x10000000000, 0x0, "d0010000000000"),
    (0x10000000000, 0x1, "d1010000000000"),
    (0x10000000000, 0xff, "d8010000000000ff"),
    (0x10000000000, 0x100, "d90100000000000100"),
    (0x10000000000, 0xffff, "d9010000000000ffff"),
    (0x10000000000, 0x10000, "da010000000000010000"),
    (0x10000000000, 0xffffff, "da010000000000ffffff"),
    (0x10000000000, 0x1000000, "db01000000000001000000"),
    (0x10000000000, 0xffffffff, "db010000000000ffffffff"),
    (0x10000000000, 0x100000000, "dc0100000000000100000000"),
    (0x10000000000, 0xffffffffff, "dc010000000000ffffffffff"),
    (0x10000000000, 0x10000000000, "dd010000000000010000000000"),
    (0x10000000000, 0xffffffffffff, "dd010000000000ffffffffffff"),
    (0x10000000000, 0x1000000000000, "de01000000000001000000000000"),
    (0x10000000000, 0xffffffffffffff, "de010000000000ffffffffffffff"),
    (0x10000000000, 0x100000000000000, "df0100000000000100000000000000"),
    (0x10000000000, 0xffffffffffffffff, "df010000000000ffffffffffffffff"),
    (0xffffffffffff, 0x0, "d0ffffffffffff"),
    (0xffffffffffff, 0x1, "d1ffffffffffff"),
    (0xffffffffffff, 0xff, "d8ffffffffffffff"),
    (0xffffffffffff, 0x100, "d9ffffffffffff0100"),
    (0xffffffffffff, 0xffff, "d9ffffffffffffffff"),
    (0xffffffffffff, 0x10000, "daffffffffffff010000"),
    (0xffffffffffff, 0xffffff, "daffffffffffffffffff"),
    (0xffffffffffff, 0x1000000, "dbffffffffffff01000000"),
    (0xffffffffffff, 0xffffffff, "dbffffffffffffffffffff"),
    (0xffffffffffff, 0x100000000, "dcffffffffffff0100000000"),
    (0xffffffffffff, 0xffffffffff, "dcffffffffffffffffffffff"),
    (0xffffffffffff, 0x10000000000, "ddffffffffffff010000000000"),
    (0xffffffffffff, 0xffffffffffff, "ddffffffffffffffffffffffff"),
    (0xffffffffffff, 0x1000000000000, "deffffffffffff01000000000000"),
    (0xffffffffffff, 0xffffffffffffff, "deffffffffffffffffffffffffff"),
    (0xffffffffffff, 0x100000000000000, "dfffffffffffff0100000000000000"),
    (0xffffffffffff, 0xffffffffffffffff, "dfffffffffffffffffffffffffffff"),
    (0x1000000000000, 0x0, "e001000000000000"),
    (0x1000000000000, 0x1, "e101000000000000"),
    (0x1000000000000, 0xff, "e801000000000000ff"),
    (0x1000000000000, 0x100, "e9010000000000000100"),
    (0x1000000000000, 0xffff, "e901000000000000ffff"),
    (0x1000000000000, 0x10000, "ea01000000000000010000"),
    (0x1000000000000, 0xffffff, "ea01000000000000ffffff"),
    (0x1000000000000, 0x1000000, "eb0100000000000001000000"),
    (0x1000000000000, 0xffffffff, "eb01000000000000ffffffff"),
    (0x1000000000000, 0x100000000, "ec010000000000000100000000"),
    (0x1000000000000, 0xffffffffff, "ec01000000000000ffffffffff"),
    (0x1000000000000, 0x10000000000, "ed01000000000000010000000000"),
    (0x1000000000000, 0xffffffffffff, "ed01000000000000ffffffffffff"),
    (0x1000000000000, 0x1000000000000, "ee0100000000000001000000000000"),
    (0x1000000000000, 0xffffffffffffff, "ee01000000000000ffffffffffffff"),
    (0x1000000000000, 0x100000000000000, "ef010000000000000100000000000000"),
    (0x1000000000000, 0xffffffffffffffff, "ef01000000000000ffffffffffffffff"),
    (0xffffffffffffff, 0x0, "e0ffffffffffffff"),
    (0xffffffffffffff, 0x1, "e1ffffffffffffff"),
    (0xffffffffffffff, 0xff, "e8ffffffffffffffff"),
    (0xffffffffffffff, 0x100, "e9ffffffffffffff0100"),
    (0xffffffffffffff, 0xffff, "e9ffffffffffffffffff"),
    (0xffffffffffffff, 0x10000, "eaffffffffffffff010000"),
    (0xffffffffffffff, 0xffffff, "eaffffffffffffffffffff"),
    (0xffffffffffffff, 0x1000000, "ebffffffffffffff01000000"),
    (0xffffffffffffff, 0xffffffff, "ebffffffffffffffffffffff"),
    (0xffffffffffffff, 0x100000000, "ecffffffffffffff0100000000"),
    (0xffffffffffffff, 0xffffffffff, "ecffffffffffffffffffffffff"),
    (0xffffffffffffff, 0x10000000000, "edffffffffffffff010000000000"),
    (0xffffffffffffff, 0xffffffffffff, "edffffffffffffffffffffffffff"),
    (0xffffffffffffff, 0x1000000000000, "eeffffffffffffff01000000000000"),
    (0xffffffffffffff, 0xffffffffffffff, "eeffffffffffffffffffffffffffff"),
    (0xffffffffffffff, 0x100000000000000, "efffffffffffffff0100000000000000"),
    (0xffffffffffffff, 0xffffffffffffffff, "efffffffffffffffffffffffffffffff"),
    (0x100000000000000, 0x0, "f00100000000000000"),
    (0x100000000000000, 0x1, "f10100000000000000"),
    (0x100000000000000, 0xff, "f80100000000000000ff"),
    (0x100000000000000, 0x100, "f901000000000000000100"),
    (0x100000000000000, 0xffff, "f90100000000000000ffff"),
    (0x100000000000000, 0x10000, "fa0100000000000000010000"),
    (0x100000000000000, 0xffffff, "fa0100000000000000ffffff"),
    (0x100000000000000, 0x1000000, "fb010000000000000001000000"),
    (0x100000000000000, 0xffffffff, "fb0100000000000000ffffffff"),
    (0x100000000000000, 0x100000000, "fc01000000000000000100000000"),
    (0x100000000000000, 0xffffffffff, "fc0100000000000000ffffffffff"),
    (0x100000000000000, 0x10000000000, "fd0100000000000000010000000000"),
    (0x100000000000000, 0xffffffffffff, "fd0100000000000000ffffffffffff"),
    (0x100000000000000, 0x1000000000000, "fe010000000000000001000000000000"),
    (0x100000000000000, 0xffffffffffffff, "fe0100000000000000ffffffffffffff"),
    (0x100000000000000, 0x100000000000000, "ff01000000000000000100000000000000"),
    (0x100000000000000, 0xffffffffffffffff, "ff0100000000000000ffffffffffffffff"),
    (0xffffffffffffffff, 0x0, "f0ffffffffffffffff"),
    (0xffffffffffffffff, 0x1, "f1ffffffffffffffff"),
    (0xffffffffffffffff, 0xff, "f8ffffffffffffffffff"),
    (0xffffffffffffffff, 0x100, "f9ffffffffffffffff0100"),
    (0xffffffffffffffff, 0xffff, "f9ffffffffffffffffffff"),
    (0xffffffffffffffff, 0x10000, "faffffffffffffffff010000"),
    (0xffffffffffffffff, 0xffffff, "faffffffffffffffffffffff"),
    (0xffffffffffffffff, 0x1000000, "fbffffffffffffffff01000000"),
    (0xffffffffffffffff, 0xffffffff, "fbffffffffffffffffffffffff"),
    (0xffffffffffffffff, 0x100000000, "fcffffffffffffffff0100000000"),
    (0xffffffffffffffff, 0xffffffffff, "fcffffffffffffffffffffffffff"),
    (0xffffffffffffffff, 0x10000000000, "fdffffffffffffffff010000000000"),
    (0xffffffffffffffff, 0xffffffffffff, "fdffffffffffffffffffffffffffff"),
    (0xffffffffffffffff, 0x1000000000000, "feffffffffffffffff01000000000000"),
    (0xffffffffffffffff, 0xffffffffffffff, "feffffffffffffffffffffffffffffff"),
    (0xffffffffffffffff, 0x100000000000000, "ffffffffffffffffff0100000000000000"),
    (0xffffffffffffffff, 0xffffffffffffffff, "ffffffffffffffffffffffffffffffffff"),
]

# RFC 9605 C.4, test-vectors.json "sframe", cipher_suite 4 (AES_128_GCM_SHA256_128)
KID = 0x123
CTR = 0x4567
BASE_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
SFRAME_KEY = bytes.fromhex("d34f547f4ca4f9a7447006fe7fcbf768")
SFRAME_SALT = bytes.fromhex("75234edefe07819026751816")
METADATA = bytes.fromhex("4945544620534672616d65205747")
NONCE = bytes.fromhex("75234edefe07819026755d71")
AAD = bytes.fromhex("99012345674945544620534672616d65205747")
PT = bytes.fromhex("64726166742d696574662d736672616d652d656e63")
CT = bytes.fromhex(
    "9901234567b7412c2513a1b66dbb48841bbaf17f598751176ad847681a69c6d0b091c07018ce4adb34eb"
)

OTHER_KEY = bytes(range(100, 132))


@pytest.mark.parametrize(("kid", "ctr", "encoded"), HEADER_VECTORS)
def test_header_encodes_as_the_rfc_vectors(kid, ctr, encoded):
    assert encode_header(kid, ctr) == bytes.fromhex(encoded)


@pytest.mark.parametrize(("kid", "ctr", "encoded"), HEADER_VECTORS)
def test_header_decodes_as_the_rfc_vectors(kid, ctr, encoded):
    header = bytes.fromhex(encoded)
    assert decode_header(header + bytes(NT)) == (kid, ctr, len(header))


def test_header_without_room_for_the_tag_is_refused():
    with pytest.raises(E2EEError):
        decode_header(b"")
    header = bytes.fromhex(HEADER_VECTORS[-1][2])  # the longest: 8-byte KID and CTR
    with pytest.raises(E2EEError):
        decode_header(header + bytes(NT - 1))


def test_key_and_salt_derive_as_the_rfc_vector():
    key, salt = derive(BASE_KEY, KID)
    assert key == SFRAME_KEY
    assert salt == SFRAME_SALT
    assert _nonce(salt, CTR) == NONCE


def test_seal_gives_the_rfc_ciphertext():
    sender = SFrame(BASE_KEY, kid=KID, ctr=CTR)
    assert sender.seal(PT, METADATA) == CT
    assert CT.startswith(AAD[: len(AAD) - len(METADATA)])  # the header the AAD starts with
    assert sender.ctr == CTR + 1


def test_open_gives_the_rfc_plaintext():
    receiver = SFrame(BASE_KEY, kid=7)  # the KID it opens by is the one in the header
    assert receiver.open(CT, METADATA) == PT
    assert (receiver.opened, receiver.refused) == (1, 0)


def test_frame_under_another_base_key_is_refused_and_counted():
    frame = SFrame(OTHER_KEY, kid=KID).seal(PT, METADATA)
    receiver = SFrame(BASE_KEY)
    with pytest.raises(E2EEError):
        receiver.open(frame, METADATA)
    with pytest.raises(E2EEError):
        receiver.open(CT, METADATA[:-1])  # the RFC frame, but other metadata
    assert (receiver.opened, receiver.refused) == (0, 2)


@pytest.mark.parametrize("at", range(len(CT)))
def test_frame_with_a_byte_flipped_is_refused_and_counted(at):
    tampered = bytearray(CT)
    tampered[at] ^= 0x01
    receiver = SFrame(BASE_KEY)
    with pytest.raises(E2EEError):
        receiver.open(bytes(tampered), METADATA)
    assert (receiver.opened, receiver.refused) == (0, 1)
    assert receiver.open(CT, METADATA) == PT  # the session still opens what is sound


@pytest.mark.parametrize(
    "text", ["", "hello", "héllo wörld — ça va? 日本語のテキスト, Ελληνικά, emoji 🎉🔒"]
)
def test_text_round_trip(text):
    sender, receiver = SFrame(BASE_KEY), SFrame(BASE_KEY)
    sealed = sender.seal_text(text)
    assert sealed.isascii()
    assert receiver.open_text(sealed) == text
    assert (receiver.opened, receiver.refused) == (1, 0)


def test_text_that_is_not_a_sealed_frame_is_refused_and_counted():
    receiver = SFrame(BASE_KEY)
    for text in ("not base64!", "é", SFrame(OTHER_KEY).seal_text("hi")):
        with pytest.raises(E2EEError):
            receiver.open_text(text)
    assert (receiver.opened, receiver.refused) == (0, 3)


def test_session_opens_another_sessions_frames_under_the_same_base_key():
    alice, bob = SFrame(BASE_KEY, kid=0x1A2B3C), SFrame(BASE_KEY, kid=5)
    frames = [alice.seal(f"frame {i}".encode(), METADATA) for i in range(3)]
    assert [decode_header(f)[:2] for f in frames] == [(0x1A2B3C, i) for i in range(3)]
    assert [bob.open(f, METADATA) for f in frames] == [b"frame 0", b"frame 1", b"frame 2"]
    assert bob.open_text(alice.seal_text("back")) == "back"
    assert alice.open(bob.seal(b"reply")) == b"reply"
    assert (bob.opened, bob.refused) == (4, 0)
