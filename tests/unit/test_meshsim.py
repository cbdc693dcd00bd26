"""The in-memory mesh (tests/meshsim.py): the relay cores and the controller core on a virtual
clock, checked against DESIGN.md's invariants (residency, loop-free ordered versions, messages
once and in order across a reroute) in a few set scenarios and on generated failures."""

from __future__ import annotations

from dataclasses import dataclass

import meshsim
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from meshsim import Mesh, Stream, Violation

from relay.datagram import ACK, MEDIA, MESSAGE, Datagram
from relay.fabric import ChannelKey
from relay.tables import Entry
from skymesh.policy import Policy, Zone

POOL = meshsim.regions(
    ("fra", 50.11, 8.68), ("lon", 51.51, -0.13), ("waw", 52.23, 21.01),
    ("mad", 40.42, -3.70), ("nyc", 40.71, -74.0), ("sgp", 1.35, 103.82),
    ("tyo", 35.68, 139.69), ("sao", -23.55, -46.63))
BY_ID = {r.id: r for r in POOL}
SIX = [BY_ID[r] for r in ("fra", "lon", "waw", "mad", "nyc", "sgp")]
KEY = ("global", "demo/room")


def path(mesh: Mesh, src: str, dst: str, zone: str = "global") -> tuple[str, ...]:
    route = mesh.controller.routes.route(zone, src, dst)
    assert route is not None, f"no route {src}->{dst} in {zone}"
    return route.path


def started_stream(mesh: Mesh, src: str, subscribers: list[str], key: ChannelKey = KEY,
                   seconds: float = 10.0, media_hz: float = 0.0) -> Stream:
    """Converge, subscribe and start publishing once the members have reached the
    publisher's relay (media before that has nowhere to go)."""
    mesh.converge()
    for region in subscribers:
        mesh.subscribe(region, key)
    start = mesh.clock.now + 1.0
    s = mesh.stream(src, key, start, start + seconds, media_hz=media_hz)
    mesh.run(1.0)
    return s


# -- set scenarios ------------------------------------------------------------------------------


def test_the_mesh_converges_to_the_engines_optimum_on_the_emulated_delays():
    mesh = Mesh(SIX, seed=1, jitter=False)
    took = mesh.converge()
    assert took < 10
    optimum, with_backups = mesh.optimum(), mesh.optimum(hysteresis=True)
    for region, relay in mesh.relays.items():
        # what each relay holds is what the controller computed, which is the optimum
        want = {(r.zone, r.dst): (r.path, r.backup_next_hop)
                for r in with_backups.table(region)}
        assert [r.path for r in optimum.table(region)] == [p for p, _ in want.values()]
        held = {k: (e.path, e.backup_next_hop) for k, e in relay.tables.entries.items()}
        assert held == want, region
        assert len(held) == len(SIX) - 1
    # some route takes a detour: the optimum is not just the direct links
    assert any(len(r.path) > 2 for region in mesh.relays for r in optimum.table(region))
    # on a quiet mesh every message and every media datagram arrives, once
    for region in ("sgp", "nyc", "waw"):
        mesh.subscribe(region, KEY)
    s = mesh.stream("mad", KEY, mesh.clock.now + 1, mesh.clock.now + 6, media_hz=30)
    mesh.run(9.0)
    assert mesh.finish() == {"mad-s1": {"sgp": 100, "nyc": 100, "waw": 100}}
    assert s.media_sent == 150
    for region in ("sgp", "nyc", "waw"):
        frames = [d for _, d in mesh.relays[region].edge.media[KEY]]
        assert len(frames) == len(set(frames)) == s.media_sent, region
    assert mesh.relays["fra"].edge.media == {}  # transit only
    assert mesh.stats["forwarding-loops"] == 0


def test_a_cut_link_on_a_streams_path_moves_the_stream_and_loses_no_message():
    mesh = Mesh(SIX, seed=1)
    s = started_stream(mesh, "mad", ["sgp", "nyc", "waw"], seconds=12, media_hz=30)
    mesh.run(3.0)
    before = path(mesh, "mad", "sgp")
    assert len(before) == 3  # mad -> fra -> sgp: a link of the path to cut
    hop = before[1]
    assert mesh.wire_links(KEY, mesh.clock.now - 1)[("mad", hop)] > 0
    cut_at = mesh.clock.now
    mesh.cut("mad", hop)
    mesh.run(1.0)
    # the relay went around it on its own, before the controller's new tables
    mad = mesh.relays["mad"]
    assert mad.counters["rerouted"] > 0
    assert mad.tables.next_hop("sgp") not in (None, hop)
    mesh.run(25.0)
    assert path(mesh, "mad", "sgp")[1] != hop  # the controller's routes moved too
    after = mesh.wire_links(KEY, cut_at + 2)
    assert after[("mad", hop)] == 0 and sum(after.values()) > 0
    got = mesh.finish()
    assert got == {s.uid: {"sgp": 240, "nyc": 240, "waw": 240}}
    # media during the cut may be lost, and is only counted
    lost = s.media_sent - mesh.media_received("sgp", KEY)
    assert 0 <= lost < s.media_sent / 4


