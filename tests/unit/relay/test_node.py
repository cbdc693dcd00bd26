"""The relay node's wiring (relay/node.py) and its controller session's translation
(relay/control.py): controller messages reach the scheduler, tables, fabric, chaos and edge;
what those decide comes back as protobuf; the socket is wired to the fast path. The scheduler's
own timing is tested in test_scheduler.py."""

from __future__ import annotations

import asyncio
import time

from relay import packets
from relay.node import DEFAULT_SETTINGS, RelayNode, RelaySettings
from relay.transport import Direct, EmulatedWan
from skymesh.net.udpio import BatchedUDP
from skymesh.v1 import relay_pb2
from skymesh.wan import WanLink

KEY = b"k" * 32
PROBE_KEYS = packets.ProbeKeys.derive(0, {0: KEY})  # a config of KEY at epoch 0


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.blocked: frozenset[tuple[str, int]] = frozenset()

    def send(self, data, addr) -> None:
        self.sent.append((bytes(data), addr))

    def send_run(self, buf, segment, addr) -> None:
        self.sent.append((bytes(buf), addr))


class FakeEdge:
    def __init__(self) -> None:
        self.counters = {"joined": 2}
        self.configured: tuple | None = None

    def interest(self):
        return {("eu", "app/room"): (True, False), ("eu", "app/a"): (False, True)}

    def joined(self) -> int:
        return 3

    def configure(self, app_keys, zones, drained) -> None:
        self.configured = (app_keys, zones, drained)


def control(**kinds) -> relay_pb2.ControllerMessage:
    return relay_pb2.ControllerMessage(**kinds)


def peers_message(**fields) -> relay_pb2.ControllerMessage:
    return control(peers=relay_pb2.PeerList(peers=[
        relay_pb2.Peer(region="ams", probe_addr="127.0.0.1:9001"),
        relay_pb2.Peer(region="par", probe_addr="[::1]:9002"),
        relay_pb2.Peer(region="fra", probe_addr="127.0.0.1:9000"),  # itself
        relay_pb2.Peer(region="sin", probe_addr="no-port"),
    ], **fields))


def routes_message(version: int = 1) -> relay_pb2.ControllerMessage:
    return control(routes=relay_pb2.RouteTable(version=version, nonce="n1", routes=[
        relay_pb2.RouteEntry(dst="ams", next_hop="ams", path=["fra", "ams"], cost_ms=5.0,
                             backup_next_hop="par"),
        relay_pb2.RouteEntry(dst="lhr", next_hop="ams", path=["fra", "ams", "lhr"],
                             cost_ms=9.0, backup_next_hop="par"),
    ]))


def node(**settings) -> tuple[RelayNode, FakeSocket]:
    """A node whose transport and chaos sit on a fake socket, with a control session that
    is connected (its outbox a queue)."""
    n = RelayNode("fra", "127.0.0.1:1", ("127.0.0.1", 0), settings=RelaySettings(**settings),
                  tls=None)
    sock = FakeSocket()
    n.transport.socket = sock
    n.chaos.attach(sock, n.scheduler.peers)
    n.control.outbox = asyncio.Queue()
    return n, sock


def drain(n: RelayNode) -> list[relay_pb2.RelayMessage]:
    out = []
    while not n.control.outbox.empty():
        out.append(n.control.outbox.get_nowait())
    return out


def test_the_constructor_keeps_its_signature_and_defaults():
    n = RelayNode("fra", "127.0.0.1:1", ("127.0.0.1", 0), tls=None)
    assert n.settings == DEFAULT_SETTINGS == RelaySettings()
    assert isinstance(n.transport, Direct) and n.udp is None
    assert n.tables is n.scheduler.tables is n.fabric.tables is n.control.tables
    assert n.counters is n.fabric.counters is n.scheduler.counters is n.control.counters
    wan = RelayNode("fra", "127.0.0.1:1", ("127.0.0.1", 0), wan={"ams": WanLink(5.0)},
                    tls=None)
    assert isinstance(wan.transport, EmulatedWan)


