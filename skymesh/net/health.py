"""The standard gRPC health service (`grpc.health.v1`, grpcio-health-checking) and server
reflection (grpcio-reflection) on a grpc.aio server, so that load balancers, Kubernetes'
gRPC probes and `grpcurl` work with it.

Each status follows the process's own state: `checks` maps every name a client may ask
for ("" for the server as a whole, else a service's full name) to a function that says
whether it serves now. The statuses start NOT_SERVING (the server is starting), are looked
at every CHECK_S (and whenever the process calls `update`), and turn
NOT_SERVING for good once `shutdown` is called, which the process does before its server
stops (a load balancer sends nothing more while the calls in flight end)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

log = logging.getLogger("skymesh.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
CHECK_S = 0.2  # how often the statuses are looked at, besides when the process says


class Health:
    """The health service of one server, its statuses from `checks`."""

    def __init__(self, checks: Mapping[str, Callable[[], bool]], what: str = "gRPC") -> None:
        self.checks = dict(checks)
        self.what = what  # for the log: which server's health moved
        self.servicer = health_aio.HealthServicer()
        self.statuses: dict[str, int] = {}
        self.stopped = False
        self.task: asyncio.Task | None = None

    def add_to_server(self, server: grpc.aio.Server, services: Iterable[str]) -> None:
        """The health service and reflection (of `services`, the health service's and its
        own) on `server`, before it starts."""
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        reflection.enable_server_reflection(
            [*services, HEALTH_SERVICE, reflection.SERVICE_NAME], server)

    async def start(self, server: grpc.aio.Server) -> None:
        """Start `server` with every status NOT_SERVING (the servicer's own start with ""
        SERVING), then as the checks say, and kept so."""
        for name in self.checks:
            await self.servicer.set(name, NOT_SERVING)
            self.statuses[name] = NOT_SERVING
        await server.start()
        await self.update()
        self.task = asyncio.get_running_loop().create_task(self._keep())

    async def update(self) -> None:
        """Look at every check now; the statuses that moved are set (and logged)."""
        if self.stopped:
            return
        for name, check in self.checks.items():
            try:
                status = SERVING if check() else NOT_SERVING
            except Exception:  # a check that fails says: not serving
                log.exception("health check of %r failed", name)
                status = NOT_SERVING
            if self.statuses.get(name) != status:
                self.statuses[name] = status
                await self.servicer.set(name, status)
                log.info("%s health: %s %s", self.what, name or "(server)",
                         health_pb2.HealthCheckResponse.ServingStatus.Name(status))

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(CHECK_S)
            await self.update()

    async def shutdown(self) -> None:
        """NOT_SERVING for every name, for good (the server is about to stop)."""
        if self.stopped:
            return
        self.stopped = True
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.servicer.enter_graceful_shutdown()
        self.statuses = dict.fromkeys(self.statuses, NOT_SERVING)
        log.info("%s health: NOT_SERVING (shutting down)", self.what)