def test_a_failed_transit_region_is_routed_around_and_rejoins():
    mesh = Mesh(SIX, seed=1)
    s = started_stream(mesh, "mad", ["sgp", "nyc"], seconds=12)
    mesh.run(2.0)
    transit = path(mesh, "mad", "sgp")[1]
    assert transit not in ("mad", "sgp")
    failed_at = mesh.clock.now
    mesh.fail(transit, notice_s=2.0)  # the controller hears of it late: relays act first
    mesh.run(6.0)
    assert transit not in mesh.controller.sessions
    assert transit not in path(mesh, "mad", "sgp")
    assert not any(transit in (a, b) for a, b in mesh.wire_links(KEY, failed_at + 1))
    mesh.revive(transit)
    mesh.run(15.0)
    assert mesh.finish() == {s.uid: {"sgp": 240, "nyc": 240}}
    mesh.converge()
    assert transit in mesh.controller.sessions
    versions = [v for _, v in mesh.relays[transit].applied]
    assert versions == sorted(set(versions)) and len(versions) >= 2


EU = {"par": (48.86, 2.35, "FR"), "ber": (52.52, 13.40, "DE"), "rom": (41.90, 12.50, "IT"),
      "lhr": (51.47, -0.45, "GB")}
# one-way ms: lhr is the short way between par and ber, but it is outside the eu zone
EU_DELAYS = {("par", "lhr"): 5, ("lhr", "ber"): 5, ("par", "ber"): 80, ("par", "rom"): 50,
             ("rom", "ber"): 50, ("rom", "lhr"): 40}
PAR, BER, ROM, LHR = EU


def eu_mesh() -> Mesh:
    policy = Policy({"eu": Zone("eu", frozenset((PAR, BER, ROM))),
                     "global": Zone("global", frozenset(EU))})
    regions = meshsim.regions(*((k, *v) for k, v in EU.items()))
    return Mesh(regions, policy, meshsim.given_delays(EU_DELAYS), seed=3)


def test_residency_holds_when_the_only_short_path_leaves_the_zone():
    mesh = eu_mesh()
    eu = ("eu", "demo/eu-room")
    s = started_stream(mesh, PAR, [BER], key=eu, seconds=20)
    mesh.subscribe(BER, KEY)
    g = mesh.stream(PAR, KEY, mesh.clock.now, mesh.clock.now + 20, name="g")
    mesh.run(2.0)
    assert path(mesh, PAR, BER) == (PAR, LHR, BER)  # the global zone takes the short way
    assert path(mesh, PAR, BER, "eu") == (PAR, BER)  # eu pays for the direct link
    assert set(mesh.wire_links(eu)) == {(PAR, BER)}
    assert set(mesh.wire_links(eu, kind=ACK)) == {(BER, PAR)}
    mesh.cut(PAR, BER)
    mesh.run(5.0)
    assert path(mesh, PAR, BER, "eu") == (PAR, ROM, BER)  # still inside
    mesh.fail(ROM)
    mesh.run(5.0)
    # no way left inside the zone: refused (counted), never sent by x
    assert mesh.controller.routes.route("eu", PAR, BER) is None
    assert "no path" in mesh.controller.path(PAR, BER, "eu").reason
    refused = mesh.relays[PAR].counters["dropped.unroutable"]
    assert refused > 0
    mesh.run(2.0)
    assert mesh.relays[PAR].counters["dropped.unroutable"] > refused  # retransmissions too
    assert len(mesh.delivered(BER, g)) > len(mesh.delivered(BER, s))  # global kept going
    mesh.heal(PAR, BER)
    mesh.revive(ROM)
    mesh.run(20.0)
    assert mesh.finish() == {s.uid: {BER: 400}, g.uid: {BER: 400}}
    assert not any(LHR in link for link in mesh.wire_links(eu, kind=MESSAGE))
    assert not any(w.zone == "eu" and LHR in (w.src, w.dst) for w in mesh.wire)


