"""Regions that run several relay nodes, the relay's side: node-qualified destinations in
datagrams (relay/datagram.py), the data plane's hand-off to siblings and reliable messages
between nodes (relay/fabric.py, several Fabric objects wired in memory), the peer list held
per node with a transit node per region and its failover (relay/peernodes.py,
relay/control.py, relay/scheduler.py), chaos on every node of a region, and the node's
wiring (relay/node.py)."""

from __future__ import annotations

import random
from collections import Counter, deque

import pytest

from relay import datagram, packets
from relay.control import ControlSession
from relay.datagram import MEDIA, BadDatagram, Datagram, decode, encode, forward, split
from relay.fabric import Fabric
from relay.node import RelayNode
from relay.peernodes import Listed, PeerNodes
from relay.probe import LinkStats
from relay.reliable import ReliableSettings
from relay.scheduler import ProbeScheduler, RelaySettings
from relay.tables import Entry, RouteTables
from relay.transport import Chaos, ChaosPlan
from skymesh import nodes
from skymesh.linkstate import DEGRADED, DOWN, UP
from skymesh.v1 import relay_pb2
from skymesh.wan import WanLink
from tests.unit.relay.test_fabric import KEY, FakeEdge, run_lossy, tree_paths

ZONE = "eu"
CH = (ZONE, "app/room")
PROBE_KEYS = packets.ProbeKeys.derive(0, {0: KEY})


def dg(**kw) -> Datagram:
    base = dict(kind=MEDIA, zone=ZONE, channel="app/room", destinations=("fra/n1",),
                hop_limit=8, seq=1, publisher="pub", payload=b"frame")
    base.update(kw)
    return Datagram(**base)


# --- datagram destinations -------------------------------------------------------------------


def test_node_qualified_destinations_round_trip_beside_regions():
    dests = ("fra/n1", "fra/fra-2.b_C", "ams", "lon/" + "x" * 64)
    d = decode(encode(dg(destinations=dests), KEY), KEY)
    assert d.destinations == dests


@pytest.mark.parametrize("bad", ["fra/", "/n1", "FRA/n1", "fra/n 1", "fra/n1/x", "fra/..",
                                 "fra/.", "fra/" + "x" * 65, "fra/né", "f/n1"])
def test_bad_destination_names_are_refused_both_ways(bad):
    with pytest.raises(BadDatagram) as e:
        encode(dg(destinations=(bad,)), KEY)
    assert e.value.reason_code == "field"
    good = encode(dg(destinations=("fra/n1",)), KEY)
    tail = len(good) - len(b"fra/n1") - 3
    raw = bad.encode()
    forged = good[:tail] + bytes([8, 1, len(raw)]) + raw
    with pytest.raises(BadDatagram) as e:
        decode(forged, KEY)
    assert e.value.reason_code == "field"


def test_a_node_and_its_region_are_distinct_destinations_but_duplicates_are_not():
    assert decode(encode(dg(destinations=("fra", "fra/n1")), KEY), KEY).destinations == (
        "fra", "fra/n1")
    with pytest.raises(BadDatagram):
        encode(dg(destinations=("fra/n1", "fra/n1")), KEY)


def test_node_qualified_destinations_take_their_regions_next_hop():
    hops = {"ams": "ams", "nyc": "lon", "sin": None}
    local, groups, unroutable = split(
        ["fra", "fra/n2", "ams/a1", "ams/a2", "nyc/x", "nyc", "sin/s1", "syd/q"], hops, "fra")
    assert local == {"fra", "fra/n2"}
    assert groups == {"ams": frozenset({"ams/a1", "ams/a2"}),
                      "lon": frozenset({"nyc/x", "nyc"})}
    assert unroutable == {"sin/s1", "syd/q"}
    d = dg(destinations=("fra/n2", "ams/a1"), hop_limit=0)
    assert forward(d, hops, "fra") == (True, {}, {"ams/a1"})
    local, copies, _ = forward(dg(destinations=("fra/n2", "ams/a1", "ams/a2")), hops, "fra")
    assert local and copies["ams"].destinations == ("ams/a1", "ams/a2")


# --- the data plane across nodes -------------------------------------------------------------


