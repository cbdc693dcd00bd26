"""Which regions have subscribers of each channel, told to the relays that publish to it.

Each relay reports the channels its edge has sessions in (subscribers, publishers, or both).
A channel's members are the regions with subscribers; a publisher's relay fans its packets
out to them, so it is told the members whenever they change, and once when it starts to
publish. After a controller start, members are held back for `hold_s` or until every
region's relay is back: relays that reconnect first must not be told that the others'
subscribers left.

Plain state fed events with explicit times; the controller core sends what it returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Channel = tuple[str, str]  # (zone, channel)
Interest = Mapping[Channel, tuple[bool, bool]]  # channel -> (subscribers, publishers)
NONE = (False, False)


@dataclass(frozen=True)
class Members:
    """The subscriber regions of a channel, for the relay of `region` (a publisher)."""

    region: str
    zone: str
    channel: str
    regions: tuple[str, ...]


class Membership:
    def __init__(self, expected: int, hold_s: float, started: float) -> None:
        self.expected = expected  # regions in the catalogue: the hold ends when all are back
        self.hold_s = hold_s
        self.started = started
        # the connected relays' channels, in the order they connected
        self.interest: dict[str, dict[Channel, tuple[bool, bool]]] = {}
        self.members: dict[Channel, tuple[str, ...]] = {}  # as last pushed
        self.released = False

    def connect(self, region: str) -> None:
        """A relay connected (replacing any earlier one of its region): no channels yet."""
        self.interest.pop(region, None)
        self.interest[region] = {}

    def disconnect(self, region: str, now: float) -> list[Members]:
        """Its subscribers leave every channel they were in."""
        old = self.interest.pop(region, {})
        return self.update(set(old), now)

    def on_channels(self, region: str, interest: Interest, now: float) -> list[Members]:
        """A relay's channels, replacing the ones it reported before."""
        if region not in self.interest:
            return []  # not connected
        old = self.interest[region]
        new = self.interest[region] = dict(interest)
        new_publisher = {k for k, (_, pub) in new.items() if pub and not old.get(k, NONE)[1]}
        return self.update(set(old) | set(new), now, also_to={k: region for k in new_publisher})

    def members_of(self, key: Channel) -> tuple[str, ...]:
        return tuple(sorted(r for r, i in self.interest.items() if i.get(key, NONE)[0]))

    def publishers_of(self, key: Channel) -> list[str]:
        return sorted(r for r, i in self.interest.items() if i.get(key, NONE)[1])

    def channels(self) -> list[Channel]:
        """Every channel some connected relay has sessions in."""
        return sorted({k for i in self.interest.values() for k in i})

    def holding(self, now: float) -> bool:
        # once released, never again: a relay that leaves within hold_s of the start (every
        # one came back, then one went) must not hold back what the others report
        return (not self.released and len(self.interest) < self.expected
                and now - self.started < self.hold_s)

    def update(self, keys: Iterable[Channel], now: float,
               also_to: Mapping[Channel, str] | None = None) -> list[Members]:
        """The members of `keys` for their publishers' relays where the set changed (and for
        `also_to`, relays that just started publishing)."""
        if self.holding(now):
            return []
        also_to = also_to or {}
        out = []
        for key in sorted(keys):
            members = self.members_of(key)
            changed = members != self.members.get(key, ())
            if members:
                self.members[key] = members
            else:
                self.members.pop(key, None)
            for region, interest in self.interest.items():
                publishes = interest.get(key, NONE)[1]
                if publishes and (changed or also_to.get(key) == region):
                    out.append(Members(region, key[0], key[1], members))
        return out

    def release(self, now: float) -> list[Members]:
        """After the hold: every publisher gets the members of its channels."""
        keys = {k for i in self.interest.values() for k in i}
        publishing = {k: region for region, i in self.interest.items()
                      for k, (_, pub) in i.items() if pub}
        self.released = True
        for key in keys:
            self.members.pop(key, None)  # force a push
        return self.update(keys, now, also_to=publishing)

    def release_due(self, now: float) -> list[Members]:
        """The release, once, when the hold is over; nothing before or after."""
        if self.released or self.holding(now):
            return []
        return self.release(now)
