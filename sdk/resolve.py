"""Finding a region's client edges: the controller's region list says where the edge of each
of a region's relay nodes listens, how loaded it is, and whether the region is drained. (Edge
resolution by geography and a handshake race builds on this.)"""

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
    node: str = ""  # the relay node whose edge it is ("": a controller that names none)


def find_edge(controller: str, region: str, ca: str | None = None,
              timeout: float = 5.0, *, credentials: TlsFiles | None) -> Edge:
    """The client edge of `region` as the controller at `controller` knows it, asked with
    the mesh certificate `credentials` (None: plaintext, a controller run --insecure): of a
    region of several relay nodes, the least loaded node's (`find_edges`). Raises
    EdgeUnavailable (unknown region, no edge connected, region drained) or
    ControllerUnavailable."""
    return find_edges(controller, region, ca, timeout, credentials=credentials)[0]


def find_edges(controller: str, region: str, ca: str | None = None,
               timeout: float = 5.0, *, credentials: TlsFiles | None) -> list[Edge]:
    """The client edges of `region`'s connected relay nodes, the least loaded first (see
    `edges_of`); never empty. `controller` may name several replicas ("A,B,C"): the first
    that answers does. Raises as `find_edge`."""
    if "," in controller:
        errors = []
        for one in controller.split(","):
            try:
                return find_edges(one, region, ca, timeout, credentials=credentials)
            except ControllerUnavailable as e:
                if "is not answering" not in str(e):
                    raise
                errors.append(str(e))
        raise ControllerUnavailable("; ".join(errors))
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
    return edges_of(reply, region, ca)


def edges_of(reply: admin_pb2.RegionsReply, region: str, ca: str | None = None) -> list[Edge]:
    """The client edges of `region` in a Regions reply, in the order a client tries them:
    fewest client sessions first (as the nodes last reported them), then by node id, so that
    new clients fill a region's nodes evenly and a node's clients, reconnecting when it dies,
    land on its siblings. From a controller that lists no nodes, the region's one edge.
    Raises EdgeUnavailable (unknown region, no edge, drained)."""
    by_id = {r.id: r for r in reply.regions}
    r = by_id.get(region)
    if r is None:
        raise EdgeUnavailable(f"unknown region {region!r}; regions: {', '.join(sorted(by_id))}")
    if r.nodes:
        listed = sorted((n for n in r.nodes if n.edge_addr),
                        key=lambda n: (n.sessions, n.node_id))
        edges = [_edge(region, n.edge_addr, ca, n.node_id) for n in listed]
    else:
        edges = [_edge(region, r.edge_addr, ca)] if r.edge_addr else []
    if not edges:
        raise EdgeUnavailable(f"region {region!r} has no relay with a client edge connected")
    if r.drained:
        others = [x.id for x in by_id.values()
                  if (x.edge_addr or any(n.edge_addr for n in x.nodes)) and not x.drained]
        raise EdgeUnavailable(f"region {region!r} is drained; regions in service: "
                              f"{', '.join(sorted(others)) or 'none'}")
    return edges


def _edge(region: str, address: str, ca: str | None, node: str = "") -> Edge:
    host, _, port = address.rpartition(":")
    return Edge(region, host.strip("[]"), int(port), ca, node)