class Net:
    """A relay node per Fabric, in regions of one or several nodes along a tree of regions.
    A relay's `send(region, data)` goes to the node of that region it sends its transit to
    (its rendezvous choice, or `transit[(sender, region)]`), `send_sibling` to the sibling;
    both queue. Each relay is named as destinations name it: "region/node" in a region of
    several nodes, the region alone in a region of one (whatever its node id)."""

    def __init__(self, nodes_of: dict[str, tuple[str, ...]], edges: list[tuple[str, str]],
                 transit: dict[tuple[str, str], str] | None = None,
                 reliable: ReliableSettings | None = None) -> None:
        self.nodes_of = nodes_of
        self.transit = transit or {}
        self.queue: deque[tuple[str, str, bytes]] = deque()  # (from, to, datagram)
        self.wan: Counter[tuple[str, str]] = Counter()  # between regions
        self.sibling: Counter[tuple[str, str]] = Counter()  # (from, to) within a region
        self.fabrics: dict[str, Fabric] = {}
        self.now = 0.0
        paths = tree_paths(edges)
        for region, ids in nodes_of.items():
            entries = [Entry(dst, path[1], path, 10.0 * (len(path) - 1), ZONE)
                       for (src, dst), path in sorted(paths.items()) if src == region]
            for node in ids:
                name = self.name(region, node)
                tables = RouteTables(region)
                assert tables.apply(1, entries) is None
                f = Fabric(region, tables, self._sender(name, node), lambda: self.now,
                           edge=FakeEdge(), reliable=reliable or ReliableSettings(),
                           node=node, send_sibling=self._sibling_sender(name, region))
                f.siblings = frozenset(n for n in ids if n != node)
                f.peer_nodes = {r: frozenset(ns) for r, ns in nodes_of.items() if r != region}
                f.configure(KEY, {}, [ZONE])
                self.fabrics[name] = f

    def name(self, region: str, node: str) -> str:
        return nodes.address(region, node) if len(self.nodes_of[region]) > 1 else region

    def _sender(self, src: str, node: str):
        def send(hop: str, data: bytes) -> bool:
            sender = nodes.address(nodes.region_of(src), node)
            to = self.transit.get((src, hop)) or nodes.choose(sender, self.nodes_of[hop])
            self.wan[(nodes.region_of(src), hop)] += 1
            self.queue.append((src, self.name(hop, to), bytes(data)))
            return True
        return send

    def _sibling_sender(self, src: str, region: str):
        def send(node: str, data: bytes) -> bool:
            to = self.name(region, node)
            self.sibling[(src, to)] += 1
            self.queue.append((src, to, bytes(data)))
            return True
        return send

    def subscribe(self, key, members) -> None:
        for m in members:
            if m in self.fabrics:  # else a region of several nodes, named whole
                self.fabrics[m].edge.subscribed.add(key)
        for f in self.fabrics.values():
            f.set_members(key, members)

    def run(self, now: float = 0.0) -> None:
        self.now = now
        while self.queue:
            _, to, data = self.queue.popleft()
            self.fabrics[to].on_datagram(data, now)

    def step(self, now: float, rng: random.Random | None = None, loss: float = 0.0) -> None:
        self.now = now
        batch = [self.queue.popleft() for _ in range(len(self.queue))]
        if rng is not None:
            rng.shuffle(batch)
        for _, to, data in batch:
            if rng is not None and rng.random() < loss:
                continue
            self.fabrics[to].on_datagram(data, now)
            if rng is not None and rng.random() < loss / 3:
                self.fabrics[to].on_datagram(data, now)  # duplicated on the way
        for f in self.fabrics.values():
            f.tick(now)

    def pending(self) -> int:
        return sum(len(o.stream.pending) for f in self.fabrics.values()
                   for o in f.outgoing.values())

    def drops(self) -> dict[str, dict[str, int]]:
        return {n: d for n, f in self.fabrics.items()
                if (d := {k: v for k, v in f.counters.items() if k.startswith("dropped.")})}


# ams (a1, a2) -- lon (one node, l1) -- fra (n1, n2)
NODES = {"ams": ("a1", "a2"), "lon": ("l1",), "fra": ("n1", "n2")}
EDGES = [("ams", "lon"), ("lon", "fra")]


@pytest.mark.parametrize("entry", ["n1", "n2"])
def test_a_two_node_region_gets_one_wide_area_copy_and_each_node_its_own(entry):
    other = {"n1": "n2", "n2": "n1"}[entry]
    net = Net(NODES, EDGES, transit={("lon", "fra"): entry})
    members = {"fra/n1", "fra/n2", "lon", "ams/a2"}
    net.subscribe(CH, members)
    for i in range(3):
        net.fabrics["ams/a1"].media_published(CH, "pub", b"frame-%d" % i)
        net.run()
    frames = [(CH, b"frame-%d" % i) for i in range(3)]
    for name, f in net.fabrics.items():
        assert f.edge.media == (frames if name in members else []), name
    # one copy per link of the tree, one hand-off per sibling with subscribers
    assert net.wan == {("ams", "lon"): 3, ("lon", "fra"): 3}
    assert net.sibling == {("ams/a1", "ams/a2"): 3, (f"fra/{entry}", f"fra/{other}"): 3}
    assert net.drops() == {}
    fra = net.fabrics[f"fra/{other}"]
    assert fra.counters[f"zone.{ZONE}.forwarded"] == 0  # delivers, hands nothing on


