"""The controller core (controller/core.py) driven as its gRPC shell drives it (hellos, link
reports, acks, channels, events), without gRPC and on a virtual clock: versions, ordered
repair after a region stops answering, NACKs, the unacknowledged cap, members, drains."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core import (
    BadRequest,
    Chaos,
    Controller,
    Hello,
    NotFound,
    NotReady,
    Peers,
    RelayConfig,
    RelayEvent,
    Session,
    Settings,
)
from controller.distribution import MAX_UNACKED, Push
from controller.membership import Members
from controller.store import ControllerState, MemoryStore
from skymesh.catalogue import Region
from skymesh.linkstate import DOWN, PROTOCOL_BY_CHANGE, UP
from skymesh.policy import Policy, Zone

# one-way costs are rtt/2 + 0.5: x is the cheap way between everyone
RTT = {("a", "x"): 20, ("b", "x"): 20, ("d", "x"): 20, ("a", "b"): 60, ("b", "d"): 60,
       ("a", "d"): 200}
REGIONS = ("a", "b", "d", "x")
T0 = 1000.0  # the shell's monotonic clock at the start
EPOCH = 1.7e9  # its wall clock then


class Rig:
    """A controller core, every relay session's outbox, and a virtual clock."""

    def __init__(self, settings: Settings | None = None, store=None,
                 keys: list[bytes] | None = None) -> None:
        self.now = T0
        self.wakes = 0
        self.outbox: dict[str, list] = {}  # each region's current session's messages
        catalogue = {r: Region(id=r, name=r.upper(), country="DE", lat=0.0, lon=0.0)
                     for r in REGIONS}
        policy = Policy({"global": Zone("global", frozenset(REGIONS))})
        self.c = Controller(catalogue, policy, settings or Settings(), {"demo": (b"p" * 32,)},
                            keys or [b"k1", b"k2"], store, now=self.now, wake=self.wake)

    @property
    def unix(self) -> float:
        return EPOCH + self.now - T0

    def wake(self) -> None:
        self.wakes += 1

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def connect(self, region: str, holds: int = 0, node: str = "1") -> Session:
        """Node `node` of `region` connects; its messages go to outbox[region] for node 1
        and to outbox["region/node"] for the others."""
        box = self.outbox[region if node == "1" else f"{region}/{node}"] = []
        return self.c.connect(Hello(region, f"{region}-{node}", "127.0.0.1:1", holds),
                              box.append, self.now, self.unix)

    def recompute(self) -> bool:
        return self.c.recompute(self.now, self.unix)

    def take(self, region: str) -> list:
        box = self.outbox[region]
        out = list(box)
        box.clear()
        return out


def rig(settings: Settings | None = None, **kw) -> Rig:
    """A controller every region's relay has connected to and reported every link up to."""
    r = Rig(settings, **kw)
    for region in REGIONS:
        r.connect(region)
    for region in REGIONS:
        report(r, region)
    return r


def rtt(a: str, b: str) -> float:
    return RTT.get((a, b)) or RTT[(b, a)]


def report(r: Rig, region: str, down: frozenset[str] = frozenset()) -> None:
    links = [{"dst": p, "rtt_ms": rtt(region, p), "min_rtt_ms": rtt(region, p),
              "jitter_ms": 0.0, "loss": 0.0, "window": 0, "samples": 10, "lost": 0,
              "state": DOWN if p in down else UP}
             for p in REGIONS if p != region]
    r.c.on_report(r.c.sessions[region], links, {"malformed": 0}, r.now)


def tables(r: Rig) -> dict[str, Push]:
    """The route tables pushed since the last look, by region (the last of each)."""
    out = {}
    for region in r.c.sessions:
        for msg in r.take(region):
            if isinstance(msg, Push):
                out[region] = msg
    return out


def ack(r: Rig, region: str, table: Push) -> None:
    r.c.on_ack(r.c.sessions[region], table.version, accepted=True)


def ack_all(r: Rig, pushed: dict[str, Push]) -> None:
    for region, table in pushed.items():
        ack(r, region, table)


def x_goes_dark(r: Rig) -> None:
    """a and b, with traffic through x, find it down first."""
    report(r, "a", down=frozenset({"x"}))
    report(r, "b", down=frozenset({"x"}))


def hop(table: Push, dst: str) -> str:
    return next(row.next_hop for row in table.rows if row.dst == dst)


