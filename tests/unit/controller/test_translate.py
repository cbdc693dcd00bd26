"""The wire contract to the core's values and back (controller/translate.py): every field
crosses, rounding as the relays and the admin client have always seen it."""

from __future__ import annotations

import pytest

from controller import translate
from controller.core import Chaos, Event, Peers, RelayConfig, RelayEvent
from controller.distribution import Push
from controller.engine import Route
from controller.membership import Members
from skymesh.linkstate import DEGRADED, TO_WIRE
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


def test_every_controller_message_has_its_wire_form():
    peers = translate.controller_message(Peers((("bb", "h:1", "n1"),), 1.0, 2.0, 0.1, 3, 0.02,
                                               30.0))
    assert [(p.region, p.probe_addr, p.node_id) for p in peers.peers.peers] == [
        ("bb", "h:1", "n1")]
    assert (peers.peers.probe_interval_s, peers.peers.report_interval_s,
            peers.peers.neighbour_probe_interval_s, peers.peers.down_after,
            peers.peers.degraded_jitter_ms) == (1.0, 2.0, 0.1, 3, 30.0)
    assert peers.peers.degraded_loss == pytest.approx(0.02)
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
