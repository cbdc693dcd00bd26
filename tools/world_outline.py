"""Make the dashboard's world outline (skymesh/cli/static/dashboard/world.json) from
Natural Earth's 1:110m land, as npm's `world-atlas` package ships it in TopoJSON:

    npm pack world-atlas && tar xzf world-atlas-*.tgz
    .venv/bin/python tools/world_outline.py package/land-110m.json

Natural Earth is in the public domain; world-atlas's conversion is ISC-licensed (its notice
is in LICENSE-world.txt beside the outline). The outline keeps every ring's points rounded to
0.1 degree, dropping repeats, as flat [lon, lat, lon, lat, ...] lists."""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "skymesh/cli/static/dashboard/world.json"


def decode_arcs(topo: dict) -> list[list[tuple[float, float]]]:
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def ring(indices: list[int], arcs: list) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    for i in indices:
        arc = arcs[i] if i >= 0 else arcs[~i][::-1]
        points.extend(arc[1:] if points else arc)
    return points


def rings(topo: dict) -> list[list[tuple[float, float]]]:
    arcs = decode_arcs(topo)
    out = []
    for obj in topo["objects"].values():
        geometries = obj["geometries"] if obj["type"] == "GeometryCollection" else [obj]
        for g in geometries:
            polygons = g["arcs"] if g["type"] == "MultiPolygon" else [g["arcs"]]
            for polygon in polygons:
                out.extend(ring(r, arcs) for r in polygon)
    return out


def simplified(points: list[tuple[float, float]]) -> list[float]:
    flat: list[float] = []
    last = None
    for lon, lat in points:
        p = (round(lon, 1), round(lat, 1))
        if p != last:
            flat.extend(p)
            last = p
    return flat


def main(source: str) -> None:
    topo = json.loads(Path(source).read_text())
    out = [r for r in (simplified(x) for x in rings(topo)) if len(r) >= 8]
    OUT.write_text(json.dumps({
        "source": "Natural Earth 1:110m land (public domain), via world-atlas 2.0 (ISC)",
        "projection": "lon/lat degrees (WGS84), one flat list per ring",
        "rings": out}, separators=(",", ":")) + "\n")
    print(f"{OUT}: {len(out)} rings, {sum(len(r) // 2 for r in out)} points, "
          f"{OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1])
