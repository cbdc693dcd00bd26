"""The relay data plane without sockets (relay/fabric.py): several Fabric instances, one per
region, wired by an in-memory network that the tests drive with a simulated clock."""

from __future__ import annotations

import random
from collections import Counter, deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay import datagram, fabric
from relay.datagram import ACK, KINDS, MEDIA, MESSAGE, Datagram
from relay.fabric import (
    HOP_LIMIT,
    Fabric,
    decode_message,
    encode_message_tail,
)
from relay.metrics import fabric_families
from relay.reliable import ReliableSettings
from relay.tables import Entry, RouteTables
from skymesh.edgeproto import decode_batch, encode_batches

KEY = b"k" * 32
OLD_KEY = b"o" * 32
ZONE = "eu"
CHANNEL = "app/room"
CH = (ZONE, CHANNEL)

#        ams
#       /   \
#     fra    lon
#    /  \      \
#  waw  vie    nyc
#             /   \
#           sfo   mia
TREE = [("ams", "fra"), ("ams", "lon"), ("fra", "waw"), ("fra", "vie"), ("lon", "nyc"),
        ("nyc", "sfo"), ("nyc", "mia")]


class FakeEdge:
    """The local edge as the fabric sees it: who is subscribed, and what was delivered."""

    def __init__(self) -> None:
        self.subscribed: set[tuple[str, str]] = set()
        self.media: list[tuple[tuple[str, str], bytes]] = []
        self.messages: list[tuple[tuple[str, str], str, int, str]] = []
        self.numbered: list[tuple[str | None, int | None]] = []  # (stream, seq) of each
        self.replayed: list[tuple[tuple[str, str], str, int, str, str, int]] = []
        self.streams: set[str] = set()
        self.settled: list[tuple[str, int]] = []  # (stream, client's message id)
        self.comments: list[tuple[tuple[str, str], bytes]] = []

    def members(self, key):
        return {"a-session"} if key in self.subscribed else set()

    def delivers(self, key):
        return bool(self.members(key))

    def deliver_media(self, key, data, stream=None):
        self.media.append((key, data))

    def deliver_message(self, key, uid, mid, body, stream=None, seq=None):
        self.messages.append((key, uid, mid, body))
        self.numbered.append((stream, seq))

    def deliver_replayed(self, key, uid, mid, body, stream, seq):
        self.replayed.append((key, uid, mid, body, stream, seq))

    def has_stream(self, stream):
        return stream in self.streams

    def stream_settled(self, stream, mid):
        self.settled.append((stream, mid))

    def members_changed(self, key, names):
        pass

    def deliver_comments(self, key, payload):
        self.comments.append((key, payload))


def tree_paths(edges: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, ...]]:
    """The unique path between every ordered pair of regions of an undirected tree."""
    adj: dict[str, set[str]] = {}
    for a, b in edges:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    paths = {}
    for src in adj:
        prev = {src: None}
        todo = deque([src])
        while todo:
            here = todo.popleft()
            for nxt in sorted(adj[here]):
                if nxt not in prev:
                    prev[nxt] = here
                    todo.append(nxt)
        for dst in adj:
            if dst != src:
                path, at = [], dst
                while at is not None:
                    path.append(at)
                    at = prev[at]
                paths[(src, dst)] = tuple(reversed(path))
    return paths


class Mesh:
    """One Fabric per region of a tree, all zones routed along the tree; `send` queues."""

    def __init__(self, edges, zones=(ZONE,), hop_cost_ms: float = 10.0,
                 reliable: ReliableSettings | None = None) -> None:
        self.paths = tree_paths(edges)
        self.regions = sorted({r for pair in edges for r in pair})
        self.queue: deque[tuple[str, str, bytes]] = deque()
        self.links: Counter[tuple[str, str]] = Counter()
        self.fabrics: dict[str, Fabric] = {}
        self.now = 0.0  # the simulated clock, for calls that do not say the time
        for r in self.regions:
            tables = RouteTables(r)
            entries = [Entry(dst, path[1], path, hop_cost_ms * (len(path) - 1), zone)
                       for (src, dst), path in sorted(self.paths.items()) if src == r
                       for zone in zones]
            assert tables.apply(1, entries) is None
            f = Fabric(r, tables, self._sender(r), lambda: self.now, edge=FakeEdge(),
                       reliable=reliable or ReliableSettings())
            f.configure(KEY, {}, zones)
            self.fabrics[r] = f

    def _sender(self, src: str):
        def send(hop: str, data: bytes) -> bool:
            self.links[(src, hop)] += 1
            self.queue.append((src, hop, bytes(data)))  # what a UDP socket hands over
            return True
        return send

    def subscribe(self, key, regions) -> None:
        for r in regions:
            self.fabrics[r].edge.subscribed.add(key)
        for f in self.fabrics.values():
            f.set_members(key, regions)

    def run(self, now: float = 0.0) -> None:
        """Deliver until nothing is in flight (no loss)."""
        self.now = now
        while self.queue:
            _, hop, data = self.queue.popleft()
            self.fabrics[hop].on_datagram(data, now)

    def step(self, now: float, rng: random.Random | None = None, loss: float = 0.0) -> None:
        """Deliver what is in flight now (lossy, reordered, duplicated with `rng`), then tick
        every fabric."""
        self.now = now
        batch = [self.queue.popleft() for _ in range(len(self.queue))]
        if rng is not None:
            rng.shuffle(batch)
        for _, hop, data in batch:
            if rng is not None and rng.random() < loss:
                continue
            self.fabrics[hop].on_datagram(data, now)
            if rng is not None and rng.random() < loss / 3:
                self.fabrics[hop].on_datagram(data, now)  # duplicated on the way
        for f in self.fabrics.values():
            f.tick(now)

    def pending(self) -> int:
        return sum(len(o.stream.pending) for f in self.fabrics.values()
                   for o in f.outgoing.values())

    def edge(self, region: str) -> FakeEdge:
        return self.fabrics[region].edge

    def total(self, name: str) -> int:
        return sum(f.counters[name] for f in self.fabrics.values())


def links_of_tree(paths, origin: str, members) -> set[tuple[str, str]]:
    out = set()
    for m in members:
        if m != origin:
            p = paths[(origin, m)]
            out.update(zip(p, p[1:], strict=False))
    return out


def signed(d: Datagram, key: bytes = KEY) -> bytes:
    return datagram.encode(d, key)


def dg(**kw) -> Datagram:
    base = dict(kind=MEDIA, zone=ZONE, channel=CHANNEL, destinations=("fra",), hop_limit=8,
                seq=1, publisher="pub", payload=b"frame")
    base.update(kw)
    return Datagram(**base)


def no_drops(mesh: Mesh) -> None:
    drops = {r: {k: v for k, v in f.counters.items() if k.startswith("dropped.")}
             for r, f in mesh.fabrics.items()}
    assert all(not d for d in drops.values()), drops


# --- media fan-out ---------------------------------------------------------------------------


