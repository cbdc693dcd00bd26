"""The controller process's wiring: the core, its store, the two gRPC services on one server,
and the loop that recomputes routes every interval or as soon as the core asks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import grpc

from controller.admin_service import AdminService
from controller.core import Controller, Settings
from controller.relay_service import RelayControlService
from controller.store import FileStore, MemoryStore, Store
from skymesh.catalogue import Region
from skymesh.policy import Policy
from skymesh.v1 import admin_pb2_grpc, relay_pb2_grpc

log = logging.getLogger("skymesh.controller")
DEFAULTS = Settings()


class RecomputeLoop:
    """Runs the core's rounds on the shell's clocks: every recompute_interval_s, or at once
    when the core asks (an ACK that releases held rows, a relay gone, a link event)."""

    def __init__(self, catalogue: Mapping[str, Region], policy: Policy, settings: Settings,
                 apps: Mapping[str, bytes] | None, fabric_keys: list[bytes] | None,
                 store: Store) -> None:
        self.wake = asyncio.Event()
        self.core = Controller(catalogue, policy, settings, apps, fabric_keys, store,
                               now=time.monotonic(), wake=self.wake.set)

    async def run(self) -> None:
        while True:
            try:
                self.core.tick(time.monotonic(), time.time())
            except Exception:  # the loop must survive any one bad round
                log.exception("route computation failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(),
                                       self.core.settings.recompute_interval_s)


async def serve(catalogue: Mapping[str, Region], policy: Policy, listen: str,
                settings: Settings = DEFAULTS, apps: Mapping[str, bytes] | None = None,
                fabric_keys: list[bytes] | None = None, state_file: Path | None = None
                ) -> tuple[grpc.aio.Server, RecomputeLoop, int]:
    """Start serving on `listen`; the caller runs the loop (`.run()`) and stops the server.
    Raises ValueError for an unreadable state file, OSError when it cannot listen."""
    store = FileStore(state_file) if state_file is not None else MemoryStore()
    loop = RecomputeLoop(catalogue, policy, settings, apps, fabric_keys, store)
    server = grpc.aio.server()
    relay_pb2_grpc.add_RelayControlServicer_to_server(RelayControlService(loop.core), server)
    admin_pb2_grpc.add_AdminServicer_to_server(AdminService(loop.core), server)
    port = server.add_insecure_port(listen)
    if not port:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    return server, loop, port
