"""Reports by change (relay/reporting.py) and the controller session's side of protocol 2
(relay/control.py): which links each report holds, when full reports go out, the report's send
time, the settings the peer list carries, and incremental peer lists."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.control import ControlSession
from relay.fabric import Fabric
from relay.probe import LinkStats
from relay.reporting import LinkView, ReportFilter, ReportSettings, view
from relay.scheduler import ProbeScheduler, RelayEvent, RelaySettings
from relay.tables import RouteTables
from relay.transport import Chaos
from skymesh.linkstate import (
    DOWN,
    LINK,
    PROTOCOL_BY_CHANGE,
    PROTOCOL_RESYNC,
    PROTOCOL_TABLE_CHANGES,
    UNKNOWN,
    UP,
)
from skymesh.v1 import relay_pb2

SETTLED = LINK.settle_samples + 2
EPOCH = 1.7e9  # the wall clock at virtual time 0


def up(latency: float = 20.0, loss: float = 0.0, samples: int = SETTLED) -> LinkView:
    return LinkView(UP, latency, loss, samples)


# -- the filter --------------------------------------------------------------------------------


def test_the_first_report_is_full_and_full_ones_come_every_full_interval():
    f = ReportFilter(ReportSettings(full_report_interval_s=10.0))
    assert f.full_due(0.0)
    assert f.select({"ams": up(), "par": up()}, 0.0, full=True) == ["ams", "par"]
    assert not f.full_due(9.0)
    assert not f.full_due(9.4, within=0.5) and f.full_due(9.5, within=0.5)
    assert f.full_due(10.0)
    f.start()  # a new session: the controller may know nothing
    assert f.full_due(0.5) and f.reported == {}


def test_unmoved_links_are_left_out_and_a_report_may_hold_none():
    f = ReportFilter()
    links = {"ams": up(), "par": up(30.0)}
    f.select(links, 0.0, full=True)
    assert f.select(links, 1.0, full=False) == []
    assert f.select({}, 2.0, full=False) == []


def test_a_link_never_reported_is_reported():
    f = ReportFilter()
    f.select({"ams": up()}, 0.0, full=True)
    assert f.select({"ams": up(), "par": up()}, 1.0, full=False) == ["par"]
    assert f.select({"ams": up(), "par": up()}, 2.0, full=False) == []


@pytest.mark.parametrize(("before", "after"), [(UP, DOWN), (DOWN, UP), (UNKNOWN, UP),
                                               (UP, "degraded")])
def test_a_state_change_is_reported_however_little_the_values_moved(before, after):
    f = ReportFilter()
    f.select({"ams": LinkView(before, 20.0, 0.0, SETTLED)}, 0.0, full=True)
    assert f.select({"ams": LinkView(after, 20.0, 0.0, SETTLED)}, 1.0, full=False) == ["ams"]
    assert f.reported["ams"].state == after


def test_latency_is_reported_when_it_moved_beyond_both_thresholds():
    f = ReportFilter(ReportSettings(rtt_fraction=0.01, rtt_ms=0.5))
    f.select({"near": up(10.0), "far": up(200.0)}, 0.0, full=True)
    # near: 0.8 ms is 8% but only just over 0.5 ms; 0.4 ms is 4% but under 0.5 ms
    assert f.select({"near": up(10.4), "far": up(200.0)}, 1.0, full=False) == []
    assert f.select({"near": up(10.8), "far": up(200.0)}, 2.0, full=False) == ["near"]
    # far: 1.5 ms is over 0.5 ms but under 1% (2 ms); 2.5 ms is over both
    assert f.select({"near": up(10.8), "far": up(198.5)}, 3.0, full=False) == []
    assert f.select({"near": up(10.8), "far": up(202.5)}, 4.0, full=False) == ["far"]
    # measured against the value last reported, not the last one seen: creeping counts
    assert f.select({"near": up(11.2), "far": up(202.5)}, 5.0, full=False) == []
    assert f.select({"near": up(11.4), "far": up(202.5)}, 6.0, full=False) == ["near"]


def test_loss_is_reported_when_it_moved_beyond_its_threshold_either_way():
    f = ReportFilter(ReportSettings(loss=0.005))
    f.select({"ams": up(loss=0.02)}, 0.0, full=True)
    assert f.select({"ams": up(loss=0.024)}, 1.0, full=False) == []
    assert f.select({"ams": up(loss=0.026)}, 2.0, full=False) == ["ams"]
    assert f.select({"ams": up(loss=0.02)}, 3.0, full=False) == ["ams"]


def test_a_link_still_being_measured_is_reported_while_its_samples_grow():
    f = ReportFilter(ReportSettings(settle_samples=8))
    f.select({"ams": up(samples=1)}, 0.0, full=True)
    for n in range(2, 9):
        assert f.select({"ams": up(samples=n)}, n, full=False) == ["ams"]
    assert f.select({"ams": up(samples=8)}, 10.0, full=False) == []  # nothing new
    # reported at 8 samples: settled, only moves count from now on
    assert f.select({"ams": up(samples=9)}, 11.0, full=False) == []


def test_a_full_report_holds_every_link_measured_and_forgets_the_others():
    f = ReportFilter()
    f.select({"ams": up(), "par": up()}, 0.0, full=True)
    assert f.select({"ams": up()}, 10.0, full=True) == ["ams"]
    assert set(f.reported) == {"ams"}
    # par, measured again later, is news to the controller, which let it go
    assert f.select({"ams": up(), "par": up()}, 11.0, full=False) == ["par"]


def test_links_count_as_measured_since_the_last_full_report():
    f = ReportFilter(ReportSettings(full_report_interval_s=10.0))
    assert f.since(100.0, first_s=60.0) == 40.0  # before the first: the sampling period
    f.select({}, 100.0, full=True)
    assert f.since(110.0, 60.0) == 100.0
    assert f.since(103.0, 60.0) == 93.0  # an extra full report does not shrink it


def test_the_latency_is_the_minimum_rtt_or_else_the_smoothed_one():
    stats = LinkStats()
    assert view(stats) == LinkView(UNKNOWN, 0.0, 0.0, 0)
    stats.sent(1, 0.0, sample=False)  # a liveness probe: no minimum, a smoothed RTT
    stats.received(1, 0.03)
    assert view(stats).latency_ms == pytest.approx(30.0)
    stats.sent(2, 1.0)
    stats.received(2, 1.02)
    assert view(stats).latency_ms == pytest.approx(20.0) and view(stats).samples == 1


latency = st.floats(0.0, 500.0)


@settings(max_examples=200, deadline=None)
@given(last=latency, now=latency, last_loss=st.floats(0, 1), loss=st.floats(0, 1),
       fraction=st.floats(0.001, 0.2), ms=st.floats(0.01, 5.0), loss_step=st.floats(0.001, 0.1),
       state=st.sampled_from([UP, DOWN, UNKNOWN, "degraded"]),
       samples=st.integers(0, 20), more=st.integers(0, 3))
def test_a_link_is_reported_exactly_when_a_rule_says_so(last, now, last_loss, loss, fraction,
                                                         ms, loss_step, state, samples, more):
    settle = 8
    f = ReportFilter(ReportSettings(rtt_fraction=fraction, rtt_ms=ms, loss=loss_step,
                                    settle_samples=settle))
    f.select({"x": LinkView(UP, last, last_loss, samples)}, 0.0, full=True)
    link = LinkView(state, now, loss, samples + more)
    change = abs(now - last)
    expected = (state != UP or (samples < settle and more > 0)
                or (change > fraction * last and change > ms)
                or abs(loss - last_loss) > loss_step)
    assert (f.select({"x": link}, 1.0, full=False) == ["x"]) == expected
    # and what was reported is the new baseline
    assert f.reported["x"] == (link if expected else LinkView(UP, last, last_loss, samples))


# -- the controller session --------------------------------------------------------------------


class Outbox(list):
    def put_nowait(self, msg: relay_pb2.RelayMessage) -> None:
        self.append(msg)

    def reports(self) -> list[relay_pb2.LinkReport]:
        return [m.report for m in self if m.WhichOneof("msg") == "report"]


class Rig:
    """A relay fra's control session around a scheduler, on a virtual clock; its links'
    statistics are fed directly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.counters: Counter[str] = Counter()
        tables = RouteTables("fra")
        self.scheduler = ProbeScheduler("fra", RelaySettings(), tables,
                                        lambda data, addr, region: None, random.Random(1),
                                        self.counters)
        fabric = Fabric("fra", tables, lambda hop, data: True, self.clock, self.counters)
        self.session = ControlSession("fra", "fra-1", "controller", RelaySettings(),
                                      self.scheduler, fabric, Chaos(), self.counters,
                                      random.Random(1), clock=self.clock,
                                      wall=lambda: EPOCH + self.now)
        self.scheduler.on_links_changed = self.session.links_changed
        self.outbox = Outbox()
        self.seq = 0

    def clock(self) -> float:
        return self.now

    def peers(self, *regions: str, near: tuple[str, ...] = (), **fields) -> None:
        self.session.on_control(relay_pb2.ControllerMessage(peers=relay_pb2.PeerList(
            peers=[relay_pb2.Peer(region=r, probe_addr=f"10.0.0.{i + 1}:9000",
                                  near=r in near)
                   for i, r in enumerate(regions)], **fields)))

    def feed(self, region: str, rtt_ms: float, n: int = 1) -> None:
        """`n` RTT samples of a link."""
        stats = self.scheduler.stats[region]
        for _ in range(n):
            self.seq += 1
            stats.sent(self.seq, self.now)
            stats.received(self.seq, self.now + rtt_ms / 1000)

    def start(self) -> None:
        self.session.started(self.outbox)

    def round(self, dt: float = 1.0) -> relay_pb2.LinkReport:
        self.now += dt
        self.session.report_round()
        return self.outbox.reports()[-1]