def test_the_peer_list_reaches_the_scheduler_with_its_settings():
    n, _ = node()
    assert n.on_control(peers_message(probe_interval_s=0.3, report_interval_s=2.0,
                                      neighbour_probe_interval_s=0.05, down_after=5)) is None
    s = n.scheduler
    assert s.peers == {"ams": ("127.0.0.1", 9001), "par": ("::1", 9002)}
    assert s.probe_interval_s == 0.3 and s.neighbour_probe_interval_s == 0.05
    assert n.control.report_interval_s == 2.0
    assert all(stats.settings.down_after == 5 for stats in s.stats.values())
    # zero on the wire: unchanged
    n.on_control(peers_message())
    assert s.probe_interval_s == 0.3 and s.settings.probe.down_after == 5
    assert n.fabric.send("ams", b"x") and n.fabric.send("sin", b"y") is False


def test_route_tables_are_acknowledged_or_rejected_with_a_reason():
    n, _ = node()
    n.on_control(control(config=relay_pb2.RelayConfig(fabric_key=KEY, zones=["global"])))
    ack = n.on_control(routes_message(3)).ack
    assert (ack.version, ack.nonce, ack.accepted, ack.reason) == (3, "n1", True, "")
    assert n.fabric.transit_index[(b"global", b"lhr")][0] == "ams"
    assert n.scheduler.routed_to == {"ams", "par"}
    nack = n.on_control(routes_message(2)).ack
    assert not nack.accepted and "stale version 2" in nack.reason
    assert n.counters["tables_rejected"] == 1 and n.tables.version == 3


def test_a_dead_next_hop_reroutes_the_fast_path_and_tells_the_controller():
    n, sock = node()
    n.on_control(control(config=relay_pb2.RelayConfig(fabric_key=KEY, zones=["global"])))
    n.on_control(peers_message())
    n.on_control(routes_message())
    drain(n)
    start = time.monotonic()
    t = start
    par = ("::1", 9002)
    while not n.scheduler.stats["ams"].is_down:  # ams does not answer, the backup par does
        t += 0.05
        seen = len(sock.sent)
        n.scheduler.probe_due(t)
        for data, addr in sock.sent[seen:]:
            if addr == par:
                reply = packets.encode_probe(
                    packets.PROBE_REPLY, packets.decode(data, PROBE_KEYS).seq, "par",
                    PROBE_KEYS)
                n.scheduler.on_probe_packet(reply, par, t + 0.01)
        assert t < start + 30
    assert n.scheduler.stats["par"].state == "up"
    assert sock.sent and all(packets.decode(d, PROBE_KEYS).kind == packets.PROBE
                             for d, _ in sock.sent)
    assert n.fabric.transit_index[(b"global", b"lhr")][0] == "par"
    out = drain(n)
    assert [m.WhichOneof("msg") for m in out] == ["report", "events"]
    assert {x.dst: x.state for x in out[0].report.links}["ams"] == relay_pb2.LINK_STATE_DOWN
    events = out[1].events.events
    assert [(e.kind, e.peer) for e in events][-2:] == [("link-down", "ams"), ("reroute", "ams")]
    assert events[-1].routes == 2
    assert abs(events[-1].at_unix_s - time.time()) < 60  # on the wall clock


def test_events_wait_for_the_controller_and_keep_the_last_max_events():
    n, _ = node(max_events=3)
    n.control.outbox = None
    for i in range(5):
        n.on_control(control(chaos=relay_pb2.Chaos(drop_peers=[f"p{i}"])))
    assert [e.detail for e in n.control.events] == [
        f"dropping traffic with p{i}" for i in (2, 3, 4)]
    n.control.outbox = asyncio.Queue()
    n.control.flush_events()
    assert len(drain(n)[0].events.events) == 3 and n.control.events == []


