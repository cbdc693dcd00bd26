from skymesh.v1 import relay_pb2 as _relay_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("relays", "regions", "route_version", "converged", "links_up", "links_measured", "links_expected", "relays_acked", "uptime_s", "converged_for_s", "rejected_samples", "rejected_tables", "refused", "reports", "samples", "reports_coalesced", "report_delay_p50_ms", "report_delay_p99_ms", "report_delay_max_ms", "recomputes", "recompute_ms", "partial_mesh", "replicas", "leader", "store", "replica", "metrics_addr", "dashboard_url")
    class RefusedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RELAYS_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    LINKS_UP_FIELD_NUMBER: _ClassVar[int]
    LINKS_MEASURED_FIELD_NUMBER: _ClassVar[int]
    LINKS_EXPECTED_FIELD_NUMBER: _ClassVar[int]
    RELAYS_ACKED_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FOR_S_FIELD_NUMBER: _ClassVar[int]
    REJECTED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_TABLES_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    REPORTS_COALESCED_FIELD_NUMBER: _ClassVar[int]
    REPORT_DELAY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    REPORT_DELAY_P99_MS_FIELD_NUMBER: _ClassVar[int]
    REPORT_DELAY_MAX_MS_FIELD_NUMBER: _ClassVar[int]
    RECOMPUTES_FIELD_NUMBER: _ClassVar[int]
    RECOMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_MESH_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDR_FIELD_NUMBER: _ClassVar[int]
    DASHBOARD_URL_FIELD_NUMBER: _ClassVar[int]
    relays: int
    regions: int
    route_version: int
    converged: bool
    links_up: int
    links_measured: int
    links_expected: int
    relays_acked: int
    uptime_s: float
    converged_for_s: float
    rejected_samples: int
    rejected_tables: int
    refused: _containers.ScalarMap[str, int]
    reports: int
    samples: int
    reports_coalesced: int
    report_delay_p50_ms: float
    report_delay_p99_ms: float
    report_delay_max_ms: float
    recomputes: int
    recompute_ms: float
    partial_mesh: bool
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaInfo]
    leader: str
    store: StoreInfo
    replica: str
    metrics_addr: str
    dashboard_url: str
    def __init__(self, relays: _Optional[int] = ..., regions: _Optional[int] = ..., route_version: _Optional[int] = ..., converged: _Optional[bool] = ..., links_up: _Optional[int] = ..., links_measured: _Optional[int] = ..., links_expected: _Optional[int] = ..., relays_acked: _Optional[int] = ..., uptime_s: _Optional[float] = ..., converged_for_s: _Optional[float] = ..., rejected_samples: _Optional[int] = ..., rejected_tables: _Optional[int] = ..., refused: _Optional[_Mapping[str, int]] = ..., reports: _Optional[int] = ..., samples: _Optional[int] = ..., reports_coalesced: _Optional[int] = ..., report_delay_p50_ms: _Optional[float] = ..., report_delay_p99_ms: _Optional[float] = ..., report_delay_max_ms: _Optional[float] = ..., recomputes: _Optional[int] = ..., recompute_ms: _Optional[float] = ..., partial_mesh: _Optional[bool] = ..., replicas: _Optional[_Iterable[_Union[ReplicaInfo, _Mapping]]] = ..., leader: _Optional[str] = ..., store: _Optional[_Union[StoreInfo, _Mapping]] = ..., replica: _Optional[str] = ..., metrics_addr: _Optional[str] = ..., dashboard_url: _Optional[str] = ...) -> None: ...

class ReplicaInfo(_message.Message):
    __slots__ = ("id", "address", "leader", "healthy")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    leader: bool
    healthy: bool
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., leader: _Optional[bool] = ..., healthy: _Optional[bool] = ...) -> None: ...

