"""`skymesh dashboard`: a live map of the mesh in the browser.

A client of the controller's admin API like `skymesh admin` (so it may do what its
certificate may: a `viewer` one suffices), and a small HTTP server on the event loop
(standard library only) that serves the page, its static files and the world outline
shipped in `static/dashboard/`, the JSON the page reads (`/api/state`, `/api/path`,
`/api/zones`) and a server-sent event stream (`/events`) of the map's changes and the
controller's new events, polled every half second. What the page shows is made by the pure
core `skymesh/cli/dashview.py`.

Inside another process (the controller's, say), `Dashboard(Source(...)).start(host, port)` on
that process's event loop serves the same page from whatever functions answer the admin
queries (plain functions run on a worker thread, coroutine functions on the loop);
`ControllerClient` asks a controller for them on that loop. Given the process's TLS files,
the page is served over HTTPS to browsers presenting an admin certificate of the mesh (a
viewer's or an operator's): the roles the admin API obeys."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import inspect
import ipaddress
import json
import logging
import os
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import grpc
from cryptography import x509

from skymesh import certs
from skymesh.cli import admin, mesh
from skymesh.cli.common import fail
from skymesh.cli.dashview import DrillTimeline, EventFeed, MeshView, path_view, same_state
from skymesh.identity import Identity, stranger
from skymesh.net.tls import TlsError, TlsFiles, channel_credentials
from skymesh.v1 import admin_pb2, admin_pb2_grpc

log = logging.getLogger("skymesh.dashboard")

STATIC = Path(__file__).resolve().parent / "static" / "dashboard"
FILES = {  # what is served, by name: nothing else is read from the disk
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "world.json": "application/json",
    "LICENSE-world.txt": "text/plain; charset=utf-8",
}
DEFAULT_PORT = 8470
POLL_S = 0.5
HEARTBEAT_S = 15.0
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
     "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
TLS_HANDSHAKE_S = 10.0
TLS_RELOAD_S = 5.0
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 502: "Bad Gateway", 503: "Service Unavailable"}


class Refused(Exception):
    """A query the controller refused (unknown region or zone, say): the page's mistake."""


class Unavailable(Exception):
    """The controller did not answer."""


@dataclass
class Source:
    """Where the dashboard's data comes from: functions answering as `skymesh/cli/admin.py`'s
    do (`status()`, `regions()`, `links()`, `events(since_unix_s)`, `path(src, dst, zone)`,
    `zones()`); each may be a plain function (run on a worker thread) or a coroutine
    function (awaited on the loop). They raise Refused or Unavailable, or admin's errors."""

    status: Callable
    regions: Callable
    links: Callable
    events: Callable
    path: Callable
    zones: Callable


def admin_source(address: str) -> Source:
    """The controller at `address`, through the admin client and its credentials."""
    return Source(status=functools.partial(admin.status, address),
                  regions=functools.partial(admin.regions, address),
                  links=functools.partial(admin.links, address),
                  events=functools.partial(admin.events, address),
                  path=functools.partial(admin.path, address),
                  zones=functools.partial(admin.zones, address))


# what a controller's refusal means to the page: its question was wrong (an unknown region or
# zone); any other failure is the controller's, shown as unavailable
QUESTION_REFUSED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.FAILED_PRECONDITION)


