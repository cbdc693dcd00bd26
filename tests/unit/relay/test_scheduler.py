"""The relay's probing and fast reroute (relay/scheduler.py) on a simulated clock: probes go to
a fake network that answers after an RTT or loses them, and the probe loop is the node's
(wake at the time the scheduler asks for, never sooner than the probe granularity)."""

from __future__ import annotations

import heapq
import random
import struct
from collections import Counter
from collections.abc import Callable
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from relay import packets
from relay.scheduler import ProbeScheduler, RelayEvent, RelaySettings
from relay.tables import Entry, RouteTables
from skymesh.linkstate import DOWN, UP

PEERS = {"ams": ("127.0.0.1", 9001), "par": ("127.0.0.1", 9002), "sin": ("127.0.0.1", 9003)}
# ams carries ams and lhr, with par as their backup; sin has no backup
TABLE = [Entry("ams", "ams", ("fra", "ams"), 5.0, backup_next_hop="par"),
         Entry("lhr", "ams", ("fra", "ams", "lhr"), 9.0, backup_next_hop="par"),
         Entry("sin", "sin", ("fra", "sin"), 80.0)]
RTT = 0.03
DEFAULTS = RelaySettings()
FABRIC_KEY = b"f" * 32  # epoch 1's, as every relay of the mesh holds it
KEYS = packets.ProbeKeys.derive(1, {1: FABRIC_KEY})  # the peers'

Answer = Callable[[str, int, float], float | None]  # (region, seq, sent at) -> RTT or lost


def always(region: str, seq: int, at: float) -> float | None:
    return RTT


class Sim:
    """A scheduler of region fra, its peers behind a fake network, and the node's loop."""

    def __init__(self, relay: RelaySettings = DEFAULTS, answer: Answer = always,
                 peers: dict | None = None, seed: int = 1, keys: bool = True) -> None:
        self.now = 0.0
        self.answer = answer
        self.sent: list[tuple[float, str, int]] = []  # probes: (time, region, seq)
        self.sent_epochs: list[int] = []  # the key epoch of each probe sent
        self.inflight: list[tuple[float, str, int]] = []  # replies: (arrival, region, seq)
        self.events: list[RelayEvent] = []
        self.forwarding_changes = 0
        self.traffic: set[str] = set()  # next hops the fabric keeps sending to
        self.sent_to: Counter[str] = Counter()
        self.tables = RouteTables("fra")
        assert self.tables.apply(1, TABLE) is None
        self.counters: Counter[str] = Counter()
        self.s = ProbeScheduler("fra", relay, self.tables, self.send, random.Random(seed),
                                self.counters)
        self.s.on_links_changed = self.events.extend
        self.s.on_forwarding_changed = self.forwarding_changed
        if keys:
            self.s.configure_keys(1, {1: FABRIC_KEY})
        self.s.tables_replaced(0.0)
        self.s.set_peers(dict(PEERS if peers is None else peers), 0.0)
        self.peer_keys = KEYS  # what the peers answer under

    def forwarding_changed(self) -> None:
        self.forwarding_changes += 1

    def send(self, data: bytes, addr: tuple[str, int], region: str) -> None:
        pkt = packets.decode(data, self.peer_keys)
        assert pkt.kind == packets.PROBE and pkt.region == "fra"
        assert addr == self.s.peers[region]
        self.sent.append((self.now, region, pkt.seq))
        self.sent_epochs.append(pkt.epoch)
        rtt = self.answer(region, pkt.seq, self.now)
        if rtt is not None:
            heapq.heappush(self.inflight, (self.now + rtt, region, pkt.seq))

    def deliver(self) -> None:
        while self.inflight and self.inflight[0][0] <= self.now:
            at, region, seq = heapq.heappop(self.inflight)
            reply = packets.encode_probe(packets.PROBE_REPLY, seq, region, self.peer_keys)
            self.s.on_probe_packet(reply, PEERS[region], at)

    def run(self, until: float, late: Callable[[], float] = lambda: 0.0,
            each: Callable[[], None] = lambda: None) -> None:
        """The node's probe loop until `until`; `late()` delays each wakeup (a busy host),
        `each()` looks at the state after every step."""
        g = self.s.settings.probe_granularity_s
        while self.now < until:
            self.deliver()
            for hop in self.traffic:
                self.sent_to[hop] += 1
            wake = self.s.step(self.now, self.sent_to)
            each()
            self.now = round(max(self.now + g, wake) + late(), 6)

    def probes(self, region: str, since: float = 0.0) -> list[float]:
        return [t for t, r, _ in self.sent if r == region and t >= since]

    def kinds(self, peer: str | None = None) -> list[str]:
        return [e.kind for e in self.events if peer is None or e.peer == peer]


