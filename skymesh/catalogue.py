"""The region catalogue: one YAML file per region under `regions/`, loaded and validated."""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skymesh import yamlfile
from skymesh.countries import COUNTRY_CODES, MISTAKEN

ID_PATTERN = re.compile(r"^[a-z0-9-]{2,32}$")
REQUIRED = ("id", "name", "country", "lat", "lon")
# The residency policy (skymesh.policy) lives beside the region files; it is not a region.
POLICY_FILE = "policy.yaml"


@dataclass(frozen=True)
class Region:
    id: str
    name: str
    country: str
    lat: float
    lon: float
    tags: tuple[str, ...] = ()
    # Further top-level keys (provider, capacity, ...), kept as they were in the file.
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain JSON-ready data, with the extra keys at top level."""
        return {
            "id": self.id,
            "name": self.name,
            "country": self.country,
            "lat": self.lat,
            "lon": self.lon,
            "tags": list(self.tags),
            **copy.deepcopy(dict(self.extra)),
        }


class CatalogueError(ValueError):
    """One or more problems in the catalogue, each `source: field: what is wrong`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)


def country_problem(code: str) -> str | None:
    """What is wrong with `code` as a region's country (None: nothing)."""
    if code in COUNTRY_CODES:
        return None
    hint = f" (use {MISTAKEN[code]})" if code in MISTAKEN else ""
    return f"{code!r} is not an ISO 3166-1 alpha-2 code{hint}"


def _number(value: object, low: float, high: float) -> float | None:
    # bool is an int subclass, but `lat: true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    if not math.isfinite(number) or not low <= number <= high:
        return None
    return number


def parse_region(data: object, source: str) -> tuple[Region | None, list[str]]:
    """Validate one region document; return (region, []) or (None, problems). Never raises."""
    if data is None:
        return None, [f"{source}: document: file is empty"]
    if not isinstance(data, dict):
        return None, [f"{source}: document: must be a mapping of fields, got {type(data).__name__}"]
    problems: list[str] = []
    bad_keys = [key for key in data if not isinstance(key, str)]
    for key in bad_keys:
        problems.append(f"{source}: document: field names must be strings, got {key!r}")
    for key in REQUIRED:
        if key not in data:
            problems.append(f"{source}: {key}: missing")

    region_id = data.get("id")
    if "id" in data and not (isinstance(region_id, str) and ID_PATTERN.fullmatch(region_id)):
        problems.append(f"{source}: id: must match {ID_PATTERN.pattern}, got {region_id!r}")

    name = data.get("name")
    if "name" in data and not (isinstance(name, str) and name.strip()):
        problems.append(f"{source}: name: must be a non-empty string, got {name!r}")

    country = data.get("country")
    if "country" in data:
        if not isinstance(country, str):
            problems.append(f"{source}: country: {country!r} is not an ISO 3166-1 alpha-2 code")
        elif (wrong := country_problem(country)) is not None:
            problems.append(f"{source}: country: {wrong}")

    coords: dict[str, float | None] = {}
    for key, limit in (("lat", 90), ("lon", 180)):
        if key in data:
            coords[key] = _number(data[key], -limit, limit)
            if coords[key] is None:
                problems.append(
                    f"{source}: {key}: must be a number between -{limit} and {limit}, "
                    f"got {data[key]!r}"
                )

    tags = data.get("tags", [])
    if not (isinstance(tags, list) and all(isinstance(t, str) and t.strip() for t in tags)):
        problems.append(f"{source}: tags: must be a list of non-empty strings, got {tags!r}")
    elif len(set(tags)) != len(tags):
        problems.append(f"{source}: tags: duplicate tags in {tags!r}")

    problems += _provider_problems(data.get("provider"), source) if "provider" in data else []
    problems += _capacity_problems(data.get("capacity"), source) if "capacity" in data else []

    if problems:
        return None, problems
    known = {*REQUIRED, "tags"}
    region = Region(
        id=region_id,
        name=name,
        country=country,
        lat=coords["lat"],
        lon=coords["lon"],
        tags=tuple(tags),
        extra={key: value for key, value in data.items() if key not in known},
    )
    return region, []


# Where a region may be provisioned: `provider: {aws: eu-west-2}` or, with an instance type,
# `provider: {aws: {region: eu-west-2, instance_type: c6in.large}}`; other clouds' hints
# (`gcp: ...`, `azure: ...`) are kept for operators and not checked beyond being names.
AWS_REGION = re.compile(r"^(?:af|ap|ca|cn|eu|il|me|mx|sa|us)-[a-z]+-\d$")
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
CLOUD_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
MAX_RELAYS_PER_REGION = 64