class ControllerClient:
    """The admin queries the dashboard asks, on the running event loop (grpc.aio), of the
    controller at `address`: with `tls` (re-read when its files change, so rotation needs no
    restart) and `metadata` on every call; `name` the host name its certificate is checked
    for, when `address` does not say it."""

    def __init__(self, address: str, tls: TlsFiles | None, metadata: tuple = (),
                 name: str | None = None, timeout_s: float = 5.0) -> None:
        self.address, self.tls, self.metadata, self.name = address, tls, metadata, name
        self.timeout_s = timeout_s
        self.channel: grpc.aio.Channel | None = None
        self.stamp: tuple | None = None

    def source(self) -> Source:
        return Source(status=self.status, regions=self.regions, links=self.links,
                      events=self.events, path=self.path, zones=self.zones)

    async def stub(self) -> admin_pb2_grpc.AdminStub:
        stamp = self.tls.stamp() if self.tls is not None else None
        if self.channel is None or stamp != self.stamp:
            if self.channel is not None:
                await self.channel.close()
            options = [("grpc.ssl_target_name_override", self.name)] if self.name else []
            try:
                self.channel = grpc.aio.insecure_channel(self.address) if self.tls is None \
                    else grpc.aio.secure_channel(self.address, channel_credentials(self.tls),
                                                 options)
            except TlsError as e:
                raise Unavailable(f"the dashboard's certificate: {e}") from None
            self.stamp = stamp
        return admin_pb2_grpc.AdminStub(self.channel)

    async def call(self, method: str, request):
        stub = await self.stub()
        try:
            return await getattr(stub, method)(request, timeout=self.timeout_s,
                                               metadata=self.metadata)
        except grpc.aio.AioRpcError as e:
            if e.code() in QUESTION_REFUSED:
                raise Refused(e.details()) from None
            raise Unavailable(f"controller {self.address}: {e.details()} "
                              f"({e.code().name})") from None

    async def status(self) -> dict:
        return admin.status_of(await self.call("Status", admin_pb2.StatusRequest()),
                               self.address)

    async def regions(self) -> list[dict]:
        return admin.regions_of(await self.call("Regions", admin_pb2.RegionsRequest()))

    async def links(self) -> list[dict]:
        return admin.links_of(await self.call("Links", admin_pb2.LinksRequest()))

    async def events(self, since: float) -> list[dict]:
        return admin.events_of(await self.call(
            "Events", admin_pb2.EventsRequest(since_unix_s=since)))

    async def path(self, src: str, dst: str, zone: str) -> dict:
        return admin.path_of(await self.call(
            "Path", admin_pb2.PathRequest(src=src, dst=dst, zone=zone)))

    async def zones(self) -> dict:
        return admin.zones_of(await self.call("Zones", admin_pb2.ZonesRequest()))

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()


def may_look(who: Identity | None, mesh_name: str) -> str:
    """Why a browser's verified certificate may not see the page ("" when it may): it takes
    an admin certificate of the mesh, a viewer's or an operator's."""
    if why := stranger(who, mesh_name):
        return why
    if who.kind != "admin":
        return f"{who} is a {who.kind}: the dashboard is for admin certificates"
    if not who.may("read"):
        return f"{who} may not read the mesh"
    return ""


class ServerTls:
    """The dashboard's HTTPS: the process's certificate, clients verified against the mesh's
    CAs and required. Rotation without restart: `refresh()` (every TLS_RELOAD_S) loads
    changed files into the same context, which the next handshake uses (a CA rotation adds
    the new CAs beside the old until the process restarts)."""

    def __init__(self, files: TlsFiles, mesh_name: str) -> None:
        self.files, self.mesh = files, mesh_name
        try:
            files.read()  # names the file that cannot be used
            self.stamp = files.stamp()
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.minimum_version = ssl.TLSVersion.TLSv1_2
            self.context.load_cert_chain(files.cert, files.key)
            self.context.load_verify_locations(files.ca)
            self.context.verify_mode = ssl.CERT_REQUIRED
        except (ssl.SSLError, OSError) as e:
            raise TlsError(f"{files.cert}: {e}") from None

    def refresh(self) -> bool:
        """Load the files into the context if they changed; whether it did."""
        stamp = self.files.stamp()
        if stamp == self.stamp:
            return False
        try:
            self.files.read()
            self.context.load_cert_chain(self.files.cert, self.files.key)
            self.context.load_verify_locations(self.files.ca)
        except (TlsError, ssl.SSLError, OSError) as e:  # a half-written rotation, say
            log.error("dashboard: keeping the previous TLS files: %s", e)
            return False
        self.stamp = stamp
        log.info("dashboard: TLS files reloaded from %s", self.files.cert)
        return True

    def refusal(self, writer: asyncio.StreamWriter) -> str:
        """Why the browser on this connection may not look ("": it may)."""
        obj = writer.get_extra_info("ssl_object")
        der = obj.getpeercert(binary_form=True) if obj is not None else None
        if not der:
            return "no client certificate"
        try:
            who = certs.identity_of(x509.load_der_x509_certificate(der))
        except (ValueError, certs.CertError):
            who = None
        return may_look(who, self.mesh)


async def ask(fn: Callable, *args):
    try:
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        return await asyncio.to_thread(fn, *args)
    except admin.NotAnswering as e:
        raise Unavailable(str(e)) from None
    except admin.AdminError as e:
        raise Refused(str(e)) from None