def dies(region: str, at: float, back: float = float("inf")) -> Answer:
    """`region` stops answering probes sent from `at` until `back`."""
    def answer(r: str, seq: int, sent: float) -> float | None:
        return None if r == region and at <= sent < back else RTT
    return answer


# -- detection ---------------------------------------------------------------------------------


def test_a_dead_watched_link_is_found_within_a_few_timeouts_of_its_failure():
    """After the first missed probe a watched link is rechecked every recheck interval, so
    the misses that make it down come within about two timeouts and two rechecks of the
    first unanswered probe, which leaves within a neighbour interval of the failure."""
    fail_at = 3.0
    sim = Sim(answer=dies("ams", fail_at))
    sim.traffic = {"ams"}
    down_at: list[float] = []
    sim.run(5.0, each=lambda: down_at.append(sim.now) if sim.s.stats["ams"].is_down else None)
    relay, probe = sim.s.settings, sim.s.settings.probe
    timeout = sim.s.stats["ams"].timeout()
    assert timeout == probe.min_timeout_s  # the RTT and its margin, as measured
    assert down_at, "never found down"
    found = down_at[0] - fail_at
    assert found <= (relay.neighbour_probe_interval_s * 1.05 + 2 * timeout
                     + 2 * relay.recheck_interval_s + 2 * relay.probe_granularity_s)
    assert found <= probe.down_after * (timeout + relay.recheck_interval_s) \
        + relay.neighbour_probe_interval_s * 1.05
    assert "ams" in sim.s.down_links
    after = [t for t in sim.probes("ams", fail_at) if t <= down_at[0]]
    assert min(b - a for a, b in pairwise(after)) < 0.05  # probed closely after a miss
    before = sim.probes("ams", 1.0)
    before = [t for t in before if t < fail_at]
    assert min(b - a for a, b in pairwise(before)) > 0.09  # not while it answered


def test_an_unwatched_dead_link_is_found_at_the_measuring_cadence():
    sim = Sim(answer=dies("sin", 5.0))
    sim.s.probe_interval_s = 1.0
    sim.run(12.0)
    gaps = [b - a for a, b in pairwise(sim.probes("sin", 2.0))]
    # missed probes do not bring rechecks on a link nobody's traffic uses; once down, it is
    # probed at the neighbour interval for its comeback
    down = next(e.at for e in sim.events if e.kind == "link-down")
    assert down - 5.0 > 2.0
    assert all(g > 0.9 for g in [b - a for a, b in pairwise(sim.probes("sin", 2.0))
                                 if b <= down])
    assert max(gaps[-10:]) < 0.12


def test_unwatched_links_keep_the_measuring_cadence_and_watched_ones_sample_at_it():
    sim = Sim()
    sim.s.probe_interval_s = 1.0
    sim.run(5.0)
    gaps = [b - a for a, b in pairwise(sim.probes("sin", 1.0))]
    assert gaps and all(0.95 - 0.01 <= g <= 1.05 + 0.01 for g in gaps)
    samples_before = sim.s.stats["ams"].samples
    sim.traffic = {"ams"}
    sim.run(15.0)
    # ams and its routes' backup par are watched: probed at the neighbour interval ...
    assert sim.s.watched == {"ams", "par"}
    for peer in ("ams", "par"):
        assert 90 <= len(sim.probes(peer, 5.5)) <= 110
    # ... yet RTT samples (the minimum routing uses) still come at the measuring cadence
    assert 8 <= sim.s.stats["ams"].samples - samples_before <= 12
    gaps = [b - a for a, b in pairwise(sim.probes("sin", 5.0))]
    assert all(0.95 - 0.01 <= g <= 1.05 + 0.01 for g in gaps)


