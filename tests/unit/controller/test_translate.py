"""The wire contract to the core's values and back (controller/translate.py): every field
crosses, rounding as the relays and the admin client have always seen it."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import translate
from controller.core import Chaos, Event, Peers, RelayConfig, RelayEvent
from controller.distribution import Push
from controller.engine import Route
from controller.membership import Members
from skymesh.linkstate import DEGRADED, TO_WIRE
from skymesh.nodes import address
from skymesh.v1 import relay_pb2


def test_a_hello_and_a_report_arrive_as_the_core_reads_them():
    hello = translate.hello(relay_pb2.Hello(region="aa", node_id="aa-1", probe_addr="h:1",
                                            route_version=7, edge_addr="h:2"))
    assert (hello.region, hello.node_id, hello.probe_addr, hello.route_version,
            hello.edge_addr) == ("aa", "aa-1", "h:1", 7, "h:2")
    report = relay_pb2.LinkReport(links=[relay_pb2.LinkSample(
        dst="bb", rtt_ms=10.5, min_rtt_ms=9.0, jitter_ms=1.5, loss=0.25, window=20, samples=30,
        lost=5, state=TO_WIRE[DEGRADED])])
    assert translate.samples(report) == [{
        "dst": "bb", "rtt_ms": 10.5, "min_rtt_ms": 9.0, "jitter_ms": 1.5, "loss": 0.25,
        "window": 20, "samples": 30, "lost": 5, "state": DEGRADED}]
    assert translate.samples(relay_pb2.LinkReport(links=[relay_pb2.LinkSample(
        dst="bb", state=42)]))[0]["state"] == "?"  # an unknown state is rejected by name


def test_channels_and_events_arrive_whole():
    msg = relay_pb2.Channels(channels=[
        relay_pb2.ChannelInterest(zone="eu", channel="a/b", subscribers=True),
        relay_pb2.ChannelInterest(zone="eu", channel="a/c", publishers=True)])
    assert translate.interest(msg) == {("eu", "a/b"): (True, False),
                                       ("eu", "a/c"): (False, True)}
    e = relay_pb2.RelayEvent(at_unix_s=5.5, kind="reroute", peer="bb", routes=3, detail="d")
    assert translate.relay_event(e) == RelayEvent(5.5, "reroute", "bb", 3, "d")
    back = translate.event(Event("aa", translate.relay_event(e), 6.0))
    assert back.region == "aa" and back.received_unix_s == 6.0 and back.event == e


def test_a_push_becomes_a_route_table_with_costs_in_microseconds():
    rows = (Route("eu", "aa", "cc", ("aa", "bb", "cc"), 12.34567, "cc", "node", 20.00049),
            Route("eu", "aa", "bb", ("aa", "bb"), 5.0))
    msg = translate.controller_message(Push("aa", 9, "n1", rows))
    assert msg.WhichOneof("msg") == "routes"
    table = msg.routes
    assert (table.version, table.nonce) == (9, "n1")
    first, second = table.routes
    assert (first.dst, first.next_hop, list(first.path), first.cost_ms, first.zone,
            first.backup_next_hop, first.backup_kind, first.backup_cost_ms) == (
        "cc", "bb", ["aa", "bb", "cc"], 12.346, "eu", "cc", "node", 20.0)
    assert (second.backup_next_hop, second.backup_kind, second.backup_cost_ms) == (
        "", "none", 0.0)


names = st.text(min_size=1, max_size=70)  # any UTF-8, past one byte of length
costs = st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 0.0004, 1e300]))
routes = st.builds(
    lambda zone, path, cost, backup, kind, backup_cost: Route(
        zone, path[0], path[-1], tuple(path), cost, backup, kind, backup_cost),
    names, st.lists(names, min_size=2, max_size=6), costs, st.none() | names,
    st.sampled_from(["none", "link", "node", ""]), st.none() | costs)


def generated(push: Push) -> relay_pb2.ControllerMessage:
    """`push` as the generated protobuf code builds it (what the hand encoding must be)."""
    def entry(r: Route) -> relay_pb2.RouteEntry:
        return relay_pb2.RouteEntry(
            dst=r.dst, next_hop=r.next_hop, path=list(r.path),
            cost_ms=round(r.cost_ms, 3) + 0.0, zone=r.zone,  # + 0.0: -0.0 is sent as 0.0
            backup_next_hop=r.backup_next_hop or "", backup_kind=r.backup_kind,
            backup_cost_ms=round(r.backup_cost_ms or 0.0, 3) + 0.0)
    rows = push.changes if push.base_version else push.rows
    return relay_pb2.ControllerMessage(routes=relay_pb2.RouteTable(
        version=push.version, nonce=push.nonce, base_version=push.base_version,
        routes=[entry(r) for r in rows],
        removed=[relay_pb2.RouteKey(zone=z, dst=d) for z, d in push.removed]))


@settings(max_examples=300, deadline=None)
@given(st.lists(routes, max_size=8), st.integers(1, 2**64 - 1), st.integers(0, 2**64 - 1),
       st.text(max_size=20), st.lists(st.tuples(names, names), max_size=3))
def test_route_tables_encoded_by_hand_are_those_of_the_generated_code(
        rows, version, base, nonce, removed):
    push = Push("aa", version, nonce, tuple(rows))
    if base:
        push = Push("aa", version, nonce, tuple(rows), base, tuple(rows[:3]), tuple(removed))
    wire = translate.encoded_message(push)
    want = generated(push)
    assert relay_pb2.ControllerMessage.FromString(wire) == want
    assert wire == want.SerializeToString()
    assert [translate.route_entry(r) for r in (push.changes if base else rows)] == list(
        want.routes.routes)  # as admin reads them
    assert translate.encoded_message(push) == wire  # and again, from the rows' own encoding


def test_a_row_is_encoded_once_and_a_changed_row_is_a_new_object():
    row = Route("eu", "aa", "bb", ("aa", "bb"), 5.0)
    first = translate.encoded_row(row)
    assert row.encoded is first and translate.encoded_row(row) is first
    assert row == Route("eu", "aa", "bb", ("aa", "bb"), 5.0)  # the encoding is no part of it
    assert translate.encoded_row(Route("eu", "aa", "bb", ("aa", "bb"), 6.0)) != first


def test_every_controller_message_has_its_wire_form():
    peers = translate.controller_message(Peers((("bb", "h:1", "n1"),), 1.0, 2.0, 0.1, 3, 0.02,
                                               30.0))
    assert [(p.region, p.probe_addr, p.node_id) for p in peers.peers.peers] == [
        ("bb", "h:1", "n1")]
    assert (peers.peers.probe_interval_s, peers.peers.report_interval_s,
            peers.peers.neighbour_probe_interval_s, peers.peers.down_after,
            peers.peers.degraded_jitter_ms) == (1.0, 2.0, 0.1, 3, 30.0)
    assert peers.peers.degraded_loss == pytest.approx(0.02)
    weighted = translate.controller_message(Peers(
        (("bb", "h:1", "n1"), ("bb", "h:2", "n2")), 1.0, 2.0, 0.1, 3, 0.02, 30.0,
        incremental=True, weights={"bb/n1": 0.25})).peers
    assert [p.weight for p in weighted.peers] == [0.25, 0.0]  # 0: the relay's default, 1
    config = translate.controller_message(RelayConfig({"app": (b"p" * 32, b"q" * 32)}, b"k1",
                                                      ((3, b"k0"), (5, b"k2")),
                                                      ("eu", "global"), True, 4)).config
    assert ({a: list(k.public_keys) for a, k in config.app_keys.items()}, config.fabric_key,
            config.fabric_epoch, [(k.epoch, k.key) for k in config.accepted_fabric_keys],
            list(config.zones), config.drained) == (
        {"app": [b"p" * 32, b"q" * 32]}, b"k1", 4, [(3, b"k0"), (5, b"k2")],
        ["eu", "global"], True)
    members = translate.controller_message(Members("aa", "eu", "a/b", ("bb", "cc"))).members
    assert (members.zone, members.channel, list(members.regions)) == (
        "eu", "a/b", ["bb", "cc"])
    wire = relay_pb2.Chaos(drop_peers=["bb"], drop_all=True, until_unix_s=9.0)
    assert translate.controller_message(translate.chaos(wire)).chaos == wire
    assert translate.chaos(wire) == Chaos(("bb",), True, 9.0)
    with pytest.raises(TypeError):
        translate.controller_message("hello")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(20))
def test_peer_lists_encoded_by_hand_are_those_of_the_generated_code(seed):
    rng = random.Random(seed)
    peers = tuple((f"r{rng.randrange(50)}", f"10.0.{rng.randrange(9)}.{i}:{rng.randrange(65536)}",
                   rng.choice(["", "n1", "n2", "ñode"])) for i in range(rng.randrange(0, 30)))
    near = frozenset(r for r, _, _ in peers if rng.random() < 0.3)
    weights = {address(r, n): rng.choice([0.25, 1.5, 3.0]) for r, _, n in peers
               if rng.random() < 0.3}
    msg = Peers(peers, rng.random(), 1.0, 0.1, rng.randrange(0, 9), 0.02, 30.0, near=near,
                incremental=rng.random() < 0.5, removed=tuple(rng.sample(["x", "y/n1"], 1)),
                full_report_interval_s=30.0, report_rtt_fraction=0.05, report_rtt_ms=2.0,
                report_loss=0.01, partial_mesh_above=250, sample_every_s=60.0,
                weights=weights)
    want = relay_pb2.ControllerMessage(peers=relay_pb2.PeerList(
        peers=[relay_pb2.Peer(region=r, probe_addr=a, near=r in near, node_id=n,
                              weight=weights.get(address(r, n), 0.0)) for r, a, n in peers],
        probe_interval_s=msg.probe_interval_s, report_interval_s=1.0,
        neighbour_probe_interval_s=0.1, down_after=msg.down_after, degraded_loss=0.02,
        degraded_jitter_ms=30.0, incremental=msg.incremental, removed=msg.removed,
        full_report_interval_s=30.0, report_rtt_fraction=0.05, report_rtt_ms=2.0,
        report_loss=0.01, partial_mesh_above=250, sample_every_s=60.0))
    got = translate.encoded_message(msg)
    assert relay_pb2.ControllerMessage.FromString(got) == want
    assert translate.encoded_message(msg) == got  # from the entries kept
