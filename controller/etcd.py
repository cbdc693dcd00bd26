"""etcd v3 for the controller's replicas: a thin asyncio shell over etcd's gRPC API (the stubs
the maintained python3-etcd3 distribution ships, `etcd3.etcdrpc`, on grpc.aio channels), with
the mesh's mutual TLS and several endpoints.

What the replicas need of etcd and no more: reads of a key or a prefix at a revision, puts,
transactions (the leader's writes are fenced by a compare on its election key), leases (the
election, the live relays) kept alive, and watches of a prefix from a revision, which end with
`Compacted` when etcd no longer holds that revision (the caller reads again and watches on).
An endpoint that does not answer is left for the next one; `EtcdUnavailable` says that none
did, naming each and why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import grpc
from etcd3 import etcdrpc
from etcd3.etcdrpc import kv_pb2

from skymesh.net.tls import TlsError, TlsFiles

log = logging.getLogger("skymesh.controller")

DEFAULT_PORT = 2379
TIMEOUT_S = 2.0  # one call's deadline: etcd on a healthy network answers in milliseconds
# etcd's gRPC codes that mean "this endpoint, not this request": try the next one
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class EtcdError(Exception):
    """etcd refused a request, or the endpoints could not be used; the message says why."""


class EtcdUnavailable(EtcdError):
    """No endpoint answered."""


class Compacted(EtcdError):
    """A watch or read asked for a revision etcd has compacted away: read again, from
    `revision` (the oldest it holds) or now."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"revision compacted (etcd holds from {revision})")
        self.revision = revision


def endpoints_of(url: str) -> list[str]:
    """The "host:port" endpoints of `etcd://HOST:PORT[,HOST:PORT...]` (port 2379 when left
    out); ValueError saying what is wrong."""
    scheme, _, rest = url.partition("://")
    if scheme != "etcd" or not rest:
        raise ValueError(f"{url!r}: expected etcd://HOST:PORT[,HOST:PORT...]")
    out = []
    for part in rest.rstrip("/").split(","):
        try:
            parsed = urlsplit(f"//{part.strip()}")
            host, port = parsed.hostname, parsed.port or DEFAULT_PORT
        except ValueError as e:
            raise ValueError(f"{url!r}: {part!r}: {e}") from None
        if not host or parsed.path or parsed.query:
            raise ValueError(f"{url!r}: {part!r} is not HOST:PORT")
        out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return out


def prefix_end(prefix: bytes) -> bytes:
    """The end of the key range of `prefix` (etcd's range_end): the prefix with its last
    byte below 0xff increased, the bytes after it dropped."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def of(cls, kv: kv_pb2.KeyValue) -> KeyValue:
        return cls(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


@dataclass(frozen=True)
class Event:
    """One change a watch saw: a put (with the key's new value) or a delete."""

    deleted: bool
    kv: KeyValue


# -- what a transaction compares and does -------------------------------------------------


def created_at(key: bytes, revision: int) -> etcdrpc.Compare:
    """The key exists and was created at `revision` (its create revision; a key deleted and
    put again has a later one): the fence on a leader's writes."""
    return etcdrpc.Compare(result=etcdrpc.Compare.EQUAL, target=etcdrpc.Compare.CREATE,
                           key=key, create_revision=revision)


def absent(key: bytes) -> etcdrpc.Compare:
    """The key does not exist (its create revision is 0)."""
    return created_at(key, 0)


def modified_at(key: bytes, revision: int) -> etcdrpc.Compare:
    """The key was last written at `revision` (0: it does not exist)."""
    return etcdrpc.Compare(result=etcdrpc.Compare.EQUAL, target=etcdrpc.Compare.MOD,
                           key=key, mod_revision=revision)


def put_op(key: bytes, value: bytes, lease: int = 0) -> etcdrpc.RequestOp:
    return etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=value, lease=lease))


def delete_op(key: bytes, prefix: bool = False, until: bytes = b"") -> etcdrpc.RequestOp:
    """Delete `key`; with `prefix` every key it begins; with `until` every key from `key`
    up to `until` (not included)."""
    return etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(
        key=key, range_end=prefix_end(key) if prefix else until))


