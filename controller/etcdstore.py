"""The controller's Store on etcd (`--store etcd://...`): the keys controller/etcdstate.py lays
out, read when the replica starts to lead and written in transactions fenced by its election
key, so that a leader deposed without noticing cannot overwrite anything.

The core writes through the Store's synchronous methods, but etcd is a network away. So a
change an operator asks for is kept *first*: the admin shell hands `keep_first` what the
change will write (the drained regions, the audit entry), awaits the fenced transaction, and
only then lets the core make the change, whose synchronous writes of the same values cost
nothing. Anything else the core writes (a fabric key rotation's keys, the audit entry of a
refused call) is written behind, in order, retried while this replica leads.

Route-set versions are reserved ahead (`reserve_versions`): `routes/version` holds the
highest version a leader may have pushed, so the next leader goes on above every version any
relay holds, and a reservation is one write per VERSION_BLOCK versions, not one a round.

The latest route set (`save_route_set`) is written apart from the rest: only the newest
matters, so a zone's set replaces the one waiting to be written, and a set that could not
be written is not retried (the next one will be); its parts go first, each a transaction,
and the value naming them last, with the parts of older versions deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from controller import etcdstate
from controller.etcd import Etcd, EtcdError, created_at, delete_op, put_op
from controller.etcdstate import Keys
from controller.store import AuditEntry, ControllerState, counted, only_known, recent

log = logging.getLogger("skymesh.controller")

VERSION_BLOCK = 256  # route-set versions reserved in one write
RETRY_S = 1.0  # a write behind that failed is tried again this much later
CONFIG_OPS = 100  # etcd takes at most 128 operations a transaction (--max-txn-ops)


class StoreUnavailable(OSError):
    """etcd could not keep a write: unreachable, or this replica no longer leads. The
    message says which; the admin service answers UNAVAILABLE with it."""


@dataclass(frozen=True)
class Fence:
    """The leader's election key as it wrote it: every write is conditional on it."""

    key: bytes
    create_revision: int
    lease: int = 0  # what the leader's own keys (the live relays) are bound to


