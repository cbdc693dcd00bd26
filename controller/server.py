"""The controller process's wiring: the core, its store, the two gRPC services on one server
(with the standard health service per service, and reflection), and the loop that recomputes
routes every interval or as soon as the core asks."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import grpc

from controller import gateway, relay_service, resolver_service, translate
from controller.admin_service import AdminService
from controller.core import Computed, Controller, Settings
from controller.election import DEFAULT_TTL_S
from controller.etcd import Etcd, endpoints_of
from controller.etcdstate import Keys
from controller.etcdstore import EtcdStore
from controller.leadership import Leadership, lone
from controller.relay_service import RelayControlService
from controller.replica import Replica
from controller.resolver import Resolver
from controller.resolver_service import EdgeResolverService
from controller.store import FileStore, MemoryStore, Store
from skymesh.catalogue import Region
from skymesh.geoip import CityDatabase
from skymesh.net.health import Health
from skymesh.net.tls import INSECURE_WARNING, TlsError, TlsFiles, server_credentials
from skymesh.policy import Policy
from skymesh.v1 import admin_pb2, admin_pb2_grpc, relay_pb2, resolver_pb2_grpc

log = logging.getLogger("skymesh.controller")
INSECURE_MESH = "insecure"  # the etcd prefix of a controller run with --insecure
DEFAULTS = Settings()
# Flood limits of the gRPC server. A relay's largest message is a link report (about 60 bytes a
# peer) or its channel interest; 4 MiB holds either for thousands of peers or channels.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# every relay holds one long-lived session; beyond this many calls at once, new ones get
# RESOURCE_EXHAUSTED
MAX_RPCS = 4096
RELAYED_RESOLVE_S = 2.0  # a follower asking the leader's resolver for a client
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),  # route tables of 1000 regions
    ("grpc.max_concurrent_streams", 64),  # per connection: a client is one relay or admin
]
# The resolver's listener: its calls are small (a token and an address in, a few edges out),
# and a client may be a service resolving for many users over one connection
RESOLVER_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024),
    ("grpc.max_send_message_length", 1024 * 1024),
    ("grpc.max_concurrent_streams", 256),
]
_indexers: set[asyncio.Task] = set()  # the resolvers' re-indexing timers
RELAY_CONTROL = relay_pb2.DESCRIPTOR.services_by_name["RelayControl"].full_name
ADMIN = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name


class RecomputeLoop:
    """Runs the core's rounds on the shell's clocks: every recompute_interval_s, or at once
    when the core asks (an ACK that releases held rows, a relay gone, a link event)."""

    def __init__(self, catalogue: Mapping[str, Region], policy: Policy, settings: Settings,
                 apps: Mapping[str, tuple[bytes, ...]] | None, fabric_keys: list[bytes] | None,
                 store: Store) -> None:
        self.wake = asyncio.Event()
        self.core = Controller(catalogue, policy, settings, apps, fabric_keys, store,
                               now=time.monotonic(), wake=self.wake.set)
        self.computed: Callable[[], None] = lambda: None  # called once a computation ended
        self.resolver_server: grpc.aio.Server | None = None  # --resolve-listen
        self.health: list[Health] = []  # of its servers: NOT_SERVING first when stopping

    async def close(self) -> None:
        """The resolver's listener, if any (a replica on etcd has its own to let go of)."""
        if self.resolver_server is not None:
            await self.resolver_server.stop(0.5)

    async def run(self) -> None:
        while True:
            # cleared before the round, not after: a wake during it (a link that moved while
            # routes were computed, reports released at its end) is a reason for the next
            self.wake.clear()
            try:
                held = await self.round()
            except Exception:  # the loop must survive any one bad round
                log.exception("route computation failed")
                held = 0.0
            # after a round that held the event loop long (a thousand relays' first tables),
            # as long again before the next: the loop's other work (reports, ACKs, admin
            # reads) keeps half the CPU. The computation itself runs beside the loop.
            if held > self.core.settings.recompute_interval_s:
                await asyncio.sleep(held)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(),
                                       self.core.settings.recompute_interval_s)


    async def round(self) -> float:
        """One round of the core's (`Controller.tick`), with the route computation on a
        worker thread: the event loop keeps serving relays' reports and ACKs and admin reads
        while hundreds of regions' routes are computed (numpy and scipy release the GIL for
        most of it). Returns how long it held the event loop (s)."""
        core = self.core
        start = time.perf_counter()
        core.pre_tick(time.monotonic(), time.time())
        job = core.begin_recompute(time.monotonic(), time.time())
        held = time.perf_counter() - start
        if job is not None:
            start = time.perf_counter()
            try:
                done = await asyncio.to_thread(encoded, job)
            except BaseException:
                core.computing = False
                core.dirty = True  # try again next round
                self.computed()
                raise
            finish = time.perf_counter()
            core.finish_recompute(done, time.monotonic(), time.time(), finish - start)
            self.computed()  # the reports that waited for it, before the next round
            held += time.perf_counter() - finish
        start = time.perf_counter()
        core.converged(time.monotonic())
        return held + time.perf_counter() - start


