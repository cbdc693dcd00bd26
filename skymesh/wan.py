"""The emulated wide-area network of the local mesh: one-way delay, jitter and loss per
directed region pair, from geography or from a measured RTT matrix.

A pair absent from the model has no direct link: the relays drop what they would send on it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from skymesh.geo import fiber_one_way_ms, haversine_km

# Geography model: RTT over the Internet is about 2x the fiber great-circle time (WonderNetwork
# 2020); the per-pair factor varies so that detours sometimes win, as they do on real networks.
INFLATION_RANGE = (1.4, 2.6)
ASYMMETRY = 0.05
BASE_DELAY_MS = 1.0
JITTER_FRACTION = 0.02
MAX_JITTER_MS = 2.0
MAX_RTT_MS = 60_000.0  # no path on Earth takes a minute; a matrix that says so is wrong


@dataclass(frozen=True)
class WanLink:
    delay_ms: float  # one way
    jitter_ms: float = 0.0
    loss: float = 0.0


WanModel = dict[tuple[str, str], WanLink]


class MatrixError(ValueError):
    """A latency matrix that cannot be used; the message says file, line and field."""


def geo_model(regions: Iterable, seed: int = 0) -> WanModel:
    """A full mesh with delays from great-circle distance; `regions` have id, lat, lon."""
    regions = list(regions)
    model: WanModel = {}
    for a in regions:
        for b in regions:
            if a.id == b.id:
                continue
            lo, hi = sorted((a.id, b.id))
            pair_rng = random.Random(f"{seed}:{lo}:{hi}")
            inflation = pair_rng.uniform(*INFLATION_RANGE)
            direction = random.Random(f"{seed}:{a.id}>{b.id}").uniform(-ASYMMETRY, ASYMMETRY)
            km = haversine_km(a.lat, a.lon, b.lat, b.lon)
            delay = BASE_DELAY_MS + fiber_one_way_ms(km) * inflation * (1 + direction)
            jitter = min(MAX_JITTER_MS, delay * JITTER_FRACTION)
            model[(a.id, b.id)] = WanLink(round(delay, 3), round(jitter, 3))
    return model


def load_matrix(path: str | os.PathLike, region_ids: Iterable[str]) -> WanModel:
    """Read `src,dst,rtt_ms[,loss]`. A pair's one-way delay is half its RTT, the same both
    ways: an RTT is a round trip, so rows for both directions are two measurements of it and
    their mean is used (no RTT probe could tell which direction a difference belongs to).
    Loss stays per direction. A pair given in one direction only is used for both; a pair
    given in neither has no link."""
    known = set(region_ids)
    name = os.fspath(path)
    rtts: dict[tuple[str, str], tuple[float, float]] = {}
    problems: list[str] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in ("src", "dst", "rtt_ms") if c not in header]
            if missing:
                raise MatrixError(f"{name}: line 1: header: missing column(s) {', '.join(missing)}"
                                  " (expected src,dst,rtt_ms[,loss])")
            for line, row in enumerate(reader, start=2):
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
                problems += _check_row(name, line, row, known, rtts)
    except OSError as e:
        raise MatrixError(f"{name}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise MatrixError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise MatrixError(f"{name}: not CSV: {e}") from None
    if problems:
        raise MatrixError("\n".join(problems))
    if not rtts:
        raise MatrixError(f"{name}: no links between the selected regions")
    model: WanModel = {}
    for (src, dst), (rtt, loss) in rtts.items():
        back = rtts.get((dst, src))
        if back is None:
            model[(dst, src)] = _link_from_rtt(rtt, loss)
        else:
            rtt = (rtt + back[0]) / 2
        model[(src, dst)] = _link_from_rtt(rtt, loss)
    return model


def _check_row(name: str, line: int, row: Mapping[str, str], known: set[str],
               rtts: dict[tuple[str, str], tuple[float, float]]) -> list[str]:
    where = f"{name}: line {line}"
    src, dst = row.get("src", ""), row.get("dst", "")
    problems = []
    for field, rid in (("src", src), ("dst", dst)):
        if not rid:
            problems.append(f"{where}: {field}: missing")
    if problems:
        return problems
    if src == dst:
        return [f"{where}: dst: same as src '{src}'"]
    if src not in known or dst not in known:
        return []  # rows for regions outside the selection are ignored
    rtt = _number(row.get("rtt_ms", ""))
    if rtt is None or rtt <= 0:
        problems.append(f"{where}: rtt_ms: must be a positive number, got {row.get('rtt_ms')!r}")
    elif rtt > MAX_RTT_MS:  # a relay would wait for ever (or overflow its event loop's timer)
        problems.append(f"{where}: rtt_ms: must be at most {MAX_RTT_MS:g} (a minute), "
                        f"got {row.get('rtt_ms')!r}")
    loss = 0.0
    if row.get("loss"):
        loss = _number(row["loss"])
        if loss is None or not 0 <= loss < 1:
            problems.append(f"{where}: loss: must be a number in [0, 1), got {row['loss']!r}")
    if (src, dst) in rtts:
        problems.append(f"{where}: {src},{dst}: duplicate pair")
    if not problems:
        rtts[(src, dst)] = (rtt, loss)
    return problems


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _link_from_rtt(rtt_ms: float, loss: float) -> WanLink:
    delay = rtt_ms / 2
    return WanLink(round(delay, 3), round(min(MAX_JITTER_MS, delay * JITTER_FRACTION), 3), loss)


def dump_model(model: WanModel, path: str | os.PathLike) -> None:
    rows: dict[str, dict[str, dict]] = {}
    for (src, dst), link in sorted(model.items()):
        rows.setdefault(src, {})[dst] = asdict(link)
    with open(path, "w") as f:
        json.dump({"links": rows}, f, indent=1)


def load_model_row(path: str | os.PathLike, region: str) -> dict[str, WanLink]:
    """The links leaving `region` in a model written by dump_model; MatrixError, as
    `file: field: what is wrong`, for a file that is not such a model."""
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise MatrixError(f"{name}: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise MatrixError(f"{name}: not a WAN model (JSON): {str(e)[:200]}") from None
    links = data.get("links") if isinstance(data, dict) else None
    if not isinstance(links, dict):
        raise MatrixError(f"{name}: links: missing, or not a mapping of regions")
    row = links.get(region, {})
    if not isinstance(row, dict):
        raise MatrixError(f"{name}: links.{region}: not a mapping of regions to links")
    return {dst: _model_link(f"{name}: links.{region}.{str(dst)[:64]}", link)
            for dst, link in row.items()}


def _model_link(where: str, link: object) -> WanLink:
    if not isinstance(link, dict):
        raise MatrixError(f"{where}: not a mapping of delay_ms, jitter_ms, loss")
    unknown = sorted(str(k)[:32] for k in link if k not in ("delay_ms", "jitter_ms", "loss"))
    if unknown:
        raise MatrixError(f"{where}: unknown field(s) {', '.join(unknown)}")
    values = {}
    for key, low, high in (("delay_ms", 0.0, math.inf), ("jitter_ms", 0.0, math.inf),
                           ("loss", 0.0, 1.0)):
        value = link.get(key, 0.0 if key != "delay_ms" else None)
        number = math.nan
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an integer too large for a float
                pass
        if not (math.isfinite(number) and low <= number < high):
            bound = "a number in [0, 1)" if key == "loss" else "a non-negative number"
            raise MatrixError(f"{where}: {key}: must be {bound}, got {str(value)[:40]}")
        values[key] = number
    return WanLink(**values)
