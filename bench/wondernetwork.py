"""Convert and evaluate the WonderNetwork measured RTT matrix (2020-07-19).

The data is evaluation-only (no licence stated) and is never copied into the project: it is
read from ``<project root>/../shared/data/wondernetwork-2020-07-19``. This module turns a
subset of its cities into region YAML files plus a ``src,dst,rtt_ms`` matrix for the local
mesh, and computes the offline optimum routes that a latency-routing controller should find.

Usage::

    python bench/wondernetwork.py --count 30 --out /tmp/wn30 [--data DIR] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import re
import statistics
import sys
import unicodedata
from pathlib import Path

import numpy as np
import yaml
from scipy.sparse.csgraph import csgraph_from_dense, shortest_path

DATASET = "wondernetwork-2020-07-19"
SERVERS_FILE = "servers_with_iso2.derived.csv"
PINGS_FILE = "pings-2020-07-19-2020-07-20-grouped.csv"
DROPPED_IDS = frozenset({292, 293, 294, 295})  # present only in the pings file
DROPPED_TITLES = frozenset({"La Ceiba"})  # implausible coordinates (faster-than-light pairs)
START_CITY = "Frankfurt"
MIN_COMPLETENESS = 0.98
REGION_ID_RE = re.compile(r"^[a-z0-9-]{2,32}$")
EARTH_RADIUS_KM = 6371.0088

Matrix = dict[tuple[str, str], float]


def data_dir() -> Path | None:
    """The default data directory, or None when ``../shared`` is absent."""
    path = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / DATASET
    return path if path.is_dir() else None


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def load_servers(directory: Path) -> dict[int, dict]:
    """Servers keyed by id: {id, name, country, lat, lon}; unusable rows dropped."""
    servers: dict[int, dict] = {}
    with open(Path(directory) / SERVERS_FILE, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                sid = int(row["id"])
            except (TypeError, ValueError):
                continue
            lat, lon = _float(row.get("latitude")), _float(row.get("longitude"))
            if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
                continue
            if lat == 0 and lon == 0:
                continue
            name = (row.get("title") or row.get("name") or "").strip()
            if not name or name in DROPPED_TITLES or sid in DROPPED_IDS:
                continue
            servers[sid] = {
                "id": sid,
                "name": name,
                "country": (row.get("country_iso2") or "").strip().upper(),
                "lat": lat,
                "lon": lon,
            }
    return servers


def load_pings(directory: Path, ids) -> dict[tuple[int, int], float]:
    """Average RTT in ms per ordered pair (source, destination) of known ids."""
    known = set(ids) - DROPPED_IDS
    pings: dict[tuple[int, int], float] = {}
    with open(Path(directory) / PINGS_FILE, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                src, dst = int(row["source"]), int(row["destination"])
            except (TypeError, ValueError):
                continue
            if src == dst or src not in known or dst not in known:
                continue
            avg = _float(row.get("avg"))
            if avg is None or avg <= 0:
                continue
            pings[(src, dst)] = avg
    return pings


def great_circle_km(a: dict, b: dict) -> float:
    """Haversine distance in km between two records with lat/lon in degrees."""
    p1, p2 = math.radians(a["lat"]), math.radians(b["lat"])
    dp, dl = p2 - p1, math.radians(b["lon"] - a["lon"])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def completeness(pings: dict[tuple[int, int], float], ids: list[int]) -> float:
    """Fraction of ordered pairs among ids that have a ping."""
    n = len(ids)
    if n < 2:
        return 1.0
    have = sum((a, b) in pings for a in ids for b in ids if a != b)
    return have / (n * (n - 1))


def _start_id(servers: dict[int, dict], seed: int) -> int:
    ids = sorted(servers)
    if seed == 0:
        for sid in ids:
            if servers[sid]["name"] == START_CITY:
                return sid
        return ids[0]
    return random.Random(seed).choice(ids)


def pick_cities(
    servers: dict[int, dict],
    pings: dict[tuple[int, int], float],
    count: int,
    seed: int = 0,
) -> list[int]:
    """Choose ``count`` server ids spread over the world, deterministically.

    Greedy farthest-point selection by great-circle distance, starting from Frankfurt
    (seed 0) or from a seeded random server. A candidate is only taken if, with it, the
    sub-matrix of chosen cities stays at least 98% complete (checked at every step, so the
    missing-pair budget is never spent early). Ties break on the lower id.
    """
    if count < 1:
        return []
    if count > len(servers):
        raise ValueError(f"asked for {count} cities, only {len(servers)} servers")
    start = _start_id(servers, seed)
    chosen = [start]
    missing = 0
    nearest = {sid: great_circle_km(servers[start], servers[sid]) for sid in servers}
    del nearest[start]
    while len(chosen) < count:
        k = len(chosen) + 1
        budget = math.floor((1 - MIN_COMPLETENESS) * k * (k - 1) + 1e-9)
        pick = None
        for sid in sorted(nearest, key=lambda s: (-nearest[s], s)):
            miss = sum((sid, c) not in pings for c in chosen)
            miss += sum((c, sid) not in pings for c in chosen)
            if missing + miss <= budget:
                pick, missing = sid, missing + miss
                break
        if pick is None:
            raise ValueError(
                f"no server keeps the matrix {MIN_COMPLETENESS:.0%} complete "
                f"after {len(chosen)} cities"
            )
        chosen.append(pick)
        del nearest[pick]
        for sid in nearest:
            nearest[sid] = min(nearest[sid], great_circle_km(servers[pick], servers[sid]))
    return chosen


def region_id(server: dict, taken: set[str] | None = None) -> str:
    """Region id from the city name: ascii-folded, lower-case, non-alnum runs -> '-'.

    Truncated to 32 characters. When ``taken`` is given, a clash gets a ``-2``, ``-3``, ...
    suffix and the result is added to ``taken``.
    """
    folded = unicodedata.normalize("NFKD", str(server["name"]))
    folded = folded.encode("ascii", "ignore").decode("ascii").lower()
    base = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:32].strip("-")
    if len(base) < 2:
        base = f"city-{server.get('id', 'x')}"[:32]
    rid = base
    if taken is not None:
        n = 2
        while rid in taken:
            suffix = f"-{n}"
            rid = base[: 32 - len(suffix)].rstrip("-") + suffix
            n += 1
        taken.add(rid)
    return rid


def _yaml_scalar(text: str) -> str:
    """The string plain if YAML reads it back unchanged (so not 'NO', 'on', '1'), else quoted."""
    try:
        if text and yaml.safe_load(text) == text and "#" not in text and ": " not in text:
            return text
    except yaml.YAMLError:
        pass
    return json.dumps(text)


def _region_yaml(rid: str, server: dict) -> str:
    return (
        f"id: {rid}\n"
        f"name: {_yaml_scalar(server['name'])}\n"
        f"country: {_yaml_scalar(server['country'])}\n"
        f"lat: {round(server['lat'], 6)!r}\n"
        f"lon: {round(server['lon'], 6)!r}\n"
        "tags: [wondernetwork]\n"
    )


def region_ids(servers: dict[int, dict], ids: list[int]) -> dict[int, str]:
    """Unique region ids for ``ids`` in the given order."""
    taken: set[str] = set()
    return {sid: region_id(servers[sid], taken) for sid in ids}


def write_mesh_inputs(
    servers: dict[int, dict],
    pings: dict[tuple[int, int], float],
    ids: list[int],
    out_dir: Path,
) -> tuple[Path, Path]:
    """Write ``out_dir/regions/<id>.yaml`` per city and ``out_dir/matrix.csv``."""
    out_dir = Path(out_dir)
    regions_dir = out_dir / "regions"
    regions_dir.mkdir(parents=True, exist_ok=True)
    names = region_ids(servers, ids)
    for sid in ids:
        (regions_dir / f"{names[sid]}.yaml").write_text(
            _region_yaml(names[sid], servers[sid]), encoding="utf-8"
        )
    matrix_path = out_dir / "matrix.csv"
    with open(matrix_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["src", "dst", "rtt_ms"])
        for a in ids:
            for b in ids:
                if a != b and (a, b) in pings:
                    w.writerow([names[a], names[b], f"{pings[(a, b)]:.3f}"])
    return regions_dir, matrix_path


def read_matrix(path: Path) -> Matrix:
    """Read a ``src,dst,rtt_ms`` CSV into {(src, dst): rtt_ms}."""
    matrix: Matrix = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rtt = _float(row.get("rtt_ms"))
            if rtt is None or not row.get("src") or not row.get("dst"):
                continue
            matrix[(row["src"].strip(), row["dst"].strip())] = rtt
    return matrix


def one_way(matrix: Matrix, a: str, b: str) -> float | None:
    """One-way latency a->b as the local mesh emulates it (skymesh.wan.load_matrix): half the
    pair's RTT, the mean of the two directions' measurements where both exist; None if no
    link."""
    rtts = [r for r in (matrix.get((a, b)), matrix.get((b, a))) if r is not None]
    return sum(rtts) / len(rtts) / 2 if rtts else None


def path_latency(matrix: Matrix, path: list[str]) -> float | None:
    """Summed one-way latency along ``path``; None if empty or a hop has no link."""
    if not path:
        return None
    total = 0.0
    for a, b in zip(path, path[1:], strict=False):
        hop = one_way(matrix, a, b)
        if hop is None:
            return None
        total += hop
    return total


def best_paths(matrix: Matrix) -> dict[tuple[str, str], tuple[float, list[str]]]:
    """Offline optimum for every reachable ordered pair: (latency, [src, ..., dst]).

    When the direct link is as fast as the optimum (within 1e-9 ms) the direct path is
    returned, so "indirect" always means strictly better than direct.
    """
    nodes = sorted({n for pair in matrix for n in pair})
    index = {n: i for i, n in enumerate(nodes)}
    size = len(nodes)
    dense = np.full((size, size), np.inf)
    for a in nodes:
        for b in nodes:
            if a != b:
                w = one_way(matrix, a, b)
                if w is not None:
                    dense[index[a], index[b]] = w
    result: dict[tuple[str, str], tuple[float, list[str]]] = {}
    if size < 2:
        return result
    graph = csgraph_from_dense(dense, null_value=np.inf)
    dist, pred = shortest_path(graph, method="D", directed=True, return_predecessors=True)
    for i, a in enumerate(nodes):
        for j, b in enumerate(nodes):
            if i == j or not math.isfinite(dist[i, j]):
                continue
            direct = dense[i, j]
            if math.isfinite(direct) and direct - dist[i, j] <= 1e-9:
                result[(a, b)] = (float(direct), [a, b])
                continue
            hops = [j]
            while hops[-1] != i:
                hops.append(int(pred[i, hops[-1]]))
            result[(a, b)] = (float(dist[i, j]), [nodes[k] for k in reversed(hops)])
    return result


def evaluate(matrix: Matrix, chosen: dict[tuple[str, str], list[str]]) -> dict:
    """Compare chosen paths with the offline optimum over every reachable ordered pair.

    A pair counts as missing when it has no chosen path, the path does not run from src to
    dst, or a hop has no link. Fractions are over all pairs (missing ones are not within).
    """
    best = best_paths(matrix)
    within5 = within15 = indirect = missing = 0
    worst_ratio, worst_pair = 1.0, None
    improvements: list[float] = []
    for (src, dst), (opt, _) in sorted(best.items()):
        path = chosen.get((src, dst))
        lat = None
        if path and len(path) >= 2 and path[0] == src and path[-1] == dst:
            lat = path_latency(matrix, path)
        if lat is None:
            missing += 1
            continue
        ratio = lat / opt if opt > 0 else (1.0 if lat <= 0 else math.inf)
        within5 += ratio <= 1.05 + 1e-12
        within15 += ratio <= 1.15 + 1e-12
        if worst_pair is None or ratio > worst_ratio:
            worst_ratio, worst_pair = ratio, [src, dst]
        if len(path) > 2:
            indirect += 1
            direct = one_way(matrix, src, dst)
            if direct:
                improvements.append((direct - lat) / direct * 100)
    n = len(best)
    return {
        "pairs": n,
        "within_5pct": within5 / n if n else 0.0,
        "within_15pct": within15 / n if n else 0.0,
        "worst_ratio": worst_ratio,
        "worst_pair": worst_pair,
        "indirect_pairs": indirect,
        "median_improvement_pct": statistics.median(improvements) if improvements else None,
        "optimal_indirect_pairs": sum(len(p) > 2 for _, p in best.values()),
        "missing": missing,
    }


def offline_facts(matrix: Matrix) -> dict:
    """What the optimum gains over direct routing on this matrix."""
    best = best_paths(matrix)
    gains = []
    for (a, b), (opt, path) in best.items():
        direct = one_way(matrix, a, b)
        if len(path) > 2 and direct:
            gains.append((direct - opt) / direct * 100)
    n = len(best)
    direct_only = {pair: [pair[0], pair[1]] for pair in best if one_way(matrix, *pair)}
    baseline = evaluate(matrix, direct_only)
    return {
        "pairs": n,
        "optimal_indirect_pairs": len(gains),
        "optimal_indirect_fraction": len(gains) / n if n else 0.0,
        "median_improvement_pct": statistics.median(gains) if gains else None,
        "pairs_gain_over_10pct": sum(g > 10 for g in gains),
        "direct_routing": {
            k: baseline[k] for k in ("within_5pct", "within_15pct", "worst_ratio", "worst_pair")
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=30, help="number of cities (default 30)")
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    ap.add_argument("--data", type=Path, default=None, help=f"directory of {DATASET}")
    ap.add_argument("--seed", type=int, default=0, help="0 starts from Frankfurt")
    ap.add_argument("--json", action="store_true", help="print a JSON summary")
    args = ap.parse_args(argv)

    directory = args.data if args.data is not None else data_dir()
    if directory is None or not (Path(directory) / PINGS_FILE).is_file():
        where = args.data or f"../shared/data/{DATASET}"
        print(
            f"wondernetwork: data not found at {where} (evaluation data, not shipped with "
            "the project); pass --data DIR",
            file=sys.stderr,
        )
        return 2
    servers = load_servers(directory)
    pings = load_pings(directory, servers)
    try:
        ids = pick_cities(servers, pings, args.count, seed=args.seed)
    except ValueError as exc:
        print(f"wondernetwork: {exc}", file=sys.stderr)
        return 1
    regions_dir, matrix_path = write_mesh_inputs(servers, pings, ids, args.out)
    names = region_ids(servers, ids)
    matrix = read_matrix(matrix_path)
    facts = offline_facts(matrix)
    summary = {
        "data": str(directory),
        "cities": len(ids),
        "regions_dir": str(regions_dir),
        "matrix": str(matrix_path),
        "matrix_rows": len(matrix),
        "completeness": completeness(pings, ids),
        "regions": [names[s] for s in ids],
        **facts,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    stale = sorted(p.stem for p in regions_dir.glob("*.yaml") if p.stem not in names.values())
    print(f"wrote {len(ids)} region files to {regions_dir}")
    if stale:
        print(f"  note: {len(stale)} other YAML files already there: {', '.join(stale[:5])}")
    print(
        f"wrote {len(matrix)} rows to {matrix_path} "
        f"({summary['completeness']:.1%} of ordered pairs)"
    )
    print("regions: " + ", ".join(summary["regions"]))
    med = facts["median_improvement_pct"]
    print(
        f"optimum paths that are indirect: {facts['optimal_indirect_pairs']}/{facts['pairs']} "
        f"({facts['optimal_indirect_fraction']:.1%}); "
        f"gain over 10%: {facts['pairs_gain_over_10pct']}"
    )
    print(
        "median improvement of optimum over direct (indirect pairs): "
        + (f"{med:.1f}%" if med is not None else "n/a")
    )
    d = facts["direct_routing"]
    print(
        f"direct-only routing: within 5% of optimum {d['within_5pct']:.1%}, within 15% "
        f"{d['within_15pct']:.1%}, worst ratio {d['worst_ratio']:.2f} {d['worst_pair']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
