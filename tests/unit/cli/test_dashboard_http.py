"""The dashboard's HTTP shell against a fake controller (functions answering as the admin
client does): the page and its files, the JSON, refusals, the Host check and the live
stream. No process, loopback only."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from skymesh.cli import admin
from skymesh.cli.dashboard import Dashboard, Source, loopback_host, parse_listen


class FakeController:
    def __init__(self) -> None:
        self.regions_ = [
            {"id": "a", "name": "A", "country": "DE", "lat": 50, "lon": 8, "connected": True,
             "drained": False, "nodes": []},
            {"id": "b", "name": "B", "country": "JP", "lat": 35, "lon": 139,
             "connected": True, "drained": False, "nodes": []}]
        self.links_ = [{"src": "a", "dst": "b", "rtt_ms": 200.0, "state": "up",
                        "cost_ms": 100.0, "loss": 0.0, "jitter_ms": 0.2, "samples": 9}]
        self.events_: list[dict] = []
        self.down = False

    def source(self) -> Source:
        def status():
            if self.down:
                raise admin.NotAnswering("controller 127.0.0.1:1 is not answering")
            return {"relays": 2, "route_version": 3, "converged": True}

        async def regions():  # a coroutine function is awaited on the loop
            return self.regions_

        def path(src, dst, zone):
            if zone != "global":
                raise admin.AdminError(f"unknown zone {zone} (NOT_FOUND)")
            return {"src": src, "dst": dst, "zone": zone, "reachable": True,
                    "path": [src, dst], "cost_ms": 100.0, "backup_next_hop": None,
                    "backup_kind": "", "version": 3}

        return Source(status=status, regions=regions, links=lambda: self.links_,
                      events=lambda since: [e for e in self.events_ if e["at"] >= since],
                      path=path, zones=lambda: {"policy": "", "zones": [
                          {"name": "global", "regions": ["a", "b"], "connected": 2}]})


async def get(url: str, path: str, host: str | None = None) -> tuple[int, dict, bytes]:
    host_port = url.removeprefix("http://").rstrip("/")
    h, _, p = host_port.rpartition(":")
    reader, writer = await asyncio.open_connection(h, int(p))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host or host_port}\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(x.split(": ", 1) for x in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.fixture
def fake():
    return FakeController()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_page_files_and_json(fake):
    async def go():
        dash = Dashboard(fake.source(), poll_s=0.05)
        url = await dash.start("127.0.0.1", 0)
        try:
            code, headers, body = await get(url, "/")
            assert code == 200 and b"/static/dashboard.js" in body
            assert "default-src 'self'" in headers["Content-Security-Policy"]
            for name in ("dashboard.js", "dashboard.css", "world.json", "LICENSE-world.txt"):
                code, _, body = await get(url, f"/static/{name}")
                assert code == 200 and body, name
            world = json.loads((await get(url, "/static/world.json"))[2])
            assert len(world["rings"]) > 100 and "public domain" in world["source"]
            for bad in ("/static/../dashboard.py", "/../../etc/passwd", "/static/x.js"):
                assert (await get(url, bad))[0] == 404, bad
            code, _, body = await get(url, "/api/state")
            state = json.loads(body)
            assert code == 200 and [r["id"] for r in state["regions"]] == ["a", "b"]
            assert state["links"][0]["rtt_ms"] == 200.0 and state["status"]["route_version"]
            code, _, body = await get(url, "/api/path?src=a&dst=b&zone=global")
            assert code == 200 and json.loads(body)["path"] == ["a", "b"]
            code, _, body = await get(url, "/api/path?src=a&dst=b&zone=mars")
            assert code == 400 and "unknown zone" in json.loads(body)["error"]
            assert (await get(url, "/api/path?src=a"))[0] == 400
            code, _, body = await get(url, "/api/zones")
            assert json.loads(body)["zones"][0]["name"] == "global"
            # a page of another site whose name resolves here (DNS rebinding) is refused
            assert (await get(url, "/api/state", host="evil.example:80"))[0] == 403
            fake.down = True
            await asyncio.sleep(0.2)
            code, _, body = await get(url, "/api/state")
            assert code == 200 and "not answering" in json.loads(body)["error"]
        finally:
            await dash.close()
    run(go())


def test_the_stream_sends_the_state_then_changes_and_events(fake):
    async def go():
        dash = Dashboard(fake.source(), poll_s=0.05)
        url = await dash.start("127.0.0.1", 0)
        h, _, p = url.removeprefix("http://").rstrip("/").rpartition(":")
        try:
            await get(url, "/api/state")  # a first poll, so that the stream begins with it
            reader, writer = await asyncio.open_connection(h, int(p))
            writer.write(f"GET /events HTTP/1.1\r\nHost: {h}:{p}\r\n\r\n".encode())
            await writer.drain()
            messages = []

            async def until(kind):
                while True:
                    block = (await reader.readuntil(b"\n\n")).decode()
                    if block.startswith("event: "):
                        head, _, data = block.partition("\ndata: ")
                        messages.append((head.removeprefix("event: "), json.loads(data)))
                        if messages[-1][0] == kind:
                            return messages[-1][1]
            hello = await until("hello")
            assert [r["id"] for r in hello["state"]["regions"]] == ["a", "b"]
            fake.regions_[1]["connected"] = False
            fake.links_ = []
            fake.events_.append({"at": time.time(), "region": "controller",
                                 "kind": "relay-disconnected", "peer": "b", "detail": "n1",
                                 "routes": 0, "received": time.time()})
            state = await until("state")
            assert state["links"][0]["state"] == "down"
            assert state["regions"][1]["state"] == "unreachable"
            e = await until("event")
            assert e["kind"] == "relay-disconnected"
            drill = await until("drill")
            assert drill["targets"] == ["b"] and drill["phase"] == "failure"
            writer.close()
        finally:
            await dash.close()
    run(go())


def test_listen_and_host_parsing():
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:8000") == ("::1", 8000)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    with pytest.raises(ValueError):
        parse_listen("127.0.0.1:http")
    assert loopback_host("127.0.0.1:8470") and loopback_host("localhost")
    assert loopback_host("[::1]:8470") and loopback_host("localhost:1")
    assert not loopback_host("evil.example:8470") and not loopback_host("10.0.0.1")
    assert not loopback_host("")