def dsts(report: relay_pb2.LinkReport) -> list[str]:
    return [link.dst for link in report.links]


def test_the_hello_says_protocol_4():
    rig = Rig()
    hello = rig.session.hello("10.0.0.9:9000").hello
    assert hello.protocol == PROTOCOL_RESYNC == 4 > PROTOCOL_TABLE_CHANGES > PROTOCOL_BY_CHANGE


def test_a_session_carried_over_to_a_new_leader_sends_its_state_again():
    rig = Rig()
    rig.peers("ams", "par")
    rig.feed("ams", 20.0, SETTLED)
    rig.feed("par", 30.0, SETTLED)
    rig.start()
    rig.round()
    rig.round()
    assert not rig.outbox.reports()[-1].full  # by change, between full ones
    del rig.outbox[:]
    reply = rig.session.on_control(relay_pb2.ControllerMessage(
        resync=relay_pb2.Resync(reason="replica c2 leads")))
    assert reply is None
    kinds = [m.WhichOneof("msg") for m in rig.outbox]
    assert kinds == ["channels", "report"]
    assert rig.outbox[1].report.full and dsts(rig.outbox[1].report) == ["ams", "par"]


def test_a_resync_between_sessions_is_ignored():
    rig = Rig()
    rig.session.on_control(relay_pb2.ControllerMessage(resync=relay_pb2.Resync()))
    assert rig.session.outbox is None and not rig.outbox


