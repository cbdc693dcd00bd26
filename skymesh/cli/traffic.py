"""Test streams over the SDK, for `skymesh pub`, `skymesh sub` and `skymesh demo`: media
frames that carry their sequence number and send time, so a subscriber measures end-to-end
latency and loss, and numbered messages, so it checks order and duplicates."""

from __future__ import annotations

import asyncio
import secrets
import struct
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from sdk.client import Session, connect
from sdk.errors import ConnectionClosed, ControllerUnavailable, EdgeUnavailable
from sdk.resolve import Edge, find_edges
from skymesh import token
from skymesh.apps import AppsError, private_key_file, read_private_key
from skymesh.cli import admin, mesh
from skymesh.cli.drillstats import percentile

FRAME_MAGIC = b"SMF1"
_FRAME = struct.Struct("!4sQQ")  # magic, sequence, send time (ns since the epoch)
ALL_PRIVILEGES = ("join", "publish-media", "publish-messages")


def frame(seq: int, size: int) -> bytes:
    head = _FRAME.pack(FRAME_MAGIC, seq, time.time_ns())
    return head + bytes(max(0, size - len(head)))


def parse_frame(data: bytes) -> tuple[int, int] | None:
    """(sequence, send time in ns) of a test frame, None for anything else."""
    if len(data) < _FRAME.size or not data.startswith(FRAME_MAGIC):
        return None
    _, seq, sent = _FRAME.unpack_from(data)
    return seq, sent


# A handshake on loopback or within a region takes milliseconds; a node that died answers
# nothing (a QUIC client hears no refusal), so without a bound the client would wait out
# aioquic's 60 s idle timeout before trying a sibling.
HANDSHAKE_TIMEOUT_S = 3.0


def resolve_edges(controller: str, region: str, ca: str | None = None) -> list[Edge]:
    """The client edges of `region`'s relay nodes, least loaded first, as the controller
    knows them (sdk.resolve), with the local mesh's CA when none is given; AdminError if
    there is no usable edge."""
    try:
        edges = find_edges(controller, region, credentials=admin.credentials_in_use())
    except ControllerUnavailable as e:
        raise admin.NotAnswering(str(e)) from None
    except EdgeUnavailable as e:
        raise admin.AdminError(str(e)) from None
    if ca is None:
        state = mesh.running_state()
        if state is None or "ca" not in state:
            raise admin.AdminError("no CA certificate of the edges: pass --edge-ca FILE (the "
                                   "local mesh's is used when one is running)")
        ca = state["ca"]
    return [replace(e, ca=ca) for e in edges]


def resolve_edge(controller: str, region: str, ca: str | None = None) -> Edge:
    """The edge of `region` a client tries first (`resolve_edges`)."""
    return resolve_edges(controller, region, ca)[0]


async def connect_edges(stack: AsyncExitStack, edges: Sequence[Edge], token: str,
                        channel: str, handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
                        say: Callable[[str], None] | None = None,
                        e2ee_key: bytes | None = None) -> tuple[Session, Edge]:
    """A session (closed with `stack`) to the first of `edges` whose handshake completes
    within `handshake_timeout`: a node that died since the controller listed it, or that
    refuses the connection, is passed over for the next, its sibling. Joining is the
    caller's: a refusal of the token is the same at every node and is not retried.
    ConnectionClosed when none answers."""
    failed = []
    for e in edges:
        try:
            session = await asyncio.wait_for(
                stack.enter_async_context(connect(e.host, e.port, token, channel, e.ca,
                                                  e2ee_key=e2ee_key)),
                handshake_timeout)
        except (TimeoutError, ConnectionClosed, OSError) as err:
            why = f"no handshake in {handshake_timeout:g} s" if isinstance(err, TimeoutError) \
                else str(err)
            failed.append(f"{_edge_name(e)}: {why}")
            if say is not None and len(failed) < len(edges):
                say(f"edge {_edge_name(e)} did not answer ({why}); trying the next node")
            continue
        return session, e
    raise ConnectionClosed(0, "no edge answered: " + "; ".join(failed) if failed
                           else "no edge to connect to")


