from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LinkState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINK_STATE_UNSPECIFIED: _ClassVar[LinkState]
    LINK_STATE_UP: _ClassVar[LinkState]
    LINK_STATE_DEGRADED: _ClassVar[LinkState]
    LINK_STATE_DOWN: _ClassVar[LinkState]
LINK_STATE_UNSPECIFIED: LinkState
LINK_STATE_UP: LinkState
LINK_STATE_DEGRADED: LinkState
LINK_STATE_DOWN: LinkState

class RelayMessage(_message.Message):
    __slots__ = ("hello", "report", "ack", "channels", "events")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    report: LinkReport
    ack: RouteAck
    channels: Channels
    events: RelayEvents
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., report: _Optional[_Union[LinkReport, _Mapping]] = ..., ack: _Optional[_Union[RouteAck, _Mapping]] = ..., channels: _Optional[_Union[Channels, _Mapping]] = ..., events: _Optional[_Union[RelayEvents, _Mapping]] = ...) -> None: ...

class RelayEvents(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[RelayEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[RelayEvent, _Mapping]]] = ...) -> None: ...

class RelayEvent(_message.Message):
    __slots__ = ("at_unix_s", "kind", "peer", "routes", "detail")
    AT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    at_unix_s: float
    kind: str
    peer: str
    routes: int
    detail: str
    def __init__(self, at_unix_s: _Optional[float] = ..., kind: _Optional[str] = ..., peer: _Optional[str] = ..., routes: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("region", "node_id", "probe_addr", "route_version", "edge_addr", "protocol", "metrics_addr", "health_addr")
    REGION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PROBE_ADDR_FIELD_NUMBER: _ClassVar[int]
    ROUTE_VERSION_FIELD_NUMBER: _ClassVar[int]
    EDGE_ADDR_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDR_FIELD_NUMBER: _ClassVar[int]
    HEALTH_ADDR_FIELD_NUMBER: _ClassVar[int]
    region: str
    node_id: str
    probe_addr: str
    route_version: int
    edge_addr: str
    protocol: int
    metrics_addr: str
    health_addr: str
    def __init__(self, region: _Optional[str] = ..., node_id: _Optional[str] = ..., probe_addr: _Optional[str] = ..., route_version: _Optional[int] = ..., edge_addr: _Optional[str] = ..., protocol: _Optional[int] = ..., metrics_addr: _Optional[str] = ..., health_addr: _Optional[str] = ...) -> None: ...

class Channels(_message.Message):
    __slots__ = ("channels",)
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[ChannelInterest]
    def __init__(self, channels: _Optional[_Iterable[_Union[ChannelInterest, _Mapping]]] = ...) -> None: ...

class ChannelInterest(_message.Message):
    __slots__ = ("zone", "channel", "subscribers", "publishers")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHERS_FIELD_NUMBER: _ClassVar[int]
    zone: str
    channel: str
    subscribers: bool
    publishers: bool
    def __init__(self, zone: _Optional[str] = ..., channel: _Optional[str] = ..., subscribers: _Optional[bool] = ..., publishers: _Optional[bool] = ...) -> None: ...

class LinkSample(_message.Message):
    __slots__ = ("dst", "rtt_ms", "jitter_ms", "loss", "samples", "lost", "age_s", "state", "min_rtt_ms", "window")
    DST_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    JITTER_MS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    AGE_S_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MIN_RTT_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    dst: str
    rtt_ms: float
    jitter_ms: float
    loss: float
    samples: int
    lost: int
    age_s: float
    state: LinkState
    min_rtt_ms: float
    window: int
    def __init__(self, dst: _Optional[str] = ..., rtt_ms: _Optional[float] = ..., jitter_ms: _Optional[float] = ..., loss: _Optional[float] = ..., samples: _Optional[int] = ..., lost: _Optional[int] = ..., age_s: _Optional[float] = ..., state: _Optional[_Union[LinkState, str]] = ..., min_rtt_ms: _Optional[float] = ..., window: _Optional[int] = ...) -> None: ...

class LinkReport(_message.Message):
    __slots__ = ("links", "counters", "sent_unix_s", "full")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    LINKS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    SENT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    links: _containers.RepeatedCompositeFieldContainer[LinkSample]
    counters: _containers.ScalarMap[str, int]
    sent_unix_s: float
    full: bool
    def __init__(self, links: _Optional[_Iterable[_Union[LinkSample, _Mapping]]] = ..., counters: _Optional[_Mapping[str, int]] = ..., sent_unix_s: _Optional[float] = ..., full: _Optional[bool] = ...) -> None: ...

class RouteAck(_message.Message):
    __slots__ = ("version", "nonce", "accepted", "reason")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    version: int
    nonce: str
    accepted: bool
    reason: str
    def __init__(self, version: _Optional[int] = ..., nonce: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ControllerMessage(_message.Message):
    __slots__ = ("peers", "routes", "config", "members", "chaos", "resync")
    PEERS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    CHAOS_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    peers: PeerList
    routes: RouteTable
    config: RelayConfig
    members: ChannelMembers
    chaos: Chaos
    resync: Resync
    def __init__(self, peers: _Optional[_Union[PeerList, _Mapping]] = ..., routes: _Optional[_Union[RouteTable, _Mapping]] = ..., config: _Optional[_Union[RelayConfig, _Mapping]] = ..., members: _Optional[_Union[ChannelMembers, _Mapping]] = ..., chaos: _Optional[_Union[Chaos, _Mapping]] = ..., resync: _Optional[_Union[Resync, _Mapping]] = ...) -> None: ...

class Resync(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Chaos(_message.Message):
    __slots__ = ("drop_peers", "drop_all", "until_unix_s")
    DROP_PEERS_FIELD_NUMBER: _ClassVar[int]
    DROP_ALL_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    drop_peers: _containers.RepeatedScalarFieldContainer[str]
    drop_all: bool
    until_unix_s: float
    def __init__(self, drop_peers: _Optional[_Iterable[str]] = ..., drop_all: _Optional[bool] = ..., until_unix_s: _Optional[float] = ...) -> None: ...

class AppKeys(_message.Message):
    __slots__ = ("public_keys",)
    PUBLIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    public_keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, public_keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class FabricKey(_message.Message):
    __slots__ = ("epoch", "key")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    key: bytes
    def __init__(self, epoch: _Optional[int] = ..., key: _Optional[bytes] = ...) -> None: ...

class RelayConfig(_message.Message):
    __slots__ = ("app_keys", "fabric_key", "fabric_epoch", "accepted_fabric_keys", "zones", "drained")
    class AppKeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: AppKeys
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AppKeys, _Mapping]] = ...) -> None: ...
    APP_KEYS_FIELD_NUMBER: _ClassVar[int]
    FABRIC_KEY_FIELD_NUMBER: _ClassVar[int]
    FABRIC_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FABRIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    ZONES_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    app_keys: _containers.MessageMap[str, AppKeys]
    fabric_key: bytes
    fabric_epoch: int
    accepted_fabric_keys: _containers.RepeatedCompositeFieldContainer[FabricKey]
    zones: _containers.RepeatedScalarFieldContainer[str]
    drained: bool
    def __init__(self, app_keys: _Optional[_Mapping[str, AppKeys]] = ..., fabric_key: _Optional[bytes] = ..., fabric_epoch: _Optional[int] = ..., accepted_fabric_keys: _Optional[_Iterable[_Union[FabricKey, _Mapping]]] = ..., zones: _Optional[_Iterable[str]] = ..., drained: _Optional[bool] = ...) -> None: ...

