"""Small MaxMind-format City databases for tests, built with mmdb-writer: known networks on
several continents, records shaped as GeoIP2's (geoip2's Reader.city() refuses any other
database type than a City one)."""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

# network -> (country, city, lat, lon, accuracy radius in km)
NETWORKS: dict[str, tuple[str, str, float, float, int]] = {
    "81.2.69.0/24": ("GB", "London", 51.5074, -0.1278, 20),
    "89.160.20.0/24": ("SE", "Stockholm", 59.3293, 18.0686, 50),
    "177.53.0.0/16": ("BR", "Sao Paulo", -23.5505, -46.6333, 100),
    "103.4.96.0/22": ("JP", "Tokyo", 35.6762, 139.6503, 50),
    "1.128.0.0/11": ("AU", "Sydney", -33.8688, 151.2093, 200),
    "41.0.0.0/11": ("ZA", "Johannesburg", -26.2041, 28.0473, 100),
    "36.64.0.0/11": ("ID", "Jakarta", -6.2088, 106.8456, 100),
    "2400:cb00::/32": ("SG", "Singapore", 1.3521, 103.8198, 500),
    "2a02:c200::/32": ("DE", "Frankfurt", 50.1109, 8.6821, 100),
}


def build_city_db(path: Path, networks: dict[str, tuple[str, str, float, float, int]]
                  | None = None, kind: str = "GeoLite2-City") -> Path:
    """Write a City database of `networks` (default NETWORKS) to `path`."""
    w = MMDBWriter(ip_version=6, database_type=kind, languages=["en"],
                   description={"en": "skymesh test City database"}, ipv4_compatible=True)
    for net, (country, city, lat, lon, radius) in (networks or NETWORKS).items():
        w.insert_network(IPSet([net]), {
            "city": {"names": {"en": city}},
            "country": {"iso_code": country, "names": {"en": country}},
            "location": {"latitude": lat, "longitude": lon, "accuracy_radius": radius}})
    path.parent.mkdir(parents=True, exist_ok=True)
    w.to_db_file(str(path))
    return path
