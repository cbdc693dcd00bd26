"""skymesh/metrics.py: the families follow Prometheus' naming rules, the rules catch what
breaks them, and the histogram the cores keep counts as Prometheus does; and the scrape
endpoint (skymesh/net/metricsserver.py) answers on loopback."""

from __future__ import annotations

import asyncio
import math

from prometheus_client.core import CounterMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from skymesh import metrics as m
from skymesh.net import metricsserver


def test_every_family_follows_the_naming_rules():
    assert m.naming_problems(m.RELAY + m.CONTROLLER) == []
    names = [f.name for f in m.RELAY + m.CONTROLLER]
    assert len(names) == len(set(names))


def test_the_rules_catch_what_breaks_them():
    bad = (m.Family("skymesh_link_rtt_ms", m.GAUGE, "x"),
           m.Family("skymesh_probes_sent", m.COUNTER, "x"),
           m.Family("skymesh_sessions_total", m.GAUGE, "x"),
           m.Family("relay_up", m.GAUGE, "x"),
           m.Family("skymesh_join_seconds", m.HISTOGRAM, "x", ("channel",)),
           m.Family("skymesh_load_ratio", m.HISTOGRAM, "x"),
           m.Family("skymesh_nothing", m.GAUGE, " "),
           m.Family("skymesh_link_rtt_seconds", m.GAUGE, "again"))
    found = "\n".join(m.naming_problems(bad + (m.LINK_RTT,)))
    for needle in ("skymesh_link_rtt_ms: not a base unit", "skymesh_probes_sent: a counter",
                   "skymesh_sessions_total: only counters", "relay_up: not skymesh_",
                   "unbounded sets ['channel']", "skymesh_load_ratio: a histogram",
                   "skymesh_nothing: no help", "skymesh_link_rtt_seconds: defined twice"):
        assert needle in found


def test_the_histogram_counts_cumulatively():
    h = m.Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 2.0, 3.0):
        h.observe(v)
    assert h.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 5)]
    assert h.count == 5 and math.isclose(h.sum, 5.65)
    assert m.Histogram().cumulative()[-1] == ("+Inf", 0)


class Fixed:
    def collect(self):
        c = CounterMetricFamily("skymesh_things", "things", labels=["region"])
        c.add_metric(["fra"], 3)
        yield c


async def http(address: str, request: bytes) -> bytes:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    writer.write_eof()  # all it will say
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


def test_the_endpoint_serves_metrics_and_refuses_the_rest():
    async def main() -> None:
        server = await metricsserver.serve("127.0.0.1:0",
                                           metricsserver.registry_with(Fixed()))
        address = metricsserver.bound_address(server)
        try:
            ok = await http(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            head, _, body = ok.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            families = {f.name: f for f in text_string_to_metric_families(body.decode())}
            assert families["skymesh_things"].samples[0].value == 3
            assert "process_cpu_seconds" in families
            assert (await http(address, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(
                b"HTTP/1.1 405")
            assert (await http(address, b"GET /x HTTP/1.1\r\n\r\n")).startswith(
                b"HTTP/1.1 404")
            headed = await http(address, b"HEAD /metrics HTTP/1.1\r\n\r\n")
            assert headed.startswith(b"HTTP/1.1 200") and headed.endswith(b"\r\n\r\n")
            # a request cut short is dropped
            assert (await http(address, b"GET")) == b""
        finally:
            server.close()
            await server.wait_closed()
    asyncio.run(main())