def test_chaos_from_the_controller_blocks_peers_and_ends_by_itself():
    n, sock = node()
    n.on_control(peers_message())
    until = time.time() + 100
    n.on_control(control(chaos=relay_pb2.Chaos(drop_peers=["par"], until_unix_s=until)))
    assert sock.blocked == {("::1", 9002)}
    n.on_control(peers_message())  # the peer list again: still blocked
    assert sock.blocked == {("::1", 9002)}
    n.control.end_expired_chaos(until - 1)
    assert sock.blocked
    n.control.end_expired_chaos(until)
    assert sock.blocked == frozenset()
    details = [e.detail for m in drain(n) for e in m.events.events]
    assert details == ["dropping traffic with par", "dropping traffic with nothing"]


def test_the_edge_is_configured_and_its_interest_and_counters_reported():
    n, _ = node()
    edge = FakeEdge()
    n.control.edge = edge
    n.on_control(control(config=relay_pb2.RelayConfig(
        fabric_key=KEY, zones=["eu"], drained=True,
        app_keys={"app": relay_pb2.AppKeys(public_keys=[b"p" * 32, b"q" * 32])})))
    assert edge.configured == ({"app": (b"p" * 32, b"q" * 32)}, {"eu"}, True)
    n.fabric.interest_changed()
    channels = drain(n)[0].channels.channels
    assert [(c.channel, c.subscribers, c.publishers) for c in channels] == [
        ("app/a", False, True), ("app/room", True, False)]
    n.counters["rerouted"] += 1
    counters = n.control.link_report().counters
    assert counters["edge.joined"] == 2 and counters["rerouted"] == 1
    assert counters["edge.sessions"] == 3  # the sessions joined now, a gauge


def test_fabric_keys_reach_the_fabric_by_epoch():
    n, _ = node()
    n.on_control(control(config=relay_pb2.RelayConfig(
        fabric_key=KEY, fabric_epoch=7, zones=["eu"],
        accepted_fabric_keys=[relay_pb2.FabricKey(epoch=6, key=b"o" * 32),
                              relay_pb2.FabricKey(epoch=8, key=b"n" * 32)])))
    keys = n.fabric.keys
    assert (keys.current, keys.epoch) == (KEY, 7)
    assert keys.by_epoch == {6: b"o" * 32, 7: KEY, 8: b"n" * 32}
    assert sorted(n.fabric.seal_checks) == [6, 7, 8]
    # and the scheduler the probe keys derived from them, sending under the fabric's epoch
    assert n.scheduler.keys == packets.ProbeKeys.derive(7, keys.by_epoch)
    assert n.scheduler.keys.epochs == (6, 7, 8) and n.scheduler.keys.can_send
    n.on_control(control(config=relay_pb2.RelayConfig(fabric_key=b"n" * 32, fabric_epoch=8,
                                                      zones=["eu"])))
    assert n.fabric.keys.by_epoch == {8: b"n" * 32} and list(n.fabric.seal_checks) == [8]
    assert n.scheduler.keys == packets.ProbeKeys.derive(8, {8: b"n" * 32})


def test_a_node_probes_only_once_configured_with_a_key():
    n, sock = node()
    n.on_control(peers_message())
    n.scheduler.probe_due(time.monotonic() + 1.0)
    assert sock.sent == [] and n.counters["probe.no-key"] == 2
    n.scheduler.on_probe_packet(packets.encode_probe(packets.PROBE, 1, "ams", PROBE_KEYS),
                                ("127.0.0.1", 9001), time.monotonic())
    assert sock.sent == [] and n.counters["probe.no-key-dropped"] == 1
    n.on_control(control(config=relay_pb2.RelayConfig(fabric_key=KEY, zones=["global"])))
    n.scheduler.probe_due(time.monotonic() + 2.0)
    assert sorted(addr for _, addr in sock.sent) == [("127.0.0.1", 9001), ("::1", 9002)]
    assert all(packets.decode(d, PROBE_KEYS).epoch == 0 for d, _ in sock.sent)