def converged_rig(settings: Settings | None = None, **kw) -> Rig:
    r = rig(settings, **kw)
    assert r.recompute()
    ack_all(r, tables(r))
    assert r.c.converged(r.now)
    return r


# -- ordered repair ----------------------------------------------------------------------------


def test_repair_after_a_region_goes_dark_installs_leaves_first():
    r = rig()
    c = r.c
    assert r.recompute()
    first = tables(r)
    assert hop(first["a"], "d") == "x" and hop(first["b"], "d") == "x"
    ack_all(r, first)
    assert c.converged(r.now)

    x_goes_dark(r)
    assert c.unreachable == frozenset()
    r.recompute()
    assert c.unreachable == {"x"}
    repair = tables(r)
    # b's new row goes straight to d; a's would go to b, whose installed row still
    # leads into x: a keeps its row until b has acknowledged
    assert hop(repair["b"], "d") == "d"
    assert "a" not in repair or hop(repair["a"], "d") == "x"
    assert c.sessions["a"].routes.held >= 1 and not c.converged(r.now)
    assert "b" in c.distribution.awaited
    r.wakes = 0
    ack(r, "b", repair["b"])
    assert r.wakes == 1  # the ack starts the next round at once
    r.recompute()
    second = tables(r)
    assert hop(second["a"], "d") == "b"
    assert c.sessions["a"].routes.held == 0
    assert any(e.event.kind == "region-unreachable" and e.event.peer == "x"
               and e.received_unix_s == r.unix for e in c.events)


def pushed_at_the_hold_limit() -> Rig:
    """x goes dark with no hold: a's repaired row to d (via b) goes out without b's ack."""
    r = rig(Settings(order_hold_s=0.0))
    r.recompute()
    ack_all(r, tables(r))
    x_goes_dark(r)
    r.recompute()
    assert hop(tables(r)["a"], "d") == "b"  # no waiting for b's ack
    return r


def test_rows_held_too_long_go_out_anyway():
    r = pushed_at_the_hold_limit()
    assert r.c.sessions["a"].routes.held == 0


def test_held_rows_wait_for_the_next_hops_ack_until_order_hold_s():
    r = converged_rig(Settings(order_hold_s=1.0))
    x_goes_dark(r)
    r.recompute()
    repair = tables(r)
    assert "a" not in repair or hop(repair["a"], "d") == "x"
    a = r.c.sessions["a"].routes
    assert a.held and a.held_since == r.now
    r.advance(0.5)
    r.recompute()  # b has not acknowledged: a still waits
    assert "a" not in tables(r) and a.held
    r.advance(0.5)
    r.recompute()
    late = tables(r)
    assert hop(late["a"], "d") == "b" and a.held == 0 and a.held_since is None


def test_an_ack_for_a_version_already_followed_by_another_still_counts():
    """Under churn a relay's ack often arrives after the next push: what it acknowledged is
    installed all the same (else rows waiting on it would wait for the hold limit)."""
    r = rig()
    c = r.c
    r.recompute()
    first = tables(r)["b"]
    session = c.sessions["b"]
    c.distribution.version += 1
    newer = c.distribution.push(session.routes, c.tables["b"])  # goes out before the ack
    assert newer.version == first.version + 1
    ack(r, "b", first)
    assert session.routes.installed == {(row.zone, row.dst): row for row in c.tables["b"]}
    assert set(session.routes.unacked) == {c.version}
    assert session.routes.acked_version == first.version


def test_rows_pushed_at_the_hold_limit_are_not_taken_back_before_they_are_acknowledged():
    r = pushed_at_the_hold_limit()
    r.c.distribution.order_hold_s = 60.0  # b has still not acknowledged
    r.c.dirty = True
    r.recompute()
    assert "a" not in tables(r)  # nothing new for a: its row to b stands


# -- versions, ACK and NACK ----------------------------------------------------------------------


def test_a_nack_pushes_the_table_again_at_the_next_version():
    r = converged_rig()
    c = r.c
    version = c.version
    table = c.sessions["d"].routes
    c.on_ack(c.sessions["d"], version, accepted=False, reason="row 3: loop")
    assert c.rejected_tables == 1 and not c.converged(r.now)
    assert r.recompute()
    again = tables(r)
    assert set(again) == {"d"}  # the others' tables did not change
    assert again["d"].version == version + 1
    assert again["d"].rows == tuple(c.tables["d"])
    ack(r, "d", again["d"])
    assert table.acked_version == version + 1 and c.converged(r.now)


