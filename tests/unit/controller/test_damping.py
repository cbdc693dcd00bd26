"""Flap damping of links and the cost dead band."""

from __future__ import annotations

import pytest

from controller.damping import DampingSettings, FlapDamper
from controller.routing import Link, build_graph, same_within
from controller.topology import Relay, Topology

LINK = ("aa", "bb")


def flap(damper: FlapDamper, times: list[float]) -> None:
    usable = True
    damper.observe(LINK, usable, times[0])
    for t in times[1:]:
        usable = not usable
        damper.observe(LINK, usable, t)


def test_a_steady_link_is_never_suppressed():
    d = FlapDamper()
    for t in range(100):
        d.observe(LINK, True, float(t))
    assert not d.suppressed(LINK, 100.0)


def test_two_flaps_are_tolerated_three_quick_ones_suppress():
    d = FlapDamper()
    flap(d, [0.0, 1.0, 2.0])
    assert not d.suppressed(LINK, 2.0)
    flap(d, [3.0, 4.0])  # first call re-observes the current state: one more flap
    assert d.suppressed(LINK, 4.0)


def test_suppression_ends_when_the_penalty_decays_below_reuse():
    s = DampingSettings()
    d = FlapDamper(s)
    flap(d, [0.0, 0.1, 0.2, 0.3])
    assert d.suppressed(LINK, 0.3)
    # about 3000 decays below 750 after two half-lives
    assert d.suppressed(LINK, 0.3 + s.half_life_s)
    assert not d.suppressed(LINK, 0.3 + 2.2 * s.half_life_s)


def test_slow_flaps_decay_in_between_and_never_suppress():
    d = FlapDamper()
    flap(d, [t * 40.0 for t in range(20)])  # one flap every 40 s, half-life 15 s
    assert not d.suppressed(LINK, 800.0)


def test_forget_drops_a_regions_links():
    d = FlapDamper()
    flap(d, [0.0, 0.1, 0.2, 0.3])
    d.forget("bb")
    assert not d.suppressed(LINK, 0.4)


UP = {"dst": "bb", "rtt_ms": 10.0, "min_rtt_ms": 9.0, "jitter_ms": 0.1, "loss": 0.0,
      "samples": 10, "lost": 0, "state": "up"}
DOWN = {**UP, "state": "down", "loss": 1.0}
UNKNOWN = {**UP, "state": "unknown", "samples": 0}


def reported(samples: list[dict]) -> Topology:
    """aa's link to bb after these reports, one a second from t=0."""
    topo = Topology(["aa", "bb"])
    for r in ("aa", "bb"):
        topo.add_relay(Relay(r, r, "127.0.0.1:1", 0.0))
    for i, sample in enumerate(samples):
        topo.report("aa", [sample], float(i))
    return topo


def test_topology_leaves_suppressed_links_out_of_routing():
    topo = reported([UP, DOWN, UP, DOWN, UP])
    assert topo.links[LINK].state == "up"
    assert topo.usable_links(4.0) == []
    assert topo.suppressed_links(4.0) == [LINK]
    assert [x.dst for x in topo.usable_links(200.0)] == ["bb"]


def test_coming_up_is_no_flap_and_one_outage_after_it_is_tolerated():
    """A relay stalled at start-up for long enough that its peers call it down once must not
    have its links damped: unknown to up is not a flap."""
    topo = reported([UNKNOWN, UP, DOWN, UP])
    assert topo.suppressed_links(3.0) == []
    assert [x.dst for x in topo.usable_links(3.0)] == ["bb"]


@pytest.mark.parametrize(("new", "same"),
                         [(10.6, True), (10.4, True), (10.8, False), (10.2, False)])
def test_dead_band(new, same):
    a = build_graph(["aa", "bb"], [Link("aa", "bb", 20.0)])
    b = build_graph(["aa", "bb"], [Link("aa", "bb", 2 * (new - 0.5))])
    # costs: 10.5 vs `new`; 2% of 10.5 is 0.21
    assert same_within(b, a, 0.02) is same


@pytest.mark.parametrize(("new", "same"), [(10.5 + 0.9, True), (10.5 - 0.9, True),
                                           (10.5 + 1.1, False), (10.5 - 1.1, False)])
def test_dead_band_floor_in_ms(new, same):
    a = build_graph(["aa", "bb"], [Link("aa", "bb", 20.0)])
    b = build_graph(["aa", "bb"], [Link("aa", "bb", 2 * (new - 0.5))])
    assert same_within(b, a, 0.02, floor_ms=1.0) is same


def test_dead_band_sees_links_and_regions_come_and_go():
    a = build_graph(["aa", "bb"], [Link("aa", "bb", 20.0)])
    assert not same_within(build_graph(["aa", "bb"], []), a, 0.02)
    assert not same_within(build_graph(["aa", "bb", "cc"], [Link("aa", "bb", 20.0)]), a, 0.02)
    assert not same_within(build_graph(["aa", "bb"], [Link("bb", "aa", 20.0)]), a, 0.02)