def test_a_next_hop_idle_for_watch_idle_s_goes_back_to_the_cadence():
    sim = Sim(RelaySettings(watch_idle_s=5.0))
    sim.s.probe_interval_s = 1.0
    sim.traffic = {"ams"}
    sim.run(2.0)
    assert sim.s.watched == {"ams", "par"}
    sim.traffic = set()
    sim.run(6.9)
    assert sim.s.watched == {"ams", "par"}  # quiet, not idle yet
    sim.run(7.5)
    assert sim.s.watched == frozenset()
    sim.run(14.0)
    gaps = [b - a for a, b in pairwise(sim.probes("ams", 9.0))]
    assert gaps and min(gaps) > 0.9


def test_newly_watched_links_are_probed_within_one_neighbour_interval():
    sim = Sim()
    for region in PEERS:
        sim.s.next_probe[region] = 1000.0  # far off: the measuring cadence
    sim.s.note_traffic(100.0, Counter())
    assert sim.s.watched == frozenset()
    sent_to = Counter({"ams": 3})
    sim.s.note_traffic(100.25, sent_to)
    assert sim.s.watched == {"ams", "par"} and not sent_to
    assert sim.s.next_probe["ams"] <= 100.35 and sim.s.next_probe["par"] <= 100.35
    assert sim.s.next_probe["sin"] == 1000.0
    assert {"ams", "par"} <= sim.s.fast


# -- the peer list -----------------------------------------------------------------------------


def test_a_new_address_starts_the_link_afresh_and_the_same_one_keeps_it():
    sim = Sim()
    sim.run(3.0)
    ams = sim.s.stats["ams"]
    assert ams.measured and ams.state == UP
    sim.s.set_peers(dict(PEERS), sim.now)
    assert sim.s.stats["ams"] is ams
    moved = {**PEERS, "ams": ("127.0.0.1", 9999)}
    sim.s.set_peers(moved, sim.now)
    fresh = sim.s.stats["ams"]
    assert fresh is not ams and fresh.samples == 0 and fresh.srtt is None
    assert sim.s.link_states["ams"] == "unknown" and "ams" not in sim.s.next_sample
    assert sim.s.next_probe["ams"] <= sim.now + 2 * sim.s.settings.tick_s
    assert sim.s.peers["ams"] == ("127.0.0.1", 9999)
    assert sim.s.stats["par"].measured  # the others keep theirs


def test_unlisted_peers_are_forgotten_only_when_down_and_unlisted_for_forget_after_s():
    sim = Sim(RelaySettings(forget_after_s=20.0), answer=dies("sin", 10.0))
    sim.run(1.0)
    sim.s.set_peers({"ams": PEERS["ams"]}, sim.now)  # par and sin unlisted at 1.0
    assert set(sim.s.peers) == {"ams", "par", "sin"}  # still probed and forwarded to
    sim.run(20.9)
    assert sim.s.stats["sin"].is_down  # down since about 12 s, unlisted for 19.9 s
    assert "sin" in sim.s.peers
    sim.run(21.5)
    assert "sin" not in sim.s.peers and "sin" not in sim.s.stats
    assert "par" in sim.s.peers  # unlisted as long, but it answers
    # a forgotten next hop is as gone as a dead one: its route (no backup) goes nowhere
    assert sim.tables.next_hop("sin") is None
    sim.s.set_peers({"ams": PEERS["ams"], "par": PEERS["par"]}, sim.now)
    assert sim.s.unlisted == {}  # listed again: no longer on its way out


def test_controller_probe_settings_reach_every_link():
    sim = Sim()
    sim.run(1.0)
    sim.s.set_probe_settings(down_after=5, degraded_loss=0.1)
    assert sim.s.settings.probe.down_after == 5
    assert all(s.settings.down_after == 5 and s.settings.degraded_loss == 0.1
               for s in sim.s.stats.values())
    before = sim.s.settings
    sim.s.set_probe_settings(down_after=5)  # no change: nothing replaced
    assert sim.s.settings is before


# -- fast reroute ------------------------------------------------------------------------------


