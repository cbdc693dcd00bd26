"""Access tokens (EdDSA JWTs): round trip, keys and rotation, every refusal with its code,
forgery (other keys, alg none/HS256), malformed text, fuzzing, the CLI."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ROOT

from skymesh import token
from skymesh.apps import load_apps
from skymesh.token import (
    ERROR_CODES,
    PRIVILEGES,
    Grant,
    KeyFormatError,
    TokenError,
    decode_public_key,
    encode_public_key,
    issue,
    key_id,
    load_private_key,
    parse,
    private_key_pem,
    public_key_of,
    verify,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # app1's signing key
PUB = public_key_of(KEY)
KEY2 = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))  # app2's
PUB2 = public_key_of(KEY2)
KEYS = {"app1": (PUB,), "app2": (PUB2,)}
NOW = 1_700_000_000
URL_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")
VERIFY_CODES = {"malformed", "unknown-app", "bad-signature", "expired", "not-yet-valid",
                "wrong-channel", "wrong-zone", "missing-privilege"}
FORGERY_CODES = {"malformed", "unknown-app", "bad-signature"}

# SKYMESH_FUZZ_EXAMPLES=20000 for a long, random run; a fixed, repeatable one otherwise
_SCALED = os.environ.get("SKYMESH_FUZZ_EXAMPLES", "").strip()
FUZZ = settings(max_examples=int(_SCALED) if _SCALED else 300, deadline=None,
                derandomize=not _SCALED,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def make(**kw) -> str:
    args = dict(app="app1", private_key=KEY, channel="room-42", uid="user-7", zone="eu",
                privileges=["join", "publish-media"], ttl_s=3600, now=NOW, jti="jti-1")
    args.update(kw)
    return issue(**args)


def refused(tok: str, keys=KEYS, **kw) -> TokenError:
    with pytest.raises(TokenError) as e:
        verify(tok, keys, **{"now": NOW, **kw})
    assert e.value.code in ERROR_CODES and e.value.reason
    return e.value


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims(**kw) -> dict:
    c = {"iss": "app1", "sub": "user-7", "channel": "room-42", "zone": "eu",
         "privileges": ["join"], "iat": NOW, "exp": NOW + 60, "jti": "x"}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not ...}


# claims with a lone surrogate, which JSON can spell but UTF-8 cannot carry
SURROGATE = json.dumps(claims(sub="@")).replace('"@"', '"\\ud800"').encode()


def signed(body: bytes | dict, header: dict | None = None, key=KEY) -> str:
    """A correctly signed compact JWS of any claims bytes and header: what an app's server
    could send, well-formed or not."""
    header = {"alg": "EdDSA", "kid": key_id(public_key_of(key)), "typ": "JWT"} \
        if header is None else header
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = b64(json.dumps(header).encode())
    signing_input = f"{head}.{b64(raw)}".encode()
    return f"{head}.{b64(raw)}.{b64(key.sign(signing_input))}"


# -- round trip --------------------------------------------------------------------------------

field = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 255)


@settings(max_examples=100, deadline=None)
@given(app=field, channel=field, uid=field, zone=field,
       privileges=st.sets(st.sampled_from(PRIVILEGES), min_size=1),
       ttl=st.integers(1, token.MAX_TTL_S), now=st.integers(0, 2**40),
       jti=st.text(min_size=1, max_size=64))
def test_round_trip(app, channel, uid, zone, privileges, ttl, now, jti):
    tok = issue(app, KEY, channel, uid, zone, privileges, ttl, now=now, jti=jti)
    assert URL_SAFE.match(tok)
    keys = {app: (PUB,)}
    grant = verify(tok, keys, now=now, channel=channel, zone=zone, need=privileges)
    assert grant == Grant(app, channel, uid, zone, frozenset(privileges), now, now + ttl, jti)
    assert parse(tok) == grant
    assert verify(tok, keys, now=now + ttl - 1) == grant


def test_a_token_is_a_standard_jwt_signed_with_eddsa():
    tok = make()
    header = jwt.get_unverified_header(tok)
    assert header == {"alg": "EdDSA", "kid": key_id(PUB), "typ": "JWT"}
    # any JWT library checks it with the public key alone
    body = jwt.decode(tok, KEY.public_key(), algorithms=["EdDSA"],
                      options={"verify_exp": False, "verify_iat": False})
    assert body == {"iss": "app1", "sub": "user-7", "channel": "room-42", "zone": "eu",
                    "privileges": ["join", "publish-media"], "iat": NOW, "exp": NOW + 3600,
                    "jti": "jti-1"}


def test_a_token_made_by_another_jwt_library_is_accepted():
    """An app's server may sign with any JWT library: claim order, spacing and a missing typ
    do not matter."""
    body = {"jti": "r4nd0m", "exp": NOW + 60, "privileges": ["publish-messages", "join"],
            "zone": "eu", "channel": "room-42", "sub": "u", "iat": NOW, "iss": "app1"}
    tok = jwt.encode(body, KEY, algorithm="EdDSA", headers={"kid": key_id(PUB)})
    grant = verify(tok, KEYS, now=NOW, need=["join", "publish-messages"])
    assert grant.privileges == {"join", "publish-messages"} and grant.uid == "u"
    no_typ = signed(json.dumps(body, indent=2).encode(), {"kid": key_id(PUB), "alg": "EdDSA"})
    assert verify(no_typ, KEYS, now=NOW).jti == "r4nd0m"


def test_typical_token_is_url_safe_and_bounded():
    tok = issue("my-video-app", KEY, "standup-2024-06-01", "alice@example.com", "eu",
                PRIVILEGES, 3600)
    assert URL_SAFE.match(tok) and tok.count(".") == 2
    assert len(tok) < 512, len(tok)


def test_jti_makes_tokens_distinct():
    assert make(jti="a") != make(jti="b")
    assert issue("a", KEY, "c", "u", "z", ["join"], 60) != issue("a", KEY, "c", "u", "z",
                                                                 ["join"], 60)


def test_max_length_fields_round_trip():
    long = "é" * 127  # 254 bytes
    tok = make(channel=long, uid="x" * 255)
    assert verify(tok, KEYS, now=NOW).channel == long
    huge = "\x01" * 255  # each escaped as \u0001 in JSON
    tok = make(app="a" * 255, channel=huge, uid="u" * 255, zone="z" * 255)
    assert len(tok) <= token.MAX_TOKEN_CHARS
    assert verify(tok, {"a" * 255: (PUB,)}, now=NOW).channel == huge
    with pytest.raises(TokenError) as e:  # a token a relay would refuse is never issued
        make(channel=huge, uid=huge, zone=huge)
    assert e.value.code == "invalid-request" and "at most 4096" in e.value.reason


def test_error_codes_are_stable_and_distinct():
    assert set(ERROR_CODES) >= VERIFY_CODES
    assert ERROR_CODES["malformed"] == 0x101 and ERROR_CODES["missing-privilege"] == 0x108
    assert ERROR_CODES["bad-signature"] == 0x103 and ERROR_CODES["invalid-request"] == 0x109
    assert len(set(ERROR_CODES.values())) == len(ERROR_CODES)


# -- keys ------------------------------------------------------------------------------------


def test_key_id_is_the_rfc7638_thumbprint():
    # RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    assert key_id(unb64(x)) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert len(key_id(PUB)) == 43 and key_id(PUB) != key_id(PUB2)


def test_keys_in_every_accepted_spelling():
    pem = KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    text = encode_public_key(PUB)
    for spelling in (text, text + "=", f"  {text}\n", pem.decode(),
                     base64.b64encode(PUB).decode()):
        assert decode_public_key(spelling) == PUB
    for spelling in (private_key_pem(KEY), private_key_pem(KEY).decode(), b64(bytes(range(32)))):
        assert public_key_of(load_private_key(spelling)) == PUB


@pytest.mark.parametrize("text, words", [
    ("", "32 bytes"), ("abc", "32 bytes"), ("abcde", "not base64url"), (b64(b"x" * 31), "32 bytes"),
    (b64(b"x" * 33), "32 bytes"), ("not a key!", "base64url"), (42, "string"),
    ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "PEM"),
])
def test_bad_public_keys_say_why(text, words):
    with pytest.raises(KeyFormatError) as e:
        decode_public_key(text)
    assert words in str(e.value)


def test_a_private_key_is_never_taken_for_a_public_one():
    with pytest.raises(KeyFormatError, match="PRIVATE"):
        decode_public_key(private_key_pem(KEY).decode())


@pytest.mark.parametrize("data, words", [
    (b"", "32 bytes"), (b"-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----", "PEM"),
    ("é", "ASCII"), (b64(b"k" * 16), "32 bytes"),
])
def test_bad_private_keys_say_why(data, words):
    with pytest.raises(KeyFormatError) as e:
        load_private_key(data)
    assert words in str(e.value)


def test_a_non_ed25519_private_key_is_refused():
    from cryptography.hazmat.primitives.asymmetric import ec
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(KeyFormatError, match="not an Ed25519 key"):
        load_private_key(pem)
    with pytest.raises(TokenError) as e:
        make(private_key=pem)
    assert e.value.code == "invalid-request"


def test_rotation_any_listed_key_of_the_app_verifies():
    new = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    old_tok, new_tok = make(), make(private_key=new)
    assert jwt.get_unverified_header(old_tok)["kid"] != jwt.get_unverified_header(new_tok)["kid"]
    during = {"app1": (public_key_of(new), PUB)}
    assert verify(old_tok, during, now=NOW) and verify(new_tok, during, now=NOW)
    after = {"app1": (public_key_of(new),)}
    assert verify(new_tok, after, now=NOW)
    e = refused(old_tok, after)
    assert e.code == "bad-signature" and "rotated" in e.reason


# -- refusals ----------------------------------------------------------------------------------

def test_a_token_signed_by_another_apps_key_is_a_bad_signature():
    # app2's key, naming itself in the header: app1 has no such key
    e = refused(make(private_key=KEY2))
    assert e.code == "bad-signature"
    # app2's key, but the header names app1's key: the signature does not match
    tok = signed(claims(), {"alg": "EdDSA", "kid": key_id(PUB), "typ": "JWT"}, key=KEY2)
    assert refused(tok).code == "bad-signature"
    # a key no app has
    assert refused(make(private_key=Ed25519PrivateKey.generate())).code == "bad-signature"


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "HS512", "RS256", "ES256", "Ed25519",
                                 "eddsa", ""])
def test_only_eddsa_is_accepted(alg):
    body = b64(json.dumps(claims()).encode())
    head = b64(json.dumps({"alg": alg, "kid": key_id(PUB), "typ": "JWT"}).encode())
    unsigned = f"{head}.{body}."
    assert refused(unsigned).code == "malformed"  # an empty signature
    e = refused(f"{head}.{body}.{b64(bytes(64))}")
    assert e.code == ("malformed" if alg == "" else "bad-signature"), e
    if alg:
        assert alg in e.reason


def test_hs256_signed_with_the_public_key_as_secret_is_refused():
    """The classic confusion: an HMAC over the token with the (public) key bytes, or its text,
    as the secret."""
    for secret in (PUB, encode_public_key(PUB).encode()):
        tok = jwt.encode(claims(), secret, algorithm="HS256", headers={"kid": key_id(PUB)})
        assert refused(tok).code in {"bad-signature", "malformed"}
    # with a 64-byte "signature", it reaches the algorithm check
    head, body, _ = tok.split(".")
    e = refused(f"{head}.{body}.{b64(bytes(64))}")
    assert e.code == "bad-signature" and "HS256" in e.reason


def test_alg_none_from_pyjwt_is_refused():
    tok = jwt.encode(claims(), None, algorithm="none", headers={"kid": key_id(PUB)})
    assert refused(tok).code in {"malformed", "bad-signature"}


def test_unknown_app():
    e = refused(make(app="app3"))
    assert e.code == "unknown-app" and "app3" in e.reason
    assert refused(make(), {"app1": ()}).code == "unknown-app"


def test_expired():
    tok = make(ttl_s=60)
    assert verify(tok, KEYS, now=NOW + 59)
    assert refused(tok, now=NOW + 60).code == "expired"
    assert refused(tok, now=NOW + 10**6).code == "expired"


def test_not_yet_valid_beyond_clock_skew():
    tok = make(now=NOW + 60)
    assert verify(tok, KEYS, now=NOW)  # within the 60 s allowance
    assert refused(make(now=NOW + 61)).code == "not-yet-valid"


def test_wrong_channel_and_zone():
    tok = make()
    assert verify(tok, KEYS, now=NOW, channel="room-42", zone="eu")
    e = refused(tok, channel="room-43")
    assert e.code == "wrong-channel" and "room-42" in e.reason
    assert refused(tok, zone="us").code == "wrong-zone"


def test_missing_privilege():
    tok = make(privileges=["join"])
    assert verify(tok, KEYS, now=NOW, need=["join"])
    e = refused(tok, need=["join", "publish-messages"])
    assert e.code == "missing-privilege" and "publish-messages" in e.reason
    assert e.number == 0x108
    with pytest.raises(ValueError):
        verify(tok, KEYS, now=NOW, need=["fly"])


@pytest.mark.parametrize("kw, words", [
    ({"app": ""}, "app"), ({"channel": ""}, "channel"), ({"uid": "x" * 256}, "uid"),
    ({"zone": "é" * 128}, "zone"), ({"privileges": ["join", "admin"]}, "admin"),
    ({"privileges": []}, "privilege"), ({"privileges": "join"}, "privileges"),
    ({"ttl_s": 0}, "ttl"), ({"ttl_s": -5}, "ttl"), ({"ttl_s": 30 * 86400 + 1}, "ttl"),
    ({"ttl_s": 1.5}, "ttl"), ({"private_key": b""}, "private key"),
    ({"private_key": "secret"}, "private key"), ({"private_key": None}, "private key"),
    ({"jti": ""}, "jti"), ({"jti": "j" * 65}, "jti"), ({"now": -1}, "issue time"),
    ({"uid": "\ud800"}, "uid"),
])
def test_issue_validates_inputs(kw, words):
    with pytest.raises(TokenError) as e:
        make(**kw)
    assert e.value.code == "invalid-request" and words in e.value.reason


# -- forgery and malformed text ----------------------------------------------------------------

def forged_outcome(tok: str, tampered: str) -> str:
    """Verify a tampered token: it must be refused, only ever as a forgery or as malformed
    (or, when the change renamed the app, as an unknown app)."""
    if tampered == tok:
        return "same"
    try:
        verify(tampered, KEYS, now=NOW)
    except TokenError as e:
        if e.code == "unknown-app":
            assert parse(tampered).app not in KEYS
        else:
            assert e.code in {"bad-signature", "malformed"}, e
        return e.code
    raise AssertionError(f"tampered token accepted: {tampered}")


def test_every_bit_flip_of_claims_or_signature_is_refused():
    tok = make()
    head, body, sig = tok.split(".")
    raw_b, raw_s = unb64(body), unb64(sig)
    seen = set()
    for i in range(len(raw_b)):
        for bit in range(8):
            b = bytearray(raw_b)
            b[i] ^= 1 << bit
            seen.add(forged_outcome(tok, f"{head}.{b64(bytes(b))}.{sig}"))
    for i in range(len(raw_s)):
        for bit in range(8):
            s = bytearray(raw_s)
            s[i] ^= 1 << bit
            assert forged_outcome(tok, f"{head}.{body}.{b64(bytes(s))}") == "bad-signature"
    assert "bad-signature" in seen and "malformed" in seen


def test_character_substitutions_are_refused():
    tok = make()
    alphabet = "AZaz09-_.=+/ "
    for i in range(len(tok)):
        for c in alphabet:
            forged_outcome(tok, tok[:i] + c + tok[i + 1:])


def test_structural_damage_is_malformed():
    tok = make()
    head, body, sig = tok.split(".")
    cases = [
        "", ".", "..", "...", tok + ".", "." + tok, f"{head}.{body}", f"{head}.{body}.",
        f"{head}.{body}.{sig}=", f"{head}=.{body}.{sig}", f"{head}.{body}.{sig[:-1]}",
        f"{head}.{body}.{sig}AA", f"{head}.{body}+.{sig}", f"{head}.{body} .{sig}",
        f"{head}.{body}.{sig[:-1]}B",  # non-canonical base64: the unused bits set
        f"{head}.{body[:-1]}.{sig}", f"{head}.{body}.{b64(unb64(sig)[:63])}",
        f"{head}.{head}.{sig}", f"{body}.{body}.{sig}", "A" * 5000,
        f"{head}.{'A' * 5000}.{sig}", " " + tok, tok + "\n", tok.replace(".", "..", 1),
        "sm1.AAAA.AAAA",
    ]
    for bad in cases:
        e = refused(bad)
        assert e.code == "malformed", (bad, e)
    assert "too long" not in refused(tok + "\n").reason
    assert "sm1" in refused("sm1.AAAA.AAAA").reason
    assert "4096" in refused("A" * 5000).reason
    for thing in (None, 42, b"bytes", ["x"]):
        assert refused(thing).code == "malformed"  # type: ignore[arg-type]


@pytest.mark.parametrize("body, words", [
    (claims(iss=...), "missing claim(s) iss"),
    (claims(exp=...), "exp"),
    (claims(iat=...), "iat"),
    (claims(jti=...), "jti"),
    (claims(nbf=NOW), "unknown claim"),
    (claims(aud="x"), "unknown claim"),
    (claims(iat=float(NOW)), "iat"),
    (claims(iat=True), "iat"),
    (claims(exp=str(NOW + 60)), "exp"),
    (claims(exp=2**64), "exp"),
    (claims(iat=-1), "iat"),
    (claims(exp=NOW), "validity"),
    (claims(exp=NOW + 31 * 86400), "validity"),
    (claims(privileges=[]), "privileges"),
    (claims(privileges=["join", "join"]), "privileges"),
    (claims(privileges=["join", "admin"]), "privileges"),
    (claims(privileges="join"), "privileges"),
    (claims(privileges=[1]), "privileges"),
    (claims(privileges=[["join"]]), "privileges"),
    (claims(channel=""), "channel"),
    (claims(channel=7), "channel"),
    (claims(sub=None), "sub"),
    (claims(zone="z" * 256), "zone"),
    (claims(jti=""), "jti"),
    (claims(jti="j" * 65), "jti"),
    (claims(jti=5), "jti"),
    (b'{"iss":"app1","iss":"app1"}', "twice"),
    (b'{"iat": NaN}', "not a JSON number"),
    (b'{"iat": Infinity}', "not a JSON number"),
    (claims(iat=10**2000), "iat"),
    (b'["iss", "app1"]', "not a JSON object"),
    (b"null", "not a JSON object"),
    (b"", "empty"),
    (b"\xff\xfe{}", "UTF-8"),
    ('{"iss":"app1"}'.encode("utf-16"), "UTF-8"),
    (b"[" * 900 + b"]" * 900, "JSON"),
    (SURROGATE, "sub"),
])
def test_signed_but_invalid_claims_are_malformed(body, words):
    """Even correctly signed by the app's key, claims that break the format are refused."""
    e = refused(signed(body))
    assert e.code == "malformed" and words in e.reason, e


