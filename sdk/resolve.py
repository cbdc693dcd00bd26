"""Finding a region's client edge: the controller's region list says where each region's edge
listens and whether the region is drained. (Edge resolution by geography and a handshake race
builds on this.)"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from sdk.errors import ControllerUnavailable, EdgeUnavailable
from skymesh.net.tls import TlsError, TlsFiles
from skymesh.net.tls import channel as tls_channel
from skymesh.v1 import admin_pb2, admin_pb2_grpc


@dataclass(frozen=True)
class Edge:
    region: str
    host: str
    port: int
    ca: str | None = None  # CA certificate the edge's certificate is checked against


def find_edge(controller: str, region: str, ca: str | None = None,
              timeout: float = 5.0, *, credentials: TlsFiles | None) -> Edge:
    """The client edge of `region` as the controller at `controller` knows it, asked with
    the mesh certificate `credentials` (None: plaintext, a controller run --insecure). Raises
    EdgeUnavailable (unknown region, no edge connected, region drained) or
    ControllerUnavailable."""
    try:
        channel = tls_channel(controller, credentials)
    except TlsError as e:
        raise ControllerUnavailable(f"cannot call controller {controller}: {e}") from None
    with channel:
        try:
            reply = admin_pb2_grpc.AdminStub(channel).Regions(admin_pb2.RegionsRequest(),
                                                              timeout=timeout)
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ControllerUnavailable(f"controller {controller} is not answering "
                                            f"({e.code().name}: {e.details()})") from None
            raise ControllerUnavailable(f"{e.details()} ({e.code().name})") from None
    by_id = {r.id: r for r in reply.regions}
    r = by_id.get(region)
    if r is None:
        raise EdgeUnavailable(f"unknown region {region!r}; regions: {', '.join(sorted(by_id))}")
    if not r.edge_addr:
        raise EdgeUnavailable(f"region {region!r} has no relay with a client edge connected")
    if r.drained:
        others = [x.id for x in by_id.values() if x.edge_addr and not x.drained]
        raise EdgeUnavailable(f"region {region!r} is drained; regions in service: "
                              f"{', '.join(sorted(others)) or 'none'}")
    host, _, port = r.edge_addr.rpartition(":")
    return Edge(region, host.strip("[]"), int(port), ca)