def test_reports_go_by_change_between_full_ones_each_with_its_send_time():
    rig = Rig()
    rig.peers("ams", "par")
    rig.feed("ams", 20.0, SETTLED)
    rig.feed("par", 30.0, SETTLED)
    rig.counters["malformed"] = 4
    rig.now = 5.0
    rig.start()
    first = rig.outbox.reports()[0]
    assert first.full and dsts(first) == ["ams", "par"] and first.sent_unix_s == EPOCH + 5.0
    # nothing moved: empty reports, still sent every interval, with the counters
    for _ in range(3):
        report = rig.round()
        assert not report.full and dsts(report) == []
        assert report.counters["malformed"] == 4 and report.sent_unix_s == EPOCH + rig.now
    rig.feed("par", 40.0, 20)  # the smoothed RTT moves, the minimum stays at 30 ms
    assert dsts(rig.round()) == []
    rig.scheduler.stats["par"].recent.clear()
    rig.feed("par", 40.0)  # the minimum now 40 ms
    assert dsts(rig.round()) == ["par"]
    assert rig.outbox.reports()[-1].links[0].min_rtt_ms == pytest.approx(40.0)
    while not (report := rig.round()).full:
        assert rig.now < 5.0 + LINK.full_report_interval_s
    assert rig.now == 5.0 + LINK.full_report_interval_s
    assert dsts(report) == ["ams", "par"]


