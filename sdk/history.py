"""A channel's history as the SDK hands it on: pages of past messages that the edge keeps
(skymesh/edgeproto.py, History), put together from the lines they come in."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Past:
    """A message of the channel's history: `n` its number in the edge's history (pages count
    back from it), `at` when the edge delivered it (Unix seconds)."""

    uid: str
    mid: int
    body: str
    at: float
    n: int
    stream: str | None = None
    seq: int | None = None


@dataclass
class HistoryPage:
    """Past messages, oldest first; `more`: the edge keeps older ones."""

    messages: list[Past] = field(default_factory=list)
    more: bool = False

    @property
    def oldest(self) -> int | None:
        """The number to ask for the page before this one with (None: empty)."""
        return self.messages[0].n if self.messages else None


def past(obj: object) -> Past | None:
    """One message of a page line (None when it is not one: skipped)."""
    if not isinstance(obj, dict):
        return None
    uid, mid, body, at, n = (obj.get(k) for k in ("from", "id", "body", "at", "n"))
    if not (isinstance(uid, str) and isinstance(mid, int) and isinstance(body, str)
            and isinstance(at, int | float) and isinstance(n, int)):
        return None
    stream, seq = obj.get("stream"), obj.get("seq")
    stream = stream if isinstance(stream, str) else None
    seq = seq if stream is not None and isinstance(seq, int) else None
    return Past(uid, mid, body, float(at), n, stream, seq)


class Pages:
    """Pages being received, by request number, and those complete."""

    def __init__(self) -> None:
        self.partial: dict[int, HistoryPage] = {}
        self.done: dict[int, HistoryPage] = {}

    def take(self, msg: dict) -> None:
        """One "history" line of the edge."""
        request = msg.get("request")
        if not isinstance(request, int):
            return
        page = self.partial.setdefault(request, HistoryPage())
        for obj in msg.get("messages") or ():
            if (p := past(obj)) is not None:
                page.messages.append(p)
        if msg.get("last"):
            page.more = bool(msg.get("more"))
            self.done[request] = self.partial.pop(request)