def test_a_datagram_for_a_sibling_only_is_handed_over_not_delivered():
    net = Net(NODES, EDGES, transit={("lon", "fra"): "n1"})
    net.subscribe(CH, {"fra/n2"})
    net.fabrics["fra/n1"].edge.subscribed.add(CH)  # subscribed, but not named: no copy
    net.fabrics["ams/a1"].media_published(CH, "pub", b"x")
    net.run()
    assert net.fabrics["fra/n1"].edge.media == []
    assert net.fabrics["fra/n2"].edge.media == [(CH, b"x")]
    assert net.sibling == {("fra/n1", "fra/n2"): 1} and net.drops() == {}


def test_the_bare_region_is_for_here_and_a_nodes_own_name_too():
    net = Net(NODES, EDGES, transit={("lon", "fra"): "n2"})
    net.subscribe(CH, {"fra", "fra/n1"})  # mid-change: the region and one node named
    net.fabrics["fra/n2"].edge.subscribed.add(CH)
    net.fabrics["ams/a1"].media_published(CH, "pub", b"x")
    net.run()
    assert net.fabrics["fra/n2"].edge.media == [(CH, b"x")]  # entered as "fra"
    assert net.fabrics["fra/n1"].edge.media == [(CH, b"x")]  # its own name
    assert net.sibling == {("fra/n2", "fra/n1"): 1}


def test_an_unknown_sibling_is_dropped_and_counted():
    net = Net(NODES, EDGES)
    n1 = net.fabrics["fra/n1"]
    n1.edge.subscribed.add(CH)
    n1.on_datagram(encode(dg(destinations=("fra/n1", "fra/n9")), KEY), 0.0)
    assert n1.edge.media == [(CH, b"frame")] and not net.queue
    assert n1.counters["dropped.no-node"] == 1


def test_a_sibling_checks_its_own_copy_for_replays():
    net = Net(NODES, EDGES)
    net.fabrics["fra/n2"].edge.subscribed.add(CH)
    raw = encode(dg(destinations=("fra/n2",)), KEY)
    n1 = net.fabrics["fra/n1"]
    for _ in range(2):  # not for n1: no window of its own to check, it hands it over
        n1.on_datagram(raw, 0.0)
    net.run()
    assert net.sibling == {("fra/n1", "fra/n2"): 2}
    assert net.fabrics["fra/n2"].edge.media == [(CH, b"frame")]
    assert net.fabrics["fra/n2"].counters["dropped.replay"] == 1


def test_a_sibling_copy_needs_a_hop_left():
    net = Net(NODES, EDGES)
    n1 = net.fabrics["fra/n1"]
    n1.on_datagram(encode(dg(destinations=("fra/n2",), hop_limit=0), KEY), 0.0)
    assert not net.queue and n1.counters["dropped.hop-limit"] == 1


def test_destinations_leave_out_this_relays_names_and_keep_its_siblings():
    net = Net(NODES, EDGES)
    n1 = net.fabrics["fra/n1"]
    n1.set_members(CH, {"fra", "fra/n1", "fra/n2", "ams/a1", "lon"})
    assert n1.destinations(CH) == {"fra/n2", "ams/a1", "lon"}
    assert n1.name == "fra/n1" and n1.is_here("fra") and not n1.is_here("fra/n2")
    alone = Fabric("fra", RouteTables("fra"), lambda hop, data: True, lambda: 0.0)
    assert alone.name == "fra" and not alone.is_here("fra/n1")


def reliable_net(transit=None) -> Net:
    return Net(NODES, EDGES, transit={("lon", "ams"): "a2", ("lon", "fra"): "n1",
                                      **(transit or {})})


