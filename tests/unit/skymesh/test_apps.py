"""The controller's secrets (skymesh/apps.py): app secrets and fabric keys, loaded with errors
that name the file and the field, and created once with owner-only permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skymesh.apps import (
    MIN_SECRET_CHARS,
    AppsError,
    ensure_apps_file,
    ensure_fabric_key_file,
    load_apps,
    load_fabric_keys,
)

SECRET = "s" * MIN_SECRET_CHARS


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
    path = write(tmp_path / "apps.yaml", f"demo: {SECRET}\nshop.eu_1-x: 'another-long-secret'\n")
    assert load_apps(path) == {"demo": SECRET.encode(), "shop.eu_1-x": b"another-long-secret"}


def test_load_apps_reads_json_and_accepts_a_string_path(tmp_path):
    path = write(tmp_path / "apps.json", f'{{"demo": "{SECRET}", "b": "{"é" * 16}"}}')
    assert load_apps(str(path)) == {"demo": SECRET.encode(), "b": ("é" * 16).encode()}


def test_apps_error_is_a_value_error():
    assert issubclass(AppsError, ValueError)


def test_secret_length_boundary(tmp_path):
    ok = write(tmp_path / "ok.yaml", f"demo: {'x' * MIN_SECRET_CHARS}\n")
    assert load_apps(ok) == {"demo": b"x" * MIN_SECRET_CHARS}
    short = write(tmp_path / "short.yaml", f"demo: {'x' * (MIN_SECRET_CHARS - 1)}\n")
    message = error_of(load_apps, short)
    assert "demo" in message and "secret" in message and str(MIN_SECRET_CHARS) in message


@pytest.mark.parametrize("value", ["12345678901234567", "null", "[a, b]", "{a: b}", "true",
                                   "''"])
def test_a_secret_that_is_not_a_long_string_names_the_app(tmp_path, value):
    # 12345678901234567 is a YAML int, not a string, however long
    path = write(tmp_path / "apps.yaml", f"good: {SECRET}\nbadone: {value}\n")
    message = error_of(load_apps, path)
    assert "badone" in message and "secret" in message
    assert "good" not in message


@pytest.mark.parametrize("key", ["'bad id'", "'a/b'", "''", "'" + "a" * 65 + "'", "123",
                                 "1.5", "~", "yes", "'ünï'", '"demo\\n"'])
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
    assert apps and all(isinstance(k, str) and isinstance(v, bytes) for k, v in apps.items())
    assert all(len(v.decode()) >= MIN_SECRET_CHARS for v in apps.values())


# --- ensure_apps_file ------------------------------------------------------------------------


def test_ensure_apps_file_creates_a_private_loadable_file(tmp_path):
    path = tmp_path / "deep" / "er" / "apps.yaml"
    assert ensure_apps_file(path) == path
    assert mode(path) == 0o600
    apps = load_apps(path)
    assert list(apps) == ["demo"]
    assert len(apps["demo"]) >= MIN_SECRET_CHARS


def test_ensure_apps_file_names_the_app_and_makes_a_new_secret_each_time(tmp_path):
    a = load_apps(ensure_apps_file(tmp_path / "a.yaml", app="shop"))
    b = load_apps(ensure_apps_file(tmp_path / "b.yaml", app="shop"))
    assert list(a) == ["shop"] and a["shop"] != b["shop"]


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