def test_a_state_change_is_reported_at_once_by_change():
    rig = Rig()
    rig.peers("ams", "par")
    rig.feed("ams", 20.0, SETTLED)
    rig.feed("par", 30.0, SETTLED)
    rig.start()
    stats = rig.scheduler.stats["par"]
    for seq in range(100, 100 + stats.settings.down_after):
        stats.sent(seq, rig.now)
    rig.now += 3.0
    stats.expire(rig.now)
    rig.scheduler.apply_link_states(rig.now)  # -> links_changed
    report = rig.outbox.reports()[-1]
    assert not report.full and dsts(report) == ["par"]
    assert report.links[0].state == relay_pb2.LINK_STATE_DOWN
    assert [e.kind for m in rig.outbox if m.WhichOneof("msg") == "events"
            for e in m.events.events] == ["link-down"]


def test_links_changed_before_any_report_sends_a_full_one():
    rig = Rig()
    rig.peers("ams", "par")
    rig.feed("ams", 20.0, SETTLED)
    rig.session.outbox = rig.outbox  # connected, no report yet
    rig.session.links_changed([RelayEvent(0.0, "chaos")])
    report = rig.outbox.reports()[0]
    assert report.full and dsts(report) == ["ams", "par"]


def test_a_new_session_starts_with_a_full_report():
    rig = Rig()
    rig.peers("ams")
    rig.feed("ams", 20.0, SETTLED)
    rig.start()
    assert not rig.round().full
    rig.session.outbox = None  # the stream broke
    rig.now += 3.0
    rig.outbox = Outbox()
    rig.start()
    assert rig.outbox.reports()[0].full and dsts(rig.outbox.reports()[0]) == ["ams"]


def test_link_report_is_the_full_report():
    rig = Rig()
    rig.peers("ams", "par", "sin")
    rig.feed("ams", 20.0, 2)
    report = rig.session.link_report()
    assert report.full and dsts(report) == ["ams", "par", "sin"]
    assert report.sent_unix_s == EPOCH
    ams = report.links[0]
    assert (ams.samples, ams.state) == (2, relay_pb2.LINK_STATE_UP)


def test_report_thresholds_come_from_the_peer_list_zero_unchanged():
    rig = Rig()
    assert rig.session.reports.settings == ReportSettings()
    rig.peers("ams", full_report_interval_s=30.0, report_rtt_fraction=0.05, report_rtt_ms=2.0,
              report_loss=0.01)
    assert rig.session.reports.settings == ReportSettings(30.0, 0.05, 2.0, 0.01)
    rig.peers("ams")
    assert rig.session.reports.settings == ReportSettings(30.0, 0.05, 2.0, 0.01)
    rig.peers("ams", report_rtt_ms=1.0)
    assert rig.session.reports.settings.rtt_ms == 1.0
    assert rig.session.reports.settings.full_report_interval_s == 30.0


