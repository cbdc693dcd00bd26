"""sdk/edges.py's choice of edge: the edge in use is kept unless another is at least 10 ms
and a third faster over recent measurements (Tailscale's rule); the fastest when none is in
use."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdk.edges import keep_or_switch


def test_the_fastest_when_no_edge_is_in_use_or_it_was_not_measured():
    assert keep_or_switch(None, {"a:1": [30.0, 25.0], "b:1": [20.0]}) == "b:1"
    assert keep_or_switch("gone:1", {"a:1": [30.0], "b:1": [20.0]}) == "b:1"


@pytest.mark.parametrize(("mine", "theirs", "switch"), [
    (30.0, 19.0, True),    # 11 ms and 37% faster
    (30.0, 21.0, False),   # 9 ms: not enough
    (100.0, 70.0, False),  # 30 ms but 30%: not a third
    (100.0, 66.0, True),   # 34 ms and 34%
    (12.0, 1.0, True),
    (9.0, 0.5, False),     # a third faster, but under 10 ms
])
def test_the_edge_in_use_is_kept_unless_another_is_10_ms_and_a_third_faster(mine, theirs,
                                                                            switch):
    got = keep_or_switch("cur:1", {"cur:1": [mine + 5, mine], "new:1": [theirs, theirs + 3]})
    assert got == ("new:1" if switch else "cur:1")


def test_nothing_measured_keeps_the_edge_in_use():
    assert keep_or_switch("cur:1", {"cur:1": [], "new:1": []}) == "cur:1"
    with pytest.raises(ValueError):
        keep_or_switch(None, {})


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]),
                       st.lists(st.floats(0.1, 500), min_size=1, max_size=4), min_size=1),
       st.sampled_from(["a", "b", "c", "d", None]))
def test_a_switch_is_always_to_a_much_faster_edge(recent, current):
    got = keep_or_switch(current, recent)
    assert got in recent or got == current
    if current in recent and got != current:
        assert min(recent[current]) - min(recent[got]) >= 10


# -- the shipped fallback, when no resolver answers ----------------------------------------

FALLBACK_YAML = """regions:
  - {id: lon, lat: 51.51, lon: -0.13, zones: [global], edges: ["127.0.0.1:4001"]}
  - {id: fra, lat: 50.11, lon: 8.68, zones: [global, eu], edges: ["127.0.0.1:4002",
     "127.0.0.1:4012"]}
  - {id: jkt, lat: -6.21, lon: 106.85, zones: [global], edges: ["127.0.0.1:4003"]}
"""


def _token(zone: str) -> str:
    from skymesh.token import generate_key, issue
    return issue("app", generate_key(), "ch", "u", zone, ["join"], 600)


def test_the_fallback_ranks_the_shipped_edges_by_the_local_database(tmp_path):
    from geoipdb import build_city_db

    from sdk.edges import load_fallback

    (tmp_path / "edges.yaml").write_text(FALLBACK_YAML)
    db = build_city_db(tmp_path / "city.mmdb")
    fb = load_fallback(tmp_path / "edges.yaml", str(db))
    jakarta = fb.candidates(_token("global"), "36.70.1.1", count=3)
    assert [c.region for c in jakarta][:1] == ["jkt"]
    assert all(c.reason.startswith("fallback") for c in jakarta)
    # the token's zone bounds it: an eu token gets fra's two nodes only, wherever it is
    assert {(c.region, c.port) for c in fb.candidates(_token("eu"), "36.70.1.1")} == {
        ("fra", 4002), ("fra", 4012)}
    # no database, or an address it cannot place: the shipped edges still, unranked by place
    assert len(load_fallback(tmp_path / "edges.yaml").candidates(_token("global"))) == 4


@pytest.mark.parametrize(("text", "needle"), [
    ("regions: []", "regions: a list"),
    ("nope: 1", "regions: a list"),
    ("regions:\n  - {id: x, lat: 1, lon: 2}", "regions[0]"),
    ("regions:\n  - {id: x, lat: north, lon: 2, edges: [a:1]}", "regions[0]"),
    ("regions:\n  - {id: x, lat: 1, lon: 2, edges: [nope]}", "regions[0]"),
    ("regions: [", "edges.yaml"),
])
def test_a_bad_fallback_file_names_the_file_and_field(tmp_path, text, needle):
    from sdk.edges import load_fallback

    (tmp_path / "edges.yaml").write_text(text)
    with pytest.raises(ValueError, match="edges.yaml") as e:
        load_fallback(tmp_path / "edges.yaml")
    assert needle in str(e.value)


def test_with_no_resolver_answering_the_finder_falls_back(tmp_path):
    import asyncio
    import socket

    from sdk.edges import EdgeFinder, load_fallback
    from sdk.errors import ControllerUnavailable

    with socket.socket() as s:  # a port nothing listens on: the resolver is down
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    (tmp_path / "edges.yaml").write_text(FALLBACK_YAML)
    finder = EdgeFinder(_token("eu"), str(tmp_path / "ca.pem"), [dead], None,
                        fallback=load_fallback(tmp_path / "edges.yaml"))
    assert {c.region for c in finder.ranked()} == {"fra"}
    assert finder.last_source == "fallback"
    with pytest.raises(ControllerUnavailable, match="no resolver answered"):
        EdgeFinder(_token("eu"), "ca.pem", [dead]).ranked()
    # edges that complete no handshake (here: no CA to check them with) are left in the
    # ranked order, none raced
    (tmp_path / "ca.pem").write_text("")
    order, raced = asyncio.run(finder.find())
    assert raced == [] and [c.port for c in order] in ([4002, 4012], [4012, 4002])


def test_pick_takes_the_fastest_but_lets_the_ranking_break_near_ties():
    from sdk.edges import pick

    ranked = ["a:1", "b:1", "c:1"]
    assert pick(ranked, {"a:1": 40.0, "b:1": 20.0, "c:1": 30.0}) == "b:1"
    assert pick(ranked, {"a:1": 24.5, "b:1": 20.0}) == "a:1"  # within 5 ms: ranked first
    assert pick(ranked, {"a:1": 26.0, "b:1": 20.0}) == "b:1"
    assert pick(ranked, {"a:1": 204.0, "b:1": 200.0}) == "a:1"  # within 5%
    assert pick(ranked, {"b:1": 9.0, "x:1": 1.0}) == "x:1"  # not ranked, but fastest
    assert pick(ranked, {}) is None
