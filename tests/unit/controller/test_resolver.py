"""controller/resolver.py: a client's edges from the core's view of the mesh, inside its
token's zone, of connected, undrained regions with an edge, placed by a GeoIP database built
for the test, the mesh's measured latencies used from the client's anchor region; a token
its app's keys do not verify is refused."""

from __future__ import annotations

import pytest
from geoipdb import build_city_db
from hypothesis import given
from hypothesis import strategies as st

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


def test_the_index_is_replaced_only_when_something_in_it_moved(geoip):
    core, resolver = mesh(geoip)
    first = resolver.index(0.0)
    ranked = resolver.resolve(token("eu"), LONDON_IP, 2, 0.0, UNIX).edges
    assert resolver.resolve(token("eu"), LONDON_IP, 2, 0.5, UNIX).edges is ranked  # kept
    assert resolver.index(1.0) is first  # nothing moved: the index and its rankings stand
    assert resolver.resolve(token("eu"), LONDON_IP, 2, 1.0, UNIX).edges is ranked
    core.on_report(core.sessions["fra"], [], {"edge.sessions": 7}, 1.5, full=False)
    moved = resolver.index(2.0)
    assert moved is not first and moved.ids == first.ids and moved.xyz is first.xyz
    # loads alone moved: the clients' shortlists stand, their rankings are made again
    assert moved.placements is first.placements
    again = resolver.resolve(token("eu"), LONDON_IP, 2, 2.0, UNIX).edges
    assert again is not ranked and [e.load for e in again] == [0, 7]
    core.drain("fra", True, 2.5, UNIX)  # the regions usable moved: shortlists made again
    drained = resolver.index(3.0)
    assert drained.placements is not moved.placements
    assert [e.region for e in resolver.resolve(token("eu"), LONDON_IP, 2, 3.0, UNIX).edges] \
        == ["lon"]


def test_a_reindexed_view_ranks_as_one_built_afresh(geoip):
    from controller.resolver import edge_regions, measured_rtts
    from skymesh.edgerank import EdgeIndex

    core, resolver = mesh(geoip)
    resolver.index(0.0)
    sample = {"rtt_ms": 11.0, "min_rtt_ms": 11.0, "jitter_ms": 0.0, "loss": 0.0,
              "window": 10, "samples": 10, "lost": 0, "state": "up"}
    core.on_report(core.sessions["lon"], [{**sample, "dst": "fra"}], {"edge.sessions": 3}, 0.1)
    core.connect(Hello("fra", "n2", "127.0.0.1:9100", edge_addr="fra2.example:4433"),
                 lambda m: None, 0.2, UNIX)
    core.on_report(core.sessions["fra"], [], {"edge.sessions": 9}, 0.3, full=False)
    core.drain("syd", True, 0.4, UNIX)
    core.disconnect(core.sessions["sin"], 0.5, UNIX)
    listed = edge_regions(core)
    fresh = EdgeIndex(listed, measured_rtts(core, listed))
    reindexed = resolver.index(1.0)
    assert reindexed.regions == fresh.regions
    for address in (LONDON_IP, JAKARTA_IP, PRIVATE_IP):
        where = geoip.locate(address)
        for zone in ("global", "eu", "apac"):
            assert reindexed.rank(where, zone, 4) == fresh.rank(where, zone, 4)


def test_a_refresh_in_steps_serves_between_them_and_one_left_unfinished_changes_nothing(
        geoip):
    core, resolver = mesh(geoip)
    first = resolver.index(0.0)
    core.drain("lon", True, 0.5, UNIX)
    steps = resolver.refresh_steps(1.0, regions_per_step=1)
    next(steps)
    next(steps)  # two regions read, then left
    steps.close()
    assert resolver.edges is first
    assert resolver.index(1.5) is first  # not again before reindex_s: the time was taken
    assert [e.region for e in resolver.resolve(token("eu"), LONDON_IP, 2, 2.0, UNIX).edges] \
        == ["fra"]  # the next refresh reads every region again
    core.drain("fra", True, 2.5, UNIX)
    looked = 0
    for _ in resolver.refresh_steps(3.0, regions_per_step=1):
        looked += 1
        assert resolver.resolve(token("eu"), LONDON_IP, 2, 3.0, UNIX).edges  # the old index
    assert looked >= len(PLACES) and resolver.resolve(token("eu"), LONDON_IP, 2, 3.0,
                                                      UNIX).edges == []