def _provider_problems(value: object, source: str) -> list[str]:
    if not isinstance(value, dict) or not value:
        return [f"{source}: provider: must be a mapping of cloud to its region, e.g. "
                f"{{aws: eu-west-2}}, got {value!r}"]
    problems = []
    for cloud, hint in value.items():
        if not isinstance(cloud, str) or not CLOUD_NAME.fullmatch(cloud):
            problems.append(f"{source}: provider: {cloud!r} is not a cloud name")
        elif cloud == "aws":
            problems += _aws_problems(hint, source)
        elif not (isinstance(hint, str) and hint.strip()) and not isinstance(hint, dict):
            problems.append(f"{source}: provider.{cloud}: must name a region, got {hint!r}")
    return problems


def _aws_problems(hint: object, source: str) -> list[str]:
    where = f"{source}: provider.aws"
    problems = []
    if isinstance(hint, dict):
        unknown = sorted(str(k) for k in hint if k not in ("region", "instance_type"))
        if unknown:
            problems.append(f"{where}: unknown fields {unknown} (known: region, "
                            "instance_type)")
        itype = hint.get("instance_type")
        if itype is not None and not (isinstance(itype, str) and INSTANCE_TYPE.fullmatch(itype)):
            problems.append(f"{where}.instance_type: {itype!r} is not an EC2 instance type "
                            "(e.g. c6in.large)")
        hint = hint.get("region")
        where += ".region"
    if not (isinstance(hint, str) and AWS_REGION.fullmatch(hint)):
        problems.append(f"{where}: {hint!r} is not an AWS region (e.g. eu-west-2)")
    return problems


def _capacity_problems(value: object, source: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{source}: capacity: must be a mapping such as {{relays: 3, gbps: 100}}, "
                f"got {value!r}"]
    problems = []
    unknown = sorted(str(k) for k in value if k not in ("relays", "gbps"))
    if unknown:
        problems.append(f"{source}: capacity: unknown fields {unknown} (known: relays, gbps)")
    relays = value.get("relays", 1)
    if isinstance(relays, bool) or not isinstance(relays, int) \
            or not 1 <= relays <= MAX_RELAYS_PER_REGION:
        problems.append(f"{source}: capacity.relays: must be a whole number from 1 to "
                        f"{MAX_RELAYS_PER_REGION}, got {relays!r}")
    gbps = value.get("gbps")
    if gbps is not None and _number(gbps, 0, 1e6) is None:
        problems.append(f"{source}: capacity.gbps: must be a number, got {gbps!r}")
    return problems


def _read(file: Path, source: str) -> tuple[object, list[str]]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{source}: read: {exc}"]
    try:
        return yamlfile.load(text), []
    except yaml.MarkedYAMLError as exc:
        where = ""
        if exc.problem_mark is not None:
            mark = exc.problem_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}: "
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        return None, [f"{source}: yaml: {where}{what}"]
    except yaml.YAMLError as exc:
        return None, [f"{source}: yaml: {exc}"]


def load_catalogue(path: str | os.PathLike[str]) -> dict[str, Region]:
    """Load and validate every region file in `path` (all `*.yaml`/`*.yml` but the residency
    policy, `policy.yaml`); raise one CatalogueError listing all problems, or return the
    regions ordered by id."""
    directory = Path(path)
    if not directory.is_dir():
        raise CatalogueError([f"{os.fspath(path)}: not a directory"])
    files = sorted(
        f
        for f in directory.iterdir()
        if f.suffix in (".yaml", ".yml") and f.name != POLICY_FILE and f.is_file()
    )
    if not files:
        raise CatalogueError([f"{os.fspath(path)}: no region files found"])

    problems: list[str] = []
    regions: dict[str, Region] = {}
    sources: dict[str, str] = {}
    for file in files:
        source = str(directory / file.name)
        data, read_problems = _read(file, source)
        if read_problems:
            problems += read_problems
            continue
        region, region_problems = parse_region(data, source)
        problems += region_problems
        if region is None:
            continue
        if region.id != file.stem:
            problems.append(
                f"{source}: id: {region.id!r} does not match the file name {file.name!r}"
            )
        if region.id in sources:
            problems.append(f"{source}: id: duplicate of {sources[region.id]}")
            continue
        sources[region.id] = source
        regions[region.id] = region

    if problems:
        raise CatalogueError(problems)
    return dict(sorted(regions.items()))


def select(regions: dict[str, Region], only: Iterable[str]) -> dict[str, Region]:
    """The regions named in `only` (an --only list), in catalogue order."""
    wanted = {only} if isinstance(only, str) else set(only)
    unknown = sorted(name for name in wanted if name not in regions)
    if unknown:
        raise CatalogueError([f"--only: unknown region {name!r}" for name in unknown])
    return {region_id: r for region_id, r in regions.items() if region_id in wanted}
