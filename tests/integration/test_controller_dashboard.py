"""The live map served by the controller itself (`skymesh controller --dashboard-listen`), a
real controller and relay on loopback with mutual TLS: the page is HTTPS, for admin
certificates of the mesh (a viewer's and an operator's may look; a relay's, another CA's
or none may not), its data comes from the controller's own admin API, and the admin status
says where it is. Also: a relay's health listener is in `admin regions`."""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path

import pytest
from support import cli_json, spawn, try_json, wait_for, write_regions

from skymesh import certs, identity
from skymesh.cli import mesh
from skymesh.net.tls import TlsFiles

MESH = "dash-mesh"


def issue(ca_dir: Path, who: identity.Identity, hosts=()) -> TlsFiles:
    cert, key = certs.issue_identity(ca_dir, ca_dir, who, list(hosts))
    return TlsFiles(ca_dir / certs.BUNDLE, cert, key)


def get(url: str, path: str, files: TlsFiles | None, ca: Path) -> tuple[int, dict]:
    """GET over HTTPS, checking the server against the mesh's CA, presenting `files`."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if files is not None:
        ctx.load_cert_chain(files.cert, files.key)
    host, _, port = url.removeprefix("https://").rstrip("/").rpartition(":")
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        body = reply.read()
        return reply.status, json.loads(body) if body.startswith(b"{") else {}
    finally:
        conn.close()






def test_the_controller_serves_the_map_to_admin_certificates_only(tmp_path, processes):
    ca = tmp_path / "ca"
    certs.ensure_dev_ca(ca, mesh=MESH)
    stranger_ca = tmp_path / "stranger"
    certs.ensure_dev_ca(stranger_ca, mesh=MESH)  # the same mesh name, another CA
    ctl = issue(ca, identity.controller(MESH, "c1"), ["127.0.0.1", "localhost"])
    relay = issue(ca, identity.relay(MESH, "aa", "n1"))
    viewer = issue(ca, identity.admin(MESH, "vic", "viewer"))
    operator = issue(ca, identity.admin(MESH, "olga", "operator"))
    stranger = issue(stranger_ca, identity.admin(MESH, "mallory", "operator"))
    tls = lambda f: ["--ca", str(f.ca), "--cert", str(f.cert), "--key", str(f.key)]  # noqa: E731

    regions = write_regions(tmp_path / "regions", {"aa": (50.0, 8.0), "bb": (48.0, 2.0)})
    port = mesh.free_port()
    address = f"127.0.0.1:{port}"
    processes.append(spawn(["controller", "--listen", address, "--regions", str(regions),
                            "--probe-interval", "0.3", "--dashboard-listen", "127.0.0.1:0",
                            *tls(ctl)], tmp_path / "controller.log"))
    processes.append(spawn(["relay", "--region", "aa", "--controller", address,
                            "--health-listen", "127.0.0.1:0", *tls(relay)],
                           tmp_path / "relay.log"))
    as_viewer = ["--controller", address, *tls(viewer)]

    status = wait_for(lambda: try_json("admin", "status", *as_viewer), 30,
                      "the controller answering")
    url = status["dashboard_url"]
    assert url.startswith("https://127.0.0.1:"), url

    # a viewer and an operator see the mesh, read through the controller's admin API
    def connected() -> dict | None:
        code, state = get(url, "/api/state", viewer, ca / certs.BUNDLE)
        assert code == 200, state
        ids = {r["id"]: r for r in state["regions"]}
        return state if ids.keys() == {"aa", "bb"} and ids["aa"]["state"] == "connected" \
            else None
    wait_for(connected, 30, "region aa connected on the controller's map")
    code, state = get(url, "/api/state", operator, ca / certs.BUNDLE)
    assert code == 200 and len(state["regions"]) == 2
    code, page = get(url, "/api/path?src=aa&dst=bb&zone=nowhere", viewer, ca / certs.BUNDLE)
    assert code == 400 and "nowhere" in page["error"]

    # a relay's certificate is of the mesh, but not an admin's: refused, with the reason
    code, refusal = get(url, "/api/state", relay, ca / certs.BUNDLE)
    assert code == 403 and "relay" in refusal["error"], refusal
    # no certificate, or one of another CA: no TLS session at all
    for files in (None, stranger):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            get(url, "/api/state", files, ca / certs.BUNDLE)

    # the relay's gRPC health listener, where an operator's tools find it
    regions_seen = cli_json("admin", "regions", *as_viewer)
    aa = next(r for r in regions_seen if r["id"] == "aa")
    assert aa["health_addr"].startswith("127.0.0.1:")
    assert aa["nodes"][0]["health_addr"] == aa["health_addr"]
