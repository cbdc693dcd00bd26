"""Tests of bench/wondernetwork.py: unit tests on hand-made matrices, plus evaluation tests
on the measured WonderNetwork data that skip when ../shared/data is absent."""

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]


def _load_module():
    spec = importlib.util.spec_from_file_location(
        "bench_wondernetwork", ROOT / "bench" / "wondernetwork.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


wn = _load_module()

# a-b-c triangle where going through c beats the direct a-b link.
TRIANGLE = {
    ("a", "b"): 100.0,
    ("b", "a"): 100.0,
    ("a", "c"): 30.0,
    ("c", "a"): 30.0,
    ("b", "c"): 40.0,
    ("c", "b"): 40.0,
}


def test_path_latency_sums_one_way_halves():
    assert wn.path_latency(TRIANGLE, ["a", "b"]) == 50.0
    assert wn.path_latency(TRIANGLE, ["a", "c", "b"]) == 35.0
    assert wn.path_latency(TRIANGLE, ["a"]) == 0.0
    assert wn.path_latency(TRIANGLE, []) is None
    assert wn.path_latency(TRIANGLE, ["a", "z"]) is None


def test_path_latency_uses_reverse_direction_when_missing():
    matrix = {("a", "b"): 80.0}
    assert wn.path_latency(matrix, ["b", "a"]) == 40.0
    asym = {("a", "b"): 80.0, ("b", "a"): 60.0}
    # the two rows are two measurements of one round trip: the mesh uses their mean
    assert wn.path_latency(asym, ["a", "b"]) == 35.0
    assert wn.path_latency(asym, ["b", "a"]) == 35.0


def test_best_paths_finds_detour():
    best = wn.best_paths(TRIANGLE)
    assert best[("a", "b")] == (35.0, ["a", "c", "b"])
    assert best[("b", "a")] == (35.0, ["b", "c", "a"])
    assert best[("a", "c")] == (15.0, ["a", "c"])
    assert len(best) == 6


def test_best_paths_prefers_direct_on_tie_and_handles_missing_links():
    tie = {("a", "b"): 70.0, ("a", "c"): 30.0, ("c", "b"): 40.0}
    assert wn.best_paths(tie)[("a", "b")] == (35.0, ["a", "b"])
    # d only reaches the others through c; one-direction measurements serve both ways.
    chain = {("a", "c"): 20.0, ("c", "d"): 10.0}
    best = wn.best_paths(chain)
    assert best[("a", "d")] == (15.0, ["a", "c", "d"])
    assert best[("d", "a")] == (15.0, ["d", "c", "a"])
    assert wn.best_paths({("x", "y"): 10.0, ("p", "q"): 10.0}).get(("x", "p")) is None


def test_evaluate_direct_vs_optimal():
    direct = {(a, b): [a, b] for (a, b) in TRIANGLE}
    res = wn.evaluate(TRIANGLE, direct)
    assert res["pairs"] == 6
    assert res["missing"] == 0
    assert res["indirect_pairs"] == 0
    assert res["optimal_indirect_pairs"] == 2
    assert res["within_5pct"] == pytest.approx(4 / 6)
    assert res["within_15pct"] == pytest.approx(4 / 6)
    assert res["worst_ratio"] == pytest.approx(50 / 35)
    assert res["worst_pair"] in (["a", "b"], ["b", "a"])
    assert res["median_improvement_pct"] is None

    optimal = {pair: path for pair, (_, path) in wn.best_paths(TRIANGLE).items()}
    res = wn.evaluate(TRIANGLE, optimal)
    assert res["within_5pct"] == 1.0
    assert res["worst_ratio"] == pytest.approx(1.0)
    assert res["indirect_pairs"] == 2
    assert res["median_improvement_pct"] == pytest.approx(30.0)  # (50 - 35) / 50


def test_evaluate_counts_missing_and_broken_paths():
    chosen = {("a", "b"): ["a", "c", "b"], ("a", "c"): ["a", "z", "c"], ("b", "c"): ["c", "b"]}
    res = wn.evaluate(TRIANGLE, chosen)
    assert res["pairs"] == 6
    assert res["missing"] == 5  # 3 absent, one through an unknown hop, one wrong endpoints
    assert res["within_5pct"] == pytest.approx(1 / 6)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Frankfurt", "frankfurt"),
        ("Sao Paulo", "sao-paulo"),
        ("São Paulo", "sao-paulo"),
        ("Zürich (ZRH)", "zurich-zrh"),
        ("  St. John's ", "st-john-s"),
        (
            "Llanfairpwllgwyngyll-gogerychwyrndrobwll-llantysilio",
            "llanfairpwllgwyngyll-gogerychwyr",
        ),
    ],
)
def test_region_id(name, expected):
    rid = wn.region_id({"name": name})
    assert rid == expected
    assert wn.REGION_ID_RE.match(rid)


