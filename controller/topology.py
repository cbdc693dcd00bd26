"""What the controller knows of the mesh: connected relays and their measured links.

Plain state fed events with explicit times; the gRPC shell owns the clock."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from controller.damping import FlapDamper
from controller.routing import Link, loss_bound
from skymesh.linkstate import DEGRADED, DOWN, FROM_WIRE, STATES, TO_WIRE, UNKNOWN, UP


@dataclass(frozen=True)
class Relay:
    region: str
    node_id: str
    probe_addr: str
    connected_at: float
    hello_version: int = 0


@dataclass(frozen=True)
class LinkRecord:
    src: str
    dst: str
    rtt_ms: float
    min_rtt_ms: float
    jitter_ms: float
    loss: float
    samples: int
    lost: int
    state: str
    received_at: float
    window: int = 0  # probes the loss is a fraction of (0: not reported)

    @property
    def latency_ms(self) -> float:
        """The RTT routing uses: the recent minimum where the relay reports one."""
        return self.min_rtt_ms if self.min_rtt_ms > 0 else self.rtt_ms

    @property
    def routing_loss(self) -> float:
        """The loss routing pays for: what the probes show beyond reasonable doubt."""
        return loss_bound(self.loss, self.window)


STATE_CODES = {UNKNOWN: 1, UP: 2, DEGRADED: 3, DOWN: 4}  # 0: no record
CODE_STATES = {code: state for state, code in STATE_CODES.items()}
_UNKNOWN, _UP, _DEGRADED, _DOWN = (STATE_CODES[s] for s in (UNKNOWN, UP, DEGRADED, DOWN))
# the wire's LinkState values (skymesh.linkstate.TO_WIRE) to the codes above, -1: none
_WIRE_CODES = np.full(max(TO_WIRE.values()) + 1, -1, dtype=np.int8)
for _state, _wire in TO_WIRE.items():
    _WIRE_CODES[_wire] = STATE_CODES[_state]


@dataclass
class SampleBatch:
    """A report's link samples as columns, one entry per sample (the relay service fills
    it from the wire): what `Topology.report_batch` takes."""

    dst: list[str] = field(default_factory=list)
    rtt_ms: list[float] = field(default_factory=list)
    min_rtt_ms: list[float] = field(default_factory=list)
    jitter_ms: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    window: list[int] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    state: list[int] = field(default_factory=list)  # the wire's LinkState value

    def __len__(self) -> int:
        return len(self.dst)

    def sample(self, k: int) -> dict:
        """The k-th sample as `report` takes it (its state by name, "?" if unknown)."""
        return {"dst": self.dst[k], "rtt_ms": self.rtt_ms[k], "min_rtt_ms": self.min_rtt_ms[k],
                "jitter_ms": self.jitter_ms[k], "loss": self.loss[k], "window": self.window[k],
                "samples": self.samples[k], "lost": self.lost[k],
                "state": FROM_WIRE.get(self.state[k], "?")}


class Topology:
    """Links live in arrays over the catalogue's regions (sorted), one cell per directed
    pair, so that what the controller asks of hundreds of relays' links (which are usable,
    their costs, which moved, which went stale) is a few vectorised operations rather than a
    walk over records; `links` gives the records for the few who read them one by one."""

    def __init__(self, regions: Iterable[str], stale_after_s: float = 5.0,
                 settle_samples: int = 8) -> None:
        self.regions = frozenset(regions)
        self.names = sorted(self.regions)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.stale_after_s = stale_after_s
        self.settle_samples = settle_samples
        self.damper = FlapDamper()
        self.relays: dict[str, Relay] = {}
        self.rejected_samples = 0
        n = len(self.names)
        self.connected = np.zeros(n, dtype=bool)  # regions with a relay
        self.rtt = np.zeros((n, n))
        self.min_rtt = np.zeros((n, n))
        self.jitter = np.zeros((n, n))
        self.loss = np.zeros((n, n))
        self.bound = np.zeros((n, n))  # the loss routing pays for (loss_bound)
        self.samples = np.zeros((n, n), dtype=np.int64)
        self.lost = np.zeros((n, n), dtype=np.int64)
        self.window = np.zeros((n, n), dtype=np.int64)
        self.state = np.zeros((n, n), dtype=np.int8)  # STATE_CODES; 0: no record
        self.received = np.zeros((n, n))  # when the record was last reported
        # per source: how long its links stay without being reported (a relay reporting by
        # change reports an unchanged link only in its periodic full reports)
        self.stale_for = np.full(n, stale_after_s)
        # links written, removed or expired since the owner last took them (`take_touched`)
        self.touched: list[tuple[np.ndarray | list[int], np.ndarray | list[int]]] = []

    def add_relay(self, relay: Relay, stale_for_s: float | None = None) -> None:
        """A relay's session began: its own links come with its first (full) report. The
        links other relays measured to it stay when it is the node they measured (they may
        have come first: a controller that has just begun to lead hears relays in the order
        they reconnect); another node of the region, at another address, starts afresh."""
        before = self.relays.get(relay.region)
        if before is not None and (before.node_id, before.probe_addr) != \
                (relay.node_id, relay.probe_addr):
            self.remove_relay(relay.region)
        self.relays.pop(relay.region, None)
        self.damper.forget(relay.region)
        i = self.index.get(relay.region)
        if i is not None:
            out = np.flatnonzero(self.state[i])
            self.touched.append((np.full(len(out), i), out))
            self.state[i, :] = 0
        self.relays[relay.region] = relay
        if relay.region in self.index:
            self.connected[self.index[relay.region]] = True
            self.stale_for[self.index[relay.region]] = (
                self.stale_after_s if stale_for_s is None else stale_for_s)

    def lead_changed(self, relay: Relay) -> None:
        """Another node of the region speaks for it: the links its lead measured stay (from
        the same place) until the new lead's reports replace them."""
        self.relays[relay.region] = relay

    def remove_relay(self, region: str) -> None:
        self.relays.pop(region, None)
        self.damper.forget(region)
        i = self.index.get(region)
        if i is not None:
            self.connected[i] = False
            out, into = np.flatnonzero(self.state[i]), np.flatnonzero(self.state[:, i])
            self.touched.append((np.full(len(out), i), out))
            self.touched.append((into, np.full(len(into), i)))
            self.state[i, :] = 0
            self.state[:, i] = 0

    def report(self, src: str, samples: Iterable[Mapping], now: float,
               full: bool = False) -> list[str]:
        """Take a relay's link samples; returns the problems of those rejected. A `full`
        report holds every link the relay measures: its links left out are let go."""
        problems = []
        if src not in self.relays:
            return problems  # a late report from a relay that has left
        i = self.index[src]
        seen = []
        for s in samples:
            problem = check_sample(src, s, self.regions)
            if problem:
                problems.append(problem)
                self.rejected_samples += 1
                continue
            # a peer without a session here is kept too: a controller that has just begun
            # to lead hears a relay's links before their other ends reconnect (routes take
            # only the links between connected relays)
            dst = s["dst"]
            state = s["state"]
            j = self.index[dst]
            if state != UNKNOWN:  # a link not yet measured has not flapped by coming up
                self.observe_flaps((src, dst), self.state[i, j], state in (UP, DEGRADED), now)
            seen.append(j)
            loss, window = float(s["loss"]), int(s.get("window", 0))
            self.rtt[i, j] = float(s["rtt_ms"])
            self.min_rtt[i, j] = float(s.get("min_rtt_ms") or 0.0)
            self.jitter[i, j] = float(s["jitter_ms"])
            self.loss[i, j] = loss
            self.bound[i, j] = loss_bound(loss, window) if loss > 0 else 0.0
            self.samples[i, j] = int(s["samples"])
            self.lost[i, j] = int(s["lost"])
            self.window[i, j] = window
            self.state[i, j] = STATE_CODES[state]
            self.received[i, j] = now
            self.touched.append(([i], [j]))
        if full:
            kept = np.zeros(len(self.names), dtype=bool)
            kept[seen] = True
            self.let_go(i, kept)
        return problems

    def observe_flaps(self, link: tuple[str, str], before: int, usable: bool,
                      now: float) -> None:
        """Tell the damper of a link's state; it keeps an entry only for links that changed
        (a mesh of 1000 relays has a million links, nearly all of them steady). A link
        without an entry whose usability changes from what it was is given the state it had,
        as the damper would have seen it, and then the new one."""
        if link in self.damper.entries:
            self.damper.observe(link, usable, now)
        elif before in (_UP, _DEGRADED, _DOWN) and (before != _DOWN) != usable:
            self.damper.observe(link, not usable, now)
            self.damper.observe(link, usable, now)

    def report_batch(self, src: str, batch: SampleBatch, now: float,
                     full: bool = False) -> list[str]:
        """`report` for samples given as columns (what the relay service reads off the
        wire), checked and stored a column at a time: the same checks and problems, at a
        fraction of the cost per sample (a thousand relays send tens of thousands a
        second)."""
        if src not in self.relays:
            return []
        i = self.index[src]
        n = len(batch.dst)
        problems: list[str] = []
        kept = np.zeros(len(self.names), dtype=bool)
        if n:
            idx = np.array([self.index.get(d, -1) for d in batch.dst], dtype=np.intp)
            wire = np.asarray(batch.state, dtype=np.int64)
            code = np.where((wire >= 0) & (wire < len(_WIRE_CODES)),
                            _WIRE_CODES[np.clip(wire, 0, len(_WIRE_CODES) - 1)], -1)
            rtt, min_rtt = np.asarray(batch.rtt_ms, float), np.asarray(batch.min_rtt_ms, float)
            jitter, loss = np.asarray(batch.jitter_ms, float), np.asarray(batch.loss, float)
            with np.errstate(invalid="ignore"):
                up = (code == _UP) | (code == _DEGRADED)
                bad = (idx < 0) | (idx == i) | (code < 0)
                bad |= up & ~(np.isfinite(rtt) & (rtt > 0))
                bad |= ~np.isfinite(rtt) | (rtt < 0) | ~np.isfinite(jitter) | (jitter < 0)
                bad |= ~np.isfinite(min_rtt) | (min_rtt < 0)
                bad |= ~np.isfinite(loss) | (loss < 0) | (loss > 1)
            for k in np.flatnonzero(bad):  # rare: the one check says what is wrong
                problem = check_sample(src, batch.sample(int(k)), self.regions)
                if problem:
                    problems.append(problem)
                    self.rejected_samples += 1
                else:
                    bad[k] = False
            good = ~bad
            js = idx[good]
            new = code[good]
            before = self.state[i, js]
            # the damper hears of links whose state changed (observe_flaps)
            for k in np.flatnonzero((new != before) & (new != _UNKNOWN)):
                j = int(js[k])
                self.observe_flaps((src, self.names[j]), int(before[k]),
                                   bool(new[k] == _UP or new[k] == _DEGRADED), now)
            window = np.asarray(batch.window, dtype=np.int64)[good]
            lossy = loss[good]
            self.rtt[i, js] = rtt[good]
            self.min_rtt[i, js] = min_rtt[good]
            self.jitter[i, js] = jitter[good]
            self.loss[i, js] = lossy
            self.bound[i, js] = [loss_bound(x, w) if x > 0 else 0.0
                                 for x, w in zip(lossy.tolist(), window.tolist(), strict=True)]
            self.samples[i, js] = np.asarray(batch.samples, dtype=np.int64)[good]
            self.lost[i, js] = np.asarray(batch.lost, dtype=np.int64)[good]
            self.window[i, js] = window
            self.state[i, js] = new
            self.received[i, js] = now
            self.touched.append((np.full(len(js), i), js))
            kept[js] = True
        if full:
            self.let_go(i, kept)
        return problems

    def let_go(self, i: int, kept: np.ndarray) -> None:
        """A full report of relay `i` held the links `kept` (a mask): the others go."""
        gone = np.flatnonzero((self.state[i] > 0) & ~kept)
        self.state[i, gone] = 0
        self.touched.append((np.full(len(gone), i), gone))

    def take_touched(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of the links written, removed or expired since the last call."""
        touched, self.touched = self.touched, []
        if not touched:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
        return (np.concatenate([np.asarray(r, dtype=np.intp) for r, _ in touched]),
                np.concatenate([np.asarray(c, dtype=np.intp) for _, c in touched]))

    def expire(self, now: float) -> list[tuple[str, str]]:
        """Drop links with no report for a while."""
        with np.errstate(invalid="ignore"):
            stale = (self.state > 0) & (now - self.received > self.stale_for[:, None])
        rows, cols = np.nonzero(stale)
        self.state[rows, cols] = 0
        self.touched.append((rows, cols))
        return [(self.names[i], self.names[j])
                for i, j in zip(rows.tolist(), cols.tolist(), strict=True)]

    def record(self, i: int, j: int) -> LinkRecord | None:
        code = int(self.state[i, j])
        if not code:
            return None
        return LinkRecord(self.names[i], self.names[j], float(self.rtt[i, j]),
                          float(self.min_rtt[i, j]), float(self.jitter[i, j]),
                          float(self.loss[i, j]), int(self.samples[i, j]),
                          int(self.lost[i, j]), CODE_STATES[code], float(self.received[i, j]),
                          int(self.window[i, j]))

    @property
    def links(self) -> dict[tuple[str, str], LinkRecord]:
        """Every link between connected relays, its record by (src, dst): for views and
        tests, not for the hot path."""
        out = {}
        held = (self.state != 0) & np.outer(self.connected, self.connected)
        for i, j in zip(*np.nonzero(held), strict=True):
            rec = self.record(int(i), int(j))
            assert rec is not None
            out[(rec.src, rec.dst)] = rec
        return out

    def latency(self, rows: np.ndarray | None = None,
                cols: np.ndarray | None = None) -> np.ndarray:
        """The RTT routing uses, per link (or of the links at rows, cols): the recent minimum
        where the relay reports one."""
        if rows is None:
            return np.where(self.min_rtt > 0, self.min_rtt, self.rtt)
        low = self.min_rtt[rows, cols]
        return np.where(low > 0, low, self.rtt[rows, cols])

    def usable(self, now: float, rows: np.ndarray | None = None,
               cols: np.ndarray | None = None) -> np.ndarray:
        """Links up or degraded, less those whose flapping is being damped (every link, or
        those at rows, cols)."""
        state = self.state if rows is None else self.state[rows, cols]
        mask = (state == _UP) | (state == _DEGRADED)
        damped = [(self.index[src], self.index[dst]) for src, dst in list(self.damper.damped)
                  if self.damper.suppressed((src, dst), now)]
        if rows is None:
            for i, j in damped:
                mask[i, j] = False
        elif damped:
            where = {(int(i), int(j)): k for k, (i, j) in enumerate(zip(rows, cols,
                                                                         strict=True))}
            for key in damped:
                if key in where:
                    mask[where[key]] = False
        return mask

    def usable_links(self, now: float) -> list[Link]:
        """Links up or degraded, less those whose flapping is being damped."""
        latency = self.latency()
        return [Link(self.names[i], self.names[j], float(latency[i, j]),
                     float(self.bound[i, j]))
                for i, j in zip(*np.nonzero(self.usable(now)), strict=True)]

    def unreachable(self, quorum: int = 2) -> frozenset[str]:
        """Regions that at least `quorum` other relays report their link to as down: the
        region is more likely gone than any one of those links (a single cut link is
        reported by its two ends only, each about the other)."""
        counts = (self.state == _DOWN).sum(axis=0)
        return frozenset(self.names[j] for j in np.flatnonzero(counts >= quorum))

    def suppressed_links(self, now: float) -> list[tuple[str, str]]:
        return [k for k in sorted(self.damper.damped) if self.damper.suppressed(k, now)]

    def settled(self, rec: LinkRecord | None) -> bool:
        """Down, or up with enough replies that early outliers no longer count."""
        return rec is not None and (rec.state == DOWN or (
            rec.state != UNKNOWN and rec.samples >= self.settle_samples))

    def settled_mask(self) -> np.ndarray:
        return (self.state == _DOWN) | (((self.state == _UP) | (self.state == _DEGRADED))
                                        & (self.samples >= self.settle_samples))

    def connected_mask(self) -> np.ndarray:
        """Which of the catalogue's regions have a relay (a copy)."""
        return self.connected.copy()

    def measured(self, region: str) -> bool:
        """Whether the relay has measured its link to every other connected relay."""
        i = self.index[region]
        want = self.connected_mask()
        want[i] = False
        return bool(self.settled_mask()[i][want].all())

    def all_measured(self, near: np.ndarray | None = None) -> bool:
        """`measured` for every connected relay at once (to each of its `near` peers, a
        boolean matrix over the catalogue, where given)."""
        connected = self.connected_mask()
        want = np.outer(connected, connected)
        np.fill_diagonal(want, False)
        if near is not None:
            want &= near
        return bool(self.settled_mask()[want].all())

    def counts(self) -> tuple[int, int, int]:
        """(links up or degraded, links measured, links expected)."""
        n = len(self.relays)
        want = np.outer(self.connected, self.connected)
        up = int(((self.state == _UP) | (self.state == _DEGRADED))[want].sum())
        measured = int(self.settled_mask()[want].sum())
        return up, measured, n * (n - 1)


def check_sample(src: str, s: Mapping, regions: frozenset[str]) -> str | None:
    dst = s.get("dst")
    if dst not in regions:
        return f"link {src}->{dst}: unknown region {dst!r}"
    if dst == src:
        return f"link {src}->{dst}: link to itself"
    if s.get("state") not in STATES:
        return f"link {src}->{dst}: unknown state {s.get('state')!r}"
    rtt, jitter, loss = s.get("rtt_ms"), s.get("jitter_ms"), s.get("loss")
    # a link up or degraded has a measured RTT; any link's numbers are numbers (a link not
    # measured yet, or down, reports zeros or its last values, never NaN: it would be kept
    # and shown)
    if s.get("state") in (UP, DEGRADED) and not (_finite(rtt) and rtt > 0):
        return f"link {src}->{dst}: rtt_ms must be a positive number, got {rtt!r}"
    if not _finite(rtt) or rtt < 0:
        return f"link {src}->{dst}: rtt_ms must be a non-negative number, got {rtt!r}"
    if not _finite(jitter) or jitter < 0:
        return f"link {src}->{dst}: jitter_ms must be a non-negative number, got {jitter!r}"
    min_rtt = s.get("min_rtt_ms", 0.0)
    if not _finite(min_rtt) or min_rtt < 0:
        return f"link {src}->{dst}: min_rtt_ms must be a non-negative number, got {min_rtt!r}"
    if not _finite(loss) or not 0 <= loss <= 1:
        return f"link {src}->{dst}: loss must be in [0, 1], got {loss!r}"
    return None


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