class StoreInfo(_message.Message):
    __slots__ = ("kind", "where", "healthy", "error")
    KIND_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    kind: str
    where: str
    healthy: bool
    error: str
    def __init__(self, kind: _Optional[str] = ..., where: _Optional[str] = ..., healthy: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class RegionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegionInfo(_message.Message):
    __slots__ = ("id", "name", "country", "lat", "lon", "tags", "connected", "probe_addr", "route_version", "hello_version", "counters", "edge_addr", "drained", "nodes", "metrics_addr", "health_addr")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LON_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    PROBE_ADDR_FIELD_NUMBER: _ClassVar[int]
    ROUTE_VERSION_FIELD_NUMBER: _ClassVar[int]
    HELLO_VERSION_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    EDGE_ADDR_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDR_FIELD_NUMBER: _ClassVar[int]
    HEALTH_ADDR_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    country: str
    lat: float
    lon: float
    tags: _containers.RepeatedScalarFieldContainer[str]
    connected: bool
    probe_addr: str
    route_version: int
    hello_version: int
    counters: _containers.ScalarMap[str, int]
    edge_addr: str
    drained: bool
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    metrics_addr: str
    health_addr: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., country: _Optional[str] = ..., lat: _Optional[float] = ..., lon: _Optional[float] = ..., tags: _Optional[_Iterable[str]] = ..., connected: _Optional[bool] = ..., probe_addr: _Optional[str] = ..., route_version: _Optional[int] = ..., hello_version: _Optional[int] = ..., counters: _Optional[_Mapping[str, int]] = ..., edge_addr: _Optional[str] = ..., drained: _Optional[bool] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., metrics_addr: _Optional[str] = ..., health_addr: _Optional[str] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "probe_addr", "edge_addr", "route_version", "lead", "sessions", "counters", "transit_weight", "replica", "metrics_addr", "health_addr")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PROBE_ADDR_FIELD_NUMBER: _ClassVar[int]
    EDGE_ADDR_FIELD_NUMBER: _ClassVar[int]
    ROUTE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LEAD_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    TRANSIT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDR_FIELD_NUMBER: _ClassVar[int]
    HEALTH_ADDR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    probe_addr: str
    edge_addr: str
    route_version: int
    lead: bool
    sessions: int
    counters: _containers.ScalarMap[str, int]
    transit_weight: float
    replica: str
    metrics_addr: str
    health_addr: str
    def __init__(self, node_id: _Optional[str] = ..., probe_addr: _Optional[str] = ..., edge_addr: _Optional[str] = ..., route_version: _Optional[int] = ..., lead: _Optional[bool] = ..., sessions: _Optional[int] = ..., counters: _Optional[_Mapping[str, int]] = ..., transit_weight: _Optional[float] = ..., replica: _Optional[str] = ..., metrics_addr: _Optional[str] = ..., health_addr: _Optional[str] = ...) -> None: ...

class RegionsReply(_message.Message):
    __slots__ = ("regions",)
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    regions: _containers.RepeatedCompositeFieldContainer[RegionInfo]
    def __init__(self, regions: _Optional[_Iterable[_Union[RegionInfo, _Mapping]]] = ...) -> None: ...

class LinksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LinkInfo(_message.Message):
    __slots__ = ("src", "sample", "cost_ms", "suppressed")
    SRC_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    COST_MS_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    src: str
    sample: _relay_pb2.LinkSample
    cost_ms: float
    suppressed: bool
    def __init__(self, src: _Optional[str] = ..., sample: _Optional[_Union[_relay_pb2.LinkSample, _Mapping]] = ..., cost_ms: _Optional[float] = ..., suppressed: _Optional[bool] = ...) -> None: ...

class LinksReply(_message.Message):
    __slots__ = ("links",)
    LINKS_FIELD_NUMBER: _ClassVar[int]
    links: _containers.RepeatedCompositeFieldContainer[LinkInfo]
    def __init__(self, links: _Optional[_Iterable[_Union[LinkInfo, _Mapping]]] = ...) -> None: ...

class RoutesRequest(_message.Message):
    __slots__ = ("region", "zone")
    REGION_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    region: str
    zone: str
    def __init__(self, region: _Optional[str] = ..., zone: _Optional[str] = ...) -> None: ...