def range_op(key: bytes, prefix: bool = False) -> etcdrpc.RequestOp:
    return etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(
        key=key, range_end=prefix_end(key) if prefix else b""))


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int  # the store's revision after the transaction
    responses: Sequence[etcdrpc.ResponseOp]


class Etcd:
    """A client of one etcd cluster, by its endpoints ("host:port"), with mutual TLS (`tls`:
    the trust bundle that signs etcd's server certificate, and this process's certificate and
    key) or, with tls None, in plaintext."""

    def __init__(self, endpoints: Sequence[str], tls: TlsFiles | None,
                 timeout_s: float = TIMEOUT_S) -> None:
        if not endpoints:
            raise ValueError("etcd needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.timeout_s = timeout_s
        self.credentials = None
        if tls is not None:
            try:
                ca, cert, key = tls.read()
            except TlsError as e:
                raise ValueError(f"etcd client TLS: {e}") from None
            self.credentials = grpc.ssl_channel_credentials(ca, key, cert)
        self.at = 0  # the endpoint in use
        self.channel: grpc.aio.Channel | None = None

    # -- channels ---------------------------------------------------------------------------

    def _channel(self) -> grpc.aio.Channel:
        if self.channel is None:
            target = self.endpoints[self.at]
            self.channel = (grpc.aio.secure_channel(target, self.credentials)
                            if self.credentials is not None
                            else grpc.aio.insecure_channel(target))
        return self.channel

    async def _next_endpoint(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
        self.at = (self.at + 1) % len(self.endpoints)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None

    async def _call(self, stub: type, method: str, request: object, *,
                    timeout_s: float | None = None) -> object:
        """One unary call, on each endpoint in turn until one answers."""
        return await self._on_each(method, lambda channel: getattr(stub(channel), method)(
            request, timeout=timeout_s or self.timeout_s))

    async def _on_each(self, method: str,
                       attempt: Callable[[grpc.aio.Channel], Awaitable[object]]) -> object:
        """`attempt` on each endpoint's channel in turn until one answers."""
        failures = []
        for _ in range(len(self.endpoints) + 1):
            where = self.endpoints[self.at]
            channel = self._channel()
            try:
                return await attempt(channel)
            except grpc.aio.AioRpcError as e:
                if e.code() not in RETRYABLE:
                    raise EtcdError(f"etcd {where}: {method}: {e.code().name}: "
                                    f"{e.details()}") from None
                failures.append(f"{where}: {e.code().name} ({e.details()})")
                if self.channel is channel:  # not moved on already by another call
                    await self._next_endpoint()
            except asyncio.CancelledError:
                # another call that failed on this endpoint closed its channel under this
                # one: try again on the next (a cancellation of this task goes on up)
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                failures.append(f"{where}: left for the next endpoint")
        raise EtcdUnavailable("etcd unavailable: " + "; ".join(failures))

    # -- keys -------------------------------------------------------------------------------

    async def get(self, key: bytes) -> tuple[KeyValue | None, int]:
        """The key (None if absent) and the store's revision."""
        r = await self._call(etcdrpc.KVStub, "Range", etcdrpc.RangeRequest(key=key))
        return (KeyValue.of(r.kvs[0]) if r.kvs else None), r.header.revision

    async def get_prefix(self, prefix: bytes, revision: int = 0) -> tuple[list[KeyValue], int]:
        """Every key under `prefix`, by key (at `revision`, 0: now), and the revision read
        at. Compacted if etcd no longer holds `revision`."""
        try:
            r = await self._call(etcdrpc.KVStub, "Range", etcdrpc.RangeRequest(
                key=prefix, range_end=prefix_end(prefix), revision=revision))
        except EtcdError as e:
            if "compacted" in str(e):
                raise Compacted(0) from None
            raise
        return [KeyValue.of(kv) for kv in r.kvs], r.header.revision

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """Write a key; the revision it was written at."""
        r = await self._call(etcdrpc.KVStub, "Put",
                             etcdrpc.PutRequest(key=key, value=value, lease=lease))
        return r.header.revision

    async def delete(self, key: bytes, prefix: bool = False) -> int:
        r = await self._call(etcdrpc.KVStub, "DeleteRange", etcdrpc.DeleteRangeRequest(
            key=key, range_end=prefix_end(key) if prefix else b""))
        return r.deleted

    async def txn(self, compare: Sequence[etcdrpc.Compare],
                  success: Sequence[etcdrpc.RequestOp],
                  failure: Sequence[etcdrpc.RequestOp] = ()) -> TxnResult:
        """If every comparison holds, `success`, else `failure`, atomically."""
        r = await self._call(etcdrpc.KVStub, "Txn", etcdrpc.TxnRequest(
            compare=list(compare), success=list(success), failure=list(failure)))
        return TxnResult(r.succeeded, r.header.revision, r.responses)

    async def compact(self, revision: int) -> None:
        await self._call(etcdrpc.KVStub, "Compact",
                         etcdrpc.CompactionRequest(revision=revision, physical=True))

    # -- leases -----------------------------------------------------------------------------

    async def grant(self, ttl_s: int) -> int:
        """A new lease of `ttl_s` seconds; its id."""
        r = await self._call(etcdrpc.LeaseStub, "LeaseGrant", etcdrpc.LeaseGrantRequest(TTL=ttl_s))
        if r.error:
            raise EtcdError(f"etcd refused a lease: {r.error}")
        return r.ID

    async def keep_alive(self, lease: int) -> int:
        """Renew a lease once; the TTL it has again (0: it has expired, and its keys are
        gone)."""
        async def once(channel: grpc.aio.Channel) -> int:
            call = etcdrpc.LeaseStub(channel).LeaseKeepAlive(
                iter([etcdrpc.LeaseKeepAliveRequest(ID=lease)]), timeout=self.timeout_s)
            try:
                async for r in call:
                    return r.TTL
                return 0
            finally:
                call.cancel()
        return await self._on_each("LeaseKeepAlive", once)

    async def revoke(self, lease: int) -> None:
        """End a lease now (its keys go with it); one already gone is no error."""
        try:
            await self._call(etcdrpc.LeaseStub, "LeaseRevoke",
                             etcdrpc.LeaseRevokeRequest(ID=lease))
        except EtcdError as e:
            if "not found" not in str(e):
                raise

    # -- watches ----------------------------------------------------------------------------

    async def watch(self, prefix: bytes, start_revision: int,
                    ) -> AsyncIterator[tuple[int, list[Event]]]:
        """The changes under `prefix` from `start_revision` on, a batch at a time with the
        revision it brings the reader to. Raises Compacted when etcd no longer holds
        `start_revision`, EtcdUnavailable when the endpoint goes (resume from the last
        revision seen + 1). Progress notifications (no events) keep the revision moving."""
        requests: asyncio.Queue = asyncio.Queue()
        await requests.put(etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
            key=prefix, range_end=prefix_end(prefix), start_revision=start_revision,
            progress_notify=True)))

        async def send() -> AsyncIterator[etcdrpc.WatchRequest]:
            while True:
                yield await requests.get()

        where = self.endpoints[self.at]
        call = etcdrpc.WatchStub(self._channel()).Watch(send())
        try:
            async for r in call:
                if r.compact_revision:
                    raise Compacted(r.compact_revision)
                if r.canceled:
                    raise EtcdError(f"etcd {where}: watch canceled: {r.cancel_reason}")
                if r.created and not r.events:
                    continue
                yield r.header.revision, [Event(e.type == kv_pb2.Event.DELETE, KeyValue.of(e.kv))
                                          for e in r.events]
        except grpc.aio.AioRpcError as e:
            await self._next_endpoint()
            raise EtcdUnavailable(f"etcd {where}: watch ended: {e.code().name} "
                                  f"({e.details()})") from None
        finally:
            call.cancel()

    async def status(self) -> etcdrpc.StatusResponse:
        """The endpoint's status (version, leader, raft index): a health check."""
        return await self._call(etcdrpc.MaintenanceStub, "Status", etcdrpc.StatusRequest())