def test_versions_continue_above_what_reconnecting_relays_hold():
    r = Rig()
    r.connect("a", holds=40)
    r.connect("b", holds=7)
    for region in ("d", "x"):
        r.connect(region)
    for region in REGIONS:
        report(r, region)
    assert r.c.warm  # relays forward on tables from before this controller
    assert r.recompute()
    assert {p.version for p in tables(r).values()} == {41}


def test_after_a_restart_no_tables_until_every_relay_is_back_and_measured_or_resync_hold_s():
    r = Rig(Settings(resync_hold_s=15.0))
    for region in ("a", "b", "d"):
        r.connect(region, holds=5)
    for region in ("a", "b", "d"):
        report(r, region)
    assert not r.recompute() and r.c.warm
    answer = r.c.path("a", "d")
    assert not answer.reachable and "resynchronising after a restart" in answer.reason
    r.advance(15.0)
    assert r.recompute() and not r.c.warm
    assert {p.version for p in tables(r).values()} == {6}


def test_after_a_restart_the_report_that_completes_the_measurement_wakes_the_loop():
    r = Rig(Settings(resync_hold_s=15.0))
    for region in REGIONS:
        r.connect(region, holds=5)
    for region in REGIONS[:-1]:
        report(r, region)
    assert not r.recompute() and r.c.warm
    woken = r.wakes
    report(r, REGIONS[-1])  # the last region measured: the round need not wait its interval
    assert r.wakes > woken
    assert r.recompute() and not r.c.warm


def test_after_a_restart_relays_on_earlier_tables_get_their_peer_lists_once_all_are_back():
    """Not a whole list on connect, missing the relays not back yet (which would stop them
    measuring those), and changes after it: they probe the peers they were told before
    meanwhile (a new leader taking relays over, a controller restarted)."""
    r = Rig(Settings(resync_hold_s=15.0))

    def peer_lists(region: str) -> list[Peers]:
        return [m for m in r.outbox[region] if isinstance(m, Peers)]

    for region in REGIONS[:-1]:
        box = r.outbox[region] = []
        r.c.connect(Hello(region, f"{region}-1", f"127.0.0.1:{ord(region)}", 5,
                          protocol=PROTOCOL_BY_CHANGE), box.append, r.now, r.unix)
    r.connect(REGIONS[-1])  # holds nothing (and speaks protocol 0): told at once
    assert peer_lists(REGIONS[-1])
    for region in REGIONS:
        report(r, region)
    assert all(not peer_lists(region) for region in REGIONS[:-1])
    r.c.tick(r.now, r.unix)  # every relay back and measured: the first routes
    assert tables(r) and all(not peer_lists(region) for region in REGIONS[:-1])
    r.c.tick(r.now, r.unix)  # then one whole list each
    for region in REGIONS[:-1]:
        (whole,) = peer_lists(region)
        assert not whole.incremental
        assert {p[0] for p in whole.peers} == set(REGIONS) - {region}
    r.c.tick(r.now, r.unix)
    assert all(len(peer_lists(region)) == 1 for region in REGIONS[:-1])  # and no changes


def test_after_a_restart_a_link_left_out_of_the_first_reports_holds_tables_only_a_grace():
    r = Rig(Settings(resync_hold_s=15.0, resync_grace_s=1.0))
    for region in REGIONS:
        r.connect(region, holds=5)
    for region in REGIONS[1:]:
        report(r, region)
    # a's first report leaves its link to x out (not measured when it was sent)
    r.c.on_report(r.c.sessions["a"], [
        {"dst": p, "rtt_ms": rtt("a", p), "min_rtt_ms": rtt("a", p), "jitter_ms": 0.0,
         "loss": 0.0, "window": 0, "samples": 10, "lost": 0, "state": UP}
        for p in ("b", "d")], {}, r.now)
    assert not r.c.all_measured()
    assert not r.recompute() and r.c.warm
    r.advance(0.5)
    assert not r.recompute() and r.c.warm
    r.advance(0.6)  # every relay reported, a grace after the last came back
    assert r.recompute() and not r.c.warm


