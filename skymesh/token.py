"""Access tokens: JWTs signed by the app's server with an Ed25519 key (EdDSA), in the spirit of
Agora's AccessToken2 and LiveKit's JWTs. Relays hold only the apps' public keys, so a relay can
check a token but never mint one. Pure: no I/O.

A token is a compact JWS (RFC 7515/7519), three dot-separated base64url parts::

    <header>.<claims>.<signature>

- header: ``{"alg": "EdDSA", "kid": KID, "typ": "JWT"}``. ``kid`` names the app key that
  signed, as the RFC 7638 thumbprint of its public key (`key_id`), so an app rotates keys by
  listing the new public key beside the old one: a relay accepts any key listed for the app.
  Only ``alg`` EdDSA is accepted (never ``none`` or an HMAC); ``typ`` may be left out; no
  other header parameter is allowed.
- claims, exactly these: ``iss`` (the app id), ``sub`` (the user id), ``channel``, ``zone``
  (non-empty strings of at most 255 UTF-8 bytes), ``privileges`` (a non-empty list of distinct
  names among join, publish-media, publish-messages), ``iat`` and ``exp`` (integer Unix
  seconds, at most 30 days apart) and ``jti`` (a string of 1..64 characters, random).
- signature: the 64-byte Ed25519 signature of ``header.claims``, checked with PyJWT.

Base64url must be canonical and unpadded, JSON objects may not repeat a key, and a token is at
most `MAX_TOKEN_CHARS` long. Verification failures raise `TokenError` with a stable `code`
(see `ERROR_CODES`, which the QUIC edge maps to application error codes) and a human-readable
`reason`; nothing a client sends makes `verify` raise anything else.

Keys: a private key is PEM (PKCS#8, as `openssl genpkey -algorithm ed25519` writes) or the
base64url 32-byte seed; a public key is the base64url of its 32 raw bytes (`encode_public_key`)
or PEM (SubjectPublicKeyInfo).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets as _secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

ALG = "EdDSA"
# "relay": link the channel to another (co-hosting: each one's media and messages relayed into
# the other, by the edge); a link takes a token with it for each of the two channels
PRIVILEGES = ("join", "publish-media", "publish-messages", "relay")
MAX_TTL_S = 30 * 24 * 3600
CLOCK_SKEW_S = 60
MAX_FIELD_BYTES = 255
MAX_JTI_CHARS = 64
MAX_KID_CHARS = 128
MAX_TOKEN_CHARS = 4096
KEY_BYTES = 32  # a raw Ed25519 public key, or a private key's seed
SIGNATURE_BYTES = 64

#: Stable codes of `TokenError`, with the integers the QUIC edge closes sessions with.
ERROR_CODES: dict[str, int] = {
    "malformed": 0x101,
    "unknown-app": 0x102,
    "bad-signature": 0x103,
    "expired": 0x104,
    "not-yet-valid": 0x105,
    "wrong-channel": 0x106,
    "wrong-zone": 0x107,
    "missing-privilege": 0x108,
    "invalid-request": 0x109,  # `issue` was given bad arguments; never raised by `verify`
}

#: The claims of a token, all required, no others.
CLAIMS = ("iss", "sub", "channel", "zone", "privileges", "iat", "exp", "jti")
_HEADER_KEYS = frozenset({"alg", "kid", "typ"})
_TEXT_CLAIMS = (("iss", "app"), ("channel", "channel"), ("sub", "uid"), ("zone", "zone"))
_SEGMENT = r"[A-Za-z0-9_-]+"
_COMPACT = re.compile(rf"({_SEGMENT})\.({_SEGMENT})\.({_SEGMENT})")
_B64 = re.compile(r"[A-Za-z0-9_-]*")
_JWS = jwt.PyJWS(algorithms=[ALG])


class TokenError(ValueError):
    """A token was refused (or could not be issued): `code` is one of `ERROR_CODES`."""

    def __init__(self, code: str, reason: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown token error code {code!r}")
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason

    @property
    def number(self) -> int:
        return ERROR_CODES[self.code]


class KeyFormatError(ValueError):
    """A key that cannot be read: `str(e)` says why (without the key's bytes)."""


@dataclass(frozen=True)
class Grant:
    app: str
    channel: str
    uid: str
    zone: str
    privileges: frozenset[str]
    issued_at: int
    expires_at: int
    jti: str


# -- keys --------------------------------------------------------------------------------------

def generate_key() -> Ed25519PrivateKey:
    """A new app signing key."""
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """`key` as unencrypted PKCS#8 PEM, the form of a private key file."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_private_key(data: bytes | str) -> Ed25519PrivateKey:
    """An app's signing key from PEM (PKCS#8, unencrypted) or the base64url of its 32-byte
    seed. Raises KeyFormatError saying what is wrong."""
    if isinstance(data, str):
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError:
            raise KeyFormatError("a private key is ASCII text (PEM or base64url)") from None
    if not isinstance(data, bytes | bytearray):
        raise KeyFormatError("a private key is PEM or base64url text")
    data = bytes(data).strip()
    if data.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyFormatError("not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFormatError(f"not an Ed25519 key ({type(key).__name__.removesuffix('Key')})")
        return key
    try:
        seed = _b64decode_loose(data.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise KeyFormatError("not PEM, nor the base64url of a 32-byte Ed25519 seed") from None
    if len(seed) != KEY_BYTES:
        raise KeyFormatError(f"a base64url private key is {KEY_BYTES} bytes, not {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_of(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of a signing key."""
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def encode_public_key(raw: bytes) -> str:
    """How an apps file spells a public key: base64url of its 32 raw bytes, unpadded."""
    return _b64encode(raw)


def decode_public_key(text: str) -> bytes:
    """The raw 32-byte Ed25519 public key written as base64url (padding optional) or PEM.
    Raises KeyFormatError saying what is wrong."""
    if not isinstance(text, str):
        raise KeyFormatError("a public key is a string (base64url or PEM)")
    text = text.strip()
    if text.startswith("-----BEGIN"):
        if "PRIVATE" in text.split("\n", 1)[0]:
            raise KeyFormatError("this is a PRIVATE key: list only the app's public key")
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm):
            raise KeyFormatError("not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFormatError(f"not an Ed25519 key ({type(key).__name__.removesuffix('Key')})")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = _b64decode_loose(text)
    except ValueError:
        raise KeyFormatError("not base64url (nor PEM)") from None
    if len(raw) != KEY_BYTES:
        raise KeyFormatError(f"an Ed25519 public key is {KEY_BYTES} bytes, not {len(raw)}")
    return raw


@lru_cache(maxsize=4096)
def key_id(raw: bytes) -> str:
    """The `kid` of a raw Ed25519 public key: its RFC 7638 JWK thumbprint (base64url SHA-256
    of the canonical JWK), 43 characters."""
    jwk = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": _b64encode(raw)},
                     separators=(",", ":"), sort_keys=True)
    return _b64encode(hashlib.sha256(jwk.encode("ascii")).digest())