@pytest.mark.parametrize("header, words", [
    ({"alg": "EdDSA", "typ": "JWT"}, "kid"),
    ({"alg": "EdDSA", "kid": 7}, "kid"),
    ({"alg": "EdDSA", "kid": ""}, "kid"),
    ({"alg": "EdDSA", "kid": "k" * 129}, "kid"),
    ({"kid": "k"}, "alg"),
    ({"alg": 5, "kid": "k"}, "alg"),
    ({"alg": "EdDSA", "kid": "k", "typ": "JOSE+JSON"}, "typ"),
    ({"alg": "EdDSA", "kid": "k", "jku": "https://evil.example/keys"}, "jku"),
    ({"alg": "EdDSA", "kid": "k", "jwk": {"kty": "OKP"}}, "jwk"),
    ({"alg": "EdDSA", "kid": "k", "crit": ["b64"], "b64": False}, "crit"),
    ([], "not a JSON object"),
])
def test_bad_headers_are_malformed(header, words):
    e = refused(signed(claims(), header))
    assert e.code == "malformed" and words in e.reason, e


def test_a_duplicate_header_key_is_malformed():
    kid = key_id(PUB)
    head = b64(f'{{"alg":"none","alg":"EdDSA","kid":"{kid}"}}'.encode())
    body = b64(json.dumps(claims()).encode())
    tok = f"{head}.{body}.{b64(KEY.sign(f'{head}.{body}'.encode()))}"
    e = refused(tok)
    assert e.code == "malformed" and "twice" in e.reason