def encoded(job: Callable[[], Computed]) -> Computed:
    """Run the core's route computation and encode the rows it changed for the wire, off the
    event loop (a thousand relays' first tables are a million rows)."""
    done = job()
    translate.encode_rows(done.patches)
    return done


async def serve(catalogue: Mapping[str, Region], policy: Policy, listen: str,
                settings: Settings = DEFAULTS, apps: Mapping[str, tuple[bytes, ...]] | None = None,
                fabric_keys: list[bytes] | None = None, state_file: Path | None = None, *,
                tls: TlsFiles | None, store_url: str | None = None, replica: str = "c1",
                election_ttl_s: float = DEFAULT_TTL_S, lead_timeout_s: float = 30.0,
                advertise: str | None = None, resolve_listen: str | None = None,
                geoip: CityDatabase | None = None, metrics_listen: str | None = None,
                dashboard: Callable[[int], Awaitable[str]] | None = None,
                ) -> tuple[grpc.aio.Server, RecomputeLoop | Replica, int]:
    """Start serving on `listen`, with mutual TLS on `tls` (the controller's certificate;
    clients must present one of its mesh), or in plaintext, unauthenticated, when `tls` is
    None (--insecure). State is kept in `state_file`, or on etcd (`store_url`,
    etcd://HOST:PORT[,...], with the same certificate) as `replica` (reached at `advertise`,
    default the address listened on), once it leads. Both servers (and the resolver's, on
    `resolve_listen`) serve the gRPC health service, per service, and reflection.
    `dashboard(port)`, once serving on `port`, starts the live map and returns its URL, which
    the admin status gives. The caller runs the loop (`.run()`) and ends with `shut_down`.
    Raises ValueError for an unreadable state file, store URL or unusable TLS files, OSError
    when it cannot listen or reach etcd."""
    mesh = None
    if tls is not None:
        try:
            me = tls.identity()
            credentials = server_credentials(tls)
        except TlsError as e:
            raise ValueError(str(e)) from None
        if me.kind != "controller":
            raise ValueError(f"{tls.cert} is the certificate of {me}, not of a controller")
        mesh = me.mesh
    # bound first: a replica campaigns with the address its clients reach it at
    server = grpc.aio.server(options=SERVER_OPTIONS, maximum_concurrent_rpcs=MAX_RPCS)
    if tls is None:
        log.warning(INSECURE_WARNING.format(what=listen))
        port = server.add_insecure_port(listen)
    else:
        port = server.add_secure_port(listen, credentials)
        log.info("mutual TLS as %s (mesh %s)", me, mesh)
    if not port:
        raise OSError(f"cannot listen on {listen}")
    # where other replicas and relays reach this one: said, or the address listened on
    address = advertise or f"{listen.rpartition(':')[0]}:{port}"

    def make_loop(store: Store) -> RecomputeLoop:
        return RecomputeLoop(catalogue, policy, settings, apps, fabric_keys, store)

    runner: RecomputeLoop | Replica
    if store_url is not None:
        runner = replica_on(store_url, tls, mesh, replica, address, election_ttl_s,
                            catalogue, make_loop)
        gateway.add_to_server(runner.relay_gateway, runner.admin_gateway, server)
        # serving as a whole while it leads; each service while it can answer (relayed to
        # the leader, or from etcd)
        checks = {"": lambda: runner.leadership.leading,
                  RELAY_CONTROL: runner.carries_sessions, ADMIN: runner.answers_admin}
        if metrics_listen is not None:
            runner.metrics_addr = await serve_metrics(
                metrics_listen, lambda: runner.loop.core if runner.loop else None,
                lambda: runner.leadership.leading, runner.leadership.store, address)
        if resolve_listen is not None:
            # the replicas ask each other over the mesh's port, with their certificates
            here = held_resolver(runner, geoip)
            resolver_service.add_to_server(EdgeResolverService(here), server)
            ready = functools.partial(replica_resolves, runner, here)
            checks[resolver_service.SERVICE] = ready
            runner.resolver_server, _ = await serve_resolver(
                resolve_listen, tls, here, relay=leader_resolver(runner), ready=ready,
                healths=runner.health)
        health = Health(checks, "controller")
        health.add_to_server(server, [name for name in checks if name])
        runner.health.insert(0, health)
        await health.start(server)
        try:
            if dashboard is not None:
                runner.dashboard_url = await dashboard(port)
            await runner.wait_ready(lead_timeout_s)
        except (OSError, ValueError):
            await shut_down(server, runner, None)
            raise
        return server, runner, port
    store = FileStore(state_file) if state_file is not None else MemoryStore()
    runner = make_loop(store)
    if resolve_listen is not None:
        resolver = Resolver(runner.core, geoip)
        runner.resolver_server, _ = await serve_resolver(resolve_listen, tls,
                                                         lambda: resolver, healths=runner.health)
    relays = RelayControlService(runner.core, mesh)
    runner.computed = relays.take_reports
    relay_service.add_to_server(relays, server)
    admin = AdminService(runner.core, mesh, functools.partial(lone, replica, address, store))
    admin_pb2_grpc.add_AdminServicer_to_server(admin, server)
    if metrics_listen is not None:
        admin.metrics_addr = await serve_metrics(metrics_listen, lambda: runner.core,
                                                 lambda: True, store, address)
    # one controller: every part serves once the server has started
    health = Health(dict.fromkeys(("", RELAY_CONTROL, ADMIN), lambda: True), "controller")
    health.add_to_server(server, [RELAY_CONTROL, ADMIN])
    runner.health.insert(0, health)
    await health.start(server)
    if dashboard is not None:
        try:
            admin.dashboard_url = await dashboard(port)
        except (OSError, ValueError):
            await shut_down(server, runner, None)
            raise
    return server, runner, port


