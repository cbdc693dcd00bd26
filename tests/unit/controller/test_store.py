"""The controller's durable state (controller/store.py): the file format, atomic
replacement, clear errors naming the file, regions no longer in the catalogue."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from controller.store import ControllerState, FileStore, MemoryStore

KNOWN = {"aa", "bb", "cc"}


def test_a_missing_file_is_an_empty_state(tmp_path: Path):
    assert FileStore(tmp_path / "state.json").load(KNOWN) == ControllerState()


def test_the_drained_regions_round_trip_in_the_same_file_format(tmp_path: Path):
    path = tmp_path / "state.json"
    store = FileStore(path)
    store.save_drained({"cc", "aa"})
    # the format every earlier controller wrote and read
    assert path.read_text() == '{\n "drained": [\n  "aa",\n  "cc"\n ]\n}'
    assert json.loads(path.read_text()) == {"drained": ["aa", "cc"]}
    assert store.load(KNOWN) == ControllerState(frozenset({"aa", "cc"}))
    store.save_drained(set())
    assert FileStore(path).load(KNOWN).drained == frozenset()
    assert not path.with_suffix(".tmp").exists()
    assert store.where == str(path)


def test_a_save_that_fails_leaves_the_kept_state_whole(tmp_path: Path, monkeypatch):
    path = tmp_path / "state.json"
    store = FileStore(path)
    store.save_drained({"aa"})

    def no_rename(self, target):
        raise OSError("disk gone")

    monkeypatch.setattr(Path, "replace", no_rename)
    with pytest.raises(OSError, match="disk gone"):
        store.save_drained({"aa", "bb"})
    monkeypatch.undo()
    assert store.load(KNOWN).drained == {"aa"}  # written beside it, never over it


def test_a_save_into_a_missing_directory_raises_oserror(tmp_path: Path):
    with pytest.raises(OSError):
        FileStore(tmp_path / "nowhere" / "state.json").save_drained({"aa"})


@pytest.mark.parametrize("text, reason", [
    ("{not json", "Expecting property name"),
    ('{"drained": "aa"}', "field 'drained' must be a list of region ids"),
    ('{"drained": ["aa", 3]}', "field 'drained' must be a list of region ids"),
    ('["aa"]', "field 'drained' must be a list of region ids"),
])
def test_a_bad_file_is_an_error_naming_it(tmp_path: Path, text: str, reason: str):
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        FileStore(path).load(KNOWN)
    assert str(e.value).startswith(f"{path}: ") and reason in str(e.value)


def test_an_unreadable_file_is_an_error_naming_it(tmp_path: Path):
    path = tmp_path / "state.json"
    path.mkdir()
    with pytest.raises(ValueError, match=f"^{path}: "):
        FileStore(path).load(KNOWN)


def test_an_object_without_drained_is_an_empty_state(tmp_path: Path):
    path = tmp_path / "state.json"
    path.write_text("{}")
    assert FileStore(path).load(KNOWN) == ControllerState()


def test_regions_no_longer_in_the_catalogue_are_ignored_with_a_warning(tmp_path: Path, caplog):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"drained": ["aa", "gone", "zz"]}))
    with caplog.at_level(logging.WARNING, logger="skymesh.controller"):
        state = FileStore(path).load(KNOWN)
    assert state.drained == {"aa"}
    assert f"{path}: drained regions not in the catalogue ignored: gone, zz" in caplog.text


def test_the_memory_store_keeps_what_it_was_given_for_the_process():
    store = MemoryStore()
    assert store.load(KNOWN) == ControllerState()
    store.save_drained({"bb", "zz"})
    assert store.state.drained == {"bb", "zz"}
    assert store.load(KNOWN).drained == {"bb"}
    assert MemoryStore(ControllerState(frozenset({"cc"}))).load(KNOWN).drained == {"cc"}


def test_fabric_keys_are_kept_with_their_epochs_beside_the_drains_in_a_private_file(tmp_path):
    path = tmp_path / "state.json"
    store = FileStore(path)
    store.save_drained(["aa"])
    store.save_fabric_keys([(7, b"\x01" * 32), (6, b"\x02" * 32)])
    store.save_drained(["aa", "cc"])  # one save keeps what the other wrote
    again = FileStore(path).load(KNOWN)
    assert again.drained == {"aa", "cc"}
    assert again.fabric_keys == ((7, b"\x01" * 32), (6, b"\x02" * 32))
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("keys, problem", [
    ({"epoch": 1}, "must be a list"),
    ([{"epoch": 1}], "fabric_keys\\[0\\]"),
    ([{"epoch": 0, "key": "aa"}], "epoch 1..255"),
    ([{"epoch": 1, "key": "zz"}], "fabric_keys\\[0\\]"),
    ([{"epoch": 1, "key": "aa"}, {"epoch": 1, "key": "bb"}], "twice"),
])
def test_kept_fabric_keys_that_make_no_sense_stop_the_start(tmp_path, keys, problem):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"drained": [], "fabric_keys": keys}))
    with pytest.raises(ValueError, match=problem):
        FileStore(path).load(KNOWN)


def test_a_restarted_controller_comes_back_to_the_rotated_keys(tmp_path):
    from controller.core import Controller
    from skymesh.catalogue import Region
    from skymesh.policy import Policy, Zone

    catalogue = {r: Region(id=r, name=r, country="DE", lat=0.0, lon=0.0) for r in KNOWN}
    policy = Policy({"global": Zone("global", frozenset(KNOWN))})
    store = FileStore(tmp_path / "state.json")
    first = Controller(catalogue, policy, fabric_keys=[b"k" * 32], store=store, now=0.0)
    first.rotate_fabric_key(1.0, 1.0)
    for t in (100.0, 200.0):
        first.tick(t, t)
    assert first.keyring.sealing.epoch == 2
    again = Controller(catalogue, policy, fabric_keys=[b"k" * 32],
                       store=FileStore(tmp_path / "state.json"), now=300.0)
    assert again.keyring.kept == first.keyring.kept
    assert again.config_for("aa").fabric_epoch == 2
