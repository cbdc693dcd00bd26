"""The Prometheus metrics of skymesh's processes, defined once: each family's name, type, help
and labels, for the relay's and the controller's collectors, the alerting rules and the
dashboards (deploy/) to agree on; the naming rules they follow; and the latency histogram the
cores keep without knowing Prometheus.

Naming (https://prometheus.io/docs/practices/naming/): the `skymesh_` prefix, base units
(`_seconds`, `_bytes`, `_ratio` from 0 to 1), counters ending `_total`, and labels of bounded
sets only: region, peer_region, zone, reason, state, kind, op, result, service. Never a
channel, a user or an address.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

PREFIX = "skymesh_"
BOUNDED_LABELS = frozenset({"region", "peer_region", "zone", "reason", "state", "kind", "op",
                            "result"})
NAME = re.compile(r"^skymesh_[a-z][a-z0-9_]*[a-z0-9]$")
UNITS = ("_seconds", "_bytes", "_ratio", "_total", "_info")

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # counter, gauge, histogram
    help: str
    labels: tuple[str, ...] = ()


def _f(name: str, kind: str, help_: str, *labels: str) -> Family:
    return Family(PREFIX + name, kind, help_, labels)


# -- the relay's ------------------------------------------------------------------------------
LINK_RTT = _f("link_rtt_seconds", GAUGE, "Smoothed round-trip time of the link to a peer "
              "region, from authenticated probes", "region", "peer_region")
LINK_MIN_RTT = _f("link_min_rtt_seconds", GAUGE, "Minimum round-trip time of the link over "
                  "its recent probes", "region", "peer_region")
LINK_JITTER = _f("link_jitter_seconds", GAUGE, "Jitter of the link's round-trip time (RFC "
                 "3550 style)", "region", "peer_region")
LINK_LOSS = _f("link_loss_ratio", GAUGE, "Probe loss of the link over its recent probes, 0-1",
               "region", "peer_region")
LINK_STATE = _f("link_state", GAUGE, "1 for the state the link to a peer region is in "
                "(unknown, up, degraded, down), 0 for the others", "region", "peer_region",
                "state")
PROBES_SENT = _f("probes_sent_total", COUNTER, "Probes sent to a peer region",
                 "region", "peer_region")
PROBES_LOST = _f("probes_lost_total", COUNTER, "Probes to a peer region that got no reply in "
                 "time", "region", "peer_region")
FABRIC_RECEIVED = _f("fabric_datagrams_received_total", COUNTER, "Channel datagrams received "
                     "from other relays", "region", "zone")
FABRIC_FORWARDED = _f("fabric_datagrams_forwarded_total", COUNTER, "Channel datagrams sent on "
                      "to other relays", "region", "zone")
FABRIC_DELIVERED = _f("fabric_datagrams_delivered_total", COUNTER, "Channel datagrams "
                      "delivered to this relay's client edge", "region", "zone")
FABRIC_DROPPED = _f("fabric_datagrams_dropped_total", COUNTER, "Channel datagrams dropped, by "
                    "zone and reason (foreign-zone is a residency drop; zone \"\": not known, "
                    "the datagram undecodable)", "region", "zone", "reason")
FAST_REROUTES = _f("fast_reroutes_total", COUNTER, "Routes moved to their backup next hop "
                   "because a next hop went down, before the controller said anything",
                   "region")
ROUTE_VERSION = _f("route_table_version", GAUGE, "Version of the route table the relay "
                   "applied", "region")
ROUTE_APPLY = _f("route_table_apply_seconds", HISTOGRAM, "Time the relay took to check and "
                 "apply a route table that arrived", "region")
TABLES_REJECTED = _f("route_tables_rejected_total", COUNTER, "Route tables the relay refused "
                     "(and told the controller why)", "region")
EDGE_SESSIONS = _f("edge_sessions", GAUGE, "Client sessions joined at this relay's edge",
                   "region")
EDGE_JOINS = _f("edge_joins_total", COUNTER, "Clients that joined a channel at the edge",
                "region")
EDGE_REFUSED = _f("edge_refused_total", COUNTER, "Sessions the edge ended with a refusal, by "
                  "reason: a token's (expired, bad-signature, ...), rate-limited, "
                  "too-many-sessions, drained, malformed", "region", "reason")
EDGE_MEDIA_EXPIRED = _f("edge_media_expired_total", COUNTER, "Media datagrams dropped at the "
                        "edge because their deadline passed", "region")
MESSAGES_RETRANSMITTED = _f("messages_retransmitted_total", COUNTER, "Reliable messages sent "
                            "again by their origin relay", "region")
MESSAGES_EXPIRED = _f("messages_expired_total", COUNTER, "Reliable messages given up by their "
                      "origin relay, unacknowledged", "region")
CONTROLLER_CONNECTED = _f("relay_controller_connected", GAUGE, "1 while the relay holds a "
                          "session with a controller", "region")

RELAY = (LINK_RTT, LINK_MIN_RTT, LINK_JITTER, LINK_LOSS, LINK_STATE, PROBES_SENT, PROBES_LOST,
         FABRIC_RECEIVED, FABRIC_FORWARDED, FABRIC_DELIVERED, FABRIC_DROPPED, FAST_REROUTES,
         ROUTE_VERSION, ROUTE_APPLY, TABLES_REJECTED, EDGE_SESSIONS, EDGE_JOINS, EDGE_REFUSED,
         EDGE_MEDIA_EXPIRED, MESSAGES_RETRANSMITTED, MESSAGES_EXPIRED, CONTROLLER_CONNECTED)

# -- the controller's --------------------------------------------------------------------------
RELAYS_CONNECTED = _f("controller_relays_connected", GAUGE, "Relay sessions this controller "
                      "holds")
REGIONS_CONNECTED = _f("controller_region_connected", GAUGE, "1 for a catalogue region with a "
                       "relay connected", "region")
REGION_DRAINED = _f("controller_region_drained", GAUGE, "1 for a region drained by an operator",
                    "region")
LINKS = _f("controller_links", GAUGE, "Links between regions as relays last reported them, by "
           "state", "state")
ROUTE_COMPUTATIONS = _f("controller_route_computations_total", COUNTER, "Route computations")
ROUTE_COMPUTATION = _f("controller_route_computation_seconds", HISTOGRAM, "Duration of a route "
                       "computation")
ROUTE_VERSION_PUSHED = _f("controller_route_version", GAUGE, "Version of the latest route set")
CONVERGED = _f("controller_converged", GAUGE, "1 once every relay acknowledged the latest "
               "routes")
RELAYS_ACKED = _f("controller_relays_acknowledged", GAUGE, "Relays holding the latest routes")
PUSH_ACK = _f("controller_route_push_ack_seconds", HISTOGRAM, "Time from a route table's push "
              "to its acknowledgement")
ROUTE_NACKS = _f("controller_route_nacks_total", COUNTER, "Route tables relays refused")
UNACKED_AGE = _f("controller_routes_unacknowledged_seconds", GAUGE, "How long the oldest "
                 "pushed route table has waited for its acknowledgement (0: none waits)")
REFUSED = _f("controller_refused_total", COUNTER, "Calls and sessions refused, by reason "
             "(relay-identity, admin-read, admin-change, relay-rate, ...)", "reason")
STORE_OPS = _f("controller_store_operations_total", COUNTER, "Operations on the state store "
               "(file or etcd)", "op", "result")
LEADER = _f("controller_leader", GAUGE, "1 while this replica leads (a controller without "
            "replicas always does)")
EVENTS = _f("controller_events_total", COUNTER, "Events of the mesh (links down, reroutes, "
            "drains, drills), by kind", "kind")

CONTROLLER = (RELAYS_CONNECTED, REGIONS_CONNECTED, REGION_DRAINED, LINKS, ROUTE_COMPUTATIONS,
              ROUTE_COMPUTATION, ROUTE_VERSION_PUSHED, CONVERGED, RELAYS_ACKED, PUSH_ACK,
              ROUTE_NACKS, UNACKED_AGE, REFUSED, STORE_OPS, LEADER, EVENTS)


def naming_problems(families: tuple[Family, ...]) -> list[str]:
    """What breaks the naming rules in `families` (empty: nothing)."""
    problems = []
    seen: set[str] = set()
    for f in families:
        if f.name in seen:
            problems.append(f"{f.name}: defined twice")
        seen.add(f.name)
        if not NAME.fullmatch(f.name):
            problems.append(f"{f.name}: not skymesh_ and lower-case words")
        if f.kind == COUNTER and not f.name.endswith("_total"):
            problems.append(f"{f.name}: a counter's name ends in _total")
        if f.kind != COUNTER and f.name.endswith("_total"):
            problems.append(f"{f.name}: only counters end in _total")
        for unit in ("_ms", "_milliseconds", "_percent", "_kb", "_mb"):
            if unit in f.name:
                problems.append(f"{f.name}: not a base unit ({unit})")
        if f.kind == HISTOGRAM and not f.name.endswith(("_seconds", "_bytes")):
            problems.append(f"{f.name}: a histogram measures seconds or bytes")
        unbounded = [label for label in f.labels if label not in BOUNDED_LABELS]
        if unbounded:
            problems.append(f"{f.name}: labels of unbounded sets {unbounded}")
        if not f.help.strip():
            problems.append(f"{f.name}: no help")
    return problems


# Seconds: from a millisecond (a table applied on loopback) to a minute (a push that waited
# for a resynchronisation).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)


@dataclass
class Histogram:
    """Observations in cumulative buckets, as Prometheus exposes them, kept by a core that
    knows nothing of Prometheus. Pure."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; +Inf last
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """[(upper bound as Prometheus writes it, observations at or below it)], +Inf last."""
        out, total = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out
