"""Geography (skymesh/geo.py): great-circle distances, and each region's nearest others, which
the controller tells relays to measure at all times in a partial mesh."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from skymesh.catalogue import Region
from skymesh.geo import distance_matrix_km, haversine_km, nearest_regions


def region(rid: str, lat: float, lon: float) -> Region:
    return Region(id=rid, name=rid, country="DE", lat=lat, lon=lon)


def scattered(n: int, seed: int = 1) -> dict[str, Region]:
    rng = random.Random(seed)
    return {f"r{i:04d}": region(f"r{i:04d}", rng.uniform(-70, 70), rng.uniform(-180, 180))
            for i in range(n)}


def test_haversine_known_distance():
    # Frankfurt - New York, about 6,200 km
    assert haversine_km(50.11, 8.68, 40.71, -74.01) == pytest.approx(6200, rel=0.01)
    assert haversine_km(10, 20, 10, 20) == 0


def test_the_distance_matrix_is_haversine_pair_by_pair():
    points = list(scattered(30).values())
    km = distance_matrix_km(points)
    for i, a in enumerate(points):
        for j, b in enumerate(points):
            assert km[i, j] == pytest.approx(haversine_km(a.lat, a.lon, b.lat, b.lon),
                                             abs=1e-6)


def test_nearest_are_the_k_closest_by_great_circle_nearest_first():
    regions = scattered(60)
    near = nearest_regions(regions, 7)
    assert set(near) == set(regions)
    for rid, peers in near.items():
        a = regions[rid]
        by_distance = sorted((haversine_km(a.lat, a.lon, b.lat, b.lon), other)
                             for other, b in regions.items() if other != rid)
        assert list(peers) == [other for _, other in by_distance[:7]]


def test_ties_go_to_the_lower_id_whatever_the_order_given():
    # three regions at one spot, and one on the equator at the same distance east and west
    regions = {"m": region("m", 0, 0), "c": region("c", 0, 10), "a": region("a", 0, -10),
               "b": region("b", 0, 10), "z": region("z", 0, 10)}
    assert nearest_regions(regions, 1)["m"] == ("a",)
    assert nearest_regions(regions, 3)["m"] == ("a", "b", "c")
    assert nearest_regions(regions, 2)["c"] == ("b", "z")  # same spot: distance 0
    shuffled = dict(reversed(list(regions.items())))
    assert nearest_regions(shuffled, 3) == nearest_regions(regions, 3)


def test_small_k_large_k_and_bad_k():
    regions = scattered(5)
    assert nearest_regions(regions, 0) == {rid: () for rid in regions}
    for k in (4, 10):  # at most the others, never itself
        assert all(sorted(p) == sorted(set(regions) - {rid})
                   for rid, p in nearest_regions(regions, k).items())
    assert nearest_regions({"x": region("x", 1, 2)}, 3) == {"x": ()}
    assert nearest_regions({}, 3) == {}
    with pytest.raises(ValueError, match="k must be at least 0"):
        nearest_regions(regions, -1)


def test_any_object_with_lat_and_lon_will_do():
    class Point:
        def __init__(self, lat: float, lon: float) -> None:
            self.lat, self.lon = lat, lon

    near = nearest_regions({"a": Point(0, 0), "b": Point(0, 1), "c": Point(0, 3)}, 1)
    assert near == {"a": ("b",), "b": ("a",), "c": ("b",)}


def test_a_thousand_regions_at_once():
    regions = scattered(1000, seed=7)
    start = time.perf_counter()
    near = nearest_regions(regions, 16)
    elapsed = time.perf_counter() - start
    assert all(len(p) == 16 and rid not in p for rid, p in near.items())
    # spot check against the scalar formula
    a = regions["r0123"]
    km = np.array([haversine_km(a.lat, a.lon, b.lat, b.lon) if rid != "r0123" else np.inf
                   for rid, b in sorted(regions.items())])
    ids = sorted(regions)
    assert near["r0123"] == tuple(ids[i] for i in np.argsort(km, kind="stable")[:16])
    assert elapsed < 2.0  # vectorised: about 0.1 s on the development machine
