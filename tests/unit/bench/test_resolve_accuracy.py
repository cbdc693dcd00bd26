"""Tests of bench/resolve_accuracy.py (issue 16's accuracy check): a small run on the measured
WonderNetwork matrix (skipped when ../shared/data is absent), and the bench's parts that need
no data."""

import importlib.util
import json
import math
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _load_module():
    spec = importlib.util.spec_from_file_location(
        "bench_resolve_accuracy", ROOT / "bench" / "resolve_accuracy.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ra = _load_module()


def test_displaced_stays_within_the_radius():
    rng = random.Random(1)
    for lat, lon in [(51.5, -0.13), (-33.9, 151.2), (64.1, -21.9), (1.35, 179.99)]:
        for km in (20, 200):
            got = [ra.displaced(lat, lon, km, rng) for _ in range(200)]
            far = [ra.wn.great_circle_km({"lat": lat, "lon": lon}, {"lat": a, "lon": b})
                   for a, b in got]
            assert max(far) <= km + 1e-6
            assert max(far) > km / 2  # spread over the disc, not piled at the centre
            assert all(-90 <= a <= 90 and -180 <= b < 180 for a, b in got)


def test_summarise_counts_misses_beyond_5_ms():
    s = ra.summarise([0.0, 0.0, 3.0, 10.0, 30.0], [True, True, False, False, False])
    assert s["clients"] == 5
    assert s["best_pct"] == 40.0
    assert s["hit_pct"] == 60.0
    assert s["misses"] == 2
    assert s["miss_median_ms"] == 20.0
    assert 10.0 < s["miss_p95_ms"] <= 30.0
    empty = ra.summarise([], [])
    assert empty["hit_pct"] is None and empty["miss_median_ms"] is None


def test_without_data_it_says_skipped(tmp_path, capsys):
    assert ra.main(["--data", str(tmp_path / "absent"), "--edges", "5"]) == 0
    assert "skipped: ../shared/data not found" in capsys.readouterr().out


# --- on the measured data ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def report():
    if ra.wn.data_dir() is None:
        pytest.skip(f"../shared/data/{ra.wn.DATASET} not present")
    return ra.run(edges=10, seed=0, clients=120)


def test_json_has_three_strategies_with_sane_numbers(report):
    assert len(report["edges"]) == 10
    assert report["clients"] == 120
    excluded = len(report["excluded_unmeasured"]) + len(report["excluded_unplaced"])
    assert excluded <= 0.1 * report["clients"]
    assert not report["excluded_unplaced"]  # every client's address is in the database
    assert set(report["strategies"]) == {"geoip", "mesh", "race"}
    for s in report["strategies"].values():
        assert s["clients"] == report["clients"] - excluded
        assert 0 <= s["best_pct"] <= s["hit_pct"] <= 100
        assert s["misses"] == round(s["clients"] * (1 - s["hit_pct"] / 100))
        if s["misses"]:
            assert ra.HIT_MS < s["miss_median_ms"] <= s["miss_p95_ms"] < 500
            assert all(w["extra_ms"] > ra.HIT_MS for w in s["worst"])
        else:
            assert s["miss_median_ms"] is None
        assert 0 <= s["mean_extra_ms"] < 100
    geoip, race = report["strategies"]["geoip"], report["strategies"]["race"]
    assert race["hit_pct"] >= geoip["hit_pct"]
    assert race["hit_pct"] >= 80  # the race measures: far better than geography alone
    assert race["hit_pct"] <= report["race_candidates_have_best_pct"] + 1e-9
    assert report["aim"]["met"] == (race["hit_pct"] >= ra.AIM_PCT)


def test_cli_json_and_table(capsys):
    if ra.wn.data_dir() is None:
        pytest.skip(f"../shared/data/{ra.wn.DATASET} not present")
    assert ra.main(["--edges", "6", "--clients", "40", "--seed", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["seed"] == 2 and len(out["edges"]) == 6
    assert all(math.isfinite(out["strategies"][s]["hit_pct"]) for s in ra.STRATEGIES)
    assert ra.main(["--edges", "6", "--clients", "40", "--displace"]) == 0
    table = capsys.readouterr().out
    for title in ra.TITLES.values():
        assert title in table
    assert "aim: with the race" in table and ("PASS" in table or "MISS" in table)
