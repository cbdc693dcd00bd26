"""Where a client's address is, by a MaxMind-format City database (an operator's GeoLite2 or
GeoIP2 City file) read through geoip2: its location, how far that may be off (the accuracy
radius), its country and city. An address the database cannot place (private, reserved,
unknown, or without a location) is None: the caller falls back to its other signals.

The file is reopened when it changes (`reload_if_changed`, by its size and modification
time), so that an operator's weekly update needs no restart; a replacement that cannot be
read is logged and the database held goes on answering.
"""

from __future__ import annotations

import bisect
import ipaddress
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

import geoip2.database
import maxminddb

from skymesh.edgerank import Location

log = logging.getLogger("skymesh.geoip")

UNKNOWN_ACCURACY_KM = 1000.0  # a location the database gives without a radius


class GeoIPError(Exception):
    """A database that cannot be used: the message names the file and what is wrong."""


# IPv4's special-purpose blocks (IANA's registry, as Python's ipaddress knows it), as sorted
# integer ranges: is_global walks every block's network object on each call, ten times the
# cost of a lookup in the database
_V4_SPECIAL = sorted(
    (int(n.network_address), int(n.broadcast_address)) for n in (
        ipaddress.ip_network(t) for t in (
            "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
            "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24",
            "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
            "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32")))
_V4_STARTS = [start for start, _ in _V4_SPECIAL]


def placeable(address: str) -> str | None:
    """`address` as a database looks it up (an IPv4-mapped IPv6 address as IPv4), if it is
    one a database could place: a valid, globally routed address; else None."""
    address = address.strip("[]")
    try:
        # most clients: a dotted quad, which inet_pton takes only in its canonical form (four
        # parts, no leading zeros, as ipaddress): a fifth of ipaddress's cost
        n = int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except (OSError, ValueError):  # not a dotted quad (ValueError: a NUL in it)
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is None:
                return str(ip) if ip.is_global and not ip.is_multicast else None
            ip = ip.ipv4_mapped
        n, address = int(ip), str(ip)
    i = bisect.bisect_right(_V4_STARTS, n) - 1
    return None if i >= 0 and n <= _V4_SPECIAL[i][1] else address


def _open(path: Path) -> tuple[maxminddb.Reader, str, int]:
    """The database at `path` (its reader, type and build time), checked with geoip2 to be
    a City database and read from a private copy: libmaxminddb maps the file, and a file
    overwritten in place (not renamed over) must not change under lookups. Records are read
    with maxminddb, as geoip2 reads them, without building geoip2's model objects (a lookup
    in 2 microseconds, not 10)."""
    try:
        with open(path, "rb") as src, tempfile.NamedTemporaryFile(
                prefix="skymesh-geoip-", suffix=".mmdb", delete=False) as copy:
            shutil.copyfileobj(src, copy)
    except FileNotFoundError:
        raise GeoIPError(f"{path}: no such file") from None
    except OSError as e:
        raise GeoIPError(f"{path}: {e.strerror or e}") from None
    try:
        with geoip2.database.Reader(copy.name, mode=maxminddb.MODE_AUTO) as checked:
            meta = checked.metadata()
        if "City" not in meta.database_type:
            raise GeoIPError(f"{path}: a {meta.database_type} database; a City database "
                             "(GeoLite2-City or GeoIP2-City) is needed for locations")
        return maxminddb.open_database(copy.name, maxminddb.MODE_AUTO), \
            meta.database_type, meta.build_epoch
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as e:
        raise GeoIPError(f"{path}: not a MaxMind database: {e}") from None
    finally:
        os.unlink(copy.name)  # the mapping keeps it while the reader is open


def _stamp(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


class CityDatabase:
    """A City database, opened at once (GeoIPError if it cannot be used)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.reader, self.kind, self.built_unix_s = _open(self.path)
        self.stamp = _stamp(self.path)

    def locate(self, address: str) -> Location | None:
        """Where `address` is, or None when this database cannot say."""
        if (ip := placeable(address)) is None:
            return None
        try:
            record = self.reader.get(ip)
        except ValueError:
            return None
        except maxminddb.InvalidDatabaseError as e:  # opened, but corrupt where it looked
            log.warning("GeoIP database %s: %s", self.path, e)
            return None
        if not isinstance(record, dict):
            return None
        loc = record.get("location") or {}
        lat, lon = loc.get("latitude"), loc.get("longitude")
        if not isinstance(lat, (int, float)) or not isinstance(lon, (int, float)):
            return None
        radius = loc.get("accuracy_radius")
        country = (record.get("country") or {}).get("iso_code") or ""
        city = ((record.get("city") or {}).get("names") or {}).get("en") or ""
        return Location(float(lat), float(lon),
                     float(radius) if radius else UNKNOWN_ACCURACY_KM, country, city)

    def reload_if_changed(self) -> bool:
        """Reopen the file if it changed since it was read; True if it was. A replacement
        that cannot be read (missing, half written, of another kind) is logged, and the
        database held goes on answering."""
        try:
            stamp = _stamp(self.path)
        except OSError as e:
            log.warning("GeoIP database %s: %s; keeping the one read before", self.path, e)
            return False
        if stamp == self.stamp:
            return False
        try:
            reader, kind, built = _open(self.path)
        except GeoIPError as e:
            log.warning("GeoIP database changed but cannot be read: %s; keeping the one read "
                        "before", e)
            self.stamp = stamp  # not again until it changes again
            return False
        old, self.reader, self.stamp = self.reader, reader, stamp
        self.kind, self.built_unix_s = kind, built
        old.close()
        log.info("GeoIP database %s reloaded (%s, built %d)", self.path, self.kind,
                 self.built_unix_s)
        return True

    def close(self) -> None:
        self.reader.close()