def test_media_reaches_every_member_once_and_each_link_carries_one_copy():
    mesh = Mesh(TREE)
    members = {"fra", "waw", "sfo", "mia", "lon"}
    mesh.subscribe(CH, members)
    for i in range(5):
        mesh.fabrics["fra"].media_published(CH, "pub", b"frame-%d" % i)
        mesh.run()
    frames = [(CH, b"frame-%d" % i) for i in range(5)]
    for r in mesh.regions:
        expected = frames if r in members - {"fra"} else []
        assert mesh.edge(r).media == expected, r
    tree = links_of_tree(mesh.paths, "fra", members)
    assert tree == {("fra", "waw"), ("fra", "ams"), ("ams", "lon"), ("lon", "nyc"),
                    ("nyc", "sfo"), ("nyc", "mia")}
    assert dict(mesh.links) == dict.fromkeys(tree, 5)
    no_drops(mesh)
    assert mesh.fabrics["nyc"].counters[f"zone.{ZONE}.delivered"] == 0  # transit only
    # what each relay sent to each next hop: the links its relay watches closely
    for r in mesh.regions:
        assert dict(mesh.fabrics[r].sent_to) == {b: n for (a, b), n in mesh.links.items()
                                                 if a == r}, r


@settings(max_examples=60, deadline=None)
@given(parents=st.lists(st.integers(0, 10**6), min_size=1, max_size=11),
       origin=st.integers(0, 10**6), members=st.sets(st.integers(0, 11)),
       packets=st.integers(1, 3))
def test_fan_out_on_any_tree_is_one_copy_per_link_and_one_delivery_per_member(
        parents, origin, members, packets):
    names = [f"r{i:02d}" for i in range(len(parents) + 1)]
    edges = [(names[p % (i + 1)], names[i + 1]) for i, p in enumerate(parents)]
    mesh = Mesh(edges)
    src = names[origin % len(names)]
    regions = {names[m] for m in members if m < len(names)} | {src}
    mesh.subscribe(CH, regions)
    for i in range(packets):
        mesh.fabrics[src].media_published(CH, "pub", b"p%d" % i)
    mesh.run()
    for r in names:
        got = [data for _, data in mesh.edge(r).media]
        assert got == ([b"p%d" % i for i in range(packets)] if r in regions - {src} else []), r
    tree = links_of_tree(mesh.paths, src, regions)
    assert dict(mesh.links) == dict.fromkeys(tree, packets)
    no_drops(mesh)


def test_no_members_or_no_key_sends_nothing():
    mesh = Mesh(TREE)
    mesh.fabrics["fra"].media_published(CH, "pub", b"x")  # nobody subscribed
    mesh.subscribe(CH, {"fra"})  # only the origin itself
    mesh.fabrics["fra"].media_published(CH, "pub", b"x")
    mesh.subscribe(CH, {"fra", "waw"})
    mesh.fabrics["fra"].configure(b"", {}, [ZONE])  # no key from the controller yet
    mesh.fabrics["fra"].media_published(CH, "pub", b"x")
    assert not mesh.queue and not mesh.links
    mesh.fabrics["fra"].configure(KEY, {}, [ZONE])
    mesh.fabrics["fra"].media_published(CH, "pub", b"x")
    mesh.run()
    assert mesh.edge("waw").media == [(CH, b"x")]


def test_unroutable_destination_is_counted_and_the_others_still_served():
    mesh = Mesh(TREE)
    fra = mesh.fabrics["fra"]
    assert fra.tables.apply(2, [e for e in fra.tables.entries.values() if e.dst != "sfo"]) is None
    fra.tables_changed()
    mesh.subscribe(CH, {"fra", "sfo", "mia"})
    fra.media_published(CH, "pub", b"x")
    mesh.run()
    assert fra.counters["dropped.unroutable"] == 1
    assert mesh.edge("mia").media == [(CH, b"x")]
    assert mesh.edge("sfo").media == []


def test_member_region_without_subscribers_gets_no_media_delivered():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    mesh.edge("waw").subscribed.clear()  # the last subscriber left before the update
    mesh.fabrics["fra"].media_published(CH, "pub", b"x")
    mesh.run()
    assert mesh.edge("waw").media == []
    assert mesh.fabrics["waw"].counters[f"zone.{ZONE}.received"] == 1
    assert mesh.fabrics["waw"].counters[f"zone.{ZONE}.delivered"] == 0


# --- reliable messages -----------------------------------------------------------------------


def run_lossy(mesh: Mesh, seed: int, loss: float, publish, steps: int = 60) -> float:
    """`publish(step, now)` during a lossy phase of `steps` ticks of 50 ms, then a clean phase
    until nothing is pending or in flight; returns the final time."""
    rng = random.Random(seed)
    now = 0.0
    for i in range(steps):
        now = i * 0.05
        publish(i, now)
        mesh.step(now, rng, loss)
    for _ in range(2000):
        now += 0.05
        mesh.step(now)
        if not mesh.queue and not mesh.pending():
            return now
    pytest.fail("messages still pending after the clean phase")


@pytest.mark.parametrize("seed", range(6))
def test_messages_reach_every_subscriber_in_order_once_across_loss(seed):
    mesh = Mesh(TREE)
    members = {"fra", "waw", "sfo", "mia", "lon", "vie"}
    mesh.subscribe(CH, members)
    origin = mesh.fabrics["fra"]
    n = 30

    def publish(i, now):
        if i < n:
            origin.message_published(CH, "pub-1", "alice", 100 + i, f"hello {i}", now)

    run_lossy(mesh, seed, 0.3, publish)
    expected = [(CH, "alice", 100 + i, f"hello {i}") for i in range(n)]
    for r in mesh.regions:
        assert mesh.edge(r).messages == (expected if r in members - {"fra"} else []), r
    out = origin.outgoing[(ZONE, CHANNEL, "pub-1")].stream
    assert out.pending == {}
    assert all(out.acked[r] == n for r in members - {"fra"})
    assert origin.counters["messages.retransmitted"] > 0
    assert mesh.total("messages.expired") == 0
    for f in mesh.fabrics.values():
        assert all(not inc.stream.buffer for inc in f.incoming.values())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), loss=st.floats(0.0, 0.5),
       late=st.sets(st.sampled_from(["waw", "sfo", "mia", "vie", "ams"])),
       n=st.integers(1, 12), join_at=st.integers(0, 11))
def test_late_subscribers_get_every_message_since_they_joined(seed, loss, late, n, join_at):
    mesh = Mesh(TREE)
    early = {"fra", "lon", "nyc"}
    mesh.subscribe(CH, early)
    origin = mesh.fabrics["fra"]
    join_at = min(join_at, n - 1)

    def publish(i, now):
        if i == join_at:
            mesh.subscribe(CH, early | late)
        if i < n:
            origin.message_published(CH, "pub", "u", i, f"m{i}", now)

    run_lossy(mesh, seed, loss, publish, steps=max(n, 20))
    for r in early - {"fra"}:
        assert [m[2] for m in mesh.edge(r).messages] == list(range(n)), r
    for r in late:
        assert [m[2] for m in mesh.edge(r).messages] == list(range(join_at, n)), r
    assert mesh.pending() == 0


