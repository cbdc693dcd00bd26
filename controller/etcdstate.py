"""The controller's state as etcd holds it: the keys under one prefix per mesh, and their
values (JSON with a schema version), written and read without I/O.

    /skymesh/<mesh>/election/<replica>         the replica's address; bound to its lease
    /skymesh/<mesh>/relays/<region>/<node>     which replica holds the relay's session
    /skymesh/<mesh>/state/drained              {"schema": 1, "regions": [...]}
    /skymesh/<mesh>/state/fabric_keys          {"schema": 1, "keys": [{"epoch", "key"}]}
    /skymesh/<mesh>/routes/version             {"schema": 1, "version": N}: route-set
                                               versions up to N may have been pushed (a
                                               leader reserves them ahead; the next
                                               leader goes on above N)
    /skymesh/<mesh>/routes/set/<zone>          {"schema": 1, "version", "zone", "nodes",
                                               "members", "parts", "bytes", "sha256"}: the
                                               zone's latest route set, its arrays in parts
    /skymesh/<mesh>/routes/parts/<zone>/<version>/<i>  a part of those arrays (numpy's
                                               compressed npz, split; binary)
    /skymesh/<mesh>/audit/<ns>-<replica>-<n>   {"schema": 1, "entry": {...}}: an audit entry
    /skymesh/<mesh>/relays/<region>/<node>     {"schema": 1, "replica", ...}: a live relay
    /skymesh/<mesh>/config/regions/<id>        {"schema": 1, "region": {...}}: the catalogue
    /skymesh/<mesh>/config/policy              {"schema": 1, "zones": {...}}
    /skymesh/<mesh>/config/apps/<app>          {"schema": 1, "keys": [hex, ...]}

A value that cannot be read is a ValueError naming its key and what is wrong: a replica must
not serve state it cannot trust.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from controller.engine import ZoneRoutes
from controller.store import AuditEntry, check_fabric_keys
from skymesh import identity
from skymesh.catalogue import Region
from skymesh.policy import Policy

SCHEMA = 1
ROOT = "/skymesh/"
ROUTE_PART_BYTES = 1_000_000  # etcd takes requests of at most 1.5 MiB by default


class Keys:
    """The keys of one mesh."""

    def __init__(self, mesh: str) -> None:
        self.mesh = identity.check_mesh(mesh)
        self.prefix = f"{ROOT}{self.mesh}/".encode()
        self.election = self.prefix + b"election/"
        self.relays = self.prefix + b"relays/"
        self.audit = self.prefix + b"audit/"
        self.drained = self.prefix + b"state/drained"
        self.fabric_keys = self.prefix + b"state/fabric_keys"
        self.route_version = self.prefix + b"routes/version"
        self.route_sets = self.prefix + b"routes/set/"
        self.route_parts = self.prefix + b"routes/parts/"
        # what the leader serves, as its files gave it: the catalogue, the residency policy
        # and the apps' public token keys
        self.config = self.prefix + b"config/"
        self.policy = self.config + b"policy"

    def region(self, rid: str) -> bytes:
        return self.config + f"regions/{rid}".encode()

    def route_set(self, zone: str) -> bytes:
        return self.route_sets + zone.encode()

    def zone_parts(self, zone: str) -> bytes:
        """Where the parts of the zone's route sets live, every version's."""
        return self.route_parts + f"{zone}/".encode()

    def route_part(self, zone: str, version: int, i: int) -> bytes:
        """Parts sort by version (20 digits), then by their order."""
        return self.zone_parts(zone) + f"{version:020d}/{i:04d}".encode()

    def app(self, app_id: str) -> bytes:
        return self.config + f"apps/{app_id}".encode()

    def candidate(self, replica: str) -> bytes:
        return self.election + replica.encode()

    def relay(self, region: str, node: str) -> bytes:
        return self.relays + f"{region}/{node}".encode()

    def audit_entry(self, at_unix_s: float, replica: str, seq: int = 0) -> bytes:
        """Audit keys sort by time (nanoseconds, 20 digits), then by replica and the
        replica's count of entries (two entries of one instant do not overwrite each
        other)."""
        return self.audit + f"{int(at_unix_s * 1e9):020d}-{replica}-{seq:09d}".encode()

    def name(self, key: bytes) -> str:
        """A key as errors name it."""
        return key.decode(errors="replace")


def _encode(**fields: object) -> bytes:
    return json.dumps({"schema": SCHEMA, **fields}, separators=(",", ":"),
                      sort_keys=True).encode()


def _decode(key: bytes, value: bytes, field: str) -> object:
    where = key.decode(errors="replace")
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"etcd {where}: not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"etcd {where}: expected an object")
    if data.get("schema") != SCHEMA:
        raise ValueError(f"etcd {where}: schema {data.get('schema')!r}, this controller "
                         f"reads {SCHEMA}")
    if field not in data:
        raise ValueError(f"etcd {where}: no field {field!r}")
    return data[field]


def encode_drained(regions: Iterable[str]) -> bytes:
    return _encode(regions=sorted(set(regions)))


def decode_drained(key: bytes, value: bytes) -> frozenset[str]:
    regions = _decode(key, value, "regions")
    if not isinstance(regions, list) or not all(isinstance(r, str) for r in regions):
        raise ValueError(f"etcd {key.decode(errors='replace')}: 'regions' must be a list of "
                         "region ids")
    return frozenset(regions)


def encode_fabric_keys(keys: Sequence[tuple[int, bytes]]) -> bytes:
    return _encode(keys=[{"epoch": e, "key": k.hex()} for e, k in keys])


def decode_fabric_keys(key: bytes, value: bytes) -> tuple[tuple[int, bytes], ...]:
    try:
        return check_fabric_keys(_decode(key, value, "keys"))
    except ValueError as e:
        where = key.decode(errors="replace")
        raise ValueError(str(e) if str(e).startswith("etcd ") else f"etcd {where}: {e}") \
            from None


def encode_version(version: int) -> bytes:
    return _encode(version=int(version))


def decode_version(key: bytes, value: bytes) -> int:
    version = _decode(key, value, "version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"etcd {key.decode(errors='replace')}: 'version' must be a "
                         "non-negative integer")
    return version


def encode_relay(replica: str, probe_addr: str, since_unix_s: float) -> bytes:
    """A live relay's entry (bound to the leader's lease: it goes with the leader, and the
    next one writes its own as the relays come back)."""
    return _encode(replica=replica, probe_addr=probe_addr, since_unix_s=since_unix_s)


def decode_relay(key: bytes, value: bytes) -> dict:
    replica = _decode(key, value, "replica")
    if not isinstance(replica, str):
        raise ValueError(f"etcd {key.decode(errors='replace')}: 'replica' must be a string")
    data = json.loads(value)
    return {"replica": replica, "probe_addr": str(data.get("probe_addr", "")),
            "since_unix_s": float(data.get("since_unix_s", 0.0))}


def encode_region(region: Region) -> bytes:
    return _encode(region=region.to_dict())


def encode_policy(policy: Policy) -> bytes:
    return _encode(zones={name: {"regions": sorted(z.regions), "description": z.description}
                          for name, z in policy.zones.items()})


def encode_app(keys: Iterable[bytes]) -> bytes:
    """An app's Ed25519 public token keys (hex), the first the one it signs with now."""
    return _encode(keys=[k.hex() for k in keys])


