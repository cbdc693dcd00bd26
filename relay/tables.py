"""The relay's route table: applied in version order, validated before use, kept on failure."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    dst: str
    next_hop: str
    path: tuple[str, ...]
    cost_ms: float
    zone: str = "global"
    backup_next_hop: str | None = None


@dataclass
class RouteTables:
    region: str
    version: int = 0
    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)  # by (zone, dst)

    def apply(self, version: int, entries: list[Entry]) -> str | None:
        """Replace the table; returns None when applied, else the reason for the rejection
        (the table held before stays in force)."""
        if version <= self.version:
            return f"stale version {version}: holding version {self.version}"
        problem = self.check(entries)
        if problem:
            return problem
        self.version = version
        self.entries = {(e.zone, e.dst): e for e in entries}
        return None

    def check(self, entries: list[Entry]) -> str | None:
        seen = set()
        for e in entries:
            if (e.zone, e.dst) in seen:
                return f"duplicate destination {e.dst!r} in zone {e.zone!r}"
            seen.add((e.zone, e.dst))
            if e.dst == self.region:
                return f"route to self ({e.dst!r})"
            if len(e.path) < 2 or e.path[0] != self.region or e.path[-1] != e.dst:
                return f"route to {e.dst!r}: path {list(e.path)} does not run from here to there"
            if e.next_hop != e.path[1]:
                return f"route to {e.dst!r}: next hop {e.next_hop!r} is not the path's second hop"
            if len(set(e.path)) != len(e.path):
                return f"route to {e.dst!r}: path {list(e.path)} loops"
            if not e.cost_ms >= 0:
                return f"route to {e.dst!r}: bad cost {e.cost_ms!r}"
            if e.backup_next_hop in (e.next_hop, self.region):
                return f"route to {e.dst!r}: backup {e.backup_next_hop!r} is no alternative"
        return None

    def next_hop(self, dst: str, zone: str = "global") -> str | None:
        entry = self.entries.get((zone, dst))
        return entry.next_hop if entry else None
