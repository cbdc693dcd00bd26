"""A region's relay nodes, as the mesh names them: the one statement of how a destination
names a node, and of which node of a region a relay sends its transit to.

A region may run several relay nodes. Routing is per region; a destination (a channel
datagram's, a channel's member) is a region, or "region/node" where the region has several
nodes and the datagram is for that node's subscribers. The node that receives a region's
traffic delivers what is for it and hands each sibling its share, one hop.

Each relay sends a region's transit to one of its nodes, chosen by rendezvous hashing of the
sender's and the candidates' node ids: the senders spread over a region's nodes evenly, and
when a node leaves only the senders that chose it move (to their next choice). The spread
follows load: the controller gives each node of a region a weight (`transit_weights`, from
the client sessions each holds) and the hashing is weighted (Schindelhauer and Schomaker's
weighted rendezvous: a node of weight w wins a sender with w / -ln(u), u the pair's hash in
(0, 1)), so that a node holding many clients takes a smaller share of its region's transit,
and when a weight moves only the senders whose choice it decides move.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping

SEPARATOR = "/"
MAX_NODE_ID = 64
NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
# a node's weight is its share of the region's transit beside its siblings': 1 for the least
# loaded, down to 1/WEIGHT_STEPS in steps of as much, so that small moves in load change
# nothing (each change goes to every relay of the mesh)
WEIGHT_STEPS = 8
# client sessions below which load makes no difference
LOAD_FLOOR = 100.0


class BadNodeName(ValueError):
    """A node id or destination name that does not fit the mesh's names."""


def check_node_id(node: str) -> str:
    """`node` if it can name a relay node in destinations: 1..64 of A-Z a-z 0-9 . _ -"""
    if not isinstance(node, str) or not NODE_ID.match(node) or node in (".", ".."):
        raise BadNodeName(f"node id {node!r} must be 1..{MAX_NODE_ID} characters of "
                          "A-Z a-z 0-9 . _ -")
    return node


def address(region: str, node: str) -> str:
    """The destination that names `node` of `region`."""
    return f"{region}{SEPARATOR}{node}"


def parse(destination: str) -> tuple[str, str]:
    """(region, node) of a destination; node "" when it names the whole region."""
    region, _, node = destination.partition(SEPARATOR)
    return region, node


def region_of(destination: str) -> str:
    return destination.partition(SEPARATOR)[0]


def _hash(sender: str, candidate: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{sender}\0{candidate}".encode(),
                                          digest_size=8).digest())


def _score(sender: str, candidate: str, weight: float) -> float:
    """weight / -ln(u), u the pair's hash in (0, 1): computed from 1 - u, which keeps its
    precision where u is close to 1 (and -ln(u) close to 0)."""
    rest = (2**64 - _hash(sender, candidate) - 0.5) / 2**64
    return weight / -math.log1p(-rest)


def ranked(sender: str, candidates: Iterable[str],
           weights: Mapping[str, float] | None = None) -> list[str]:
    """`candidates` (node ids of one region) in the order `sender` (the sending relay's
    address, unique in the mesh) prefers them for its transit: the first while it is there
    and healthy, then the next. `weights` (by node id; 1 where missing) skew the choice:
    each node comes first for a share of the senders in proportion to its weight."""
    candidates = list(candidates)
    if not weights or len({weights.get(c, 1.0) for c in candidates}) < 2:
        # all alike: the plain order, which the weighted one equals then
        return sorted(candidates, key=lambda c: _hash(sender, c), reverse=True)
    return sorted(candidates, key=lambda c: _score(sender, c, weights.get(c, 1.0)),
                  reverse=True)


def choose(sender: str, candidates: Iterable[str], avoid: Iterable[str] = (),
           weights: Mapping[str, float] | None = None) -> str | None:
    """The node `sender` sends a region's transit to: its first choice of `candidates` not in
    `avoid` (unless every one is avoided: then its first choice); None without candidates."""
    order = ranked(sender, candidates, weights)
    if not order:
        return None
    avoided = set(avoid)
    return next((c for c in order if c not in avoided), order[0])


def transit_weights(load: Mapping[str, float], floor: float = LOAD_FLOOR) -> dict[str, float]:
    """Each node's weight (by node id) from its load (client sessions) beside its
    siblings': in inverse proportion to the load (loads under `floor` count as `floor`), 1
    for the least loaded, in steps of 1/WEIGHT_STEPS and at least that."""
    inverse = {n: 1.0 / max(float(x), floor) for n, x in load.items() if math.isfinite(x)}
    if not inverse:
        return {}
    top = max(inverse.values())
    return {n: max(1, round(WEIGHT_STEPS * v / top)) / WEIGHT_STEPS
            for n, v in inverse.items()}
