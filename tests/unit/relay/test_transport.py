"""The relay's transport seam (relay/transport.py) over a fake socket and a fake event loop:
the emulated WAN delays and loses as its model says, chaos blocks peers' addresses and ends
when its time comes. (The socket's own blocking is tested in tests/unit/skymesh/test_udpio.py.)"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from relay.transport import Chaos, ChaosPlan, Direct, EmulatedWan, peer_sender
from skymesh.wan import WanLink

AMS, PAR, SIN = ("10.0.0.1", 9001), ("10.0.0.2", 9002), ("10.0.0.3", 9003)
PEERS = {"ams": AMS, "par": PAR, "sin": SIN}


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.blocked: frozenset[tuple[str, int]] = frozenset()

    def send(self, data, addr) -> None:
        self.sent.append((bytes(data), addr))

    def send_run(self, buf, segment, addr) -> None:
        raise AssertionError("not on the transport's path")


class FakeLoop:
    """call_later that only records; `run()` fires what is due, in time order."""

    def __init__(self) -> None:
        self.later: list[tuple[float, object, tuple]] = []

    def call_later(self, delay: float, function, *args) -> None:
        self.later.append((delay, function, args))

    def run(self) -> None:
        for _, function, args in sorted(self.later, key=lambda c: c[0]):
            function(*args)
        self.later.clear()


def wan(links: dict[str, WanLink], seed: int = 7):
    sock, loop, counters = FakeSocket(), FakeLoop(), Counter()
    w = EmulatedWan(links, counters, random.Random(seed), loop.call_later, sock)
    return w, sock, loop, counters


def test_direct_sends_at_once():
    sock = FakeSocket()
    Direct(sock).send(b"x", AMS, "ams")
    assert sock.sent == [(b"x", AMS)]


def test_the_wan_delays_each_datagram_by_its_links_delay_and_jitter():
    w, sock, loop, counters = wan({"ams": WanLink(10.0, 2.0), "sin": WanLink(80.0)})
    for i in range(200):
        w.send(b"a%d" % i, AMS, "ams")
    w.send(b"s", SIN, "sin")
    assert sock.sent == []  # nothing leaves before its delay
    delays = [d for d, _, _ in loop.later]
    assert all(0.008 <= d <= 0.012 for d in delays[:200])
    assert max(delays[:200]) - min(delays[:200]) > 0.003  # jittered, not fixed
    assert delays[200] == pytest.approx(0.080)
    loop.run()
    assert len(sock.sent) == 201 and sock.sent[-1] == (b"s", SIN)  # the far one last
    assert counters["wan_dropped"] == 0


def test_the_wan_never_delays_below_zero():
    w, _, loop, _ = wan({"ams": WanLink(1.0, 5.0)})
    for _ in range(100):
        w.send(b"x", AMS, "ams")
    assert min(d for d, _, _ in loop.later) == 0.0


def test_the_wan_loses_at_the_links_rate_and_counts_it():
    w, sock, loop, counters = wan({"ams": WanLink(5.0, 0.0, loss=0.3)})
    for _ in range(2000):
        w.send(b"x", AMS, "ams")
    loop.run()
    assert 500 <= counters["wan_dropped"] <= 700
    assert len(sock.sent) + counters["wan_dropped"] == 2000


def test_the_wan_drops_what_goes_to_a_region_it_has_no_link_to():
    w, sock, loop, counters = wan({"ams": WanLink(5.0)})
    w.send(b"x", PAR, "par")
    loop.run()
    assert sock.sent == [] and counters["wan_dropped"] == 1


def test_the_peer_sender_looks_the_address_up_when_it_sends():
    sock, counters = FakeSocket(), Counter()
    peers: dict[str, tuple[str, int]] = {}
    send = peer_sender(Direct(sock), peers, counters)
    assert send("ams", b"x") is False
    assert counters["dropped.no-peer"] == 1
    peers["ams"] = AMS  # the scheduler changes its peer list in place
    assert send("ams", b"y") is True
    assert sock.sent == [(b"y", AMS)]


def test_the_peer_sender_goes_through_the_wan():
    w, sock, loop, counters = wan({"ams": WanLink(3.0)})
    send = peer_sender(w, PEERS, counters)
    assert send("ams", b"x") and sock.sent == []
    loop.run()
    assert sock.sent == [(b"x", AMS)]


# -- chaos -------------------------------------------------------------------------------------


def test_chaos_blocks_the_addresses_of_the_dropped_peers():
    sock, chaos = FakeSocket(), Chaos()
    chaos.set(ChaosPlan(("ams", "zzz")), PEERS)  # before the socket: kept for it
    chaos.attach(sock, PEERS)
    assert sock.blocked == {AMS}  # an unknown peer blocks nothing
    chaos.set(ChaosPlan(drop_all=True), PEERS)
    assert sock.blocked == {AMS, PAR, SIN}
    chaos.apply({**PEERS, "lhr": ("10.0.0.4", 1)})  # a peer that came since
    assert ("10.0.0.4", 1) in sock.blocked
    chaos.set(ChaosPlan(), PEERS)
    assert sock.blocked == frozenset() and chaos.plan is None


def test_chaos_follows_a_peers_new_address():
    sock, chaos = FakeSocket(), Chaos()
    chaos.attach(sock, PEERS)
    chaos.set(ChaosPlan(("par",)), PEERS)
    chaos.apply({**PEERS, "par": ("10.0.0.9", 9)})
    assert sock.blocked == {("10.0.0.9", 9)}


def test_chaos_expires_at_its_end_and_not_without_one():
    chaos = Chaos()
    assert not chaos.expired(1e12)
    chaos.set(ChaosPlan(("ams",), until_unix_s=1000.0), PEERS)
    assert not chaos.expired(999.9)
    assert chaos.expired(1000.0)
    chaos.set(ChaosPlan(("ams",)), PEERS)
    assert not chaos.expired(1e12)


@pytest.mark.parametrize("plan, said", [
    (ChaosPlan(), "nothing"),
    (ChaosPlan(("ams", "par")), "ams, par"),
    (ChaosPlan(("ams",), drop_all=True), "every peer"),
])
def test_chaos_says_what_it_drops(plan, said):
    assert plan.describe() == said
    assert plan.active == (said != "nothing")
