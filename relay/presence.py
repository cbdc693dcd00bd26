"""Who is in a channel, no I/O: this edge's sessions, and what the other edges delivering the
channel announce of theirs.

Each edge announces, for every channel it has sessions in, how many distinct users it holds
and, while they are few (at most SMALL_CHANNEL), who they are. Announcements travel as
reliable messages of the edge's own system stream in the channel (`PRESENCE_STREAM`, a name
no client's publisher can take), so they reach exactly the edges that deliver the channel,
along the zone's routes. An edge announces a change within ANNOUNCE_S, and again every
REFRESH_S; an edge's announcement is forgotten when the controller no longer lists its relay
among the channel's members (the relay is gone), or when it has not been refreshed for
STALE_S.

What sessions see (`view`): the total of distinct users (summed over edges: a user joined
at two edges counts twice), the count per region, and, while the channel is small everywhere,
the members; and between two views, who joined and left which region.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from skymesh import nodes

ChannelKey = tuple[str, str]

PRESENCE_STREAM = "presence"  # the edge's system stream ("relay:presence" in the fabric)
SMALL_CHANNEL = 50  # distinct users at an edge up to which it names them
ANNOUNCE_S = 0.2  # a change is announced at most this long after it
REFRESH_S = 5.0  # and every channel again this often
STALE_S = 3 * REFRESH_S
MAX_BODY_MEMBERS = SMALL_CHANNEL


@dataclass
class Announced:
    """What one edge said of its sessions in a channel, and when it was heard."""

    count: int
    members: frozenset[str] | None  # None: too many to name
    heard_at: float


@dataclass
class ChannelPresence:
    local: Counter = field(default_factory=Counter)  # uid -> sessions here
    remote: dict[str, Announced] = field(default_factory=dict)  # by the edge's relay name
    changed_at: float | None = None  # a local change not announced yet, since then
    announced_at: float = float("-inf")
    joined: list[tuple[str, str]] = field(default_factory=list)  # (uid, region) since view
    left: list[tuple[str, str]] = field(default_factory=list)
    seen: bool = True  # what sessions were last shown is current
    listed: frozenset[str] = frozenset()  # the member relays, as the controller last said


def announcement(count: int, members: Iterable[str] | None) -> str:
    """The body of an edge's announcement."""
    body: dict = {"count": count}
    if members is not None:
        body["members"] = sorted(members)
    return json.dumps(body, separators=(",", ":"))


def parse_announcement(body: str) -> tuple[int, frozenset[str] | None] | None:
    """(count, members) of an announcement's body; None when it is not one (skipped)."""
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    count, members = obj.get("count"), obj.get("members")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        return None
    if members is None:
        return count, None
    if not isinstance(members, list) or len(members) > MAX_BODY_MEMBERS \
            or not all(isinstance(m, str) for m in members):
        return None
    return count, frozenset(members)


