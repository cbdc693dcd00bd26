"""The controller's durable state behind one interface (DESIGN.md, Store): a file for a single
controller, etcd for replicas (controller/etcdstore.py), an in-memory store for tests and for
a controller run without --state.

What an operator changed must survive a controller restart, and a change is acknowledged
only once it is kept: `save_drained` raises OSError when it cannot keep it, and the caller
rolls the change back. Kept today: the drained regions, the fabric keys with their epochs (so
that a restart does not hand relays keys their peers do not hold), and the audit log of every
change an operator made or was refused (who, what, when); policy will follow as more methods
of the same interface.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger("skymesh.controller")


@dataclass(frozen=True)
class AuditEntry:
    """One change made (or refused) through the admin service."""

    at_unix_s: float
    actor: str  # the caller's identity, e.g. admin/operator/alice, or "insecure"
    action: str  # drain, undrain, chaos, denied
    target: str  # the region (or, for denied, the RPC)
    detail: str = ""

    def to_json(self) -> dict:
        return {"at_unix_s": self.at_unix_s, "actor": self.actor, "action": self.action,
                "target": self.target, "detail": self.detail}

    @classmethod
    def from_json(cls, data: dict) -> AuditEntry:
        """Raises ValueError for anything but an entry as `to_json` writes it."""
        if not isinstance(data, dict):
            raise ValueError("an audit entry is an object")
        try:
            entry = cls(float(data["at_unix_s"]), data["actor"], data["action"],
                        data["target"], data.get("detail", ""))
        except (KeyError, TypeError) as e:
            raise ValueError(f"an audit entry needs at_unix_s, actor, action, target: {e}") \
                from None
        if not all(isinstance(v, str) for v in (entry.actor, entry.action, entry.target,
                                                 entry.detail)):
            raise ValueError("actor, action, target and detail of an audit entry are strings")
        return entry


def recent(entries: list[AuditEntry], since_unix_s: float, limit: int) -> list[AuditEntry]:
    chosen = [e for e in entries if e.at_unix_s >= since_unix_s]
    return chosen[-limit:] if limit else chosen


@dataclass(frozen=True)
class ControllerState:
    """What the controller keeps across restarts."""

    drained: frozenset[str] = frozenset()
    # (epoch, key), the sealing key first; empty: none kept yet
    fabric_keys: tuple[tuple[int, bytes], ...] = ()


def check_fabric_keys(keys: object) -> tuple[tuple[int, bytes], ...]:
    """Kept fabric keys as JSON has them ([{"epoch": E, "key": HEX}, ...]); ValueError."""
    if not isinstance(keys, list):
        raise ValueError("field 'fabric_keys' must be a list")
    out = []
    for i, k in enumerate(keys):
        try:
            epoch, key = k["epoch"], bytes.fromhex(k["key"])
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"fabric_keys[{i}]: expected {{epoch, key (hex)}}") from None
        if not isinstance(epoch, int) or isinstance(epoch, bool) or not 1 <= epoch <= 255 \
                or not key:
            raise ValueError(f"fabric_keys[{i}]: epoch 1..255 and a non-empty key")
        out.append((epoch, key))
    if len({e for e, _ in out}) != len(out):
        raise ValueError("fabric_keys: an epoch is listed twice")
    return tuple(out)


class Store(Protocol):
    """Where the controller's durable state lives."""

    @property
    def where(self) -> str:
        """The place the state is kept, as errors about it name it."""
        ...

    def load(self, known: Collection[str]) -> ControllerState:
        """The kept state, limited to the regions `known` (the catalogue may have lost some
        since it was written). Raises ValueError naming the place when the state is
        unreadable: a controller must not start on state it cannot trust."""
        ...

    async def keep_first(self, *, drained: Iterable[str] | None = None,
                         audit: Sequence[AuditEntry] = ()) -> None:
        """Keep what a change is about to write before the core makes it, where the store
        cannot keep it as the core writes it (etcd, a network away: the core's writes of
        the same values then cost nothing); OSError, nothing kept, if it could not be. A
        file or memory keeps it as the core writes it: nothing to do first."""
        ...

    def save_drained(self, drained: Iterable[str]) -> None:
        """Keep the drained regions; raises OSError if they could not be kept."""
        ...

    def save_fabric_keys(self, keys: Sequence[tuple[int, bytes]]) -> None:
        """Keep the fabric keys, (epoch, key) with the sealing one first; OSError if not.
        They are secrets: where they are kept is readable by the controller only."""
        ...

    def append_audit(self, entry: AuditEntry) -> None:
        """Keep one audit entry after those before it; raises OSError if it could not be
        kept (the change it records is then refused)."""
        ...

    def audit(self, since_unix_s: float = 0.0, limit: int = 0) -> list[AuditEntry]:
        """The entries at or after `since_unix_s`, oldest first; the last `limit` (0: all)."""
        ...


