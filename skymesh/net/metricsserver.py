"""The Prometheus scrape endpoint of a skymesh process: `GET /metrics` over HTTP on the
process's own event loop. prometheus_client's own server answers from a thread, which would
read a relay's statistics while the loop changes them; here a scrape is one more callback of
the loop, and a process nobody scrapes does nothing."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from skymesh import metrics as m

log = logging.getLogger("skymesh.metrics")

MAX_REQUEST_BYTES = 8192
READ_TIMEOUT_S = 5.0


def registry_with(*collectors) -> CollectorRegistry:
    """A registry of `collectors` and the process's own (CPU, memory, open files, Python)."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    for c in collectors:
        registry.register(c)
    return registry


def family(f: m.Family, labels: tuple[str, ...] | None = None) -> Metric:
    """An empty family of `f`'s kind, name, help and labels."""
    labels = f.labels if labels is None else labels
    name = f.name.removesuffix("_total") if f.kind == m.COUNTER else f.name
    kind = {m.COUNTER: CounterMetricFamily, m.GAUGE: GaugeMetricFamily,
            m.HISTOGRAM: HistogramMetricFamily}[f.kind]
    return kind(name, f.help, labels=list(labels))


def histogram(f: m.Family, h: m.Histogram, *values: str) -> Metric:
    out = family(f)
    out.add_metric(list(values), h.cumulative(), h.sum)
    return out


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


async def serve(address: str, registry: CollectorRegistry) -> asyncio.Server:
    """Serve `registry` at http://ADDRESS/metrics until the server is closed."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if len(head) > MAX_REQUEST_BYTES:
                status, body, kind = "431 Request Header Fields Too Large", b"", "text/plain"
            elif method not in ("GET", "HEAD"):
                status, body, kind = "405 Method Not Allowed", b"GET only\n", "text/plain"
            elif path.split("?")[0] in ("/metrics", "/"):
                status, body, kind = "200 OK", generate_latest(registry), CONTENT_TYPE_LATEST
            else:
                status, body, kind = "404 Not Found", b"see /metrics\n", "text/plain"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: "
                         f"{len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + (body if method != "HEAD" else b""))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError, ValueError):
            pass
        except Exception:  # a collector's bug must not end the process
            log.exception("metrics scrape failed")
        finally:
            writer.close()

    host, port = _split(address)
    server = await asyncio.start_server(handle, host, port, limit=MAX_REQUEST_BYTES)
    bound = server.sockets[0].getsockname()
    log.info("metrics on http://%s:%d/metrics", bound[0], bound[1])
    return server


def bound_address(server: asyncio.Server) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"{host}:{port}"