class RoutesReply(_message.Message):
    __slots__ = ("region", "version", "routes")
    REGION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    region: str
    version: int
    routes: _containers.RepeatedCompositeFieldContainer[_relay_pb2.RouteEntry]
    def __init__(self, region: _Optional[str] = ..., version: _Optional[int] = ..., routes: _Optional[_Iterable[_Union[_relay_pb2.RouteEntry, _Mapping]]] = ...) -> None: ...

class PathRequest(_message.Message):
    __slots__ = ("src", "dst", "zone")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    zone: str
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ..., zone: _Optional[str] = ...) -> None: ...

class PathReply(_message.Message):
    __slots__ = ("src", "dst", "path", "cost_ms", "reachable", "reason", "version", "zone", "backup_next_hop", "backup_kind")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    COST_MS_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    BACKUP_NEXT_HOP_FIELD_NUMBER: _ClassVar[int]
    BACKUP_KIND_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    path: _containers.RepeatedScalarFieldContainer[str]
    cost_ms: float
    reachable: bool
    reason: str
    version: int
    zone: str
    backup_next_hop: str
    backup_kind: str
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ..., path: _Optional[_Iterable[str]] = ..., cost_ms: _Optional[float] = ..., reachable: _Optional[bool] = ..., reason: _Optional[str] = ..., version: _Optional[int] = ..., zone: _Optional[str] = ..., backup_next_hop: _Optional[str] = ..., backup_kind: _Optional[str] = ...) -> None: ...

class ZonesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ZoneInfo(_message.Message):
    __slots__ = ("name", "description", "regions", "connected")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    regions: _containers.RepeatedScalarFieldContainer[str]
    connected: int
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., regions: _Optional[_Iterable[str]] = ..., connected: _Optional[int] = ...) -> None: ...

class ZonesReply(_message.Message):
    __slots__ = ("zones", "policy")
    ZONES_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    zones: _containers.RepeatedCompositeFieldContainer[ZoneInfo]
    policy: str
    def __init__(self, zones: _Optional[_Iterable[_Union[ZoneInfo, _Mapping]]] = ..., policy: _Optional[str] = ...) -> None: ...

class FailoverRequest(_message.Message):
    __slots__ = ("region", "link_src", "link_dst", "zone")
    REGION_FIELD_NUMBER: _ClassVar[int]
    LINK_SRC_FIELD_NUMBER: _ClassVar[int]
    LINK_DST_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    region: str
    link_src: str
    link_dst: str
    zone: str
    def __init__(self, region: _Optional[str] = ..., link_src: _Optional[str] = ..., link_dst: _Optional[str] = ..., zone: _Optional[str] = ...) -> None: ...

