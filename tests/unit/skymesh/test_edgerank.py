"""skymesh/edgerank.py: edges ranked for a client by its location, inside its zone, only of
usable regions, nodes by load; the mesh's measured latencies from the client's anchor region
where it has them; by load when the client cannot be placed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skymesh.edgerank import (
    EdgeNode,
    EdgeRegion,
    Location,
    geo_rtt_ms,
    rank,
)

EU, APAC = frozenset({"eu", "global"}), frozenset({"apac", "global"})


def region(rid: str, lat: float, lon: float, zones=EU, loads=(0,), unusable="") -> EdgeRegion:
    return EdgeRegion(rid, lat, lon, tuple(EdgeNode(f"n{i + 1}", f"{rid}.example:443{i}", load)
                                           for i, load in enumerate(loads)), zones, unusable)


REGIONS = [
    region("lon", 51.51, -0.13), region("fra", 50.11, 8.68), region("ams", 52.37, 4.90),
    region("sin", 1.35, 103.82, APAC), region("syd", -33.87, 151.21, APAC),
    region("jkt", -6.21, 106.85, APAC), region("nyc", 40.71, -74.01, frozenset({"global"})),
]
LONDON = Location(51.5074, -0.1278, 20, "GB", "London")
JAKARTA = Location(-6.2, 106.8, 50, "ID", "Jakarta")


def test_the_nearest_region_comes_first_with_its_distance_estimate_and_reason():
    best, *rest = rank(REGIONS, LONDON, count=3)
    assert best.region == "lon" and best.distance_km < 5
    assert best.rtt_ms == pytest.approx(geo_rtt_ms(best.distance_km), abs=0.1)
    assert "London" in best.reason and "within 20 km" in best.reason
    assert [e.region for e in rest] == ["ams", "fra"]
    assert all(a.rtt_ms <= b.rtt_ms for a, b in zip([best, *rest], rest, strict=False))


def test_a_zone_keeps_every_edge_inside_it():
    for where in (LONDON, JAKARTA, None):
        edges = rank(REGIONS, where, zone="eu", count=10)
        assert edges and {e.region for e in edges} <= {"lon", "fra", "ams"}
        assert {e.region for e in rank(REGIONS, where, zone="apac", count=10)} == \
            {"sin", "syd", "jkt"}
    assert rank(REGIONS, LONDON, zone="nowhere") == []


def test_drained_dead_and_edgeless_regions_are_skipped():
    regions = [region("lon", 51.51, -0.13, unusable="drained"),
               region("ams", 52.37, 4.90, unusable="not connected"),
               region("fra", 50.11, 8.68), EdgeRegion("par", 48.86, 2.35, (), EU)]
    assert [e.region for e in rank(regions, LONDON, count=5)] == ["fra"]


def test_nodes_go_least_loaded_first_and_load_breaks_ties():
    regions = [region("fra", 50.11, 8.68, loads=(30, 2, 9)),
               region("fra2", 50.11, 8.68, loads=(1, 1))]
    first, second = rank(regions, Location(50.1, 8.7), count=2)
    assert first.region == "fra2" and first.load == 2  # same place, fewer sessions
    assert [n.node_id for n in second.nodes] == ["n2", "n3", "n1"]


def test_measured_latencies_from_the_anchor_region_beat_geography():
    # by geography Singapore (900 km) comes before Sydney (5500 km); say the mesh measured
    # jkt->sin at 80 ms (a detour) and jkt->syd at 40 ms
    rtts = {("jkt", "sin"): 80.0, ("jkt", "syd"): 40.0}
    regions = [r for r in REGIONS if r.id in ("sin", "syd")]
    assert [e.region for e in rank(regions, JAKARTA, count=2)] == ["sin", "syd"]
    jkt = region("jkt", -6.21, 106.85, APAC)
    by_mesh = rank([*regions, jkt], JAKARTA, count=3, measured=lambda a, b: rtts.get((a, b)))
    assert [e.region for e in by_mesh] == ["jkt", "syd", "sin"]
    assert "as measured from jkt (40 ms)" in by_mesh[1].reason
    assert by_mesh[1].rtt_ms == pytest.approx(geo_rtt_ms(by_mesh[0].distance_km) + 40,
                                              abs=0.1)
    # a drained anchor takes no clients, but its relay's measurements still stand for it
    drained = region("jkt", -6.21, 106.85, APAC, unusable="drained")
    assert [e.region for e in rank([*regions, drained], JAKARTA, count=3,
                                   measured=lambda a, b: rtts.get((a, b)))] == ["syd", "sin"]


def test_a_client_far_from_every_region_is_ranked_by_geography_alone():
    far = Location(-54.8, -68.3, 10)  # Ushuaia: no region within ANCHOR_KM
    edges = rank(REGIONS, far, count=2, measured=lambda a, b: 1.0)
    assert all("by distance" in e.reason for e in edges)


def test_a_wide_accuracy_radius_keeps_every_region_that_could_be_nearest():
    vague = Location(51.0, 4.0, 800)  # somewhere in western Europe
    edges = rank(REGIONS, vague, count=10)
    assert {"lon", "fra", "ams"} <= {e.region for e in edges}


def test_without_a_location_usable_regions_go_least_loaded_first():
    regions = [region("lon", 51.51, -0.13, loads=(9,)), region("fra", 50.11, 8.68, loads=(1,)),
               region("ams", 52.37, 4.90, loads=(4,), unusable="drained")]
    edges = rank(regions, None, count=5)
    assert [e.region for e in edges] == ["fra", "lon"]
    assert edges[0].distance_km is None and edges[0].rtt_ms is None
    assert "no location" in edges[0].reason


@given(st.floats(-89, 89), st.floats(-179, 179), st.floats(0, 3000),
       st.integers(1, 8), st.sampled_from(["", "eu", "apac", "global"]))
def test_rankings_are_ordered_bounded_and_inside_the_zone(lat, lon, accuracy, count, zone):
    edges = rank(REGIONS, Location(lat, lon, accuracy), zone=zone, count=count)
    assert len(edges) <= count and len({e.region for e in edges}) == len(edges)
    assert all(a.rtt_ms <= b.rtt_ms for a, b in zip(edges, edges[1:], strict=False))
    by_id = {r.id: r for r in REGIONS}
    assert all(not zone or zone in by_id[e.region].zones for e in edges)
    assert edges or zone == ""  # every zone named has regions


def test_an_index_built_once_ranks_as_the_one_shot_function_does():
    from skymesh.edgerank import EdgeIndex

    rtts = {("lon", "fra"): 30.0, ("lon", "ams"): 9.0}
    index = EdgeIndex(REGIONS, lambda a, b: rtts.get((a, b)))
    for where in (LONDON, JAKARTA, Location(40.0, -70.0, 300), None):
        for zone in ("", "eu", "apac"):
            assert index.rank(where, zone, 4) == rank(
                REGIONS, where, zone=zone, count=4, measured=lambda a, b: rtts.get((a, b)))
    assert [e.region for e in index.rank(LONDON, "eu", 3)] == ["lon", "ams", "fra"]


@given(st.floats(-90, 90), st.floats(-180, 180))
def test_distances_from_unit_vectors_are_the_great_circle_ones(lat, lon):
    from skymesh.edgerank import EdgeIndex
    from skymesh.geo import haversine_km

    index = EdgeIndex(REGIONS)
    got = index.distances_km(Location(lat, lon))
    for r, d in zip(REGIONS, got, strict=True):
        assert d == pytest.approx(haversine_km(lat, lon, r.lat, r.lon), abs=0.01)


@given(st.lists(st.tuples(st.lists(st.integers(0, 50), max_size=3),
                          st.sampled_from(["", "", "drained"])),
                min_size=len(REGIONS), max_size=len(REGIONS)),
       st.floats(-60, 60), st.floats(-179, 179), st.floats(0, 2000))
def test_an_index_of_the_same_regions_in_another_state_ranks_as_one_built_afresh(
        states, lat, lon, accuracy):
    from dataclasses import replace

    from skymesh.edgerank import EdgeIndex

    rtts = {("lon", "fra"): 30.0, ("lon", "ams"): 9.0, ("jkt", "syd"): 40.0}
    measured = lambda a, b: rtts.get((a, b))  # noqa: E731
    before = EdgeIndex(REGIONS, measured)
    after = [replace(r, nodes=tuple(EdgeNode(f"n{i}", f"{r.id}:{i}", load)
                                    for i, load in enumerate(loads)), unusable=unusable)
             for r, (loads, unusable) in zip(REGIONS, states, strict=True)]
    where = Location(lat, lon, accuracy, "XX", "")
    for zone in ("", "eu", "apac"):
        before.rank(where, zone, 3)  # shortlists made, to be kept or not
    derived = before.with_state([r.nodes for r in after], [r.unusable for r in after],
                                before.measured)
    fresh = EdgeIndex(after, measured)
    assert derived.regions == after
    for zone in ("", "eu", "apac"):
        for count in (1, 3, 8):
            assert derived.rank(where, zone, count) == fresh.rank(where, zone, count)
            assert derived.rank(None, zone, count) == fresh.rank(None, zone, count)


def test_shortlists_are_shared_only_while_the_same_regions_are_usable():
    import numpy as np

    from skymesh.edgerank import EdgeIndex

    index = EdgeIndex(REGIONS, np.full((len(REGIONS), len(REGIONS)), np.nan))
    index.rank(LONDON, "eu", 3)
    nodes, unusable = [r.nodes for r in REGIONS], [r.unusable for r in REGIONS]
    loads_moved = [tuple(EdgeNode(n.node_id, n.address, 9) for n in ns) for ns in nodes]
    same = index.with_state(loads_moved, unusable, index.measured)
    assert same.placements is index.placements and same.measured_rows is index.measured_rows
    rtts = index.measured.copy()
    rtts[0, 2] = 3.0  # lon -> ams measured
    moved = index.with_state(nodes, unusable, rtts)
    assert moved.placements is index.placements  # shortlists are by geography alone
    assert moved.measured_rows is not index.measured_rows
    assert "as measured from lon (3 ms)" in moved.rank(LONDON, "eu", 3)[1].reason
    drained = ["drained" if r.id == "lon" else "" for r in REGIONS]
    after = index.with_state(nodes, drained, index.measured)
    assert after.placements is not index.placements
    assert [e.region for e in after.rank(LONDON, "eu", 3)] == ["ams", "fra"]
    with pytest.raises(ValueError, match="7 regions"):
        index.with_state(nodes[:2], unusable, None)


def test_a_region_named_keeps_the_ranking_to_it():
    for where in (LONDON, JAKARTA, None):
        assert [e.region for e in rank(REGIONS, where, region="sin", count=3)] == ["sin"]
        assert rank(REGIONS, where, zone="eu", region="sin") == []
        assert rank(REGIONS, where, region="nowhere") == []
    far, near = rank(REGIONS, LONDON, region="syd")[0], rank(REGIONS, LONDON)[0]
    assert far.distance_km > 15_000 and near.region == "lon"
