"""A region's relay nodes, as the mesh names them: the one statement of how a destination
names a node, and of which node of a region a relay sends its transit to.

A region may run several relay nodes. Routing is per region; a destination (a channel
datagram's, a channel's member) is a region, or "region/node" where the region has several
nodes and the datagram is for that node's subscribers. The node that receives a region's
traffic delivers what is for it and hands each sibling its share, one hop.

Each relay sends a region's transit to one of its nodes, chosen by rendezvous hashing of the
sender's and the candidates' node ids: the senders spread over a region's nodes evenly, and
when a node leaves only the senders that chose it move (to their next choice).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

SEPARATOR = "/"
MAX_NODE_ID = 64
NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")


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


def _weight(sender: str, candidate: str) -> bytes:
    return hashlib.blake2b(f"{sender}\0{candidate}".encode(), digest_size=8).digest()


def ranked(sender: str, candidates: Iterable[str]) -> list[str]:
    """`candidates` (node ids of one region) in the order `sender` (the sending relay's
    address, unique in the mesh) prefers them for its transit: the first while it is there
    and healthy, then the next."""
    return sorted(candidates, key=lambda c: _weight(sender, c), reverse=True)


def choose(sender: str, candidates: Iterable[str], avoid: Iterable[str] = ()) -> str | None:
    """The node `sender` sends a region's transit to: its first choice of `candidates` not in
    `avoid` (unless every one is avoided: then its first choice); None without candidates."""
    order = ranked(sender, candidates)
    if not order:
        return None
    avoided = set(avoid)
    return next((c for c in order if c not in avoided), order[0])
