"""Link states (their names and their values on the wire) and the settings by which relays
measure links and judge their state: one definition, used by the relay's probing, the
controller's settings (which it hands every relay) and the command line's defaults."""

from dataclasses import dataclass

from skymesh.v1 import relay_pb2

UNKNOWN, UP, DEGRADED, DOWN = "unknown", "up", "degraded", "down"
STATES = (UNKNOWN, UP, DEGRADED, DOWN)
TO_WIRE = {
    UNKNOWN: relay_pb2.LINK_STATE_UNSPECIFIED,
    UP: relay_pb2.LINK_STATE_UP,
    DEGRADED: relay_pb2.LINK_STATE_DEGRADED,
    DOWN: relay_pb2.LINK_STATE_DOWN,
}
FROM_WIRE = {v: k for k, v in TO_WIRE.items()}


@dataclass(frozen=True)
class LinkSettings:
    probe_interval_s: float = 1.0  # relays measure every link (RTT samples)
    # relays watch the links their traffic uses (next hops and their backups) this often:
    # with down_after, how soon a dead link is found
    neighbour_probe_interval_s: float = 0.1
    down_after: int = 3  # missed probes in a row that make a link down
    degraded_loss: float = 0.02  # probe loss above which a link is degraded
    degraded_jitter_ms: float = 30.0  # jitter above which a link is degraded
    # replies before a link counts as measured (the controller's convergence); until then a
    # relay reporting by change reports the link every time
    settle_samples: int = 8
    # reports by change (protocol 2): a link is reported when its state changes, when its
    # latency moves by more than both of these from the value last reported (well inside
    # the controller's dead band of 2% and 1 ms of cost, i.e. of half the RTT), or its loss
    # by more than report_loss; and every link it measures every full_report_interval_s
    full_report_interval_s: float = 10.0
    report_rtt_fraction: float = 0.01
    report_rtt_ms: float = 0.5
    report_loss: float = 0.005
    # partial-mesh measurement: with more regions than this, each relay measures its
    # `nearest` regions, the next hops and backups of its routes, and a rotating sample of
    # the others so that every pair is measured at least every sample_every_s
    partial_mesh_above: int = 250
    nearest: int = 16
    sample_every_s: float = 60.0


LINK = LinkSettings()  # the defaults

# Hello.protocol: 2, peer lists by change and link reports by change; 3, also route tables
# by change; 4, also sessions carried over to a new leader (proto/skymesh/v1)
PROTOCOL_FULL, PROTOCOL_BY_CHANGE, PROTOCOL_TABLE_CHANGES, PROTOCOL_RESYNC = 1, 2, 3, 4
