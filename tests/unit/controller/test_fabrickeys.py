"""Fabric keys with epochs and their rotation (controller/fabrickeys.py), alone and in the
controller core, on explicit time: the three phases, what every relay is pushed at each, what a
relay that connects gets, the schedule, the operator's rotation and its audit entry."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core import NotReady, RelayConfig, Settings
from controller.fabrickeys import (
    ANNOUNCED,
    MAX_EPOCH,
    SEALING,
    STEADY,
    FabricKey,
    KeyRing,
    RotationUnderWay,
)
from tests.unit.controller.test_controller import Rig


def counter_keys():
    n = itertools.count(1)
    return lambda: b"new-%d" % next(n)


def ring(keys=(b"k1",), rotation_s=100.0, overlap_s=5.0, now=0.0) -> KeyRing:
    return KeyRing(list(keys), now=now, rotation_s=rotation_s, overlap_s=overlap_s,
                   new_key=counter_keys())


def held(r: KeyRing) -> tuple[tuple[int, bytes], tuple[tuple[int, bytes], ...]]:
    return ((r.sealing.epoch, r.sealing.key),
            tuple(sorted((k.epoch, k.key) for k in r.accepted)))


def test_file_keys_get_epochs_in_order_the_first_seals():
    r = ring([b"a", b"b", b"c"])
    assert r.sealing == FabricKey(1, b"a")
    assert r.accepted == (FabricKey(2, b"b"), FabricKey(3, b"c"))
    assert r.epochs == (1, 2, 3) and r.phase == STEADY


def test_the_three_phases_on_explicit_time():
    r = ring([b"a", b"old"], rotation_s=0.0)
    assert r.tick(1e9) is None  # no schedule: nothing happens by itself
    change = r.rotate(10.0)
    assert (change.phase, change.epoch) == (ANNOUNCED, 3)
    # (a) the new key is accepted only
    assert held(r) == ((1, b"a"), ((2, b"old"), (3, b"new-1")))
    assert r.times(12.0) == (3.0, 8.0)
    assert r.tick(14.999) is None
    # (b) it seals; the previous ones are still accepted
    assert r.tick(15.0).phase == SEALING
    assert held(r) == ((3, b"new-1"), ((1, b"a"), (2, b"old")))
    assert r.tick(19.9) is None
    # (c) the previous ones are dropped
    change = r.tick(20.0)
    assert change.phase == STEADY and "dropped epoch 1, 2" in change.detail
    assert held(r) == ((3, b"new-1"), ())
    assert r.times(20.0) == (0.0, 0.0)


def test_one_rotation_at_a_time():
    r = ring()
    r.rotate(0.0)
    with pytest.raises(RotationUnderWay, match="under way: epoch 2 is announced"):
        r.rotate(1.0)
    r.tick(5.0)
    with pytest.raises(RotationUnderWay, match="epoch 2 is sealing"):
        r.rotate(6.0)
    r.tick(10.0)
    assert r.rotate(10.0).epoch == 3


def test_a_late_tick_takes_one_phase_at_a_time():
    """A controller that was busy still goes through (b) before (c): relays are pushed the
    sealing key with its predecessor accepted before the predecessor is dropped."""
    r = ring(rotation_s=0.0)
    r.rotate(0.0)
    assert r.tick(100.0).phase == SEALING
    assert r.tick(100.0).phase == STEADY


def test_rotations_follow_the_schedule():
    r = ring(rotation_s=100.0, overlap_s=5.0, now=0.0)
    assert r.tick(99.0) is None
    assert r.tick(100.0).phase == ANNOUNCED
    assert r.tick(105.0).phase == SEALING and r.tick(110.0).phase == STEADY
    assert r.tick(199.0) is None
    assert r.tick(200.0).phase == ANNOUNCED  # every 100 s from the start of the last
    r2 = ring(rotation_s=100.0, now=0.0)
    r2.rotate(50.0)  # an operator's rotation moves the next one
    for t in (55.0, 60.0):
        r2.tick(t)
    assert r2.tick(149.0) is None and r2.tick(150.0).phase == ANNOUNCED


def test_epochs_wrap_past_255_and_skip_zero_and_those_in_use():
    r = ring([b"a"] + [b"x%d" % i for i in range(3)], rotation_s=0.0)
    r.sealing = FabricKey(MAX_EPOCH, b"a")
    r.others = [FabricKey(1, b"b")]
    assert r.next_epoch() == 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 30.0), min_size=1, max_size=60), st.integers(1, 5))
def test_any_schedule_keeps_the_invariants(steps, files):
    """Under any sequence of ticks and operator rotations: distinct epochs in 1..255, the key
    that seals is accepted by whoever already held the set before it sealed, and the set
    before each change is never dropped in the same step the sealing key changes."""
    r = ring([b"f%d" % i for i in range(files)], rotation_s=20.0, overlap_s=4.0)
    now = 0.0
    before = held(r)
    for i, dt in enumerate(steps):
        now += dt
        if i % 7 == 3 and not r.busy(now):
            r.rotate(now)
        else:
            r.tick(now)
        after = held(r)
        epochs = r.epochs
        assert len(set(epochs)) == len(epochs) and all(1 <= e <= MAX_EPOCH for e in epochs)
        if after[0] != before[0]:  # a new key seals: every relay already accepted it ...
            assert after[0] in before[1]
            assert before[0] in after[1]  # ... and the one before is still accepted
        before = after


def test_bad_settings_are_refused():
    for kw in (dict(keys=()), dict(rotation_s=5.0, overlap_s=5.0), dict(overlap_s=-1.0)):
        with pytest.raises(ValueError):
            ring(**kw)


# -- in the controller core ---------------------------------------------------------------


def configs(r: Rig, region: str) -> list[RelayConfig]:
    return [m for m in r.take(region) if isinstance(m, RelayConfig)]


def keys_of(c: RelayConfig) -> tuple[int, dict[int, bytes]]:
    return c.fabric_epoch, {c.fabric_epoch: c.fabric_key, **dict(c.accepted_keys)}


def test_the_controller_pushes_every_phase_to_every_relay_and_audits_the_operator():
    r = Rig(Settings(fabric_key_rotation_s=0.0, fabric_key_overlap_s=5.0))
    for region in ("a", "b"):
        r.connect(region)
        (first,) = configs(r, region)
        assert keys_of(first) == (1, {1: b"k1", 2: b"k2"})
    change = r.c.rotate_fabric_key(r.now, r.unix, "admin/operator/olga")
    assert change.epoch == 3
    (entry,) = r.c.audit_log()
    assert (entry.actor, entry.action, entry.target, entry.detail) == (
        "admin/operator/olga", "rotate-fabric-key", "fabric", "epoch 3")
    for region in ("a", "b"):
        (c,) = configs(r, region)
        assert c.fabric_epoch == 1 and dict(c.accepted_keys).keys() == {2, 3}
    with pytest.raises(NotReady, match="under way"):
        r.c.rotate_fabric_key(r.now, r.unix, "admin/operator/olga")
    assert len(r.c.audit_log()) == 1  # refused before anything was kept
    r.advance(4.9)
    r.c.tick(r.now, r.unix)
    assert configs(r, "a") == []
    r.advance(0.1)
    r.c.tick(r.now, r.unix)
    for region in ("a", "b"):
        (c,) = configs(r, region)
        assert c.fabric_epoch == 3 and dict(c.accepted_keys).keys() == {1, 2}
    r.connect("d")  # a relay that connects now gets the keys of the moment
    (c,) = configs(r, "d")
    assert c.fabric_epoch == 3 and dict(c.accepted_keys).keys() == {1, 2}
    r.advance(5.0)
    r.c.tick(r.now, r.unix)
    for region in ("a", "b", "d"):
        (c,) = configs(r, region)
        assert c.fabric_epoch == 3 and c.accepted_keys == ()
    kinds = [(e.event.kind, e.event.peer) for e in r.c.events]
    assert [p for k, p in kinds if k == "fabric-key"] == [ANNOUNCED, SEALING, STEADY]


def test_the_controller_rotates_on_schedule():
    r = Rig(Settings(fabric_key_rotation_s=60.0, fabric_key_overlap_s=2.0))
    r.connect("a")
    configs(r, "a")
    r.advance(59.0)
    r.c.tick(r.now, r.unix)
    assert configs(r, "a") == []
    r.advance(1.0)
    r.c.tick(r.now, r.unix)
    (c,) = configs(r, "a")
    assert c.fabric_epoch == 1 and 3 in dict(c.accepted_keys)
    assert r.c.audit_log() == []  # the schedule is no operator's change
