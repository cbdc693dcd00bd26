"""Partial-mesh measurement (relay/scheduler.py with relay/sampling.py) on a virtual clock: a
relay of a mesh larger than partial_mesh_above probes its near peers, its routes' next hops
and backups and its watched links all the time, and the others in turns spread over
sample_every_s; and what its full reports hold then (relay/control.py)."""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from relay import packets
from relay.control import ControlSession
from relay.fabric import Fabric
from relay.sampling import FIRST_PASS_S, Rotation
from relay.scheduler import ProbeScheduler, RelayEvent, RelaySettings
from relay.tables import Entry, RouteTables
from relay.transport import Chaos
from skymesh.linkstate import UP

FABRIC_KEY = b"f" * 32
KEYS = packets.ProbeKeys.derive(1, {1: FABRIC_KEY})
REGIONS = [f"p{i:02d}" for i in range(40)]
ADDRS = {r: (f"10.0.{i}.1", 9000) for i, r in enumerate(REGIONS)}
NEAR = frozenset(REGIONS[:4])
# p05 carries p05 and p08 with p06 as backup; p07 has no backup
TABLE = [Entry("p05", "p05", ("fra", "p05"), 5.0, backup_next_hop="p06"),
         Entry("p08", "p05", ("fra", "p05", "p08"), 9.0, backup_next_hop="p06"),
         Entry("p07", "p07", ("fra", "p07"), 7.0)]
ROUTED = frozenset({"p05", "p06", "p07"})
PERIOD = 20.0
PROBE_INTERVAL = 1.0

Answer = Callable[[str, float], float | None]  # (region, sent at) -> RTT or lost


def rtt_of(region: str, at: float) -> float | None:
    return 0.01 + int(region[1:]) * 0.004  # 10 to 166 ms


class Sim:
    """A scheduler of region fra with 40 peers behind a fake network, and the node's loop."""

    def __init__(self, partial_mesh_above: int = 10, answer: Answer = rtt_of,
                 seed: int = 1) -> None:
        self.now = 0.0
        self.answer = answer
        self.sent: list[tuple[float, str]] = []
        self.bursting_at_send: list[bool] = []
        self.inflight: list[tuple[float, str, int]] = []
        self.fresh: dict[str, list[float]] = {r: [] for r in REGIONS}  # RTT samples' times
        self.events: list[RelayEvent] = []
        self.tables = RouteTables("fra")
        assert self.tables.apply(1, TABLE) is None
        self.s = ProbeScheduler("fra", RelaySettings(), self.tables, self.send,
                                random.Random(seed), Counter())
        self.s.on_links_changed = self.events.extend
        self.s.configure_keys(1, {1: FABRIC_KEY})
        self.s.probe_interval_s = PROBE_INTERVAL
        self.s.set_sampling(0.0, partial_mesh_above, PERIOD)
        self.s.tables_replaced(0.0)
        self.s.set_peers(dict(ADDRS), 0.0, NEAR)
        self.sent_to: Counter[str] = Counter()
        self.bursts_seen = 0  # the most peers in their turn at once

    def send(self, data: bytes, addr: tuple[str, int], region: str) -> None:
        pkt = packets.decode(data, KEYS)
        self.sent.append((self.now, region))
        self.bursting_at_send.append(region in self.s.bursts)
        rtt = self.answer(region, self.now)
        if rtt is not None:
            heapq.heappush(self.inflight, (self.now + rtt, region, pkt.seq))

    def deliver(self) -> None:
        while self.inflight and self.inflight[0][0] <= self.now:
            at, region, seq = heapq.heappop(self.inflight)
            stats = self.s.stats.get(region)
            before = stats.samples if stats else 0
            reply = packets.encode_probe(packets.PROBE_REPLY, seq, region, KEYS)
            self.s.on_probe_packet(reply, ADDRS[region], at)
            if stats and stats.samples > before:
                self.fresh[region].append(at)

    def run(self, until: float) -> None:
        g = self.s.settings.probe_granularity_s
        while self.now < until:
            self.deliver()
            wake = self.s.step(self.now, self.sent_to)
            self.bursts_seen = max(self.bursts_seen, len(self.s.bursts))
            self.now = round(max(self.now + g, wake), 6)

    def probes(self, region: str, since: float = 0.0, until: float = float("inf")) \
            -> list[float]:
        return [t for t, r in self.sent if r == region and since <= t < until]

    def rate(self, since: float, until: float) -> float:
        return sum(since <= t < until for t, _ in self.sent) / (until - since)


