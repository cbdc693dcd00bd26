"""Ordered installation of new routes, leaves first (in the spirit of RFC 6976).

When routes change, the relays apply their new tables at different moments. A relay moved to a
new next hop before that hop has its own new row sends into the old path, which after a
failure runs into the failed region: the relay had already gone around it on its backup and
now loses traffic again. So a changed row goes out only when the new next hop's installed
table (what its relay acknowledged) already leads to the destination over links that are up;
until then the relay keeps the row it has. Rows next to the destination are always ready, and
each round of acknowledgements makes the next ring ready, so a tree goes in from the
destination outward in as many rounds as it is deep.

Pure functions: the controller passes the target tables, the installed rows and the links up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from controller.engine import Route

Key = tuple[str, str]  # (zone, destination)
Installed = Mapping[str, Mapping[Key, Route]]  # region -> its acknowledged rows


def reaches(start: str, key: Key, installed: Installed,
            link_up: Callable[[str, str], bool], gone: frozenset[str] = frozenset()) -> bool:
    """Whether traffic for `key` handed to `start` gets to the destination by the installed
    rows, over links that are up, without a loop, and through none of the regions `gone`."""
    dst = key[1]
    node, seen = start, set()
    while node != dst:
        row = installed.get(node, {}).get(key)
        if row is None or node in seen or node in gone:
            return False
        seen.add(node)
        if not link_up(node, row.next_hop):
            return False
        node = row.next_hop
    return True


def stage(region: str, target: list[Route], installed: Installed,
          link_up: Callable[[str, str], bool], gone: frozenset[str] = frozenset(),
          sent: Mapping[Key, Route] | None = None) -> tuple[list[Route], int]:
    """The rows to push to `region` now, and how many of its target rows are held back: a
    row that changes next hop from the one last `sent` (default: installed) goes out once
    the new hop is ready (`reaches`); until then that row stays. A row with nothing sent
    before goes out at once: it has nothing to break."""
    own = installed.get(region, {}) if sent is None else sent
    rows, held = [], 0
    for row in target:
        key = (row.zone, row.dst)
        old = own.get(key)
        if (old is row or old is None or old.path[1] == row.path[1]
                or reaches(row.next_hop, key, installed, link_up, gone)):
            rows.append(row)
        else:
            rows.append(old)
            held += 1
    return rows, held