def test_a_relay_that_stops_acknowledging_keeps_only_the_last_versions():
    """Each drain and undrain of x moves a's route to d: a is pushed every time, never acks."""
    r = converged_rig(Settings(order_hold_s=0.0))
    c = r.c
    a = c.sessions["a"].routes
    versions = []
    for i in range(MAX_UNACKED + 4):
        c.drain("x", i % 2 == 0, r.now, r.unix)
        pushed = tables(r)
        versions.append(pushed["a"].version)
        for region, table in pushed.items():
            if region != "a":
                ack(r, region, table)
    assert versions == sorted(set(versions))  # a new version each time, in order
    assert sorted(a.unacked) == versions[-MAX_UNACKED:]
    ack(r, "a", Push("a", versions[-1], "", ()))
    assert a.installed == {(row.zone, row.dst): row for row in c.tables["a"]}
    assert a.in_sync and a.unacked == {}


OPS = st.lists(st.one_of(
    st.tuples(st.just("report"), st.sampled_from(REGIONS), st.frozensets(
        st.sampled_from(REGIONS), max_size=2)),
    st.tuples(st.just("ack"), st.sampled_from(REGIONS), st.integers(0, 30)),
    st.tuples(st.just("nack"), st.sampled_from(REGIONS), st.integers(0, 30)),
    st.tuples(st.just("drain"), st.sampled_from(REGIONS), st.booleans()),
    st.tuples(st.just("reconnect"), st.sampled_from(REGIONS)),
    st.tuples(st.just("time"), st.sampled_from([0.1, 0.5, 1.0, 6.0])),
), max_size=40)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_whatever_happens_versions_only_grow_and_each_relay_gets_them_in_order(ops):
    """Random reports, acks and nacks of any version pushed, drains, reconnects and time:
    every push has a version above all before it (per relay and overall), pushes of one
    round share a version, acked versions never go back, and what a relay has installed
    is always the rows of a version it was pushed."""
    r = rig(Settings(order_hold_s=1.0))
    c = r.c
    pushed: dict[str, dict[int, tuple]] = {region: {} for region in REGIONS}
    highest = c.version

    def collect() -> None:
        """The pushes of one round (a drain's or a tick's): one version, above all before."""
        nonlocal highest
        round_versions = set()
        for region in REGIONS:
            for msg in r.take(region):
                if isinstance(msg, Push):
                    assert msg.version > max(pushed[region], default=0)
                    round_versions.add(msg.version)
                    pushed[region][msg.version] = msg.rows
        assert len(round_versions) <= 1 and all(v > highest for v in round_versions)
        highest = max([highest, *round_versions])
        assert c.version == highest

    for op in ops:
        if op[0] == "report":
            report(r, op[1], op[2] - {op[1]})
        elif op[0] in ("ack", "nack"):
            versions = sorted(pushed[op[1]])
            if versions:
                session = c.sessions[op[1]]
                before = session.routes.acked_version
                version = versions[op[2] % len(versions)]
                c.on_ack(session, version, accepted=op[0] == "ack", reason="test")
                assert session.routes.acked_version >= before
                installed = session.routes.installed
                assert not installed or any(
                    installed == {(row.zone, row.dst): row for row in rows}
                    for rows in pushed[op[1]].values())
        elif op[0] == "drain":
            c.drain(op[1], op[2], r.now, r.unix)
            collect()
        elif op[0] == "reconnect":
            r.connect(op[1], holds=max(pushed[op[1]], default=0))
            report(r, op[1])
        else:
            r.advance(op[1])
        c.tick(r.now, r.unix)
        collect()


# -- sessions ------------------------------------------------------------------------------------


def test_a_connecting_relay_gets_its_config_and_everyone_the_new_peer_list():
    r = Rig()
    r.connect("a")
    r.connect("b")
    s = r.c.settings
    config = RelayConfig(app_keys={"demo": (b"p" * 32,)}, fabric_key=b"k1",
                         accepted_keys=((2, b"k2"),),
                         zones=("global",), drained=False, fabric_epoch=1)

    def peers(*regions: str) -> Peers:
        return Peers(tuple((p, "127.0.0.1:1", "") for p in regions), s.probe_interval_s,
                     s.report_interval_s, s.neighbour_probe_interval_s, s.down_after,
                     s.degraded_loss, s.degraded_jitter_ms)

    assert r.take("a") == [peers(), config, peers("b")]
    assert r.take("b") == [peers("a"), config]
    kinds = [(e.region, e.event.kind, e.event.peer) for e in r.c.events]
    assert kinds == [("controller", "relay-connected", "a"),
                     ("controller", "relay-connected", "b")]
    assert r.c.events[0].event.detail == "a-1, holding routes v0"