def test_messages_before_the_controller_names_the_members_are_held_then_sent():
    mesh = Mesh(TREE)
    fra = mesh.fabrics["fra"]
    fra.message_published(CH, "pub", "u", 1, "early", 0.0)
    fra.message_published(CH, "pub", "u", 2, "early too", 0.1)
    assert fra.counters["messages.held"] == 2
    assert not mesh.queue and fra.outgoing == {}
    mesh.edge("waw").subscribed.add(CH)
    for f in mesh.fabrics.values():
        f.set_members(CH, {"fra", "waw"}, now=0.2)
    mesh.run(0.2)
    assert mesh.edge("waw").messages == [(CH, "u", 1, "early"), (CH, "u", 2, "early too")]
    assert fra.held == {} and mesh.pending() == 0


def test_held_messages_expire_after_give_up_s():
    mesh = Mesh(TREE, reliable=ReliableSettings(give_up_s=10.0))
    fra = mesh.fabrics["fra"]
    fra.message_published(CH, "pub", "u", 1, "lost", 0.0)
    fra.message_published(CH, "pub", "u", 2, "kept", 5.0)
    fra.tick(9.9)
    assert fra.counters["messages.expired"] == 0
    fra.tick(10.0)
    assert fra.counters["messages.expired"] == 1
    mesh.subscribe(CH, {"fra", "waw"})
    mesh.run(10.0)
    assert mesh.edge("waw").messages == [(CH, "u", 2, "kept")]
    fra.tick(100.0)
    assert fra.counters["messages.expired"] == 1


def test_two_publishers_are_two_independent_streams():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "sfo", "waw"})
    mesh.fabrics["fra"].message_published(CH, "s1", "alice", 1, "a1", 0.0)
    mesh.fabrics["sfo"].message_published(CH, "s2", "bob", 1, "b1", 0.0)
    mesh.fabrics["fra"].message_published(CH, "s1", "alice", 2, "a2", 0.0)
    mesh.run()
    got = mesh.edge("waw").messages
    assert [m for m in got if m[1] == "alice"] == [(CH, "alice", 1, "a1"), (CH, "alice", 2, "a2")]
    assert [m for m in got if m[1] == "bob"] == [(CH, "bob", 1, "b1")]
    assert mesh.edge("sfo").messages == [(CH, "alice", 1, "a1"), (CH, "alice", 2, "a2")]
    assert mesh.edge("fra").messages == [(CH, "bob", 1, "b1")]
    assert mesh.pending() == 0


def test_region_without_subscribers_acknowledges_so_the_origin_stops():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    mesh.edge("waw").subscribed.clear()
    mesh.fabrics["fra"].message_published(CH, "pub", "u", 1, "x", 0.0)
    mesh.run()
    assert mesh.edge("waw").messages == []
    assert mesh.pending() == 0
    assert mesh.fabrics["waw"].incoming == {}


def test_removed_member_gets_no_more_retransmissions():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw", "vie"})
    fra = mesh.fabrics["fra"]
    fra.message_published(CH, "pub", "u", 1, "x", 0.0)
    mesh.queue.clear()  # lost
    mesh.links.clear()
    mesh.subscribe(CH, {"fra", "vie"})
    now = 0.0
    for _ in range(40):
        now += 0.05
        mesh.step(now)
    assert ("fra", "waw") not in mesh.links
    assert mesh.links[("fra", "vie")] >= 1
    assert mesh.edge("vie").messages == [(CH, "u", 1, "x")]
    assert mesh.edge("waw").messages == []
    assert mesh.pending() == 0


def test_ack_for_an_unknown_stream_is_harmless():
    mesh = Mesh(TREE)
    fra = mesh.fabrics["fra"]
    fra.on_datagram(signed(dg(kind=ACK, destinations=("fra",), seq=5, publisher="ghost",
                              payload=b"waw")), 0.0)
    assert fra.counters[f"zone.{ZONE}.received"] == 1
    assert fra.outgoing == {} and not mesh.queue


def test_idle_streams_are_forgotten_busy_ones_kept():
    mesh = Mesh(TREE, reliable=ReliableSettings(give_up_s=1000.0, gap_timeout_s=1100.0))
    mesh.subscribe(CH, {"fra", "waw"})
    fra, waw = mesh.fabrics["fra"], mesh.fabrics["waw"]
    fra.message_published(CH, "pub", "u", 1, "x", 0.0)
    mesh.run(0.0)
    idle_in, idle_out = waw.in_stream_idle_s, fra.out_stream_idle_s
    assert idle_in < idle_out
    fra.tick(idle_in - 1)
    waw.tick(idle_in - 1)
    assert fra.outgoing and waw.incoming  # idle, but not for long enough
    fra.message_published(CH, "pub", "u", 2, "y", idle_in)
    mesh.queue.clear()  # lost
    fra.tick(idle_in + 500)  # idle for long, but something is pending: kept
    assert fra.outgoing[(ZONE, CHANNEL, "pub")].stream.pending
    mesh.run(idle_in + 500)  # the retransmission arrives
    assert not fra.outgoing[(ZONE, CHANNEL, "pub")].stream.pending
    fra.tick(idle_in + 501 + idle_out)
    waw.tick(idle_in + 501 + idle_out)
    assert fra.outgoing == {} and waw.incoming == {}
    assert [m[2] for m in mesh.edge("waw").messages] == [1, 2]


def test_message_after_the_origin_forgot_an_idle_stream_is_still_delivered():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    fra, waw = mesh.fabrics["fra"], mesh.fabrics["waw"]
    fra.message_published(CH, "pub", "u", 1, "first", 0.0)
    ((_, _, data),) = mesh.queue
    mesh.queue.clear()
    waw.on_datagram(data, 0.0)  # delivered ...
    assert len(mesh.queue) == 1
    mesh.queue.clear()  # ... but waw's ack is lost
    fra.tick(0.2)  # the retransmission arrives (a duplicate) at 5.0; its ack gets through
    mesh.run(5.0)
    assert [m[2] for m in mesh.edge("waw").messages] == [1]
    assert fra.outgoing[(ZONE, CHANNEL, "pub")].stream.pending == {}
    now = fra.out_stream_idle_s + 1.0
    fra.tick(now)  # idle since 0: forgotten
    waw.tick(now)  # last used at 5: forgotten too (a destination forgets first)
    assert fra.outgoing == {} and waw.incoming == {}
    fra.message_published(CH, "pub", "u", 2, "second", now)
    mesh.run(now)
    assert [m[2] for m in mesh.edge("waw").messages] == [1, 2]


def test_messages_are_numbered_in_their_stream_and_delivered_with_its_name():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    fra = mesh.fabrics["fra"]
    assert fra.message_published(CH, "pub", "u", 7, "a", 0.0) == ("fra:pub", 1)
    assert fra.message_published(CH, "pub", "u", 8, "b", 0.0) == ("fra:pub", 2)
    mesh.run()
    assert mesh.edge("waw").numbered == [("fra:pub", 1), ("fra:pub", 2)]
    # held until the controller names the members: not numbered yet
    assert fra.message_published(("eu", "app/new"), "pub", "u", 1, "c", 0.0) == ("fra:pub", None)


