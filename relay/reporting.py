"""Which links go into a link report (protocol 2, reports by change): a plain object fed the
links' current values and explicit times, no I/O; relay/control.py builds and sends the
reports.

A full report holds every link the relay measures and goes out every full_report_interval_s
(and as a session's first report): it refreshes the controller's view, and a link it leaves
out is no longer measured. In between, a report holds only the links that moved since they
were last reported:

- the state changed;
- the link was still being measured (fewer than settle_samples samples) when last reported
  and has new samples: the controller needs the count to call the link measured;
- the latency (the minimum RTT, or the smoothed one while there is no minimum) moved by more
  than both rtt_fraction of the value last reported and rtt_ms: smaller moves are inside the
  controller's dead band and would change no route;
- the loss moved by more than `loss`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from relay.probe import LinkStats
from skymesh.linkstate import LINK


@dataclass(frozen=True)
class ReportSettings:
    full_report_interval_s: float = LINK.full_report_interval_s
    rtt_fraction: float = LINK.report_rtt_fraction
    rtt_ms: float = LINK.report_rtt_ms
    loss: float = LINK.report_loss
    settle_samples: int = LINK.settle_samples


class LinkView(NamedTuple):
    """What of a link decides whether it is reported."""

    state: str
    latency_ms: float  # 0: not known yet
    loss: float
    samples: int


def view(stats: LinkStats) -> LinkView:
    latency = stats.min_rtt or stats.srtt or 0.0
    return LinkView(stats.state, latency, stats.loss, stats.samples)


class ReportFilter:
    """What the controller last heard of each link, and the choice of the next report's
    links. `start()` at every new session: that controller may know nothing."""

    def __init__(self, settings: ReportSettings | None = None) -> None:
        self.settings = settings or ReportSettings()
        self.reported: dict[str, LinkView] = {}  # as last reported
        self.last_full: float | None = None  # when the last full report went out

    def start(self) -> None:
        self.reported = {}
        self.last_full = None

    def full_due(self, now: float, within: float = 0.0) -> bool:
        """Whether the next report is a full one. `within`: how early it may come (half the
        report interval: the round nearest the full interval, not the one after it)."""
        return (self.last_full is None
                or now - self.last_full >= self.settings.full_report_interval_s - within)

    def since(self, now: float, first_s: float) -> float:
        """Links measured since this time count as measured: since the last full report (and
        at least over the full interval, whatever the calls in between), or over the last
        `first_s` before a session's first one."""
        if self.last_full is None:
            return now - first_s
        return min(self.last_full, now - self.settings.full_report_interval_s)

    def moved(self, region: str, link: LinkView) -> bool:
        """Whether the link is worth reporting now, against what was last reported of it."""
        last = self.reported.get(region)
        if last is None:
            return True
        s = self.settings
        if link.state != last.state:
            return True
        if last.samples < s.settle_samples and link.samples != last.samples:
            return True
        change = abs(link.latency_ms - last.latency_ms)
        if change > s.rtt_fraction * last.latency_ms and change > s.rtt_ms:
            return True
        return abs(link.loss - last.loss) > s.loss

    def select(self, links: Mapping[str, LinkView], now: float, full: bool) -> list[str]:
        """The links to report (sorted), now taken as reported. `full`: every one of `links`
        (the links measured), and what is not among them is forgotten (the controller lets
        it go); else those of `links` that moved."""
        if full:
            chosen = sorted(links)
            self.reported = dict(links)
            self.last_full = now
            return chosen
        chosen = sorted(r for r, link in links.items() if self.moved(r, link))
        for region in chosen:
            self.reported[region] = links[region]
        return chosen
