"""Partial-mesh measurement, simulated by `skymesh routes compute --partial-mesh`: each relay
measures its nearest regions and the links its routes use continuously and samples the rest
once a period; routed on what is measured, paths stay within 5% of the full-mesh optimum for
at least 95% of pairs. Evaluated on the whole WonderNetwork matrix (skipped without
../shared), and the command's output on a small generated catalogue."""

from __future__ import annotations

import importlib.util
import random

import pytest
from support import ROOT, cli_json, run_cli, write_matrix, write_regions

from skymesh.geo import haversine_km


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_partial_mesh_keeps_wondernetwork_routes_near_the_optimum(tmp_path):
    wn = _load("wondernetwork")
    data = wn.data_dir()
    if data is None:
        pytest.skip("../shared/data/wondernetwork-2020-07-19 not present")
    servers = wn.load_servers(data)
    pings = wn.load_pings(data, servers)
    ids = wn.pick_cities(servers, pings, len(servers))  # every city the data allows
    regions, matrix = wn.write_mesh_inputs(servers, pings, ids, tmp_path)
    out = cli_json("routes", "compute", "--regions", str(regions), "--latency-matrix",
                   str(matrix), "--partial-mesh", timeout=180)
    r = out["partial_mesh"]
    a = r["accuracy"]
    print(f"\npartial mesh on {r['regions']} WonderNetwork cities, k={r['nearest']}: "
          f"{ {k: v for k, v in r.items() if k != 'history'} }")
    assert r["regions"] == len(ids) >= 240
    assert a["pairs"] == len(ids) * (len(ids) - 1)
    assert a["unreachable"] == 0 and r["worst_slot_unreachable"] == 0
    assert a["within_5pct"] >= 0.95, a
    assert r["worst_slot_within_5pct"] >= 0.95, r  # every slot of the last period
    # from a cold start, the aim is met within one period of samples
    assert r["aim_met_after_s"] is not None and r["aim_met_after_s"] <= r["sample_every_s"]
    # and it pays: far fewer links measured, far fewer probes
    assert r["links_graph"] < 0.5 * r["links_full"]
    assert r["probes_per_relay_s"] < 0.5 * r["probes_per_relay_s_full"]


def test_routes_compute_prints_the_partial_mesh_comparison(tmp_path):
    rng = random.Random(4)
    spots = {f"c{i:02d}": (rng.uniform(-50, 60), rng.uniform(-170, 170)) for i in range(14)}
    rtts = {}
    for a, (la, oa) in spots.items():
        for b, (lb, ob) in spots.items():
            if a < b:
                rtts[(a, b)] = round(2 + haversine_km(la, oa, lb, ob) / 100
                                     * rng.uniform(1.4, 2.6), 3)
    regions = write_regions(tmp_path / "regions", spots)
    matrix = write_matrix(tmp_path / "matrix.csv", rtts)
    args = ("routes", "compute", "--regions", str(regions), "--latency-matrix", str(matrix),
            "--partial-mesh", "3", "--slots", "4", "--sample-every", "20", "--cycles", "2")
    text = run_cli(*args)
    assert text.returncode == 0, text.stderr
    assert "partial mesh: 3 nearest measured continuously" in text.stdout
    assert "once per 20 s (4 slots of 5 s" in text.stdout
    for row in ("within 5%", "worst ratio", "unreachable", "links in the graph",
                "probes per relay per second"):
        assert row in text.stdout
    out = cli_json(*args)
    r = out["partial_mesh"]
    assert r["nearest"] == 3 and r["slots"] == 4 and r["sample_every_s"] == 20
    assert r["accuracy"]["pairs"] == 14 * 13 and r["links_full"] == 14 * 13
    assert len(r["history"]) == 4 * r["cycles"]
    assert "partial_mesh" not in cli_json(*args[:6])  # only when asked for
    bad = run_cli(*args[:6], "--partial-mesh", "3", "--slots", "0")
    assert bad.returncode == 2 and "--slots" in bad.stderr
