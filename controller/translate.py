"""The wire contract (proto/skymesh/v1) to the controller core's plain values and back, kept
apart so that the core never sees protobuf and the gRPC services only call these."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from controller.core import (
    Chaos,
    Event,
    Hello,
    Message,
    Peers,
    RelayConfig,
    RelayEvent,
)
from controller.distribution import Push
from controller.engine import Route
from controller.membership import Interest, Members
from controller.topology import SampleBatch
from skymesh.linkstate import FROM_WIRE
from skymesh.nodes import address
from skymesh.v1 import admin_pb2, relay_pb2

# -- relay -> controller --------------------------------------------------------------------


def hello(msg: relay_pb2.Hello) -> Hello:
    return Hello(region=msg.region, node_id=msg.node_id, probe_addr=msg.probe_addr,
                 route_version=msg.route_version, edge_addr=msg.edge_addr,
                 protocol=msg.protocol, metrics_addr=msg.metrics_addr,
                 health_addr=msg.health_addr)


def samples(report: relay_pb2.LinkReport) -> list[dict]:
    """Link samples as controller/topology.py checks them (the state by name)."""
    return samples_of(report.links)


def sample_batch(links: Iterable[relay_pb2.LinkSample]) -> SampleBatch:
    """Link samples as columns (controller/topology.py's report_batch)."""
    b = SampleBatch()
    for s in links:
        b.dst.append(s.dst)
        b.rtt_ms.append(s.rtt_ms)
        b.min_rtt_ms.append(s.min_rtt_ms)
        b.jitter_ms.append(s.jitter_ms)
        b.loss.append(s.loss)
        b.window.append(s.window)
        b.samples.append(s.samples)
        b.lost.append(s.lost)
        b.state.append(s.state)
    return b


def samples_of(links: Iterable[relay_pb2.LinkSample]) -> list[dict]:
    return [
        {
            "dst": s.dst,
            "rtt_ms": s.rtt_ms,
            "min_rtt_ms": s.min_rtt_ms,
            "jitter_ms": s.jitter_ms,
            "loss": s.loss,
            "window": s.window,
            "samples": s.samples,
            "lost": s.lost,
            "state": FROM_WIRE.get(s.state, "?"),
        }
        for s in links
    ]


def interest(msg: relay_pb2.Channels) -> Interest:
    return {(c.zone, c.channel): (c.subscribers, c.publishers) for c in msg.channels}


def relay_event(e: relay_pb2.RelayEvent) -> RelayEvent:
    return RelayEvent(at_unix_s=e.at_unix_s, kind=e.kind, peer=e.peer, routes=e.routes,
                      detail=e.detail)


def chaos(msg: relay_pb2.Chaos) -> Chaos:
    return Chaos(drop_peers=tuple(msg.drop_peers), drop_all=msg.drop_all,
                 until_unix_s=msg.until_unix_s)


# -- controller -> relay --------------------------------------------------------------------


def route_entry(r: Route) -> relay_pb2.RouteEntry:
    # an encoded row is a RouteTable's `routes` field: a table of that one row
    return relay_pb2.RouteTable.FromString(encoded_row(r)).routes[0]


# Route tables are most of what the controller sends (a thousand relays' first tables are a
# million rows), so they are encoded here by hand, in protobuf's encoding of RouteTable and
# RouteEntry (proto/skymesh/v1/relay.proto; the tests check the bytes parse to the message
# the generated code builds): a row is encoded once, kept on its Route, and a table is a
# join of its rows. Building RouteEntry messages and copying them into each table cost
# about four times as much.
_LEN, _FIXED64, _VARINT = 2, 1, 0
# field numbers in relay.proto
_MESSAGE_ROUTES = 2  # ControllerMessage.routes
_TABLE_VERSION, _TABLE_NONCE, _TABLE_ROUTES, _TABLE_BASE, _TABLE_REMOVED = 1, 2, 3, 4, 5
_ENTRY_DST, _ENTRY_NEXT_HOP, _ENTRY_PATH, _ENTRY_COST, _ENTRY_ZONE = 1, 2, 3, 4, 5
_ENTRY_BACKUP, _ENTRY_BACKUP_KIND, _ENTRY_BACKUP_COST = 6, 7, 8
_KEY_ZONE, _KEY_DST = 1, 2
_double = struct.Struct("<d").pack


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(field_number: int, wire_type: int) -> bytes:
    return _varint(field_number << 3 | wire_type)


def _framed(field_number: int, body: bytes) -> bytes:
    return _tag(field_number, _LEN) + _varint(len(body)) + body


class _Texts(dict[str | None, bytes]):
    """A string field of one field number, by value, encoded when first asked for (region
    names and zones: a few thousand at most, each in a million rows); None and "" are left
    out, as protobuf leaves out empty strings."""

    def __init__(self, field_number: int) -> None:
        super().__init__({None: b"", "": b""})
        self.tag = _tag(field_number, _LEN)

    def __missing__(self, text: str) -> bytes:
        raw = text.encode()
        encoded = self[text] = self.tag + _varint(len(raw)) + raw
        return encoded


_DST, _NEXT_HOP, _PATH = _Texts(_ENTRY_DST), _Texts(_ENTRY_NEXT_HOP), _Texts(_ENTRY_PATH)
_ZONE, _BACKUP, _BACKUP_KIND = (_Texts(_ENTRY_ZONE), _Texts(_ENTRY_BACKUP),
                                _Texts(_ENTRY_BACKUP_KIND))
_KEY_ZONE_TEXT, _KEY_DST_TEXT = _Texts(_KEY_ZONE), _Texts(_KEY_DST)
_COST_TAG, _BACKUP_COST_TAG = _tag(_ENTRY_COST, _FIXED64), _tag(_ENTRY_BACKUP_COST, _FIXED64)
_ROW_TAG = _tag(_TABLE_ROUTES, _LEN)


def encoded_row(r: Route) -> bytes:
    """`r` as a RouteTable's `routes` field (a RouteEntry), encoded once and kept."""
    if r.encoded:
        return r.encoded
    # to the microsecond; + 0.0: no -0.0, which protobuf would write and compare as set
    cost, backup_cost = round(r.cost_ms, 3) + 0.0, round(r.backup_cost_ms or 0.0, 3) + 0.0
    body = b"".join((
        _DST[r.dst], _NEXT_HOP[r.path[1]], b"".join(map(_PATH.__getitem__, r.path)),
        _COST_TAG + _double(cost) if cost else b"", _ZONE[r.zone],
        _BACKUP[r.backup_next_hop], _BACKUP_KIND[r.backup_kind],
        _BACKUP_COST_TAG + _double(backup_cost) if backup_cost else b""))
    encoded = _ROW_TAG + _varint(len(body)) + body
    r.encoded = encoded
    return encoded


def encode_rows(tables: Mapping[str, Mapping[object, Route]]) -> None:
    """Encode the rows of `tables` not encoded yet (a shell does it beside its event loop,
    before the tables are pushed)."""
    for rows in tables.values():
        for r in rows.values():
            if not r.encoded:
                encoded_row(r)


def route_table(push: Push) -> bytes:
    """`push` as a ControllerMessage carrying its RouteTable, encoded."""
    head = _tag(_TABLE_VERSION, _VARINT) + _varint(push.version)
    if push.nonce:
        head += _framed(_TABLE_NONCE, push.nonce.encode())
    if push.base_version:
        table = b"".join((
            head, *map(encoded_row, push.changes),
            _tag(_TABLE_BASE, _VARINT), _varint(push.base_version),
            *[_framed(_TABLE_REMOVED, _KEY_ZONE_TEXT[z] + _KEY_DST_TEXT[d])
              for z, d in push.removed]))
    else:
        table = b"".join((head, *map(encoded_row, push.rows)))
    return _framed(_MESSAGE_ROUTES, table)


# A peer list is what the controller sends most after route tables: every relay that connects
# gets every other node (a leader taking over 300 relays at once, 90,000 entries), and every
# round's connects go to every relay. An entry is encoded once and kept, by its values.
_MESSAGE_PEERS, _LIST_PEERS = 1, 1  # ControllerMessage.peers, PeerList.peers
_PEER_REGION, _PEER_ADDR, _PEER_NEAR, _PEER_NODE, _PEER_WEIGHT = 1, 2, 3, 4, 5
_PEERS_KEPT = 100_000  # entries kept encoded (a few per node); beyond, the cache starts again
_peer_entries: dict[tuple[str, str, str, bool, float], bytes] = {}


def _peer_entry(region: str, addr: str, node: str, near: bool, weight: float) -> bytes:
    key = (region, addr, node, near, weight)
    if (encoded := _peer_entries.get(key)) is not None:
        return encoded
    if len(_peer_entries) >= _PEERS_KEPT:
        _peer_entries.clear()
    body = b"".join((
        _text(_PEER_REGION, region), _text(_PEER_ADDR, addr),
        _tag(_PEER_NEAR, _VARINT) + b"\x01" if near else b"", _text(_PEER_NODE, node),
        _tag(_PEER_WEIGHT, _FIXED64) + _double(weight) if weight else b""))
    encoded = _peer_entries[key] = _framed(_LIST_PEERS, body)
    return encoded


def _text(field_number: int, text: str) -> bytes:
    return _framed(field_number, text.encode()) if text else b""


def peer_list(msg: Peers) -> bytes:
    """`msg` as a ControllerMessage carrying its PeerList, encoded: its peers by hand, the
    rest by the generated code (a message's fields may come in any order)."""
    near, weights = msg.near, msg.weights
    peers = b"".join([_peer_entry(region, addr, node, region in near,
                                  weights.get(address(region, node), 0.0) if weights else 0.0)
                      for region, addr, node in msg.peers])
    rest = relay_pb2.PeerList(
        probe_interval_s=msg.probe_interval_s,
        report_interval_s=msg.report_interval_s,
        neighbour_probe_interval_s=msg.neighbour_probe_interval_s,
        down_after=msg.down_after,
        degraded_loss=msg.degraded_loss,
        degraded_jitter_ms=msg.degraded_jitter_ms,
        incremental=msg.incremental,
        removed=msg.removed,
        full_report_interval_s=msg.full_report_interval_s,
        report_rtt_fraction=msg.report_rtt_fraction,
        report_rtt_ms=msg.report_rtt_ms,
        report_loss=msg.report_loss,
        partial_mesh_above=msg.partial_mesh_above,
        sample_every_s=msg.sample_every_s,
    ).SerializeToString()
    return _framed(_MESSAGE_PEERS, peers + rest)


def encoded_message(msg: Message) -> bytes:
    """`msg` as the bytes of a ControllerMessage (what the RelayControl service sends)."""
    if isinstance(msg, Push):
        return route_table(msg)
    if isinstance(msg, Peers):
        return peer_list(msg)
    return controller_message(msg).SerializeToString()


def controller_message(msg: Message) -> relay_pb2.ControllerMessage:
    if isinstance(msg, Push):
        return relay_pb2.ControllerMessage.FromString(route_table(msg))
    if isinstance(msg, Peers):
        return relay_pb2.ControllerMessage.FromString(peer_list(msg))
    if isinstance(msg, Members):
        return relay_pb2.ControllerMessage(members=relay_pb2.ChannelMembers(
            zone=msg.zone, channel=msg.channel, regions=msg.regions))
    if isinstance(msg, RelayConfig):
        return relay_pb2.ControllerMessage(config=relay_pb2.RelayConfig(
            app_keys={app: relay_pb2.AppKeys(public_keys=keys)
                      for app, keys in msg.app_keys.items()},
            fabric_key=msg.fabric_key, fabric_epoch=msg.fabric_epoch,
            accepted_fabric_keys=[relay_pb2.FabricKey(epoch=epoch, key=key)
                                  for epoch, key in msg.accepted_keys],
            zones=msg.zones, drained=msg.drained))
    if isinstance(msg, Chaos):
        return relay_pb2.ControllerMessage(chaos=relay_pb2.Chaos(
            drop_peers=msg.drop_peers, drop_all=msg.drop_all, until_unix_s=msg.until_unix_s))
    raise TypeError(f"no wire form for {type(msg).__name__}")


# -- controller -> admin --------------------------------------------------------------------


def event(e: Event) -> admin_pb2.Event:
    return admin_pb2.Event(region=e.region, received_unix_s=e.received_unix_s,
                           event=relay_pb2.RelayEvent(
                               at_unix_s=e.event.at_unix_s, kind=e.event.kind,
                               peer=e.event.peer, routes=e.event.routes,
                               detail=e.event.detail))