def test_messages_to_two_nodes_are_delivered_once_each_and_acked_to_the_origin_node():
    net = reliable_net()
    members = {"fra/n1", "fra/n2", "lon", "ams/a2"}
    net.subscribe(CH, members)
    a1 = net.fabrics["ams/a1"]
    for i in range(5):
        a1.message_published(CH, "pub-1", "alice", i, f"m{i}", 0.0)
    net.run()
    expected = [(CH, "alice", i, f"m{i}") for i in range(5)]
    for name, f in net.fabrics.items():
        assert f.edge.messages == (expected if name in members else []), name
    out = a1.outgoing[(ZONE, "app/room", "pub-1")].stream
    assert out.pending == {} and out.acked == dict.fromkeys(members, 5)
    # every ack to "ams/a1" from afar came in at a2, the node lon sends to, and a2 handed
    # it over; lon, one node, named itself by its region, as the origin's members do
    assert net.sibling[("ams/a2", "ams/a1")] >= 2
    assert {inc.origin for f in net.fabrics.values() for inc in f.incoming.values()} == {
        "ams/a1"}
    assert not net.fabrics["ams/a2"].outgoing and net.drops() == {}
    net.step(10.0)  # nothing left to retransmit
    assert not net.queue and a1.counters["messages.retransmitted"] == 0


@pytest.mark.parametrize("seed", range(4))
def test_messages_across_nodes_survive_loss_duplication_and_reordering(seed):
    net = reliable_net()
    members = {"fra/n1", "fra/n2", "lon", "ams/a2"}
    net.subscribe(CH, members)
    a1 = net.fabrics["ams/a1"]
    n = 20

    def publish(i, now):
        if i < n:
            a1.message_published(CH, "pub-1", "alice", i, f"m{i}", now)

    run_lossy(net, seed, 0.3, publish)
    expected = [(CH, "alice", i, f"m{i}") for i in range(n)]
    for name in members:
        assert net.fabrics[name].edge.messages == expected, name
    out = a1.outgoing[(ZONE, "app/room", "pub-1")].stream
    assert out.pending == {} and out.acked == dict.fromkeys(members, n)
    assert sum(f.counters["messages.expired"] for f in net.fabrics.values()) == 0


def test_a_region_of_one_node_with_a_node_id_acks_as_its_region():
    net = reliable_net()
    net.subscribe(CH, {"lon"})
    net.fabrics["ams/a1"].message_published(CH, "pub-1", "alice", 1, "hi", 0.0)
    _, to, raw = net.queue[0]
    assert to == "lon"
    assert datagram.decode(raw, KEY).destinations == ("lon",)
    net.run()
    out = net.fabrics["ams/a1"].outgoing[(ZONE, "app/room", "pub-1")].stream
    assert out.acked == {"lon": 1} and out.pending == {}


def test_transit_fast_path_carries_node_qualified_names_of_listed_nodes():
    net = Net(NODES, EDGES)
    lon = net.fabrics["lon"]
    one = []
    lon.direct_send = lambda data, addr: one.append((addr, bytes(data)))
    lon.direct_send_run = lambda buf, size, addr: one.append((addr, bytes(buf)))
    lon.peer_addr = lambda region: (region, 1)
    lon.tables_changed()
    for name in ("fra/n2", "ams/a1"):
        raw = encode(dg(destinations=(name,)), KEY)
        assert lon.transit_run(raw, len(raw)) == []
        addr, data = one.pop()
        assert addr == (nodes.region_of(name), 1)
        d = decode(data, KEY)
        assert (d.destinations, d.hop_limit) == ((name,), 7)
    # a node the relay was not told of: the full path, which routes it by its region
    raw = encode(dg(destinations=("fra/n7",)), KEY)
    assert lon.transit_run(raw, len(raw)) == [0]
    lon.on_datagram(raw, 0.0)
    assert net.queue[-1][1] == net.name("fra", nodes.choose("lon/l1", ("n1", "n2")))
    # a destination of the relay's own region never takes the fast path
    n1 = net.fabrics["fra/n1"]
    n1.direct_send = lambda data, addr: one.append((addr, bytes(data)))
    n1.peer_addr = lambda region: (region, 1)
    n1.tables_changed()
    assert not any(dst.startswith(b"fra") for _, dst in n1.transit_index)
    raw = encode(dg(destinations=("fra/n2",)), KEY)
    assert n1.transit_run(raw, len(raw)) == [0] and not one


# --- the peer list by node ---------------------------------------------------------------------


def addr(i: int) -> tuple[str, int]:
    return (f"10.0.1.{i}", 9000)


AMS = ("a1", "a2", "a3")


