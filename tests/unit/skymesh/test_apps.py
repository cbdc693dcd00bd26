"""The controller's keys (skymesh/apps.py): the apps' public token keys and fabric keys, loaded
with errors that name the file and the field; private keys created once with owner-only
permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skymesh import token
from skymesh.apps import (
    AppsError,
    add_public_key,
    ensure_apps_file,
    ensure_fabric_key_file,
    load_apps,
    load_fabric_keys,
    private_key_file,
    read_private_key,
    write_private_key,
)

PRIV = token.load_private_key(token._b64encode(bytes(range(32))))
RAW = token.public_key_of(PRIV)
SECRET = token.encode_public_key(RAW)  # what an apps file lists: a public key
RAW2 = token.public_key_of(token.load_private_key(token._b64encode(bytes(range(1, 33)))))
KEY2 = token.encode_public_key(RAW2)


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def error_of(fn, path: Path) -> str:
    with pytest.raises(AppsError) as e:
        fn(path)
    message = str(e.value)
    assert str(path) in message, "the error names the file"
    return message


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- load_apps -------------------------------------------------------------------------------


def test_load_apps_reads_a_yaml_mapping(tmp_path):
    path = write(tmp_path / "apps.yaml", f"demo: {SECRET}\nshop.eu_1-x: '{KEY2}='\n")
    assert load_apps(path) == {"demo": (RAW,), "shop.eu_1-x": (RAW2,)}


def test_load_apps_reads_json_and_accepts_a_string_path(tmp_path):
    path = write(tmp_path / "apps.json", f'{{"demo": "{SECRET}", "b": ["{KEY2}", "{SECRET}"]}}')
    assert load_apps(str(path)) == {"demo": (RAW,), "b": (RAW2, RAW)}


def test_load_apps_reads_lists_and_pem(tmp_path):
    from cryptography.hazmat.primitives import serialization
    pem = PRIV.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    body = "".join(f"    {line}\n" for line in pem.decode().splitlines())
    path = write(tmp_path / "apps.yaml", f"demo:\n  - {KEY2}\n  - |\n{body}")
    assert load_apps(path) == {"demo": (RAW2, RAW)}


def test_apps_error_is_a_value_error():
    assert issubclass(AppsError, ValueError)


def test_an_old_app_secret_is_refused_with_a_hint(tmp_path):
    path = write(tmp_path / "apps.yaml", "demo: a-long-random-app-secret-of-old\n")
    message = error_of(load_apps, path)
    assert "demo" in message and "keygen" in message and "no longer" in message


def test_a_private_key_in_the_apps_file_is_refused(tmp_path):
    pem = token.private_key_pem(PRIV).decode()
    body = "".join(f"  {line}\n" for line in pem.splitlines())
    message = error_of(load_apps, write(tmp_path / "apps.yaml", f"demo: |\n{body}"))
    assert "PRIVATE" in message and "demo" in message


@pytest.mark.parametrize("value, words", [
    ("12345678901234567", "string"), ("null", "string"), ("[a, b]", "demo[1]"),
    ("{a: b}", "string"), ("true", "string"), ("''", "32 bytes"), ("[]", "no public key"),
    (f"[{SECRET}, {SECRET}]", "twice"), (f"'{SECRET[:-3]}'", "32 bytes"),
    ("[" + ", ".join([SECRET] * 17) + "]", "at most 16"),
])
def test_a_value_that_is_not_a_public_key_names_the_app(tmp_path, value, words):
    path = write(tmp_path / "apps.yaml", f"good: {SECRET}\ndemo: {value}\n")
    message = error_of(load_apps, path)
    assert "demo" in message and words in message
    assert "good" not in message


@pytest.mark.parametrize("key", ["'bad id'", "'a/b'", "''", "'" + "a" * 65 + "'", "123",
                                 "1.5", "~", "true", "'ünï'", '"demo\\n"'])
def test_bad_app_ids_are_named(tmp_path, key):
    path = write(tmp_path / "apps.yaml", f"good: {SECRET}\n{key}: {SECRET}\n")
    message = error_of(load_apps, path)
    assert "app id" in message
    assert len(message.splitlines()) == 1  # only the bad one


def test_longest_app_id_is_accepted(tmp_path):
    path = write(tmp_path / "apps.yaml", f"{'a' * 64}: {SECRET}\n")
    assert list(load_apps(path)) == ["a" * 64]


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path / "apps.yaml", f"one: short\ntwo: {SECRET}\n'th ree': {SECRET}\n"
                                         "four: 7\n")
    message = error_of(load_apps, path)
    lines = message.splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert "one" in lines[0] and "th ree" in lines[1] and "four" in lines[2]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n", "- demo\n- shop\n",
                                  "just a string\n", "42\n", "null\n"])
def test_non_mapping_is_refused(tmp_path, text):
    message = error_of(load_apps, write(tmp_path / "apps.yaml", text))
    assert "mapping" in message


@pytest.mark.parametrize("text", ["demo: [unclosed\n", "demo: 'x\n", "a: b: c\n",
                                  "\tdemo: x\n", "demo: &a\n  b: *missing\n"])
def test_broken_yaml_is_refused(tmp_path, text):
    message = error_of(load_apps, write(tmp_path / "apps.yaml", text))
    assert "not valid YAML" in message


def test_non_utf8_file_is_refused(tmp_path):
    message = error_of(load_apps, write(tmp_path / "apps.yaml", b"demo: \xff\xfe secret\n"))
    assert "not valid YAML" in message


def test_missing_file_is_refused(tmp_path):
    message = error_of(load_apps, tmp_path / "nope.yaml")
    assert "cannot read" in message


def test_a_directory_is_refused(tmp_path):
    message = error_of(load_apps, tmp_path)
    assert "cannot read" in message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root reads files whatever their mode")
def test_unreadable_file_is_refused(tmp_path):
    path = write(tmp_path / "apps.yaml", f"demo: {SECRET}\n")
    path.chmod(0)
    try:
        assert "cannot read" in error_of(load_apps, path)
    finally:
        path.chmod(0o600)


def test_deeply_nested_yaml_gets_a_clear_error(tmp_path):
    path = write(tmp_path / "apps.yaml", "[" * 1000 + "]" * 1000)
    error_of(load_apps, path)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_loads_or_raises_apps_error(tmp_path_factory, text):
    path = tmp_path_factory.getbasetemp() / "any-text.yaml"
    write(path, text)
    try:
        apps = load_apps(path)
    except AppsError as e:
        assert str(path) in str(e)
        return
    assert apps and all(isinstance(k, str) and isinstance(v, tuple) for k, v in apps.items())
    assert all(len(key) == 32 for keys in apps.values() for key in keys)


# --- ensure_apps_file ------------------------------------------------------------------------


def test_ensure_apps_file_creates_a_loadable_file_and_a_private_key(tmp_path):
    path = tmp_path / "deep" / "er" / "apps.yaml"
    assert ensure_apps_file(path) == path
    apps = load_apps(path)
    assert list(apps) == ["demo"]
    key_file = private_key_file(path, "demo")
    assert key_file == path.parent / "demo.key" and mode(key_file) == 0o600
    key = read_private_key(key_file)
    assert apps["demo"] == (token.public_key_of(key),)
    # the apps file holds the public key only
    assert token.private_key_pem(key).decode().splitlines()[1] not in path.read_text()
    tok = token.issue("demo", key, "c", "u", "eu", ["join"], 60)
    assert token.verify(tok, apps).app == "demo"


def test_ensure_apps_file_names_the_app_and_makes_a_new_key_each_time(tmp_path):
    a = load_apps(ensure_apps_file(tmp_path / "a" / "apps.yaml", app="shop"))
    b = load_apps(ensure_apps_file(tmp_path / "b" / "apps.yaml", app="shop"))
    assert list(a) == ["shop"] and a["shop"] != b["shop"]


def test_ensure_apps_file_replaces_the_secret_file_an_older_skymesh_up_made(tmp_path):
    path = write(tmp_path / "apps.yaml", "# app id: secret (made by `skymesh up` for the "
                 "local mesh)\ndemo: an-old-random-secret-of-32-chars\n")
    ensure_apps_file(path)
    key = read_private_key(private_key_file(path, "demo"))
    assert load_apps(path) == {"demo": (token.public_key_of(key),)}


def test_ensure_apps_file_reuses_an_existing_private_key(tmp_path):
    key_file = write_private_key(tmp_path / "demo.key", PRIV)
    path = ensure_apps_file(tmp_path / "apps.yaml")
    assert load_apps(path) == {"demo": (RAW,)}
    assert read_private_key(key_file).private_bytes_raw() == PRIV.private_bytes_raw()


def test_ensure_apps_file_creates_once(tmp_path):
    path = ensure_apps_file(tmp_path / "apps.yaml")
    first = path.read_bytes()
    ensure_apps_file(path)
    ensure_apps_file(path, app="other")
    assert path.read_bytes() == first


def test_ensure_apps_file_keeps_an_existing_file_and_its_mode(tmp_path):
    path = write(tmp_path / "apps.yaml", f"mine: {SECRET}\n")
    path.chmod(0o640)
    assert ensure_apps_file(path) == path
    assert path.read_text() == f"mine: {SECRET}\n"
    assert mode(path) == 0o640


def test_ensure_apps_file_keeps_even_a_broken_file(tmp_path):
    path = write(tmp_path / "apps.yaml", "demo: [\n")
    ensure_apps_file(path)
    assert path.read_text() == "demo: [\n"


# --- private keys and keygen's apps file -----------------------------------------------------


def test_write_private_key_is_owner_only_and_never_overwrites(tmp_path):
    path = write_private_key(tmp_path / "k" / "app.key", PRIV)
    assert mode(path) == 0o600
    assert read_private_key(path).private_bytes_raw() == PRIV.private_bytes_raw()
    first = path.read_bytes()
    with pytest.raises(AppsError, match="exists already"):
        write_private_key(path, token.generate_key())
    assert path.read_bytes() == first


def test_read_private_key_names_the_file(tmp_path):
    assert "cannot read" in error_of(read_private_key, tmp_path / "none.key")
    bad = write(tmp_path / "bad.key",
                "-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----\n")
    assert "PEM" in error_of(read_private_key, bad)


def test_add_public_key_creates_then_puts_the_newest_first(tmp_path):
    path = tmp_path / "apps.yaml"
    add_public_key(path, "demo", RAW)
    assert load_apps(path) == {"demo": (RAW,)}
    write(path, path.read_text() + f"shop: {SECRET}\n")
    add_public_key(path, "demo", RAW2)
    add_public_key(path, "demo", RAW2)  # already listed: unchanged
    assert load_apps(path) == {"demo": (RAW2, RAW), "shop": (RAW,)}


def test_add_public_key_refuses_a_broken_file_or_a_bad_app(tmp_path):
    path = write(tmp_path / "apps.yaml", "demo: not-a-key\n")
    error_of(lambda p: add_public_key(p, "demo", RAW), path)
    assert path.read_text() == "demo: not-a-key\n"
    assert "app id" in error_of(lambda p: add_public_key(p, "a/b", RAW), tmp_path / "new.yaml")


# --- fabric keys -----------------------------------------------------------------------------


def test_load_fabric_keys_in_order(tmp_path):
    k1, k2 = bytes(range(32)), b"\xab" * 16
    path = write(tmp_path / "fabric.keys", f"{k1.hex()}\n\n  {k2.hex().upper()}  \n")
    assert load_fabric_keys(path) == [k1, k2]


@pytest.mark.parametrize("text, field", [
    ("ab" * 15 + "\n", "key 1"),  # 15 bytes: too short
    ("ab" * 32 + "\n" + "zz" * 32 + "\n", "key 2"),  # not hex
    ("ab" * 32 + "\n" + "abc" * 11 + "\n", "key 2"),  # odd number of digits
])
def test_bad_fabric_keys_are_named(tmp_path, text, field):
    message = error_of(load_fabric_keys, write(tmp_path / "fabric.keys", text))
    assert f"{field}:" in message and "32 hex digits" in message


@pytest.mark.parametrize("text", ["", "\n\n", "   \n"])
def test_empty_fabric_key_file_is_refused(tmp_path, text):
    assert "no key" in error_of(load_fabric_keys, write(tmp_path / "fabric.keys", text))


def test_unreadable_fabric_key_file_is_refused(tmp_path):
    assert "cannot read" in error_of(load_fabric_keys, tmp_path / "missing.keys")
    assert "cannot read" in error_of(load_fabric_keys, tmp_path)
    bad = write(tmp_path / "fabric.keys", "ab" * 32 + "\n\u00e9\n")
    assert "cannot read" in error_of(load_fabric_keys, bad)


def test_ensure_fabric_key_file_creates_one_private_key_once(tmp_path):
    path = tmp_path / "sub" / "fabric.keys"
    assert ensure_fabric_key_file(path) == path
    assert mode(path) == 0o600
    (key,) = load_fabric_keys(path)
    assert len(key) == 32
    ensure_fabric_key_file(path)
    assert load_fabric_keys(path) == [key]
    other = ensure_fabric_key_file(tmp_path / "other.keys")
    assert load_fabric_keys(other) != [key]


def test_ensure_fabric_key_file_keeps_an_existing_rotation(tmp_path):
    text = "cd" * 32 + "\n" + "ef" * 32 + "\n"
    path = write(tmp_path / "fabric.keys", text)
    ensure_fabric_key_file(path)
    assert path.read_text() == text
    assert load_fabric_keys(path) == [b"\xcd" * 32, b"\xef" * 32]