def only_known(drained: Iterable[str], known: Collection[str], where: str,
               fabric_keys: tuple[tuple[int, bytes], ...] = ()) -> ControllerState:
    """Drop (with a warning) the regions no longer in the catalogue: a region removed from
    the catalogue while drained must not stop the controller from starting."""
    drained = list(drained)
    unknown = [r for r in drained if r not in known]
    if unknown:
        log.warning("%s: drained regions not in the catalogue ignored: %s",
                    where, ", ".join(unknown))
    return ControllerState(drained=frozenset(r for r in drained if r in known),
                           fabric_keys=fabric_keys)


@contextlib.contextmanager
def counted(ops: Counter[tuple[str, str]], op: str) -> Iterator[None]:
    """Count `op` in `ops` as ("op", "ok") or, when it raised, ("op", "error")."""
    try:
        yield
    except BaseException:
        ops[(op, "error")] += 1
        raise
    ops[(op, "ok")] += 1


class FileStore:
    """The state as a small JSON file, `{"drained": [...], "fabric_keys": [...]}`, mode 0600
    (it holds the fabric keys), replaced atomically (written to a .tmp beside it, then
    renamed over it), so a crash mid-write leaves the old state whole.
    The audit log is a JSON-lines file beside it (<state>.audit.jsonl), appended and synced
    entry by entry; a torn last line (a crash mid-append) is skipped when read."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.audit_path = self.path.with_name(self.path.name + ".audit.jsonl")
        self.kept: dict = {}  # the document as last read or written
        self.ops: Counter[tuple[str, str]] = Counter()  # (op, ok or error), for the metrics

    @property
    def where(self) -> str:
        return str(self.path)

    def load(self, known: Collection[str]) -> ControllerState:
        if not self.path.exists():
            return ControllerState()
        try:
            data = json.loads(self.path.read_text())
            drained = data.get("drained", []) if isinstance(data, dict) else None
            if not isinstance(drained, list) or not all(isinstance(r, str) for r in drained):
                raise ValueError("field 'drained' must be a list of region ids")
            keys = check_fabric_keys(data.get("fabric_keys", []))
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.path}: {e}") from None
        self.kept = data
        return only_known(drained, known, self.where, keys)

    async def keep_first(self, *, drained: Iterable[str] | None = None,
                         audit: Sequence[AuditEntry] = ()) -> None:
        return  # kept as the core writes it

    def save_drained(self, drained: Iterable[str]) -> None:
        self._write({**self.kept, "drained": sorted(drained)})

    def save_fabric_keys(self, keys: Sequence[tuple[int, bytes]]) -> None:
        self._write({**self.kept, "fabric_keys": [{"epoch": e, "key": k.hex()}
                                                  for e, k in keys]})

    def _write(self, data: dict) -> None:
        with counted(self.ops, "write"):
            self._replace(data)

    def _replace(self, data: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=1))
        os.chmod(tmp, 0o600)  # a file left by an older version had the umask's mode
        tmp.replace(self.path)  # the change is acknowledged only once it is kept
        self.kept = data

    def append_audit(self, entry: AuditEntry) -> None:
        line = json.dumps(entry.to_json(), separators=(",", ":")) + "\n"
        with counted(self.ops, "audit"), open(self.audit_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def audit(self, since_unix_s: float = 0.0, limit: int = 0) -> list[AuditEntry]:
        try:
            lines = self.audit_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for n, line in enumerate(lines, 1):
            try:
                entries.append(AuditEntry.from_json(json.loads(line)))
            except ValueError as e:
                log.warning("%s:%d: skipped: %s", self.audit_path, n, e)
        return recent(entries, since_unix_s, limit)


class MemoryStore:
    """State that lives as long as the process: for tests, and for a controller run without a
    state file (its drains end with it, as they always have)."""

    def __init__(self, state: ControllerState | None = None) -> None:
        self.state = state or ControllerState()
        self.entries: list[AuditEntry] = []

    @property
    def where(self) -> str:
        return "memory"

    def load(self, known: Collection[str]) -> ControllerState:
        return only_known(sorted(self.state.drained), known, self.where,
                          self.state.fabric_keys)

    async def keep_first(self, *, drained: Iterable[str] | None = None,
                         audit: Sequence[AuditEntry] = ()) -> None:
        return  # kept as the core writes it

    def save_drained(self, drained: Iterable[str]) -> None:
        self.state = ControllerState(drained=frozenset(drained),
                                     fabric_keys=self.state.fabric_keys)

    def save_fabric_keys(self, keys: Sequence[tuple[int, bytes]]) -> None:
        self.state = ControllerState(drained=self.state.drained, fabric_keys=tuple(keys))

    def append_audit(self, entry: AuditEntry) -> None:
        self.entries.append(entry)

    def audit(self, since_unix_s: float = 0.0, limit: int = 0) -> list[AuditEntry]:
        return recent(self.entries, since_unix_s, limit)
