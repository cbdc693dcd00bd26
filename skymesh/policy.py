"""Data-residency policy: named zones, each a set of regions its traffic may touch.

The policy is one YAML file (by default `regions/policy.yaml`, beside the region files):

    zones:
      eu:
        description: EU/EEA (GDPR)
        countries: [DE, FR, NO]     # ISO 3166-1 alpha-2 codes of the regions' countries
        tags: [eu]                  # region tags
        regions: [zurich]           # region ids
        exclude: [some-id]          # region ids removed at the end
      global:
        all: true                   # every region of the catalogue

A zone's regions are every region of the catalogue (`all: true`), or the union of the regions
whose country is in `countries`, whose tags meet `tags` and whose id is in `regions`; minus
`exclude`. The policy is validated against the full catalogue; a mesh started with a few
regions only narrows it with `Policy.restrict`.

Parsing is pure and never raises (`parse_policy`); `load_policy` reads a file and raises one
`PolicyError` listing every problem, each `file: field: what is wrong`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skymesh.catalogue import POLICY_FILE, Region, _read, country_problem

ZONE_NAME_PATTERN = re.compile(r"^[a-z0-9-]{1,32}$")
SELECTORS = ("countries", "tags", "regions")
ZONE_KEYS = ("description", "all", *SELECTORS, "exclude")


@dataclass(frozen=True)
class Zone:
    name: str
    regions: frozenset[str]
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.regions, frozenset):
            object.__setattr__(self, "regions", frozenset(self.regions))


class UnknownZoneError(KeyError):
    """A zone name the policy does not define; `str()` is the plain message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Policy:
    # Zones by name, ordered by name. Not part of the hash (a dict is not hashable); equal
    # policies still hash equal.
    zones: Mapping[str, Zone] = field(hash=False)
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "zones", dict(sorted(self.zones.items())))

    def zone(self, name: str) -> Zone:
        """The zone called `name`; KeyError (UnknownZoneError) naming the known zones."""
        try:
            return self.zones[name]
        except (KeyError, TypeError):
            known = ", ".join(self.zones) or "none"
            where = f" in {self.source}" if self.source else ""
            raise UnknownZoneError(f"unknown zone {name!r}{where}; known zones: {known}") from None

    def zones_of(self, region_id: str) -> list[str]:
        """The names of the zones that contain `region_id`, ordered by name."""
        return [name for name, zone in self.zones.items() if region_id in zone.regions]

    def restrict(self, region_ids: Iterable[str]) -> Policy:
        """The policy with every zone intersected with `region_ids` (e.g. a mesh started with
        --only a few regions). Zones that become empty are kept, empty."""
        keep = frozenset({region_ids} if isinstance(region_ids, str) else region_ids)
        return Policy(
            zones={
                name: Zone(name=name, regions=zone.regions & keep, description=zone.description)
                for name, zone in self.zones.items()
            },
            source=self.source,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: {"zones": {name: {"regions": [...], "description": ...}}}."""
        return {
            "zones": {
                name: {"regions": sorted(zone.regions), "description": zone.description}
                for name, zone in self.zones.items()
            }
        }


class PolicyError(ValueError):
    """One or more problems in a policy, each `source: field: what is wrong`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)


def _label(key: object) -> str:
    """A mapping key as it appears in a field path: plain if printable text, else repr."""
    if isinstance(key, str) and key and key.isprintable() and key.strip() == key:
        return key
    return repr(key)


def _strings(
    value: object, path: str, problems: list[str], check: Callable[[str], str | None]
) -> set[str]:
    """The non-empty strings of a list that pass `check` (which returns what is wrong, or
    None); a problem for every other item, in list order."""
    if not isinstance(value, list):
        problems.append(f"{path}: must be a list of strings, got {value!r}")
        return set()
    items = set()
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        if not (isinstance(item, str) and item.strip()):
            problems.append(f"{item_path}: must be a non-empty string, got {item!r}")
        elif (wrong := check(item)) is not None:
            problems.append(f"{item_path}: {wrong}")
        else:
            items.add(item)
    return items


def _country(code: str) -> str | None:
    return country_problem(code)


def _any(_: str) -> None:
    return None