class RouteChange(_message.Message):
    __slots__ = ("zone", "src", "dst", "old_path", "new_path", "old_cost_ms", "new_cost_ms", "reachable", "reason")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    OLD_PATH_FIELD_NUMBER: _ClassVar[int]
    NEW_PATH_FIELD_NUMBER: _ClassVar[int]
    OLD_COST_MS_FIELD_NUMBER: _ClassVar[int]
    NEW_COST_MS_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    zone: str
    src: str
    dst: str
    old_path: _containers.RepeatedScalarFieldContainer[str]
    new_path: _containers.RepeatedScalarFieldContainer[str]
    old_cost_ms: float
    new_cost_ms: float
    reachable: bool
    reason: str
    def __init__(self, zone: _Optional[str] = ..., src: _Optional[str] = ..., dst: _Optional[str] = ..., old_path: _Optional[_Iterable[str]] = ..., new_path: _Optional[_Iterable[str]] = ..., old_cost_ms: _Optional[float] = ..., new_cost_ms: _Optional[float] = ..., reachable: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class FailoverReply(_message.Message):
    __slots__ = ("failure", "routes_total", "changes", "lost_endpoints", "version")
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    ROUTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    LOST_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    failure: str
    routes_total: int
    changes: _containers.RepeatedCompositeFieldContainer[RouteChange]
    lost_endpoints: int
    version: int
    def __init__(self, failure: _Optional[str] = ..., routes_total: _Optional[int] = ..., changes: _Optional[_Iterable[_Union[RouteChange, _Mapping]]] = ..., lost_endpoints: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class ChannelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ChannelInfo(_message.Message):
    __slots__ = ("zone", "channel", "publisher_regions", "subscriber_regions", "subscriber_nodes")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_REGIONS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_REGIONS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_NODES_FIELD_NUMBER: _ClassVar[int]
    zone: str
    channel: str
    publisher_regions: _containers.RepeatedScalarFieldContainer[str]
    subscriber_regions: _containers.RepeatedScalarFieldContainer[str]
    subscriber_nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, zone: _Optional[str] = ..., channel: _Optional[str] = ..., publisher_regions: _Optional[_Iterable[str]] = ..., subscriber_regions: _Optional[_Iterable[str]] = ..., subscriber_nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class ChannelsReply(_message.Message):
    __slots__ = ("channels",)
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[ChannelInfo]
    def __init__(self, channels: _Optional[_Iterable[_Union[ChannelInfo, _Mapping]]] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("region", "drained")
    REGION_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    region: str
    drained: bool
    def __init__(self, region: _Optional[str] = ..., drained: _Optional[bool] = ...) -> None: ...

class DrainReply(_message.Message):
    __slots__ = ("region", "drained", "version", "drained_regions")
    REGION_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DRAINED_REGIONS_FIELD_NUMBER: _ClassVar[int]
    region: str
    drained: bool
    version: int
    drained_regions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, region: _Optional[str] = ..., drained: _Optional[bool] = ..., version: _Optional[int] = ..., drained_regions: _Optional[_Iterable[str]] = ...) -> None: ...

class EventsRequest(_message.Message):
    __slots__ = ("since_unix_s",)
    SINCE_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    since_unix_s: float
    def __init__(self, since_unix_s: _Optional[float] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("region", "event", "received_unix_s")
    REGION_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    region: str
    event: _relay_pb2.RelayEvent
    received_unix_s: float
    def __init__(self, region: _Optional[str] = ..., event: _Optional[_Union[_relay_pb2.RelayEvent, _Mapping]] = ..., received_unix_s: _Optional[float] = ...) -> None: ...

class EventsReply(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class ChaosRequest(_message.Message):
    __slots__ = ("region", "chaos")
    REGION_FIELD_NUMBER: _ClassVar[int]
    CHAOS_FIELD_NUMBER: _ClassVar[int]
    region: str
    chaos: _relay_pb2.Chaos
    def __init__(self, region: _Optional[str] = ..., chaos: _Optional[_Union[_relay_pb2.Chaos, _Mapping]] = ...) -> None: ...

class ChaosReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditRequest(_message.Message):
    __slots__ = ("since_unix_s", "limit")
    SINCE_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    since_unix_s: float
    limit: int
    def __init__(self, since_unix_s: _Optional[float] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("at_unix_s", "actor", "action", "target", "detail")
    AT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    at_unix_s: float
    actor: str
    action: str
    target: str
    detail: str
    def __init__(self, at_unix_s: _Optional[float] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class AuditReply(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class RotateFabricKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateFabricKeyReply(_message.Message):
    __slots__ = ("epoch", "sealing_epoch", "seals_in_s", "retires_in_s", "epochs")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEALING_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEALS_IN_S_FIELD_NUMBER: _ClassVar[int]
    RETIRES_IN_S_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    sealing_epoch: int
    seals_in_s: float
    retires_in_s: float
    epochs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, epoch: _Optional[int] = ..., sealing_epoch: _Optional[int] = ..., seals_in_s: _Optional[float] = ..., retires_in_s: _Optional[float] = ..., epochs: _Optional[_Iterable[int]] = ...) -> None: ...
