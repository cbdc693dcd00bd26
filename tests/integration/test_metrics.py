"""Prometheus metrics of a local mesh under traffic (relay/metrics.py, controller/metrics.py):
every family of skymesh/metrics.py is served with its type by the processes it belongs to,
values move with what happens (datagrams forwarded and delivered, a killed peer's link
down), and every process says where its metrics are (`admin status`, `admin regions`)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from support import cli_json, run_cli, wait_for

from skymesh import metrics as m

REGIONS = "frankfurt,london,new-york"


def scrape(address: str) -> dict:
    """{family name: Metric} of the text at http://ADDRESS/metrics."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict, f: m.Family, suffix: str = "", **labels: str) -> float | None:
    """The sample of family `f` (counters: its _total) whose labels include `labels`."""
    name = f.name.removesuffix("_total") if f.kind == m.COUNTER else f.name
    want = f.name if f.kind == m.COUNTER else f.name + suffix
    for s in families[name].samples:
        if s.name == want and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def addresses() -> tuple[str, dict[str, str]]:
    status = cli_json("admin", "status")
    regions = {r["id"]: r["metrics_addr"] for r in cli_json("admin", "regions")
               if r["connected"]}
    return status["metrics_addr"], regions


def test_metrics_of_a_mesh_under_traffic_and_a_killed_peer(start_mesh):
    start_mesh("--only", REGIONS)
    controller, relays = addresses()
    # every family served with its type (one mesh for both parts: each costs a start)
    assert controller and set(relays) == set(REGIONS.split(","))
    for address, families in [(controller, m.CONTROLLER), *((a, m.RELAY)
                                                              for a in relays.values())]:
        served = scrape(address)
        for f in families:
            name = f.name.removesuffix("_total") if f.kind == m.COUNTER else f.name
            assert name in served, f"{f.name} not served at {address}"
            assert served[name].type == f.kind, f"{f.name}: {served[name].type}"
        # the process's own, beside skymesh's
        assert "process_cpu_seconds" in served

    # values that move with traffic and a killed peer
    before = scrape(relays["london"])
    sent_before = value(before, m.FABRIC_DELIVERED, zone="global") or 0
    # a stream from frankfurt to the others: london delivers what it receives
    demo = run_cli("demo", "--from", "frankfurt", "--to", "london,new-york", "--duration", "2",
                   "--json", timeout=90)
    assert demo.returncode == 0, demo.stderr
    after = scrape(relays["london"])
    assert value(after, m.FABRIC_DELIVERED, zone="global") > sent_before
    assert value(after, m.FABRIC_RECEIVED, zone="global") > 0
    assert value(after, m.EDGE_JOINS) >= 1
    up = value(after, m.LINK_STATE, region="london", peer_region="new-york", state="up")
    assert up == 1.0
    assert 0 < value(after, m.LINK_RTT, peer_region="new-york") < 1.0
    assert value(after, m.PROBES_SENT, peer_region="new-york") > 0
    ctl = scrape(controller)
    assert value(ctl, m.RELAYS_CONNECTED) == 3
    assert value(ctl, m.LEADER) == 1
    assert value(ctl, m.ROUTE_COMPUTATION, "_count") >= 1
    assert value(ctl, m.PUSH_ACK, "_count") >= 1

    assert run_cli("mesh", "kill", "new-york").returncode == 0

    def down() -> bool:
        families = scrape(relays["london"])
        return value(families, m.LINK_STATE, peer_region="new-york", state="down") == 1.0
    wait_for(down, 15, "london's link to new-york down in its metrics")
    wait_for(lambda: value(scrape(controller), m.REGIONS_CONNECTED, region="new-york") == 0,
             15, "the controller's metrics to lose new-york")
    assert value(scrape(controller), m.EVENTS, kind="link-down") >= 1