def test_region_id_dedupes():
    taken: set[str] = set()
    ids = [wn.region_id({"name": n}, taken) for n in ["Portland", "Portland", "PORTLAND", "X"]]
    assert ids[:3] == ["portland", "portland-2", "portland-3"]
    assert len(set(ids)) == 4
    assert all(wn.REGION_ID_RE.match(i) for i in ids)
    long = "a" * 40
    assert wn.region_id({"name": long}, taken) == "a" * 32
    assert wn.region_id({"name": long}, taken) == "a" * 30 + "-2"


def test_written_yaml_quotes_ambiguous_scalars(tmp_path):
    servers = {
        1: {"id": 1, "name": "Oslo", "country": "NO", "lat": 59.9, "lon": 10.75},
        2: {"id": 2, "name": "Yes: Maybe", "country": "ON", "lat": -1.5, "lon": 2.0},
    }
    pings = {(1, 2): 12.3456, (2, 1): 12.0}
    regions_dir, matrix_path = wn.write_mesh_inputs(servers, pings, [1, 2], tmp_path)
    oslo = yaml.safe_load((regions_dir / "oslo.yaml").read_text())
    assert oslo == {
        "id": "oslo",
        "name": "Oslo",
        "country": "NO",
        "lat": 59.9,
        "lon": 10.75,
        "tags": ["wondernetwork"],
    }
    other = yaml.safe_load((regions_dir / "yes-maybe.yaml").read_text())
    assert other["name"] == "Yes: Maybe" and other["country"] == "ON"
    assert matrix_path.read_text().splitlines()[:2] == ["src,dst,rtt_ms", "oslo,yes-maybe,12.346"]
    assert wn.read_matrix(matrix_path) == {
        ("oslo", "yes-maybe"): 12.346,
        ("yes-maybe", "oslo"): 12.0,
    }


def test_cli_without_data_exits_2(tmp_path, capsys):
    rc = wn.main(["--count", "3", "--out", str(tmp_path / "o"), "--data", str(tmp_path / "no")])
    assert rc == 2
    assert "not found" in capsys.readouterr().err


# --- evaluation tests on the measured data ---------------------------------------------------


@pytest.fixture(scope="module")
def data():
    directory = wn.data_dir()
    if directory is None:
        pytest.skip(f"../shared/data/{wn.DATASET} not present")
    servers = wn.load_servers(directory)
    return servers, wn.load_pings(directory, servers)


def test_load_drops_bad_rows(data):
    servers, pings = data
    assert 200 <= len(servers) <= 246
    assert all(s["name"] != "La Ceiba" for s in servers.values())
    assert all(a in servers and b in servers and a != b and v > 0 for (a, b), v in pings.items())
    assert not any(a in wn.DROPPED_IDS or b in wn.DROPPED_IDS for a, b in pings)


def test_pick_30_cities_complete_and_spread(data):
    servers, pings = data
    ids = wn.pick_cities(servers, pings, 30)
    assert ids == wn.pick_cities(servers, pings, 30)  # deterministic
    assert len(ids) == len(set(ids)) == 30
    assert servers[ids[0]]["name"] == "Frankfurt"
    assert wn.completeness(pings, ids) >= 0.98
    assert len({servers[i]["country"] for i in ids}) >= 20
    nearest = min(wn.great_circle_km(servers[a], servers[b]) for a in ids for b in ids if a < b)
    assert nearest > 500


def test_written_inputs_parse(data, tmp_path):
    servers, pings = data
    ids = wn.pick_cities(servers, pings, 30)
    regions_dir, matrix_path = wn.write_mesh_inputs(servers, pings, ids, tmp_path)
    files = sorted(regions_dir.glob("*.yaml"))
    assert len(files) == 30
    seen = set()
    for f in files:
        doc = yaml.safe_load(f.read_text())
        assert set(doc) == {"id", "name", "country", "lat", "lon", "tags"}
        assert doc["id"] == f.stem and wn.REGION_ID_RE.match(doc["id"])
        assert isinstance(doc["name"], str) and doc["name"]
        assert isinstance(doc["country"], str) and len(doc["country"]) == 2
        assert -90 <= doc["lat"] <= 90 and -180 <= doc["lon"] <= 180
        assert doc["tags"] == ["wondernetwork"]
        seen.add(doc["id"])
    assert len(seen) == 30
    matrix = wn.read_matrix(matrix_path)
    assert len(matrix) >= 0.98 * 30 * 29
    assert {n for pair in matrix for n in pair} == seen
    best = wn.best_paths(matrix)
    assert len(best) == 30 * 29
    indirect = sum(len(p) > 2 for _, p in best.values())
    assert 0.05 < indirect / len(best) < 0.8  # triangle-inequality violations are common