def test_members_reach_the_fabric():
    n, _ = node()
    n.on_control(control(members=relay_pb2.ChannelMembers(zone="eu", channel="app/room",
                                                           regions=["fra", "ams"])))
    assert n.fabric.destinations(("eu", "app/room")) == {"ams"}


def test_the_socket_is_wired_to_the_fast_path_and_answers_probes():
    async def main():
        n = RelayNode("fra", "127.0.0.1:1", ("127.0.0.1", 0), tls=None)
        got: asyncio.Future = asyncio.get_running_loop().create_future()
        peer = await BatchedUDP.bind(
            ("127.0.0.1", 0), lambda data, addr: got.done() or got.set_result(data))
        try:
            host, port = await n.start_udp()
            udp = n.udp
            assert n.transport.socket is udp and n.chaos.socket is udp
            assert udp.take == n.fabric.transit_run
            assert n.fabric.direct_send == udp.send
            assert n.fabric.direct_send_run == udp.send_run
            n.on_control(control(peers=relay_pb2.PeerList(peers=[relay_pb2.Peer(
                region="ams", probe_addr="{}:{}".format(*peer.sockname()))])))
            assert n.fabric.peer_addr("ams") == peer.sockname()
            n.on_control(control(config=relay_pb2.RelayConfig(fabric_key=KEY,
                                                              zones=["global"])))
            peer.send(packets.encode_probe(packets.PROBE, 41, "ams", PROBE_KEYS), (host, port))
            reply = packets.decode(await asyncio.wait_for(got, 5.0), PROBE_KEYS)
            assert (reply.kind, reply.seq, reply.region) == (packets.PROBE_REPLY, 41, "fra")
        finally:
            peer.close()
            if n.udp is not None:
                n.udp.close()

    asyncio.run(main())


def test_with_an_emulated_wan_transit_goes_through_it():
    async def main():
        n = RelayNode("fra", "127.0.0.1:1", ("127.0.0.1", 0), wan={"ams": WanLink(5.0)},
                    tls=None)
        try:
            await n.start_udp()
            assert n.fabric.direct_send is None and n.fabric.direct_send_run is None
            assert n.transport.socket is n.udp
            n.on_control(control(peers=relay_pb2.PeerList(peers=[
                relay_pb2.Peer(region="par", probe_addr="127.0.0.1:9")])))
            assert n.fabric.send("par", b"x")  # to the WAN, which has no link to par
            assert n.counters["wan_dropped"] == 1
        finally:
            n.udp.close()

    asyncio.run(main())


def test_a_table_of_changes_applies_to_the_version_it_names():
    n, _ = node()
    assert n.on_control(routes_message(1)).ack.accepted
    changes = control(routes=relay_pb2.RouteTable(
        version=2, nonce="n2", base_version=1,
        routes=[relay_pb2.RouteEntry(dst="par", next_hop="par", path=["fra", "par"],
                                     cost_ms=4.0)],
        removed=[relay_pb2.RouteKey(zone="global", dst="lhr")]))
    ack = n.on_control(changes).ack
    assert ack.accepted and ack.version == 2
    assert set(n.tables.entries) == {("global", "ams"), ("global", "par")}
    # changes to a version the relay does not hold: rejected with the reason, table kept
    stale = control(routes=relay_pb2.RouteTable(version=3, nonce="n3", base_version=9))
    ack = n.on_control(stale).ack
    assert not ack.accepted and "not held" in ack.reason and n.tables.version == 2


def test_the_relay_serves_once_connected_and_holding_tables():
    """What its health service says (relay/health.py): a session and a route table."""
    n, _ = node()
    n.control.outbox = None
    assert not n.control.serving  # neither
    n.control.outbox = asyncio.Queue()
    assert not n.control.serving  # connected, no table yet
    n.on_control(control(config=relay_pb2.RelayConfig(fabric_key=KEY, zones=["global"])))
    n.on_control(routes_message(1))
    assert n.control.serving
    n.control.outbox = None  # the session is lost: it forwards on its tables, not serving
    assert not n.control.serving and n.tables.version == 1
