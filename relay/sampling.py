"""Whose turn it is to be measured, in a partial mesh: the peers a relay does not probe all the
time take turns, one turn starting every `period_s / len(members)` seconds, the peer whose last
turn is oldest first. With steady membership each peer's turns then come `period_s` apart, and
only about `members x burst / period_s` of them are measured at any time. A plain object fed
explicit times; relay/scheduler.py probes the peers whose turn it is.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable

# members never measured take their first turns this fast, all of them within this long: a
# relay that joins a large mesh learns where its shortcuts are in seconds, not a period, and
# the controller's routes settle as soon (a turn is a burst of three probes: a thousand peers
# in 10 s is 300 probes a second)
FIRST_PASS_S = 10.0


class Rotation:
    """The members in the order of their last turns (oldest first) and when the next turn
    starts. Members never measured go first, in a random order (relays that joined together
    do not all sample the same peer first); members measured just now go last."""

    def __init__(self, period_s: float, rng: random.Random) -> None:
        self.period_s = period_s
        self.rng = rng
        self.queue: deque[str] = deque()  # oldest turn first
        self.members: set[str] = set()
        self.fresh: set[str] = set()  # members never measured: their turns come fast
        self.next_at: float | None = None  # when the next turn starts (None: no members)

    def __contains__(self, region: object) -> bool:
        return region in self.members

    def __len__(self) -> int:
        return len(self.members)

    def add(self, regions: Iterable[str], now: float, measured: bool) -> None:
        """New members: `measured` ones were measured until now, so their turn comes last;
        the others' first."""
        new = [r for r in regions if r not in self.members]
        if not new:
            return
        self.rng.shuffle(new)
        self.members.update(new)
        if measured:
            self.queue.extend(new)
        else:
            self.queue.extendleft(new)
            self.fresh.update(new)
        if self.next_at is None:
            self.next_at = now

    def remove(self, regions: Iterable[str]) -> None:
        gone = self.members.intersection(regions)
        if not gone:
            return
        self.members -= gone
        self.fresh -= gone
        self.queue = deque(r for r in self.queue if r not in gone)
        if not self.members:
            self.next_at = None

    def due(self, now: float) -> list[str]:
        """The members whose turn starts now (more than one only when the caller woke late)."""
        turns: list[str] = []
        if self.next_at is None:
            return turns
        spacing = self.period_s / len(self.queue)
        while now >= self.next_at and len(turns) < len(self.queue):
            region = self.queue.popleft()
            self.queue.append(region)
            turns.append(region)
            self.fresh.discard(region)
            fast = self.queue[0] in self.fresh
            self.next_at += min(spacing, FIRST_PASS_S / len(self.queue)) if fast else spacing
        if self.next_at <= now:  # a long stall: every member had its turn, start afresh
            self.next_at = now + spacing
        return turns

    def wake(self) -> float:
        """When the next turn starts."""
        return math.inf if self.next_at is None else self.next_at
