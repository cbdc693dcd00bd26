"""How a relay's datagrams reach other relays: one UDP socket (skymesh.net.udpio.BatchedUDP)
behind a small seam, and the two things a local mesh or a drill puts in front of it, as
wrappers: the emulated WAN (delay, jitter and loss per destination region, because one machine
has no WAN) and chaos (all traffic with some peers dropped, both ways, until the drill ends).

Without an emulated WAN the fabric's fast path does not come through here at all: it is
handed the socket's own `send` and `send_run` (see RelayNode.start_udp), because a call more
per datagram is a measurable share of its work.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from skymesh.wan import WanLink

Addr = tuple[str, int]
Buffer = bytes | bytearray | memoryview


class Socket(Protocol):
    """The UDP socket as the relay uses it."""

    blocked: frozenset[Addr]  # dropped to and from, at the socket (drills)

    def send(self, data: Buffer, addr: Addr) -> None: ...

    def send_run(self, buf: Buffer, segment: int, addr: Addr) -> None: ...


class Transport(Protocol):
    """Where a datagram for the relay of `region` at `addr` goes out. The region is what the
    emulated WAN needs: its links are between regions, and a probe is answered to whatever
    address it came from, listed or not."""

    def send(self, data: Buffer, addr: Addr, region: str) -> None: ...


class Direct:
    """A real network: datagrams leave at once."""

    def __init__(self, socket: Socket | None = None) -> None:
        self.socket = socket  # none until the relay has bound it

    def send(self, data: Buffer, addr: Addr, region: str) -> None:
        self.socket.send(data, addr)


class EmulatedWan:
    """The wide-area network of a local mesh, in the send path: each datagram leaves after
    its link's one-way delay (with uniform jitter), or is lost at the link's rate, or is
    dropped when the model has no link to that region. Lost and dropped datagrams are counted
    as `wan_dropped`. `call_later(delay_s, function, *args)` is the event loop's."""

    def __init__(self, links: Mapping[str, WanLink], counters: Counter[str], rng: random.Random,
                 call_later: Callable[..., object], socket: Socket | None = None) -> None:
        self.links = links
        self.counters = counters
        self.rng = rng
        self.call_later = call_later
        self.socket = socket

    def send(self, data: Buffer, addr: Addr, region: str) -> None:
        link = self.links.get(region)
        if link is None or (link.loss and self.rng.random() < link.loss):
            self.counters["wan_dropped"] += 1
            return
        delay = max(0.0, link.delay_ms + self.rng.uniform(-link.jitter_ms, link.jitter_ms))
        self.call_later(delay / 1000, self.socket.send, data, addr)


def peer_sender(transport: Transport, peers: Mapping[str, Addr],
                counters: Counter[str]) -> Callable[[str, bytes], bool]:
    """The fabric's `send(region, datagram) -> sent?`: to the peer's address as `peers` has
    it now (a live mapping); a region without one is counted as dropped."""
    send = transport.send

    def send_to_peer(region: str, data: bytes) -> bool:
        addr = peers.get(region)
        if addr is None:
            counters["dropped.no-peer"] += 1
            return False
        send(data, addr, region)
        return True

    return send_to_peer


@dataclass(frozen=True)
class ChaosPlan:
    """A drill's fault: traffic with these peers (or all of them) dropped, both ways."""

    drop_peers: tuple[str, ...] = ()
    drop_all: bool = False
    until_unix_s: float = 0.0  # the fault ends by itself then; 0: when another plan comes

    @property
    def active(self) -> bool:
        return self.drop_all or bool(self.drop_peers)

    def describe(self) -> str:
        """What is dropped, as the relay's event and log say it."""
        if not self.active:
            return "nothing"
        return "every peer" if self.drop_all else ", ".join(self.drop_peers)


class Chaos:
    """Chaos around the socket. The socket itself drops what goes to or comes from the
    blocked addresses, so that the fast path pays one check on an empty set rather than a
    call; this keeps that set following the plan and the peers' addresses. A region may run
    several relay nodes: a region dropped is dropped with every node of it the relay knows
    (`nodes`: their addresses by region, besides the one it sends to), since another relay
    may send from any of them."""

    def __init__(self) -> None:
        self.plan: ChaosPlan | None = None
        self.socket: Socket | None = None  # none until the relay has bound it
        self.nodes: Mapping[str, Collection[Addr]] = {}

    def attach(self, socket: Socket, peers: Mapping[str, Addr]) -> None:
        self.socket = socket
        self.apply(peers)

    def set(self, plan: ChaosPlan, peers: Mapping[str, Addr]) -> None:
        self.plan = plan if plan.active else None
        self.apply(peers)

    def expired(self, now_unix_s: float) -> bool:
        """Whether the plan in force has an end and it has come."""
        return (self.plan is not None and bool(self.plan.until_unix_s)
                and now_unix_s >= self.plan.until_unix_s)

    def apply(self, peers: Mapping[str, Addr],
              nodes: Mapping[str, Collection[Addr]] | None = None) -> None:
        """Block the addresses the plan's peers have now (`nodes`: every node's address by
        region from now on; None: as before)."""
        if nodes is not None:
            self.nodes = nodes
        if self.socket is None:
            return
        plan = self.plan
        if plan is None:
            self.socket.blocked = frozenset()
        else:
            regions = set(peers) | set(self.nodes) if plan.drop_all else set(plan.drop_peers)
            blocked = {peers[r] for r in regions if r in peers}
            blocked.update(a for r in regions for a in self.nodes.get(r, ()))
            self.socket.blocked = frozenset(blocked)
