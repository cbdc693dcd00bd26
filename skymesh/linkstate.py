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


LINK = LinkSettings()  # the defaults
