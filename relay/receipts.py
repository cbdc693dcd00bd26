"""Read receipts, no I/O: which messages the channel's users have read.

A session says it has read a publisher's messages up to an id (`edgeproto.read`, naming the
messages' stream as it received them, `relay:P`; ids are the publisher's, P's, across its
moves). In a small channel (SMALL_CHANNEL users at most, relay/presence.py) each receipt goes
to every member: the edge publishes it on its own receipts stream (`RECEIPTS_STREAM`), every
edge delivering the channel hands it to its sessions. In a large one receipts are counted
instead: each edge keeps the last id each of its users read of each publisher and announces,
at most every AGGREGATE_S, how many read up to which id; the publisher's edge adds up every
edge's counts and tells the publisher how many have read each of its messages (at least).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field

from skymesh import nodes

ChannelKey = tuple[str, str]

RECEIPTS_STREAM = "receipts"  # the edge's receipts stream ("relay:receipts" in the fabric)
AGGREGATE_S = 1.0
MAX_PUBLISHERS = 64  # per channel: the publishers whose reads are counted (most recent)
MAX_LEVELS = 32  # distinct ids a count announcement names per publisher (the highest)


def publisher(stream: str) -> str:
    """The publisher a stream name is of: P of `relay:P`."""
    return stream.rpartition(":")[2]


def receipt_body(uid: str, of: str, upto: int) -> str:
    return json.dumps({"uid": uid, "of": of, "upto": upto}, separators=(",", ":"))


def counts_body(counts: dict[str, list[tuple[int, int]]]) -> str:
    return json.dumps({"reads": {p: [list(x) for x in levels] for p, levels in counts.items()}},
                      separators=(",", ":"))


@dataclass
class ChannelReads:
    # publisher -> uid -> the highest id the user read (this edge's users)
    local: OrderedDict = field(default_factory=OrderedDict)
    # origin edge -> publisher -> [(id, readers who read up to it)]
    remote: dict[str, dict[str, list[tuple[int, int]]]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)  # publishers whose local counts changed
    changed: set[str] = field(default_factory=set)  # publishers whose totals changed
    announced_at: float = float("-inf")


class Receipts:
    def __init__(self, here: str) -> None:
        self.here = here
        self.channels: dict[ChannelKey, ChannelReads] = {}

    def read(self, key: ChannelKey, uid: str, of: str, upto: int, counted: bool) -> bool:
        """User `uid` here read publisher `of`'s messages up to id `upto`: whether that is
        news (a lower or equal id than the user said before is not). `counted`: the channel
        is large, its reads are announced as counts."""
        c = self.channels.setdefault(key, ChannelReads())
        readers = c.local.get(of)
        if readers is None:
            readers = c.local[of] = {}
            while len(c.local) > MAX_PUBLISHERS:
                c.local.popitem(last=False)
        c.local.move_to_end(of)
        if readers.get(uid, -1) >= upto:
            return False
        readers[uid] = upto
        if counted:
            c.dirty.add(of)
            c.changed.add(of)
        return True

    def due(self, now: float) -> list[tuple[ChannelKey, str]]:
        """Count announcements to publish now: the publishers whose counts here changed,
        at most every AGGREGATE_S per channel."""
        out = []
        for key, c in self.channels.items():
            if not c.dirty or now - c.announced_at < AGGREGATE_S:
                continue
            out.append((key, counts_body({p: self._levels(c.local.get(p, {}))
                                          for p in sorted(c.dirty)})))
            c.dirty.clear()
            c.announced_at = now
        return out

    @staticmethod
    def _levels(readers: dict[str, int]) -> list[tuple[int, int]]:
        """How many of `readers` read each id they stopped at, the highest MAX_LEVELS ids
        (the rest counted at the lowest of those)."""
        by_id: dict[int, int] = {}
        for upto in readers.values():
            by_id[upto] = by_id.get(upto, 0) + 1
        levels = sorted(by_id.items(), reverse=True)
        if len(levels) > MAX_LEVELS:
            rest = sum(n for _, n in levels[MAX_LEVELS - 1:])
            levels = levels[:MAX_LEVELS - 1] + [(levels[MAX_LEVELS - 1][0], rest)]
        return levels

    def heard(self, key: ChannelKey, origin: str, body: str) -> tuple[str, str, int] | None:
        """Another edge's receipt (returned as (uid, publisher, upto), for the sessions) or
        count announcement (kept; None); None too for what is neither."""
        try:
            obj = json.loads(body)
        except ValueError:
            return None
        if not isinstance(obj, dict) or origin == self.here:
            return None
        if "reads" in obj:
            self._counts(key, origin, obj["reads"])
            return None
        uid, of, upto = obj.get("uid"), obj.get("of"), obj.get("upto")
        if isinstance(uid, str) and isinstance(of, str) and isinstance(upto, int) \
                and not isinstance(upto, bool):
            return uid, of, upto
        return None

    def _counts(self, key: ChannelKey, origin: str, reads: object) -> None:
        if not isinstance(reads, dict):
            return
        c = self.channels.setdefault(key, ChannelReads())
        mine = c.remote.setdefault(origin, {})
        for of, levels in list(reads.items())[:MAX_PUBLISHERS]:
            if not isinstance(of, str) or not isinstance(levels, list):
                continue
            clean = [(int(x[0]), int(x[1])) for x in levels[:MAX_LEVELS]
                     if isinstance(x, list) and len(x) == 2
                     and all(isinstance(v, int) and not isinstance(v, bool) for v in x)]
            mine[of] = clean
            c.changed.add(of)

    def totals(self, key: ChannelKey, of: str) -> list[tuple[int, int]]:
        """For publisher `of`'s messages: (id, how many users, all edges told, read at least
        up to it), highest id first."""
        c = self.channels.get(key)
        if c is None:
            return []
        levels: dict[int, int] = {}
        for upto, n in self._levels(c.local.get(of, {})):
            levels[upto] = levels.get(upto, 0) + n
        for counts in c.remote.values():
            for upto, n in counts.get(of, ()):
                levels[upto] = levels.get(upto, 0) + n
        out, running = [], 0
        for upto in sorted(levels, reverse=True):
            running += levels[upto]
            out.append((upto, running))
        return out

    def changes(self) -> list[tuple[ChannelKey, str]]:
        """(channel, publisher) whose totals changed since the last call."""
        out = []
        for key, c in self.channels.items():
            out += [(key, of) for of in sorted(c.changed)]
            c.changed.clear()
        return out

    def members_are(self, key: ChannelKey, names: frozenset[str]) -> None:
        """Forget the counts of edges the controller no longer lists for the channel."""
        c = self.channels.get(key)
        if c is None:
            return
        for origin in [o for o in c.remote if o not in names
                       and nodes.region_of(o) not in names]:
            for of in c.remote.pop(origin):
                c.changed.add(of)