# -- fuzzing: nothing but TokenError, and never an acceptance ----------------------------------

@FUZZ
@given(st.one_of(st.text(), st.text(alphabet="eyJ.ABCDEFabcdef0123456789-_=+/ \x00é"),
                 st.builds(lambda a, b, c: f"{a}.{b}.{c}", st.text(), st.text(), st.text())))
def test_arbitrary_text_only_raises_token_error(text):
    with pytest.raises(TokenError) as e:
        verify(text, KEYS, now=NOW)
    assert e.value.code in FORGERY_CODES


@FUZZ
@given(st.binary(max_size=300), st.binary(max_size=300), st.binary(max_size=80))
def test_arbitrary_bytes_in_valid_framing_only_raise_token_error(header, body, sig):
    with pytest.raises(TokenError) as e:
        verify(f"{b64(header)}.{b64(body)}.{b64(sig)}", KEYS, now=NOW)
    assert e.value.code in FORGERY_CODES


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)


@FUZZ
@given(st.dictionaries(st.sampled_from([*token.CLAIMS, "nbf", "aud", ""]), json_values,
                       max_size=10),
       st.booleans())
def test_signed_arbitrary_claims_only_raise_token_error(body, base):
    """Claims of any shape, correctly signed by the app's key: accepted only when valid."""
    if base:
        body = {**claims(), **body}
    try:
        grant = verify(signed(body), KEYS, now=NOW)
    except TokenError as e:
        assert e.code in VERIFY_CODES
        return
    assert grant.app in KEYS and set(body) == set(token.CLAIMS)


