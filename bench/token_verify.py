"""Time what checking a client's token costs a relay per join: the EdDSA JWT verify the edge
calls (skymesh.token.verify, as relay/edgesession.py calls it) beside the HMAC-SHA256 `sm1`
verify it replaced (a copy of the old one is below, as the baseline).

    python bench/token_verify.py [--seconds S] [--json]

(Not bench/token.py: that name would shadow the standard library's `token` module, which
`dataclasses` and `inspect` import, for every script in this directory.)

Each case runs in rounds of about S/10 seconds (default S: 2) after a warm-up; the median
round is reported, in microseconds per verify. The cases:

  ours        skymesh.token.verify: strict parse, key lookup by kid, PyJWT EdDSA verify,
              time, channel and privilege checks
  baseline    the old sm1 verify: parse, HMAC-SHA256 over the payload, compare_digest, checks
  ed25519     for scale: cryptography's Ed25519 verify of the same signing input alone
  pyjwt       for scale: PyJWT's decode_complete (parse and verify) alone

Exits 0: it is a report.
"""

from __future__ import annotations

import os.path
import sys

# the script's directory holds bench/relay.py, which must not shadow the `relay` package
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != HERE]
sys.path.insert(0, os.path.dirname(HERE))

import argparse  # noqa: E402
import base64  # noqa: E402
import hashlib  # noqa: E402
import hmac  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import jwt  # noqa: E402

from skymesh import token  # noqa: E402

NOW = 1_700_000_000
APP, CHANNEL, UID, ZONE = "my-video-app", "standup-2024-06-01", "alice@example.com", "eu"
PRIVS = ("join", "publish-media", "publish-messages")


# -- the baseline: the old sm1 HMAC token, as skymesh/token.py had it --------------------------

_HEAD = struct.Struct(">QQIB")
_BITS = {name: 1 << i for i, name in enumerate(PRIVS)}
_FIELDS = ("app", "channel", "uid", "zone")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:
        raise ValueError("not canonical base64url")
    return raw


def sm1_issue(secret: bytes, now: int) -> str:
    fields = b"".join(bytes([len(v.encode())]) + v.encode() for v in (APP, CHANNEL, UID, ZONE))
    payload = _HEAD.pack(now, now + 3600, 12345, 7) + fields
    tag = hmac.new(secret, b"sm1." + payload, hashlib.sha256).digest()
    return f"sm1.{_b64(payload)}.{_b64(tag)}"


def sm1_verify(tok: str, secrets: dict[str, bytes], now: int, channel: str) -> dict:
    if not isinstance(tok, str) or len(tok) > 4096:
        raise ValueError("malformed")
    version, p, t = tok.split(".")
    if version != "sm1":
        raise ValueError("malformed")
    payload, tag = _unb64(p), _unb64(t)
    issued_at, expires_at, salt, bits = _HEAD.unpack_from(payload)
    at, values = _HEAD.size, []
    for _ in _FIELDS:
        n = payload[at]
        values.append(payload[at + 1:at + 1 + n].decode("utf-8"))
        at += 1 + n
    if at != len(payload):
        raise ValueError("malformed")
    grant = dict(zip(_FIELDS, values, strict=True), issued_at=issued_at,
                 expires_at=expires_at, privileges={p for p, b in _BITS.items() if bits & b})
    secret = secrets.get(grant["app"])
    if not secret:
        raise ValueError("unknown-app")
    if not hmac.compare_digest(hmac.new(secret, b"sm1." + payload, hashlib.sha256).digest(),
                               tag):
        raise ValueError("bad-signature")
    if issued_at > now + 60 or now >= expires_at:
        raise ValueError("expired")
    if grant["channel"] != channel or "join" not in grant["privileges"]:
        raise ValueError("wrong-channel")
    return grant


# -- timing ------------------------------------------------------------------------------------

def per_call_us(fn: Callable[[], object], seconds: float) -> float:
    """Median over ten rounds of the time of one call, in microseconds."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min(0.2, seconds / 10):  # warm-up, and the batch size
        fn()
        n += 1
    batch = max(1, n)
    rounds = []
    for _ in range(10):
        t = time.perf_counter()
        for _ in range(batch):
            fn()
        rounds.append((time.perf_counter() - t) / batch * 1e6)
        if sum(rounds) * batch / 1e6 > seconds:
            break
    return statistics.median(rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per case (default: 2)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)

    key = token.generate_key()
    keys = {APP: (token.public_key_of(key),), **{f"app{i}": (os.urandom(32),)
                                                 for i in range(100)}}
    ours = token.issue(APP, key, CHANNEL, UID, ZONE, PRIVS, 3600, now=NOW)
    secret = os.urandom(32)
    secrets = {APP: secret, **{f"app{i}": os.urandom(32) for i in range(100)}}
    old = sm1_issue(secret, NOW)
    head, body, sig = ours.split(".")
    signing_input, signature = f"{head}.{body}".encode(), base64.urlsafe_b64decode(sig + "==")
    public = key.public_key()
    jws = jwt.PyJWS(algorithms=["EdDSA"])

    assert token.verify(ours, keys, now=NOW, channel=CHANNEL, need=("join",)).uid == UID
    assert sm1_verify(old, secrets, NOW, CHANNEL)["uid"] == UID
    cases = {
        "ours": lambda: token.verify(ours, keys, now=NOW, channel=CHANNEL, need=("join",)),
        "baseline": lambda: sm1_verify(old, secrets, NOW, CHANNEL),
        "ed25519": lambda: public.verify(signature, signing_input),
        "pyjwt": lambda: jws.decode_complete(ours, key=public, algorithms=["EdDSA"]),
    }
    us = {name: per_call_us(fn, args.seconds) for name, fn in cases.items()}
    result = {"us_per_verify": {k: round(v, 2) for k, v in us.items()},
              "ratio_ours_to_baseline": round(us["ours"] / us["baseline"], 1),
              "token_chars": {"ours": len(ours), "baseline": len(old)},
              "verifies_per_core_s": {"ours": round(1e6 / us["ours"]),
                                      "baseline": round(1e6 / us["baseline"])}}
    if args.json:
        print(json.dumps(result))
        return 0
    print("token verify per join (median, one core)")
    print(f"  {'':28} {'ours (EdDSA JWT)':>18} {'baseline (sm1 HMAC)':>20}")
    print(f"  {'us per verify':28} {us['ours']:>18.1f} {us['baseline']:>20.1f}")
    print(f"  {'verifies per core-second':28} {1e6 / us['ours']:>18,.0f} "
          f"{1e6 / us['baseline']:>20,.0f}")
    print(f"  {'token length (chars)':28} {len(ours):>18} {len(old):>20}")
    print(f"  ours / baseline: {us['ours'] / us['baseline']:.1f}x")
    print(f"  of ours: Ed25519 verify alone {us['ed25519']:.1f} us, PyJWT decode_complete "
          f"{us['pyjwt']:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
