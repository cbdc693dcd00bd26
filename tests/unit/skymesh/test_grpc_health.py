"""The gRPC health service and reflection of skymesh/net/health.py on a real grpc.aio server
on loopback: every status NOT_SERVING until the server has started and its check says
otherwise, statuses following the checks (a watcher sees each move), a failing check
NOT_SERVING, unknown services NOT_FOUND, NOT_SERVING for good once shutting down, and
reflection listing the services."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from skymesh.net import health as h

SERVICE = "skymesh.v1.Admin"


async def status(stub, service: str = "") -> str:
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    except grpc.aio.AioRpcError as e:
        return e.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


async def listed(channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]))
    async for reply in call:
        return {s.name for s in reply.list_services_response.service}
    return set()


@pytest.fixture(autouse=True)
def fast_checks(monkeypatch):
    monkeypatch.setattr(h, "CHECK_S", 0.02)


def test_statuses_follow_the_checks_until_shutdown():
    async def main():
        state = {"up": False, "admin": True}

        def broken() -> bool:
            raise RuntimeError("no state")
        health = h.Health({"": lambda: state["up"], SERVICE: lambda: state["admin"],
                           "skymesh.v1.Broken": broken})
        server = grpc.aio.server()
        health.add_to_server(server, [SERVICE])
        port = server.add_insecure_port("127.0.0.1:0")
        await health.start(server)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            assert await status(stub) == "NOT_SERVING"  # not the servicer's own SERVING
            assert await status(stub, SERVICE) == "SERVING"
            assert await status(stub, "skymesh.v1.Broken") == "NOT_SERVING"
            assert await status(stub, "no.Such") == "NOT_FOUND"
            assert await listed(ch) == {SERVICE, h.HEALTH_SERVICE,
                                        "grpc.reflection.v1alpha.ServerReflection"}
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
            seen = [(await watch.read()).status]
            state["up"] = True
            seen.append((await asyncio.wait_for(watch.read(), 2)).status)
            assert seen == [h.NOT_SERVING, h.SERVING]
            assert await status(stub) == "SERVING"
            await health.shutdown()
            assert (await asyncio.wait_for(watch.read(), 2)).status == h.NOT_SERVING
            state["admin"] = True
            await health.update()  # ignored from now on
            await asyncio.sleep(0.1)
            assert await status(stub) == await status(stub, SERVICE) == "NOT_SERVING"
            watch.cancel()
        await server.stop(None)
    asyncio.run(main())
