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


# -- HTTPS for admin certificates (a controller's dashboard) ---------------------------------

def _pki(tmp_path):
    from skymesh import certs, identity
    from skymesh.net.tls import TlsFiles

    def issue(who, hosts=()):
        cert, key = certs.issue_identity(tmp_path, tmp_path, who, list(hosts))
        return TlsFiles(tmp_path / certs.BUNDLE, cert, key)

    certs.ensure_dev_ca(tmp_path, mesh="m")
    return {"server": issue(identity.controller("m", "c1"), ["127.0.0.1"]),
            "viewer": issue(identity.admin("m", "vic", "viewer")),
            "operator": issue(identity.admin("m", "olga", "operator")),
            "relay": issue(identity.relay("m", "a", "n1")),
            "issue": issue}


async def https_get(url: str, path: str, files) -> tuple[int, dict, bytes]:
    """GET over TLS trusting the test CA, presenting `files` (None: no certificate); also the
    serial number of the certificate the server showed."""
    import ssl

    from cryptography import x509

    ctx = ssl.create_default_context(cafile=str(files.ca if files else TLS_CA[0]))
    if files is not None:
        ctx.load_cert_chain(files.cert, files.key)
    h, _, p = url.removeprefix("https://").rstrip("/").rpartition(":")
    reader, writer = await asyncio.open_connection(h, int(p), ssl=ctx)
    shown = x509.load_der_x509_certificate(
        writer.get_extra_info("ssl_object").getpeercert(binary_form=True)).serial_number
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {h}\r\n\r\n".encode())
    await writer.drain()
    try:
        raw = await reader.read()
    except (ssl.SSLError, ConnectionError):
        raw = b""
    writer.close()
    if not raw:  # TLS 1.3: the server refuses the client's certificate after the handshake
        return 0, {}, shown
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), shown


TLS_CA: list = []


def test_https_admits_admin_certificates_and_reloads_rotated_files(fake, tmp_path):
    import ssl

    from skymesh.cli.dashboard import ServerTls

    pki = _pki(tmp_path)
    TLS_CA[:] = [pki["viewer"].ca]

    async def go():
        tls = ServerTls(pki["server"], "m")
        dash = Dashboard(fake.source(), poll_s=0.05)
        url = await dash.start("127.0.0.1", 0, tls)
        assert url.startswith("https://127.0.0.1:")
        try:
            for who in ("viewer", "operator"):
                code, body, first = await https_get(url, "/api/zones", pki[who])
                assert code == 200 and body["zones"][0]["name"] == "global"
            code, body, _ = await https_get(url, "/api/zones", pki["relay"])
            assert code == 403 and "relay/a/n1 is a relay" in body["error"]
            try:
                code, _, _ = await https_get(url, "/api/zones", None)
            except (ssl.SSLError, ConnectionError):
                code = 0
            assert code == 0  # no certificate: no answer at all
            # the certificate is reissued in place: the next handshake shows the new one
            from skymesh import identity
            assert not tls.refresh()
            pki["issue"](identity.controller("m", "c1"), ["127.0.0.1"])
            assert tls.refresh()
            code, _, second = await https_get(url, "/api/zones", pki["viewer"])
            assert code == 200 and second != first
        finally:
            await dash.close()
    run(go())