def turns(times: list[float], gap: float = 2.0) -> list[float]:
    """The starts of the clusters of `times` (a turn's samples come close together)."""
    return [b for a, b in pairwise([-1e9, *times]) if b - a > gap]


def test_every_peer_is_measured_every_sample_period_and_the_needed_ones_all_the_time():
    sim = Sim()
    sim.run(100.0)
    s = sim.s
    assert s.rotation is not None
    assert s.continuous == NEAR | ROUTED
    others = set(REGIONS) - s.continuous
    assert set(s.rotation.members) == others
    burst = 1.0  # a turn: a few fast probes and their replies (the RTTs are 10-166 ms)
    for region in others:
        fresh = sim.fresh[region]
        assert fresh and fresh[0] <= PERIOD + burst, region
        assert all(b - a <= PERIOD + burst for a, b in pairwise(fresh)), region
        assert 100.0 - fresh[-1] <= PERIOD + burst
        # each turn brings min_samples fresh replies at least
        starts = turns(fresh)
        assert len(starts) >= 100.0 // PERIOD
        for start in starts[:-1]:
            assert sum(start <= t < start + burst for t in fresh) \
                >= s.settings.probe.min_samples
    for region in s.continuous:  # measured at the probe interval throughout
        gaps = [b - a for a, b in pairwise(sim.fresh[region]) if a > 2.0]
        assert gaps and max(gaps) <= PROBE_INTERVAL * 1.05 + 0.2, region
    # probes to the others go only in their turns; their links keep their state between
    assert all(bursting for (t, r), bursting in zip(sim.sent, sim.bursting_at_send,
                                                    strict=True) if r in others)
    assert sim.events == [] and all(st_.state == UP for st_ in s.stats.values())
    # only about others x burst / period peers are in their turn at once
    assert sim.bursts_seen <= 3


def test_a_partial_mesh_sends_far_fewer_probes_than_the_full_mesh():
    partial, full = Sim(), Sim(partial_mesh_above=250)
    partial.run(60.0)
    full.run(60.0)
    assert full.s.rotation is None
    assert full.rate(20.0, 60.0) >= 0.95 * len(REGIONS) / PROBE_INTERVAL
    # 7 peers all the time, 33 in turns of about four probes every 20 s
    assert partial.rate(20.0, 60.0) < 0.4 * full.rate(20.0, 60.0)


def test_at_or_below_the_threshold_every_peer_is_probed_as_ever():
    sim = Sim(partial_mesh_above=len(REGIONS) + 1)  # 41 regions: not above
    sim.run(10.0)
    assert sim.s.rotation is None and sim.s.bursts == {} and sim.s.continuous == frozenset()
    for region in REGIONS:
        gaps = [b - a for a, b in pairwise(sim.probes(region, 3.0))]
        assert gaps and max(gaps) <= PROBE_INTERVAL * 1.05 + 0.02