def test_a_down_next_hop_moves_its_routes_to_their_backups_and_back_when_it_is_up():
    sim = Sim(answer=dies("ams", 2.0, back=4.0))
    sim.traffic = {"ams"}
    sim.run(3.0)
    assert sim.tables.next_hop("lhr") == "par" and sim.tables.next_hop("ams") == "par"
    assert sim.tables.next_hop("sin") == "sin"
    # its first misses make it degraded (loss) on the way
    assert sim.kinds("ams") == ["link-degraded", "link-down", "reroute"]
    reroute = sim.events[-1]
    assert reroute.routes == 2 and reroute.at >= 2.0
    assert sim.counters["rerouted"] == 2
    assert sim.forwarding_changes == 1
    sim.run(6.0)
    assert sim.tables.next_hop("lhr") == "ams"
    assert sim.kinds("ams") == ["link-degraded", "link-down", "reroute", "link-up", "restore"]
    assert sim.events[-1].routes == 2
    assert sim.forwarding_changes == 2
    assert sim.counters["rerouted"] == 2  # a restore is not a reroute


def test_a_new_table_while_a_next_hop_is_down_forwards_to_the_backup_at_once():
    sim = Sim(answer=dies("ams", 2.0))
    sim.traffic = {"ams"}
    sim.run(3.0)
    assert sim.counters["rerouted"] == 2
    assert sim.tables.apply(2, TABLE) is None
    sim.s.tables_replaced(sim.now)
    assert sim.tables.next_hop("lhr") == "par"
    assert sim.counters["rerouted"] == 4  # counted again: the controller does not know yet


def test_a_peer_without_an_entry_in_the_peer_list_is_down_for_the_routes():
    sim = Sim(peers={"ams": PEERS["ams"], "sin": PEERS["sin"]})  # par not a peer
    sim.run(1.0)
    # routes through par (a backup only) are fine; they go nowhere once ams is down too
    assert sim.tables.next_hop("lhr") == "ams"
    assert "par" in sim.tables.down


# -- authentication ----------------------------------------------------------------------------


def never(region: str, seq: int, at: float) -> float | None:
    return None


def test_a_forged_reply_is_dropped_counted_and_not_an_rtt_sample():
    """Replies with the right sequence and region but under a wrong key, an unknown epoch or
    no key at all (the old unauthenticated format) are dropped, each counted, and leave the
    probe outstanding; the genuine reply still counts."""
    sim = Sim(answer=never)
    sim.run(0.05)
    (t, region, seq), *_ = sim.sent
    assert region in PEERS
    stats = sim.s.stats[region]
    assert seq in stats.outstanding
    head = struct.pack("!2sBBIB", packets.MAGIC, packets.VERSION, packets.PROBE_REPLY, seq,
                       len(region)) + region.encode()
    forged = [
        packets.encode_probe(packets.PROBE_REPLY, seq, region,
                             packets.ProbeKeys.derive(1, {1: b"x" * 32})),  # wrong key
        packets.encode_probe(packets.PROBE_REPLY, seq, region,
                             packets.ProbeKeys.derive(9, {9: FABRIC_KEY})),  # unknown epoch
        packets.encode_probe(packets.PROBE_REPLY, seq, region,
                             packets.ProbeKeys(1, {1: FABRIC_KEY})),  # the fabric key raw
        head + b"\x01" + bytes(16),  # a zero tag
        struct.pack("!2sBBIB", packets.MAGIC, 1, packets.PROBE_REPLY, seq,  # version 1
                    len(region)) + region.encode(),
    ]
    for data in forged:
        sim.s.on_probe_packet(data, PEERS[region], t + 0.01)
    assert sim.counters["probe.bad-tag"] == 3
    assert sim.counters["probe.epoch"] == 1
    assert sim.counters["malformed"] == 1
    assert stats.samples == 0 and stats.last_rtt is None and stats.last_reply is None
    assert seq in stats.outstanding and sim.counters["late_replies"] == 0
    genuine = packets.encode_probe(packets.PROBE_REPLY, seq, region, KEYS)
    sim.s.on_probe_packet(genuine, PEERS[region], t + 0.02)
    assert stats.samples == 1 and seq not in stats.outstanding
    assert abs(stats.last_rtt - 20.0) < 1e-6  # ms


