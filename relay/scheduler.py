"""When a relay probes each peer, which links it watches closely, and how it reroutes when a
link's state changes: a plain object fed explicit times, probe replies and the traffic the
fabric sent, with no sockets, no timers and no clock of its own (its shell, relay/node.py,
runs the loop; relay/control.py translates what it decides to and from the controller).

Every peer is measured at the controller's probe interval (RTT samples). The links traffic
uses (the next hops it went to lately and their routes' backups) are also watched at the
neighbour interval, and after a miss on one of them rechecked at once, so that a dead next
hop is found in a few timeouts and its routes move to their precomputed backups (fast
reroute) before the controller knows of the failure.

In a large mesh (more regions than partial_mesh_above) a relay probes all the time only what
it needs: its `near` peers, the next hops and backups of its routes and the links it watches
(the continuous set). The others take turns (relay/sampling.py), one every sample_every_s
each, the turns spread evenly over that period: a turn is a short burst at the fast cadence
until min_samples fresh replies (or down_after misses, or two timeouts). Between turns such a
peer gets no probes, so it misses none and its link keeps its state and what it measured.
A peer that joins the continuous set (a new route table, a near peer, traffic) is probed at
once. At or below the threshold every peer is measured as above.

Probes and replies are authenticated (relay/packets.py) with keys derived from the fabric
keys the controller hands out (`configure_keys`): until it has one a relay sends no probes and
drops every probe it receives, and a reply that fails its tag is dropped and counted, never an
RTT sample. Replies go under the responder's current epoch; every epoch the controller lists
is accepted, which keeps links up through a key rotation.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from relay import packets
from relay.probe import LinkStats, ProbeSettings
from relay.sampling import Rotation
from relay.tables import RouteTables
from skymesh.linkstate import DEGRADED, DOWN, LINK, UP

log = logging.getLogger("skymesh.relay")

Addr = tuple[str, int]


@dataclass(frozen=True)
class RelaySettings:
    fast_probe_interval_s: float = 0.1  # while a link has fewer than min_samples replies
    # to the next hops traffic went to lately and their routes' backups (the controller may
    # set it); to the other peers at the measuring cadence
    neighbour_probe_interval_s: float = LINK.neighbour_probe_interval_s
    # after a missed probe on a watched link, probe it this often until it answers or is
    # down, as RON's follow-up probes do: the misses that make it down then come within
    # about two timeouts of the failure instead of two intervals and a timeout
    recheck_interval_s: float = 0.02
    # a next hop nothing went to for this long goes back to the measuring cadence, as
    # Tailscale stops heartbeats to peers idle for 45 s: a failure nobody's traffic meets
    # needs no fast detection, and a relay of a large mesh sends far fewer probes
    watch_idle_s: float = 30.0
    # the probe loop looks at every peer this often; in between it wakes only for the links
    # probed faster (watched, down, being measured) and for the fabric's timers
    full_pass_s: float = 0.25
    tick_s: float = 0.05  # the fabric's timers (retransmissions) while it has streams
    # the shortest sleep: probes due within it go together (a wakeup per peer would cost a
    # busy host of many relays more than the probes themselves)
    probe_granularity_s: float = 0.01
    max_events: int = 1000  # kept while the controller is away
    forget_after_s: float = 60.0  # a peer the controller no longer lists, down this long
    backoff_min_s: float = 0.2  # between attempts to reach the controller
    backoff_max_s: float = 5.0
    probe: ProbeSettings = ProbeSettings()


@dataclass(frozen=True)
class RelayEvent:
    """What a relay noticed or did on its own, for the controller's event log."""

    at: float  # on the clock the scheduler is fed (monotonic in a relay)
    # link-down, link-degraded, link-up, link-healthy, reroute, restore, chaos, transit-node
    kind: str
    peer: str = ""
    routes: int = 0  # for reroute and restore: destinations switched
    detail: str = ""


@dataclass
class Burst:
    """A sampled peer's turn: probed at the fast cadence until it has min_samples replies more
    than at the start, or down_after misses, or two probe timeouts have passed."""

    started: float
    samples: int  # the link's replies at the start
    missed: int = 0