def test_a_node_connecting_again_replaces_its_old_session():
    r = rig()
    old = r.c.sessions["a"]
    old_box = r.outbox["a"]
    new = r.connect("a")
    assert old_box[-1] is None  # the old session is ended
    assert r.c.sessions["a"] is new and r.c.topology.relays["a"].node_id == "a-1"
    r.wakes = 0
    r.c.disconnect(old, r.now, r.unix)  # the old stream closing later changes nothing
    assert r.c.sessions["a"] is new and r.wakes == 0
    assert "a" in r.c.distribution.relays


def test_channels_from_a_replaced_session_speak_for_nobody():
    r = rig()
    old = r.c.sessions["b"]
    r.connect("b")
    r.c.on_channels(r.c.sessions["a"], {("global", "ch"): (False, True)}, r.now + 10)
    r.c.on_channels(old, {("global", "ch"): (True, False)}, r.now + 10)
    assert r.c.members_of(("global", "ch")) == ()


def test_a_disconnect_tells_the_others_and_asks_for_a_recompute():
    r = rig(Settings(members_hold_s=0.0))
    c = r.c
    c.on_channels(c.sessions["a"], {("global", "ch"): (False, True)}, r.now)
    c.on_channels(c.sessions["d"], {("global", "ch"): (True, False)}, r.now)
    for region in REGIONS:
        r.take(region)
    r.wakes = 0
    c.disconnect(c.sessions["d"], r.now, r.unix)
    assert "d" not in c.sessions and "d" not in c.topology.relays
    assert "d" not in c.distribution.relays
    got = r.take("a")
    assert [m.peers for m in got if isinstance(m, Peers)] == [
        (("b", "127.0.0.1:1", ""), ("x", "127.0.0.1:1", ""))]
    assert [m for m in got if isinstance(m, Members)] == [Members("a/a-1", "global", "ch", ())]
    assert r.wakes == 1 and c.dirty
    assert c.events[-1].event.kind == "relay-disconnected" and c.events[-1].event.peer == "d"


def test_reports_keep_the_relays_counters_and_count_rejected_samples():
    r = rig()
    c = r.c
    c.on_report(c.sessions["a"], [{"dst": "b", "rtt_ms": float("nan"), "state": UP}],
                {"malformed": 3}, r.now)
    assert c.sessions["a"].counters == {"malformed": 3}
    assert c.topology.rejected_samples == 1


def test_link_events_ask_for_a_recompute_and_all_events_are_kept():
    r = rig()
    c = r.c
    r.wakes = 0
    c.dirty = False
    r.advance(10)
    c.on_events(c.sessions["a"], [RelayEvent(EPOCH + 1, "link-degraded", "b")], r.unix)
    assert r.wakes == 0 and not c.dirty
    c.on_events(c.sessions["a"], [RelayEvent(EPOCH + 2, "link-down", "x", detail="3 missed"),
                                  RelayEvent(EPOCH + 3, "reroute", "x", routes=2)], r.unix)
    assert r.wakes == 2 and c.dirty
    assert len(c.events) == len(REGIONS) + 3
    since = c.events_since(EPOCH + 2)
    assert [(e.region, e.event.kind, e.received_unix_s) for e in since] == [
        ("a", "link-down", r.unix), ("a", "reroute", r.unix)]


# -- members -------------------------------------------------------------------------------------


def test_members_are_held_after_a_start_then_released_to_the_publishers():
    r = Rig(Settings(members_hold_s=6.0))
    c = r.c
    r.connect("a")
    r.connect("b")
    c.on_channels(c.sessions["a"], {("global", "ch"): (False, True)}, r.now + 1)
    c.on_channels(c.sessions["b"], {("global", "ch"): (True, False)}, r.now + 1)
    r.advance(5.9)
    c.tick(r.now, r.unix)
    assert not any(isinstance(m, Members) for m in r.take("a"))
    r.advance(0.1)
    c.tick(r.now, r.unix)
    assert [m for m in r.take("a") if isinstance(m, Members)] == [
        Members("a/a-1", "global", "ch", ("b/b-1",))]
    assert not any(isinstance(m, Members) for m in r.take("b"))  # b does not publish
    c.tick(r.now + 1, r.unix + 1)
    assert r.take("a") == []  # released once