def _parse_zone(
    body: object, path: str, catalogue: Mapping[str, Region]
) -> tuple[frozenset[str] | None, str, list[str]]:
    """Validate one zone body; return (regions or None, description, problems)."""
    if not isinstance(body, dict):
        kind = "None" if body is None else type(body).__name__
        return None, "", [f"{path}: must be a mapping of zone fields, got {kind}"]
    problems: list[str] = []
    for key in body:
        if key not in ZONE_KEYS:
            problems.append(f"{path}: unknown key {key!r}")

    description = body.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        problems.append(f"{path}.description: must be a string, got {description!r}")
        description = ""

    select_all = body.get("all", False)
    if not isinstance(select_all, bool):
        problems.append(f"{path}.all: must be true or false")
        select_all = False
    elif select_all and any(key in body for key in SELECTORS):
        problems.append(f"{path}: 'all: true' cannot be combined with countries/tags/regions")

    def known(region_id: str) -> str | None:
        return None if region_id in catalogue else f"unknown region {region_id!r}"

    selected: set[str] = set(catalogue) if select_all else set()
    if "countries" in body:
        countries = _strings(body["countries"], f"{path}.countries", problems, _country)
        selected |= {rid for rid, region in catalogue.items() if region.country in countries}
    if "tags" in body:
        tags = _strings(body["tags"], f"{path}.tags", problems, _any)
        selected |= {rid for rid, region in catalogue.items() if tags & set(region.tags)}
    if "regions" in body:
        selected |= _strings(body["regions"], f"{path}.regions", problems, known)
    if "exclude" in body:
        selected -= _strings(body["exclude"], f"{path}.exclude", problems, known)

    if problems:
        return None, description, problems
    if not selected:
        return None, description, [f"{path}: empty: selects no region of the catalogue"]
    return frozenset(selected), description, []


def parse_policy(
    data: object, source: str, catalogue: Mapping[str, Region]
) -> tuple[Policy | None, list[str]]:
    """Validate a policy document against the catalogue; return (policy, []) or
    (None, problems), each problem `source: field: what is wrong`. Never raises."""
    if data is None:
        return None, [f"{source}: document: file is empty"]
    if not isinstance(data, dict):
        return None, [
            f"{source}: document: must be a mapping with a 'zones' key, got {type(data).__name__}"
        ]
    problems: list[str] = []
    for key in data:
        if key != "zones":
            problems.append(f"{source}: document: unknown key {key!r}")
    if "zones" not in data:
        return None, [*problems, f"{source}: zones: missing"]
    zones_data = data["zones"]
    if zones_data is None or zones_data == {}:
        return None, [*problems, f"{source}: zones: no zones defined"]
    if not isinstance(zones_data, dict):
        return None, [
            *problems,
            f"{source}: zones: must be a mapping of zone names to zones, "
            f"got {type(zones_data).__name__}",
        ]

    zones: dict[str, Zone] = {}
    for name, body in zones_data.items():
        path = f"{source}: zones.{_label(name)}"
        if not (isinstance(name, str) and ZONE_NAME_PATTERN.fullmatch(name)):
            problems.append(f"{path}: zone name must match {ZONE_NAME_PATTERN.pattern}")
        regions, description, zone_problems = _parse_zone(body, path, catalogue)
        problems += zone_problems
        if regions is not None and isinstance(name, str):
            zones[name] = Zone(name=name, regions=regions, description=description)

    if problems:
        return None, problems
    return Policy(zones=zones, source=source), []


def load_policy(path: str | os.PathLike[str], catalogue: Mapping[str, Region]) -> Policy:
    """Read and validate the policy file at `path` against the (full) catalogue; raise one
    PolicyError listing all problems."""
    source = str(Path(path))
    data, problems = _read(Path(path), source)
    if problems:
        raise PolicyError(problems)
    policy, problems = parse_policy(data, source, catalogue)
    if policy is None:
        raise PolicyError(problems)
    return policy


def default_policy_path() -> Path:
    """The shipped policy: `<project root>/regions/policy.yaml`."""
    return Path(__file__).resolve().parent.parent / "regions" / POLICY_FILE


def allow_all(catalogue: Mapping[str, Region]) -> Policy:
    """The policy used when no policy file is given: one zone, `global`, of every region."""
    zone = Zone(name="global", regions=frozenset(catalogue), description="every region")
    return Policy(zones={"global": zone})