class ProbeScheduler:
    """Peers, their links' statistics and the decisions that follow from them.

    `send(datagram, address, region)` is how probes and replies leave; the two callbacks tell
    the shell that forwarding changed (the fabric's transit index must follow) and that links
    changed state (with the events, for the controller). Both are called before the method
    that caused them returns."""

    def __init__(self, region: str, settings: RelaySettings, tables: RouteTables,
                 send: Callable[[bytes, Addr, str], None], rng: random.Random,
                 counters: Counter[str] | None = None) -> None:
        self.region = region
        self.settings = settings
        self.tables = tables
        self.send = send
        self.rng = rng  # the jitter of probe times: peers' probes do not fall into step
        self.counters: Counter[str] = Counter() if counters is None else counters
        # changed in place, never replaced: the fabric and the transport look addresses up in
        # it
        self.peers: dict[str, Addr] = {}
        self.stats: dict[str, LinkStats] = {}
        self.next_probe: dict[str, float] = {}
        self.next_sample: dict[str, float] = {}  # when a probe next counts as an RTT sample
        self.seq = 0
        self.probe_interval_s = 0.5  # the measuring cadence, until the controller sets it
        self.neighbour_probe_interval_s = settings.neighbour_probe_interval_s
        self.routed_to: frozenset[str] = frozenset()  # peers the routes forward to
        self.active: dict[str, float] = {}  # next hops traffic went to, when last seen
        self.watched: frozenset[str] = frozenset()  # those and their routes' backups
        self.fast: set[str] = set()  # peers due before the next pass over everyone
        self.next_pass = 0.0  # when the next pass over everyone is due
        self.link_states: dict[str, str] = {}  # as last acted upon
        self.down_links: set[str] = set()  # down until measured up again
        self.unlisted: dict[str, float] = {}  # peers the controller stopped listing, since
        self.keys: packets.ProbeKeys = packets.NO_KEYS  # until the controller configures some
        # partial-mesh measurement (the controller may set these)
        self.partial_mesh_above = LINK.partial_mesh_above
        self.sample_every_s = LINK.sample_every_s
        self.near: frozenset[str] = frozenset()  # the controller's nearest regions
        self.rotation: Rotation | None = None  # the sampled peers' turns; None: full mesh
        self.continuous: frozenset[str] = frozenset()  # probed all the time (partial mesh)
        self.bursts: dict[str, Burst] = {}  # sampled peers in their turn
        self.measured_at: dict[str, float] = {}  # sampled peers: when last measured
        self.on_forwarding_changed: Callable[[], None] = lambda: None
        self.on_links_changed: Callable[[list[RelayEvent]], None] = lambda events: None

    # -- the controller's word -------------------------------------------------------------

    def set_peers(self, peers: dict[str, Addr], now: float,
                  near: Iterable[str] = (), moved: Iterable[str] = ()) -> None:
        """The controller's list of relays (one address per region: the node of it this
        relay sends to), and those of them it marks nearest (`near`: probed all the time in a
        partial mesh). A peer missing from it may only have lost its control session (or the
        controller restarted and it has not reconnected yet), so it stays, probed and
        forwarded to while it answers, until it has been down and unlisted for
        forget_after_s. A new address for a region starts its link afresh, unless the region
        is in `moved` and its link is not down: the address is another node of the same
        region, whose path is the region's as much as the last one's, so the link keeps its
        RTT and state and forgets the probes in flight to the node left and its losses
        (LinkStats.node_changed); the new node is probed at once. A link down (a failover
        off a dead node) starts afresh: it has nothing worth keeping, and the routes stay on
        their backups until the new node answers, or it goes down in turn."""
        moved = set(moved)
        fresh = []
        for region, addr in peers.items():
            before = self.peers.get(region)
            if addr != before and before is not None and region in moved \
                    and region in self.stats and not self.stats[region].is_down:
                self.stats[region].node_changed()
                if self.next_probe[region] != math.inf:  # not a sampled peer between turns
                    self.next_probe[region] = now
                    self.fast.add(region)
            elif addr != before:
                self.stats[region] = LinkStats(self.settings.probe)
                self.next_probe[region] = now + self.rng.uniform(0, self.settings.tick_s * 2)
                self.next_sample.pop(region, None)
                self.link_states.pop(region, None)
                self.fast.add(region)  # probed within the pass, not at the next one
                fresh.append(region)
            self.unlisted.pop(region, None)
        for region in sorted(self.peers.keys() - peers.keys()):  # not in hash order
            self.unlisted.setdefault(region, now)
        merged = {**{r: self.peers[r] for r in self.unlisted}, **peers}
        self.peers.clear()
        self.peers.update(merged)
        self.near = frozenset(near)
        self.resample(now, fresh)
        self.apply_link_states(now)

    def set_sampling(self, now: float, partial_mesh_above: int | None = None,
                     sample_every_s: float | None = None) -> None:
        """The controller's partial-mesh settings (None: unchanged)."""
        if partial_mesh_above is not None:
            self.partial_mesh_above = partial_mesh_above
        if sample_every_s is not None:
            self.sample_every_s = sample_every_s
        self.resample(now)

    def configure_keys(self, epoch: int, fabric_keys: Mapping[int, bytes]) -> None:
        """The fabric keys by epoch, as the fabric gets them (the one of `epoch` seals, so
        probes and replies go under it): their probe keys are derived from them."""
        self.keys = packets.ProbeKeys.derive(epoch, fabric_keys)

    def set_probe_settings(self, **changes: float) -> None:
        """New thresholds (down_after, degraded_loss, degraded_jitter_ms) for every link,
        measured or not; the links keep what they measured."""
        p = self.settings.probe
        if not changes or all(getattr(p, k) == v for k, v in changes.items()):
            return
        probe = replace(p, **changes)
        self.settings = replace(self.settings, probe=probe)
        for stats in self.stats.values():
            stats.configure(probe)

    def tables_replaced(self, now: float) -> None:
        """A route table came (applied or not): watch what its routes use from now on, and
        count the routes that go to a backup at once because the controller does not know of
        a failure yet."""
        self.routed_to = self.tables.neighbours_in_use()
        self.watch(self.tables.watch_list(self.active), now)
        if self.tables.rerouted():
            self.counters["rerouted"] += len(self.tables.rerouted())

    def forget_unlisted(self, now: float) -> None:
        gone = [r for r, since in self.unlisted.items()
                if now - since > self.settings.forget_after_s and self.stats[r].is_down]
        for region in gone:
            del self.unlisted[region], self.peers[region], self.stats[region]
            del self.next_probe[region]
            self.next_sample.pop(region, None)
            self.link_states.pop(region, None)
            self.bursts.pop(region, None)
            self.measured_at.pop(region, None)
        if gone:
            log.info("forgot %s: down and unlisted for %.0f s", ", ".join(gone),
                     self.settings.forget_after_s)
            self.resample(now)
            self.apply_link_states(now)

    # -- probing ---------------------------------------------------------------------------

    def step(self, now: float, sent_to: Counter[str]) -> float:
        """One wakeup of the probe loop. Every full_pass_s a pass over everyone, which also
        takes note of the traffic the fabric sent (`sent_to`, emptied) and forgets peers long
        gone; in between, only the links due sooner. In a partial mesh, the sampled peers
        whose turn has come start their bursts. Returns when to wake next."""
        everyone = now >= self.next_pass
        if everyone:
            self.note_traffic(now, sent_to)
            self.forget_unlisted(now)
            self.next_pass = now + self.settings.full_pass_s
        if self.rotation is None:
            return min(self.probe_due(now, everyone), self.next_pass)
        for region in self.rotation.due(now):
            self.start_burst(region, now)
        return min(self.probe_due(now, everyone), self.next_pass, self.rotation.wake())

    def probe_due(self, now: float, everyone: bool = True) -> float:
        """Send the probes that are due and count the missed ones, to every peer or (between
        the passes over everyone) to those due before the next such pass: watched links,
        links down, links being measured and sampled peers in their turn (whose turn ends
        here). Act on links whose state changed. Returns when one of those is next due."""
        horizon = now + self.settings.full_pass_s
        wake = horizon
        fast_interval = self.settings.fast_probe_interval_s
        soon = now + self.settings.probe_granularity_s / 2  # due before the next wakeup
        if everyone:
            peers = self.peers
            self.fast = set()
        else:
            peers = {r: self.peers[r] for r in sorted(self.fast) if r in self.peers}
        for region, addr in peers.items():
            stats = self.stats[region]
            missed = stats.expire(now)
            burst = self.bursts.get(region)
            if burst is not None:
                burst.missed += missed
                if self.burst_done(burst, stats, now):
                    del self.bursts[region]
                    self.measured_at[region] = now
                    self.next_probe[region] = math.inf  # until its next turn
                    burst = None
            suspect = bool(stats.consecutive_lost) and not stats.is_down \
                and region in self.watched
            if missed and suspect:
                self.next_probe[region] = now  # a miss: check again at once
            if soon >= self.next_probe[region]:
                # RTT samples at the measuring cadence; probes in between only watch the link
                sample = soon >= self.next_sample.get(region, 0.0)
                if self.keys.can_send:
                    self.seq += 1
                    stats.sent(self.seq, now, sample)
                    self.send(packets.encode_probe(packets.PROBE, self.seq, self.region,
                                                   self.keys), addr, region)
                else:  # no key yet: nothing sent, nothing to miss; the cadence goes on
                    self.counters["probe.no-key"] += 1
                if burst is not None or (stats.samples < self.settings.probe.min_samples
                                         and not stats.measured):
                    interval = fast_interval
                    sample_interval = fast_interval
                else:
                    sample_interval = self.probe_interval_s
                    interval = (self.settings.recheck_interval_s if suspect
                                else self.neighbour_probe_interval_s
                                if region in self.watched or stats.is_down else sample_interval)
                jitter = self.rng.uniform(0.95, 1.05)
                self.next_probe[region] = now + interval * jitter
                if sample:
                    self.next_sample[region] = now + sample_interval * jitter
            due = self.next_probe[region]
            expiry = stats.next_expiry()
            if expiry is not None:
                due = min(due, expiry + 0.001)
            if due < horizon:
                self.fast.add(region)
                wake = min(wake, due)
        if any(self.link_states.get(r) != self.stats[r].state for r in peers):
            self.apply_link_states(now)
        return wake

    def on_probe_packet(self, data: bytes, addr: Addr, now: float) -> None:
        """A peer's probe (answered at once, to where it came from, under this relay's
        current epoch) or a reply to ours. Nothing unauthenticated is trusted: a datagram
        that fails decoding is dropped and counted by reason (`malformed`, `probe.epoch`: no
        key of its epoch, `probe.bad-tag`: forged or tampered with), as is everything that
        arrives before the relay has a key (`probe.no-key-dropped`)."""
        if not self.keys.by_epoch:
            self.counters["probe.no-key-dropped"] += 1
            return
        try:
            pkt = packets.decode(data, self.keys)
        except packets.MalformedPacket as e:
            self.counters["malformed" if e.reason == "malformed" else f"probe.{e.reason}"] += 1
            log.debug("probe datagram from %s dropped: %s", addr, e)
            return
        if pkt.kind == packets.PROBE:
            if not self.keys.can_send:  # accepted keys but none to answer under
                self.counters["probe.no-key"] += 1
                return
            reply = packets.encode_probe(packets.PROBE_REPLY, pkt.seq, self.region, self.keys)
            self.send(reply, addr, pkt.region)
        elif (stats := self.stats.get(pkt.region)) is not None:
            if stats.received(pkt.seq, now) is None:
                self.counters["late_replies"] += 1

    # -- watching the links traffic uses ---------------------------------------------------

    def note_traffic(self, now: float, sent_to: Counter[str]) -> None:
        """Keep the next hops that traffic went to since the last pass (`sent_to`, the
        fabric's count, emptied here), and their backups, closely watched (until idle for
        watch_idle_s)."""
        fresh = not sent_to.keys() <= self.active.keys()
        for hop in sent_to:
            self.active[hop] = now
        sent_to.clear()
        idle = [h for h, t in self.active.items() if now - t > self.settings.watch_idle_s]
        for hop in idle:
            del self.active[hop]
        if fresh or idle:
            self.watch(self.tables.watch_list(self.active), now)

    def watch(self, watched: frozenset[str], now: float) -> None:
        """Probe these links at the neighbour interval from now on (those newly watched
        within one interval, not at their slower cadence)."""
        soon = now + self.neighbour_probe_interval_s
        for region in watched - self.watched:
            if region in self.next_probe:
                self.next_probe[region] = min(self.next_probe[region], soon)
                self.fast.add(region)
        self.watched = watched
        self.resample(now)

    # -- partial mesh ------------------------------------------------------------------------

    def resample(self, now: float, fresh: Iterable[str] = ()) -> None:
        """Which peers are probed all the time and which take turns, after a change of the
        peers, the near ones, the routes, the watched links or the settings. `fresh`: peers
        whose links start afresh (a new address), whose turn comes first."""
        partial = len(self.peers) + 1 > self.partial_mesh_above
        rotation = self.rotation
        if not partial:
            if rotation is None:
                return
            # back to the full mesh: the peers that took turns at the measuring cadence again
            for region in rotation.members:
                if region in self.next_probe:
                    self.next_probe[region] = min(self.next_probe[region], now)
                    self.fast.add(region)
            self.rotation = None
            self.continuous = frozenset()
            self.bursts.clear()
            self.measured_at.clear()
            return
        continuous = (self.near | self.routed_to | self.watched) & self.peers.keys()
        if rotation is None:
            rotation = self.rotation = Rotation(self.sample_every_s, self.rng)
            before = frozenset(self.peers)  # every peer was probed until now
        else:
            before = self.continuous
        rotation.period_s = self.sample_every_s
        for region in continuous - before:  # probed from now on, not at its next turn
            if region in rotation:
                self.bursts.pop(region, None)
                self.measured_at.pop(region, None)
                self.next_probe[region] = now
                self.fast.add(region)
        fresh = set(fresh)
        for region in fresh:  # what it measured before is gone
            self.bursts.pop(region, None)
            self.measured_at.pop(region, None)
        rotation.remove(continuous | fresh | (rotation.members - self.peers.keys()))
        joining = sorted(r for r in self.peers.keys() - continuous if r not in rotation)
        measured = [r for r in joining
                    if r in before and r not in fresh and self.stats[r].samples > 0]
        rotation.add(measured, now, measured=True)
        rotation.add(joining, now, measured=False)  # the rest: never measured, first
        for region in measured:
            self.measured_at[region] = now
        for region in joining:
            if region not in self.bursts:
                self.next_probe[region] = math.inf  # until its turn
        self.continuous = continuous

    def start_burst(self, region: str, now: float) -> None:
        """A sampled peer's turn: probes at the fast cadence from now, each an RTT sample."""
        if region not in self.peers:
            return
        self.bursts[region] = Burst(now, self.stats[region].samples)
        self.next_probe[region] = now
        self.next_sample.pop(region, None)
        self.fast.add(region)

    def burst_done(self, burst: Burst, stats: LinkStats, now: float) -> bool:
        p = self.settings.probe
        return (stats.samples - burst.samples >= p.min_samples or burst.missed >= p.down_after
                or now - burst.started >= 2 * p.timeout_s)

    def measured_links(self, since: float) -> set[str]:
        """The links measured now: every peer's in a full mesh; in a partial one, those
        probed all the time, those in their turn and those sampled since `since`."""
        if self.rotation is None:
            return set(self.stats)
        return {r for r in self.stats
                if r in self.continuous or r in self.bursts
                or self.measured_at.get(r, -math.inf) >= since}

    # -- link state -> forwarding ----------------------------------------------------------

    def apply_link_states(self, now: float) -> None:
        """Reroute around links now down (to the routes' precomputed backups, at once) and
        back onto links up again; tell the shell."""
        events: list[RelayEvent] = []
        for region, stats in self.stats.items():
            state, before = stats.state, self.link_states.get(region)
            if state == before:
                continue
            self.link_states[region] = state
            if state in (DOWN, DEGRADED) or (state == UP and before in (DOWN, DEGRADED)):
                kind = ("link-up" if before == DOWN else
                        {DOWN: "link-down", DEGRADED: "link-degraded", UP: "link-healthy"}[state])
                detail = (f"{stats.consecutive_lost} probes missed" if state == DOWN else
                          f"loss {stats.loss:.1%}, jitter {stats.jitter:.1f} ms")
                events.append(RelayEvent(now, kind, region, detail=detail))
                log.log(logging.WARNING if state == DOWN else logging.INFO,
                        "link to %s %s (%s)", region, state, detail)
            if state == DOWN:
                self.down_links.add(region)
            elif state in (UP, DEGRADED):
                self.down_links.discard(region)
        # a next hop the controller no longer lists as a peer is gone as surely as a dead link
        self.down_links &= set(self.peers)
        down = self.down_links | (self.routed_to - set(self.peers))
        moved = self.tables.set_down(down)
        if moved:
            self.on_forwarding_changed()
            for hop in sorted({e.next_hop for e in moved}):
                n = sum(e.next_hop == hop for e in moved)
                if hop in down:
                    self.counters["rerouted"] += n
                    events.append(RelayEvent(now, "reroute", hop, n, "to the routes' backups"))
                    log.warning("fast reroute: %d destinations off %s", n, hop)
                else:
                    events.append(RelayEvent(now, "restore", hop, n, "back on the primary"))
                    log.info("restored %d destinations onto %s", n, hop)
        if events:
            self.on_links_changed(events)
