"""Flap damping for links (after BGP route flap damping, RFC 2439): each change between
usable and unusable adds a penalty that decays exponentially; a link whose penalty passes the
suppress threshold is treated as down until the penalty decays below the reuse threshold.
Plain state fed explicit times."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DampingSettings:
    penalty: float = 1000.0  # added per flap
    suppress: float = 2500.0  # three flaps in quick succession
    reuse: float = 750.0
    half_life_s: float = 15.0


@dataclass
class _Entry:
    penalty: float = 0.0
    at: float = 0.0
    usable: bool | None = None
    suppressed: bool = False


@dataclass
class FlapDamper:
    settings: DampingSettings = field(default_factory=DampingSettings)
    entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    # the links suppressed as last seen: what a caller over many links looks at
    damped: set[tuple[str, str]] = field(default_factory=set)

    def _decay(self, e: _Entry, now: float) -> None:
        if now > e.at:
            e.penalty *= math.exp(-math.log(2) * (now - e.at) / self.settings.half_life_s)
            e.at = now

    def observe(self, link: tuple[str, str], usable: bool, now: float) -> None:
        e = self.entries.setdefault(link, _Entry(at=now))
        self._decay(e, now)
        if e.usable is not None and usable != e.usable:
            e.penalty += self.settings.penalty
            if e.penalty >= self.settings.suppress:
                e.suppressed = True
                self.damped.add(link)
        e.usable = usable

    def suppressed(self, link: tuple[str, str], now: float) -> bool:
        e = self.entries.get(link)
        if e is None or not e.suppressed:
            return False
        self._decay(e, now)
        if e.penalty < self.settings.reuse:
            e.suppressed = False
            self.damped.discard(link)
        return e.suppressed

    def forget(self, region: str) -> None:
        for link in [k for k in self.entries if region in k]:
            del self.entries[link]
            self.damped.discard(link)