def test_a_relay_that_moved_in_late_gets_what_it_missed_replayed_from_the_origin():
    """A subscriber's edge died; it joins at sfo, which asks fra (the stream's origin) for
    everything after the last message it delivered."""
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    fra, sfo = mesh.fabrics["fra"], mesh.fabrics["sfo"]
    for i in range(1, 6):
        fra.message_published(CH, "pub", "u", 100 + i, f"m{i}", 0.0)
    mesh.run(0.0)
    mesh.subscribe(CH, {"fra", "sfo"})  # waw gone, sfo in
    fra.message_published(CH, "pub", "u", 106, "m6", 1.0)
    mesh.run(1.0)
    assert [m[3] for m in mesh.edge("sfo").messages] == ["m6"]  # live from its base on
    sfo.replay_requested(CH, "fra:pub", 2)
    mesh.run(1.0)
    got = mesh.edge("sfo").replayed
    assert [(r[2], r[3], r[4], r[5]) for r in got] == [
        (100 + i, f"m{i}", "fra:pub", i) for i in range(3, 7)]
    assert fra.counters["messages.replayed"] == 4
    no_drops(mesh)


def test_a_replay_asked_at_the_origin_itself_is_served_there():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    fra = mesh.fabrics["fra"]
    for i in range(1, 4):
        fra.message_published(CH, "pub", "u", i, f"m{i}", 0.0)
    mesh.run(0.0)
    sent = len(mesh.queue)
    fra.replay_requested(CH, "fra:pub", 1)
    assert len(mesh.queue) == sent  # nothing crossed the network
    assert [(r[3], r[5]) for r in mesh.edge("fra").replayed] == [("m2", 2), ("m3", 3)]


def test_history_is_bounded_by_age_and_unknown_streams_answer_nothing():
    mesh = Mesh(TREE, reliable=ReliableSettings(give_up_s=10.0, gap_timeout_s=12.0))
    mesh.subscribe(CH, {"fra", "waw"})
    fra, waw = mesh.fabrics["fra"], mesh.fabrics["waw"]
    fra.message_published(CH, "pub", "u", 1, "old", 0.0)
    mesh.now = 5.0
    fra.message_published(CH, "pub", "u", 2, "new", 5.0)
    mesh.run(5.0)
    mesh.now = 12.0  # the first is past the give-up time: the origin no longer offers it
    waw.replay_requested(CH, "fra:pub", 0)
    waw.replay_requested(CH, "fra:nobody", 0)
    waw.replay_requested(CH, "not-a-stream-name", 0)
    mesh.run(12.0)
    assert [r[3] for r in mesh.edge("waw").replayed] == ["new"]
    assert fra.counters["messages.replay-unknown"] == 1


def test_a_joined_publishers_stream_is_kept_while_idle_so_its_numbers_go_on():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    fra = mesh.fabrics["fra"]
    mesh.edge("fra").streams.add("pub")
    fra.message_published(CH, "pub", "u", 1, "a", 0.0)
    mesh.run(0.0)
    later = fra.out_stream_idle_s + 10
    fra.tick(later)
    assert fra.message_published(CH, "pub", "u", 2, "b", later) == ("fra:pub", 2)
    mesh.edge("fra").streams.clear()  # the session left: forgotten once idle
    fra.tick(2 * later + 10)
    assert fra.outgoing == {}


def test_the_publisher_hears_how_far_its_messages_are_settled():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw", "sfo"})
    fra = mesh.fabrics["fra"]
    for mid in (11, 12, 13):
        fra.message_published(CH, "pub", "u", mid, f"m{mid}", 0.0)
    assert mesh.edge("fra").settled == []  # sent, nobody has acknowledged yet
    mesh.run(0.0)
    assert mesh.edge("fra").settled[-1] == ("pub", 13)  # every subscriber acknowledged
    # with nobody subscribed elsewhere a message is settled at once
    mesh.subscribe(CH, {"fra"})
    fra.message_published(CH, "pub", "u", 14, "alone", 1.0)
    assert mesh.edge("fra").settled[-1] == ("pub", 14)


def test_tick_survives_a_restarted_incoming_stream():
    mesh = Mesh(TREE, reliable=ReliableSettings(window=4))
    mesh.subscribe(CH, {"fra", "waw"})
    waw = mesh.fabrics["waw"]

    def message(seq: int, base: int) -> bytes:
        tail = encode_message_tail(seq, "fra", "u", f"m{seq}")
        return signed(dg(kind=MESSAGE, destinations=("waw",), seq=seq, publisher="pub",
                         payload=(base).to_bytes(8, "big") + tail))

    waw.on_datagram(message(1, 1), 0.0)
    waw.on_datagram(message(4, 0), 0.0)  # a gap
    waw.on_datagram(message(100, 50), 1.0)  # restarted at 50, beyond the window
    waw.tick(100.0)  # raises ValueError
    assert [m[2] for m in mesh.edge("waw").messages] == [1]


# --- replays --------------------------------------------------------------------------------


def test_a_replayed_media_datagram_is_dropped_and_counted():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    mesh.fabrics["fra"].media_published(CH, "pub", b"frame-1")
    ((_, _, captured),) = mesh.queue
    mesh.run()
    waw = mesh.fabrics["waw"]
    assert mesh.edge("waw").media == [(CH, b"frame-1")]
    for _ in range(3):  # an attacker on the path sends it again, as it was ...
        waw.on_datagram(captured, 1.0)
    hop_lowered = bytearray(captured)  # ... or with the routing state rewritten
    hop_lowered[sealed_size(captured) + datagram.TAG_SIZE] -= 1
    waw.on_datagram(bytes(hop_lowered), 1.0)
    assert mesh.edge("waw").media == [(CH, b"frame-1")]
    assert waw.counters["dropped.replay"] == 4
    assert waw.counters[f"zone.{ZONE}.received"] == 1
    mesh.fabrics["fra"].media_published(CH, "pub", b"frame-2")  # fresh traffic still flows
    mesh.run()
    assert [m for _, m in mesh.edge("waw").media] == [b"frame-1", b"frame-2"]


def test_a_replay_through_a_transit_relay_is_dropped_where_it_would_be_delivered():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"ams", "waw"})
    mesh.fabrics["ams"].media_published(CH, "pub", b"frame")
    ((_, hop, captured),) = mesh.queue
    assert hop == "fra"
    mesh.run()
    mesh.fabrics["fra"].on_datagram(captured, 1.0)  # transit checks the tag only: goes on
    mesh.run(1.0)
    assert mesh.edge("waw").media == [(CH, b"frame")]
    assert mesh.fabrics["waw"].counters["dropped.replay"] == 1


def test_a_replay_for_here_and_elsewhere_is_dropped_whole():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"ams", "fra", "waw"})
    mesh.fabrics["ams"].media_published(CH, "pub", b"frame")
    ((_, _, captured),) = mesh.queue
    mesh.run()
    fra = mesh.fabrics["fra"]
    fra.on_datagram(captured, 1.0)
    assert not mesh.queue and fra.counters["dropped.replay"] == 1
    assert mesh.edge("fra").media == mesh.edge("waw").media == [(CH, b"frame")]