class Rig:
    """Relay fra/fra-1's control session, scheduler and fabric on a virtual clock; probes
    are captured, not sent."""

    def __init__(self, node: str = "fra-1") -> None:
        self.now = 0.0
        self.counters: Counter[str] = Counter()
        self.sent: list[tuple[bytes, tuple[str, int], str]] = []
        tables = RouteTables("fra")
        self.scheduler = ProbeScheduler(
            "fra", RelaySettings(), tables,
            lambda data, a, region: self.sent.append((data, a, region)),
            random.Random(1), self.counters)
        self.scheduler.configure_keys(0, {0: KEY})
        self.fabric = Fabric("fra", tables, lambda hop, data: True, lambda: self.now,
                             self.counters, node=node)
        self.chaos = Chaos()
        self.session = ControlSession("fra", node, "controller", RelaySettings(),
                                      self.scheduler, self.fabric, self.chaos,
                                      self.counters, random.Random(1), clock=lambda: self.now)
        self.scheduler.on_links_changed = self.session.links_changed
        self.scheduler.on_forwarding_changed = self.fabric.tables_changed

    def peers(self, *peers: relay_pb2.Peer, removed=(), incremental: bool = False) -> None:
        self.session.on_control(relay_pb2.ControllerMessage(peers=relay_pb2.PeerList(
            peers=list(peers), removed=list(removed), incremental=incremental)))

    def full_list(self) -> None:
        self.peers(relay_pb2.Peer(region="fra", node_id="fra-1", probe_addr="10.0.0.1:9000"),
                   relay_pb2.Peer(region="fra", node_id="fra-2", probe_addr="10.0.0.2:9000"),
                   *[relay_pb2.Peer(region="ams", node_id=n, probe_addr=f"10.0.1.{i}:9000")
                     for i, n in enumerate(AMS, 1)],
                   relay_pb2.Peer(region="par", probe_addr="10.0.2.1:9000", near=True))

    def probe(self, until: float, answer: set[tuple[str, int]] = frozenset()) -> None:
        """The probe loop to `until` in steps of 50 ms, the probes to `answer` answered."""
        while self.now < until:
            self.now = round(self.now + 0.05, 6)
            seen = len(self.sent)
            self.scheduler.probe_due(self.now)
            for data, a, _ in self.sent[seen:]:
                if a in answer:
                    seq = packets.decode(data, PROBE_KEYS).seq
                    region = "ams" if a[0].startswith("10.0.1.") else "par"
                    self.scheduler.on_probe_packet(packets.encode_probe(
                        packets.PROBE_REPLY, seq, region, PROBE_KEYS), a, self.now + 0.01)


def ams_addr(node: str) -> tuple[str, int]:
    return addr(AMS.index(node) + 1)


def test_siblings_are_not_peers_and_each_region_has_one_transit_node():
    rig = Rig()
    rig.full_list()
    first = nodes.choose("fra/fra-1", AMS)
    assert rig.scheduler.peers == {"ams": ams_addr(first), "par": ("10.0.2.1", 9000)}
    assert rig.scheduler.near == {"par"}
    assert rig.fabric.siblings == {"fra-2"}
    assert rig.session.nodes.siblings == {"fra-2": ("10.0.0.2", 9000)}
    assert rig.fabric.peer_nodes == {"ams": frozenset(AMS), "par": frozenset()}
    assert set(rig.session.listed) == {"ams", "par"}
    rig.probe(1.0)
    probed = {a for _, a, _ in rig.sent}
    assert probed == {ams_addr(first), ("10.0.2.1", 9000)}  # no sibling, no other ams node


def test_the_transit_nodes_spread_over_a_regions_nodes_and_only_a_left_nodes_move():
    chosen = {}
    held = {}
    for i in range(300):
        me = PeerNodes("fra", f"fra-{i}")
        me.update([Listed("ams", n, ams_addr(n)) for n in AMS])
        me.transit(0.0)
        chosen[i] = me.chosen["ams"]
        held[i] = me
    spread = Counter(chosen.values())
    assert set(spread) == set(AMS) and all(70 <= c <= 130 for c in spread.values()), spread
    for i, me in held.items():
        me.update([], removed=["ams/a2"], incremental=True)
        _, moved = me.transit(1.0)
        if chosen[i] == "a2":
            assert moved == {"ams"} and me.chosen["ams"] == nodes.ranked(f"fra/fra-{i}", AMS)[1]
        else:
            assert moved == set() and me.chosen["ams"] == chosen[i]


