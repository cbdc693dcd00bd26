"""controller/resolver.py: a client's edges from the core's view of the mesh, inside its
token's zone, of connected, undrained regions with an edge, placed by a GeoIP database built
for the test, the mesh's measured latencies used from the client's anchor region; a token
its app's keys do not verify is refused."""

from __future__ import annotations

import pytest
from geoipdb import build_city_db

from controller.core import Controller, Hello
from controller.resolver import Resolver
from skymesh import token as tokens
from skymesh.catalogue import Region
from skymesh.geoip import CityDatabase
from skymesh.policy import Policy, Zone

PLACES = {"lon": (51.51, -0.13), "fra": (50.11, 8.68), "sin": (1.35, 103.82),
          "syd": (-33.87, 151.21)}
UNIX = 1_800_000_000
KEY = tokens.generate_key()


@pytest.fixture(scope="module")
def geoip(tmp_path_factory) -> CityDatabase:
    return CityDatabase(build_city_db(tmp_path_factory.mktemp("geoip") / "city.mmdb"))


def mesh(geoip=None) -> tuple[Controller, Resolver]:
    catalogue = {r: Region(id=r, name=r.upper(), country="XX", lat=lat, lon=lon)
                 for r, (lat, lon) in PLACES.items()}
    policy = Policy({"global": Zone("global", frozenset(PLACES)),
                     "eu": Zone("eu", frozenset({"lon", "fra"})),
                     "apac": Zone("apac", frozenset({"sin", "syd"}))})
    core = Controller(catalogue, policy, apps={"demo": (tokens.public_key_of(KEY),)}, now=0.0)
    for i, r in enumerate(PLACES):
        core.connect(Hello(r, "n1", f"127.0.0.1:{9000 + i}", edge_addr=f"{r}.example:4433"),
                     lambda m: None, 0.0, UNIX)
    return core, Resolver(core, geoip, reindex_s=1.0)


def token(zone: str) -> str:
    return tokens.issue("demo", KEY, "live", "viewer-1", zone, ["join"], 3600, now=UNIX)


LONDON_IP, JAKARTA_IP, PRIVATE_IP = "81.2.69.142", "36.70.1.1", "10.1.2.3"


def test_a_client_gets_its_nearest_edges_inside_its_tokens_zone(geoip):
    core, resolver = mesh(geoip)
    r = resolver.resolve(token("global"), LONDON_IP, 2, 0.0, UNIX)
    assert r.zone == "global" and r.location.city == "London"
    assert [e.region for e in r.edges] == ["lon", "fra"]
    assert r.edges[0].nodes[0].address == "lon.example:4433"
    far = resolver.resolve(token("eu"), JAKARTA_IP, 5, 0.0, UNIX)  # a viewer in Jakarta
    assert [e.region for e in far.edges] == ["fra", "lon"]  # with an eu token: eu only
    near = resolver.resolve(token("apac"), JAKARTA_IP, 5, 0.0, UNIX)
    assert [e.region for e in near.edges] == ["sin", "syd"]


def test_drained_and_disconnected_regions_are_not_offered_once_reindexed(geoip):
    core, resolver = mesh(geoip)
    assert resolver.resolve(token("eu"), LONDON_IP, 3, 0.0, UNIX).edges[0].region == "lon"
    core.drain("lon", True, 0.5, UNIX)
    core.disconnect(core.sessions["fra"], 0.5, UNIX)
    assert resolver.resolve(token("eu"), LONDON_IP, 3, 0.5, UNIX).edges[0].region == "lon"
    assert resolver.resolve(token("eu"), LONDON_IP, 3, 1.0, UNIX).edges == []  # REINDEX_S on
    global_ = resolver.resolve(token("global"), LONDON_IP, 3, 1.0, UNIX)
    assert [e.region for e in global_.edges] == ["sin", "syd"]