def test_a_region_outside_the_zone_is_refused_its_traffic():
    mesh = eu_mesh()
    eu = ("eu", "demo/eu-room")
    # an edge outside the zone that reports a subscriber anyway: the controller ignores
    # interest in a zone the region is not in, so no publisher's relay is told of it (and
    # had one been, it has no route to it inside the zone)
    s = started_stream(mesh, PAR, [BER, LHR], key=eu, seconds=3)
    mesh.run(5.0)
    assert mesh.controller.members_of(eu) == (f"{BER}/{BER}-1",)
    assert mesh.relays[PAR].counters["dropped.unroutable"] == 0
    # a misbehaving relay hands x a datagram of the zone, for x: x refuses it
    mesh.inject(PAR, LHR, Datagram(MEDIA, "eu", "demo/eu-room", (LHR,), 8, 1, "p", b"f"))
    mesh.run(1.0)
    assert mesh.relays[LHR].counters["dropped.foreign-zone"] == 1
    assert mesh.relays[LHR].edge.media == {} and mesh.relays[LHR].edge.messages == {}
    assert mesh.finish(allow=["dropped.foreign-zone"]) == {s.uid: {BER: 60, LHR: 0}}


def test_a_fabric_key_rotation_keeps_every_link_up():
    """Probes are authenticated under keys derived from the fabric keys: through the three
    phases of a rotation (controller/fabrickeys.py), each pushed to the relays one after
    another, every probe and reply is accepted and no link looks down."""
    mesh = Mesh(SIX, seed=2)
    mesh.converge()
    since = mesh.unix
    samples = {r: sum(s.samples for s in relay.scheduler.stats.values())
               for r, relay in mesh.relays.items()}
    overlap = mesh.controller.settings.fabric_key_overlap_s
    change = mesh.controller.rotate_fabric_key(mesh.clock.now, mesh.unix)
    mesh.run(2 * overlap + 3.0)
    assert mesh.controller.keyring.phase == "steady"
    for region, relay in mesh.relays.items():
        keys = relay.scheduler.keys
        assert (keys.epoch, keys.epochs) == (change.epoch, (change.epoch,)), region
        assert all(s.state == "up" for s in relay.scheduler.stats.values()), region
        assert sum(s.samples for s in relay.scheduler.stats.values()) > samples[region]
        assert relay.counters["probe.no-key"] == relay.counters["probe.no-key-dropped"] == 0
    kinds = {e.event.kind for e in mesh.controller.events_since(since)}
    assert not kinds & {"link-down", "link-degraded", "reroute"}, kinds
    mesh.check_counters()


# -- the checks themselves fire -----------------------------------------------------------------


def poison(relay: meshsim.SimRelay, bad: Entry) -> None:
    """Apply the relay's table with one row replaced by `bad`, at the next version, as if
    the controller had pushed it (the relay's own checks accept it)."""
    entries = {**relay.tables.entries, (bad.zone, bad.dst): bad}
    assert relay.tables.apply(relay.tables.version + 1, list(entries.values())) is None
    relay.fabric.tables_changed()


def test_the_checks_catch_a_relay_that_forwards_out_of_the_zone():
    mesh = eu_mesh()
    eu = ("eu", "demo/eu-room")
    started_stream(mesh, PAR, [BER], key=eu, seconds=5)
    # a table that sends eu traffic through lhr: a relay cannot tell (it knows no zone's
    # regions), only the controller's computation keeps it out
    poison(mesh.relays[PAR], Entry(BER, LHR, (PAR, LHR, BER), 10.0, "eu"))
    with pytest.raises(Violation, match="residency: a datagram of zone 'eu'"):
        mesh.run(1.0)


def test_the_checks_catch_a_forwarding_loop():
    mesh = Mesh(SIX, seed=1)
    started_stream(mesh, "mad", ["sgp"], seconds=5)
    hop = path(mesh, "mad", "sgp")[1]
    # the next hop sends sgp's traffic back: each path is loop-free on its own, so the relay
    # takes the table; only the controller's route set being loop-free prevents it
    poison(mesh.relays[hop], Entry("sgp", "mad", (hop, "mad", "sgp"), 10.0))
    with pytest.raises(Violation, match="loop: a datagram"):
        mesh.run(1.0)


def test_the_checks_catch_a_message_delivered_twice():
    mesh = Mesh(SIX[:5], seed=1)
    started_stream(mesh, "mad", ["waw"], seconds=1)
    mesh.run(2.0)
    edge = mesh.relays["waw"].edge
    _, uid, mid, body = edge.messages[KEY][-1]
    with pytest.raises(Violation, match="again"):
        edge.deliver_message(KEY, uid, mid, body)


def test_the_same_seed_gives_the_same_run():
    """In one process (see Mesh.trace for why not across processes)."""
    def run(seed: int) -> str:
        mesh = Mesh(SIX[:5], seed=seed)
        started_stream(mesh, "mad", ["waw", "nyc"], seconds=3)
        mesh.cut("mad", "fra")
        mesh.run(6.0)
        mesh.finish()
        return mesh.trace()

    assert run(7) == run(7)
    assert run(7) != run(8)