def test_a_new_next_hop_or_near_peer_is_probed_at_once_and_a_former_one_takes_turns():
    sim = Sim()
    sim.run(30.0)
    s = sim.s
    # a new table: p20 next hop (backup p21), p05 and p06 no longer used
    assert sim.tables.apply(2, [Entry("p20", "p20", ("fra", "p20"), 5.0,
                                      backup_next_hop="p21"),
                                Entry("p07", "p07", ("fra", "p07"), 7.0)]) is None
    s.tables_replaced(sim.now)
    assert {"p20", "p21"} <= s.continuous and not {"p05", "p06"} & s.continuous
    changed = sim.now
    s.set_peers(dict(ADDRS), sim.now, NEAR | {"p30"})
    assert "p30" in s.continuous
    sim.run(50.0)
    for region in ("p20", "p21", "p30"):
        times = sim.probes(region, changed)
        assert times[0] - changed <= 2 * s.settings.probe_granularity_s
        assert max(b - a for a, b in pairwise(times)) <= PROBE_INTERVAL * 1.05 + 0.02
    # p05 and p06, measured until the change, go last in the rotation
    for region in ("p05", "p06"):
        times = sim.probes(region, changed + 1.0)
        assert times and times[0] >= changed + PERIOD - 3.0
        assert times[0] <= changed + PERIOD + 1.0


def test_a_sampled_peer_that_died_is_found_at_its_turn_and_not_probed_between():
    dead = "p30"

    def answer(region: str, at: float) -> float | None:
        return None if region == dead and 25.0 <= at < 65.0 else rtt_of(region, at)

    sim = Sim(answer=answer)
    sim.run(110.0)
    kinds = [(e.kind, e.at) for e in sim.events if e.peer == dead]
    down = next(t for k, t in kinds if k == "link-down")
    back = next(t for k, t in kinds if k == "link-up")
    assert 25.0 <= down <= 25.0 + PERIOD + 4.0
    assert 65.0 <= back <= 65.0 + PERIOD + 1.0
    # down, it waits for its turns like any other sampled peer: a few probes each
    probes = sim.probes(dead, down + 1.0, back - 1.0)
    assert len(probes) <= 2 * 10
    starts = turns(probes, gap=5.0)
    assert all(b - a >= PERIOD - 1.0 for a, b in pairwise(starts))
    assert [e.peer for e in sim.events] == [dead] * len(sim.events)


def test_back_to_the_full_mesh_every_peer_is_probed_at_once():
    sim = Sim()
    sim.run(10.0)
    sampled = set(sim.s.rotation.members)
    sim.s.set_sampling(sim.now, partial_mesh_above=250)
    assert sim.s.rotation is None
    switched = sim.now
    sim.run(15.0)
    for region in REGIONS:
        times = sim.probes(region, switched)
        # the sampled ones at once, the others at their cadence
        assert times[0] - switched <= (0.02 if region in sampled else PROBE_INTERVAL * 1.05)
        assert max(b - a for a, b in pairwise(times)) <= PROBE_INTERVAL * 1.05 + 0.02


def test_full_reports_hold_the_links_probed_all_the_time_and_those_in_their_turn():
    sim = Sim()
    counters: Counter[str] = Counter()
    fabric = Fabric("fra", sim.tables, lambda hop, data: True, lambda: sim.now, counters)
    session = ControlSession("fra", "fra-1", "controller", RelaySettings(), sim.s, fabric,
                             Chaos(), counters, random.Random(1), clock=lambda: sim.now,
                             wall=lambda: 1.7e9 + sim.now)
    sim.run(30.0)
    first = session.link_report()
    dsts = {link.dst for link in first.links}
    # before the first full report: what was measured over the last sampling period
    sampled = {r for r, times in sim.fresh.items() if times}
    assert dsts == sampled == set(REGIONS)
    sim.run(40.0)
    report = session.link_report()
    dsts = {link.dst for link in report.links}
    # later ones: the links probed all the time and those in their turn now (one sampled
    # earlier was reported after its turn, and the controller keeps it until the next)
    assert sim.s.continuous <= dsts <= sim.s.continuous | set(sim.s.bursts)
    assert len(dsts) < len(sim.s.continuous) + 5
    assert report.full


# -- the rotation ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), period=st.floats(1.0, 100.0),
       steps=st.lists(st.floats(0.001, 0.5), min_size=50, max_size=400),
       seed=st.integers(0, 10))
