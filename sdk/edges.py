"""How a client picks its edge (issue 16): the resolvers' ranking (several resolvers, the
first to answer wins), then a race of QUIC handshakes to the best few (Agora's last-mile
probe, Tailscale's netcheck), and hysteresis when choosing again: the edge in use is kept
unless another is at least 10 ms and a third faster over recent measurements (Tailscale's
rule for its home region)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
from aioquic.asyncio import connect as quic_connect
from aioquic.quic.configuration import QuicConfiguration

from sdk.errors import ControllerUnavailable, EdgeUnavailable
from skymesh.edgeproto import ALPN
from skymesh.v1 import resolver_pb2, resolver_pb2_grpc

SWITCH_MS = 10.0  # another edge must be this much faster ...
SWITCH_FRACTION = 1 / 3  # ... and this much faster, relatively, to be switched to
RACE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Candidate:
    region: str
    node: str
    host: str
    port: int
    rtt_ms: float | None = None  # the resolver's estimate
    reason: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def resolve(resolvers: Sequence[str], token: str, ca: bytes | None, *, address: str = "",
            count: int = 3, timeout: float = 3.0) -> list[Candidate]:
    """The edges the first resolver to answer offers, best first (every node of each
    region, least loaded first). `ca`: the mesh's CA certificates the resolvers' TLS is
    checked against (None: plaintext, resolvers run --insecure). Raises EdgeUnavailable
    when a resolver answers with none, ControllerUnavailable when none answers."""
    errors = []
    request = resolver_pb2.ResolveRequest(token=token, address=address, count=count)
    for target in resolvers:
        channel = grpc.insecure_channel(target) if ca is None else \
            grpc.secure_channel(target, grpc.ssl_channel_credentials(ca))
        with channel:
            try:
                reply = resolver_pb2_grpc.EdgeResolverStub(channel).Resolve(
                    request, timeout=timeout)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                    raise EdgeUnavailable(f"resolver {target}: {e.details()}") from None
                errors.append(f"{target}: {e.code().name}: {e.details()}")
                continue
        out = [Candidate(edge.region, n.node_id, *_split(n.address),
                         edge.rtt_ms if edge.rtt_ms >= 0 else None, edge.reason)
               for edge in reply.edges for n in edge.nodes if n.address]
        if not out:
            raise EdgeUnavailable(f"resolver {target}: no usable edge in zone {reply.zone}")
        return out
    raise ControllerUnavailable("no resolver answered: " + "; ".join(errors))


async def handshake_ms(candidate: Candidate, ca_file: str, server_name: str = "localhost",
                       timeout: float = RACE_TIMEOUT_S) -> float | None:
    """How long a QUIC handshake with the edge takes (None: it did not complete)."""
    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], server_name=server_name)
    config.load_verify_locations(cafile=ca_file)
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            async with quic_connect(candidate.host, candidate.port, configuration=config,
                                    wait_connected=True) as protocol:
                took = (time.perf_counter() - start) * 1000
                protocol.close()
                return took
    except (TimeoutError, ConnectionError, OSError):
        return None


async def race(candidates: Sequence[Candidate], ca_file: str, *, first: int = 3,
               server_name: str = "localhost", timeout: float = RACE_TIMEOUT_S,
               ) -> list[tuple[Candidate, float]]:
    """Handshakes with the first `first` candidates at once: those that completed, fastest
    first, with their handshake times (ms)."""
    tried = list(candidates[:first])
    times = await asyncio.gather(*(handshake_ms(c, ca_file, server_name, timeout)
                                   for c in tried))
    done = [(c, t) for c, t in zip(tried, times, strict=True) if t is not None]
    return sorted(done, key=lambda ct: ct[1])


def keep_or_switch(current: str | None, recent_ms: Mapping[str, Sequence[float]]) -> str:
    """Which edge (by address) to use, given recent measurements of each (ms): the current
    one unless another's best is at least SWITCH_MS and SWITCH_FRACTION faster than the
    current's best; the fastest when there is none or it was not measured."""
    best = {a: min(v) for a, v in recent_ms.items() if v}
    if not best:
        if current is None:
            raise ValueError("no edge measured and none in use")
        return current
    fastest = min(best, key=lambda a: (best[a], a))
    if current is None or current not in best:
        return fastest
    mine, theirs = best[current], best[fastest]
    if mine - theirs >= SWITCH_MS and theirs <= mine * (1 - SWITCH_FRACTION):
        return fastest
    return current