def test_rankings_are_kept_per_location_zone_and_count_or_not_at_all(geoip):
    core, resolver = mesh(geoip)
    a = resolver.resolve(token("eu"), LONDON_IP, 2, 0.0, UNIX).edges
    assert resolver.resolve(token("eu"), LONDON_IP, 2, 0.0, UNIX).edges is a
    assert resolver.resolve(token("eu"), LONDON_IP, 3, 0.0, UNIX).edges is not a
    assert resolver.resolve(token("global"), LONDON_IP, 2, 0.0, UNIX).edges is not a
    _, fresh = mesh(geoip)
    fresh.rankings_kept = 0
    b = fresh.resolve(token("eu"), LONDON_IP, 2, 0.0, UNIX).edges
    assert b == a and fresh.resolve(token("eu"), LONDON_IP, 2, 0.0, UNIX).edges is not b
    assert fresh.rankings == {}


@pytest.mark.parametrize(("text", "address"), [
    ("81.2.69.142", "81.2.69.142"), ("[2400:CB00::1]", "2400:cb00::1"),
    ("::ffff:81.2.69.1", "::ffff:5102:4501"), ("081.2.69.142", None), ("1.2.3", None),
    ("1.2.3.4 ", None), ("", None), ("host.example", None), ("1.2.3.4\x00", None),
])
def test_addresses_are_read_in_their_canonical_form(text, address):
    from controller.resolver_service import canonical_address

    assert canonical_address(text) == address


@given(st.one_of(st.ip_addresses().map(str), st.text(max_size=24),
                st.lists(st.integers(0, 300).map(str), min_size=3, max_size=5).map(".".join)))
def test_addresses_are_canonical_as_ipaddress_makes_them(text):
    import ipaddress

    from controller.resolver_service import canonical_address

    try:
        expected = str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        expected = None
    assert canonical_address(text) == expected


def test_the_wire_reply_is_kept_encoded_and_is_the_messages_own_encoding(geoip):
    from controller.resolver_service import EdgeResolverService, reply

    core, resolver = mesh(geoip)
    service = EdgeResolverService(lambda: resolver)
    for address, count in ((LONDON_IP, 2), ("81.2.69.143", 2), (PRIVATE_IP, 5), ("", 0)):
        r = resolver.resolve(token("eu"), address, count, 0.0, UNIX)
        assert service.encode(resolver, r, count) == reply(r).SerializeToString()
    kept = dict(service.encoded)
    assert len(kept) == 3  # London's two addresses share a location
    core.on_report(core.sessions["lon"], [], {"edge.sessions": 5}, 0.5, full=False)
    r = resolver.resolve(token("eu"), LONDON_IP, 2, 1.0, UNIX)  # reindexed: a new load
    assert service.encode(resolver, r, 2) == reply(r).SerializeToString()
    assert len(service.encoded) == 1 and r.edges[0].load == 5


def test_the_shell_keeps_the_index_fresh_until_its_server_stops(geoip, monkeypatch):
    import asyncio

    from controller import resolver_service

    core, resolver = mesh(geoip)
    resolver.reindex_s = 0.05
    held: list = [None]

    async def run() -> tuple[int, int]:
        stopped = asyncio.get_running_loop().create_future()
        timer = asyncio.create_task(resolver_service.keep_indexed(lambda: held[0], stopped))
        await asyncio.sleep(0.02)  # no resolver yet: nothing to do
        held[0] = resolver
        await asyncio.sleep(0.02)
        first = resolver.edges
        core.drain("lon", True, 0.0, UNIX)
        await asyncio.sleep(0.2)
        assert "drained" in resolver.edges.unusable and resolver.edges is not first
        stopped.set_result(None)
        await asyncio.wait_for(timer, 1.0)
        return resolver.reindexed, len(resolver.edges.ids)

    monkeypatch.setattr(resolver_service, "IDLE_CHECK_S", 0.01)
    reindexed, regions = asyncio.run(run())
    assert reindexed >= 2 and regions == len(PLACES)


def test_a_client_told_its_region_gets_that_regions_edges_or_none(geoip):
    from controller.resolver_service import EdgeResolverService, reply

    core, resolver = mesh(geoip)
    service = EdgeResolverService(lambda: resolver)
    r = resolver.resolve(token("global"), LONDON_IP, 3, 0.0, UNIX, region="sin")
    assert [e.region for e in r.edges] == ["sin"] and r.edges[0].distance_km > 10_000
    assert service.encode(resolver, r, 3, "sin") == reply(r).SerializeToString()
    assert [e.region for e in resolver.resolve(token("global"), PRIVATE_IP, 3, 0.0, UNIX,
                                               region="fra").edges] == ["fra"]
    assert resolver.resolve(token("eu"), LONDON_IP, 3, 0.0, UNIX, region="sin").edges == []
    assert resolver.resolve(token("global"), LONDON_IP, 3, 0.0, UNIX, region="xx").edges == []
    core.drain("sin", True, 0.5, UNIX)
    assert resolver.resolve(token("global"), LONDON_IP, 3, 1.0, UNIX, region="sin").edges \
        == []
    assert [e.region for e in resolver.resolve(token("global"), LONDON_IP, 3, 1.0,
                                               UNIX).edges] == ["lon", "fra", "syd"]
