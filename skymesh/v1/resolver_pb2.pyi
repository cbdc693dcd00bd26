from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResolveRequest(_message.Message):
    __slots__ = ("token", "address", "count", "region")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    token: str
    address: str
    count: int
    region: str
    def __init__(self, token: _Optional[str] = ..., address: _Optional[str] = ..., count: _Optional[int] = ..., region: _Optional[str] = ...) -> None: ...

class ResolvedNode(_message.Message):
    __slots__ = ("node_id", "address", "load")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    load: int
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., load: _Optional[int] = ...) -> None: ...

class ResolvedEdge(_message.Message):
    __slots__ = ("region", "nodes", "distance_km", "rtt_ms", "load", "reason")
    REGION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_KM_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    region: str
    nodes: _containers.RepeatedCompositeFieldContainer[ResolvedNode]
    distance_km: float
    rtt_ms: float
    load: int
    reason: str
    def __init__(self, region: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[ResolvedNode, _Mapping]]] = ..., distance_km: _Optional[float] = ..., rtt_ms: _Optional[float] = ..., load: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ResolveReply(_message.Message):
    __slots__ = ("address", "located", "lat", "lon", "accuracy_km", "country", "city", "zone", "edges")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LOCATED_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LON_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_KM_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    address: str
    located: bool
    lat: float
    lon: float
    accuracy_km: float
    country: str
    city: str
    zone: str
    edges: _containers.RepeatedCompositeFieldContainer[ResolvedEdge]
    def __init__(self, address: _Optional[str] = ..., located: _Optional[bool] = ..., lat: _Optional[float] = ..., lon: _Optional[float] = ..., accuracy_km: _Optional[float] = ..., country: _Optional[str] = ..., city: _Optional[str] = ..., zone: _Optional[str] = ..., edges: _Optional[_Iterable[_Union[ResolvedEdge, _Mapping]]] = ...) -> None: ...