def test_members_go_out_at_once_when_every_region_is_back():
    r = rig(Settings(members_hold_s=6.0))
    c = r.c
    for region in REGIONS:
        r.take(region)
    c.on_channels(c.sessions["a"], {("global", "ch"): (False, True)}, r.now)
    c.on_channels(c.sessions["b"], {("global", "ch"): (True, False)}, r.now)
    assert [m for m in r.take("a") if isinstance(m, Members)] == [
        Members("a/a-1", "global", "ch", ()), Members("a/a-1", "global", "ch", ("b/b-1",))]
    assert [(v.zone, v.channel, v.publisher_regions, v.subscriber_regions)
            for v in c.channels()] == [("global", "ch", ["a"], ["b"])]


# -- operator requests ---------------------------------------------------------------------------


class FailingStore(MemoryStore):
    def save_drained(self, drained) -> None:
        raise OSError("read-only file system")


def test_a_drain_is_kept_sent_to_the_relay_and_moves_transit():
    store = MemoryStore()
    r = converged_rig(store=store)
    c = r.c
    for region in REGIONS:
        r.take(region)
    c.drain("x", True, r.now, r.unix)
    assert store.state.drained == frozenset({"x"})
    assert c.drained == {"x"}
    got = r.take("x")
    assert [m.drained for m in got if isinstance(m, RelayConfig)] == [True]
    assert hop(tables(r)["a"], "d") != "x"  # pushed within the drain: transit moved off x
    assert c.events[-1].event.kind == "drain" and c.events[-1].event.peer == "x"
    events = len(c.events)
    c.drain("x", True, r.now, r.unix)  # no change: no event, no config
    assert len(c.events) == events and r.take("x") == []


def test_a_drain_the_store_cannot_keep_fails_and_changes_nothing():
    r = converged_rig(store=FailingStore())
    c = r.c
    events = len(c.events)
    with pytest.raises(OSError, match="read-only"):
        c.drain("x", True, r.now, r.unix)
    assert c.drained == set() and len(c.events) == events


def test_drains_kept_before_a_restart_are_in_force_at_start():
    r = Rig(store=MemoryStore(ControllerState(frozenset({"x", "gone"}))))
    assert r.c.drained == {"x"}
    r.connect("x")
    assert [m.drained for m in r.take("x") if isinstance(m, RelayConfig)] == [True]


def test_nothing_is_pushed_beyond_the_reserved_versions_and_what_waited_goes_once_reserved():
    r = converged_rig()
    c = r.c
    pushed = c.version
    c.distribution.limit = pushed  # replicas on etcd: no version reserved beyond this
    x_goes_dark(r)
    r.recompute()
    assert tables(r) == {} and c.version == pushed
    c.distribution.limit = pushed + 10
    r.recompute()  # nothing moved since: what changed while blocked still goes
    got = tables(r)
    assert got and {t.version for t in got.values()} == {pushed + 1}
    unblocked = converged_rig()  # what a controller never blocked pushes
    x_goes_dark(unblocked)
    unblocked.recompute()
    assert {region: t.rows for region, t in got.items()} == \
        {region: t.rows for region, t in tables(unblocked).items()}


def test_restoring_the_state_the_store_holds_applies_drains_made_meanwhile():
    r = converged_rig()
    c = r.c
    for region in REGIONS:
        r.take(region)
    c.restore(ControllerState(frozenset({"x"})), r.now, r.unix)
    assert c.drained == {"x"}
    assert [m.drained for m in r.take("x") if isinstance(m, RelayConfig)] == [True]
    r.recompute()
    assert hop(tables(r)["a"], "d") != "x"
    assert c.events[-1].event.kind == "drain"
    events = len(c.events)
    c.restore(ControllerState(frozenset({"x"})), r.now, r.unix)  # the same: nothing
    assert len(c.events) == events and r.take("x") == []


def test_what_a_drain_keeps_is_known_before_it_is_made():
    r = converged_rig()
    c = r.c
    after, entry = c.drain_change("x", True, r.unix, "admin/operator/olga")
    assert after == {"x"} and c.drained == set()  # nothing changed yet
    assert (entry.actor, entry.action, entry.target) == ("admin/operator/olga", "drain", "x")
    c.drain("x", True, r.now, r.unix, "admin/operator/olga")
    assert c.store.audit()[-1] == entry  # the core writes the same entry
    with pytest.raises(NotFound):
        c.drain_change("zz", True, r.unix)