def test_the_chosen_node_removed_moves_the_region_to_the_next_and_keeps_its_link():
    rig = Rig()
    rig.full_list()
    first, second, third = nodes.ranked("fra/fra-1", AMS)
    rig.probe(2.0, answer={ams_addr(first)})
    stats = rig.scheduler.stats["ams"]
    assert stats.measured and stats.state == UP
    rig.peers(removed=[f"ams/{second}"], incremental=True)  # not the chosen one: no change
    assert rig.scheduler.peers["ams"] == ams_addr(first)
    rig.peers(removed=[f"ams/{first}"], incremental=True)
    assert rig.scheduler.peers["ams"] == ams_addr(third)
    assert rig.scheduler.stats["ams"] is stats and stats.state == UP and not stats.outstanding
    assert "ams" not in rig.scheduler.unlisted
    seen = len(rig.sent)
    rig.probe(rig.now + 0.1)
    assert ams_addr(third) in {a for _, a, _ in rig.sent[seen:]}  # probed at once
    rig.peers(removed=["ams"], incremental=True)  # the whole region: unlisted as ever
    assert rig.scheduler.unlisted == {"ams": rig.now}
    assert rig.fabric.peer_nodes == {"par": frozenset()}
    # a sibling removed by its name, and a whole list without node ids (older controller)
    rig.peers(removed=["fra/fra-2"], incremental=True)
    assert rig.fabric.siblings == frozenset()
    rig.peers(relay_pb2.Peer(region="ams", probe_addr="10.0.9.9:9000"))
    assert rig.scheduler.peers["ams"] == ("10.0.9.9", 9000)
    assert rig.scheduler.stats["ams"] is not stats  # a new address of the same node: afresh


def test_a_dead_transit_node_fails_over_to_the_next_and_is_avoided_for_a_while():
    rig = Rig()
    rig.full_list()
    first, second, _ = nodes.ranked("fra/fra-1", AMS)
    alive = {ams_addr(n) for n in AMS if n != first} | {("10.0.2.1", 9000)}
    rig.probe(2.0, answer=alive | {ams_addr(first)})
    rig.probe(10.0, answer=alive)  # the first choice dies
    assert rig.scheduler.peers["ams"] == ams_addr(second)
    events = [(e.kind, e.peer) for e in rig.session.events]
    assert events.index(("link-down", "ams")) < events.index(("transit-node", "ams"))
    # the dead node's link had nothing to keep: the new node's starts afresh, and is up
    stats = rig.scheduler.stats["ams"]
    assert stats.state == UP and stats.lost == 0 and rig.scheduler.link_states["ams"] == UP
    assert "ams" not in rig.scheduler.down_links
    ((avoided, until),) = rig.session.nodes.avoided.items()
    assert avoided == ("ams", first) and rig.now + 20 < until < rig.now + 30
    # a peer list meanwhile keeps the relay off the dead node ...
    rig.peers(relay_pb2.Peer(region="lhr", probe_addr="10.0.3.1:9000"), incremental=True)
    assert rig.scheduler.peers["ams"] == ams_addr(second)
    # ... until the avoidance is over, when the first choice is tried again, the link up
    # on the second keeping what it measured
    rig.now += 31.0
    rig.peers(relay_pb2.Peer(region="lhr", probe_addr="10.0.3.1:9000"), incremental=True)
    assert rig.scheduler.peers["ams"] == ams_addr(first)
    assert rig.scheduler.stats["ams"] is stats and stats.state == UP


def test_the_first_choice_is_tried_again_once_its_avoidance_is_over_without_a_peer_list():
    rig = Rig()
    rig.full_list()
    first, second, _ = nodes.ranked("fra/fra-1", AMS)
    alive = {ams_addr(n) for n in AMS if n != first} | {("10.0.2.1", 9000)}
    rig.probe(2.0, answer=alive | {ams_addr(first)})
    rig.probe(10.0, answer=alive)
    assert rig.scheduler.peers["ams"] == ams_addr(second)
    rig.session.report_round()  # within the avoidance: stays
    assert rig.scheduler.peers["ams"] == ams_addr(second)
    rig.now += rig.session.nodes.avoid_s
    rig.session.report_round()  # no controller session: on its own
    assert rig.scheduler.peers["ams"] == ams_addr(first)
    assert rig.session.nodes.avoided == {}


def test_failover_goes_on_while_the_next_node_is_dead_too():
    rig = Rig()
    rig.full_list()
    first, second, third = nodes.ranked("fra/fra-1", AMS)
    rig.probe(15.0, answer={ams_addr(third)})
    assert rig.scheduler.peers["ams"] == ams_addr(third)
    assert rig.scheduler.stats["ams"].state == UP
    moves = [e.detail for e in rig.session.events if e.kind == "transit-node"]
    assert moves == [f"to node {second}: node {first} does not answer",
                     f"to node {third}: node {second} does not answer"]
    assert set(rig.session.nodes.avoided) == {("ams", first), ("ams", second)}


