"""What each relay was pushed and has acknowledged: versioned route tables, xDS style.

Every push carries a new version (versions only grow, across controller restarts too: a
relay's hello says what it holds) and a nonce; the relay acknowledges or rejects it. A
rejection makes the relay's next table go out at the next version even if it is unchanged.
Acknowledgements may arrive after newer pushes (under churn they often do), so the rows of
every version not yet acknowledged are kept, up to a cap for a relay that stopped answering.
What a relay acknowledged is what it has installed, and that is what the ordering of changes
(controller/ordering.py) builds on: a changed row waits until its new next hop has installed
a row that leads on, or at most `order_hold_s`.

Plain state fed events with explicit times; the controller core decides when to push and
its shell puts the pushes on the wire.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace

from controller import ordering
from controller.engine import Route

log = logging.getLogger("skymesh.controller")

MAX_UNACKED = 16  # versions kept for a relay that does not acknowledge
# the highest version a relay's hello may say it holds: versions go on above it, and a uint64
# on the wire must not run out (relay_service.check_hello refuses more)
MAX_HELD_VERSION = 2**63
def differs(sent: Mapping[tuple[str, str], Route], rows: list[Route]) -> bool:
    """Whether `rows` differ from the rows `sent` in a path or a backup (costs alone drift
    with every sample). Rows that did not change are the very objects sent (the core
    patches only what changed), so a table is compared a lookup a row."""
    if len(sent) != len(rows):
        return True
    for r in rows:
        was = sent.get((r.zone, r.dst))
        if was is not r and (was is None or was.path != r.path
                             or was.backup_next_hop != r.backup_next_hop):
            return True
    return False


def new_nonce() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Push:
    """A route table for one relay, to send as it is: whole, or (base_version) as the rows
    that differ from the table of that version, which the relay acknowledged, and the keys
    of those it no longer has (protocol 3)."""

    region: str
    version: int
    nonce: str
    rows: tuple[Route, ...]  # the whole table, in either case
    base_version: int = 0
    changes: tuple[Route, ...] = ()
    removed: tuple[tuple[str, str], ...] = ()  # (zone, dst)

    def whole(self) -> Push:
        """The same table, whole (for a relay that holds no table of base_version)."""
        return replace(self, base_version=0, changes=(), removed=())


@dataclass(eq=False)
class RelayRoutes:
    """One relay's tables as the controller pushed them and the relay acknowledged them."""

    region: str
    pushed: list[Route] | None = None  # the rows last pushed; None: push again
    pushed_version: int = 0
    acked_version: int = 0
    # rows of the versions pushed and not acknowledged yet, by key: an ack may come for one
    # that a newer push has already followed
    unacked: dict[int, dict[ordering.Key, Route]] = field(default_factory=dict)
    installed: dict[ordering.Key, Route] = field(default_factory=dict)  # as last acked
    sent: dict[ordering.Key, Route] = field(default_factory=dict)  # as last pushed
    held: int = 0  # target rows not pushed yet, waiting for their next hop
    held_since: float | None = None
    # the relay takes tables as changes to one it acknowledged (protocol 3); whole_next: it
    # rejected one, the next goes whole
    changes: bool = False
    whole_next: bool = False

    @property
    def in_sync(self) -> bool:
        return self.pushed is not None and self.acked_version == self.pushed_version \
            and not self.held

    def acknowledge(self, version: int) -> bool:
        """Take an ACK; True if it installed rows (it did unless the version was dropped
        under the cap). An ACK of a version never pushed to this relay is ignored: it would
        make the relay look in sync with a push it has not received."""
        if version > self.pushed_version:
            return False
        self.acked_version = max(self.acked_version, version)
        rows = self.unacked.get(version)
        if rows is None:
            return False
        self.installed = rows
        self.unacked = {v: r for v, r in self.unacked.items() if v > version}
        return True


