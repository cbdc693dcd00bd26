"""Residency zones through the CLI: a live mesh with a policy, and offline planning."""

from __future__ import annotations

import json

import pytest
from support import cli_json, run_cli, write_matrix, write_regions

from skymesh.cli import mesh

# aa, bb, dd are in the EU; cc (GB) is not. Globally aa -> bb goes through cc (the direct
# link is slow); inside the eu zone it must go through dd instead.
REGIONS = {"aa": (50.0, 8.0, "DE"), "bb": (48.0, 2.0, "FR"), "cc": (52.0, 0.0, "GB"),
           "dd": (45.0, 9.0, "DE")}
RTTS = {("aa", "bb"): 200, ("aa", "cc"): 10, ("cc", "bb"): 10, ("aa", "dd"): 50,
        ("bb", "dd"): 50, ("cc", "dd"): 50}
POLICY = """zones:
  global: {description: everything, all: true}
  eu: {description: EU only, countries: [DE, FR]}
"""


@pytest.fixture
def inputs(tmp_path):
    regions = write_regions(tmp_path / "regions", REGIONS)
    matrix = write_matrix(tmp_path / "matrix.csv", RTTS)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return regions, matrix, policy


@pytest.fixture
def zoned_mesh(inputs, start_mesh):
    regions, matrix, policy = inputs
    return start_mesh("--regions", str(regions), "--latency-matrix", str(matrix),
                      "--policy", str(policy))


def test_zone_traffic_never_leaves_the_zone(zoned_mesh):
    assert cli_json("admin", "path", "aa", "bb")["path"] == ["aa", "cc", "bb"]
    eu = cli_json("admin", "path", "aa", "bb", "--zone", "eu")
    assert eu["zone"] == "eu" and eu["reachable"] and eu["path"] == ["aa", "dd", "bb"]
    assert eu["backup_next_hop"] == "bb"  # the slow direct link, the only other way in eu
    out = run_cli("admin", "path", "aa", "cc", "--zone", "eu", "--json")
    assert out.returncode == 1
    refused = json.loads(out.stdout)
    assert not refused["reachable"] and refused["reason"] == "cc is not in zone eu"
    rows = cli_json("admin", "routes", "aa", "--zone", "eu")["routes"]
    assert {r["dst"] for r in rows} == {"bb", "dd"}
    assert all("cc" not in r["path"] and r["backup_next_hop"] != "cc" for r in rows)
    assert run_cli("admin", "path", "aa", "bb", "--zone", "mars").returncode == 2


def test_zones_listing(zoned_mesh):
    zones = cli_json("admin", "zones")
    assert {z["name"]: sorted(z["regions"]) for z in zones["zones"]} == {
        "eu": ["aa", "bb", "dd"], "global": ["aa", "bb", "cc", "dd"]}
    assert all(z["connected"] == len(z["regions"]) for z in zones["zones"])


def test_plan_failover_is_a_dry_run(zoned_mesh):
    plan = cli_json("admin", "plan-failover", "dd", "--zone", "eu")
    assert plan["failure"] == "region dd"
    moved = {(c["src"], c["dst"]): c for c in plan["changes"]}
    # without dd, eu traffic from aa to bb has only the slow direct link left
    assert moved[("aa", "bb")]["new_path"] == ["aa", "bb"]
    assert moved[("aa", "bb")]["delta_ms"] > 40
    assert not any(c["reachable"] is False for c in plan["changes"])
    assert plan["lost_endpoints"] == 4  # dd's own routes in eu: to and from aa and bb
    # nothing was touched
    assert cli_json("admin", "path", "aa", "bb", "--zone", "eu")["path"] == ["aa", "dd", "bb"]
    link = cli_json("admin", "plan-failover", "--link", "aa", "cc")
    assert link["failure"] == "link aa-cc"
    assert all("cc" not in c["new_path"][:2] or c["src"] != "aa" for c in link["changes"])
    out = run_cli("admin", "plan-failover")
    assert out.returncode == 2 and "REGION or a --link" in out.stderr


def test_routes_compute_offline(inputs, home):
    regions, matrix, policy = inputs
    out = cli_json("routes", "compute", "--regions", str(regions), "--latency-matrix",
                   str(matrix), "--policy", str(policy))
    assert out["compute_ms"] >= 0
    routes = {(r["zone"], r["src"], r["dst"]): r for r in out["routes"]}
    assert len(routes) == 12 + 6  # every ordered pair of global, then of eu
    for r in out["routes"]:
        assert {"zone", "src", "dst", "path", "cost_ms", "backup_next_hop", "reachable"} <= r.keys()
    assert routes[("global", "aa", "bb")]["path"] == ["aa", "cc", "bb"]
    assert routes[("eu", "aa", "bb")]["path"] == ["aa", "dd", "bb"]
    assert routes[("eu", "aa", "bb")]["cost_ms"] == pytest.approx(25 + 25 + 2 * 0.5)
    assert mesh.read_state() is None  # no mesh was started


def test_routes_compute_reports_unreachable_pairs(inputs, tmp_path, home):
    regions, _, policy = inputs
    matrix = write_matrix(tmp_path / "split.csv", {("aa", "cc"): 10, ("bb", "dd"): 10})
    out = cli_json("routes", "compute", "--regions", str(regions), "--latency-matrix",
                   str(matrix), "--policy", str(policy))
    eu = {(r["src"], r["dst"]): r for r in out["routes"] if r["zone"] == "eu"}
    assert eu[("aa", "bb")]["reachable"] is False
    assert eu[("aa", "bb")]["reason"] == "no path from aa to bb inside zone eu"
    assert eu[("bb", "dd")]["reachable"] is True


def test_a_bad_policy_never_starts_a_mesh(inputs, home):
    regions, matrix, policy = inputs
    policy.write_text("zones:\n  eu: {countries: [DE, XX]}\n  us: {regions: [atlantis]}\n")
    out = run_cli("up", "--regions", str(regions), "--latency-matrix", str(matrix),
                  "--policy", str(policy), "--detach")
    assert out.returncode == 2
    assert f"{policy}: zones.eu.countries[1]:" in out.stderr
    assert f"{policy}: zones.us.regions[0]: unknown region 'atlantis'" in out.stderr
    assert mesh.read_state() is None
