"""The controller's Prometheus metrics (families in skymesh/metrics.py), read from the core,
the relay service and the replica's leadership when scraped, on the controller's event loop
(skymesh/net/metricsserver.py). A replica that has not led yet has no core: it says so with
`skymesh_controller_leader 0` and its store's operations only."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import Metric

from skymesh import metrics as m
from skymesh.linkstate import DEGRADED, DOWN, UNKNOWN, UP
from skymesh.net.metricsserver import family, histogram

STATES = (UNKNOWN, UP, DEGRADED, DOWN)


class ControllerCollector:
    """prometheus_client's collector of one controller process. `core()`: the Controller
    (controller/core.py) in force, or None; `leading()`: whether this replica leads;
    `store_ops`: operations on its store by (op, result)."""

    def __init__(self, core: Callable[[], Any], leading: Callable[[], bool],
                 store_ops: Counter[tuple[str, str]]) -> None:
        self.core = core
        self.leading = leading
        self.store_ops = store_ops

    def collect(self) -> Iterator[Metric]:
        out = family(m.LEADER)
        out.add_metric([], 1.0 if self.leading() else 0.0)
        yield out
        out = family(m.STORE_OPS)
        for (op, result), n in sorted(self.store_ops.items()):
            out.add_metric([op, result], n)
        yield out
        ctl = self.core()
        if ctl is None:
            return
        now = time.monotonic()
        s = ctl.status(now)
        for f, value in ((m.RELAYS_CONNECTED, s.relays), (m.ROUTE_VERSION_PUSHED, s.route_version),
                         (m.CONVERGED, int(s.converged)), (m.RELAYS_ACKED, s.relays_acked),
                         (m.ROUTE_COMPUTATIONS, s.recomputes),
                         (m.ROUTE_NACKS, s.rejected_tables),
                         (m.UNACKED_AGE, oldest_unacknowledged(ctl, now))):
            out = family(f)
            out.add_metric([], value)
            yield out
        connected, drained = family(m.REGIONS_CONNECTED), family(m.REGION_DRAINED)
        for rid in ctl.catalogue:
            connected.add_metric([rid], 1.0 if rid in ctl.sessions else 0.0)
            drained.add_metric([rid], 1.0 if rid in ctl.drained else 0.0)
        yield connected
        yield drained
        states = Counter(r.state for r in ctl.topology.links.values())
        out = family(m.LINKS)
        for state in STATES:
            out.add_metric([state], states.get(state, 0))
        yield out
        out = family(m.REFUSED)
        for reason, n in sorted(s.refused.items()):
            out.add_metric([reason], n)
        yield out
        out = family(m.EVENTS)
        for kind, n in sorted(ctl.event_counts.items()):
            out.add_metric([kind], n)
        yield out
        yield histogram(m.ROUTE_COMPUTATION, ctl.recompute_seconds)
        yield histogram(m.PUSH_ACK, ctl.push_ack_seconds)


def oldest_unacknowledged(ctl: Any, now: float) -> float:
    """How long the oldest route table pushed to a connected relay has waited for its ACK."""
    oldest = min((t for session in ctl.sessions.values()
                  for t in session.pushed_at.values()), default=None)
    return 0.0 if oldest is None else max(0.0, now - oldest)