class Distribution:
    """The version counter and every connected relay's `RelayRoutes`."""

    def __init__(self, order_hold_s: float = 1.0, max_unacked: int = MAX_UNACKED,
                 nonce: Callable[[], str] = new_nonce) -> None:
        self.order_hold_s = order_hold_s
        self.max_unacked = max_unacked
        self.nonce = nonce
        self.version = 0
        # the highest version that may be pushed (None: any): replicas on etcd reserve
        # versions ahead, so that a next leader goes on above every version pushed
        self.limit: int | None = None
        self.relays: dict[str, RelayRoutes] = {}
        self.awaited: set[str] = set()  # the next hops that held rows wait for

    def attach(self, region: str, holds_version: int = 0, changes: bool = False) -> RelayRoutes:
        """A relay connected (replacing any earlier one of its region): it has been pushed
        nothing on this session, and the versions go on above what it holds. `changes`: it
        takes tables as changes to one it acknowledged."""
        self.version = max(self.version, holds_version)
        self.relays.pop(region, None)
        relay = self.relays[region] = RelayRoutes(region, changes=changes)
        return relay

    def blocked(self) -> bool:
        """Whether no new version may be pushed until more are reserved (`limit`)."""
        return self.limit is not None and self.version >= self.limit

    def detach(self, relay: RelayRoutes) -> None:
        if self.relays.get(relay.region) is relay:
            del self.relays[relay.region]

    def stage(self, tables: Mapping[str, list[Route]], links_up: Callable[[str, str], bool],
              gone: frozenset[str], now: float,
              regions: Collection[str] | None = None) -> dict[str, list[Route]]:
        """Each relay's rows to push now: the target tables, less the changed rows whose new
        next hop is not ready (controller/ordering.py), unless they waited order_hold_s.
        Only the relays in `regions` (None: all) are staged, and those that hold rows back
        or have been pushed nothing on this session: the others' tables did not change."""
        installed = {region: r.installed for region, r in self.relays.items()}
        staged = {}
        self.awaited = set()
        for region, relay in self.relays.items():
            if regions is not None and region not in regions and not relay.held \
                    and relay.pushed is not None:
                continue
            target = tables.get(region, [])
            rows, held = ordering.stage(region, target, installed, links_up, gone, relay.sent)
            if held and relay.held_since is None:
                relay.held_since = now
            if held and now - relay.held_since >= self.order_hold_s:
                # routine while routes settle (at start-up they change every few hundred ms)
                log.info("%s: %d rows pushed after waiting %.1f s for their next hops",
                         region, held, self.order_hold_s)
                rows, held = target, 0
            if not held:
                relay.held_since = None
            else:
                self.awaited |= {t.next_hop for t, r in zip(target, rows, strict=True)
                                 if t is not r}
            relay.held = held
            staged[region] = rows
        return staged

    def push_staged(self, tables: Mapping[str, list[Route]],
                    links_up: Callable[[str, str], bool], gone: frozenset[str],
                    now: float, regions: Collection[str] | None = None) -> list[Push]:
        """The pushes for every relay whose staged rows changed, all at one new version
        (of `regions` only, and those `stage` always looks at, when given)."""
        staged = self.stage(tables, links_up, gone, now, regions)
        # a new version when some relay's paths change; costs alone drift with every sample
        changed = [r for r in self.relays.values() if r.region in staged
                   and (r.pushed is None or differs(r.sent, staged[r.region]))]
        if not changed:
            return []
        self.version += 1
        held = sum(r.held for r in self.relays.values())
        log.info("routes v%d: %d relays' tables changed%s", self.version, len(changed),
                 f", {held} rows wait for their next hop" if held else "")
        return [self.push(relay, staged[relay.region]) for relay in changed]

    def push(self, relay: RelayRoutes, rows: list[Route]) -> Push:
        """Record `rows` as pushed to `relay` at the current version."""
        relay.pushed, relay.pushed_version = rows, self.version
        relay.sent = relay.unacked[self.version] = {(r.zone, r.dst): r for r in rows}
        self.cap(relay)
        push = Push(relay.region, self.version, self.nonce(), tuple(rows))
        if relay.changes and relay.acked_version and relay.installed and not relay.whole_next:
            # rows that did not change are the same objects as those acknowledged (the core
            # patches only what changed): a thousand-row table that moved a few rows sends
            # those few
            installed = relay.installed
            changes = tuple(r for r in rows if installed.get((r.zone, r.dst)) is not r)
            removed = tuple(k for k in installed if k not in relay.sent)
            push = replace(push, base_version=relay.acked_version, changes=changes,
                           removed=removed)
        relay.whole_next = False
        return push

    def follow(self, relay: RelayRoutes, push: Push) -> Push:
        """What a follower node of `push`'s region is sent: the lead's table, whole (the
        lead's changes are to the lead's own table), recorded as pushed to `relay`, whose
        ACKs are its own."""
        relay.pushed, relay.pushed_version = list(push.rows), push.version
        relay.unacked[push.version] = {(r.zone, r.dst): r for r in push.rows}
        self.cap(relay)
        return push.whole()

    def cap(self, relay: RelayRoutes) -> None:
        """Keep the rows of the last max_unacked versions of a relay that stopped
        acknowledging."""
        for version in sorted(relay.unacked)[:-self.max_unacked]:
            del relay.unacked[version]

    def on_ack(self, relay: RelayRoutes, version: int) -> bool:
        """Take an ACK; True if rows held for this relay's may go now (recompute soon)."""
        return relay.acknowledge(version) and relay.region in self.awaited

    def on_nack(self, relay: RelayRoutes) -> None:
        relay.pushed = None  # push again at the next version, whole
        relay.whole_next = True

    def relays_in_sync(self) -> int:
        """How many relays have acknowledged all they were pushed, with nothing held."""
        return sum(r.in_sync for r in self.relays.values())
