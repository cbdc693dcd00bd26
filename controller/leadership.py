"""This replica's campaign for leadership on etcd, as a task: the I/O around
controller/election.py's `Campaign`.

It writes the replica's election key bound to a lease, renews the lease at a third of its
TTL, reads the election prefix to know who leads, and tells its owner when this replica starts
or stops leading. While it leads, the store's writes are fenced by its key
(`EtcdStore.fence`) and route-set versions are reserved ahead of the ones pushed, so that
versions only grow across leaders. When etcd cannot be reached, the lease lapses by itself:
the replica stops leading before etcd could have let its key go, keeps serving what it holds,
and campaigns again once etcd answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from controller.election import Campaign, Candidate
from controller.etcd import Etcd, EtcdError, absent, put_op
from controller.etcdstate import Keys
from controller.etcdstore import VERSION_BLOCK, EtcdStore, Fence
from controller.store import FileStore, Store

log = logging.getLogger("skymesh.controller")

POLL_S = 0.1  # the election prefix is read this often (reads, not writes)


@dataclass(frozen=True)
class ReplicaView:
    id: str
    address: str
    leader: bool
    healthy: bool


@dataclass(frozen=True)
class ClusterView:
    """The replicas and the store as one replica sees them (`admin status`)."""

    replica: str  # the one answering
    replicas: tuple[ReplicaView, ...]
    leader: str  # "" while none leads
    store_kind: str  # memory, file, etcd
    store_where: str
    store_healthy: bool
    store_error: str = ""


def lone(replica: str, address: str, store: Store) -> ClusterView:
    """A controller without etcd: the one replica, leading."""
    return ClusterView(replica, (ReplicaView(replica, address, True, True),), replica,
                       "file" if isinstance(store, FileStore) else "memory", store.where,
                       True)


def candidate_of(keys: Keys, key: bytes, value: bytes, create_revision: int) -> Candidate:
    """An election key as read (its value: {"address": HOST:PORT}; anything else is a
    candidate without an address, which still counts for who leads)."""
    replica = key[len(keys.election):].decode(errors="replace")
    try:
        address = str(json.loads(value).get("address", ""))
    except (ValueError, AttributeError):
        address = ""
    return Candidate(replica, address, key, create_revision)


class Leadership:
    """Campaigns for `replica` (whose clients reach it at `address`) while `run` runs."""

    def __init__(self, etcd: Etcd, keys: Keys, replica: str, address: str,
                 store: EtcdStore, ttl_s: float) -> None:
        self.etcd = etcd
        self.keys = keys
        self.replica = replica
        self.address = address
        self.store = store
        self.campaign = Campaign(replica, ttl_s)
        self.leading = False
        self.floor = 0  # the route versions reserved before this term: pushes go on above
        self.etcd_ok = False  # the last call to etcd was answered
        self.etcd_error = ""
        # the owner's hooks: a term begins (read the state again, reserve versions) or ends
        self.began: Callable[[], Awaitable[None]] = _nothing
        self.ended: Callable[[], None] = lambda: None
        # the route versions pushed so far and the limit on them (the core's distribution)
        self.pushed: Callable[[], int] = lambda: 0
        self.limit: Callable[[int | None], None] = lambda limit: None
        self.changed = asyncio.Event()  # leading started or stopped
        store.deposed = self._deposed

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self.turn()
            await asyncio.sleep(POLL_S)

    async def turn(self) -> None:
        """One turn: `step`, whether etcd answered (a new reason logged once), then start or
        stop leading as the campaign says."""
        try:
            await self.step()
            self.etcd_ok, self.etcd_error = True, ""
        except EtcdError as e:
            if self.etcd_ok or self.etcd_error != str(e):
                log.warning("election: %s", e)
            self.etcd_ok, self.etcd_error = False, str(e)
        await self.check(time.monotonic())

    async def step(self) -> None:
        """One turn: campaign if needed, renew if due, read who campaigns."""
        c = self.campaign
        if c.must_campaign():
            await self._campaign()
        elif c.renew_due(time.monotonic()):
            asked = time.monotonic()
            ttl = await self.etcd.keep_alive(c.lease)
            c.renewed(asked, ttl)
            if not c.lease:
                log.warning("election: this replica's lease had expired: campaigning again")
        kvs, _ = await self.etcd.get_prefix(self.keys.election)
        c.seen(candidate_of(self.keys, kv.key, kv.value, kv.create_revision) for kv in kvs)
        if self.leading and (limit := self.store.reserved) - self.pushed() < VERSION_BLOCK // 2:
            self.limit(await self.store.reserve_versions(max(limit, self.pushed())))

    async def check(self, now: float) -> None:
        """Start or stop leading as the campaign says."""
        c = self.campaign
        leads = c.leads(now)
        if leads and not self.leading:
            self.store.fence = Fence(c.key, c.create_revision, c.lease)
            try:
                await self.began()
                # versions up to this may have been pushed by the leaders before
                self.floor = self.store.reserved
                self.limit(await self.store.reserve_versions(self.pushed()))
            except (EtcdError, OSError, ValueError) as e:
                log.error("election: cannot take up leading: %s", e)
                self.store.fence = None
                return
            self.leading = True
            log.info("election: %s leads (key revision %d)", self.replica, c.create_revision)
            self.changed.set()
        elif not leads and self.leading:
            self._stop(now)

    def _stop(self, now: float, why: str = "") -> None:
        c = self.campaign
        self.leading = False
        self.store.fence = None
        self.limit(self.pushed())  # nothing more is pushed until it leads again
        why = why or ("its lease may have lapsed (etcd not answering)" if not c.alive(now)
                      else f"{top.replica} leads" if (top := c.leader()) else "no leader")
        log.warning("election: %s no longer leads: %s", self.replica, why)
        self.ended()
        self.changed.set()

    def _deposed(self) -> None:
        """A fenced write found the key gone: campaign again."""
        self.campaign.lost()
        if self.leading:
            self._stop(time.monotonic(), "its election key was gone when it wrote")

    async def _campaign(self) -> None:
        c = self.campaign
        asked = time.monotonic()
        lease = await self.etcd.grant(max(1, round(c.ttl_s)))
        key = self.keys.candidate(self.replica)
        value = json.dumps({"address": self.address}).encode()
        put = await self.etcd.txn([absent(key)], [put_op(key, value, lease)])
        if not put.succeeded:
            # this replica's key from a process before this one (or a twin): it is let go,
            # and the key written anew has a create revision of its own to fence with
            log.warning("election: %s's key was held by an earlier process: replacing it",
                        self.replica)
            await self.etcd.delete(key)
            put = await self.etcd.txn([absent(key)], [put_op(key, value, lease)])
            if not put.succeeded:
                await self.etcd.revoke(lease)
                return
        kv, _ = await self.etcd.get(key)
        if kv is None or kv.lease != lease:
            return  # gone already: the next turn campaigns again
        c.campaigned(lease, key, kv.create_revision, asked)

    async def wait_leading(self, timeout_s: float) -> bool:
        """Run turns until this replica leads or `timeout_s` passed; whether it leads."""
        deadline = time.monotonic() + timeout_s
        while not self.leading and time.monotonic() < deadline:
            await self.turn()
            if not self.leading:
                await asyncio.sleep(POLL_S)
        return self.leading

    async def resign(self) -> None:
        """Stop leading now (a replica shutting down): the lease is revoked, its key goes,
        and the next replica leads without waiting for the TTL."""
        if self.campaign.lease:
            try:
                await self.etcd.revoke(self.campaign.lease)
            except EtcdError as e:
                log.warning("election: could not resign: %s", e)
        self.campaign.lost()
        if self.leading:
            self._stop(time.monotonic(), "it resigned")

    def leader(self) -> Candidate | None:
        return self.campaign.leader()

    def view(self) -> ClusterView:
        top = self.campaign.leader()
        lead = top.replica if top is not None else ""
        replicas = tuple(ReplicaView(c.replica, c.address, c.replica == lead, True)
                         for c in sorted(self.campaign.candidates.values(),
                                         key=lambda c: c.replica))
        if self.replica not in {r.id for r in replicas}:  # not campaigning: etcd away
            replicas += (ReplicaView(self.replica, self.address, False, False),)
        return ClusterView(self.replica, replicas, lead if self.etcd_ok else "", "etcd",
                           self.store.where, self.etcd_ok, self.etcd_error)


async def _nothing() -> None:
    return None
