"""The wire contract (proto/skymesh/v1) to the controller core's plain values and back, kept
apart so that the core never sees protobuf and the gRPC services only call these."""

from __future__ import annotations

import weakref
from collections.abc import Iterable

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
from skymesh.v1 import admin_pb2, relay_pb2

# -- relay -> controller --------------------------------------------------------------------


def hello(msg: relay_pb2.Hello) -> Hello:
    return Hello(region=msg.region, node_id=msg.node_id, probe_addr=msg.probe_addr,
                 route_version=msg.route_version, edge_addr=msg.edge_addr,
                 protocol=msg.protocol)


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


# rows of a relay that did not change are the same Route objects push after push (the core
# patches only what changed): each is translated once
_entries: weakref.WeakKeyDictionary[Route, relay_pb2.RouteEntry] = weakref.WeakKeyDictionary()


def route_entry(r: Route) -> relay_pb2.RouteEntry:
    entry = _entries.get(r)
    if entry is None:
        entry = _entries[r] = _route_entry(r)
    return entry


def _route_entry(r: Route) -> relay_pb2.RouteEntry:
    return relay_pb2.RouteEntry(
        dst=r.dst, next_hop=r.next_hop, path=list(r.path), cost_ms=round(r.cost_ms, 3),
        zone=r.zone, backup_next_hop=r.backup_next_hop or "", backup_kind=r.backup_kind,
        backup_cost_ms=round(r.backup_cost_ms or 0.0, 3))


def controller_message(msg: Message) -> relay_pb2.ControllerMessage:
    if isinstance(msg, Push):
        if msg.base_version:
            return relay_pb2.ControllerMessage(routes=relay_pb2.RouteTable(
                version=msg.version, nonce=msg.nonce, base_version=msg.base_version,
                routes=[route_entry(r) for r in msg.changes],
                removed=[relay_pb2.RouteKey(zone=z, dst=d) for z, d in msg.removed]))
        return relay_pb2.ControllerMessage(routes=relay_pb2.RouteTable(
            version=msg.version, nonce=msg.nonce, routes=[route_entry(r) for r in msg.rows]))
    if isinstance(msg, Members):
        return relay_pb2.ControllerMessage(members=relay_pb2.ChannelMembers(
            zone=msg.zone, channel=msg.channel, regions=msg.regions))
    if isinstance(msg, Peers):
        return relay_pb2.ControllerMessage(peers=relay_pb2.PeerList(
            peers=[relay_pb2.Peer(region=region, probe_addr=addr, near=region in msg.near,
                                  node_id=node)
                   for region, addr, node in msg.peers],
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
        ))
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
