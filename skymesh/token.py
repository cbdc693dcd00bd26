"""Access tokens: HMAC-SHA256-signed grants, in the spirit of Agora's AccessToken2. Pure: no I/O.

A token is three dot-separated parts, all URL-safe::

    sm1.<payload>.<tag>

- ``sm1`` is the version.
- ``payload`` is base64url (no padding) of the big-endian binary grant: issued_at (u64, unix
  seconds), expires_at (u64), salt (u32), privilege bitmask (u8: join=1, publish-media=2,
  publish-messages=4), then app, channel, uid and zone, each a u8 length and 1..255 UTF-8
  bytes. Nothing may follow.
- ``tag`` is base64url (no padding) of the full 32-byte HMAC-SHA256(app secret,
  b"sm1." + payload bytes). It is not truncated.

Base64 must be canonical (what we would have written ourselves), so a token has exactly one
spelling and any change to its text is refused. Verification failures raise `TokenError` with
a stable `code` (see `ERROR_CODES`, which the QUIC edge maps to application error codes) and
a human-readable `reason`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as _secrets
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

VERSION = "sm1"
PRIVILEGES = ("join", "publish-media", "publish-messages")
MAX_TTL_S = 30 * 24 * 3600
CLOCK_SKEW_S = 60
MAX_FIELD_BYTES = 255
TAG_BYTES = 32  # full HMAC-SHA256 output

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

_HEAD = struct.Struct(">QQIB")
_BITS = {name: 1 << i for i, name in enumerate(PRIVILEGES)}
_ALL_BITS = sum(_BITS.values())
_B64 = re.compile(r"[A-Za-z0-9_-]*")
_FIELDS = ("app", "channel", "uid", "zone")


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


@dataclass(frozen=True)
class Grant:
    app: str
    channel: str
    uid: str
    zone: str
    privileges: frozenset[str]
    issued_at: int
    expires_at: int
    salt: int


def issue(app: str, secret: bytes, channel: str, uid: str, zone: str,
          privileges: Iterable[str], ttl_s: int, now: int | None = None,
          salt: int | None = None) -> str:
    """A signed token granting `privileges` on `channel` in `zone` to `uid` of `app`, valid
    for `ttl_s` seconds from `now` (default: the current time). Raises TokenError
    ("invalid-request") on bad arguments."""

    def bad(reason: str) -> TokenError:
        return TokenError("invalid-request", reason)

    if not isinstance(secret, bytes | bytearray) or not secret:
        raise bad("the app secret must be non-empty bytes")
    fields = []
    for name, value in zip(_FIELDS, (app, channel, uid, zone), strict=True):
        if not isinstance(value, str) or not value:
            raise bad(f"{name} must be a non-empty string")
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError:
            raise bad(f"{name} is not valid Unicode text") from None
        if len(raw) > MAX_FIELD_BYTES:
            raise bad(f"{name} is {len(raw)} bytes of UTF-8; at most {MAX_FIELD_BYTES}")
        fields.append(raw)
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
    if not _is_int(now) or not 0 <= now < 2**63:
        raise bad(f"issue time must be a non-negative integer, got {now!r}")
    salt = _secrets.randbits(32) if salt is None else salt
    if not _is_int(salt) or not 0 <= salt < 2**32:
        raise bad(f"salt must be an unsigned 32-bit integer, got {salt!r}")
    bits = sum(_BITS[p] for p in privs)
    payload = _HEAD.pack(now, now + ttl_s, salt, bits) + b"".join(
        bytes([len(raw)]) + raw for raw in fields)
    tag = _tag(bytes(secret), payload)
    return f"{VERSION}.{_b64encode(payload)}.{_b64encode(tag)}"


def parse(token: str) -> Grant:
    """The grant a token claims, WITHOUT checking its signature or times: for logs and for
    finding which app's secret to verify with. Raises TokenError("malformed")."""
    return _split(token)[0]


def verify(token: str, secrets: Mapping[str, bytes], now: int | None = None,
           channel: str | None = None, zone: str | None = None,
           need: Iterable[str] = ()) -> Grant:
    """The grant of a genuine, current token, checked against the channel, zone and
    privileges asked for. `secrets` maps app id to secret. Raises TokenError."""
    need = frozenset(need)
    unknown = need - set(PRIVILEGES)
    if unknown:
        raise ValueError(f"unknown privilege(s) needed: {', '.join(sorted(unknown))}")
    grant, payload, tag = _split(token)
    secret = secrets.get(grant.app)
    if not secret:
        raise TokenError("unknown-app", f"no secret is configured for app {grant.app!r}")
    if not hmac.compare_digest(_tag(bytes(secret), payload), tag):
        raise TokenError("bad-signature", "the token's signature does not match its app's "
                         "secret")
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


def _tag(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, VERSION.encode() + b"." + payload, hashlib.sha256).digest()


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    if not _B64.fullmatch(text) or len(text) % 4 == 1:
        raise TokenError("malformed", f"the {what} is not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed", f"the {what} is not base64url") from None
    if _b64encode(raw) != text:
        raise TokenError("malformed", f"the {what} is not canonical base64url")
    return raw


def _split(token: str) -> tuple[Grant, bytes, bytes]:
    if not isinstance(token, str):
        raise TokenError("malformed", "a token is a string")
    if len(token) > 4096:
        raise TokenError("malformed", "the token is too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed", "expected VERSION.PAYLOAD.TAG")
    if parts[0] != VERSION:
        raise TokenError("malformed", f"unknown token version {parts[0][:16]!r} "
                         f"(this build reads {VERSION})")
    payload = _b64decode(parts[1], "payload")
    tag = _b64decode(parts[2], "tag")
    if len(tag) != TAG_BYTES:
        raise TokenError("malformed", f"the tag is {len(tag)} bytes, not {TAG_BYTES}")
    return _decode(payload), payload, tag


def _decode(payload: bytes) -> Grant:
    if len(payload) < _HEAD.size:
        raise TokenError("malformed", "the payload is truncated")
    issued_at, expires_at, salt, bits = _HEAD.unpack_from(payload)
    at = _HEAD.size
    values = []
    for name in _FIELDS:
        if at >= len(payload):
            raise TokenError("malformed", f"the payload is truncated before {name}")
        n = payload[at]
        at += 1
        if n == 0:
            raise TokenError("malformed", f"{name} is empty")
        if at + n > len(payload):
            raise TokenError("malformed", f"the payload is truncated in {name}")
        try:
            values.append(payload[at:at + n].decode("utf-8"))
        except UnicodeDecodeError:
            raise TokenError("malformed", f"{name} is not UTF-8") from None
        at += n
    if at != len(payload):
        raise TokenError("malformed", f"{len(payload) - at} unexpected byte(s) after the "
                         "payload")
    if bits & ~_ALL_BITS or not bits:
        raise TokenError("malformed", f"bad privilege bits {bits:#04x}")
    if not 0 < expires_at - issued_at <= MAX_TTL_S:
        raise TokenError("malformed", "the validity period is empty or longer than 30 days")
    privileges = frozenset(p for p, b in _BITS.items() if bits & b)
    return Grant(*values, privileges=privileges, issued_at=issued_at, expires_at=expires_at,
                 salt=salt)
