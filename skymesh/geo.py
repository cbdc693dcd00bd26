"""Geography: great-circle distance and the speed of light in fiber."""

import math

EARTH_RADIUS_KM = 6371.0088
FIBER_KM_PER_MS = 199.86  # 2/3 of c


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def fiber_one_way_ms(distance_km: float) -> float:
    return distance_km / FIBER_KM_PER_MS
