"""The relay's Prometheus metrics (families in skymesh/metrics.py), read from the node's own
counters, link statistics and tables when scraped: nothing on the fast path counts twice,
and a relay nobody scrapes pays nothing. The scrape runs on the relay's event loop
(skymesh/net/metricsserver.py), so what it reads does not move under it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import Metric

from skymesh import metrics as m
from skymesh.linkstate import DEGRADED, DOWN, UNKNOWN, UP
from skymesh.net.metricsserver import family, histogram

STATES = (UNKNOWN, UP, DEGRADED, DOWN)


class RelayCollector:
    """prometheus_client's collector of one RelayNode (relay/node.py)."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        region = node.region
        yield from self._links(region)
        counters = node.control.all_counters()
        yield from fabric_families(region, counters)
        for f, key in ((m.FAST_REROUTES, "rerouted"), (m.TABLES_REJECTED, "tables_rejected"),
                       (m.EDGE_JOINS, "edge.joined"),
                       (m.EDGE_MEDIA_EXPIRED, "edge.media_expired"),
                       (m.MESSAGES_RETRANSMITTED, "messages.retransmitted"),
                       (m.MESSAGES_EXPIRED, "messages.expired")):
            out = family(f)
            out.add_metric([region], counters.get(key, 0))
            yield out
        out = family(m.EDGE_REFUSED)
        for name, value in sorted(counters.items()):
            if name.startswith("edge.refused."):
                out.add_metric([region, name[len("edge.refused."):]], value)
        yield out
        for f, value in ((m.EDGE_SESSIONS, counters.get("edge.sessions", 0)),
                         (m.ROUTE_VERSION, node.tables.version),
                         (m.CONTROLLER_CONNECTED, int(node.control.outbox is not None))):
            out = family(f)
            out.add_metric([region], value)
            yield out
        yield histogram(m.ROUTE_APPLY, node.control.apply_seconds, region)

    def _links(self, region: str) -> Iterator[Metric]:
        rtt, min_rtt, jitter, loss = (family(f) for f in (m.LINK_RTT, m.LINK_MIN_RTT,
                                                          m.LINK_JITTER, m.LINK_LOSS))
        state, sent, lost = family(m.LINK_STATE), family(m.PROBES_SENT), family(m.PROBES_LOST)
        for peer, stats in sorted(self.node.scheduler.stats.items()):
            labels = [region, peer]
            if stats.srtt is not None:
                rtt.add_metric(labels, stats.srtt / 1000)
                jitter.add_metric(labels, stats.jitter / 1000)
            if (low := stats.min_rtt) is not None:
                min_rtt.add_metric(labels, low / 1000)
            loss.add_metric(labels, stats.loss)
            now = stats.state
            for s in STATES:
                state.add_metric([*labels, s], 1.0 if s == now else 0.0)
            sent.add_metric(labels, stats.probes_sent)
            lost.add_metric(labels, stats.lost)
        yield from (rtt, min_rtt, jitter, loss, state, sent, lost)


def fabric_families(region: str, counters: dict[str, int]) -> Iterator[Metric]:
    """The fabric's datagrams received, forwarded and delivered per zone, and dropped per
    zone and reason, from the relay's counters (`zone.Z.WHAT`, `dropped.REASON`,
    `zonedrop.Z.REASON`: relay/fabric.py)."""
    zones: dict[str, dict[str, int]] = {}
    dropped: dict[str, int] = {}
    by_zone: dict[tuple[str, str], int] = {}  # (zone, reason)
    for name, value in counters.items():
        if name.startswith("zone."):
            zone, _, what = name[5:].rpartition(".")
            zones.setdefault(what, {})[zone] = value
        elif name.startswith("dropped."):
            dropped[name[8:]] = value
        elif name.startswith("zonedrop."):
            zone, _, reason = name[9:].rpartition(".")
            by_zone[zone, reason] = value
    # what no zone could be named for (undecodable, for no peer): zone ""
    for reason, value in dropped.items():
        rest = value - sum(v for (_, r), v in by_zone.items() if r == reason)
        if rest > 0 or not any(r == reason for _, r in by_zone):
            by_zone["", reason] = rest
    for what, f in (("received", m.FABRIC_RECEIVED), ("forwarded", m.FABRIC_FORWARDED),
                    ("delivered", m.FABRIC_DELIVERED)):
        out = family(f)
        for zone, value in sorted(zones.get(what, {}).items()):
            out.add_metric([region, zone], value)
        yield out
    out = family(m.FABRIC_DROPPED)
    for (zone, reason), value in sorted(by_zone.items()):
        out.add_metric([region, zone, reason], value)
    yield out
