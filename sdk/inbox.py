"""A session's received channel messages in order and once each, across edges. Pure: time
is passed in.

Each publisher's messages form a stream numbered 1, 2, 3, ... (`skymesh.edgeproto`: a
delivered message names its stream and number). The inbox hands a stream's messages on in
number order, drops repeats, and holds those that arrive past a gap until the gap fills: after
a move to another edge, the new edge sends what was missed again (asked for with the last
number delivered of each stream) while live messages already flow. A gap that stays open is
asked for again (`due`), then skipped and counted lost (`expire`). A message without a number
(one the edge could not number yet) is handed on as it comes, unless it is one a moved
publisher sent again (below).

A publisher that moves goes on under the same name at another relay ("relay:P", P its
session's) and sends again, with the same ids, what its old edge may not have passed on: of P
through another relay than before, only ids past the last handed on of P are taken.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

ASK_AGAIN_S = 0.5  # a gap still open this long is asked for again ...
GIVE_UP_S = 5.0  # ... and skipped after this long: the stream's relay no longer has it
MAX_STREAMS = 256  # streams remembered (the most recently heard); a resume names at most these


@dataclass(frozen=True)
class Message:
    sender: str
    id: int
    body: str
    stream: str | None = None  # the publisher's stream (None: not numbered)
    seq: int | None = None  # its number in the stream


class Inbox:
    def __init__(self, ask_again_s: float = ASK_AGAIN_S, give_up_s: float = GIVE_UP_S) -> None:
        self.ask_again_s = ask_again_s
        self.give_up_s = give_up_s
        self.ready: deque[Message] = deque()
        self.last: dict[str, int] = {}  # stream -> last number handed on (recent last)
        self.held: dict[str, dict[int, Message]] = {}  # stream -> past a gap, by number
        self.gap_since: dict[str, float] = {}
        self.asked: dict[str, float] = {}  # stream -> when its gap was last asked for
        self.duplicates = 0
        self.lost = 0  # numbers skipped over: gaps nobody filled
        self.publishers: dict[str, tuple[str, int]] = {}  # P -> (its relay, last id)

    def add(self, m: Message, now: float) -> None:
        s, seq = m.stream, m.seq
        if s is None:
            self.ready.append(m)
            return
        origin, _, publisher = s.rpartition(":")
        known = self.publishers.get(publisher)
        if known is not None and known[0] != origin and m.id <= known[1]:
            self.duplicates += 1  # sent again by a publisher that moved: delivered before
            return
        if seq is None:  # not numbered yet (the relays learning who subscribes): as it comes
            self._heard(publisher, origin, m.id)
            self.ready.append(m)
            return
        last = self.last.get(s)
        if last is None:  # first heard of: it starts where this session came in
            self._hand_on(s, m)
            return
        if seq <= last or seq in self.held.get(s, ()):
            self.duplicates += 1
            return
        if seq == last + 1:
            self._hand_on(s, m)
            self._drain(s, now)
            return
        self.held.setdefault(s, {})[seq] = m
        self.gap_since.setdefault(s, now)

    def positions(self) -> dict[str, int]:
        """The last number handed on of each stream remembered: what a join elsewhere
        resumes from."""
        return dict(self.last)

    def due(self, now: float) -> dict[str, int]:
        """Streams whose gap has been open ask_again_s since it opened or was last asked for,
        with their last number handed on: to ask the edge again ("resume")."""
        out = {}
        for s, since in self.gap_since.items():
            if now - max(since, self.asked.get(s, since)) >= self.ask_again_s:
                self.asked[s] = now
                out[s] = self.last[s]
        return out

    def expire(self, now: float) -> None:
        """Skip the gaps open longer than give_up_s: what is held after each is handed on."""
        for s in [s for s, since in self.gap_since.items() if now - since >= self.give_up_s]:
            held = self.held[s]
            first = min(held)
            self.lost += first - self.last[s] - 1
            self.last[s] = first - 1
            self._drain(s, now)

    @property
    def gaps(self) -> int:
        """Streams waiting for a gap to fill."""
        return len(self.gap_since)

    def _heard(self, publisher: str, origin: str, mid: int) -> None:
        known = self.publishers.pop(publisher, None)  # to the end: the most recently heard
        self.publishers[publisher] = (origin, max(mid, known[1]) if known else mid)
        if len(self.publishers) > MAX_STREAMS:
            del self.publishers[next(iter(self.publishers))]

    def _hand_on(self, s: str, m: Message) -> None:
        self.ready.append(m)
        origin, _, publisher = s.rpartition(":")
        self._heard(publisher, origin, m.id)
        self.last.pop(s, None)  # to the end: the most recently heard
        self.last[s] = m.seq  # type: ignore[assignment]
        if len(self.last) > MAX_STREAMS:
            oldest = next(iter(self.last))
            del self.last[oldest]
            self._forget_gap(oldest)

    def _drain(self, s: str, now: float) -> None:
        """Hand on what follows the last handed on; what is still held past a gap waits from
        `now` (something came through: the gap left is a new one)."""
        held = self.held.get(s)
        while held and self.last[s] + 1 in held:
            self._hand_on(s, held.pop(self.last[s] + 1))
        if held:
            self.gap_since[s] = now
            self.asked.pop(s, None)
        else:
            self._forget_gap(s)

    def _forget_gap(self, s: str) -> None:
        self.held.pop(s, None)
        self.gap_since.pop(s, None)
        self.asked.pop(s, None)