def test_sampling_settings_come_from_the_peer_list_zero_unchanged():
    rig = Rig()
    s = rig.scheduler
    assert (s.partial_mesh_above, s.sample_every_s) == (LINK.partial_mesh_above,
                                                        LINK.sample_every_s)
    rig.peers("ams", "par", "sin", partial_mesh_above=3, sample_every_s=20.0)
    assert (s.partial_mesh_above, s.sample_every_s) == (3, 20.0)
    assert s.rotation is not None and s.rotation.period_s == 20.0  # 4 regions > 3
    rig.peers("ams", "par", "sin")
    assert (s.partial_mesh_above, s.sample_every_s) == (3, 20.0)


# -- incremental peer lists --------------------------------------------------------------------


def incremental(*peers: relay_pb2.Peer, removed: tuple[str, ...] = ()) \
        -> relay_pb2.ControllerMessage:
    return relay_pb2.ControllerMessage(peers=relay_pb2.PeerList(
        peers=list(peers), incremental=True, removed=list(removed)))


def test_an_incremental_list_adds_replaces_and_removes():
    rig = Rig()
    rig.peers("ams", "par", "sin", near=("ams",))
    s = rig.scheduler
    assert s.peers == {"ams": ("10.0.0.1", 9000), "par": ("10.0.0.2", 9000),
                       "sin": ("10.0.0.3", 9000)}
    assert s.near == {"ams"}
    rig.feed("ams", 20.0, 3)
    rig.feed("par", 30.0, 3)
    ams, par = s.stats["ams"], s.stats["par"]
    rig.now = 1.0
    rig.session.on_control(incremental(
        relay_pb2.Peer(region="lhr", probe_addr="10.0.0.4:9000", near=True),
        relay_pb2.Peer(region="par", probe_addr="10.0.1.2:9000")))
    # lhr added, par at its new address starts afresh, the rest kept
    assert s.peers == {"ams": ("10.0.0.1", 9000), "par": ("10.0.1.2", 9000),
                       "sin": ("10.0.0.3", 9000), "lhr": ("10.0.0.4", 9000)}
    assert s.stats["ams"] is ams and s.stats["par"] is not par and s.stats["par"].samples == 0
    assert s.near == {"ams", "lhr"} and s.unlisted == {}
    rig.now = 2.0
    rig.session.on_control(incremental(
        relay_pb2.Peer(region="ams", probe_addr="10.0.0.1:9000"),  # no longer near
        removed=("sin", "nowhere")))
    assert s.near == {"lhr"} and s.stats["ams"] is ams
    # removed: unlisted, kept while it answers (ProbeScheduler.set_peers' rules)
    assert s.unlisted == {"sin": 2.0} and "sin" in s.peers
    assert set(rig.session.listed) == {"ams", "par", "lhr"}
    # an increment naming this relay or a bad address lists neither
    rig.session.on_control(incremental(
        relay_pb2.Peer(region="fra", probe_addr="10.0.0.9:9000"),
        relay_pb2.Peer(region="lhr", probe_addr="no-port", near=True)))
    assert set(rig.session.listed) == {"ams", "par"} and s.near == frozenset()
    assert s.unlisted.keys() == {"sin", "lhr"}


def test_a_list_that_is_not_incremental_replaces_the_list_held():
    rig = Rig()
    rig.peers("ams", "par", "sin", near=("ams", "par"))
    rig.now = 1.0
    rig.session.on_control(incremental(
        relay_pb2.Peer(region="lhr", probe_addr="10.0.0.4:9000")))
    rig.now = 2.0
    rig.peers("ams", "par", near=("par",))  # lhr and sin left
    assert set(rig.session.listed) == {"ams", "par"}
    assert rig.scheduler.near == {"par"}
    assert rig.scheduler.unlisted == {"sin": 2.0, "lhr": 2.0}
    # listed again by an increment: no longer on its way out
    rig.session.on_control(incremental(
        relay_pb2.Peer(region="sin", probe_addr="10.0.0.3:9000")))
    assert rig.scheduler.unlisted == {"lhr": 2.0}