class Presence:
    """Every channel's presence at this edge (`here`: its relay's name)."""

    def __init__(self, here: str) -> None:
        self.here = here
        self.region = nodes.region_of(here)
        self.channels: dict[ChannelKey, ChannelPresence] = {}

    # -- this edge's sessions --------------------------------------------------------------

    def joined(self, key: ChannelKey, uid: str, now: float) -> None:
        c = self.channels.setdefault(key, ChannelPresence())
        c.local[uid] += 1
        if c.local[uid] == 1:
            self._changed(c, now)
            c.joined.append((uid, self.region))

    def left(self, key: ChannelKey, uid: str, now: float) -> None:
        c = self.channels.get(key)
        if c is None or not c.local[uid]:
            return
        c.local[uid] -= 1
        if not c.local[uid]:
            del c.local[uid]
            self._changed(c, now)
            c.left.append((uid, self.region))

    def _changed(self, c: ChannelPresence, now: float) -> None:
        if c.changed_at is None:
            c.changed_at = now
        c.seen = False

    def due(self, now: float) -> list[tuple[ChannelKey, str]]:
        """The announcements to publish now, (channel, body): changed ANNOUNCE_S ago, or
        not said for REFRESH_S. A channel with no session here any more says so once (count
        0), then is kept only for what the other edges say."""
        out = []
        for key, c in list(self.channels.items()):
            if c.changed_at is not None:
                if now - c.changed_at < ANNOUNCE_S:
                    continue
            elif not (c.local and now - c.announced_at >= REFRESH_S):
                continue
            users = len(c.local)
            out.append((key, announcement(users, c.local if users <= SMALL_CHANNEL
                                          else None)))
            c.changed_at, c.announced_at = None, now
            if not c.local and not c.remote:
                del self.channels[key]
        return out

    # -- the other edges -------------------------------------------------------------------

    def heard(self, key: ChannelKey, origin: str, body: str, now: float) -> bool:
        """An announcement of edge `origin`; whether it was one."""
        parsed = parse_announcement(body)
        if parsed is None or origin == self.here:
            return False
        count, members = parsed
        c = self.channels.setdefault(key, ChannelPresence())
        old = c.remote.get(origin)
        region = nodes.region_of(origin)
        before = old.members if old is not None and old.members is not None else frozenset()
        after = members or frozenset()
        c.joined += [(uid, region) for uid in sorted(after - before)]
        c.left += [(uid, region) for uid in sorted(before - after)]
        if old is None or old.count != count or old.members != members:
            c.seen = False
        if count == 0:
            c.remote.pop(origin, None)
        else:
            c.remote[origin] = Announced(count, members, now)
        return True

    def members_are(self, key: ChannelKey, names: Iterable[str], now: float) -> None:
        """The controller's list of the channel's member relays: an edge not on it is gone,
        and so are the users it announced; one new on it hears this edge's announcement
        within ANNOUNCE_S rather than at the next refresh."""
        c = self.channels.get(key)
        if c is None:
            return
        listed = frozenset(names)
        for origin in [o for o in c.remote
                       if o not in listed and nodes.region_of(o) not in listed]:
            self._forget(c, origin)
        if c.local and listed - c.listed:
            c.changed_at = c.changed_at if c.changed_at is not None else now
        c.listed = listed

    def expire(self, now: float) -> None:
        """Forget announcements not refreshed for STALE_S."""
        for c in self.channels.values():
            for origin in [o for o, a in c.remote.items() if now - a.heard_at > STALE_S]:
                self._forget(c, origin)

    def _forget(self, c: ChannelPresence, origin: str) -> None:
        gone = c.remote.pop(origin)
        region = nodes.region_of(origin)
        c.left += [(uid, region) for uid in sorted(gone.members or ())]
        c.seen = False

    # -- what sessions see -----------------------------------------------------------------

    def view(self, key: ChannelKey) -> dict:
        """The channel's presence: `count`, `regions` (count per region), and `members`
        while every edge names its users."""
        c = self.channels.get(key) or ChannelPresence()
        regions: Counter = Counter()
        if c.local:
            regions[self.region] += len(c.local)
        named: set[str] | None = set(c.local) if len(c.local) <= SMALL_CHANNEL else None
        for origin, a in c.remote.items():
            regions[nodes.region_of(origin)] += a.count
            if named is not None and a.members is not None:
                named |= a.members
            else:
                named = None
        out: dict = {"count": sum(regions.values()), "regions": dict(sorted(regions.items()))}
        if named is not None:
            out["members"] = sorted(named)
        return out

    def changes(self) -> list[tuple[ChannelKey, dict]]:
        """For each channel whose presence changed since the last call: its view, with who
        joined and left which region meanwhile (named only in small channels)."""
        out = []
        for key, c in self.channels.items():
            if c.seen:
                continue
            view = self.view(key)
            if "members" in view:
                view["joined"] = [list(x) for x in c.joined]
                view["left"] = [list(x) for x in c.left]
            c.joined, c.left, c.seen = [], [], True
            out.append((key, view))
        return out