class Dashboard:
    """The poller (while a page listens, or when asked), the state it keeps, and the HTTP
    server."""

    def __init__(self, source: Source, poll_s: float = POLL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.source, self.poll_s, self.clock = source, poll_s, clock
        self.view, self.feed, self.drill = MeshView(), EventFeed(), DrillTimeline()
        self.state: dict | None = None
        self.error = ""
        self.listeners: set[asyncio.Queue] = set()
        self.wanted = asyncio.Event()
        self.lock = asyncio.Lock()
        self.server: asyncio.Server | None = None
        self.poller: asyncio.Task | None = None
        self.loopback_only = False
        self.url = ""
        self.tls: ServerTls | None = None
        self.closing: list[Callable] = []  # coroutine functions, awaited by close()
        self.reloader: asyncio.Task | None = None

    # -- polling ----------------------------------------------------------------------------

    async def poll(self) -> None:
        """One round of questions to the controller; tells the listeners what changed."""
        async with self.lock:
            now = self.clock()
            try:
                status, regions, links, events = await asyncio.gather(
                    ask(self.source.status), ask(self.source.regions),
                    ask(self.source.links), ask(self.source.events, self.feed.since(now)))
            except (Unavailable, Refused) as e:
                if str(e) != self.error:
                    self.error = str(e)
                    self.publish("problem", {"error": self.error})
                return
            if self.error:
                self.error = ""
                self.publish("problem", {"error": ""})
            new = self.feed.take(events, now)
            self.view.note_events(new)
            state = self.view.update(regions, links, status, now)
            if not same_state(state, self.state):
                self.publish("state", state)
            self.state = state
            for e in new:
                self.publish("event", e)
            if self.drill.take(new, now):
                self.publish("drill", self.drill.view())

    async def current(self) -> dict:
        """The latest state: polled now unless a poll is fresher than a poll interval."""
        if self.state is None or self.clock() - self.state["at"] > self.poll_s * 2:
            await self.poll()
        if self.state is None:
            raise Unavailable(self.error or "no answer from the controller yet")
        return self.state

    async def run_poller(self) -> None:
        while True:
            await self.wanted.wait()
            started = time.monotonic()
            try:
                await self.poll()
            except Exception as e:  # a bug must not end the stream of every page
                self.publish("problem", {"error": f"dashboard: {type(e).__name__}: {e}"})
            await asyncio.sleep(max(0.05, self.poll_s - (time.monotonic() - started)))

    def publish(self, kind: str, data) -> None:
        message = f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        for q in list(self.listeners):
            try:
                q.put_nowait(message)
            except asyncio.QueueFull:  # a page that does not read: it starts afresh
                self.listeners.discard(q)
                q.put_nowait(None) if not q.full() else None

    # -- serving ----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                    tls: ServerTls | None = None, shown_host: str | None = None) -> str:
        """Listen on host:port (0: a free port), over HTTPS for admin certificates when
        `tls` is given; returns the page's URL (with `shown_host`, the name browsers reach
        this host by, when given)."""
        self.tls = tls
        self.server = await asyncio.start_server(
            self.handle, host, port, limit=16 * 1024,
            ssl=tls.context if tls is not None else None,
            ssl_handshake_timeout=TLS_HANDSHAKE_S if tls is not None else None)
        if tls is not None:
            self.reloader = asyncio.create_task(self.reload_tls())
        sock = self.server.sockets[0].getsockname()
        self.loopback_only = is_loopback(host) and tls is None
        shown = shown_host or sock[0]
        shown = f"[{shown}]" if ":" in shown else shown
        self.url = f"{'https' if tls else 'http'}://{shown}:{sock[1]}/"
        self.poller = asyncio.create_task(self.run_poller())
        return self.url

    async def reload_tls(self) -> None:
        while True:
            await asyncio.sleep(TLS_RELOAD_S)
            self.tls.refresh()

    async def close(self) -> None:
        for task in (self.poller, self.reloader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for q in list(self.listeners):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
        for done in self.closing:
            with contextlib.suppress(Exception):
                await done()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            refusal = self.tls.refusal(writer) if self.tls is not None else ""
            request = await asyncio.wait_for(read_request(reader), 10)
            if request is None:
                return
            method, target, headers = request
            if refusal:
                return await respond(writer, 403, {"error": refusal}, head=method == "HEAD")
            await self.route(method, target, headers, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def route(self, method: str, target: str, headers: dict,
                    writer: asyncio.StreamWriter) -> None:
        if method not in ("GET", "HEAD"):
            return await respond(writer, 405, {"error": "only GET"}, head=False)
        head = method == "HEAD"
        if self.loopback_only and not loopback_host(headers.get("host", "")):
            # a page of another site that resolved its name to 127.0.0.1 (DNS rebinding)
            return await respond(writer, 403, {"error": "Host is not this machine"}, head=head)
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        name = url.path.lstrip("/") or "index.html"
        if url.path == "/events":
            return await self.stream(writer)
        if name.startswith("static/"):
            name = name.removeprefix("static/")
        if name in FILES:
            body = (STATIC / name).read_bytes()
            return await respond_bytes(writer, 200, FILES[name], body, head)
        try:
            if url.path == "/api/state":
                data = await self.current()
                data = {**data, "error": self.error}
            elif url.path == "/api/zones":
                data = await ask(self.source.zones)
            elif url.path == "/api/events":
                await self.current()
                data = {"events": list(self.feed.recent), "drill": self.drill.view()}
            elif url.path == "/api/path":
                data = await self.path(query.get("src", ""), query.get("dst", ""),
                                       query.get("zone") or "global")
            else:
                return await respond(writer, 404, {"error": f"no {url.path} here"}, head=head)
        except Refused as e:
            return await respond(writer, 400, {"error": str(e)}, head=head)
        except Unavailable as e:
            return await respond(writer, 503, {"error": str(e)}, head=head)
        await respond(writer, 200, data, head=head)

    async def path(self, src: str, dst: str, zone: str) -> dict:
        if not src or not dst:
            raise Refused("name two regions: ?src=A&dst=B[&zone=Z]")
        if src == dst:
            raise Refused("pick two different regions")
        primary = await ask(self.source.path, src, dst, zone)
        backup = None
        hop = primary.get("backup_next_hop")
        if primary["reachable"] and hop and hop != dst:
            try:
                backup = await ask(self.source.path, hop, dst, zone)
            except Refused:
                backup = None
        return path_view(primary, backup, self.view.links)

    async def stream(self, writer: asyncio.StreamWriter) -> None:
        """Server-sent events: the state, the recent events and the drill's timeline first,
        then every change as it is polled."""
        q: asyncio.Queue = asyncio.Queue(maxsize=256)
        self.listeners.add(q)
        self.wanted.set()
        try:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         + b"".join(f"{k}: {v}\r\n".encode() for k, v in SECURITY_HEADERS)
                         + b"Connection: keep-alive\r\n\r\nretry: 1000\n\n")
            await writer.drain()
            if self.state is not None:
                hello = {"state": self.state, "events": list(self.feed.recent),
                         "drill": self.drill.view(), "error": self.error}
                writer.write(f"event: hello\ndata: {json.dumps(hello)}\n\n".encode())
                await writer.drain()
            while True:
                try:
                    message = await asyncio.wait_for(q.get(), HEARTBEAT_S)
                except TimeoutError:
                    message = ": still here\n\n"
                if message is None:
                    return
                writer.write(message.encode())
                await writer.drain()
        finally:
            self.listeners.discard(q)
            if not self.listeners:
                self.wanted.clear()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict] | None:
    line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError("not HTTP")
    headers = {}
    for _ in range(100):
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    else:
        raise ValueError("too many headers")
    return parts[0], parts[1], headers


async def respond(writer: asyncio.StreamWriter, code: int, data, head: bool = False) -> None:
    body = json.dumps(data, separators=(",", ":")).encode()
    await respond_bytes(writer, code, "application/json", body, head)


async def respond_bytes(writer: asyncio.StreamWriter, code: int, kind: str, body: bytes,
                        head: bool = False) -> None:
    lines = [f"HTTP/1.1 {code} {REASONS.get(code, '')}", f"Content-Type: {kind}",
             f"Content-Length: {len(body)}", "Connection: close",
             *(f"{k}: {v}" for k, v in SECURITY_HEADERS)]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else body))
    await writer.drain()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_host(header: str) -> bool:
    """Whether a request's Host header names this machine's loopback (any port)."""
    host = header.rsplit("]", 1)[0].lstrip("[") if header.startswith("[") \
        else header.rpartition(":")[0] if header.count(":") == 1 else header
    return is_loopback(host)


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(DEFAULT_PORT)
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {text}: HOST:PORT with a port from 0 to 65535")
    return host, int(port)