def test_requests_naming_what_does_not_exist_are_refused_with_the_reason():
    r = converged_rig()
    c = r.c
    with pytest.raises(NotFound, match=r"^unknown region 'zz': not in the catalogue$"):
        c.drain("zz", True, r.now, r.unix)
    with pytest.raises(NotFound, match=r"^unknown zone 'eu' \(zones: global\)$"):
        c.table_of("a", "eu")
    with pytest.raises(NotFound, match="unknown region 'zz'"):
        c.path("a", "zz")
    with pytest.raises(NotFound, match="unknown zone 'eu'"):
        c.plan_failover(region="zz", zone="eu")  # the zone is checked first
    with pytest.raises(BadRequest, match="^name a region, or both ends of a link$"):
        c.plan_failover(link=("a", ""))


def test_queries_answer_from_the_routes_in_force():
    r = converged_rig()
    c = r.c
    version, rows = c.table_of("a")
    assert version == c.version and rows == c.tables["a"]
    assert c.table_of("a", "global")[1] == rows
    answer = c.path("a", "d")
    assert answer.reachable and answer.path == ("a", "x", "d") and answer.zone == "global"
    assert answer.cost_ms == round(answer.cost_ms, 3) > 0 and answer.reason == ""
    assert c.path("a", "a").path == ("a",) and c.path("a", "a").reachable
    plan = c.plan_failover(region="x")
    assert plan.failure == "region x" and plan.changes
    assert c.plan_failover(link=("a", "x")).failure == "link a-x"
    status = c.status(r.now + 2)
    assert status.converged and status.relays == 4 and status.relays_acked == 4
    assert status.uptime_s == 2.0 and status.converged_for_s == 2.0
    links = c.links(r.now + 3)
    assert len(links) == 12 and all(v.age_s == 3.0 and v.cost_ms > 0 for v in links)


def test_a_region_without_a_relay_has_no_failover_plan_and_takes_no_chaos():
    r = Rig()
    r.connect("a")
    with pytest.raises(NotReady, match="^b has no relay in the topology$"):
        r.c.plan_failover(region="b")
    with pytest.raises(NotReady, match="^region 'b' has no relay connected$"):
        r.c.chaos("b", Chaos(drop_all=True), r.unix)


def test_chaos_goes_to_the_relay_and_into_the_events():
    r = rig()
    c = r.c
    r.take("a")
    with pytest.raises(NotFound, match="unknown region 'zz'"):
        c.chaos("a", Chaos(drop_peers=("b", "zz")), r.unix)
    assert r.take("a") == []
    c.chaos("a", Chaos(drop_peers=("b", "x"), until_unix_s=EPOCH + 9), r.unix)
    assert r.take("a") == [Chaos(("b", "x"), False, EPOCH + 9)]
    assert c.events[-1].event.detail == "dropping traffic with b, x"
    c.chaos("a", Chaos(drop_all=True), r.unix)
    assert c.events[-1].event.detail == "dropping traffic with every peer"
    c.chaos("a", Chaos(), r.unix)
    assert c.events[-1].event.detail == "dropping traffic with nothing"


def test_events_keep_a_time_that_is_a_number_and_short_texts():
    # (found by tests/unit/fuzz) NaN times were kept: shown as NaN, never in `events --since`
    r = rig()
    c = r.c
    c.on_events(c.sessions["a"], [RelayEvent(float("nan"), "link-up", "b"),
                                  RelayEvent(float("-inf"), "x" * 5000, "b" * 5000,
                                             detail="d" * 5000)], r.unix)
    nan, long = c.events[-2].event, c.events[-1].event
    assert nan.at_unix_s == r.unix and long.at_unix_s == r.unix
    assert (len(long.kind), len(long.peer), len(long.detail)) == (256, 256, 1024)
    assert [e.event for e in c.events_since(r.unix)][-2:] == [nan, long]


def test_channels_a_region_cannot_serve_are_ignored():
    # (found by tests/unit/fuzz) empty channel names and zones the region is not in were kept
    r = rig(Settings(members_hold_s=0.0))
    c = r.c
    c.on_channels(c.sessions["a"], {("global", ""): (True, True), ("eu", "ch"): (True, True),
                                    ("global", "c" * 65): (True, True),
                                    ("global", "ch"): (True, False)}, r.now)
    assert c.membership.channels() == [("global", "ch")]
    assert c.members_of(("global", "ch")) == ("a/a-1",)