@lru_cache(maxsize=4096)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


# -- issue -------------------------------------------------------------------------------------

def issue(app: str, private_key: Ed25519PrivateKey | bytes | str, channel: str, uid: str,
          zone: str, privileges: Iterable[str], ttl_s: int, now: int | None = None,
          jti: str | None = None) -> str:
    """A token, signed with the app's `private_key` (an Ed25519PrivateKey, or its PEM or
    base64url seed), granting `privileges` on `channel` in `zone` to `uid` of `app`, valid for
    `ttl_s` seconds from `now` (default: the current time). Raises TokenError
    ("invalid-request") on bad arguments."""

    def bad(reason: str) -> TokenError:
        return TokenError("invalid-request", reason)

    if not isinstance(private_key, Ed25519PrivateKey):
        try:
            private_key = load_private_key(private_key)
        except KeyFormatError as e:
            raise bad(f"the app's private key: {e}") from None
    values = {}
    for claim, name in _TEXT_CLAIMS:
        value = {"app": app, "channel": channel, "uid": uid, "zone": zone}[name]
        if not isinstance(value, str) or not value:
            raise bad(f"{name} must be a non-empty string")
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError:
            raise bad(f"{name} is not valid Unicode text") from None
        if len(raw) > MAX_FIELD_BYTES:
            raise bad(f"{name} is {len(raw)} bytes of UTF-8; at most {MAX_FIELD_BYTES}")
        values[claim] = value
    if isinstance(privileges, str):
        raise bad("privileges must be a collection of names, not a string")
    privs = set(privileges)
    unknown = privs - set(PRIVILEGES)
    if unknown:
        raise bad(f"unknown privilege(s) {', '.join(sorted(map(str, unknown)))}; "
                  f"known: {', '.join(PRIVILEGES)}")
    if not privs:
        raise bad("grant at least one privilege")
    if not _is_int(ttl_s) or not 0 < ttl_s <= MAX_TTL_S:
        raise bad(f"ttl must be 1..{MAX_TTL_S} seconds (30 days), got {ttl_s!r}")
    now = int(time.time()) if now is None else now
    if not _is_int(now) or not 0 <= now < 2**63 - MAX_TTL_S:
        raise bad(f"issue time must be a non-negative integer, got {now!r}")
    jti = _secrets.token_urlsafe(12) if jti is None else jti
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS:
        raise bad(f"jti must be a string of 1..{MAX_JTI_CHARS} characters, got {jti!r}")
    claims = {**values, "privileges": privilege_list(privs), "iat": now, "exp": now + ttl_s,
              "jti": jti}
    kid = key_id(public_key_of(private_key))
    text = jwt.encode(claims, private_key, algorithm=ALG, headers={"kid": kid, "typ": "JWT"})
    if len(text) > MAX_TOKEN_CHARS:
        raise bad(f"the token would be {len(text)} characters; at most {MAX_TOKEN_CHARS} "
                  "(shorten the channel, uid or zone)")
    return text