def test_forged_replies_do_not_keep_a_dead_link_up():
    """A peer that stopped answering goes down although forged replies for its outstanding
    probes keep coming."""
    sim = Sim(answer=dies("ams", 1.0))
    sim.traffic = {"ams"}
    forger = packets.ProbeKeys.derive(1, {1: b"x" * 32})

    def forge() -> None:
        for seq in list(sim.s.stats["ams"].outstanding):
            sim.s.on_probe_packet(
                packets.encode_probe(packets.PROBE_REPLY, seq, "ams", forger), PEERS["ams"],
                sim.now)

    sim.run(3.0, each=forge)
    assert sim.s.stats["ams"].is_down and "link-down" in sim.kinds("ams")
    assert sim.counters["probe.bad-tag"] > 0


def test_replies_under_the_old_epoch_are_accepted_during_a_rotation():
    """controller/fabrickeys.py's three phases, the relay and its peers a push apart: no link
    looks down at any point, and the relay probes under the new epoch once it seals."""
    new_key = b"n" * 32
    both = {1: FABRIC_KEY, 2: new_key}
    sim = Sim()
    sim.run(2.0)
    assert all(s.state == UP for s in sim.s.stats.values())
    samples = sum(s.samples for s in sim.s.stats.values())
    # (a) announced: the relay accepts epoch 2 before its peers do; all under 1 still
    sim.s.configure_keys(1, both)
    sim.run(3.0)
    # (b) sealing: the relay probes under 2, its peers (not yet told) answer under 1
    sim.peer_keys = packets.ProbeKeys.derive(1, both)
    sim.s.configure_keys(2, both)
    mark = len(sim.sent)
    sim.run(4.0)
    assert set(sim.sent_epochs[mark:]) == {2}
    # the peers switch too; replies of either epoch may be in flight
    sim.peer_keys = packets.ProbeKeys.derive(2, both)
    sim.run(5.0)
    # (c) steady: epoch 1 dropped everywhere
    sim.s.configure_keys(2, {2: new_key})
    sim.peer_keys = packets.ProbeKeys.derive(2, {2: new_key})
    sim.run(7.0)
    assert sim.events == [] and all(s.state == UP for s in sim.s.stats.values())
    assert sum(s.samples for s in sim.s.stats.values()) > samples + 3 * len(PEERS)
    assert sim.counters["probe.bad-tag"] == sim.counters["probe.epoch"] == 0
    assert sim.counters["malformed"] == 0


def responder(epoch: int) -> tuple[ProbeScheduler, list, Counter[str]]:
    """A relay sealing under `epoch` (1 or 2, both accepted), its sends recorded."""
    sent: list = []
    counters: Counter[str] = Counter()
    s = ProbeScheduler("fra", DEFAULTS, RouteTables("fra"),
                       lambda data, addr, region: sent.append((data, addr, region)),
                       random.Random(1), counters)
    s.configure_keys(epoch, {1: FABRIC_KEY, 2: b"n" * 32})
    return s, sent, counters


def test_probes_are_answered_under_the_responders_current_epoch():
    s, sent, counters = responder(2)
    both = packets.ProbeKeys.derive(1, {1: FABRIC_KEY, 2: b"n" * 32})
    s.on_probe_packet(packets.encode_probe(packets.PROBE, 41, "ams", both), PEERS["ams"], 0.0)
    (data, addr, region), = sent
    assert (addr, region) == (PEERS["ams"], "ams")
    assert packets.decode(data, both) == packets.Probe(packets.PROBE_REPLY, 41, "fra", 2)
    # a forged probe is not answered (no reflection off the relay)
    forged = packets.encode_probe(packets.PROBE, 42, "ams",
                                  packets.ProbeKeys.derive(1, {1: b"x" * 32}))
    s.on_probe_packet(forged, PEERS["ams"], 0.0)
    assert len(sent) == 1 and counters["probe.bad-tag"] == 1


