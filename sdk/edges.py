"""How a client picks its edge (issue 16): the resolvers' ranking (several resolvers, the
first to answer wins), then a race of QUIC handshakes to the best few (Agora's last-mile
probe, Tailscale's netcheck), and hysteresis when choosing again: the edge in use is kept
unless another is at least 10 ms and a third faster over recent measurements (Tailscale's
rule for its home region)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from aioquic.asyncio import connect as quic_connect
from aioquic.quic.configuration import QuicConfiguration

from sdk.errors import ControllerUnavailable, EdgeUnavailable
from skymesh import edgerank
from skymesh.edgeproto import ALPN
from skymesh.token import TokenError
from skymesh.token import parse as parse_token
from skymesh.v1 import resolver_pb2, resolver_pb2_grpc

SWITCH_MS = 10.0  # another edge must be this much faster ...
SWITCH_FRACTION = 1 / 3  # ... and this much faster, relatively, to be switched to
RACE_TIMEOUT_S = 2.0
# regions raced: on the measured WonderNetwork matrix (bench/resolve_accuracy.py, 20 edges),
# the lowest-RTT edge was among the ranking's first 3 for 95.5% of clients, first 4 for 98%
RACE_SIZE = 4
TIE_MS = 5.0  # round-trip times this close are taken as equal: the ranking decides


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


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def resolve(resolvers: Sequence[str], token: str, ca: bytes | None, *, address: str = "",
            count: int = 3, region: str = "", timeout: float = 3.0) -> list[Candidate]:
    """The edges the first resolver to answer offers, best first (every node of each
    region, least loaded first); of `region` only, when given. `ca`: the mesh's CA
    certificates the resolvers' TLS is checked against (None: plaintext, resolvers run
    --insecure). Raises EdgeUnavailable when a resolver answers with none,
    ControllerUnavailable when none answers."""
    errors = []
    request = resolver_pb2.ResolveRequest(token=token, address=address, count=count,
                                          region=region)
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
        out = [Candidate(edge.region, n.node_id, *split_address(n.address),
                         edge.rtt_ms if edge.rtt_ms >= 0 else None, edge.reason)
               for edge in reply.edges for n in edge.nodes if n.address]
        if not out:
            where = f"region {region!r} in " if region else ""
            raise EdgeUnavailable(f"resolver {target}: no usable edge in {where}zone "
                                  f"{reply.zone!r} (unknown, drained, disconnected or outside "
                                  "the zone)")
        return out
    raise ControllerUnavailable("no resolver answered: " + "; ".join(errors))


_closing: set[asyncio.Task] = set()  # races' connections, closing after their handshakes


@dataclass
class Held:
    """A race's connection kept open, for the session to take instead of connecting again:
    `release()` closes it (and waits until it has)."""

    protocol: object
    release_signal: asyncio.Future
    task: asyncio.Task

    async def release(self) -> None:
        if not self.release_signal.done():
            self.release_signal.set_result(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@dataclass
class Hold:
    """How a race connects when its winner is to be kept (the session's QUIC configuration
    and protocol class), and the connections it keeps, by address."""

    configuration: Callable[[], QuicConfiguration]
    create_protocol: Callable
    open: dict[str, Held] = field(default_factory=dict)
    taken: bool = False  # a connection that completes after `take` is closed, not kept

    def take(self, address: str) -> Held | None:
        """The connection kept to `address`, if it is still open; the others are released."""
        self.taken = True
        held = self.open.pop(address, None)
        for other in self.open.values():
            task = asyncio.get_running_loop().create_task(other.release())
            _closing.add(task)
            task.add_done_callback(_closing.discard)
        self.open.clear()
        if held is not None and getattr(held.protocol, "terminated", False):
            return None
        return held


async def handshake_ms(candidate: Candidate, ca_file: str, server_name: str = "localhost",
                       timeout: float = RACE_TIMEOUT_S, hold: Hold | None = None,
                       ) -> float | None:
    """The round-trip time to the edge a QUIC handshake and one PING after it measured, in
    ms (None: it did not complete): QUIC's smallest RTT sample, which leaves out most of the
    time either side spent on the handshake's cryptography (a client racing four edges on
    one core would otherwise measure its own CPU); the handshake's duration when there was
    no sample. The connection
    is closed in the background (its closing period is no part of the race), or kept open in
    `hold`, made as it says."""
    if hold is not None:
        config = hold.configuration()
    else:
        config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                                   server_name=server_name)
        try:
            config.load_verify_locations(cafile=ca_file)
        except (OSError, ValueError):
            return None
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float | None] = loop.create_future()
    release = loop.create_future()
    start = time.perf_counter()
    extra = {} if hold is None else {"create_protocol": hold.create_protocol}

    async def attempt() -> None:
        try:
            async with quic_connect(candidate.host, candidate.port, configuration=config,
                                    wait_connected=True, **extra) as protocol:
                took = (time.perf_counter() - start) * 1000
                # one clean sample: the handshake's own include the edge's cryptography
                # (RFC 9002 counts no ACK delay in those packet number spaces)
                with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                    await asyncio.wait_for(protocol.ping(), max(0.05, timeout / 2))
                if not done.done():
                    rtt = getattr(getattr(protocol._quic, "_loss", None), "_rtt_min", None)
                    done.set_result(rtt * 1000 if isinstance(rtt, float)
                                    and math.isfinite(rtt) else took)
                if hold is not None and not hold.taken:
                    hold.open[candidate.address] = Held(protocol, release, task)
                    await release
                protocol.close()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            if not done.done():
                done.set_result(None)

    task = loop.create_task(attempt())
    _closing.add(task)
    task.add_done_callback(_closing.discard)
    try:
        return await asyncio.wait_for(asyncio.shield(done), timeout)
    except TimeoutError:
        task.cancel()
        return None


async def race(candidates: Sequence[Candidate], ca_file: str, *, first: int = RACE_SIZE,
               server_name: str = "localhost", timeout: float = RACE_TIMEOUT_S,
               decided: bool = False, hold: Hold | None = None,
               ) -> list[tuple[Candidate, float]]:
    """Handshakes with the first `first` candidates at once: those that completed, fastest
    first, with their round-trip times (ms, `handshake_ms`). `decided`: once one has
    completed, the others are waited for only as long again and 20 ms (a handshake is a
    round trip or two: one still going by then is evidently farther)."""
    tried = list(candidates[:first])
    if not tried:
        return []
    start = time.perf_counter()
    tasks = {asyncio.ensure_future(handshake_ms(c, ca_file, server_name, timeout, hold)): c
             for c in tried}
    done: list[tuple[Candidate, float]] = []
    pending = set(tasks)
    until: float | None = None
    while pending:
        wait = None if until is None else max(0.0, until - time.perf_counter())
        finished, pending = await asyncio.wait(pending, timeout=wait,
                                               return_when=asyncio.FIRST_COMPLETED)
        done += [(tasks[t], t.result()) for t in finished if t.result() is not None]
        if decided and done and until is None:
            until = start + 2 * (time.perf_counter() - start) + 0.02
        if not finished:
            break
    for t in pending:
        t.cancel()
    return sorted(done, key=lambda ct: ct[1])


def pick(ranked: Sequence[str], measured_ms: Mapping[str, float]) -> str | None:
    """The edge (address) to connect to after a race: the fastest, but of those within
    TIE_MS (or 5%) of it, the one ranked first (a sample's noise is not a reason to leave
    the ranking). None when none was measured."""
    if not measured_ms:
        return None
    fastest = min(measured_ms.values())
    near = [a for a in ranked if a in measured_ms
            and measured_ms[a] <= max(fastest + TIE_MS, fastest * 1.05)]
    return near[0] if near else min(measured_ms, key=lambda a: measured_ms[a])


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


@dataclass(frozen=True)
class Fallback:
    """What an application ships for when no resolver answers: its regions' edges (where
    they are, their zones and node addresses, as `skymesh.edgerank.EdgeRegion`s) and, if it
    has one, a City database to place the client's address in."""

    regions: tuple[edgerank.EdgeRegion, ...]
    geoip: str | None = None

    def candidates(self, token: str, address: str = "", count: int = 3) -> list[Candidate]:
        """The shipped edges in the token's zone, nearest the client's address first (as the
        database places it; in the shipped order when it cannot): every node of each."""
        try:
            zone = parse_token(token).zone
        except TokenError as e:
            raise EdgeUnavailable(f"cannot read the token's zone: {e}") from None
        where = None
        if self.geoip and address:
            from skymesh.geoip import CityDatabase, GeoIPError
            try:
                db = CityDatabase(self.geoip)
            except GeoIPError as e:
                raise EdgeUnavailable(str(e)) from None
            try:
                where = db.locate(address)
            finally:
                db.close()
        ranked = edgerank.rank(self.regions, where, zone=zone, count=count)
        out = [Candidate(r.region, n.node_id, *split_address(n.address), r.rtt_ms,
                         f"fallback: {r.reason}") for r in ranked for n in r.nodes]
        if not out:
            raise EdgeUnavailable(f"no shipped edge in zone {zone!r}")
        return out