def test_datagrams_reordered_within_the_window_are_all_delivered():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    for i in range(50):
        mesh.fabrics["fra"].media_published(CH, "pub", b"%02d" % i)
    batch = list(mesh.queue)
    mesh.queue.clear()
    random.Random(3).shuffle(batch)
    for _, hop, data in batch:
        mesh.fabrics[hop].on_datagram(data, 0.0)
    assert sorted(m for _, m in mesh.edge("waw").media) == [b"%02d" % i for i in range(50)]
    no_drops(mesh)


def test_a_replayed_message_delivers_nothing_even_after_its_stream_is_forgotten():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    fra, waw = mesh.fabrics["fra"], mesh.fabrics["waw"]
    fra.message_published(CH, "pub", "u", 1, "pay me once", 0.0)
    ((_, _, captured),) = mesh.queue
    mesh.run(0.0)
    assert [m[3] for m in mesh.edge("waw").messages] == ["pay me once"]
    waw.on_datagram(captured, 1.0)
    assert waw.counters["dropped.replay"] == 1 and not mesh.queue  # no ack either
    later = waw.in_stream_idle_s + 10
    waw.tick(later)
    assert waw.incoming == {}  # the message stream is forgotten, its sender's window is not
    waw.on_datagram(captured, later)
    mesh.run(later)
    assert [m[3] for m in mesh.edge("waw").messages] == ["pay me once"]
    assert waw.counters["dropped.replay"] == 2


def test_a_retransmission_of_a_message_already_delivered_is_acknowledged_again():
    """A retransmission is sealed afresh (a new nonce): it is no replay, and the receiver
    acknowledges it, or its origin would retransmit until it gives up."""
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    fra, waw = mesh.fabrics["fra"], mesh.fabrics["waw"]
    fra.message_published(CH, "pub", "u", 1, "x", 0.0)
    mesh.run(0.0)  # delivered, the ack on its way back ...
    (pending,) = [o.stream for o in fra.outgoing.values()]
    mesh.queue.clear()
    fra.message_published(CH, "pub", "u", 2, "y", 0.0)
    ((_, _, first),) = mesh.queue
    mesh.queue.clear()
    waw.on_datagram(first, 0.0)
    mesh.queue.clear()  # ... waw's ack for 2 is lost
    fra.tick(1.0)  # the retransmission of 2
    ((_, _, again),) = mesh.queue
    assert datagram.replay_id(again) != datagram.replay_id(first)
    mesh.run(1.0)
    assert [m[2] for m in mesh.edge("waw").messages] == [1, 2]  # once each
    assert pending.pending == {}  # acknowledged
    assert waw.counters["dropped.replay"] == 0


def test_a_replayed_ack_is_dropped():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    fra = mesh.fabrics["fra"]
    fra.message_published(CH, "pub", "u", 1, "x", 0.0)
    mesh.fabrics["waw"].on_datagram(mesh.queue.popleft()[2], 0.0)
    ((_, _, ack),) = mesh.queue
    mesh.run(0.0)
    assert datagram.decode(ack, KEY).kind == ACK
    fra.on_datagram(ack, 1.0)
    assert fra.counters["dropped.replay"] == 1


def test_replay_windows_go_with_their_key():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    waw = mesh.fabrics["waw"]
    mesh.fabrics["fra"].media_published(CH, "pub", b"f")
    mesh.run()
    assert len(waw.replay) == 1
    new = b"n" * 32
    waw.configure(new, {0: KEY}, [ZONE], epoch=1)  # the next key arrives: windows kept
    assert len(waw.replay) == 1
    waw.configure(new, {}, [ZONE], epoch=1)  # epoch 0 retired: its datagrams no longer open
    assert len(waw.replay) == 0


# --- residency, keys, malformed input --------------------------------------------------------


def test_foreign_zone_is_dropped_never_forwarded_or_delivered():
    mesh = Mesh(TREE, zones=(ZONE, "us"))
    fra = mesh.fabrics["fra"]
    fra.configure(KEY, {}, [ZONE])  # fra may carry eu only (though it has routes for us)
    fra.edge.subscribed.add(("us", CHANNEL))
    dest_sets = [("fra",), ("waw",), ("fra", "waw"), ("vie", "waw")]
    for kind in KINDS:
        for dests in dest_sets:
            payload = (0).to_bytes(8, "big") + encode_message_tail(1, "ams", "u", "x")
            fra.on_datagram(signed(dg(kind=kind, zone="us", destinations=dests,
                                      payload=payload)), 0.0)
    assert fra.counters["dropped.foreign-zone"] == len(KINDS) * len(dest_sets)
    assert fra.counters["zonedrop.us.foreign-zone"] == len(KINDS) * len(dest_sets)
    assert not mesh.queue and not mesh.links
    assert fra.edge.media == [] and fra.edge.messages == []
    assert fra.incoming == {}
    assert not any(k.startswith("zone.us.") for k in fra.counters)


def test_wrong_key_is_bad_tag_and_no_key_is_no_key():
    mesh = Mesh(TREE)
    fra = mesh.fabrics["fra"]
    mesh.subscribe(CH, {"fra"})
    fra.on_datagram(signed(dg(), b"x" * 32), 0.0)
    assert fra.counters["dropped.bad-tag"] == 1
    fra.configure(b"", {}, [ZONE])
    fra.on_datagram(signed(dg()), 0.0)
    assert fra.counters["dropped.no-key"] == 1
    assert fra.edge.media == [] and not mesh.queue


def test_a_relay_without_a_key_forwards_nothing():
    mesh = Mesh(TREE)
    ams = mesh.fabrics["ams"]
    ams.configure(b"", {}, [ZONE])
    ams.on_datagram(signed(dg(destinations=("waw",)), b""), 0.0)
    assert ams.counters["dropped.no-key"] == 1  # actual: received and forwarded to fra
    assert not mesh.queue


def test_previous_key_is_accepted_during_a_rotation():
    mesh = Mesh(TREE)
    fra = mesh.fabrics["fra"]
    mesh.subscribe(CH, {"fra"})
    fra.configure(KEY, {1: OLD_KEY, 2: KEY, 3: b""}, [ZONE], epoch=2)
    assert fra.keys.current == KEY and fra.keys.accepted == {1: OLD_KEY}
    fra.on_datagram(signed(dg(payload=b"old", epoch=2)), 0.0)
    fra.on_datagram(signed(dg(payload=b"older", epoch=1), OLD_KEY), 0.0)
    fra.on_datagram(signed(dg(payload=b"forged", epoch=2), b"x" * 32), 0.0)
    fra.on_datagram(signed(dg(payload=b"no such epoch", epoch=3), KEY), 0.0)
    assert [d for _, d in fra.edge.media] == [b"old", b"older"]
    assert fra.counters["dropped.bad-tag"] == 1 and fra.counters["dropped.epoch"] == 1
    # the rotation goes on: OLD_KEY (epoch 1) is retired
    fra.configure(b"n" * 32, {2: KEY}, [ZONE], epoch=3)
    fra.on_datagram(signed(dg(payload=b"older", epoch=1), OLD_KEY), 0.0)
    fra.on_datagram(signed(dg(payload=b"old", epoch=2)), 0.0)
    assert [d for _, d in fra.edge.media] == [b"old", b"older", b"old"]
    assert fra.counters["dropped.epoch"] == 2


