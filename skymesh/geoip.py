"""Where a client's address is, by a MaxMind-format City database (an operator's GeoLite2 or
GeoIP2 City file) read through geoip2: its location, how far that may be off (the accuracy
radius), its country and city. An address the database cannot place (private, reserved,
unknown, or without a location) is None: the caller falls back to its other signals.

The file is reopened when it changes (`reload_if_changed`, by its size and modification
time), so that an operator's weekly update needs no restart; a replacement that cannot be
read is logged and the database held goes on answering.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import geoip2.database
import geoip2.errors
import maxminddb

log = logging.getLogger("skymesh.geoip")

UNKNOWN_ACCURACY_KM = 1000.0  # a location the database gives without a radius


class GeoIPError(Exception):
    """A database that cannot be used: the message names the file and what is wrong."""


@dataclass(frozen=True)
class Place:
    lat: float
    lon: float
    accuracy_km: float  # the radius around (lat, lon) the address is within, likely
    country: str = ""  # ISO 3166-1 alpha-2
    city: str = ""


def placeable(address: str) -> str | None:
    """`address` as a database looks it up (an IPv4-mapped IPv6 address as IPv4), if it is
    one a database could place: a valid, globally routed address; else None."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip) if ip.is_global and not ip.is_multicast else None


def _open(path: Path) -> geoip2.database.Reader:
    try:
        # read whole into memory: a file overwritten in place (not renamed over) must not
        # change under lookups
        reader = geoip2.database.Reader(str(path), mode=maxminddb.MODE_MEMORY)
    except FileNotFoundError:
        raise GeoIPError(f"{path}: no such file") from None
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as e:
        raise GeoIPError(f"{path}: not a MaxMind database: {e}") from None
    kind = reader.metadata().database_type
    if "City" not in kind:
        reader.close()
        raise GeoIPError(f"{path}: a {kind} database; a City database (GeoLite2-City or "
                         "GeoIP2-City) is needed for locations")
    return reader


def _stamp(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


class CityDatabase:
    """A City database, opened at once (GeoIPError if it cannot be used)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.reader = _open(self.path)
        self.stamp = _stamp(self.path)
        self.kind = self.reader.metadata().database_type
        self.built_unix_s = self.reader.metadata().build_epoch

    def locate(self, address: str) -> Place | None:
        """Where `address` is, or None when this database cannot say."""
        if (ip := placeable(address)) is None:
            return None
        try:
            city = self.reader.city(ip)
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return None
        except maxminddb.InvalidDatabaseError as e:  # opened, but corrupt where it looked
            log.warning("GeoIP database %s: %s", self.path, e)
            return None
        loc = city.location
        if loc.latitude is None or loc.longitude is None:
            return None
        radius = float(loc.accuracy_radius) if loc.accuracy_radius else UNKNOWN_ACCURACY_KM
        return Place(loc.latitude, loc.longitude, radius, city.country.iso_code or "",
                     city.city.name or "")

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
            reader = _open(self.path)
        except GeoIPError as e:
            log.warning("GeoIP database changed but cannot be read: %s; keeping the one read "
                        "before", e)
            self.stamp = stamp  # not again until it changes again
            return False
        old, self.reader, self.stamp = self.reader, reader, stamp
        self.kind = reader.metadata().database_type
        self.built_unix_s = reader.metadata().build_epoch
        old.close()
        log.info("GeoIP database %s reloaded (%s, built %d)", self.path, self.kind,
                 self.built_unix_s)
        return True

    def close(self) -> None:
        self.reader.close()
