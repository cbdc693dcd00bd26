"""What the controller knows of the mesh: connected relays and their measured links.

Plain state fed events with explicit times; the gRPC shell owns the clock."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.damping import FlapDamper
from controller.routing import Link, loss_bound
from skymesh.linkstate import DEGRADED, DOWN, STATES, UNKNOWN, UP


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


class Topology:
    def __init__(self, regions: Iterable[str], stale_after_s: float = 5.0,
                 settle_samples: int = 8) -> None:
        self.regions = frozenset(regions)
        self.stale_after_s = stale_after_s
        self.settle_samples = settle_samples
        self.damper = FlapDamper()
        self.relays: dict[str, Relay] = {}
        self.links: dict[tuple[str, str], LinkRecord] = {}
        self.rejected_samples = 0

    def add_relay(self, relay: Relay) -> None:
        self.remove_relay(relay.region)
        self.relays[relay.region] = relay

    def remove_relay(self, region: str) -> None:
        self.relays.pop(region, None)
        self.damper.forget(region)
        for key in [k for k in self.links if region in k]:
            del self.links[key]

    def report(self, src: str, samples: Iterable[Mapping], now: float) -> list[str]:
        """Take a relay's link samples; returns the problems of those rejected."""
        problems = []
        if src not in self.relays:
            return problems  # a late report from a relay that has left
        for s in samples:
            problem = check_sample(src, s, self.regions)
            if problem:
                problems.append(problem)
                self.rejected_samples += 1
                continue
            if s["dst"] not in self.relays:
                continue  # a peer that left since the relay probed it
            if s["state"] != UNKNOWN:  # a link not yet measured has not flapped by coming up
                self.damper.observe((src, s["dst"]), s["state"] in (UP, DEGRADED), now)
            self.links[(src, s["dst"])] = LinkRecord(
                src, s["dst"], float(s["rtt_ms"]), float(s.get("min_rtt_ms") or 0.0),
                float(s["jitter_ms"]), float(s["loss"]),
                int(s["samples"]), int(s["lost"]), s["state"], now, int(s.get("window", 0)))
        return problems

    def expire(self, now: float) -> list[tuple[str, str]]:
        """Drop links with no report for a while."""
        stale = [k for k, r in self.links.items() if now - r.received_at > self.stale_after_s]
        for key in stale:
            del self.links[key]
        return stale

    def usable_links(self, now: float) -> list[Link]:
        """Links up or degraded, less those whose flapping is being damped."""
        return [Link(r.src, r.dst, r.latency_ms, r.routing_loss) for r in self.links.values()
                if r.state in (UP, DEGRADED) and not self.damper.suppressed((r.src, r.dst), now)]

    def unreachable(self, quorum: int = 2) -> frozenset[str]:
        """Regions that at least `quorum` other relays report their link to as down: the
        region is more likely gone than any one of those links (a single cut link is
        reported by its two ends only, each about the other)."""
        reporters: dict[str, set[str]] = {}
        for (src, dst), rec in self.links.items():
            if rec.state == DOWN:
                reporters.setdefault(dst, set()).add(src)
        return frozenset(r for r, srcs in reporters.items() if len(srcs) >= quorum)

    def suppressed_links(self, now: float) -> list[tuple[str, str]]:
        return [k for k in self.links if self.damper.suppressed(k, now)]

    def settled(self, rec: LinkRecord | None) -> bool:
        """Down, or up with enough replies that early outliers no longer count."""
        return rec is not None and (rec.state == DOWN or (
            rec.state != UNKNOWN and rec.samples >= self.settle_samples))

    def measured(self, region: str) -> bool:
        """Whether the relay has measured its link to every other connected relay."""
        return all(self.settled(self.links.get((region, peer)))
                   for peer in self.relays if peer != region)

    def counts(self) -> tuple[int, int, int]:
        """(links up or degraded, links measured, links expected)."""
        n = len(self.relays)
        up = sum(r.state in (UP, DEGRADED) for r in self.links.values())
        measured = sum(self.settled(r) for r in self.links.values())
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
