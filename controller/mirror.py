"""What etcd holds of the mesh, as every replica keeps it: read once, then watched, the watch
resumed from the last revision seen after any error, and read again whole after a
compaction. A replica that cannot reach the leader answers admin reads from it. Route sets
are kept as etcd holds them and read when asked for (the last one read is kept).
"""

from __future__ import annotations

import asyncio
import logging

from controller import etcdstate
from controller.engine import ZoneRoutes
from controller.etcd import Compacted, Etcd, EtcdError, Event, KeyValue
from controller.etcdstate import Keys
from controller.store import AuditEntry, recent

log = logging.getLogger("skymesh.controller")

RETRY_S = 0.5


class EtcdMirror:
    def __init__(self, etcd: Etcd, keys: Keys) -> None:
        self.etcd = etcd
        self.keys = keys
        self.revision = 0  # the last revision applied
        self.drained: frozenset[str] = frozenset()
        self.reserved = 0
        self.audit_entries: dict[bytes, AuditEntry] = {}
        self.relays: dict[tuple[str, str], dict] = {}  # (region, node) -> its entry
        self.route_sets: dict[str, bytes] = {}  # zone -> its routes/set value
        self.route_parts: dict[bytes, bytes] = {}  # routes/parts/... -> the part
        self.read: dict[str, tuple[bytes, int, ZoneRoutes]] = {}  # zone -> (value, ...)
        self.ready = asyncio.Event()  # read at least once

    def route_set(self, zone: str) -> tuple[int, ZoneRoutes] | None:
        """(version, routes) of the zone's latest route set etcd holds whole, or None."""
        value = self.route_sets.get(zone)
        if value is None:
            return None
        if (held := self.read.get(zone)) is not None and held[0] == value:
            return held[1], held[2]
        key = self.keys.route_set(zone)
        try:
            version, count = etcdstate.route_set_version(key, value)
            parts = [self.route_parts.get(self.keys.route_part(zone, version, i))
                     for i in range(count)]
            version, routes = etcdstate.decode_route_set(
                key, value, [p for p in parts if p is not None])
        except ValueError as problem:
            log.warning("mirror: %s", problem)
            return None
        self.read[zone] = (value, version, routes)
        return version, routes

    def audit(self, since_unix_s: float = 0.0, limit: int = 0) -> list[AuditEntry]:
        return recent([self.audit_entries[k] for k in sorted(self.audit_entries)],
                      since_unix_s, limit)

    async def run(self) -> None:
        while True:
            try:
                kvs, revision = await self.etcd.get_prefix(self.keys.prefix)
                self.reset(kvs, revision)
                async for revision, events in self.etcd.watch(self.keys.prefix,
                                                              self.revision + 1):
                    for e in events:
                        self.apply(e)
                    self.revision = max(self.revision, revision)
            except Compacted:
                continue  # what was missed is gone from etcd's history: read it all again
            except EtcdError as e:
                log.debug("mirror of %s: %s", self.keys.name(self.keys.prefix), e)
                await asyncio.sleep(RETRY_S)

    def reset(self, kvs: list[KeyValue], revision: int) -> None:
        self.drained, self.reserved = frozenset(), 0
        self.audit_entries, self.relays = {}, {}
        self.route_sets, self.route_parts = {}, {}
        for kv in kvs:
            self.apply(Event(False, kv))
        self.revision = revision
        self.ready.set()

    def apply(self, e: Event) -> None:
        """One key written or deleted; a value that cannot be read is logged and left out."""
        key, keys = e.kv.key, self.keys
        try:
            if key == keys.drained:
                self.drained = frozenset() if e.deleted else \
                    etcdstate.decode_drained(key, e.kv.value)
            elif key == keys.route_version:
                self.reserved = 0 if e.deleted else etcdstate.decode_version(key, e.kv.value)
            elif key.startswith(keys.audit):
                if e.deleted:
                    self.audit_entries.pop(key, None)
                else:
                    self.audit_entries[key] = etcdstate.decode_audit(key, e.kv.value)
            elif key.startswith(keys.route_sets):
                zone = key[len(keys.route_sets):].decode(errors="replace")
                if e.deleted:
                    self.route_sets.pop(zone, None)
                else:
                    self.route_sets[zone] = e.kv.value
            elif key.startswith(keys.route_parts):
                if e.deleted:
                    self.route_parts.pop(key, None)
                else:
                    self.route_parts[key] = e.kv.value
            elif key.startswith(keys.relays):
                region, _, node = key[len(keys.relays):].decode(errors="replace").partition("/")
                if e.deleted:
                    self.relays.pop((region, node), None)
                else:
                    self.relays[(region, node)] = etcdstate.decode_relay(key, e.kv.value)
        except ValueError as problem:
            log.warning("mirror: %s", problem)
