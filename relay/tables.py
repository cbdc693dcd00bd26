"""The relay's route table: applied in version order, validated before use, kept on failure,
and rerouted locally (fast reroute) around next hops whose links are down."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    dst: str
    next_hop: str
    path: tuple[str, ...]
    cost_ms: float
    zone: str = "global"
    backup_next_hop: str | None = None


KEPT_VERSIONS = 8  # tables kept that a table of changes may build on


@dataclass
class RouteTables:
    region: str
    version: int = 0
    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)  # by (zone, dst)
    down: frozenset[str] = frozenset()  # peers whose links are down, as the relay sees them
    # the tables last applied, by version: the controller sends the changes to one of them
    kept: dict[int, dict[tuple[str, str], Entry]] = field(default_factory=dict)

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
        self.kept[version] = self.entries
        for old in sorted(self.kept)[:-KEPT_VERSIONS]:
            del self.kept[old]
        return None

    def apply_changes(self, version: int, base: int, changed: list[Entry],
                      removed: Iterable[tuple[str, str]]) -> str | None:
        """The table of `version` as changes to the one of `base` (rows added or replaced,
        rows removed by (zone, dst)); as `apply`, None or the reason for the rejection, which
        also comes when the base table is no longer held."""
        held = self.kept.get(base)
        if held is None:
            return f"changes to version {base}, which is not held (holding {self.version})"
        table = dict(held)
        for key in removed:
            table.pop(key, None)
        seen = set()
        for e in changed:
            if (e.zone, e.dst) in seen:
                return f"duplicate destination {e.dst!r} in zone {e.zone!r}"
            seen.add((e.zone, e.dst))
            table[(e.zone, e.dst)] = e
        return self.apply(version, list(table.values()))

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
        """Where traffic for `dst` goes now: the primary next hop, or its precomputed backup
        while the primary's link is down (None when both are, or there is no route)."""
        entry = self.entries.get((zone, dst))
        return None if entry is None else self.hop_of(entry)

    def hop_of(self, entry: Entry) -> str | None:
        if entry.next_hop not in self.down:
            return entry.next_hop
        if entry.backup_next_hop is not None and entry.backup_next_hop not in self.down:
            return entry.backup_next_hop
        return None

    def set_down(self, peers: frozenset[str] | set[str]) -> list[Entry]:
        """Mark these peers' links down (and all others up); returns the entries whose
        forwarding changed, which take effect at once."""
        before = {k: self.hop_of(e) for k, e in self.entries.items()}
        self.down = frozenset(peers)
        return [e for k, e in self.entries.items() if self.hop_of(e) != before[k]]

    def rerouted(self) -> list[Entry]:
        """The entries forwarding elsewhere than the controller's primary next hop."""
        return [e for e in self.entries.values() if e.next_hop in self.down]

    def neighbours_in_use(self) -> frozenset[str]:
        """The peers that primaries and backups forward to."""
        hops = {e.next_hop for e in self.entries.values()}
        hops.update(e.backup_next_hop for e in self.entries.values() if e.backup_next_hop)
        return frozenset(hops)

    def watch_list(self, active: Iterable[str]) -> frozenset[str]:
        """The links to watch closely: the next hops that traffic went to lately and the
        backups of the routes through them."""
        active = frozenset(active)
        return active | {e.backup_next_hop for e in self.entries.values()
                         if e.backup_next_hop and e.next_hop in active}