@FUZZ
@given(st.data())
def test_mutated_valid_tokens_are_refused(data):
    tok = make()
    edit = data.draw(st.sampled_from(["replace", "insert", "delete", "swap", "splice"]))
    i = data.draw(st.integers(0, len(tok) - 1))
    char = data.draw(st.characters(codec="utf-8") | st.sampled_from("AQgw-_.="))
    if edit == "replace":
        tampered = tok[:i] + char + tok[i + 1:]
    elif edit == "insert":
        tampered = tok[:i] + char + tok[i:]
    elif edit == "delete":
        tampered = tok[:i] + tok[i + 1:]
    elif edit == "swap":
        j = data.draw(st.integers(0, len(tok) - 1))
        chars = list(tok)
        chars[i], chars[j] = chars[j], chars[i]
        tampered = "".join(chars)
    else:  # splice another token's part in
        other = make(uid="mallory", privileges=PRIVILEGES, private_key=KEY2, app="app2")
        part = data.draw(st.integers(0, 2))
        parts, theirs = tok.split("."), other.split(".")
        parts[part] = theirs[part]
        tampered = ".".join(parts)
    forged_outcome(tok, tampered)


# -- CLI ---------------------------------------------------------------------------------------

def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "SKYMESH_APP_KEY"}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "skymesh", "token", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=full)