def test_a_failed_node_listed_anew_is_no_longer_avoided():
    rig = Rig()
    rig.full_list()
    first, second, _ = nodes.ranked("fra/fra-1", AMS)
    rig.probe(10.0, answer={ams_addr(second)})
    assert rig.scheduler.peers["ams"] == ams_addr(second)
    rig.peers(relay_pb2.Peer(region="ams", node_id=first, probe_addr="10.0.7.7:9000"),
              incremental=True)  # restarted elsewhere
    assert rig.scheduler.peers["ams"] == ("10.0.7.7", 9000)
    assert rig.session.nodes.avoided == {}


def test_a_region_of_one_node_does_not_fail_over():
    rig = Rig()
    rig.peers(relay_pb2.Peer(region="ams", node_id="a1", probe_addr="10.0.1.1:9000"))
    rig.probe(10.0)
    assert rig.scheduler.stats["ams"].state == DOWN
    assert rig.scheduler.peers["ams"] == ("10.0.1.1", 9000)
    assert "transit-node" not in [e.kind for e in rig.session.events]


def test_when_every_node_failed_the_relay_stays_where_it_is():
    rig = Rig()
    rig.peers(*[relay_pb2.Peer(region="ams", node_id=n, probe_addr=f"10.0.1.{i}:9000")
                for i, n in enumerate(AMS[:2], 1)])
    first, second = nodes.ranked("fra/fra-1", AMS[:2])
    rig.probe(20.0)
    assert rig.scheduler.peers["ams"] == ams_addr(second)  # tried once, and stays
    assert [e.kind for e in rig.session.events].count("transit-node") == 1


def test_probes_from_any_node_of_a_region_are_answered_where_they_came_from():
    rig = Rig()
    rig.full_list()
    other = nodes.ranked("fra/fra-1", AMS)[2]  # not the node this relay probes
    probe = packets.encode_probe(packets.PROBE, 7, "ams", PROBE_KEYS)
    rig.scheduler.on_probe_packet(probe, ams_addr(other), 0.0)
    ((reply, to, region),) = rig.sent
    assert (to, region) == (ams_addr(other), "ams")
    assert packets.decode(reply, PROBE_KEYS).kind == packets.PROBE_REPLY


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.blocked: frozenset[tuple[str, int]] = frozenset()

    def send(self, data, a) -> None:
        self.sent.append((bytes(data), a))

    def send_run(self, buf, segment, a) -> None:
        self.sent.append((bytes(buf), a))


def test_chaos_drops_a_region_with_every_node_of_it():
    rig = Rig()
    sock = FakeSocket()
    rig.chaos.attach(sock, rig.scheduler.peers)
    rig.full_list()
    rig.session.set_chaos(ChaosPlan(("ams",)))
    assert sock.blocked == {ams_addr(n) for n in AMS}
    rig.peers(relay_pb2.Peer(region="ams", node_id="a4", probe_addr="10.0.1.4:9000"),
              incremental=True)  # a node joins: dropped too
    assert ("10.0.1.4", 9000) in sock.blocked
    rig.session.set_chaos(ChaosPlan(drop_all=True))
    assert sock.blocked == {*(addr(i) for i in range(1, 5)), ("10.0.2.1", 9000),
                            ("10.0.0.2", 9000)}
    rig.session.set_chaos(ChaosPlan())
    assert sock.blocked == frozenset()


# --- the node ----------------------------------------------------------------------------------


def test_a_node_id_that_cannot_name_a_destination_is_refused():
    for bad in ("fra/1", "a b", "x" * 65, ".."):
        with pytest.raises(ValueError, match="node id"):
            RelayNode("fra", "127.0.0.1:1", ("127.0.0.1", 0), tls=None, node_id=bad)
    made_up = RelayNode("fra", "127.0.0.1:1", ("127.0.0.1", 0), tls=None)
    assert nodes.check_node_id(made_up.node_id) and made_up.fabric.node == made_up.node_id