def test_a_relay_without_a_key_sends_no_probes_and_drops_what_it_receives():
    sim = Sim(keys=False)
    sim.run(1.0)
    assert sim.sent == [] and sim.s.seq == 0
    assert sim.counters["probe.no-key"] >= len(PEERS)
    assert sim.events == []  # nothing sent, nothing missed: no link looks down
    assert not any(s.is_down for s in sim.s.stats.values())
    sim.s.on_probe_packet(packets.encode_probe(packets.PROBE, 1, "ams", KEYS), PEERS["ams"],
                          sim.now)
    sim.s.on_probe_packet(packets.encode_probe(packets.PROBE_REPLY, 1, "ams", KEYS),
                          PEERS["ams"], sim.now)
    assert sim.counters["probe.no-key-dropped"] == 2 and sim.sent == []
    # keys from the controller: probing starts and the links come up
    sim.s.configure_keys(1, {1: FABRIC_KEY})
    sim.run(2.0)
    assert sim.sent and all(s.state == UP for s in sim.s.stats.values())


# -- properties --------------------------------------------------------------------------------

outcome = st.one_of(st.none(), st.floats(0.002, 0.2))  # lost, or answered after an RTT


@settings(max_examples=40, deadline=None)
@given(patterns=st.fixed_dictionaries({r: st.lists(outcome, min_size=1, max_size=60)
                                       for r in PEERS}),
       delays=st.lists(st.sampled_from([0.0, 0.0, 0.0, 0.003, 0.02, 0.1]), min_size=1,
                       max_size=50),
       seed=st.integers(0, 100))
def test_random_replies_and_losses_keep_the_rules(patterns, delays, seed):
    """Whatever peers answer and however late the loop wakes: a peer is probed at most once
    per granularity window (and one nobody's traffic uses no faster than its fastest
    interval); events come only on changes of a link's state, and forwarding follows the
    link states acted upon."""

    def answer(region: str, seq: int, at: float) -> float | None:
        p = patterns[region]
        return p[seq % len(p)]

    sim = Sim(answer=answer, seed=seed)
    sim.traffic = {"ams"}
    wakeups = iter(delays * 1000)
    acted: list[dict[str, str]] = [{}]
    events_seen = [0]
    forwarding = [0]

    def check() -> None:
        s = sim.s
        new = sim.events[events_seen[0]:]
        events_seen[0] = len(sim.events)
        before, now = acted[-1], dict(s.link_states)
        acted.append(now)
        for e in new:
            if e.kind.startswith("link-"):
                assert before.get(e.peer) != now.get(e.peer), e  # a change, not a repeat
        for region, state in now.items():
            if state != before.get(region) and (state == DOWN or before.get(region) == DOWN):
                assert any(e.peer == region and e.kind in ("link-down", "link-up")
                           for e in new), (region, before.get(region), state)
        # forwarding follows the states acted upon
        assert sim.tables.down == {r for r, st_ in now.items() if st_ == DOWN}
        # reroute and restore events exactly when forwarding changed
        moved = any(e.kind in ("reroute", "restore") for e in new)
        assert moved == (sim.forwarding_changes > forwarding[0])
        forwarding[0] = sim.forwarding_changes
        ams_down = "ams" in sim.tables.down
        par_down = "par" in sim.tables.down
        assert sim.tables.next_hop("lhr") == ("ams" if not ams_down else
                                               None if par_down else "par")

    sim.run(12.0, late=lambda: next(wakeups), each=check)

    g = sim.s.settings.probe_granularity_s
    for region in PEERS:
        times = sim.probes(region)
        assert all(b - a >= g - 1e-9 for a, b in pairwise(times)), region
    relay = sim.s.settings
    fastest = min(relay.fast_probe_interval_s, relay.neighbour_probe_interval_s)
    assert all(b - a >= 0.95 * fastest - g / 2 - 1e-9
               for a, b in pairwise(sim.probes("sin"))), "sin is not watched"
    # the counter adds up the reroutes (a route may move twice: off its primary, then off
    # its backup)
    assert sim.counters["rerouted"] == sum(e.routes for e in sim.events if e.kind == "reroute")
    # a down link comes back only through a link-up
    for hop in PEERS:
        states = [e.kind for e in sim.events if e.peer == hop and e.kind.startswith("link-")]
        for a, b in pairwise(states):
            if a == "link-down":
                assert b == "link-up", (hop, states)