def load_fallback(path: str | Path, geoip: str | None = None) -> Fallback:
    """A Fallback from a YAML file of the application's regions:

        regions:
          - {id: ams, lat: 52.37, lon: 4.90, zones: [eu, global], edges: ["ams.example:4433"]}

    ValueError naming the file and the field for anything wrong."""
    import yaml

    from skymesh import yamlfile

    try:
        data = yamlfile.load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: {e}") from None
    items = data.get("regions") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: regions: a list of regions is needed")
    regions = []
    for i, item in enumerate(items):
        where = f"{path}: regions[{i}]"
        try:
            rid, lat, lon = str(item["id"]), float(item["lat"]), float(item["lon"])
            zones = frozenset(str(z) for z in item.get("zones", ()))
            edges = [str(a) for a in item["edges"]]
            for a in edges:
                split_address(a)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{where}: needs id, lat, lon, edges (host:port) and zones: "
                             f"{e}") from None
        nodes = tuple(edgerank.EdgeNode(f"{rid}-{k}", a) for k, a in enumerate(edges))
        regions.append(edgerank.EdgeRegion(rid, lat, lon, nodes, zones))
    return Fallback(tuple(regions), geoip)


@dataclass
class EdgeFinder:
    """Where a session's edges come from: the resolvers (first to answer), else the shipped
    fallback, raced by QUIC handshake; with the recent handshake times of each edge, for
    the hysteresis of `keep_or_switch`."""

    token: str
    ca_file: str
    resolvers: Sequence[str] = ()
    resolver_ca: bytes | None = None
    address: str = ""  # the client's address as the resolver should place it ("": as seen)
    fallback: Fallback | None = None
    candidates: Sequence[Candidate] = ()  # fixed edges, when neither of the above
    server_name: str = "localhost"
    count: int = RACE_SIZE
    region: str = ""  # only this region's edges ("": any)
    # (QUIC configuration, protocol class) of the session's connections: a race's are made so
    # and kept open (`hold`, a fresh one each race), for the session to take the winner's
    connection: tuple[Callable[[], QuicConfiguration], Callable] | None = None
    hold: Hold | None = None
    recent: dict[str, deque] = field(default_factory=dict)  # address -> handshake ms
    last_source: str = ""  # "resolver", "fallback" or "given"

    def ranked(self, any_region: bool = False) -> list[Candidate]:
        """The candidates, best first, as the resolvers or the fallback rank them; of the
        finder's region, or (`any_region`) of any when it takes no clients now. Raises
        EdgeUnavailable (nothing usable), ControllerUnavailable (no resolver and no
        fallback)."""
        if self.resolvers:
            try:
                try:
                    out = resolve(self.resolvers, self.token, self.resolver_ca,
                                  address=self.address, count=self.count, region=self.region)
                    self.last_source = "resolver"
                except EdgeUnavailable:
                    if not (self.region and any_region):
                        raise
                    # the region asked for takes no clients now: any other rather than none
                    out = resolve(self.resolvers, self.token, self.resolver_ca,
                                  address=self.address, count=self.count)
                    self.last_source = f"resolver (region {self.region} unusable: any)"
                return out
            except ControllerUnavailable:
                if self.fallback is None and not self.candidates:
                    raise
        if self.fallback is not None:
            self.last_source = "fallback"
            out = self.fallback.candidates(self.token, self.address, self.count)
            if self.region:
                out = [c for c in out if c.region == self.region]
                if not out:
                    raise EdgeUnavailable(f"no shipped edge in region {self.region!r}")
            return out
        if self.candidates:
            self.last_source = "given"
            return list(self.candidates)
        raise ControllerUnavailable("no resolver, fallback or edge to connect to")

    async def find(self, exclude: Sequence[str] = (), any_region: bool = False,
                   ) -> tuple[list[Candidate], list[tuple[Candidate, float]]]:
        """(every candidate in the order to try them, the race's results): the race's (the
        first node of each of the first RACE_SIZE regions) `pick`, its other finishers
        fastest first, then the rest as ranked; edges in `exclude` (addresses) left out.
        `any_region`: as `ranked`."""
        ranked = await asyncio.to_thread(self.ranked, any_region)
        ranked = [c for c in ranked if c.address not in exclude]
        if not ranked and any_region and self.region:  # only the lost edge is left there
            region, self.region = self.region, ""
            try:
                ranked = [c for c in await asyncio.to_thread(self.ranked)
                          if c.address not in exclude]
            finally:
                self.region = region
        if self.hold is not None:
            self.hold.take("")  # what an earlier race kept and nobody took
        self.hold = Hold(*self.connection) if self.connection else None
        contenders = list({c.region: c for c in reversed(ranked)}.values())[::-1]
        raced = await race(contenders, self.ca_file, server_name=self.server_name,
                           decided=True, hold=self.hold)
        for c, ms in raced:
            self.recent.setdefault(c.address, deque(maxlen=5)).append(ms)
        first = [c for c, _ in raced]
        chosen = pick([c.address for c in ranked], {c.address: ms for c, ms in raced})
        first.sort(key=lambda c: c.address != chosen)
        return first + [c for c in ranked if c not in first], raced

    def better_than(self, current: str) -> str:
        """The edge (address) to use now by the recent handshakes: `current` unless another
        is at least SWITCH_MS and SWITCH_FRACTION faster (`keep_or_switch`)."""
        return keep_or_switch(current, {a: list(v) for a, v in self.recent.items()})
