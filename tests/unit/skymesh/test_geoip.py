"""skymesh/geoip.py: a City database built for the test places addresses on several
continents, leaves out what it cannot place, refuses a file it cannot use with its path
named, and is reloaded when the file changes (keeping the old one when the new cannot be
read); MaxMind's public test databases give their known answers when ../shared has them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from geoipdb import NETWORKS, build_city_db
from hypothesis import given
from hypothesis import strategies as st

from skymesh.geoip import CityDatabase, GeoIPError, placeable

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "maxmind-test-dbs"


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> CityDatabase:
    return CityDatabase(build_city_db(tmp_path_factory.mktemp("geoip") / "city.mmdb"))


@pytest.mark.parametrize(("address", "city"), [
    ("81.2.69.142", "London"), ("89.160.20.112", "Stockholm"), ("177.53.10.1", "Sao Paulo"),
    ("103.4.97.1", "Tokyo"), ("1.130.0.9", "Sydney"), ("41.1.2.3", "Johannesburg"),
    ("36.70.1.1", "Jakarta"), ("2400:cb00::1", "Singapore"), ("[2a02:c200::5]", "Frankfurt"),
    ("::ffff:81.2.69.1", "London"),
])
def test_known_networks_on_several_continents_are_placed(db, address, city):
    place = db.locate(address)
    country, name, lat, lon, radius = next(v for v in NETWORKS.values() if v[1] == city)
    assert place is not None
    assert (place.city, place.country, place.accuracy_km) == (name, country, radius)
    assert place.lat == pytest.approx(lat) and place.lon == pytest.approx(lon)


@pytest.mark.parametrize("address", [
    "10.1.2.3", "192.168.0.1", "127.0.0.1", "100.64.0.1", "169.254.1.1", "::1", "fe80::1",
    "2001:db8::1", "224.0.0.1", "8.8.8.8", "not an address", "", "999.1.1.1",
])
def test_what_the_database_cannot_place_is_none(db, address):
    assert db.locate(address) is None


def test_only_global_addresses_are_placeable():
    assert placeable("81.2.69.142") == "81.2.69.142" and placeable("2400:cb00::1")
    assert placeable("::ffff:81.2.69.1") == "81.2.69.1"
    assert placeable("10.0.0.1") is None and placeable("x") is None


def test_a_file_that_cannot_be_used_is_refused_naming_it(tmp_path):
    with pytest.raises(GeoIPError, match=f"{tmp_path}/missing.mmdb: no such file"):
        CityDatabase(tmp_path / "missing.mmdb")
    (tmp_path / "junk.mmdb").write_bytes(b"not a database" * 100)
    with pytest.raises(GeoIPError, match="junk.mmdb: not a MaxMind database"):
        CityDatabase(tmp_path / "junk.mmdb")
    country = build_city_db(tmp_path / "country.mmdb", kind="GeoLite2-Country")
    with pytest.raises(GeoIPError, match="a GeoLite2-Country database; a City database"):
        CityDatabase(country)


def test_a_changed_file_is_reloaded_and_a_broken_one_is_not(tmp_path):
    path = build_city_db(tmp_path / "city.mmdb", {"81.2.69.0/24": ("GB", "London", 51.5,
                                                                   -0.1, 20)})
    db = CityDatabase(path)
    assert db.locate("81.2.69.1").city == "London" and db.locate("41.1.2.3") is None
    assert not db.reload_if_changed()  # unchanged
    moved = build_city_db(tmp_path / "next.mmdb", {"41.0.0.0/11": ("ZA", "Johannesburg",
                                                                   -26.2, 28.0, 100)})
    os.replace(moved, path)  # as an operator's update lands: a rename
    assert db.reload_if_changed()
    assert db.locate("41.1.2.3").city == "Johannesburg" and db.locate("81.2.69.1") is None
    path.write_bytes(b"half written")
    assert not db.reload_if_changed()
    assert db.locate("41.1.2.3").city == "Johannesburg"  # the one read before
    path.unlink()
    assert not db.reload_if_changed()
    assert db.locate("41.1.2.3").city == "Johannesburg"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/maxmind-test-dbs not present")
@pytest.mark.parametrize("name", ["GeoIP2-City-Test.mmdb", "GeoLite2-City-Test.mmdb"])
def test_maxminds_test_databases_give_their_known_answers(name):
    db = CityDatabase(SHARED / "test-data" / name)
    london = db.locate("81.2.69.142")
    assert (london.country, london.city) == ("GB", "London")
    assert (london.lat, london.lon) == pytest.approx((51.5142, -0.0931))
    assert db.locate("216.160.83.56").city == "Milton"
    assert db.locate("89.160.20.112").country == "SE"
    assert db.locate("175.16.199.0").country == "CN"
    assert db.locate("8.8.8.8") is None
    with pytest.raises(GeoIPError, match="a City database"):
        CityDatabase(SHARED / "test-data" / "GeoIP2-Country-Test.mmdb")


@given(st.integers(0, 2**32 - 1))
def test_ipv4_placeable_is_global_by_ipaddress_less_multicast_and_two_iana_blocks(n):
    import ipaddress

    ip = ipaddress.IPv4Address(n)
    extra = any(ip in ipaddress.ip_network(net)
                for net in ("192.0.0.0/24", "192.88.99.0/24", "224.0.0.0/4"))
    assert (placeable(str(ip)) is not None) == (ip.is_global and not extra)


@given(st.one_of(
    st.lists(st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "007", ""])),
             min_size=3, max_size=5).map(".".join),
    st.ip_addresses().map(str), st.text(max_size=20)))
def test_placeable_reads_addresses_as_ipaddress_does(text):
    import ipaddress

    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        assert placeable(text) is None
        return
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    assert placeable(text) in (None, str(ip))
    assert (placeable(text) is None) == (placeable(str(ip)) is None)
