"""The controller's durable state behind one interface (DESIGN.md, Store): a file for a single
controller today, etcd for replicas later, an in-memory store for tests and for a controller
run without --state.

What an operator changed must survive a controller restart, and a change is acknowledged
only once it is kept: `save_drained` raises OSError when it cannot keep it, and the caller
rolls the change back. Only the drained regions are kept today; the admin audit log, policy
and key epochs will follow as more methods of the same interface.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger("skymesh.controller")


@dataclass(frozen=True)
class ControllerState:
    """What the controller keeps across restarts."""

    drained: frozenset[str] = frozenset()


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

    def save_drained(self, drained: Iterable[str]) -> None:
        """Keep the drained regions; raises OSError if they could not be kept."""
        ...


def only_known(drained: Iterable[str], known: Collection[str], where: str) -> ControllerState:
    """Drop (with a warning) the regions no longer in the catalogue: a region removed from
    the catalogue while drained must not stop the controller from starting."""
    drained = list(drained)
    unknown = [r for r in drained if r not in known]
    if unknown:
        log.warning("%s: drained regions not in the catalogue ignored: %s",
                    where, ", ".join(unknown))
    return ControllerState(drained=frozenset(r for r in drained if r in known))


class FileStore:
    """The state as a small JSON file, `{"drained": [...]}`, replaced atomically (written to a
    .tmp beside it, then renamed over it), so a crash mid-write leaves the old state whole."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

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
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.path}: {e}") from None
        return only_known(drained, known, self.where)

    def save_drained(self, drained: Iterable[str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"drained": sorted(drained)}, indent=1))
        tmp.replace(self.path)  # the change is acknowledged only once it is kept


class MemoryStore:
    """State that lives as long as the process: for tests, and for a controller run without a
    state file (its drains end with it, as they always have)."""

    def __init__(self, state: ControllerState | None = None) -> None:
        self.state = state or ControllerState()

    @property
    def where(self) -> str:
        return "memory"

    def load(self, known: Collection[str]) -> ControllerState:
        return only_known(sorted(self.state.drained), known, self.where)

    def save_drained(self, drained: Iterable[str]) -> None:
        self.state = ControllerState(drained=frozenset(drained))