async def shut_down(server: grpc.aio.Server, runner: RecomputeLoop | Replica,
                    grace_s: float | None = 0.5) -> None:
    """Stop serving: every health service NOT_SERVING first (load balancers and watchers
    see it while the calls in flight end), then the server stops and the runner closes
    (a replica resigns, the resolver's listener stops)."""
    for health in runner.health:
        await health.shutdown()
    await server.stop(grace_s)
    await runner.close()


def replica_resolves(runner: Replica, held: Callable[[], Resolver | None]) -> bool:
    """A replica's EdgeResolver serves once the resolver it holds has indexed the mesh, or
    while a replica that leads can be asked."""
    resolver = held()
    if resolver is not None and resolver.reindexed > 0:
        return True
    target = runner.target()
    return target is not None and not target.local


async def serve_metrics(listen: str, core: Callable[[], object],
                        leading: Callable[[], bool], store: object, address: str) -> str:
    """The Prometheus endpoint on `listen`; where it is, as the admin status says it (the
    host the controller is reached at when it listens on every address)."""
    from controller.metrics import ControllerCollector
    from skymesh.net import metricsserver

    ops = getattr(store, "ops", None)
    server = await metricsserver.serve(listen, metricsserver.registry_with(
        ControllerCollector(core, leading, ops if ops is not None else Counter())))
    _metrics_servers.add(server)
    port = metricsserver.bound_address(server).rpartition(":")[2]
    host = listen.rpartition(":")[0].strip("[]")
    if host in ("0.0.0.0", "::", ""):
        host = address.rpartition(":")[0]
    return f"{host}:{port}"