# -- in the controller's process --------------------------------------------------------------

UNSPECIFIED = ("0.0.0.0", "::", "")


async def serve_in_controller(listen: str, controller_listen: str, port: int,
                              tls: TlsFiles | None, metadata: tuple = (),
                              advertise: str | None = None) -> Dashboard:
    """`skymesh controller --dashboard-listen`: the page on `listen`, over HTTPS for admin
    certificates of the mesh (plain HTTP when `tls` is None, --insecure). Its data comes from
    the controller's own admin API on its port `port` (a replica that does not lead relays
    it, as it does any admin call), asked with the controller's certificate on behalf of the
    identity in `metadata` (controller/callers.py). Raises ValueError (the address, the
    TLS files) and OSError (cannot listen)."""
    try:
        host, dash_port = parse_listen(listen)
    except ValueError as e:
        raise ValueError(str(e).replace("--listen", "--dashboard-listen")) from None
    own = controller_listen.rpartition(":")[0].strip("[]")
    ask_at = "127.0.0.1" if own in UNSPECIFIED else own
    try:
        names = certs.hosts_of(certs.load_cert(tls.cert)) if tls is not None else []
        server_tls = ServerTls(tls, tls.identity().mesh) if tls is not None else None
    except (certs.CertError, TlsError) as e:
        raise ValueError(f"the live map's TLS: {e}") from None
    client = ControllerClient(f"[{ask_at}]:{port}" if ":" in ask_at else f"{ask_at}:{port}",
                              tls, metadata, name=names[0] if names else None)
    shown = None
    if host in UNSPECIFIED:
        shown = (advertise.rpartition(":")[0].strip("[]") if advertise else
                 names[0] if names else None)
    dash = Dashboard(client.source())
    dash.closing.append(client.close)
    try:
        url = await dash.start(host, dash_port, server_tls, shown)
    except OSError as e:
        await client.close()
        raise OSError(f"cannot serve the live map on {listen} (--dashboard-listen): "
                      f"{e.strerror or e}") from None
    if tls is None and not is_loopback(host):
        log.warning("INSECURE: the live map is served in plain HTTP without authentication "
                    "(--insecure) on %s: whoever reaches it sees the mesh", url)
    else:
        log.info("live map on %s", url)
    return dash


