"""Hostile relays: the controller's handling of protobuf messages from relay sessions
(controller/relay_service.py `check_hello` and `dispatch`, through controller/translate.py to
controller/core.py) fed generated and mutated `RelayMessage`s with extreme values: NaN,
infinite and negative times, counters at 2**64-1, unknown regions and states, empty and long
strings, thousands of samples. The core must neither raise nor keep garbage: what it stores
stays well-formed and what it sends relays and admins still serialises."""

from __future__ import annotations

import json
import math

from fuzzing import fuzz, mutations, nasty_floats, nasty_text, uints
from google.protobuf.message import DecodeError
from hypothesis import event, given
from hypothesis import strategies as st

from controller import translate
from controller.core import Controller, Settings
from controller.relay_service import check_hello, dispatch
from skymesh.catalogue import Region
from skymesh.linkstate import STATES, TO_WIRE, UP
from skymesh.policy import Policy, Zone
from skymesh.v1 import relay_pb2

REGIONS = ("a", "b", "c", "d")
T0, EPOCH = 1000.0, 1.7e9
ZONES = {"global": frozenset(REGIONS), "eu": frozenset({"a", "b"})}


def utf8(s: str) -> bool:
    try:
        s.encode()
    except UnicodeEncodeError:  # protobuf strings are UTF-8: lone surrogates never arrive
        return False
    return True


text = nasty_text.filter(utf8)
regions = st.sampled_from([*REGIONS, *REGIONS, "zz", "", "A", "a" * 300])
floats = st.one_of(nasty_floats, st.floats(0.1, 500))
states = st.sampled_from([*TO_WIRE.values(), 7, 2**31 - 1])

hellos = st.builds(
    relay_pb2.Hello, region=regions, node_id=text,
    probe_addr=st.sampled_from(["127.0.0.1:1", "[::1]:70000", "host:1", "nohost", ""]) | text,
    route_version=st.one_of(st.integers(0, 5), uints(64)),
    edge_addr=st.sampled_from(["", "127.0.0.1:2", "x y:1"]) | text)
samples = st.builds(
    relay_pb2.LinkSample, dst=regions, rtt_ms=floats, jitter_ms=floats, loss=floats,
    samples=uints(32), lost=uints(32), age_s=floats, state=states, min_rtt_ms=floats,
    window=uints(32))
reports = st.one_of(
    st.builds(relay_pb2.LinkReport, links=st.lists(samples, max_size=6),
              counters=st.dictionaries(text, uints(64), max_size=4)),
    # thousands of samples: one repeated
    st.builds(lambda s, n: relay_pb2.LinkReport(links=[s] * n), samples,
              st.sampled_from([1000, 5000])),
)
acks = st.builds(relay_pb2.RouteAck, version=st.one_of(st.integers(0, 5), uints(64)),
                 nonce=text, accepted=st.booleans(), reason=text)
interests = st.builds(relay_pb2.ChannelInterest,
                      zone=st.sampled_from(["global", "eu", "us", ""]) | text,
                      channel=st.sampled_from(["app/c1", "app/c2", ""]) | text,
                      subscribers=st.booleans(), publishers=st.booleans())
channels = st.one_of(
    st.builds(relay_pb2.Channels, channels=st.lists(interests, max_size=5)),
    st.builds(lambda n: relay_pb2.Channels(channels=[
        relay_pb2.ChannelInterest(zone="global", channel=f"app/{i}", subscribers=True,
                                  publishers=True) for i in range(n)]),
              st.sampled_from([2000])),
)
relay_events = st.builds(
    relay_pb2.RelayEvent, at_unix_s=st.one_of(nasty_floats, st.just(EPOCH)),
    kind=st.sampled_from(["link-down", "link-up", "reroute", "restore", "chaos"]) | text,
    peer=regions | text, routes=uints(32), detail=text)
events = st.builds(relay_pb2.RelayEvents, events=st.lists(relay_events, max_size=5))

generated = st.one_of(
    st.builds(lambda m: relay_pb2.RelayMessage(hello=m), hellos),
    st.builds(lambda m: relay_pb2.RelayMessage(report=m), reports),
    st.builds(lambda m: relay_pb2.RelayMessage(ack=m), acks),
    st.builds(lambda m: relay_pb2.RelayMessage(channels=m), channels),
    st.builds(lambda m: relay_pb2.RelayMessage(events=m), events),
    st.just(relay_pb2.RelayMessage()),
)


def parsed(data: bytes) -> relay_pb2.RelayMessage:
    try:
        return relay_pb2.RelayMessage.FromString(data)
    except DecodeError:  # gRPC refuses the stream before the service sees it: stands for
        return relay_pb2.RelayMessage()  # nothing (an empty message, which is ignored)


mutated = mutations(generated.map(lambda m: m.SerializeToString())).map(parsed)
messages = st.one_of(generated, generated, mutated)


def mostly(usual: st.SearchStrategy, other: st.SearchStrategy) -> st.SearchStrategy:
    """`usual` 3 times in 4, else `other` (one_of would weigh each of their branches alike)."""
    return st.tuples(st.integers(0, 3), usual, other).map(lambda t: t[1] if t[0] else t[2])


