"""The relay's gRPC health service (`--health-listen HOST:PORT`, `health.listen`): a small
grpc.aio server of its own serving only `grpc.health.v1.Health` and reflection, for load
balancers, Kubernetes' gRPC probes and `grpcurl`. The relay serves (SERVING, for "", the
server as a whole) once it holds a session with a controller and a route table
from it; NOT_SERVING while it starts, while its session is lost (it forwards on the tables
it holds meanwhile, but takes no new routes) and once it shuts down.

Plaintext, like the metrics endpoint: it says no more than whether the relay serves. Bind it
to an address only the load balancer or the node's agent reaches."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from skymesh.net.health import Health

log = logging.getLogger("skymesh.relay")

OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024),
    ("grpc.max_concurrent_streams", 16),
]
MAX_RPCS = 64  # a load balancer's checks and watches, an operator's grpcurl


class RelayHealth:
    """The listener and its health service; `close` turns it NOT_SERVING, then stops it."""

    def __init__(self, server: grpc.aio.Server, health: Health, port: int) -> None:
        self.server = server
        self.health = health
        self.port = port

    async def close(self) -> None:
        await self.health.shutdown()
        await self.server.stop(0.5)


async def serve(listen: str, serving: Callable[[], bool]) -> RelayHealth:
    """The health listener on `listen` (HOST:PORT, port 0: any free one), SERVING while
    `serving()` (the node's: a controller session and a route table from it). OSError
    when it cannot listen."""
    health = Health({"": serving}, "relay")
    server = grpc.aio.server(options=OPTIONS, maximum_concurrent_rpcs=MAX_RPCS)
    health.add_to_server(server, [])
    port = server.add_insecure_port(listen)
    if not port:
        raise OSError(f"cannot listen on {listen} (--health-listen)")
    await health.start(server)
    log.info("gRPC health on %s:%d", listen.rpartition(":")[0], port)
    return RelayHealth(server, health, port)
