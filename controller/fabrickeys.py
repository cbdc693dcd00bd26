"""The fabric keys the controller hands relays, and their rotation with an overlap. Pure: the
time is given (`now`, the shell's monotonic clock), new keys come from a given function.

Each key has an epoch (1..255, wrapping, 0 never used: it is what a relay holds before it is
told anything), which every datagram sealed under it names, so a relay picks the key by epoch.
A rotation goes through three phases, each pushed to every relay (a relay that connects gets
the keys of the moment):

  (a) announced: a new key, of the next epoch, is sent as accepted only: relays open what it
      seals but nobody seals with it yet;
  (b) sealing, `overlap_s` later: it seals, and the previous key is still accepted, for what
      was sealed before every relay switched and is still in flight;
  (c) steady, another `overlap_s` later: the keys before it are dropped.

The overlap must be long compared with the time a push takes to reach every relay (and a
datagram to cross the mesh), so that no relay seals with a key another does not yet hold and no
datagram is in flight under a key already dropped: then a rotation under traffic loses
nothing. A rotation starts every `rotation_s` (0: only when asked) and when an operator asks;
one at a time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_EPOCH = 255
STEADY, ANNOUNCED, SEALING = "steady", "announced", "sealing"


class RotationUnderWay(Exception):
    """A rotation was asked for while one is going on."""


@dataclass(frozen=True)
class FabricKey:
    epoch: int
    key: bytes


@dataclass(frozen=True)
class Change:
    """What a tick or a rotation changed, for the event log."""

    phase: str  # the phase entered
    epoch: int  # the new key's
    detail: str


class KeyRing:
    """The sealing key, the others accepted, and the rotation in progress if any."""

    def __init__(self, keys: Sequence[bytes], *, now: float, rotation_s: float,
                 overlap_s: float, new_key: Callable[[], bytes] = lambda: os.urandom(32),
                 epochs: Sequence[int] | None = None) -> None:
        """`keys`: the first seals, the others are accepted (as a --fabric-keys file lists
        them), of epochs 1, 2, 3, ... in that order unless `epochs` says (kept keys)."""
        if not keys or len(keys) >= MAX_EPOCH:
            raise ValueError(f"1..{MAX_EPOCH - 1} fabric keys, not {len(keys)}")
        if not all(isinstance(k, bytes) and k for k in keys):
            raise ValueError("fabric keys are non-empty bytes")
        epochs = list(epochs) if epochs is not None else list(range(1, len(keys) + 1))
        if len(epochs) != len(keys) or len(set(epochs)) != len(epochs) \
                or not all(1 <= e <= MAX_EPOCH for e in epochs):
            raise ValueError("one distinct epoch in 1..255 per fabric key")
        if rotation_s < 0 or overlap_s < 0 or (rotation_s and rotation_s < 2 * overlap_s):
            raise ValueError("the rotation interval must be 0 (off) or at least two overlaps")
        self.sealing = FabricKey(epochs[0], keys[0])
        self.others = [FabricKey(e, k) for e, k in zip(epochs[1:], keys[1:], strict=True)]
        self.rotation_s = rotation_s
        self.overlap_s = overlap_s
        self.new_key = new_key
        self.phase = STEADY
        self.started = 0.0  # of the rotation in progress
        self.incoming: FabricKey | None = None  # the new key, in phase ANNOUNCED
        self.next_rotation = now + rotation_s if rotation_s else math.inf

    @property
    def accepted(self) -> tuple[FabricKey, ...]:
        """The keys relays accept other than the sealing one."""
        return (*self.others, *([self.incoming] if self.incoming else []))

    @property
    def kept(self) -> tuple[tuple[int, bytes], ...]:
        """Every key relays hold, (epoch, key), the sealing one first: what a restart must
        come back to (the rotation in progress ends there as if it were done)."""
        return tuple((k.epoch, k.key) for k in (self.sealing, *self.accepted))

    @property
    def epochs(self) -> tuple[int, ...]:
        return tuple(sorted(k.epoch for k in (self.sealing, *self.accepted)))

    def next_epoch(self) -> int:
        used = set(self.epochs)
        e = self.sealing.epoch
        while True:
            e = e % MAX_EPOCH + 1  # 1..255
            if e not in used:
                return e

    def rotate(self, now: float) -> Change:
        """Phase (a) now; RotationUnderWay if a rotation is going on."""
        if busy := self.busy(now):
            raise RotationUnderWay(busy)
        self.incoming = FabricKey(self.next_epoch(), self.new_key())
        self.phase = ANNOUNCED
        self.started = now
        if self.rotation_s:
            self.next_rotation = now + self.rotation_s
        return Change(ANNOUNCED, self.incoming.epoch,
                      f"epoch {self.incoming.epoch} accepted; seals in {self.overlap_s:g} s")

    def busy(self, now: float) -> str:
        """Why a rotation cannot start now ("" if it can)."""
        if self.phase == STEADY:
            return ""
        return (f"a rotation is under way: epoch {(self.incoming or self.sealing).epoch} is "
                f"{self.phase} (done {self.started + 2 * self.overlap_s - now:.1f} s from now)")

    def tick(self, now: float) -> Change | None:
        """The phase due at `now`, at most one step per call; None when nothing changed."""
        if self.phase == ANNOUNCED and now >= self.started + self.overlap_s:
            assert self.incoming is not None
            previous = self.sealing
            self.others = [previous, *self.others]
            self.sealing, self.incoming = self.incoming, None
            self.phase = SEALING
            return Change(SEALING, self.sealing.epoch,
                          f"epoch {self.sealing.epoch} seals; epoch {previous.epoch} still "
                          f"accepted for {self.overlap_s:g} s")
        if self.phase == SEALING and now >= self.started + 2 * self.overlap_s:
            dropped = ", ".join(str(k.epoch) for k in self.others)
            self.others = []
            self.phase = STEADY
            return Change(STEADY, self.sealing.epoch,
                          f"epoch {self.sealing.epoch} alone; dropped epoch {dropped}")
        if self.phase == STEADY and now >= self.next_rotation:
            return self.rotate(now)
        return None

    def times(self, now: float) -> tuple[float, float]:
        """(seconds until the new key seals, until the keys before it are dropped), 0 when
        that is done or no rotation is going on."""
        if self.phase == STEADY:
            return 0.0, 0.0
        return (max(0.0, self.started + self.overlap_s - now),
                max(0.0, self.started + 2 * self.overlap_s - now))
