"""Run a local mesh on part of the WonderNetwork RTT matrix and compare the controller's paths
with the optimum computed offline from the same matrix.

    python bench/mesh_accuracy.py [--count 30] [--json]

Needs ../shared/data/wondernetwork-2020-07-19 (evaluation data, not shipped with the project).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wondernetwork as wn  # noqa: E402

from skymesh.cli import admin, mesh  # noqa: E402
from skymesh.net.tls import TlsFiles  # noqa: E402


def skymesh(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "SKYMESH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "skymesh", *args], env=env, text=True,
                          capture_output=True, timeout=timeout)


def run(count: int, work: Path, settle_s: float = 5.0, data: Path | None = None) -> dict:
    """Start the mesh, wait until routes have held for `settle_s` with every link up and
    none damped, evaluate, stop."""
    directory = data or wn.data_dir()
    if directory is None:
        raise FileNotFoundError(f"../shared/data/{wn.DATASET} not present")
    servers = wn.load_servers(directory)
    pings = wn.load_pings(directory, servers)
    ids = wn.pick_cities(servers, pings, count)
    regions_dir, matrix_path = wn.write_mesh_inputs(servers, pings, ids, work)
    home = work / "home"
    t0 = time.monotonic()
    up = skymesh(home, "up", "--regions", str(regions_dir), "--latency-matrix",
                 str(matrix_path), "--detach", "--json")
    try:
        if up.returncode != 0:
            raise RuntimeError(f"skymesh up failed:\n{up.stderr}")
        converge_s = time.monotonic() - t0
        address = json.loads(up.stdout)["controller"]
        # this process asks that mesh's controller as its operator (the mesh made the files)
        admin.use_credentials(TlsFiles.in_dir(home / "certs", f"admin-{mesh.LOCAL_ADMIN}"))
        # judged on a healthy mesh: every link up and none damped (a relay starved at
        # start-up can flap its links, and damping then keeps them out for half a minute)
        deadline = time.monotonic() + 120
        while True:
            status = admin.status(address)
            seen = {(x["src"], x["dst"]): x for x in admin.links(address)}
            damped = [key for key, x in seen.items() if x["suppressed"]]
            if (status["converged"] and status["converged_for_s"] >= settle_s and not damped
                    and status["links_up"] == status["links_expected"]):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"routes did not settle: {status}; damped links {damped}")
            time.sleep(0.5)
        settled_s = time.monotonic() - t0
        chosen = {}
        for rid in wn.region_ids(servers, ids).values():
            for route in admin.routes(address, rid)["routes"]:
                chosen[(rid, route["dst"])] = route["path"]
    finally:
        skymesh(home, "down")
    matrix = wn.read_matrix(matrix_path)
    result = wn.evaluate(matrix, chosen)
    return {"cities": count, "converge_s": round(converge_s, 1), "settled_s": round(settled_s, 1),
            "route_version": status["route_version"], **result,
            "worst": explain(matrix, chosen, result["worst_pair"], seen),
            "offline": wn.offline_facts(matrix)}


def explain(matrix: wn.Matrix, chosen: dict, pair: list[str] | None, seen: dict) -> dict:
    """The worst pair's chosen and optimal paths, each link as the controller saw it."""
    if not pair:
        return {}
    src, dst = pair
    optimal = wn.best_paths(matrix)[(src, dst)][1]

    def hops(path: list[str]) -> list[dict]:
        return [{"link": [a, b], "one_way_ms": wn.one_way(matrix, a, b),
                 **{k: v for k, v in seen.get((a, b), {}).items() if k not in ("src", "dst")}}
                for a, b in zip(path, path[1:], strict=False)]

    path = chosen.get((src, dst)) or []
    return {"chosen": path, "optimal": optimal, "chosen_links": hops(path),
            "optimal_links": hops(optimal)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=30, help="cities in the mesh (default 30)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if wn.data_dir() is None:
        print(f"mesh_accuracy: ../shared/data/{wn.DATASET} not present; skipped",
              file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        r = run(args.count, Path(tmp))
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    print(f"mesh of {r['cities']} WonderNetwork cities converged in {r['converge_s']} s")
    print(f"pairs {r['pairs']}: within 5% of the offline optimum {r['within_5pct']:.1%}, "
          f"within 15% {r['within_15pct']:.1%}, worst ratio {r['worst_ratio']:.3f} "
          f"{r['worst_pair']}, missing {r['missing']}")
    print(f"indirect paths chosen: {r['indirect_pairs']} (optimum: "
          f"{r['optimal_indirect_pairs']}); median improvement over direct: "
          f"{r['median_improvement_pct']:.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