# -- verify ------------------------------------------------------------------------------------

def parse(token: str) -> Grant:
    """The grant a token claims, WITHOUT checking its signature or times: for logs and for
    finding which app's keys to verify with. Raises TokenError("malformed")."""
    return _split(token)[0]


def verify(token: str, keys: Mapping[str, Iterable[bytes]], now: int | None = None,
           channel: str | None = None, zone: str | None = None,
           need: Iterable[str] = ()) -> Grant:
    """The grant of a genuine, current token, checked against the channel, zone and
    privileges asked for. `keys` maps app id to the app's raw Ed25519 public keys (any of
    them may have signed, as the token's `kid` says). Raises TokenError."""
    need = frozenset(need)
    unknown = need - set(PRIVILEGES)
    if unknown:
        raise ValueError(f"unknown privilege(s) needed: {', '.join(sorted(unknown))}")
    grant, header = _split(token)
    app_keys = keys.get(grant.app)
    if not app_keys:
        raise TokenError("unknown-app", f"no public key is configured for app {grant.app!r}")
    alg, kid = header["alg"], header["kid"]
    if alg != ALG:
        raise TokenError("bad-signature", f"alg {alg[:16]!r} is not accepted: tokens are "
                         f"signed with {ALG} (Ed25519)")
    raw = next((k for k in app_keys if key_id(bytes(k)) == kid), None)
    if raw is None:
        raise TokenError("bad-signature", f"app {grant.app!r} has no key {kid[:48]!r} "
                         "(signed by another app's key, or one rotated out)")
    try:
        _JWS.decode_complete(token, key=_public_key(bytes(raw)), algorithms=[ALG])
    except jwt.InvalidSignatureError:
        raise TokenError("bad-signature", "the signature does not match the app's key "
                         f"{kid[:12]}...") from None
    except (jwt.PyJWTError, ValueError, TypeError) as e:  # ruled out by _split; kept closed
        raise TokenError("malformed", f"not a valid JWS: {e}") from None
    now = int(time.time()) if now is None else now
    if grant.issued_at > now + CLOCK_SKEW_S:
        raise TokenError("not-yet-valid", f"issued {grant.issued_at - now} s in the future "
                         f"(clock skew allowance {CLOCK_SKEW_S} s)")
    if now >= grant.expires_at:
        raise TokenError("expired", f"expired {now - grant.expires_at} s ago")
    if channel is not None and channel != grant.channel:
        raise TokenError("wrong-channel", f"the token is for channel {grant.channel!r}, "
                         f"not {channel!r}")
    if zone is not None and zone != grant.zone:
        raise TokenError("wrong-zone", f"the token is for zone {grant.zone!r}, not {zone!r}")
    missing = [p for p in PRIVILEGES if p in need and p not in grant.privileges]
    if missing:
        raise TokenError("missing-privilege", f"the token does not grant "
                         f"{', '.join(missing)}")
    return grant


def privilege_list(privileges: Iterable[str]) -> list[str]:
    """Privileges in their canonical order."""
    have = set(privileges)
    return [p for p in PRIVILEGES if p in have]


# -- internals ---------------------------------------------------------------------------------