def config_values(keys: Keys, catalogue: Mapping[str, Region], policy: Policy,
                  apps: Mapping[str, Iterable[bytes]]) -> dict[bytes, bytes]:
    """Every key under config/ and its value, as the leader serves them."""
    out = {keys.region(rid): encode_region(r) for rid, r in catalogue.items()}
    out[keys.policy] = encode_policy(policy)
    out.update({keys.app(app): encode_app(k) for app, k in apps.items()})
    return out


def encode_audit(entry: AuditEntry) -> bytes:
    return _encode(entry=entry.to_json())


def decode_audit(key: bytes, value: bytes) -> AuditEntry:
    try:
        return AuditEntry.from_json(_decode(key, value, "entry"))
    except ValueError as e:
        where = key.decode(errors="replace")
        raise ValueError(str(e) if str(e).startswith("etcd ") else f"etcd {where}: {e}") \
            from None


# -- the latest route set -------------------------------------------------------------------

# what rows are read from (ZoneRoutes.route): link costs (in microseconds, as the wire rounds
# them; -1: no link), next hops, backups, the drained regions' penalty; distances are not kept
_ROUTE_ARRAYS = ("cost_us", "next_hop", "backup", "backup_kind")


def encode_route_set(version: int, z: ZoneRoutes) -> tuple[bytes, list[bytes]]:
    """A zone's routes in force at `version`: (the value of routes/set/<zone>, the parts of
    its arrays: numpy's compressed npz, split into ROUTE_PART_BYTES)."""
    index = np.int16 if len(z.nodes) < 2 ** 15 else np.int32
    cost_us = np.where(np.isfinite(z.cost), np.round(z.cost * 1000), -1).astype(np.int32)
    arrays = {"cost_us": cost_us, "next_hop": z.next_hop.astype(index),
              "backup": z.backup.astype(index), "backup_kind": z.backup_kind.astype(np.int8)}
    if z.penalty is not None:
        arrays["penalty"] = z.penalty
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    blob = buf.getvalue()
    parts = [blob[i:i + ROUTE_PART_BYTES] for i in range(0, len(blob), ROUTE_PART_BYTES)]
    return _encode(version=int(version), zone=z.zone, nodes=list(z.nodes),
                   members=sorted(z.members), parts=len(parts), bytes=len(blob),
                   sha256=hashlib.sha256(blob).hexdigest()), parts