ISSUE = ("issue", "--app", "app1", "--channel", "room-42", "--uid", "user-7", "--zone", "eu",
         "--privileges", "join,publish-media,publish-messages", "--ttl", "1h")
ENV = {"SKYMESH_APP_KEY": private_key_pem(KEY).decode()}


@pytest.mark.processes
def test_cli_issue_prints_only_the_token_and_verify_accepts_it():
    proc = cli(*ISSUE, env=ENV)
    assert proc.returncode == 0, proc.stderr
    tok = proc.stdout.strip()
    assert proc.stdout == tok + "\n" and URL_SAFE.match(tok)
    grant = verify(tok, KEYS)
    assert grant.privileges == {"join", "publish-media", "publish-messages"}
    assert grant.expires_at - grant.issued_at == 3600

    ok = cli("verify", tok, "--channel", "room-42", "--zone", "eu", "--need",
             "join,publish-messages", "--json", env=ENV)
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["valid"] and data["uid"] == "user-7" and data["zone"] == "eu"
    text = cli("verify", tok, env=ENV)
    assert text.returncode == 0 and "room-42" in text.stdout

    head, body, sig = tok.split(".")
    tampered = f"{head}.{body}.{b64(bytes([unb64(sig)[0] ^ 1]) + unb64(sig)[1:])}"
    bad = cli("verify", tampered, env=ENV)
    assert bad.returncode == 1 and "bad-signature" in bad.stderr
    bad = cli("verify", tampered, "--json", env=ENV)
    assert bad.returncode == 1
    assert json.loads(bad.stdout) == {"valid": False, "code": "bad-signature",
                                      "error_code": 0x103, "reason": json.loads(
                                          bad.stdout)["reason"]}
    wrong = cli("verify", tok, "--zone", "us", env=ENV)
    assert wrong.returncode == 1 and "wrong-zone" in wrong.stderr
    garbage = cli("verify", "not-a-token", env=ENV)
    assert garbage.returncode == 1 and "malformed" in garbage.stderr


