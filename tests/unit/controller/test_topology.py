"""The controller's view of the mesh: relays, link reports, expiry and what routing may use."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.routing import Link, loss_bound
from controller.topology import (
    DEGRADED,
    DOWN,
    STATES,
    UNKNOWN,
    UP,
    LinkRecord,
    Relay,
    Topology,
    check_sample,
)

REGIONS = ["ams", "fra", "nyc", "sin"]


def relay(region: str, at: float = 0.0) -> Relay:
    return Relay(region, f"{region}-1", "127.0.0.1:7000", at)


def sample(dst: str, **changes) -> dict:
    s = {"dst": dst, "rtt_ms": 20.0, "min_rtt_ms": 18.0, "jitter_ms": 1.0, "loss": 0.0,
         "samples": 10, "lost": 0, "state": UP}
    s.update(changes)
    return s


@pytest.fixture
def topo() -> Topology:
    t = Topology(REGIONS, stale_after_s=5.0, settle_samples=8)
    for r in REGIONS:
        t.add_relay(relay(r))
    return t


# --- check_sample ----------------------------------------------------------------------------


def test_valid_sample_passes():
    assert check_sample("ams", sample("fra"), frozenset(REGIONS)) is None


BAD_SAMPLES = {
    "nan rtt": (sample("fra", rtt_ms=math.nan), "rtt_ms"),
    "negative rtt": (sample("fra", rtt_ms=-1.0), "rtt_ms"),
    "zero rtt": (sample("fra", rtt_ms=0.0), "rtt_ms"),
    "inf rtt": (sample("fra", rtt_ms=math.inf), "rtt_ms"),
    "-inf rtt": (sample("fra", rtt_ms=-math.inf), "rtt_ms"),
    "string rtt": (sample("fra", rtt_ms="20"), "rtt_ms"),
    "bool rtt": (sample("fra", rtt_ms=True), "rtt_ms"),
    "missing rtt": ({k: v for k, v in sample("fra").items() if k != "rtt_ms"}, "rtt_ms"),
    "degraded nan rtt": (sample("fra", state=DEGRADED, rtt_ms=math.nan), "rtt_ms"),
    "nan jitter": (sample("fra", jitter_ms=math.nan), "jitter_ms"),
    "negative jitter": (sample("fra", jitter_ms=-0.1), "jitter_ms"),
    "nan min rtt": (sample("fra", min_rtt_ms=math.nan), "min_rtt_ms"),
    "negative min rtt": (sample("fra", min_rtt_ms=-3.0), "min_rtt_ms"),
    "loss above one": (sample("fra", loss=1.01), "loss"),
    "negative loss": (sample("fra", loss=-0.01), "loss"),
    "nan loss": (sample("fra", loss=math.nan), "loss"),
    "inf loss": (sample("fra", loss=math.inf), "loss"),
    "down with bad loss": (sample("fra", state=DOWN, loss=2.0), "loss"),
    # (found by tests/unit/fuzz) a link not measured yet, or down, was kept with NaN numbers
    "unknown nan rtt": (sample("fra", state=UNKNOWN, rtt_ms=math.nan), "rtt_ms"),
    "down inf rtt": (sample("fra", state=DOWN, rtt_ms=math.inf), "rtt_ms"),
    "down negative rtt": (sample("fra", state=DOWN, rtt_ms=-1.0), "rtt_ms"),
    "unknown nan jitter": (sample("fra", state=UNKNOWN, rtt_ms=0.0, jitter_ms=math.nan),
                           "jitter_ms"),
    "down nan min rtt": (sample("fra", state=DOWN, min_rtt_ms=math.nan), "min_rtt_ms"),
    "unknown region": (sample("lhr"), "unknown region 'lhr'"),
    "no region": ({k: v for k, v in sample("fra").items() if k != "dst"}, "unknown region"),
    "self link": (sample("ams"), "itself"),
    "unknown state": (sample("fra", state="flapping"), "unknown state 'flapping'"),
    "no state": ({k: v for k, v in sample("fra").items() if k != "state"}, "unknown state"),
}


@pytest.mark.parametrize("bad, words", BAD_SAMPLES.values(), ids=BAD_SAMPLES.keys())
def test_bad_sample_has_a_problem(bad, words):
    problem = check_sample("ams", bad, frozenset(REGIONS))
    assert problem is not None
    assert problem.startswith(f"link ams->{bad.get('dst')}:")
    assert words in problem


@pytest.mark.parametrize("bad, words", BAD_SAMPLES.values(), ids=BAD_SAMPLES.keys())
def test_bad_sample_is_rejected_counted_and_not_stored(topo, bad, words):
    problems = topo.report("ams", [bad, sample("nyc")], now=1.0)
    assert len(problems) == 1 and words in problems[0]
    assert topo.rejected_samples == 1
    assert set(topo.links) == {("ams", "nyc")}  # the good sample of the report is kept


def test_rejections_accumulate(topo):
    topo.report("ams", [sample("fra", rtt_ms=-1.0), sample("lhr")], now=1.0)
    topo.report("fra", [sample("fra")], now=2.0)
    assert topo.rejected_samples == 3
    assert topo.links == {}


def test_down_and_unknown_links_need_no_rtt():
    # a relay with no reply on a link reports rtt 0 for it (see relay/node.py)
    regions = frozenset(REGIONS)
    for state in (DOWN, UNKNOWN):
        assert check_sample("ams", sample("fra", state=state, rtt_ms=0.0, min_rtt_ms=0.0),
                            regions) is None


def test_states_are_the_probe_states():
    assert set(STATES) == {UNKNOWN, UP, DEGRADED, DOWN}


# --- report ----------------------------------------------------------------------------------


def test_report_stores_a_link_record(topo):
    assert topo.report("ams", [sample("fra", samples=12, lost=1, loss=0.05)], now=7.5) == []
    rec = topo.links[("ams", "fra")]
    assert rec == LinkRecord("ams", "fra", 20.0, 18.0, 1.0, 0.05, 12, 1, UP, 7.5)
    assert ("fra", "ams") not in topo.links  # links are directed


def test_routing_pays_for_the_loss_bound_over_the_window(topo):
    topo.report("ams", [sample("fra", loss=0.02, window=50), sample("nyc", loss=0.02)], now=1.0)
    links = {(x.src, x.dst): x for x in topo.usable_links(1.0)}
    assert topo.links[("ams", "fra")].window == 50
    assert links[("ams", "fra")].loss == pytest.approx(loss_bound(0.02, 50))
    assert links[("ams", "fra")].loss == 0.0  # one probe in 50
    assert links[("ams", "nyc")].loss == 0.02  # a relay that does not say its window


def test_report_converts_numbers(topo):
    assert topo.report("ams", [sample("fra", rtt_ms=20, min_rtt_ms=0, jitter_ms=0, loss=0)],
                       now=1.0) == []
    rec = topo.links[("ams", "fra")]
    assert all(isinstance(x, float) for x in (rec.rtt_ms, rec.min_rtt_ms, rec.jitter_ms, rec.loss))
    assert (rec.rtt_ms, rec.min_rtt_ms, rec.latency_ms) == (20.0, 0.0, 20.0)


def test_report_without_min_rtt(topo):
    s = {k: v for k, v in sample("fra").items() if k != "min_rtt_ms"}
    assert topo.report("ams", [s], now=1.0) == []
    assert topo.links[("ams", "fra")].min_rtt_ms == 0.0
    assert topo.links[("ams", "fra")].latency_ms == 20.0


def test_newer_report_replaces_the_record(topo):
    topo.report("ams", [sample("fra", rtt_ms=30.0)], now=1.0)
    topo.report("ams", [sample("fra", rtt_ms=40.0, state=DEGRADED)], now=2.0)
    rec = topo.links[("ams", "fra")]
    assert (rec.rtt_ms, rec.state, rec.received_at) == (40.0, DEGRADED, 2.0)
    assert len(topo.links) == 1


def test_samples_for_peers_not_connected_are_held_until_they_connect(topo):
    topo.remove_relay("sin")
    problems = topo.report("ams", [sample("sin"), sample("fra")], now=1.0)
    assert problems == []
    assert topo.rejected_samples == 0
    assert set(topo.links) == {("ams", "fra")}  # only links between connected relays show
    assert topo.counts()[1] == 1
    # a controller that has just begun to lead hears ams before sin reconnects: the link
    # is measured as soon as sin is back, not at ams's next full report
    topo.add_relay(relay("sin"))
    assert ("ams", "sin") in topo.links


def test_empty_report(topo):
    assert topo.report("ams", [], now=1.0) == []
    assert topo.links == {}


# --- relays ----------------------------------------------------------------------------------


def fill(topo: Topology, now: float = 1.0) -> None:
    for a in REGIONS:
        topo.report(a, [sample(b) for b in REGIONS if b != a], now=now)


def test_remove_relay_drops_links_both_ways(topo):
    fill(topo)
    assert len(topo.links) == 12
    topo.remove_relay("fra")
    assert "fra" not in topo.relays
    assert all("fra" not in key for key in topo.links)
    assert len(topo.links) == 6


def test_remove_unknown_relay_is_harmless(topo):
    fill(topo)
    topo.remove_relay("lhr")
    assert len(topo.links) == 12 and len(topo.relays) == 4


def test_add_relay_again_replaces_it_and_forgets_its_links(topo):
    fill(topo)
    topo.add_relay(Relay("fra", "fra-2", "127.0.0.2:7000", 10.0))
    assert topo.relays["fra"].node_id == "fra-2"
    assert all("fra" not in key for key in topo.links)
    assert len(topo.links) == 6


# --- expiry ----------------------------------------------------------------------------------


def test_expire_drops_links_older_than_stale_after(topo):
    topo.report("ams", [sample("fra")], now=10.0)
    topo.report("fra", [sample("ams")], now=12.0)
    assert topo.expire(15.0) == []  # exactly stale_after_s old is still fresh
    assert topo.expire(15.5) == [("ams", "fra")]
    assert set(topo.links) == {("fra", "ams")}
    assert topo.expire(17.5) == [("fra", "ams")]
    assert topo.links == {}


def test_fresh_report_saves_a_link_from_expiry(topo):
    topo.report("ams", [sample("fra")], now=0.0)
    topo.report("ams", [sample("fra")], now=4.0)
    assert topo.expire(8.0) == []
    assert ("ams", "fra") in topo.links


# --- usable links ----------------------------------------------------------------------------


def test_usable_links_use_min_rtt_else_rtt_and_skip_down_and_unknown(topo):
    topo.report("ams", [
        sample("fra", rtt_ms=30.0, min_rtt_ms=12.0),
        sample("nyc", rtt_ms=80.0, min_rtt_ms=0.0, loss=0.1, state=DEGRADED),
        sample("sin", state=DOWN, rtt_ms=0.0, min_rtt_ms=0.0, loss=1.0),
    ], now=1.0)
    topo.report("fra", [sample("ams", state=UNKNOWN, rtt_ms=0.0, min_rtt_ms=0.0)], now=1.0)
    assert sorted(topo.usable_links(0.0), key=lambda x: x.dst) == [
        Link("ams", "fra", 12.0, 0.0),
        Link("ams", "nyc", 80.0, 0.1),
    ]


def test_latency_prefers_positive_min_rtt():
    rec = LinkRecord("a", "b", 30.0, 10.0, 0.0, 0.0, 5, 0, UP, 0.0)
    assert rec.latency_ms == 10.0
    assert LinkRecord("a", "b", 30.0, 0.0, 0.0, 0.0, 5, 0, UP, 0.0).latency_ms == 30.0


def test_usable_links_only_have_sane_values_after_bad_reports(topo):
    topo.report("ams", [sample(d, rtt_ms=r) for d, r in
                        (("fra", math.nan), ("nyc", -5.0), ("sin", math.inf))], now=1.0)
    assert topo.usable_links(0.0) == []
    assert topo.rejected_samples == 3


# --- measured / settled / counts -------------------------------------------------------------


def test_settled_needs_enough_samples_unless_down(topo):
    settled = topo.settled
    assert not settled(None)
    rec = LinkRecord("ams", "fra", 20.0, 18.0, 1.0, 0.0, 7, 0, UP, 0.0)
    assert not settled(rec)
    assert settled(LinkRecord("ams", "fra", 20.0, 18.0, 1.0, 0.0, 8, 0, UP, 0.0))
    assert settled(LinkRecord("ams", "fra", 20.0, 18.0, 1.0, 0.0, 8, 0, DEGRADED, 0.0))
    assert settled(LinkRecord("ams", "fra", 0.0, 0.0, 0.0, 1.0, 0, 3, DOWN, 0.0))
    assert not settled(LinkRecord("ams", "fra", 20.0, 0.0, 0.0, 0.0, 100, 0, UNKNOWN, 0.0))


def test_measured_once_every_peer_link_is_settled(topo):
    assert not topo.measured("ams")
    topo.report("ams", [sample("fra"), sample("nyc")], now=1.0)
    assert not topo.measured("ams")  # no sample for sin yet
    topo.report("ams", [sample("sin", samples=3)], now=1.0)
    assert not topo.measured("ams")  # too few replies on ams->sin
    topo.report("ams", [sample("sin", state=DOWN, rtt_ms=0.0, samples=3, lost=5)], now=2.0)
    assert topo.measured("ams")
    assert not topo.measured("fra")  # measurement is per direction


def test_measured_ignores_peers_that_left(topo):
    topo.report("ams", [sample("fra"), sample("nyc")], now=1.0)
    topo.remove_relay("sin")
    assert topo.measured("ams")


def test_lone_relay_is_measured():
    t = Topology(REGIONS)
    t.add_relay(relay("ams"))
    assert t.measured("ams")


def test_settle_samples_setting():
    t = Topology(["a", "b"], settle_samples=2)
    t.add_relay(relay("a"))
    t.add_relay(relay("b"))
    t.report("a", [sample("b", samples=2)], now=0.0)
    assert t.measured("a")


def test_counts(topo):
    assert topo.counts() == (0, 0, 12)
    topo.report("ams", [
        sample("fra"),
        sample("nyc", state=DEGRADED, samples=2),
        sample("sin", state=DOWN, rtt_ms=0.0),
    ], now=1.0)
    topo.report("fra", [sample("ams", state=UNKNOWN, rtt_ms=0.0, samples=0)], now=1.0)
    assert topo.counts() == (2, 2, 12)
    topo.remove_relay("sin")
    assert topo.counts() == (2, 1, 6)


def test_counts_without_relays():
    assert Topology(REGIONS).counts() == (0, 0, 0)


# --- properties ------------------------------------------------------------------------------

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 1.5, -1.0]),
)
protobuf_like = st.fixed_dictionaries({
    "dst": st.sampled_from(REGIONS + ["lhr", ""]),
    "rtt_ms": numbers,
    "min_rtt_ms": numbers,
    "jitter_ms": numbers,
    "loss": numbers,
    "samples": st.integers(0, 1000),
    "lost": st.integers(0, 1000),
    "state": st.sampled_from([*STATES, "?", ""]),
})


@settings(max_examples=200, deadline=None)
@given(st.lists(protobuf_like, max_size=12), st.sampled_from(REGIONS))
def test_reports_never_raise_and_keep_only_sane_links(samples, src):
    # the shape the gRPC shell builds from a LinkReport: every field present, numbers numeric
    t = Topology(REGIONS)
    for r in REGIONS:
        t.add_relay(relay(r))
    problems = t.report(src, samples, now=3.0)
    assert all(isinstance(p, str) and p for p in problems)
    assert t.rejected_samples == len(problems)
    accepted = [s for s in samples if check_sample(src, s, frozenset(REGIONS)) is None]
    assert len(accepted) + len(problems) == len(samples)
    assert {(src, s["dst"]) for s in accepted} == set(t.links)
    for rec in t.links.values():
        assert rec.src == src and rec.dst in REGIONS and rec.dst != src
        assert rec.state in STATES
        assert 0.0 <= rec.loss <= 1.0
        assert rec.received_at == 3.0
    for link in t.usable_links(0.0):
        assert math.isfinite(link.rtt_ms) and link.rtt_ms > 0
        assert 0.0 <= link.loss <= 1.0


def test_a_region_is_unreachable_when_two_other_relays_report_it_down(topo):
    topo.report("ams", [sample("fra", state=DOWN)], 1.0)
    topo.report("fra", [sample("ams", state=DOWN)], 1.0)
    assert topo.unreachable() == frozenset()  # one cut link: each end reports the other
    topo.report("nyc", [sample("fra", state=DOWN)], 1.0)
    assert topo.unreachable() == {"fra"}
    topo.report("nyc", [sample("fra")], 2.0)  # back up at one of them
    assert topo.unreachable() == frozenset()
    assert topo.unreachable(quorum=1) == {"ams", "fra"}
