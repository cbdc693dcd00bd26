"""Access tokens: round trip, every refusal with its code, forgery, malformed text, the CLI."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ROOT

from skymesh import token
from skymesh.token import ERROR_CODES, PRIVILEGES, Grant, TokenError, issue, parse, verify

SECRET = b"app-secret-0123456789"
SECRETS = {"app1": SECRET}
NOW = 1_700_000_000
URL_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")
VERIFY_CODES = {"malformed", "unknown-app", "bad-signature", "expired", "not-yet-valid",
                "wrong-channel", "wrong-zone", "missing-privilege"}


def make(**kw) -> str:
    args = dict(app="app1", secret=SECRET, channel="room-42", uid="user-7", zone="eu",
                privileges=["join", "publish-media"], ttl_s=3600, now=NOW, salt=12345)
    args.update(kw)
    return issue(**args)


def refused(tok: str, secrets=SECRETS, **kw) -> TokenError:
    with pytest.raises(TokenError) as e:
        verify(tok, secrets, **{"now": NOW, **kw})
    assert e.value.code in ERROR_CODES and e.value.reason
    return e.value


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- round trip --------------------------------------------------------------------------------

field = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 255)


@settings(max_examples=200, deadline=None)
@given(app=field, channel=field, uid=field, zone=field,
       privileges=st.sets(st.sampled_from(PRIVILEGES), min_size=1),
       ttl=st.integers(1, token.MAX_TTL_S), now=st.integers(0, 2**40),
       salt=st.integers(0, 2**32 - 1), secret=st.binary(min_size=1, max_size=64))
def test_round_trip(app, channel, uid, zone, privileges, ttl, now, salt, secret):
    tok = issue(app, secret, channel, uid, zone, privileges, ttl, now=now, salt=salt)
    assert URL_SAFE.match(tok)
    grant = verify(tok, {app: secret}, now=now, channel=channel, zone=zone, need=privileges)
    assert grant == Grant(app, channel, uid, zone, frozenset(privileges), now, now + ttl, salt)
    assert parse(tok) == grant
    assert verify(tok, {app: secret}, now=now + ttl - 1) == grant


def test_typical_token_is_compact_and_url_safe():
    tok = issue("my-video-app", b"x" * 32, "standup-2024-06-01", "alice@example.com",
                "eu", PRIVILEGES, 3600)
    assert URL_SAFE.match(tok)
    assert tok.startswith("sm1.")
    assert len(tok) < 200, len(tok)


def test_salt_makes_tokens_distinct():
    assert make(salt=1) != make(salt=2)
    assert issue("a", b"k", "c", "u", "z", ["join"], 60) != issue("a", b"k", "c", "u", "z",
                                                                  ["join"], 60)


def test_max_length_fields_round_trip():
    long = "é" * 127  # 254 bytes
    tok = make(channel=long, uid="x" * 255)
    assert verify(tok, SECRETS, now=NOW).channel == long


def test_error_codes_are_stable_and_distinct():
    assert set(ERROR_CODES) >= VERIFY_CODES
    assert ERROR_CODES["malformed"] == 0x101 and ERROR_CODES["missing-privilege"] == 0x108
    assert len(set(ERROR_CODES.values())) == len(ERROR_CODES)


# -- refusals ----------------------------------------------------------------------------------

def test_wrong_secret():
    assert refused(make(), {"app1": b"another secret"}).code == "bad-signature"


def test_unknown_app():
    e = refused(make(app="app2"))
    assert e.code == "unknown-app" and "app2" in e.reason
    assert refused(make(), {"app1": b""}).code == "unknown-app"


def test_expired():
    tok = make(ttl_s=60)
    assert verify(tok, SECRETS, now=NOW + 59)
    assert refused(tok, now=NOW + 60).code == "expired"
    assert refused(tok, now=NOW + 10**6).code == "expired"


def test_not_yet_valid_beyond_clock_skew():
    tok = make(now=NOW + 60)
    assert verify(tok, SECRETS, now=NOW)  # within the 60 s allowance
    assert refused(make(now=NOW + 61)).code == "not-yet-valid"


def test_wrong_channel_and_zone():
    tok = make()
    assert verify(tok, SECRETS, now=NOW, channel="room-42", zone="eu")
    e = refused(tok, channel="room-43")
    assert e.code == "wrong-channel" and "room-42" in e.reason
    assert refused(tok, zone="us").code == "wrong-zone"


def test_missing_privilege():
    tok = make(privileges=["join"])
    assert verify(tok, SECRETS, now=NOW, need=["join"])
    e = refused(tok, need=["join", "publish-messages"])
    assert e.code == "missing-privilege" and "publish-messages" in e.reason
    assert e.number == 0x108
    with pytest.raises(ValueError):
        verify(tok, SECRETS, now=NOW, need=["fly"])


@pytest.mark.parametrize("kw, words", [
    ({"app": ""}, "app"), ({"channel": ""}, "channel"), ({"uid": "x" * 256}, "uid"),
    ({"zone": "é" * 128}, "zone"), ({"privileges": ["join", "admin"]}, "admin"),
    ({"privileges": []}, "privilege"), ({"privileges": "join"}, "privileges"),
    ({"ttl_s": 0}, "ttl"), ({"ttl_s": -5}, "ttl"), ({"ttl_s": 30 * 86400 + 1}, "ttl"),
    ({"ttl_s": 1.5}, "ttl"), ({"secret": b""}, "secret"), ({"secret": "text"}, "secret"),
    ({"salt": 2**32}, "salt"), ({"now": -1}, "issue time"), ({"uid": "\ud800"}, "uid"),
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
        verify(tampered, SECRETS, now=NOW)
    except TokenError as e:
        if e.code == "unknown-app":
            assert parse(tampered).app != "app1"
        else:
            assert e.code in {"bad-signature", "malformed"}, e
        return e.code
    raise AssertionError(f"tampered token accepted: {tampered}")


def test_every_bit_flip_of_payload_or_tag_is_refused():
    tok = make()
    version, payload, tag = tok.split(".")
    raw_p, raw_t = unb64(payload), unb64(tag)
    seen = set()
    for i in range(len(raw_p)):
        for bit in range(8):
            p = bytearray(raw_p)
            p[i] ^= 1 << bit
            seen.add(forged_outcome(tok, f"{version}.{b64(bytes(p))}.{tag}"))
    for i in range(len(raw_t)):
        for bit in range(8):
            t = bytearray(raw_t)
            t[i] ^= 1 << bit
            assert forged_outcome(tok, f"{version}.{payload}.{b64(bytes(t))}") \
                == "bad-signature"
    assert "bad-signature" in seen and "malformed" in seen


def test_every_character_substitution_is_refused():
    tok = make()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="
    for i in range(len(tok)):
        for c in alphabet:
            forged_outcome(tok, tok[:i] + c + tok[i + 1:])


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_byte_edits_are_refused(data):
    tok = make()
    version, payload, tag = tok.split(".")
    raw = bytearray(unb64(payload) + unb64(tag))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]))
    n = len(unb64(payload))
    forged_outcome(tok, f"{version}.{b64(bytes(raw[:n]))}.{b64(bytes(raw[n:]))}")


def test_structural_damage_is_malformed():
    tok = make()
    version, payload, tag = tok.split(".")
    raw = unb64(payload)
    cases = [
        "", "sm1", "sm1..", tok + ".", "." + tok, tok.replace("sm1.", "sm2."),
        tok.replace("sm1.", "SM1."), f"{version}.{payload}", f"{version}.{payload}.{tag}=",
        f"{version}.{payload}=.{tag}", f"{version}.{payload}.{tag[:-1]}",
        f"{version}.{payload}.{tag}AA", f"{version}.{payload}+.{tag}",
        f"{version}.{payload} .{tag}", f"{version}.{b64(raw[:-1])}.{tag}",
        f"{version}.{b64(raw + b'x')}.{tag}", f"{version}.{b64(raw[:20])}.{tag}",
        f"{version}.{payload[:-1]}.{tag}", "sm1." + "A" * 5000 + "." + tag,
    ]
    for bad in cases:
        e = refused(bad)
        assert e.code == "malformed", (bad, e)
    assert refused(None).code == "malformed"  # type: ignore[arg-type]


def test_resigned_but_invalid_payloads_are_malformed():
    """Even correctly signed, a payload that breaks the format is refused as malformed."""
    def signed(payload: bytes) -> str:
        return f"sm1.{b64(payload)}.{b64(token._tag(SECRET, payload))}"

    head = token._HEAD
    fields = b"\x04app1\x01c\x01u\x01z"
    assert verify(signed(head.pack(NOW, NOW + 60, 0, 1) + fields), SECRETS, now=NOW)
    for payload in (head.pack(NOW, NOW + 60, 0, 0) + fields,  # no privileges
                    head.pack(NOW, NOW + 60, 0, 8) + fields,  # unknown privilege bit
                    head.pack(NOW, NOW, 0, 1) + fields,  # empty validity
                    head.pack(NOW, NOW + 31 * 86400, 0, 1) + fields,  # too long
                    head.pack(NOW, NOW + 60, 0, 1) + b"\x04app1\x00\x01u\x01z",  # empty
                    head.pack(NOW, NOW + 60, 0, 1) + b"\x04app1\x01\xff\x01u\x01z",  # UTF-8
                    head.pack(NOW, NOW + 60, 0, 1) + fields + b"\x00"):  # trailing
        assert refused(signed(payload)).code == "malformed"


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="sm1.ABCDEFabcdef0123456789-_=+/ \x00é"),
                 st.builds(lambda a, b: f"sm1.{a}.{b}", st.text(), st.text())))
def test_arbitrary_text_only_raises_token_error(text):
    with pytest.raises(TokenError) as e:
        verify(text, SECRETS, now=NOW)
    assert e.value.code in {"malformed", "unknown-app", "bad-signature"}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.binary(max_size=40))
def test_arbitrary_bytes_in_valid_framing_only_raise_token_error(payload, tag):
    with pytest.raises(TokenError) as e:
        verify(f"sm1.{b64(payload)}.{b64(tag)}", SECRETS, now=NOW)
    assert e.value.code in {"malformed", "unknown-app", "bad-signature"}


# -- CLI ---------------------------------------------------------------------------------------

def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "SKYMESH_APP_SECRET"}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "skymesh", "token", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=full)


ISSUE = ("issue", "--app", "app1", "--channel", "room-42", "--uid", "user-7", "--zone", "eu",
         "--privileges", "join,publish-media,publish-messages", "--ttl", "1h")
ENV = {"SKYMESH_APP_SECRET": "cli-secret"}


@pytest.mark.processes
def test_cli_issue_prints_only_the_token_and_verify_accepts_it():
    proc = cli(*ISSUE, env=ENV)
    assert proc.returncode == 0, proc.stderr
    tok = proc.stdout.strip()
    assert proc.stdout == tok + "\n" and URL_SAFE.match(tok)
    grant = verify(tok, {"app1": b"cli-secret"})
    assert grant.privileges == frozenset(PRIVILEGES)
    assert grant.expires_at - grant.issued_at == 3600

    ok = cli("verify", tok, "--channel", "room-42", "--zone", "eu", "--need",
             "join,publish-messages", "--json", env=ENV)
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["valid"] and data["uid"] == "user-7" and data["zone"] == "eu"
    text = cli("verify", tok, env=ENV)
    assert text.returncode == 0 and "room-42" in text.stdout

    version, payload, tag = tok.split(".")
    tampered = f"{version}.{payload}.{b64(bytes([unb64(tag)[0] ^ 1]) + unb64(tag)[1:])}"
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
def test_cli_issue_json_and_secret_sources(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("file-secret\n")
    proc = cli(*ISSUE, "--secret-file", str(secret_file), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"token", "app", "channel", "uid", "zone", "privileges", "issued_at",
                         "expires_at"}
    assert data["privileges"] == list(PRIVILEGES)
    assert data["expires_at"] - data["issued_at"] == 3600
    assert verify(data["token"], {"app1": b"file-secret"}).uid == "user-7"

    proc = cli(*ISSUE, "--secret-env", "MY_SECRET", env={"MY_SECRET": "env-secret"})
    assert proc.returncode == 0, proc.stderr
    assert verify(proc.stdout.strip(), {"app1": b"env-secret"}).app == "app1"

    secrets = tmp_path / "apps.json"
    secrets.write_text(json.dumps({"app1": "env-secret", "other": "x"}))
    ok = cli("verify", proc.stdout.strip(), "--app-secrets", str(secrets))
    assert ok.returncode == 0, ok.stderr
    secrets.write_text(json.dumps({"other": "x"}))
    unknown = cli("verify", proc.stdout.strip(), "--app-secrets", str(secrets))
    assert unknown.returncode == 1 and "unknown-app" in unknown.stderr


@pytest.mark.parametrize("ttl, seconds", [("90s", 90), ("15m", 900), ("1h", 3600),
                                          ("7d", 604800), ("120", 120)])
@pytest.mark.processes
def test_cli_ttl_units(ttl, seconds):
    proc = cli(*ISSUE[:-1], ttl, "--json", env=ENV)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["expires_at"] - data["issued_at"] == seconds


@pytest.mark.parametrize("args, env, words", [
    (ISSUE, {}, "SKYMESH_APP_SECRET"),
    (ISSUE + ("--secret-env", "NOPE"), {}, "NOPE"),
    (ISSUE + ("--secret-file", "/nonexistent/secret"), {}, "--secret-file"),
    (ISSUE[:-1] + ("1w",), ENV, "--ttl"),
    (ISSUE[:-1] + ("31d",), ENV, "ttl"),
    (ISSUE[:-1] + ("0",), ENV, "ttl"),
    (ISSUE[:-3] + ("join,fly", "--ttl", "1h"), ENV, "fly"),
    (("issue", "--app", "a", "--channel", "", "--uid", "u", "--zone", "z"), ENV, "channel"),
    (("verify", "x", "--need", "fly"), ENV, "fly"),
])
@pytest.mark.processes
def test_cli_errors_exit_2_with_a_clear_message(args, env, words):
    proc = cli(*args, env=env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.startswith("skymesh: ") and words in proc.stderr