def _edge_name(e: Edge) -> str:
    where = f"{e.host}:{e.port}"
    return f"{e.region}/{e.node} ({where})" if e.node else f"{e.region} ({where})"


LOCAL_EDGE_NAME = "localhost"  # the local mesh's edges' certificate names it


@dataclass(frozen=True)
class Resolving:
    """How the command-line clients find their edges: the resolvers (the first to answer),
    the CA their TLS is checked against (None: plaintext, resolvers run --insecure), and the
    CA of the edges' certificates."""

    resolvers: tuple[str, ...]
    resolver_ca: bytes | None
    edge_ca: str
    edge_name: str = LOCAL_EDGE_NAME  # the name the edges' certificates are checked for


def add_resolving_arguments(p) -> None:
    """--resolver, --resolver-ca, --client-ip and --edge-ca, for the commands whose clients
    find their edge through the resolvers."""
    p.add_argument("--resolver", metavar="HOST:PORT[,...]",
                   help="the edge resolvers to ask, the first to answer wins (default: the "
                   "local mesh's)")
    p.add_argument("--resolver-ca", dest="resolver_ca", type=Path, metavar="PEM",
                   help="CA bundle the resolvers' certificates are checked with (default: "
                   "the local mesh's)")
    p.add_argument("--client-ip", dest="client_ip", default="", metavar="IP",
                   help="place the client at this public address (the resolver's GeoIP "
                   "database decides where that is; default: where the resolver sees it)")
    p.add_argument("--edge-ca", dest="edge_ca", metavar="PEM",
                   help="CA certificate of the edges (default: the local mesh's)")
    p.add_argument("--edge-name", dest="edge_name", default=LOCAL_EDGE_NAME, metavar="NAME",
                   help="the name the edges' certificates are checked for: edge.DOMAIN in a "
                   "deployment (`skymesh certs issue --for-catalogue`; default: "
                   "%(default)s, the local mesh's)")


def resolving(resolver: str | None = None, resolver_ca: Path | None = None,
              edge_ca: str | None = None, edge_name: str = LOCAL_EDGE_NAME) -> Resolving:
    """The resolvers and CAs given, else the local mesh's; AdminError naming what is
    missing."""
    state = mesh.running_state() or {}
    resolvers = tuple(x.strip() for x in (resolver or state.get("resolvers", "")).split(",")
                      if x.strip())
    if not resolvers:
        raise admin.AdminError("no edge resolver to ask: pass --resolver HOST:PORT (or start "
                               "the local mesh, whose controllers serve one)")
    ca_bytes = None
    if not state.get("insecure") or resolver_ca is not None:
        ca_path = resolver_ca or (Path(state["mesh_ca"]) if state.get("mesh_ca") else None)
        if ca_path is None:
            raise admin.AdminError("no CA to check the resolvers' certificates with: pass "
                                   "--resolver-ca FILE")
        try:
            ca_bytes = Path(ca_path).read_bytes()
        except OSError as e:
            raise admin.AdminError(f"--resolver-ca {ca_path}: {e.strerror or e}") from None
    edges = edge_ca or state.get("ca")
    if not edges:
        raise admin.AdminError("no CA certificate of the edges: pass --edge-ca FILE (the "
                               "local mesh's is used when one is running)")
    return Resolving(resolvers, ca_bytes, str(edges), edge_name)


async def resolved_session(stack: AsyncExitStack, how: Resolving, token: str, channel: str, *,
                           region: str = "", address: str = "") -> Session:
    """A session (closed with `stack`) at the edge the resolvers offer a client at `address`
    (of `region` only, when given) and the handshake race picks; it moves to another edge by
    itself when that one is lost. Joining is the caller's."""
    return await stack.enter_async_context(connect(
        token=token, channel=channel, ca_file=how.edge_ca, server_name=how.edge_name,
        resolvers=how.resolvers,
        resolver_ca=how.resolver_ca, address=address, region=region))


def describe_moves(session: Session) -> list[dict]:
    """The session's moves to other edges, for --json and progress lines."""
    return [{"from": m.from_edge, "to": m.to_edge, "reason": m.reason, "took_s": m.took_s,
             "media_gap_s": m.media_gap_s} for m in session.migrations]