# -- the local mesh's dashboard ---------------------------------------------------------------

url_file = mesh.dashboard_file  # where the local mesh's dashboard says its URL
running_url = mesh.dashboard_url


# -- the command --------------------------------------------------------------------------------

def add_parsers(sub) -> None:
    p = sub.add_parser("dashboard", help="a live map of the mesh in the browser",
                       description="Serve a web page with a live map of the mesh: every "
                       "region, its relays and state, the links by latency and state, the "
                       "path between two regions in a zone with its cost and backup, the "
                       "controller's events as they come and a drill's timeline. It reads "
                       "the controller's admin API with an admin certificate (a viewer's "
                       "suffices); the page has no login of its own, so it listens on "
                       "loopback unless told otherwise.")
    p.add_argument("--listen", default=f"127.0.0.1:{DEFAULT_PORT}", metavar="HOST:PORT",
                   help="where to serve the page (default: %(default)s; port 0: a free one)")
    p.add_argument("--controller", metavar="HOST:PORT",
                   help="controller address (default: the local mesh's)")
    p.add_argument("--poll", type=float, default=POLL_S, metavar="S",
                   help="seconds between questions to the controller while a page is open "
                   "(default: %(default)s)")
    p.add_argument("--json", action="store_true",
                   help='print {"url": ...} as JSON once listening')
    admin.add_client_arguments(p)
    p.set_defaults(run=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen(args.listen)
        address = admin.controller_address(args.controller)
    except (ValueError, admin.AdminError) as e:
        return fail(str(e))
    if not 0.05 <= args.poll <= 60:
        return fail("--poll takes 0.05 to 60 seconds")
    try:
        admin.credentials_in_use()
    except admin.AdminError as e:
        return fail(str(e))
    return asyncio.run(serve(address, host, port, args))


async def serve(address: str, host: str, port: int, args: argparse.Namespace) -> int:
    dash = Dashboard(admin_source(address), poll_s=args.poll)
    try:
        url = await dash.start(host, port)
    except OSError as e:
        return fail(f"cannot listen on {host}:{port}: {e.strerror or e}")
    local = args.controller is None
    if local:
        url_file().write_text(json.dumps({"url": url, "pid": os.getpid(),
                                          "controller": address}) + "\n")
    if not dash.loopback_only:
        print(f"skymesh: WARNING: the dashboard listens on {host}: the page has no login, so "
              "whoever reaches it sees what this certificate may read", file=sys.stderr)
    print(json.dumps({"url": url}) if args.json else
          f"dashboard of the controller at {address}: {url}  (Ctrl-C stops it)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await dash.close()
        if local:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(url_file().read_text()).get("pid") == os.getpid():
                    url_file().unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m skymesh.cli.dashboard`: the command on its own (as `skymesh dashboard`)."""
    p = argparse.ArgumentParser(prog="skymesh")
    add_parsers(p.add_subparsers())
    args = p.parse_args(["dashboard", *(sys.argv[1:] if argv is None else argv)])
    admin.configure(args)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