def sealed_size(raw: bytes) -> int:
    """Where a datagram's payload ends (and its tag starts)."""
    return datagram._HEAD.unpack_from(raw)[6]


def sealed_part(raw: bytes) -> bytes:
    size = datagram._HEAD.unpack_from(raw)[6]
    return raw[:size + datagram.TAG_SIZE]


@pytest.mark.parametrize("dests", [("waw",), ("vie", "waw")])
def test_transit_forwards_the_sealed_part_as_it_came(dests):
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", *dests})
    ams = mesh.fabrics["ams"]
    raw = signed(dg(destinations=dests, hop_limit=9))
    ams.on_datagram(raw, 0.0)
    ((_, hop, out),) = mesh.queue
    assert hop == "fra"
    assert sealed_part(out) == sealed_part(raw)  # not re-sealed
    d = datagram.decode(out, KEY)
    assert d.destinations == dests and d.hop_limit == 8
    assert ams.counters == Counter({f"zone.{ZONE}.received": 1, f"zone.{ZONE}.forwarded": 1})
    mesh.run()
    assert all(mesh.edge(r).media == [(CH, b"frame")] for r in dests)


@pytest.mark.parametrize("dests", [("waw",), ("vie", "waw")])
def test_datagram_sealed_with_an_accepted_key_travels_on_under_that_seal(dests):
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", *dests})
    new = b"n" * 32
    for f in mesh.fabrics.values():
        f.configure(new, {4: KEY}, [ZONE], epoch=5)
    raw = signed(dg(destinations=dests, epoch=4), KEY)
    mesh.fabrics["ams"].on_datagram(raw, 0.0)
    assert sealed_part(mesh.queue[0][2]) == sealed_part(raw)
    mesh.run()
    assert all(mesh.edge(r).media == [(CH, b"frame")] for r in dests)
    no_drops(mesh)


@pytest.mark.parametrize("dests", [("waw",), ("vie", "waw")])
def test_tampered_sealed_part_is_bad_tag_and_not_forwarded(dests):
    mesh = Mesh(TREE)
    raw = bytearray(signed(dg(destinations=dests, payload=b"pay")))
    raw[sealed_size(raw) - 1] ^= 1  # the payload's last byte, encrypted
    mesh.fabrics["ams"].on_datagram(bytes(raw), 0.0)
    assert mesh.fabrics["ams"].counters == Counter({"dropped.bad-tag": 1})
    assert not mesh.queue


def _direct(fabric: Fabric) -> tuple[list, list]:
    """Give `fabric` direct sends to a fake address per region; returns what they got."""
    one, runs = [], []
    fabric.direct_send = lambda data, addr: one.append((addr, bytes(data)))
    fabric.direct_send_run = lambda buf, size, addr: runs.append((addr, bytes(buf), size))
    fabric.peer_addr = lambda region: (region, 1)
    fabric.tables_changed()
    return one, runs


def test_a_run_for_one_next_hop_leaves_in_one_send_with_each_hop_limit_lowered():
    mesh = Mesh(TREE)
    ams = mesh.fabrics["ams"]
    one, runs = _direct(ams)
    raws = [signed(dg(destinations=("waw",), seq=i, payload=b"%04d" % i)) for i in range(5)]
    size = len(raws[0])
    assert ams.transit_run(b"".join(raws), size) == []
    ((addr, buf, seg),) = runs
    assert addr == ("fra", 1) and seg == size and not one
    for i in range(5):
        d = datagram.decode(buf[i * size:(i + 1) * size], KEY)
        assert (d.seq, d.hop_limit, d.destinations) == (i, 7, ("waw",))
    assert ams.counters == Counter({f"zone.{ZONE}.received": 5, f"zone.{ZONE}.forwarded": 5})
    assert ams.sent_to == Counter({"fra": 5})


def test_a_mixed_run_goes_on_one_by_one_and_leaves_the_rest_to_the_full_path():
    mesh = Mesh(TREE)
    ams = mesh.fabrics["ams"]
    one, runs = _direct(ams)
    good_fra = signed(dg(destinations=("waw",), payload=b"aaaaaaaa"))
    good_lon = signed(dg(destinations=("nyc",), payload=b"bbbbbbbb"))
    tampered = bytearray(signed(dg(destinations=("waw",), payload=b"cccccccc")))
    tampered[sealed_size(tampered) - 4] ^= 1  # in the encrypted payload
    two_dests = signed(dg(destinations=("vie", "waw"), payload=b"dddd"))  # the full path splits
    size = len(good_fra)
    assert len(good_lon) == len(tampered) == len(two_dests) == size
    buf = good_fra + bytes(tampered) + good_lon + two_dests
    assert ams.transit_run(buf, size) == [size, 3 * size]
    assert not runs
    assert [(addr, datagram.decode(data, KEY).payload) for addr, data in one] == \
        [(("fra", 1), b"aaaaaaaa"), (("lon", 1), b"bbbbbbbb")]
    for offset in (size, 3 * size):
        ams.on_datagram(buf[offset:offset + size], 0.0)
    assert ams.counters["dropped.bad-tag"] == 1
    assert ams.counters[f"zone.{ZONE}.forwarded"] == 3  # two in transit, one copy to fra
    assert ams.sent_to == Counter({"fra": 2, "lon": 1})


@pytest.mark.parametrize("change", [
    dict(zone="us"),  # same length, a zone this relay is not in
    dict(destinations=("nyc",)),  # same length, another next hop
    dict(hop_limit=0),
    dict(channel="app/ro0m"),
])
def test_a_look_alike_after_a_good_datagram_is_judged_on_its_own_fields(change):
    """Transit compares each datagram with the one before it instead of parsing it again:
    one that differs in any field that decides its fate must be parsed again, not waved on
    as a copy of its neighbour."""
    mesh = Mesh(TREE, zones=(ZONE, "us"))
    ams = mesh.fabrics["ams"]
    ams.configure(KEY, {}, [ZONE])
    one, runs = _direct(ams)
    good = [signed(dg(destinations=("waw",), seq=i, payload=b"%04d" % i)) for i in range(2)]
    other = signed(dg(**{"destinations": ("waw",), "seq": 9, "payload": b"0009", **change}))
    size = len(good[0])
    assert len(other) == size
    left = ams.transit_run(good[0] + other + good[1], size)
    forwarded = [datagram.decode(data, KEY).seq for _, data in one]
    forwarded += [datagram.decode(buf[i:i + seg], KEY).seq
                  for _, buf, seg in runs for i in range(0, len(buf), seg)]
    if "destinations" in change:  # genuine, for another next hop: goes on by itself
        assert left == [] and sorted(forwarded) == [0, 1, 9]
        assert ams.sent_to == Counter({"fra": 2, "lon": 1})
    elif "channel" in change:  # the channel does not decide the route: goes on
        assert left == [] and sorted(forwarded) == [0, 1, 9]
    else:  # foreign zone or no hops left: the full path drops and counts it
        assert left == [size] and sorted(forwarded) == [0, 1]