class EtcdStore:
    """The Store of a controller replica on etcd (controller/store.py's protocol)."""

    def __init__(self, etcd: Etcd, keys: Keys, replica: str) -> None:
        self.etcd = etcd
        self.keys = keys
        self.replica = replica
        self.fence: Fence | None = None  # set by the election while this replica leads
        self.deposed: Callable[[], None] = lambda: None  # a fenced write found it did not
        self.drained: frozenset[str] = frozenset()
        self.fabric_keys: tuple[tuple[int, bytes], ...] = ()
        self.reserved = 0  # versions up to this may have been pushed (routes/version)
        self.entries: list[AuditEntry] = []
        self.kept_entries: set[AuditEntry] = set()  # kept first: not written again
        self.revision = 0  # the revision the state was read at
        self.config: dict[bytes, bytes] = {}  # what config/ held when read, and since
        self.seq = 0  # audit entries this replica wrote (their keys)
        self.behind: asyncio.Queue[tuple[str, list]] | None = None
        self.writer: asyncio.Task | None = None
        # zone -> (version, value, parts) waiting to be written, and the task writing them
        self.route_sets: dict[str, tuple[int, bytes, list[bytes]]] = {}
        self.route_writer: asyncio.Task | None = None
        self.route_sets_kept = 0  # written, since this replica started
        self.ops: Counter[tuple[str, str]] = Counter()  # (op, ok or error), for the metrics

    @property
    def where(self) -> str:
        return f"etcd {','.join(self.etcd.endpoints)} ({self.keys.name(self.keys.prefix)})"

    # -- reading --------------------------------------------------------------------------

    async def open(self) -> None:
        """Read the mesh's state (a replica that starts to lead reads it again: the last
        leader may have written since). ValueError naming the key for a value that cannot
        be trusted; StoreUnavailable when etcd does not answer."""
        try:
            kvs, revision = await self.etcd.get_prefix(self.keys.prefix)
        except EtcdError as e:
            raise StoreUnavailable(f"{self.where}: {e}") from None
        drained, fabric_keys, reserved, entries = frozenset(), (), 0, []
        self.config = {kv.key: kv.value for kv in kvs if kv.key.startswith(self.keys.config)}
        for kv in kvs:
            if kv.key == self.keys.drained:
                drained = etcdstate.decode_drained(kv.key, kv.value)
            elif kv.key == self.keys.fabric_keys:
                fabric_keys = etcdstate.decode_fabric_keys(kv.key, kv.value)
            elif kv.key == self.keys.route_version:
                reserved = etcdstate.decode_version(kv.key, kv.value)
            elif kv.key.startswith(self.keys.audit):
                entries.append(etcdstate.decode_audit(kv.key, kv.value))
        self.drained, self.fabric_keys, self.reserved = drained, fabric_keys, reserved
        self.entries, self.revision = entries, revision  # by key: by time

    def load(self, known: Collection[str]) -> ControllerState:
        """The state `open` read."""
        return only_known(sorted(self.drained), known, self.where, self.fabric_keys)

    def audit(self, since_unix_s: float = 0.0, limit: int = 0) -> list[AuditEntry]:
        return recent(self.entries, since_unix_s, limit)

    # -- fenced writes ----------------------------------------------------------------------

    async def _write(self, ops: list, what: str) -> int:
        """One transaction of `ops`, fenced; the revision it was written at."""
        fence = self.fence
        if fence is None:
            raise StoreUnavailable(f"not kept ({what}): this replica does not "
                                   "lead")
        try:
            with counted(self.ops, "write"):
                result = await self.etcd.txn([created_at(fence.key, fence.create_revision)],
                                             ops)
        except EtcdError as e:
            raise StoreUnavailable(f"not kept ({what}): {e}") from None
        if not result.succeeded:
            if self.fence == fence:
                self.fence = None
                self.deposed()
            raise StoreUnavailable(f"not kept ({what}): this replica's "
                                   "election key is gone: it no longer leads")
        return result.revision

    def _audit_op(self, entry: AuditEntry) -> object:
        self.seq += 1
        return put_op(self.keys.audit_entry(entry.at_unix_s, self.replica, self.seq),
                      etcdstate.encode_audit(entry))

    async def keep_first(self, *, drained: Iterable[str] | None = None,
                         audit: Sequence[AuditEntry] = ()) -> None:
        """Keep what a change is about to write, in one fenced transaction, before the core
        makes it; StoreUnavailable (nothing kept) if it could not be."""
        ops, what = [], []
        if drained is not None:
            drained = frozenset(drained)
            ops.append(put_op(self.keys.drained, etcdstate.encode_drained(drained)))
            what.append("drained regions")
        ops += [self._audit_op(e) for e in audit]
        if audit:
            what.append("audit entry")
        if not ops:
            return
        await self._write(ops, " and ".join(what))
        if drained is not None:
            self.drained = drained
        for entry in audit:
            self.entries.append(entry)
            self.kept_entries.add(entry)

    async def reserve_versions(self, above: int) -> int:
        """Reserve route-set versions up to `above` + VERSION_BLOCK (and at least above what
        is reserved); the new reservation. StoreUnavailable if it could not be kept."""
        upto = max(above, self.reserved) + VERSION_BLOCK
        await self._write([put_op(self.keys.route_version, etcdstate.encode_version(upto))],
                          f"route versions up to {upto}")
        self.reserved = upto
        return upto

    # -- what the leader serves ----------------------------------------------------------

    def publish_config(self, values: dict[bytes, bytes]) -> int:
        """Make config/ hold `values` (etcdstate.config_values), written behind by what
        differs, in transactions of at most CONFIG_OPS; how many keys changed."""
        ops = [put_op(k, v) for k, v in sorted(values.items()) if self.config.get(k) != v]
        ops += [delete_op(k) for k in sorted(self.config) if k not in values]
        for i in range(0, len(ops), CONFIG_OPS):
            self._behind("configuration", ops[i:i + CONFIG_OPS])
        self.config = dict(values)
        return len(ops)

    def save_route_set(self, zone: str, version: int, value: bytes, parts: list[bytes]
                       ) -> None:
        """The zone's latest route set (etcdstate.encode_route_set), written apart."""
        self.route_sets[zone] = (version, value, parts)
        if self.route_writer is None or self.route_writer.done():
            self.route_writer = asyncio.get_running_loop().create_task(self._write_routes())

    async def _write_routes(self) -> None:
        while self.route_sets:
            zone = min(self.route_sets)
            version, value, parts = self.route_sets.pop(zone)
            what = f"route set v{version} of zone {zone}"
            try:
                for i, part in enumerate(parts):
                    await self._write([put_op(self.keys.route_part(zone, version, i), part)],
                                      f"{what}, part {i + 1} of {len(parts)}")
                # the older versions' parts go with the value that stops naming them
                await self._write([put_op(self.keys.route_set(zone), value),
                                   delete_op(self.keys.zone_parts(zone),
                                             until=self.keys.route_part(zone, version, 0))],
                                  what)
                self.route_sets_kept += 1
            except StoreUnavailable as e:
                log.warning("%s: %s; the next one will be", self.where, e)

    # -- live relays -------------------------------------------------------------------

    def relay_up(self, region: str, node: str, replica: str, probe_addr: str,
                 unix: float) -> None:
        """A relay's session began (at the leader, held by `replica`): written behind,
        bound to the leader's lease."""
        lease = self.fence.lease if self.fence is not None else 0
        self._behind("live relay", [put_op(self.keys.relay(region, node),
                                           etcdstate.encode_relay(replica, probe_addr, unix),
                                           lease)])

    def relay_down(self, region: str, node: str) -> None:
        self._behind("live relay", [delete_op(self.keys.relay(region, node))])

    # -- what the core writes ------------------------------------------------------------

    def save_drained(self, drained: Iterable[str]) -> None:
        drained = frozenset(drained)
        if drained == self.drained:
            return  # kept first
        self.drained = drained
        self._behind("drained regions",
                     [put_op(self.keys.drained, etcdstate.encode_drained(drained))])

    def save_fabric_keys(self, keys: Sequence[tuple[int, bytes]]) -> None:
        keys = tuple(keys)
        if keys == self.fabric_keys:
            return
        self.fabric_keys = keys
        self._behind("fabric keys",
                     [put_op(self.keys.fabric_keys, etcdstate.encode_fabric_keys(keys))])

    def append_audit(self, entry: AuditEntry) -> None:
        if entry in self.kept_entries:
            self.kept_entries.discard(entry)
            return
        self.entries.append(entry)
        self._behind("audit entry", [self._audit_op(entry)])

    def _behind(self, what: str, ops: list) -> None:
        """Write `ops` after those before them, from a task of the running event loop."""
        if self.behind is None:
            self.behind = asyncio.Queue()
            self.writer = asyncio.get_running_loop().create_task(self._write_behind())
        self.behind.put_nowait((what, ops))

    async def _write_behind(self) -> None:
        assert self.behind is not None
        taken: list[tuple[str, list]] = []  # from the queue, not written yet
        while True:
            if not taken:
                taken.append(await self.behind.get())
            while not self.behind.empty():
                taken.append(self.behind.get_nowait())
            # what queued meanwhile goes in the same transaction (a leader taking 300 relays
            # over registers them in a few, not 300), in order, each key once
            batch = [taken.pop(0)]
            keys = set(op_keys(batch[0][1]))
            while taken and sum(len(ops) for _, ops in batch) + len(taken[0][1]) \
                    <= CONFIG_OPS and not keys & set(op_keys(taken[0][1])):
                batch.append(taken.pop(0))
                keys |= set(op_keys(batch[-1][1]))
            what = ", ".join(dict.fromkeys(w for w, _ in batch))
            ops = [op for _, part in batch for op in part]
            fence = self.fence
            while True:
                try:
                    await self._write(ops, what)
                    break
                except StoreUnavailable as e:
                    # a write of a term that ended is the next leader's to make or not
                    if self.fence is None or self.fence != fence:
                        log.error("%s: %s; dropped", self.where, e)
                        break
                    log.warning("%s: %s; trying again in %.0f s", self.where, e, RETRY_S)
                    await asyncio.sleep(RETRY_S)
            for _ in batch:
                self.behind.task_done()

    async def settle(self) -> None:
        """Wait until everything written behind so far was written (or dropped)."""
        if self.behind is not None:
            await self.behind.join()

    async def close(self) -> None:
        for task in (self.writer, self.route_writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.writer = self.behind = self.route_writer = None


def op_keys(ops: list) -> list[bytes]:
    """The keys a transaction's operations write (etcd refuses one written twice)."""
    return [op.request_put.key if op.HasField("request_put")
            else op.request_delete_range.key for op in ops]
