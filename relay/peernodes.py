"""The relay nodes of the mesh as one relay sees them: the controller's peer list held per
node, the one node of each other region this relay sends to (its transit node there), and the
other nodes of its own region (its siblings). Pure: explicit time, no I/O.

Routing and probing are per region, so a region is one peer to the scheduler: its transit
node, chosen by rendezvous hashing of this relay's address and the region's node ids
(skymesh/nodes.py), so that the relays of the mesh spread over a region's nodes and only
those that chose a node move when it leaves. When the link to a region goes down while the
region lists other nodes, the relay moves on to its next choice by itself and avoids the node
it left for avoid_s (or until the controller lists that node anew): the controller may still
list a node whose control session outlives its data path. The controller weighs a region's
nodes by load; the choice follows the weights (weighted rendezvous). Siblings are not links:
they are one hop away, each reached directly for the share of the region's traffic that
names it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from skymesh import nodes

Addr = tuple[str, int]
AVOID_S = 30.0


@dataclass(frozen=True)
class Listed:
    """One entry of the controller's peer list: a relay node and where it is (None: no valid
    address, which unlists it)."""

    region: str
    node: str  # "": an older controller's one node per region
    addr: Addr | None
    near: bool = False
    weight: float = 1.0  # its share of its region's transit (skymesh/nodes.py)


@dataclass
class PeerNodes:
    region: str
    node: str  # this relay's node id: its rendezvous choices and its place among siblings
    avoid_s: float = AVOID_S
    listed: dict[str, dict[str, Addr]] = field(default_factory=dict)  # other regions' nodes
    near_nodes: set[tuple[str, str]] = field(default_factory=set)  # (region, node) marked near
    siblings: dict[str, Addr] = field(default_factory=dict)  # this region's other nodes
    avoided: dict[tuple[str, str], float] = field(default_factory=dict)  # (region, node): until
    chosen: dict[str, str] = field(default_factory=dict)  # region -> its transit node
    # (region, node) -> its share of the region's transit, where the controller said
    weights: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def sender(self) -> str:
        """What this relay's rendezvous choices are keyed on: its address, unique in the mesh
        (node ids alone repeat across regions: n1 in every region of the local mesh would
        all choose alike, and a region's senders would not spread)."""
        return nodes.address(self.region, self.node)

    # -- the controller's list -------------------------------------------------------------

    def update(self, entries: Iterable[Listed], removed: Iterable[str] = (),
               incremental: bool = False) -> None:
        """A peer list: changes to the list held (`incremental`: `entries` added or at their
        new address, `removed` a region, every node of it, or "region/node", that node) or the
        whole list. An entry of this relay's own region is a sibling, unless it names this
        relay or no node (an older controller listing the relay itself)."""
        before = {(r, n): a for r, ns in self.listed.items() for n, a in ns.items()}
        before.update({(self.region, n): a for n, a in self.siblings.items()})
        if not incremental:
            self.listed, self.siblings, self.near_nodes = {}, {}, set()
        for destination in removed:
            self._remove(destination)
        for e in entries:
            if e.region == self.region:
                if e.node and e.node != self.node:
                    if e.addr is None:
                        self.siblings.pop(e.node, None)
                    else:
                        self.siblings[e.node] = e.addr
                continue
            key = (e.region, e.node)
            if e.addr is None:
                self._unlist(e.region, e.node)
                continue
            self.listed.setdefault(e.region, {})[e.node] = e.addr
            self.weights[key] = e.weight
            if e.near:
                self.near_nodes.add(key)
            else:
                self.near_nodes.discard(key)
            if before.get(key) != e.addr:  # listed anew: whatever it failed is over
                self.avoided.pop(key, None)
        listed = {(r, n) for r, ns in self.listed.items() for n in ns}
        self.near_nodes &= listed
        for key in [k for k in self.avoided if k not in listed]:
            del self.avoided[key]
        for key in [k for k in self.weights if k not in listed]:
            del self.weights[key]
        for region in [r for r in self.chosen if r not in self.listed]:
            del self.chosen[region]

    def _remove(self, destination: str) -> None:
        region, node = nodes.parse(destination)
        if node:
            self._unlist(region, node)
        elif region == self.region:
            self.siblings.clear()
        else:
            self.listed.pop(region, None)

    def _unlist(self, region: str, node: str) -> None:
        """One node leaves the list ("": the region's only one, as an older controller
        lists it)."""
        if region == self.region:
            self.siblings.pop(node, None)
            return
        held = self.listed.get(region)
        if held is None:
            return
        if node:
            held.pop(node, None)
        if not held or not node:
            del self.listed[region]

    # -- what the relay does with it -------------------------------------------------------

    @property
    def near(self) -> frozenset[str]:
        """The regions one of whose nodes the controller marks near."""
        return frozenset(r for r, _ in self.near_nodes)

    def transit(self, now: float) -> tuple[dict[str, Addr], set[str]]:
        """({region: its transit node's address}, the regions whose transit node changed to
        another node of theirs since the last call)."""
        for key in [k for k, until in self.avoided.items() if until <= now]:
            del self.avoided[key]
        addrs: dict[str, Addr] = {}
        moved: set[str] = set()
        for region, held in self.listed.items():
            avoid = [n for n in held if (region, n) in self.avoided]
            node = nodes.choose(self.sender, held, avoid, self.weights_of(region))
            before = self.chosen.get(region)
            if before is not None and before != node:
                moved.add(region)
            self.chosen[region] = node
            addrs[region] = held[node]
        return addrs, moved

    def failover(self, region: str, now: float) -> str | None:
        """The link to `region` went down: avoid its transit node for avoid_s and return the
        node to move to, if the region lists another one not avoided (None: stay)."""
        held = self.listed.get(region, {})
        node = self.chosen.get(region)
        if node is None or len(held) < 2:
            return None
        self.avoided[(region, node)] = now + self.avoid_s
        avoid = [n for n in held if self.avoided.get((region, n), now) > now]
        if len(avoid) == len(held):  # every node failed lately: no better one to go to
            return None
        return nodes.choose(self.sender, held, avoid, self.weights_of(region))

    def avoidance_over(self, now: float) -> bool:
        """Whether a node avoided is due to be tried again (`transit` then goes back to it
        where it is the first choice)."""
        return any(until <= now for until in self.avoided.values())

    def weights_of(self, region: str) -> dict[str, float]:
        """The listed nodes of `region` by id, with their share of its transit."""
        return {n: self.weights.get((region, n), 1.0) for n in self.listed.get(region, {})}

    def addresses(self) -> dict[str, set[Addr]]:
        """Every listed node's address by region, this region's siblings included (chaos
        drops a region's traffic with all of its nodes)."""
        out = {r: set(held.values()) for r, held in self.listed.items()}
        if self.siblings:
            out[self.region] = set(self.siblings.values())
        return out

    def node_ids(self) -> Mapping[str, frozenset[str]]:
        """Each other region's listed node ids (their node-qualified names take the
        region's route)."""
        return {r: frozenset(n for n in held if n) for r, held in self.listed.items()}