# -- generated failures -------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A link or a region that fails `start` s after the stream starts, for `duration` s
    (None: for good). The target is named, or taken from where the stream's traffic goes at
    that moment, so that most failures meet it: ("link", a, b), ("region", r), ("on-path",
    subscriber, hop) the hop-th link towards that subscriber, ("transit", subscriber) the
    first region between the publisher and that subscriber."""

    target: tuple
    start: float
    duration: float | None
    notice_s: float  # for a region: how late the controller loses its session


@st.composite
def schedules(draw: st.DrawFn) -> tuple[list[str], bool, list[Failure], int]:
    """A mesh of 5-7 regions (a publisher, two subscribers, transit regions), a zone that is
    the whole mesh or leaves out some transit regions, and 1-3 failures."""
    n = draw(st.integers(5, 7))
    ids = list(draw(st.permutations([r.id for r in POOL])))[:n]
    zoned = draw(st.booleans())
    pairs = [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]]
    target = st.one_of(
        st.tuples(st.just("on-path"), st.integers(0, 1), st.integers(0, 3)),
        st.tuples(st.just("transit"), st.integers(0, 1)),
        st.sampled_from(pairs).map(lambda p: ("link", *p)),
        st.sampled_from(ids[3:]).map(lambda r: ("region", r)))
    failure = st.builds(Failure, target,
                        st.integers(5, 80).map(lambda t: t / 10),
                        st.one_of(st.none(), st.integers(3, 80).map(lambda t: t / 10)),
                        st.sampled_from([0.0, 2.0]))
    failures = draw(st.lists(failure, min_size=1, max_size=3, unique_by=lambda f: f.target))
    return ids, zoned, failures, draw(st.integers(0, 1000))


STREAM_S = 12.0
HZ = 20


def inflict(mesh: Mesh, f: Failure, pub: str, subs: list[str], zone: str) -> None:
    """Fail what `f` names, now, and schedule its end."""
    kind, *args = f.target
    ends = (pub, *subs)
    if kind in ("on-path", "transit"):
        way = mesh.forwarding_path(pub, subs[args[0]], zone)
        if kind == "on-path":
            links = list(zip(way, way[1:], strict=False))
            if not links:
                return
            kind, args = "link", list(links[args[1] % len(links)])
        else:
            middle = [r for r in way[1:-1] if r not in ends]
            if not middle:
                return
            kind, args = "region", middle[:1]
    if kind == "link":
        mesh.cut(*args)
        end = lambda: mesh.heal(*args)  # noqa: E731
    else:
        if args[0] in ends or not mesh.relays[args[0]].alive:
            return
        mesh.fail(args[0], f.notice_s)
        end = lambda: mesh.revive(args[0])  # noqa: E731
    if f.duration is not None:
        mesh.clock.call_later(f.duration, end)


@settings(max_examples=25, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_generated_failures_keep_every_invariant(schedule):
    ids, zoned, failures, seed = schedule
    pub, subs, transit = ids[0], ids[1:3], ids[3:]
    zones = {"global": Zone("global", frozenset(ids))}
    zone = "global"
    if zoned:  # a zone without some transit regions: fewer ways around a failure
        zone = "part"
        zones[zone] = Zone(zone, frozenset([pub, *subs, *transit[:len(transit) // 2 + 1]]))
    mesh = Mesh([BY_ID[r] for r in ids], Policy(zones), seed=seed)
    key = (zone, "demo/room")
    s = started_stream(mesh, pub, subs, key=key, seconds=STREAM_S, media_hz=HZ)
    t0 = mesh.clock.now
    for f in failures:
        mesh.clock.call_at(t0 + f.start, inflict, mesh, f, pub, subs, zone)
    end = max(t0 + STREAM_S, *(t0 + f.start + (f.duration or 0) for f in failures))
    mesh.run_until(end + 12.0)
    # messages: finish() requires all of them, once and in order, wherever a subscriber
    # stayed reachable; say that it was so, so that a schedule that cut everyone off is not
    # taken for a pass
    got = mesh.finish()[s.uid]
    assert len(s.published) == STREAM_S * HZ
    for r in subs:
        if mesh.reachable(pub, r, zone):
            assert got[r] == len(s.published), r
    # how hard the schedule hit (pytest --hypothesis-show-statistics): media is counted only
    retransmitted = mesh.relays[pub].counters["messages.retransmitted"]
    event(f"messages retransmitted: {'none' if not retransmitted else 'some'}")
    event(f"media lost: {'none' if not any(mesh.media_lost(s).values()) else 'some'}")
    if all(f.duration is not None for f in failures):
        mesh.converge(timeout=30.0)  # all healed: the control plane settles again
        for r in subs:
            assert mesh.forwarding_path(pub, r, zone)[-1] == r