def test_turns_come_a_period_apart_spread_evenly(n, period, steps, seed):
    """However the caller's wakeups fall, with steady members every member gets a turn
    within the first period and then every period (give or take one wakeup), and the turns
    are spaced period / n apart (a late wakeup starts those it missed). (Members measured
    before: the first pass of never-measured ones is the test below.)"""
    members = [f"r{i}" for i in range(n)]
    rotation = Rotation(period, random.Random(seed))
    now = 0.0
    rotation.add(members, now, measured=True)
    seen: dict[str, list[float]] = {m: [] for m in members}
    starts: list[float] = []
    scale = period / n
    for step in steps * 3:
        for region in rotation.due(now):
            seen[region].append(now)
            starts.append(now)
        assert rotation.wake() > now
        now += step * scale
    late = max(steps) * scale
    for region, times in seen.items():
        if now > period + late:
            assert times and times[0] <= period + late, region
        assert all(period - late - 1e-6 <= b - a <= period + late + 1e-6
                   for a, b in pairwise(times)), region
    # never more turns in a window than its share
    window = 5 * scale
    for i, t in enumerate(starts):
        assert sum(t <= u < t + window for u in starts[i:]) <= window / scale + 1 + late / scale


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 300), period=st.floats(20.0, 120.0), seed=st.integers(0, 10))
def test_never_measured_members_all_take_a_turn_within_the_first_pass(n, period, seed):
    """A relay that joins a large mesh measures every peer within FIRST_PASS_S (or a period,
    if that is shorter), then falls into the period's pace."""
    rotation = Rotation(period, random.Random(seed))
    rotation.add([f"r{i}" for i in range(n)], 0.0, measured=False)
    seen: dict[str, list[float]] = {}
    now = 0.0
    while now < 3 * period:
        for region in rotation.due(now):
            seen.setdefault(region, []).append(now)
        now += 0.01
    first = max(times[0] for times in seen.values())
    assert len(seen) == n and first <= min(FIRST_PASS_S, period) + 0.02
    # later turns a period apart, give or take the first pass's head start
    for times in seen.values():
        assert all(b - a <= period + 0.02 for a, b in pairwise(times))
        assert all(b - a >= period - FIRST_PASS_S - 0.02 for a, b in pairwise(times[1:]))


def test_the_rotation_puts_never_measured_members_first_and_measured_ones_last():
    rotation = Rotation(10.0, random.Random(1))
    rotation.add(["a", "b", "c"], 0.0, measured=True)
    assert rotation.due(0.0) in (["a"], ["b"], ["c"])
    rotation.add(["new"], 0.5, measured=False)
    assert rotation.due(rotation.wake()) == ["new"]
    rotation.add(["done"], 1.0, measured=True)
    order = list(rotation.queue)
    assert order[-2:] == ["new", "done"] or order[-1] == "done"
    rotation.remove(["a", "b", "c", "new", "done"])
    assert len(rotation) == 0 and rotation.due(100.0) == [] and rotation.wake() == float("inf")


def test_a_long_stall_does_not_start_every_turn_at_once_twice():
    rotation = Rotation(10.0, random.Random(1))
    rotation.add([f"r{i}" for i in range(10)], 0.0, measured=False)
    assert len(rotation.due(1000.0)) == 10  # each had waited far longer than a period
    assert rotation.due(1000.5) == [] and rotation.wake() == 1001.0


def test_links_keep_their_measurements_between_turns():
    sim = Sim()
    sim.run(25.0)
    resting = [r for r in sim.s.rotation.members if r not in sim.s.bursts]
    before = {r: (sim.s.stats[r].samples, sim.s.stats[r].lost, sim.s.stats[r].min_rtt)
              for r in resting}
    sim.run(25.5)
    assert all(r in sim.s.bursts or (sim.s.stats[r].samples, sim.s.stats[r].lost,
                                     sim.s.stats[r].min_rtt) == before[r] for r in resting)
    assert all(sim.s.stats[r].lost == 0 for r in REGIONS)