class ChannelMembers(_message.Message):
    __slots__ = ("zone", "channel", "regions")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    zone: str
    channel: str
    regions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, zone: _Optional[str] = ..., channel: _Optional[str] = ..., regions: _Optional[_Iterable[str]] = ...) -> None: ...

class Peer(_message.Message):
    __slots__ = ("region", "probe_addr", "near", "node_id", "weight")
    REGION_FIELD_NUMBER: _ClassVar[int]
    PROBE_ADDR_FIELD_NUMBER: _ClassVar[int]
    NEAR_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    region: str
    probe_addr: str
    near: bool
    node_id: str
    weight: float
    def __init__(self, region: _Optional[str] = ..., probe_addr: _Optional[str] = ..., near: _Optional[bool] = ..., node_id: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class PeerList(_message.Message):
    __slots__ = ("peers", "probe_interval_s", "report_interval_s", "neighbour_probe_interval_s", "down_after", "degraded_loss", "degraded_jitter_ms", "incremental", "removed", "full_report_interval_s", "report_rtt_fraction", "report_rtt_ms", "report_loss", "partial_mesh_above", "sample_every_s")
    PEERS_FIELD_NUMBER: _ClassVar[int]
    PROBE_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOUR_PROBE_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    DOWN_AFTER_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_LOSS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_JITTER_MS_FIELD_NUMBER: _ClassVar[int]
    INCREMENTAL_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    FULL_REPORT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    REPORT_RTT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    REPORT_RTT_MS_FIELD_NUMBER: _ClassVar[int]
    REPORT_LOSS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_MESH_ABOVE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_EVERY_S_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    probe_interval_s: float
    report_interval_s: float
    neighbour_probe_interval_s: float
    down_after: int
    degraded_loss: float
    degraded_jitter_ms: float
    incremental: bool
    removed: _containers.RepeatedScalarFieldContainer[str]
    full_report_interval_s: float
    report_rtt_fraction: float
    report_rtt_ms: float
    report_loss: float
    partial_mesh_above: int
    sample_every_s: float
    def __init__(self, peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ..., probe_interval_s: _Optional[float] = ..., report_interval_s: _Optional[float] = ..., neighbour_probe_interval_s: _Optional[float] = ..., down_after: _Optional[int] = ..., degraded_loss: _Optional[float] = ..., degraded_jitter_ms: _Optional[float] = ..., incremental: _Optional[bool] = ..., removed: _Optional[_Iterable[str]] = ..., full_report_interval_s: _Optional[float] = ..., report_rtt_fraction: _Optional[float] = ..., report_rtt_ms: _Optional[float] = ..., report_loss: _Optional[float] = ..., partial_mesh_above: _Optional[int] = ..., sample_every_s: _Optional[float] = ...) -> None: ...

class RouteEntry(_message.Message):
    __slots__ = ("dst", "next_hop", "path", "cost_ms", "zone", "backup_next_hop", "backup_kind", "backup_cost_ms")
    DST_FIELD_NUMBER: _ClassVar[int]
    NEXT_HOP_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    COST_MS_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    BACKUP_NEXT_HOP_FIELD_NUMBER: _ClassVar[int]
    BACKUP_KIND_FIELD_NUMBER: _ClassVar[int]
    BACKUP_COST_MS_FIELD_NUMBER: _ClassVar[int]
    dst: str
    next_hop: str
    path: _containers.RepeatedScalarFieldContainer[str]
    cost_ms: float
    zone: str
    backup_next_hop: str
    backup_kind: str
    backup_cost_ms: float
    def __init__(self, dst: _Optional[str] = ..., next_hop: _Optional[str] = ..., path: _Optional[_Iterable[str]] = ..., cost_ms: _Optional[float] = ..., zone: _Optional[str] = ..., backup_next_hop: _Optional[str] = ..., backup_kind: _Optional[str] = ..., backup_cost_ms: _Optional[float] = ...) -> None: ...

class RouteTable(_message.Message):
    __slots__ = ("version", "nonce", "routes", "base_version", "removed")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    version: int
    nonce: str
    routes: _containers.RepeatedCompositeFieldContainer[RouteEntry]
    base_version: int
    removed: _containers.RepeatedCompositeFieldContainer[RouteKey]
    def __init__(self, version: _Optional[int] = ..., nonce: _Optional[str] = ..., routes: _Optional[_Iterable[_Union[RouteEntry, _Mapping]]] = ..., base_version: _Optional[int] = ..., removed: _Optional[_Iterable[_Union[RouteKey, _Mapping]]] = ...) -> None: ...

class RouteKey(_message.Message):
    __slots__ = ("zone", "dst")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    zone: str
    dst: str
    def __init__(self, zone: _Optional[str] = ..., dst: _Optional[str] = ...) -> None: ...
