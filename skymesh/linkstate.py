"""Link states: their names, and their values on the wire."""

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