def route_set_version(key: bytes, value: bytes) -> tuple[int, int]:
    """(version, number of parts) of a routes/set/<zone> value; ValueError naming the key."""
    version, parts = _decode(key, value, "version"), _decode(key, value, "parts")
    if not (isinstance(version, int) and isinstance(parts, int) and version >= 0
            and parts >= 1):
        raise ValueError(f"etcd {key.decode(errors='replace')}: version and parts: expected "
                         "counts")
    return version, parts


def decode_route_set(key: bytes, value: bytes, parts: Sequence[bytes]
                     ) -> tuple[int, ZoneRoutes]:
    """(version, the zone's routes, to read rows from) from its routes/set value and its
    parts in order; ValueError naming the key when they do not make that route set (a
    part missing, or of another version being written)."""
    where = key.decode(errors="replace")
    version, count = route_set_version(key, value)
    data = json.loads(value)
    blob = b"".join(parts)
    if len(parts) != count or len(blob) != data.get("bytes") or \
            hashlib.sha256(blob).hexdigest() != data.get("sha256"):
        raise ValueError(f"etcd {where}: its {count} parts of version {version} are not "
                         "all there (being written?)")
    try:
        with np.load(io.BytesIO(blob)) as npz:
            arrays = {name: npz[name] for name in npz.files}
        nodes = [str(n) for n in data["nodes"]]
        n = len(nodes)
        if any(arrays[name].shape != (n, n) for name in _ROUTE_ARRAYS):
            raise ValueError("arrays of another size than its regions")
        penalty = arrays.get("penalty")
        unknown = np.full((n, n), np.inf)  # distances are not kept
        cost_us = arrays["cost_us"]
        cost = np.where(cost_us >= 0, cost_us / 1000, np.inf)
        z = ZoneRoutes(str(data["zone"]), frozenset(data["members"]), nodes, cost,
                       unknown, unknown,
                       arrays["next_hop"].astype(np.intp), arrays["backup"].astype(np.intp),
                       arrays["backup_kind"].astype(np.intp),
                       penalty=None if penalty is None else penalty.astype(float))
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise ValueError(f"etcd {where}: not a route set: {e}") from None
    return version, z
