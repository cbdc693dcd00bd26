"""Time from `connect()` to joined (issue 16), on the local mesh: what a viewer waits for
before its first frame can come, when its SDK finds the edge itself.

    python bench/join_time.py [--joins 30] [--json]

Starts a local mesh of five regions (`skymesh up --geoip-db`, a City database built for the
run) and joins a channel `--joins` times, one after another, each time from a fresh SDK
session placed in London (`address=`):

  resolved + raced   connect(resolvers=..., address=...) then join(): the resolver's answer
                     over TLS, QUIC handshakes to its best four at once, a QUIC connection
                     to the chosen edge and the join; with where the time went (resolve,
                     race) from a run of the same steps taken apart
  direct (baseline)  connect(host, port) to the edge already known, then join(): the part
                     no finding of edges can save

p50/p90/max of each, in ms. Everything is on this machine's loopback: the wide area's RTTs
add to both alike (one resolver round trip and one handshake round trip more for the first).
Exits 0: it is a report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from geoipdb import build_city_db  # noqa: E402

REGIONS = {"lon": (51.51, -0.13, "GB"), "ams": (52.37, 4.90, "NL"), "fra": (50.11, 8.68, "DE"),
           "sin": (1.35, 103.82, "SG"), "jkt": (-6.21, 106.85, "ID")}
LONDON = "81.2.69.142"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def skymesh(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "SKYMESH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "skymesh", *args], env=env, text=True,
                          capture_output=True, timeout=timeout)


def write_regions(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for rid, (lat, lon, country) in REGIONS.items():
        (directory / f"{rid}.yaml").write_text(
            f"id: {rid}\nname: {rid}\ncountry: {country}\nlat: {lat}\nlon: {lon}\n")
    return directory


def stats(ms: list[float]) -> dict:
    ordered = sorted(ms)
    return {"p50": round(statistics.median(ordered), 1),
            "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
            "max": round(ordered[-1], 1), "n": len(ordered)}


async def measure(state: dict, joins: int) -> dict:
    from sdk import edges
    from sdk.client import connect
    from skymesh import token as tokens
    from skymesh.apps import private_key_file, read_private_key

    key = read_private_key(private_key_file(Path(state["apps"]), "demo"))
    token = tokens.issue("demo", key, "live", "viewer", "global", ["join"], 3600)
    resolvers = state["resolvers"].split(",")
    resolver_ca = Path(state["mesh_ca"]).read_bytes()
    ca = state["ca"]
    resolved, direct, resolve_ms, race_ms = [], [], [], []
    chosen = set()
    for _ in range(joins):
        t0 = time.perf_counter()
        async with connect(token=token, channel="live", ca_file=ca, resolvers=resolvers,
                           resolver_ca=resolver_ca, address=LONDON) as s:
            await s.join()
            resolved.append((time.perf_counter() - t0) * 1000)
            chosen.add(s.edge.region)
            host, port = s.edge.host, s.edge.port
        t0 = time.perf_counter()
        async with connect(host, port, token, "live", ca) as s:
            await s.join()
            direct.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        found = await asyncio.to_thread(edges.resolve, resolvers, token, resolver_ca,
                                        address=LONDON)
        t1 = time.perf_counter()
        await edges.race(found, ca)
        t2 = time.perf_counter()
        resolve_ms.append((t1 - t0) * 1000)
        race_ms.append((t2 - t1) * 1000)
    return {"joins": joins, "chosen": sorted(chosen), "resolved_ms": stats(resolved),
            "direct_ms": stats(direct), "resolve_ms": stats(resolve_ms),
            "race_ms": stats(race_ms)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--joins", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="skymesh-join-") as tmp:
        work = Path(tmp)
        home = work / "home"
        db = build_city_db(work / "city.mmdb")
        say("starting a local mesh of 5 regions ...")
        up = skymesh(home, "up", "--detach", "--json", "--regions",
                     str(write_regions(work / "regions")), "--geoip-db", str(db))
        try:
            if up.returncode != 0:
                say(f"skymesh up failed:\n{up.stderr}")
                return 1
            state = json.loads((home / "mesh.json").read_text())
            result = asyncio.run(measure(state, args.joins))
        finally:
            skymesh(home, "down")
    if args.json:
        print(json.dumps(result))
        return 0
    r, d = result["resolved_ms"], result["direct_ms"]
    print(f"connect() to joined, local mesh of 5 regions, {result['joins']} joins, client "
          f"placed in London (edge chosen: {', '.join(result['chosen'])})")
    print(f"  resolved + raced   p50 {r['p50']} ms, p90 {r['p90']} ms, max {r['max']} ms "
          f"(resolve p50 {result['resolve_ms']['p50']} ms, race p50 "
          f"{result['race_ms']['p50']} ms)")
    print(f"  direct (baseline)  p50 {d['p50']} ms, p90 {d['p90']} ms, max {d['max']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