def test_a_forwarded_datagram_handed_over_as_is_is_accepted():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    sent = []
    ams = mesh.fabrics["ams"]
    ams.send = lambda hop, data: sent.append((hop, data)) or True
    ams.on_datagram(signed(dg(destinations=("waw",))), 0.0)
    ((hop, data),) = sent
    mesh.fabrics[hop].on_datagram(data, 0.0)  # TypeError: unhashable type: 'bytearray'
    mesh.run()
    assert mesh.edge("waw").media == [(CH, b"frame")]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=1600))
def test_garbage_is_counted_and_never_raises(data):
    mesh = Mesh(TREE)
    fra = mesh.fabrics["fra"]
    fra.on_datagram(data, 0.0)
    assert len(fra.counters) == 1
    ((name, count),) = fra.counters.items()
    assert name.startswith("dropped.") and count == 1
    assert not mesh.queue


def head(version=datagram.VERSION, kind=MEDIA, size=datagram._HEAD.size) -> bytes:
    return datagram._HEAD.pack(version, kind, 0, 0, 0, 0, size, 0, b"\0" * 12)


@pytest.mark.parametrize("data, reason", [
    (b"", "short"),
    (b"\x02" * 10, "short"),
    (head(version=9) + b"\0" * 18, "version"),
    (head(kind=7) + b"\0" * 18, "kind"),
    (head(size=3) + b"\0" * 18, "field"),
    (head(size=5000) + b"\0" * 18, "field"),
    (head() + b"\0" * 18, "bad-tag"),
    (head() + b"\0" * 1400, "too-large"),
])
def test_malformed_datagrams_are_counted_by_reason(data, reason):
    fra = Mesh(TREE).fabrics["fra"]
    fra.on_datagram(data, 0.0)
    assert fra.counters == Counter({f"dropped.{reason}": 1})


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(KINDS), seq=st.integers(0, 2**64 - 1), hop=st.integers(0, 255),
       dests=st.sets(st.sampled_from(["fra", "waw", "sfo", "zz-unknown"]), min_size=1),
       publisher=st.text(max_size=20), payload=st.binary(max_size=200),
       base=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_authenticated_but_nonsensical_datagrams_never_raise(kind, seq, hop, dests, publisher,
                                                             payload, base):
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    fra = mesh.fabrics["fra"]
    if base is not None:  # a well-formed message tail with an arbitrary base and seq
        payload = base.to_bytes(8, "big") + encode_message_tail(seq, "ams", "u", "b")
    try:
        raw = signed(dg(kind=kind, seq=seq, hop_limit=hop, destinations=tuple(sorted(dests)),
                        publisher=publisher, payload=payload))
    except datagram.BadDatagram:
        return  # not encodable (e.g. a publisher too long in UTF-8)
    fra.on_datagram(raw, 0.0)
    fra.on_datagram(raw, 0.1)  # and again: a replay where it is delivered, else transit
    replayed = "fra" in dests
    assert fra.counters[f"zone.{ZONE}.received"] == 2 - replayed
    assert fra.counters["dropped.replay"] == replayed
    mesh.run(0.2)
    for f in mesh.fabrics.values():
        f.tick(100.0)
    assert all(k.startswith(("zone.", "dropped.", "zonedrop.", "messages."))
               for f in mesh.fabrics.values()
               for k in f.counters)


def test_malformed_message_payload_is_counted():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra"})
    fra = mesh.fabrics["fra"]
    fra.on_datagram(signed(dg(kind=MESSAGE, payload=b"\x00" * 5)), 0.0)
    assert fra.counters["dropped.malformed-message"] == 1
    assert fra.edge.messages == [] and not mesh.queue


# --- hop limit -------------------------------------------------------------------------------


def test_hop_limit_zero_delivers_locally_but_forwards_nothing():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"ams", "waw", "sfo"})
    ams = mesh.fabrics["ams"]
    ams.on_datagram(signed(dg(destinations=("ams", "sfo", "waw"), hop_limit=0)), 0.0)
    assert ams.counters["dropped.hop-limit"] == 2
    assert ams.edge.media == [(CH, b"frame")]
    assert not mesh.queue


def test_hop_limit_one_forwards_once_more():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    ams = mesh.fabrics["ams"]
    ams.on_datagram(signed(dg(destinations=("waw",), hop_limit=1)), 0.0)
    mesh.run()
    assert mesh.links == Counter({("ams", "fra"): 1})
    assert mesh.fabrics["fra"].counters["dropped.hop-limit"] == 1
    assert mesh.edge("waw").media == []


def test_a_long_chain_reaches_hop_limit_hops_and_counts_what_is_beyond():
    names = [f"c{i:02d}" for i in range(HOP_LIMIT + 3)]
    mesh = Mesh(list(zip(names, names[1:], strict=False)))
    near, far = names[HOP_LIMIT], names[HOP_LIMIT + 2]
    mesh.subscribe(CH, {names[0], near, far})
    mesh.fabrics[names[0]].media_published(CH, "pub", b"x")
    mesh.run()
    assert mesh.edge(near).media == [(CH, b"x")]
    assert mesh.edge(far).media == []
    assert mesh.total("dropped.hop-limit") == 1


# --- per-zone counters -----------------------------------------------------------------------


def test_per_zone_counters_add_up():
    mesh = Mesh(TREE, zones=(ZONE, "global"))
    eu, world = (ZONE, CHANNEL), ("global", CHANNEL)
    mesh.subscribe(eu, {"fra", "waw", "vie", "lon"})
    mesh.subscribe(world, {"sfo", "mia", "waw"})
    for i in range(3):
        mesh.fabrics["fra"].media_published(eu, "p", b"m%d" % i)
    for i in range(4):
        mesh.fabrics["sfo"].message_published(world, "q", "u", i, "x", 0.0)
    mesh.run()
    no_drops(mesh)
    assert mesh.total(f"zone.{ZONE}.delivered") == 3 * 3
    assert mesh.total("zone.global.delivered") == 4 * 2
    for zone in (ZONE, "global"):
        assert mesh.total(f"zone.{zone}.forwarded") == mesh.total(f"zone.{zone}.received") > 0
    assert sum(mesh.links.values()) == sum(mesh.total(f"zone.{z}.forwarded")
                                           for z in (ZONE, "global"))
    # eu traffic never counted under global and the other way round
    eu_links = links_of_tree(mesh.paths, "fra", {"waw", "vie", "lon"})
    assert mesh.total(f"zone.{ZONE}.forwarded") == 3 * len(eu_links)
    assert mesh.pending() == 0


# --- large destination sets ------------------------------------------------------------------


def star_mesh(leaves: list[str]) -> Mesh:
    return Mesh([("hub", "mid")] + [("mid", leaf) for leaf in leaves])


