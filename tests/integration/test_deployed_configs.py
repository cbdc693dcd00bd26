"""A mesh started the way a deployment starts it: an operator's configuration files (not the
local mesh's), the certificates `skymesh certs issue --for-catalogue` writes for terraform,
relays bound to every address (0.0.0.0) that advertise the address the others reach them
at, and clients that check the edges' certificates for the deployment's edge name.

What stands in for the Internet: loopback. The relays bind 0.0.0.0 and advertise 127.0.0.1,
the address their replies leave from (the kernel picks 127.0.0.1 as the source of anything
sent over loopback; on an EC2 instance, replies leave from its private address, which the
Elastic IP it advertises is translated to). The controller's certificate names 127.0.0.1:
the deployment's names (c1.DOMAIN) are mapped to addresses by /etc/hosts on its machines,
which a test cannot change."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, cli_json, run_cli, try_json, wait_for

from skymesh.cli.mesh import free_port

DOMAIN = "skymesh.test"
REGIONS = ("london", "tokyo")
ADVERTISED = {"london": "127.0.0.1", "tokyo": "127.0.0.1"}


def start(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "skymesh", *argv], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)


@pytest.fixture
def deployment(tmp_path: Path, home: Path):
    catalogue = tmp_path / "regions"
    catalogue.mkdir()
    for rid in REGIONS:
        shutil.copy(ROOT / "regions" / f"{rid}.yaml", catalogue)
    ca, out = tmp_path / "ca", tmp_path / "certs"
    cli_json("certs", "init", "--dir", str(ca))
    issued = cli_json("certs", "issue", "--for-catalogue", str(catalogue), "--out", str(out),
                      "--dir", str(ca), "--domain", DOMAIN, "--controllers", "1",
                      "--nodes", "1")
    assert issued["issued"] == 1 * 2 + len(REGIONS) * 2
    # the controller reached at 127.0.0.1 (see the module's docstring)
    cli_json("certs", "controller", "c1", "--host", "127.0.0.1", "--dir", str(ca))
    for suffix in ("pem", "key"):
        shutil.copy(ca / f"controller-c1.{suffix}", out / f"controller-c1.{suffix}")
    keys = tmp_path / "keys"
    apps = tmp_path / "apps.yaml"
    cli_json("token", "keygen", "--app", "shop", "--dir", str(keys), "--apps", str(apps))

    port, resolve_port = free_port(), free_port()
    (tmp_path / "controller.yaml").write_text(f"""\
# written as an operator would (README, Configuration files); paths relative to this file
listen: 127.0.0.1:{port}
regions: regions
apps: apps.yaml
state: controller-state.json
resolver: {{listen: 127.0.0.1:{resolve_port}}}
probe: {{interval: 0.3}}
tls: {{ca: certs/bundle.pem, cert: certs/controller-c1.pem, key: certs/controller-c1.key}}
""")
    for rid in REGIONS:
        (tmp_path / f"relay-{rid}.yaml").write_text(f"""\
region: {rid}
controllers: [127.0.0.1:{port}]
listen: 0.0.0.0:0
advertise: {ADVERTISED[rid]}
edge: {{port: 0, cert: certs/edge-{rid}.pem, key: certs/edge-{rid}.key}}
tls:
  ca: certs/bundle.pem
  cert: certs/relay-{rid}-n1.pem
  key: certs/relay-{rid}-n1.key
""")
    procs = []
    try:
        procs.append(start(["controller", "--config", str(tmp_path / "controller.yaml")],
                           tmp_path / "controller.log"))
        for rid in REGIONS:
            procs.append(start(["relay", "--config", str(tmp_path / f"relay-{rid}.yaml")],
                               tmp_path / f"{rid}.log"))
        yield {"dir": tmp_path, "controller": f"127.0.0.1:{port}",
               "resolver": f"127.0.0.1:{resolve_port}", "bundle": out / "bundle.pem",
               "keys": keys, "admin": ca}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_a_mesh_from_operator_files_and_catalogue_certificates(deployment):
    d = deployment
    # an operator's certificate, from the same CA
    admin = cli_json("certs", "admin", "ops", "--role", "viewer", "--dir", str(d["admin"]))
    who = ["--controller", d["controller"], "--ca", str(d["bundle"]), "--cert", admin["cert"],
           "--key", admin["cert"].replace(".pem", ".key")]

    def converged():
        s = try_json("admin", "status", *who)
        return s if s and s["converged"] and s["relays"] == len(REGIONS) else None

    wait_for(converged, 60, "both relays connected and routes converged "
             f"(logs in {d['dir']})")
    regions = {r["id"]: r for r in cli_json("admin", "regions", *who)}
    for rid in REGIONS:
        # what the controller hands out is the advertised address, never 0.0.0.0
        node = regions[rid]["nodes"][0] if regions[rid].get("nodes") else regions[rid]
        text = json.dumps(node)
        assert ADVERTISED[rid] in text and "0.0.0.0" not in text, node

    # a client checks the edges' certificates for the deployment's edge name
    token = run_cli("token", "issue", "--app", "shop", "--channel", "c", "--uid", "u",
                    "--zone", "global", "--key-file", str(d["keys"] / "shop.key"))
    assert token.returncode == 0, token.stderr
    common = ["--resolver", d["resolver"], "--ca", str(d["bundle"]), "--edge-ca",
              str(d["bundle"]), "--token", token.stdout.strip(), "--json"]
    offered = json.loads(run_cli("resolve", "--edge-name", f"edge.{DOMAIN}",
                                 *common).stdout)
    raced = {r["address"]: r["handshake_ms"] for r in offered["race"]}
    assert len(raced) == len(REGIONS)
    assert {a.rpartition(":")[0] for a in raced} == set(ADVERTISED.values())
    assert all(ms is not None for ms in raced.values()), offered
    # the same edges refuse a client expecting another name
    wrong = json.loads(run_cli("resolve", "--edge-name", "edge.example.com",
                               *common).stdout)
    assert all(r["handshake_ms"] is None for r in wrong["race"]), wrong
    # and a session joins through it (the SDK's connection, not only the race)
    sub = run_cli("sub", "c", "--region", "tokyo", "--duration", "0.5", "--edge-name",
                  f"edge.{DOMAIN}", "--resolver", d["resolver"], "--resolver-ca",
                  str(d["bundle"]), "--edge-ca", str(d["bundle"]), "--token",
                  token.stdout.strip(), "--json")
    assert sub.returncode == 0, sub.stderr
    assert json.loads(sub.stdout)["region"] == "tokyo"