def test_a_node_sends_to_its_siblings_straight_through_the_socket():
    # with an emulated WAN, which must not delay traffic within the region (its call_later
    # needs a running loop: going through it here would raise)
    n = RelayNode("fra", "127.0.0.1:1", ("127.0.0.1", 0), wan={"ams": WanLink(5.0)},
                  tls=None, node_id="fra-1")
    sock = FakeSocket()
    n.udp = n.transport.socket = sock
    n.on_control(relay_pb2.ControllerMessage(config=relay_pb2.RelayConfig(
        fabric_key=KEY, zones=[ZONE])))
    n.on_control(relay_pb2.ControllerMessage(peers=relay_pb2.PeerList(peers=[
        relay_pb2.Peer(region="fra", node_id="fra-1", probe_addr="127.0.0.1:9000"),
        relay_pb2.Peer(region="fra", node_id="fra-2", probe_addr="127.0.0.1:9002")])))
    assert n.scheduler.peers == {}
    n.on_control(relay_pb2.ControllerMessage(members=relay_pb2.ChannelMembers(
        zone=ZONE, channel="app/room", regions=["fra/fra-1", "fra/fra-2"])))
    n.fabric.media_published(CH, "pub", b"x")
    ((data, to),) = sock.sent
    assert to == ("127.0.0.1", 9002) and n.counters["sibling.sent"] == 1
    assert decode(data, KEY).destinations == ("fra/fra-2",)
    assert not n.send_sibling("fra-9", b"y") and n.counters["dropped.no-node"] == 1
    # a datagram from a sibling takes the normal path: delivered here, not handed on
    edge = FakeEdge()
    edge.subscribed.add(CH)
    n.fabric.edge = edge
    n.on_datagram(encode(dg(destinations=("fra/fra-1",)), KEY), ("127.0.0.1", 9002))
    assert edge.media == [(CH, b"frame")] and len(sock.sent) == 1


def test_an_older_controllers_list_without_node_ids_is_one_node_per_region():
    n = RelayNode("fra", "127.0.0.1:1", ("127.0.0.1", 0), tls=None, node_id="fra-1")
    n.on_control(relay_pb2.ControllerMessage(peers=relay_pb2.PeerList(peers=[
        relay_pb2.Peer(region="fra", probe_addr="127.0.0.1:9000"),
        relay_pb2.Peer(region="ams", probe_addr="127.0.0.1:9001")])))
    assert n.scheduler.peers == {"ams": ("127.0.0.1", 9001)}
    assert n.fabric.siblings == frozenset()


def test_a_link_that_changes_node_keeps_its_rtt_and_forgets_the_old_nodes_losses():
    stats = LinkStats()
    for seq in range(1, 10):
        stats.sent(seq, seq * 1.0)
        if seq % 4:
            stats.received(seq, seq * 1.0 + 0.02)
        else:
            stats.expire(seq * 1.0 + 5)
    stats.sent(10, 20.0)
    assert stats.state == DEGRADED and not stats.is_down
    srtt, min_rtt = stats.srtt, stats.min_rtt
    stats.node_changed()
    assert stats.outstanding == {} and stats.late == {} and stats.loss == 0.0
    assert (stats.srtt, stats.min_rtt) == (srtt, min_rtt) and stats.state == UP


def test_the_transit_nodes_follow_the_weights_the_controller_gives():
    """Relays choose a region's nodes in proportion to their weights (from the wire:
    PeerList.peers[].weight, 0 or missing meaning 1); a weight re-listed at the same address
    moves only the senders it decides and keeps what a relay avoids."""
    weight = {"a1": 0.25, "a2": 1.0, "a3": 1.0}
    held = {}
    for i in range(900):
        rig = PeerNodes("fra", f"fra-{i}")
        rig.update([Listed("ams", n, ams_addr(n), weight=weight[n]) for n in AMS])
        rig.transit(0.0)
        held[i] = rig
    spread = Counter(me.chosen["ams"] for me in held.values())
    assert 0.07 < spread["a1"] / 900 < 0.15, spread  # 1/9 of the senders
    for me in held.values():  # a1 back to weight 1 (listed again without one)
        before = me.chosen["ams"]
        me.update([Listed("ams", "a1", ams_addr("a1"))], incremental=True)
        _, moved = me.transit(1.0)
        assert me.chosen["ams"] in (before, "a1") and (moved == {"ams"}) == (
            me.chosen["ams"] != before)
    spread = Counter(me.chosen["ams"] for me in held.values())
    assert all(240 <= c <= 360 for c in spread.values()), spread
    # on the wire
    rig = Rig()
    rig.peers(*[relay_pb2.Peer(region="ams", node_id=n, probe_addr=f"10.0.1.{i}:9000",
                               weight=0.125 if n != "a3" else 0.0)
                for i, n in enumerate(AMS, 1)])
    assert rig.session.nodes.weights_of("ams") == {"a1": 0.125, "a2": 0.125, "a3": 1.0}
    rig.peers(relay_pb2.Peer(region="ams", node_id="a1", probe_addr="10.0.1.1:9000",
                             weight=float("nan")), incremental=True)
    assert rig.session.nodes.weights_of("ams")["a1"] == 1.0  # no number: no weight
    rig.peers(removed=["ams/a1"], incremental=True)
    assert ("ams", "a1") not in rig.session.nodes.weights
