"""Geography: great-circle distance, the speed of light in fiber, nearest regions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

import numpy as np

EARTH_RADIUS_KM = 6371.0088
FIBER_KM_PER_MS = 199.86  # 2/3 of c


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def fiber_one_way_ms(distance_km: float) -> float:
    return distance_km / FIBER_KM_PER_MS


class Located(Protocol):
    @property
    def lat(self) -> float: ...

    @property
    def lon(self) -> float: ...


def distance_matrix_km(points: list[Located]) -> np.ndarray:
    """Great-circle distances between every two points (haversine, as `haversine_km`)."""
    lat = np.radians(np.array([p.lat for p in points], dtype=float))
    lon = np.radians(np.array([p.lon for p in points], dtype=float))
    dp = lat[None, :] - lat[:, None]
    dl = lon[None, :] - lon[:, None]
    a = np.sin(dp / 2) ** 2 + np.cos(lat)[:, None] * np.cos(lat)[None, :] * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def nearest_regions(regions: Mapping[str, Located], k: int) -> dict[str, tuple[str, ...]]:
    """Each region's `k` nearest other regions by great-circle distance, nearest first (all
    the others when there are fewer). Distances equal to the millimetre tie, and ties go to
    the lower id, so that every caller (controller, relays, tests) gets the same answer
    whatever the order of the mapping."""
    if k < 0:
        raise ValueError(f"k must be at least 0, got {k}")
    ids = sorted(regions)
    n = len(ids)
    take = min(k, n - 1)
    if take <= 0:
        return {rid: () for rid in ids}
    # rounding makes the two directions of a pair, computed in different argument orders,
    # equal, so a tie is a tie on every platform
    km = np.round(distance_matrix_km([regions[rid] for rid in ids]), 6)
    np.fill_diagonal(km, np.inf)
    # ids are sorted, so a stable sort breaks equal distances by id
    order = np.argsort(km, axis=1, kind="stable")[:, :take]
    return {rid: tuple(ids[j] for j in order[i]) for i, rid in enumerate(ids)}
