"""End-to-end reliable channel messages across the relay mesh: the origin relay's side of a
stream and the destination relay's side. Pure: time is passed in, sending is the caller's.

Each publisher session's messages form a stream, numbered 1, 2, 3, ... by its origin relay.
The origin sends each message to the regions subscribed at that moment (one datagram fanned
out along the routes) and keeps it until every one of them acknowledges it, retransmitting on
a timeout that backs off. A destination delivers a stream's messages in order and once, and
acknowledges cumulatively.

A region that joins a stream late starts at the sequence number it joined at, its `base`. The
origin marks copies to it with that base until the region first acknowledges; copies to
regions that have acknowledged carry base 0 ("continuing"), so they share one datagram.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReliableSettings:
    min_rto_s: float = 0.15
    max_rto_s: float = 2.0
    give_up_s: float = 30.0  # a message nobody acknowledges for this long is dropped
    window: int = 4096  # a destination buffers at most this far ahead of its next message
    gap_timeout_s: float = 35.0  # a destination skips a gap the origin gave up on


@dataclass(frozen=True)
class Copy:
    """One datagram to send: a message to `destinations`, marked with `base`."""

    seq: int
    base: int
    destinations: frozenset[str]
    body: bytes


@dataclass
class _Pending:
    body: bytes
    waiting: set[str]
    first_sent: float
    deadline: float
    retries: int = 0


@dataclass
class OutStream:
    """The origin's side of one publisher's stream."""

    settings: ReliableSettings = ReliableSettings()
    next_seq: int = 1
    base: dict[str, int] = field(default_factory=dict)  # destination -> first seq sent to it
    acked: dict[str, int] = field(default_factory=dict)  # destination -> cumulative ack
    pending: dict[int, _Pending] = field(default_factory=dict)  # by seq, ascending
    expired: int = 0  # (message, destination) pairs given up on

    def set_destinations(self, destinations: Iterable[str]) -> None:
        """Forget regions that are no longer subscribed; new ones join at the next send."""
        keep = set(destinations)
        for d in [d for d in self.base if d not in keep]:
            del self.base[d], self.acked[d]
            for seq in [s for s, p in self.pending.items() if d in p.waiting]:
                self._settle(seq, d)

    def send(self, body: bytes, destinations: Iterable[str], now: float,
             rto: Callable[[str], float]) -> list[Copy]:
        """Number a new message and return the copies to send now."""
        seq = self.next_seq
        self.next_seq += 1
        dests = set(destinations)
        self.set_destinations(dests)
        for d in dests:
            if d not in self.base:
                self.base[d], self.acked[d] = seq, seq - 1
        if not dests:
            return []
        self.pending[seq] = _Pending(body, set(dests), now, now + self._rto(dests, rto, 0))
        return self._copies(seq, body, dests)

    def on_ack(self, destination: str, cumulative: int) -> None:
        if destination not in self.base or cumulative <= self.acked[destination]:
            return
        self.acked[destination] = min(cumulative, self.next_seq - 1)
        for seq in [s for s in self.pending if s <= cumulative]:
            self._settle(seq, destination)

    def due(self, now: float, rto: Callable[[str], float]) -> list[Copy]:
        """Retransmissions due at `now`; gives up on messages older than give_up_s."""
        out: list[Copy] = []
        for seq, p in list(self.pending.items()):
            if now < p.deadline:
                continue
            if now - p.first_sent >= self.settings.give_up_s:
                self.expired += len(p.waiting)
                del self.pending[seq]
                continue
            p.retries += 1
            p.deadline = now + self._rto(p.waiting, rto, p.retries)
            out.extend(self._copies(seq, p.body, p.waiting))
        return out

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self.pending.values()), default=None)

    def _settle(self, seq: int, destination: str) -> None:
        p = self.pending[seq]
        p.waiting.discard(destination)
        if not p.waiting:
            del self.pending[seq]

    def _rto(self, dests: Iterable[str], rto: Callable[[str], float], retries: int) -> float:
        base = max((rto(d) for d in dests), default=0.0)
        s = self.settings
        return min(max(base, s.min_rto_s) * 2**retries, s.max_rto_s)

    def _copies(self, seq: int, body: bytes, dests: Iterable[str]) -> list[Copy]:
        groups: dict[int, set[str]] = {}
        for d in dests:
            base = 0 if self.acked[d] >= self.base[d] else self.base[d]
            groups.setdefault(base, set()).add(d)
        return [Copy(seq, base, frozenset(ds), body) for base, ds in sorted(groups.items())]


@dataclass
class InStream:
    """A destination's side of one publisher's stream."""

    settings: ReliableSettings = ReliableSettings()
    next_seq: int | None = None  # None: nothing received yet
    buffer: dict[int, bytes] = field(default_factory=dict)
    gap_since: float | None = None  # when the oldest gap opened
    duplicates: int = 0
    skipped: int = 0

    def receive(self, seq: int, base: int, body: bytes, now: float) -> list[tuple[int, bytes]]:
        """Accept one copy; returns the messages now deliverable, in order."""
        if self.next_seq is None:
            self.next_seq = base or seq
        elif base > self.next_seq:
            # the origin restarted us at `base`: what lies before it will never come
            self.buffer = {s: b for s, b in self.buffer.items() if s >= base}
            self.next_seq = base
            self.gap_since = now if self.buffer else None  # any gap left is a new one
        if seq < self.next_seq or seq in self.buffer:
            self.duplicates += 1
            return []
        if seq >= self.next_seq + self.settings.window:
            return []  # too far ahead: the origin retransmits it later
        self.buffer[seq] = body
        return self._drain(now)

    @property
    def cumulative(self) -> int:
        """The acknowledgement to send: every message up to this one was delivered."""
        return (self.next_seq or 1) - 1

    def expire(self, now: float) -> list[tuple[int, bytes]]:
        """Skip a gap that stayed open past gap_timeout_s (its origin gave up on it)."""
        if self.gap_since is None or now - self.gap_since < self.settings.gap_timeout_s:
            return []
        if not self.buffer:
            self.gap_since = None
            return []
        first = min(self.buffer)
        self.skipped += first - self.next_seq
        self.next_seq = first
        return self._drain(now)

    def _drain(self, now: float) -> list[tuple[int, bytes]]:
        out = []
        while self.next_seq in self.buffer:
            out.append((self.next_seq, self.buffer.pop(self.next_seq)))
            self.next_seq += 1
        if not self.buffer:
            self.gap_since = None
        elif out or self.gap_since is None:
            self.gap_since = now
        return out
