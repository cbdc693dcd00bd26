"""Which regions have subscribers of each channel, told to the relays that publish to it.

Each relay node reports the channels its edge has sessions in (subscribers, publishers, or
both); nodes are named by their address ("region/node", skymesh/nodes.py). A channel's
members are the nodes with subscribers, by address: routing takes a datagram to their region
and the node that receives the region's share hands each sibling its part. A node is always
named by its address, whether its region has one node or several, so that a destination
never changes its name (a reliable stream's state is kept per destination). A publisher's
relay fans its packets out to them, so it is told the members whenever they
change, and once when it starts to publish. After a controller start, members are held back
for `hold_s` or until every region's relay is back: relays that reconnect first must not be
told that the others' subscribers left.

Plain state fed events with explicit times; the controller core sends what it returns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from skymesh.nodes import region_of

Channel = tuple[str, str]  # (zone, channel)
Interest = Mapping[Channel, tuple[bool, bool]]  # channel -> (subscribers, publishers)
NONE = (False, False)


@dataclass(frozen=True)
class Members:
    """The subscriber nodes of a channel, for the relay node `node` (a publisher)."""

    node: str
    zone: str
    channel: str
    regions: tuple[str, ...]  # destinations: the subscribed nodes' addresses


class Membership:
    def __init__(self, expected: int, hold_s: float, started: float) -> None:
        self.expected = expected  # regions in the catalogue: the hold ends when all are back
        self.hold_s = hold_s
        self.started = started
        # the connected relay nodes' channels, in the order they connected
        self.interest: dict[str, dict[Channel, tuple[bool, bool]]] = {}
        self.nodes_in: Counter[str] = Counter()  # connected nodes per region: the hold's count
        # the channels of a node's earlier session, until its new one reports
        self.before: dict[str, set[Channel]] = {}
        self.members: dict[Channel, tuple[str, ...]] = {}  # as last pushed
        self.released = False

    def connect(self, node: str) -> None:
        """A relay node connected (replacing any earlier session of it): no channels yet,
        until it reports them (its members stay as they were meanwhile: a node that
        reconnects reports the same)."""
        old = self.interest.pop(node, None)
        self.interest[node] = {}
        if old is not None:
            self.before[node] = set(old)  # looked at again when it reports
        else:
            self.nodes_in[region_of(node)] += 1

    def disconnect(self, node: str, now: float) -> list[Members]:
        """Its subscribers leave every channel they were in."""
        if node not in self.interest:
            return []
        old = set(self.interest.pop(node)) | self.before.pop(node, set())
        region = region_of(node)
        self.nodes_in[region] -= 1
        if not self.nodes_in[region]:
            del self.nodes_in[region]
        return self.update(old, now)

    def on_channels(self, node: str, interest: Interest, now: float) -> list[Members]:
        """A relay node's channels, replacing the ones it reported before."""
        if node not in self.interest:
            return []  # not connected
        old = self.interest[node]
        new = self.interest[node] = dict(interest)
        new_publisher = {k for k, (_, pub) in new.items() if pub and not old.get(k, NONE)[1]}
        return self.update(set(old) | set(new) | self.before.pop(node, set()), now,
                           also_to={k: node for k in new_publisher})

    def members_of(self, key: Channel) -> tuple[str, ...]:
        """The nodes with subscribers of `key`, by address."""
        return tuple(sorted(n for n, i in self.interest.items() if i.get(key, NONE)[0]))

    def publishers_of(self, key: Channel) -> list[str]:
        """The regions with publishers of `key`."""
        return sorted({region_of(n) for n, i in self.interest.items() if i.get(key, NONE)[1]})

    def channels(self) -> list[Channel]:
        """Every channel some connected relay has sessions in."""
        return sorted({k for i in self.interest.values() for k in i})

    def holding(self, now: float) -> bool:
        # once released, never again: a relay that leaves within hold_s of the start (every
        # one came back, then one went) must not hold back what the others report
        return (not self.released and len(self.nodes_in) < self.expected
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
            for node, interest in self.interest.items():
                publishes = interest.get(key, NONE)[1]
                if publishes and (changed or also_to.get(key) == node):
                    out.append(Members(node, key[0], key[1], members))
        return out

    def release(self, now: float) -> list[Members]:
        """After the hold: every publisher gets the members of its channels."""
        keys = {k for i in self.interest.values() for k in i}
        publishing = {k: node for node, i in self.interest.items()
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