def good_hello(region: str, version: int = 0) -> relay_pb2.RelayMessage:
    return relay_pb2.RelayMessage(hello=relay_pb2.Hello(
        region=region, node_id=f"{region}-1", probe_addr="127.0.0.1:1", route_version=version,
        edge_addr="127.0.0.1:2"))


def good_report(region: str) -> relay_pb2.RelayMessage:
    return relay_pb2.RelayMessage(report=relay_pb2.LinkReport(links=[
        relay_pb2.LinkSample(dst=peer, rtt_ms=20.0, min_rtt_ms=19.0, jitter_ms=1.0, loss=0.0,
                             samples=10, window=10, state=TO_WIRE[UP])
        for peer in REGIONS if peer != region]))


class Harness:
    """The controller core with the relay service's steps around it, on a virtual clock; every
    message the core sends goes through the protobuf translation, as the service sends it."""

    def __init__(self) -> None:
        catalogue = {r: Region(id=r, name=r.upper(), country="DE", lat=0.0, lon=0.0)
                     for r in REGIONS}
        policy = Policy({name: Zone(name, regions) for name, regions in ZONES.items()})
        self.now = T0
        self.ctl = Controller(catalogue, policy, Settings(), now=T0)
        self.sent = 0
        self.sessions = {}

    @property
    def unix(self) -> float:
        return EPOCH + self.now - T0

    def send(self, msg) -> None:
        if msg is not None:
            translate.controller_message(msg).SerializeToString()
            self.sent += 1

    def open(self, first: relay_pb2.RelayMessage):
        """relay_service.Session: check the hello, connect (or refuse)."""
        problem = check_hello(first, self.ctl.catalogue)
        if problem is not None:
            code, reason = problem
            assert code is not None and reason
            event(f"refused: {reason.split(' ')[0]}")
            return None
        session = self.ctl.connect(translate.hello(first.hello), self.send, self.now, self.unix)
        self.sessions[first.hello.region] = session
        return session

    def step(self, session, msg: relay_pb2.RelayMessage, seconds: float = 0.25) -> None:
        self.now += seconds
        event(f"message: {msg.WhichOneof('msg')}")
        if msg.WhichOneof("msg") == "hello":  # a second hello on a session is ignored
            event("hello on a session")
        dispatch(self.ctl, session, msg, self.now, self.unix)
        self.ctl.tick(self.now, self.unix)

    def check(self) -> None:
        ctl = self.ctl
        for (src, dst), r in ctl.topology.links.items():
            assert src in REGIONS and dst in REGIONS and src != dst
            assert r.state in STATES
            for value in (r.rtt_ms, r.min_rtt_ms, r.jitter_ms):
                assert math.isfinite(value) and value >= 0, r
            assert 0 <= r.loss <= 1, r
        assert ctl.version < 2**64
        for region, s in ctl.sessions.items():
            assert s.routes.acked_version <= s.routes.pushed_version, (region, s.routes)
        for e in ctl.events:
            assert math.isfinite(e.event.at_unix_s) and math.isfinite(e.received_unix_s), e
            translate.event(e).SerializeToString()
        for key in ctl.membership.channels():
            zone, channel = key
            assert zone in ZONES and channel, key
        status = ctl.status(self.now)
        json.dumps(vars(status), allow_nan=False, default=str)
        for view in ctl.links(self.now):
            assert math.isfinite(view.cost_ms) and math.isfinite(view.age_s), view


@fuzz(0.5)
@given(mostly(st.builds(good_hello, st.sampled_from(REGIONS)), messages),
       st.lists(messages, max_size=8))
def test_a_relay_session_takes_anything(first, rest):
    h = Harness()
    # two well-behaved relays, measured, so that routes and members are in play
    for region in ("b", "c"):
        session = h.open(good_hello(region))
        h.step(session, good_report(region))
    session = h.open(first)
    if session is None:
        h.check()
        return
    for msg in rest:
        h.step(session, msg)
        h.check()
    h.step(session, good_report(first.hello.region), seconds=20)  # after any resync hold
    h.check()
    h.ctl.disconnect(session, h.now, h.unix)
    h.step(h.sessions["b"], good_report("b"))
    h.check()


@fuzz(0.5)
@given(st.lists(mostly(st.one_of(
    st.builds(good_hello, st.sampled_from(REGIONS), st.one_of(st.integers(0, 3), uints(64))),
    st.builds(lambda m, r: relay_pb2.RelayMessage(hello=relay_pb2.Hello(
        region=r, node_id=m.node_id, probe_addr=m.probe_addr, route_version=m.route_version,
        edge_addr=m.edge_addr)), hellos, st.sampled_from(REGIONS)),
), messages), min_size=1, max_size=6))
def test_hellos_and_reconnects(firsts):
    """Relays that connect, reconnect and replace each other with any hello."""
    h = Harness()
    for first in firsts:
        session = h.open(first)
        if session is not None:
            h.step(session, good_report(first.hello.region), seconds=20)
            h.check()
