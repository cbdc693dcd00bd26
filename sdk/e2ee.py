"""End-to-end encryption of a call's media and messages, in the manner of SFrame (RFC 9605):
keys held by the two clients only, so the relays forward what they cannot read.

Both clients hold the call's base key (from the app, out of band: the relays never see it).
Each session sends under a key id (KID) of its own, drawn at random, and counts its frames
(CTR); the sender's key and salt are derived from the base key and its KID with HKDF-SHA256
as RFC 9605 section 4.4.2 derives them, and each frame is sealed with AES-128-GCM under the
nonce salt XOR CTR, its SFrame header (KID and CTR, section 4.3) authenticated as associated
data. A receiver derives the sender's key from the KID in the header: no key exchange on the
wire. Messages are sealed the same way and carried as base64 text.

Cipher suite AES_128_GCM_SHA256_128 (0x0004): 16-byte key, 12-byte nonce, 16-byte tag.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

CIPHER_SUITE = 0x0004  # AES_128_GCM_SHA256_128
NK, NN, NT = 16, 12, 16
MAX_HEADER = 17  # config byte, up to 8 bytes of KID and 8 of CTR
OVERHEAD = MAX_HEADER + NT  # what sealing adds to a frame, at most
MAX_KEYS = 64  # receivers' derived keys kept, by KID


class E2EEError(ValueError):
    """A frame that does not open: not SFrame, or not sealed under the call's key."""


def _uint(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def encode_header(kid: int, ctr: int) -> bytes:
    """The SFrame header (RFC 9605, 4.3): X K(3) Y C(3), then the long KID and CTR."""
    if kid < 0 or ctr < 0 or kid >= 2**64 or ctr >= 2**64:
        raise ValueError("KID and CTR are 0 to 2**64 - 1")
    out = bytearray(1)
    if kid < 8:
        out[0] |= kid << 4
        k = b""
    else:
        k = _uint(kid)
        out[0] |= 0x80 | (len(k) - 1) << 4
    if ctr < 8:
        out[0] |= ctr
        c = b""
    else:
        c = _uint(ctr)
        out[0] |= 0x08 | (len(c) - 1)
    return bytes(out) + k + c


def decode_header(data: bytes) -> tuple[int, int, int]:
    """(KID, CTR, header length) of a sealed frame; E2EEError when it has none."""
    if not data:
        raise E2EEError("empty frame")
    b = data[0]
    at = 1
    if b & 0x80:
        n = ((b >> 4) & 0x07) + 1
        kid = int.from_bytes(data[at:at + n], "big")
        at += n
    else:
        kid = (b >> 4) & 0x07
    if b & 0x08:
        n = (b & 0x07) + 1
        ctr = int.from_bytes(data[at:at + n], "big")
        at += n
    else:
        ctr = b & 0x07
    if len(data) < at + NT:
        raise E2EEError("frame too short for its header and tag")
    return kid, ctr, at


def derive(base_key: bytes, kid: int) -> tuple[bytes, bytes]:
    """(key, salt) of sender `kid` (RFC 9605, 4.4.2)."""
    secret = hmac.new(b"", base_key, hashlib.sha256).digest()  # HKDF-Extract, empty salt
    suffix = kid.to_bytes(8, "big") + CIPHER_SUITE.to_bytes(2, "big")
    key = HKDFExpand(hashes.SHA256(), NK, b"SFrame 1.0 Secret key " + suffix).derive(secret)
    salt = HKDFExpand(hashes.SHA256(), NN, b"SFrame 1.0 Secret salt " + suffix).derive(secret)
    return key, salt


def _nonce(salt: bytes, ctr: int) -> bytes:
    return bytes(a ^ b for a, b in zip(salt, ctr.to_bytes(NN, "big"), strict=True))


@dataclass
class SFrame:
    """One session's sealing (its own KID and counter) and opening (any sender's KID) under
    the call's base key."""

    base_key: bytes
    kid: int = field(default_factory=lambda: secrets.randbits(48))
    ctr: int = 0
    opened: int = 0
    refused: int = 0  # frames that did not open (not the call's key, tampered with)
    _keys: dict[int, tuple[AESGCM, bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.base_key) < 16:
            raise ValueError("an end-to-end base key is at least 16 bytes")

    def _key(self, kid: int) -> tuple[AESGCM, bytes]:
        found = self._keys.get(kid)
        if found is None:
            key, salt = derive(self.base_key, kid)
            found = self._keys[kid] = (AESGCM(key), salt)
            if len(self._keys) > MAX_KEYS:
                del self._keys[next(iter(self._keys))]
        return found

    def seal(self, plaintext: bytes, metadata: bytes = b"") -> bytes:
        """A frame sealed under this session's KID and its next CTR."""
        header = encode_header(self.kid, self.ctr)
        aead, salt = self._key(self.kid)
        sealed = header + aead.encrypt(_nonce(salt, self.ctr), plaintext, header + metadata)
        self.ctr += 1
        return sealed

    def open(self, frame: bytes, metadata: bytes = b"") -> bytes:
        """The plaintext of a sealed frame; E2EEError (counted) when it does not open."""
        try:
            kid, ctr, at = decode_header(frame)
            aead, salt = self._key(kid)
            plaintext = aead.decrypt(_nonce(salt, ctr), frame[at:], frame[:at] + metadata)
        except (E2EEError, InvalidTag) as e:
            self.refused += 1
            raise E2EEError("a frame that does not open under the call's key: "
                            + (str(e) or "not sealed under it, or tampered with")) from None
        self.opened += 1
        return plaintext

    def seal_text(self, text: str) -> str:
        return base64.b64encode(self.seal(text.encode())).decode("ascii")

    def open_text(self, text: str) -> str:
        try:
            frame = base64.b64decode(text.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            self.refused += 1
            raise E2EEError("a message that is not a sealed frame") from None
        return self.open(frame).decode("utf-8", "replace")