_metrics_servers: set = set()  # held: the loop keeps only weak references


def held_resolver(runner: Replica, geoip: CityDatabase | None
                  ) -> Callable[[], Resolver | None]:
    """A replica's resolver: over the core it holds, once it has led (None before)."""
    held: list = [None, None]  # [core, its resolver]

    def current() -> Resolver | None:
        if runner.loop is None:
            return None
        if held[0] is not runner.loop.core:
            held[:] = [runner.loop.core, Resolver(runner.loop.core, geoip)]
        return held[1]
    return current


def leader_resolver(runner: Replica) -> resolver_service.Relay:
    """Resolve requests, asked of the replica that leads (over the mesh's port)."""
    async def relay(request):
        target = runner.target()
        if target is None or target.local:
            return None
        stub = resolver_pb2_grpc.EdgeResolverStub(runner.upstreams.channel(target.address))
        return await stub.Resolve(request, timeout=RELAYED_RESOLVE_S)
    return relay


async def serve_resolver(listen: str, tls: TlsFiles | None,
                         resolver: Callable[[], Resolver | None],
                         relay: resolver_service.Relay | None = None, *,
                         ready: Callable[[], bool] | None = None,
                         healths: list[Health] | None = None,
                         ) -> tuple[grpc.aio.Server, int]:
    """The EdgeResolver for clients on a listener of its own: TLS with the controller's
    certificate but no client certificate (each call carries the client's token), or
    plaintext with --insecure; with the health service (its status and the server's:
    `ready()`, by default once the resolver has indexed the mesh; added to `healths`) and
    reflection. OSError when it cannot listen."""
    server = grpc.aio.server(options=RESOLVER_OPTIONS, maximum_concurrent_rpcs=MAX_RPCS)
    resolver_service.add_to_server(EdgeResolverService(resolver, relay), server)
    if ready is None:
        ready = functools.partial(indexed, resolver)
    health = Health({"": ready, resolver_service.SERVICE: ready}, "edge resolver")
    health.add_to_server(server, [resolver_service.SERVICE])
    if healths is not None:
        healths.append(health)
    if tls is None:
        port = server.add_insecure_port(listen)
    else:
        port = server.add_secure_port(listen, server_credentials(
            tls, clients_need_certificates=False))
    if not port:
        raise OSError(f"cannot listen on {listen} (--resolve-listen)")
    await health.start(server)
    # the index kept fresh between requests, until the server stops (held here: the event
    # loop keeps only a weak reference to a task)
    task = asyncio.create_task(resolver_service.keep_indexed(
        resolver, server.wait_for_termination()))
    _indexers.add(task)
    task.add_done_callback(_indexers.discard)
    log.info("edge resolver for clients on %s:%d", listen.rpartition(":")[0], port)
    return server, port


def indexed(resolver: Callable[[], Resolver | None]) -> bool:
    """The resolver of the moment has indexed the mesh at least once."""
    r = resolver()
    return r is not None and r.reindexed > 0


def replica_on(store_url: str, tls: TlsFiles | None, mesh: str | None, replica: str,
               address: str, ttl_s: float, catalogue: Mapping[str, Region],
               make_loop: Callable[[Store], RecomputeLoop]) -> Replica:
    """This process as replica `replica` of the controllers on etcd at `store_url`."""
    try:
        etcd = Etcd(endpoints_of(store_url), tls)
        keys = Keys(mesh or INSECURE_MESH)
    except ValueError as e:
        raise ValueError(f"--store: {e}") from None
    store = EtcdStore(etcd, keys, replica)
    leadership = Leadership(etcd, keys, replica, address, store, ttl_s)
    return Replica(leadership, lambda: make_loop(store), dict(catalogue), mesh, tls)