def test_nodes_and_regions_by_load_when_the_address_cannot_be_placed(geoip):
    core, resolver = mesh(geoip)
    core.on_report(core.sessions["lon"], [], {"edge.sessions": 40}, 0.0)
    core.on_report(core.sessions["fra"], [], {"edge.sessions": 3}, 0.0)
    r = resolver.resolve(token("eu"), PRIVATE_IP, 3, 0.0, UNIX)
    assert r.location is None and [e.region for e in r.edges] == ["fra", "lon"]
    assert [e.load for e in r.edges] == [3, 40] and "no location" in r.edges[0].reason
    _, blind = mesh(None)  # no database configured: the same, by load
    assert blind.resolve(token("eu"), LONDON_IP, 3, 0.0, UNIX).location is None


def test_the_mesh_measured_latencies_from_the_clients_anchor(geoip):
    core, resolver = mesh(geoip)
    sample = {"rtt_ms": 11.0, "min_rtt_ms": 11.0, "jitter_ms": 0.0, "loss": 0.0,
              "window": 10, "samples": 10, "lost": 0, "state": "up"}
    core.on_report(core.sessions["lon"], [{**sample, "dst": "fra"}], {}, 0.0)
    fra = resolver.resolve(token("eu"), LONDON_IP, 2, 0.0, UNIX).edges[1]
    assert fra.region == "fra" and "as measured from lon (11 ms)" in fra.reason


def test_a_token_the_apps_keys_do_not_verify_is_refused(geoip):
    _, resolver = mesh(geoip)
    other = tokens.issue("demo", tokens.generate_key(), "live", "u", "eu", ["join"], 3600,
                         now=UNIX)
    with pytest.raises(tokens.TokenError):
        resolver.resolve(other, LONDON_IP, 3, 0.0, UNIX)
    with pytest.raises(tokens.TokenError):
        resolver.resolve(token("eu"), LONDON_IP, 3, 0.0, UNIX + 7200)  # expired
    with pytest.raises(tokens.TokenError):
        resolver.resolve("not a token", LONDON_IP, 3, 0.0, UNIX)


@pytest.mark.parametrize(("peer", "address"), [
    ("ipv4:81.2.69.142:5678", "81.2.69.142"), ("ipv6:[2400:cb00::1]:443", "2400:cb00::1"),
    ("ipv6:[::ffff:81.2.69.1]:1", "::ffff:5102:4501"), ("unix:/tmp/sock", ""),
    ("ipv4:garbage:1", ""), ("", ""),
])
def test_the_callers_address_is_read_from_grpcs_peer(peer, address):
    from controller.resolver_service import peer_address

    assert peer_address(peer) == address


def test_a_resolution_goes_on_the_wire_with_unknowns_as_minus_one(geoip):
    from controller.resolver_service import reply

    _, resolver = mesh(geoip)
    placed = reply(resolver.resolve(token("eu"), LONDON_IP, 2, 0.0, UNIX))
    assert placed.located and placed.city == "London" and placed.zone == "eu"
    assert [e.region for e in placed.edges] == ["lon", "fra"]
    assert placed.edges[0].nodes[0].address == "lon.example:4433"
    blind = reply(resolver.resolve(token("eu"), PRIVATE_IP, 2, 0.0, UNIX))
    assert not blind.located and {e.distance_km for e in blind.edges} == {-1.0}


def test_a_token_is_verified_once_kept_until_it_expires_and_forgotten_with_its_key(
        geoip, monkeypatch):
    core, resolver = mesh(geoip)
    calls = []
    verify = tokens.verify
    monkeypatch.setattr(tokens, "verify", lambda *a, **k: calls.append(1) or verify(*a, **k))
    t = token("eu")
    for _ in range(3):
        resolver.resolve(t, LONDON_IP, 1, 0.0, UNIX)
    assert len(calls) == 1
    with pytest.raises(tokens.TokenError, match="expired"):
        resolver.resolve(t, LONDON_IP, 1, 0.0, UNIX + 3600)
    resolver.resolve(t, LONDON_IP, 1, 0.0, UNIX + 10)
    core.apps = {"demo": (tokens.public_key_of(tokens.generate_key()),)}  # the key replaced
    with pytest.raises(tokens.TokenError):
        resolver.resolve(t, LONDON_IP, 1, 0.0, UNIX + 10)