@pytest.mark.processes
def test_cli_keygen_issue_json_and_key_sources(tmp_path):
    apps_file = tmp_path / "apps.yaml"
    gen = cli("keygen", "--app", "app1", "--dir", str(tmp_path / "keys"), "--apps",
              str(apps_file), "--json")
    assert gen.returncode == 0, gen.stderr
    made = json.loads(gen.stdout)
    key_file = tmp_path / "keys" / "app1.key"
    assert made["private_key_file"] == str(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pub = decode_public_key(made["public_key"])
    assert made["kid"] == key_id(pub) and load_apps(apps_file) == {"app1": (pub,)}
    assert made["public_key"] in apps_file.read_text()
    assert key_file.read_text().strip() not in apps_file.read_text()
    again = cli("keygen", "--app", "app1", "--dir", str(tmp_path / "keys"))
    assert again.returncode == 2 and "exists" in again.stderr  # never overwritten

    proc = cli(*ISSUE, "--key-file", str(key_file), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"token", "app", "channel", "uid", "zone", "privileges", "issued_at",
                         "expires_at", "jti"}
    assert data["privileges"] == ["join", "publish-media", "publish-messages"]
    assert data["expires_at"] - data["issued_at"] == 3600
    assert verify(data["token"], {"app1": (pub,)}).uid == "user-7"
    assert jwt.get_unverified_header(data["token"])["kid"] == made["kid"]

    # rotation: a second key for the same app is added beside the first
    gen2 = cli("keygen", "--app", "app1", "--dir", str(tmp_path / "new"), "--apps",
               str(apps_file), "--json")
    assert gen2.returncode == 0, gen2.stderr
    pub2 = decode_public_key(json.loads(gen2.stdout)["public_key"])
    assert load_apps(apps_file) == {"app1": (pub2, pub)}
    ok = cli("verify", data["token"], "--apps", str(apps_file))
    assert ok.returncode == 0, ok.stderr
    ok = cli("verify", data["token"], "--public-key", made["public_key"])
    assert ok.returncode == 0, ok.stderr
    other = cli("verify", data["token"], "--public-key", encode_public_key(PUB2))
    assert other.returncode == 1 and "bad-signature" in other.stderr
    apps_file.write_text(f"other: {encode_public_key(PUB2)}\n")
    unknown = cli("verify", data["token"], "--apps", str(apps_file))
    assert unknown.returncode == 1 and "unknown-app" in unknown.stderr

    proc = cli(*ISSUE, "--key-env", "MY_KEY", env={"MY_KEY": b64(bytes(range(32)))})
    assert proc.returncode == 0, proc.stderr
    assert verify(proc.stdout.strip(), KEYS).app == "app1"


@pytest.mark.parametrize("ttl, seconds", [("90s", 90), ("15m", 900), ("1h", 3600),
                                          ("7d", 604800), ("120", 120)])
@pytest.mark.processes
def test_cli_ttl_units(ttl, seconds):
    proc = cli(*ISSUE[:-1], ttl, "--json", env=ENV)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["expires_at"] - data["issued_at"] == seconds


@pytest.mark.parametrize("args, env, words", [
    (ISSUE, {}, "SKYMESH_APP_KEY"),
    (ISSUE + ("--key-env", "NOPE"), {}, "NOPE"),
    (ISSUE + ("--key-env", "BAD"), {"BAD": "not a key"}, "BAD"),
    (ISSUE + ("--key-file", "/nonexistent/app.key"), {}, "--key-file"),
    (ISSUE[:-1] + ("1w",), ENV, "--ttl"),
    (ISSUE[:-1] + ("31d",), ENV, "ttl"),
    (ISSUE[:-1] + ("0",), ENV, "ttl"),
    (ISSUE[:-3] + ("join,fly", "--ttl", "1h"), ENV, "fly"),
    (("issue", "--app", "a", "--channel", "", "--uid", "u", "--zone", "z"), ENV, "channel"),
    (("verify", "x", "--need", "fly"), ENV, "fly"),
    (("verify", "x", "--public-key", "short"), {}, "--public-key"),
    (("verify", "x", "--apps", "/nonexistent/apps.yaml"), {}, "cannot read"),
    (("keygen", "--app", "bad/id"), {}, "app id"),
])
@pytest.mark.processes
def test_cli_errors_exit_2_with_a_clear_message(args, env, words):
    proc = cli(*args, env=env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.startswith("skymesh: ") and words in proc.stderr