def test_large_destination_set_is_split_not_dropped():
    leaves = [f"leaf-{i:02d}-" + "x" * 24 for i in range(40)]  # 32 characters each
    mesh = star_mesh(leaves)
    mesh.subscribe(CH, {"hub", *leaves})
    hub = mesh.fabrics["hub"]
    hub.media_published(CH, "pub", b"y" * 200)
    hub_to_mid = [datagram.decode(raw, KEY) for src, _, raw in mesh.queue if src == "hub"]
    assert len(hub_to_mid) >= 2
    assert hub.counters["split"] >= 1
    dests = [d for part in hub_to_mid for d in part.destinations]
    assert sorted(dests) == sorted(leaves)  # each exactly once
    mesh.run()
    no_drops(mesh)
    for leaf in leaves:
        assert mesh.edge(leaf).media == [(CH, b"y" * 200)]
    assert mesh.links[("hub", "mid")] == len(hub_to_mid)


def test_reliable_messages_to_a_large_set_are_split_and_acknowledged():
    leaves = [f"leaf-{i:02d}-" + "x" * 24 for i in range(40)]
    mesh = star_mesh(leaves)
    mesh.subscribe(CH, {"hub", *leaves})
    hub = mesh.fabrics["hub"]
    for i in range(3):
        hub.message_published(CH, "pub", "u", i, "z" * 300, 0.0)
    mesh.run()
    no_drops(mesh)
    assert hub.counters["split"] >= 3
    for leaf in leaves:
        assert [m[2] for m in mesh.edge(leaf).messages] == [0, 1, 2]
    assert mesh.pending() == 0


def test_more_than_64_destinations_are_split_not_dropped():
    leaves = [f"l{i:02d}" for i in range(70)]  # short ids: the datagram is not too large
    mesh = star_mesh(leaves)
    mesh.subscribe(CH, {"hub", *leaves})
    mesh.fabrics["hub"].media_published(CH, "pub", b"y")
    assert mesh.fabrics["hub"].counters["dropped.field"] == 0  # actual: 1, nothing sent
    mesh.run()
    assert all(mesh.edge(leaf).media == [(CH, b"y")] for leaf in leaves)


def test_a_payload_too_large_for_one_destination_is_dropped_and_counted():
    mesh = Mesh(TREE)
    mesh.subscribe(CH, {"fra", "waw"})
    mesh.fabrics["fra"].media_published(CH, "pub", b"y" * 1400)
    assert mesh.fabrics["fra"].counters["dropped.too-large"] == 1
    assert not mesh.queue


# --- message payload encoding ----------------------------------------------------------------


def utf8(max_bytes: int, min_size: int = 0):
    return st.text(min_size=min_size, max_size=max_bytes // 4).filter(
        lambda s: len(s.encode()) <= max_bytes)


@settings(max_examples=200)
@given(base=st.integers(0, 2**64 - 1), mid=st.integers(0, 2**64 - 1),
       origin=utf8(255, min_size=1), uid=utf8(255), body=st.text(max_size=300))
def test_message_payload_round_trips(base, mid, origin, uid, body):
    payload = base.to_bytes(8, "big") + encode_message_tail(mid, origin, uid, body)
    assert decode_message(payload) == (base, mid, origin, uid, body)


@settings(max_examples=300)
@given(payload=st.binary(max_size=100))
def test_decode_message_raises_only_value_error(payload):
    try:
        base, mid, origin, uid, body = decode_message(payload)
    except ValueError:
        return
    assert origin and isinstance(uid, str) and isinstance(body, str)
    assert 0 <= base < 2**64 and 0 <= mid < 2**64


@settings(max_examples=200)
@given(base=st.integers(0, 2**64 - 1), mid=st.integers(0, 2**64 - 1),
       origin=utf8(40, min_size=1), uid=utf8(40), body=st.text(max_size=40),
       cut=st.integers(1, 200))
def test_truncated_message_payload_is_a_value_error_or_a_shorter_body(base, mid, origin, uid,
                                                                     body, cut):
    payload = base.to_bytes(8, "big") + encode_message_tail(mid, origin, uid, body)
    short = payload[:max(0, len(payload) - cut)]
    try:
        got = decode_message(short)
    except ValueError:
        return
    # only the body (the last field) may be cut and still decode
    assert got[:4] == (base, mid, origin, uid) and body.startswith(got[4])


def test_decode_message_rejects_an_empty_origin_and_a_short_uid():
    head = (0).to_bytes(8, "big") + (1).to_bytes(8, "big")
    with pytest.raises(ValueError):
        decode_message(head + b"\x00" + b"\x00")
    with pytest.raises(ValueError):
        decode_message(head + b"\x03fra" + b"\x05ab")
    assert decode_message(head + b"\x03fra" + b"\x00") == (0, 1, "fra", "", "")


def test_drops_name_their_zone_and_foreign_zones_are_bounded():
    mesh = Mesh(TREE, zones=(ZONE,))
    fra = mesh.fabrics["fra"]
    fra.configure(KEY, {}, [ZONE])
    payload = (0).to_bytes(8, "big") + encode_message_tail(1, "ams", "u", "x")
    names = [f"z{i}" for i in range(fabric.MAX_DROP_ZONES + 5)]
    for zone in names:
        fra.on_datagram(signed(dg(kind=MESSAGE, zone=zone, destinations=("fra",),
                                  payload=payload)), 0.0)
    fra.on_datagram(b"\x00not a datagram", 0.0)  # undecodable: no zone to name
    by_zone = {k: v for k, v in fra.counters.items() if k.startswith("zonedrop.")}
    assert sum(by_zone.values()) == len(names)
    assert by_zone["zonedrop.other.foreign-zone"] == 5  # the names beyond the bound
    assert len(by_zone) == fabric.MAX_DROP_ZONES + 1
    assert fra.counters["dropped.foreign-zone"] == len(names)
    # the families a scrape shows: the zones' shares, and the rest under zone ""
    dropped = {tuple(s.labels.values()): s.value
               for f in fabric_families("fra", dict(fra.counters))
               if f.name == "skymesh_fabric_datagrams_dropped"
               for s in f.samples}
    assert dropped[("fra", "z0", "foreign-zone")] == 1
    assert dropped[("fra", "other", "foreign-zone")] == 5
    assert not any(z == "" and r == "foreign-zone" for _, z, r in dropped)
    undecodable = [v for (_, z, r), v in dropped.items() if z == "" and r != "foreign-zone"]
    assert undecodable == [1]


def test_comment_batches_reach_every_member_edge_once_best_effort():
    mesh = Mesh(TREE)
    members = {"fra", "waw", "sfo", "lon"}
    mesh.subscribe(CH, members)
    batch = encode_batches([("v1", "好看"), ("v2", "nice")])[0]
    mesh.fabrics["fra"].comments_published(CH, batch)
    mesh.run()
    for r in mesh.regions:
        assert mesh.edge(r).comments == ([(CH, batch)] if r in members - {"fra"} else []), r
    assert decode_batch(mesh.edge("sfo").comments[0][1]) == [("v1", "好看"), ("v2", "nice")]
    no_drops(mesh)