def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode_loose(text: str) -> bytes:
    """base64url (or standard base64), padding optional: for keys an operator pastes."""
    text = text.strip().rstrip("=").replace("+", "-").replace("/", "_")
    if not _B64.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def _b64decode(text: str, what: str) -> bytes:
    if len(text) % 4 == 1:
        raise TokenError("malformed", f"the {what} is not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed", f"the {what} is not base64url") from None
    if _b64encode(raw) != text:
        raise TokenError("malformed", f"the {what} is not canonical base64url")
    return raw


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key[:32]!r} appears twice")
        out[key] = value
    return out


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _json_object(raw: bytes, what: str) -> dict:
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                          parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise TokenError("malformed", f"the {what} is not UTF-8") from None
    except (ValueError, RecursionError) as e:
        raise TokenError("malformed", f"the {what} is not valid JSON: "
                         f"{str(e)[:80]}") from None
    if not isinstance(data, dict):
        raise TokenError("malformed", f"the {what} is not a JSON object")
    return data


def _split(token: str) -> tuple[Grant, dict]:
    """The grant and header of a well-formed token; TokenError("malformed") otherwise."""
    if not isinstance(token, str):
        raise TokenError("malformed", "a token is a string")
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError("malformed", f"the token is {len(token)} characters long; at most "
                         f"{MAX_TOKEN_CHARS}")
    if token.startswith("sm1."):
        raise TokenError("malformed", "an sm1 (HMAC) token: this build reads only "
                         "EdDSA-signed JWTs; issue a new token with the app's key")
    m = _COMPACT.fullmatch(token)
    if m is None:
        if token.count(".") != 2:
            raise TokenError("malformed", "expected HEADER.CLAIMS.SIGNATURE (a JWT)")
        raise TokenError("malformed", "a part is empty or not base64url (unpadded)")
    header = _json_object(_b64decode(m[1], "header"), "header")
    claims = _json_object(_b64decode(m[2], "claims"), "claims")
    signature = _b64decode(m[3], "signature")
    if len(signature) != SIGNATURE_BYTES:
        raise TokenError("malformed", f"the signature is {len(signature)} bytes, not "
                         f"{SIGNATURE_BYTES}")
    extra = set(header) - _HEADER_KEYS
    if extra:
        raise TokenError("malformed", f"unknown header parameter(s) "
                         f"{', '.join(sorted(repr(k[:32]) for k in extra))}")
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise TokenError("malformed", "the header has no alg")
    kid = header.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_CHARS:
        raise TokenError("malformed", "the header has no kid naming the app's key "
                         f"(a string of 1..{MAX_KID_CHARS} characters)")
    if header.get("typ", "JWT") != "JWT":
        raise TokenError("malformed", "the header's typ is not JWT")
    return _grant(claims), header


def _grant(claims: dict) -> Grant:
    extra = set(claims) - set(CLAIMS)
    if extra:
        raise TokenError("malformed", f"unknown claim(s) "
                         f"{', '.join(sorted(repr(k[:32]) for k in extra))}")
    missing = [c for c in CLAIMS if c not in claims]
    if missing:
        raise TokenError("malformed", f"missing claim(s) {', '.join(missing)}")
    text = {}
    for claim, name in _TEXT_CLAIMS:
        value = claims[claim]
        if not isinstance(value, str) or not value:
            raise TokenError("malformed", f"{claim} ({name}) is not a non-empty string")
        try:
            n = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise TokenError("malformed", f"{claim} ({name}) is not valid Unicode") from None
        if n > MAX_FIELD_BYTES:
            raise TokenError("malformed", f"{claim} ({name}) is {n} bytes of UTF-8; at most "
                             f"{MAX_FIELD_BYTES}")
        text[name] = value
    privs = claims["privileges"]
    if not isinstance(privs, list) or not privs or not all(
            isinstance(p, str) and p in PRIVILEGES for p in privs) or len(set(privs)) != len(
            privs):
        raise TokenError("malformed", "privileges is not a non-empty list of distinct names "
                         f"among {', '.join(PRIVILEGES)}")
    iat, exp = claims["iat"], claims["exp"]
    for name, value in (("iat", iat), ("exp", exp)):
        if not _is_int(value) or not 0 <= value < 2**63:
            raise TokenError("malformed", f"{name} is not an integer number of Unix seconds")
    if not 0 < exp - iat <= MAX_TTL_S:
        raise TokenError("malformed", "the validity period (exp - iat) is empty or longer "
                         "than 30 days")
    jti = claims["jti"]
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS:
        raise TokenError("malformed", f"jti is not a string of 1..{MAX_JTI_CHARS} characters")
    return Grant(text["app"], text["channel"], text["uid"], text["zone"],
                 privileges=frozenset(privs), issued_at=iat, expires_at=exp, jti=jti)