def local_token(app: str, channel: str, uid: str, zone: str, ttl_s: int = 3600,
                privileges: tuple[str, ...] = ALL_PRIVILEGES) -> str:
    """A token signed with the local mesh's private key for `app` (made by `skymesh up`
    beside its apps file)."""
    state = mesh.running_state()
    if state is None or "apps" not in state:
        raise admin.AdminError("no local mesh to take an app key from: pass --token")
    key_file = private_key_file(Path(state["apps"]), app)
    if not key_file.exists():
        raise admin.AdminError(f"the local mesh has no private key for app {app!r} "
                               f"({key_file}; apps: {state['apps']})")
    try:
        key = read_private_key(key_file)
    except AppsError as e:
        raise admin.AdminError(str(e)) from None
    return token.issue(app, key, channel, uid, zone, privileges, ttl_s)


def new_uid(role: str) -> str:
    return f"{role}-{secrets.token_hex(3)}"


@dataclass
class Received:
    """What a subscriber measured."""

    media: int = 0
    other_media: int = 0  # datagrams that are not test frames
    latencies_ms: list[float] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int = 0
    messages: int = 0
    out_of_order: int = 0
    duplicates: int = 0
    _last_message: dict[str, int] = field(default_factory=dict)

    def on_media(self, data: bytes, now_ns: int) -> None:
        parsed = parse_frame(data)
        if parsed is None:
            self.other_media += 1
            return
        seq, sent = parsed
        self.media += 1
        self.latencies_ms.append((now_ns - sent) / 1e6)
        if self.first_seq is None:
            self.first_seq = seq
        self.last_seq = max(self.last_seq, seq)

    def on_message(self, sender: str, mid: int) -> None:
        last = self._last_message.get(sender, 0)
        if mid == last:
            self.duplicates += 1
        elif mid < last:
            self.out_of_order += 1
        self._last_message[sender] = max(mid, last)
        self.messages += 1

    def summary(self) -> dict:
        expected = self.last_seq - self.first_seq + 1 if self.first_seq is not None else 0
        lat = self.latencies_ms
        return {"media_received": self.media, "media_expected": expected,
                "media_lost": max(0, expected - self.media),
                "latency_ms": {"p50": _round(percentile(lat, 50)),
                               "p99": _round(percentile(lat, 99)),
                               "max": _round(max(lat, default=None))},
                "messages_received": self.messages, "messages_out_of_order": self.out_of_order,
                "messages_duplicated": self.duplicates}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


async def receive(session: Session, into: Received, until: float) -> None:
    """Take media and messages from `session` into `into` until the monotonic time `until`."""

    async def media() -> None:
        async for data in session.media():
            into.on_media(data, time.time_ns())

    async def messages() -> None:
        async for m in session.messages():
            into.on_message(m.sender, m.id)

    tasks = [asyncio.ensure_future(media()), asyncio.ensure_future(messages())]
    try:
        done, _ = await asyncio.wait(tasks, timeout=max(0.0, until - time.monotonic()),
                                     return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()
    finally:
        for t in tasks:
            t.cancel()


async def publish(session: Session, until: float, rate: float = 50.0, size: int = 1000,
                  messages_per_s: float = 1.0,
                  progress: Callable[[dict], None] | None = None) -> dict:
    """Publish test frames at `rate` per second and a message every 1/messages_per_s s until
    the monotonic time `until`."""
    sent = messages = 0
    start = time.monotonic()
    next_message = start
    next_report = start + 1.0
    while (now := time.monotonic()) < until:
        session.publish_media(frame(sent + 1, size))
        sent += 1
        if messages_per_s > 0 and now >= next_message:
            messages += 1
            await session.send_message(f"message {messages} at {time.time():.3f}")
            next_message += 1.0 / messages_per_s
        if progress and now >= next_report:
            progress({"t_s": round(now - start), "media_sent": sent, "messages_sent": messages})
            next_report += 1.0
        await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
    return {"media_sent": sent, "messages_sent": messages}
