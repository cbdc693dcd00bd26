"""Evaluation on real data: a local mesh built from part of the WonderNetwork RTT matrix picks
paths as good as the offline optimum on the same matrix."""

from __future__ import annotations

import importlib.util

import pytest
from support import ROOT


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mesh_paths_match_the_offline_optimum(tmp_path):
    accuracy = _load("mesh_accuracy")
    if accuracy.wn.data_dir() is None:
        pytest.skip("../shared/data/wondernetwork-2020-07-19 not present")
    r = accuracy.run(30, tmp_path)
    print(f"\nmesh accuracy: {r}")
    assert r["missing"] == 0
    assert r["within_5pct"] >= 0.95, r
    assert r["within_15pct"] == 1.0, r
    # overlay routing has real work here: many pairs take a detour, and it pays
    assert r["indirect_pairs"] >= 100 and r["median_improvement_pct"] > 2
