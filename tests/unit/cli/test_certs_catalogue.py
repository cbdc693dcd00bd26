"""`skymesh certs issue --for-catalogue DIR --out DIR` (skymesh/cli/certs.py,
issue_for_catalogue): every certificate a deployment of the catalogue needs, its manifest,
what a second run keeps and what it reissues (missing, expiring, other names, a rotated CA,
--force), and its refusals; `certs.is_current`, which decides."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from support import cli_json

from skymesh import certs, identity
from skymesh.cli import main

MESH = "skymesh"
# 3 controllers (controller + etcd each), 3 edges, relays aa/n1 aa/n2 bb/n1 cc/n1
EXPECTED = {"controller-c1", "controller-c2", "controller-c3", "etcd-c1", "etcd-c2",
            "etcd-c3", "edge-aa", "edge-bb", "edge-cc", "relay-aa-n1", "relay-aa-n2",
            "relay-bb-n1", "relay-cc-n1"}
RELAYS = {"relay-aa-n1", "relay-aa-n2", "relay-bb-n1", "relay-cc-n1"}


def write_catalogue(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for rid, country, extra in (
            ("aa", "DE", "provider: {aws: eu-central-1}\ncapacity: {relays: 2, gbps: 40}\n"),
            ("bb", "GB", "provider: {aws: {region: eu-west-2, instance_type: c6in.large}}\n"),
            ("cc", "JP", "")):
        (directory / f"{rid}.yaml").write_text(
            f"id: {rid}\nname: {rid.upper()}\ncountry: {country}\nlat: 10\nlon: 20\n{extra}")
    return directory


@pytest.fixture
def deployment(tmp_path, home, capsys):
    """A CA (made by `certs init`), a catalogue of 3 regions, and where certificates go."""
    ca, regions, out = tmp_path / "ca", write_catalogue(tmp_path / "regions"), tmp_path / "out"
    assert main.main(["certs", "init", "--dir", str(ca), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["created"] is True
    return ca, regions, out


def issue(capsys, ca: Path, regions: Path, out: Path, *more: str) -> dict:
    """`certs issue --for-catalogue` in this process (cheaper than a subprocess), its JSON."""
    capsys.readouterr()
    code = main.main(["certs", "issue", "--for-catalogue", str(regions), "--out", str(out),
                      "--dir", str(ca), "--json", *more])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def refusal(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main.main(list(argv)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def fingerprints(result: dict) -> dict[str, str]:
    return {Path(r["file"]).stem: r["sha256"] for r in result["certificates"]}


def issued(result: dict) -> set[str]:
    return {Path(r["file"]).stem for r in result["certificates"] if r["issued"]}


def test_a_deployments_certificates_and_manifest(deployment, capsys):
    ca, regions, out = deployment
    first = cli_json("certs", "issue", "--for-catalogue", str(regions), "--out", str(out),
                     "--dir", str(ca))
    assert (first["issued"], first["kept"]) == (13, 0)
    assert first["regions"] == {"aa": ["n1", "n2"], "bb": ["n1"], "cc": ["n1"]}
    assert {p.name for p in out.iterdir()} == \
        {f"{s}.{ext}" for s in EXPECTED for ext in ("pem", "key")} | \
        {"bundle.pem", "manifest.json"}
    assert (out / "bundle.pem").read_bytes() == (ca / certs.BUNDLE).read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == {k: first[k] for k in manifest}
    assert (manifest["mesh"], manifest["domain"], manifest["controllers"],
            manifest["bundle"], manifest["catalogue"]) == (MESH, "skymesh.internal", 3,
                                                           "bundle.pem", str(regions))
    rows = {Path(r["file"]).stem: r for r in manifest["certificates"]}
    assert set(rows) == EXPECTED

    ca_cert = certs.load_ca(ca)[0]
    for stem, row in rows.items():
        cert = certs.load_cert(out / row["file"])
        assert certs.verify_signed_by(cert, ca_cert), stem
        assert row["key"] == f"{stem}.key"
        assert stat.S_IMODE((out / row["key"]).stat().st_mode) == 0o600
        info = certs.describe(out / row["file"])
        assert info["sha256"] == row["sha256"] and info["not_after"] == row["not_after"]
        names = {n.split(":", 1)[1] for n in info["sans"] if not n.startswith("URI:")}
        assert names == set(row["hosts"]), stem
        if row["kind"] == "relay":
            assert certs.identity_of(cert) == identity.relay(MESH, row["region"],
                                                             row["node"]), stem
            assert row["hosts"] == []
        elif row["kind"] == "controller":
            assert certs.identity_of(cert) == identity.controller(MESH, row["node"])
            assert row["hosts"] == [f"{row['node']}.skymesh.internal",
                                    "resolve.skymesh.internal"]
        else:  # edge and etcd: TLS servers, no mesh identity
            assert info["identity"] == "", stem
    assert rows["edge-aa"]["hosts"] == ["edge.skymesh.internal", "aa.edge.skymesh.internal"]
    assert rows["etcd-c2"]["hosts"] == ["etcd-c2.skymesh.internal", "localhost", "127.0.0.1"]
    assert (rows["relay-aa-n2"]["region"], rows["relay-aa-n2"]["node"]) == ("aa", "n2")

    # again: everything is current and kept, byte for byte
    before = {p.name: p.read_bytes() for p in out.glob("*.key")}
    again = cli_json("certs", "issue", "--for-catalogue", str(regions), "--out", str(out),
                     "--dir", str(ca))
    assert (again["issued"], again["kept"]) == (0, 13)
    assert fingerprints(again) == fingerprints(first)
    assert before == {p.name: p.read_bytes() for p in out.glob("*.key")}

    # --force: everything again
    forced = issue(capsys, ca, regions, out, "--force")
    assert forced["issued"] == 13 and issued(forced) == EXPECTED
    assert all(fingerprints(forced)[s] != fingerprints(first)[s] for s in EXPECTED)


def test_what_a_rerun_reissues(deployment, capsys):
    ca, regions, out = deployment
    first = issue(capsys, ca, regions, out)
    assert first["issued"] == 13

    # missing: a deleted certificate, a deleted key
    (out / "edge-bb.pem").unlink()
    (out / "relay-cc-n1.key").unlink()
    assert issued(issue(capsys, ca, regions, out)) == {"edge-bb", "relay-cc-n1"}

    # expiring: one that ends in 5 days is kept with --renew-within 3, reissued by default (30)
    certs.issue_cert(out, ca, "edge-aa", ["edge.skymesh.internal",
                                          "aa.edge.skymesh.internal"], days=5)
    assert issue(capsys, ca, regions, out, "--renew-within", "3")["issued"] == 0
    renewed = issue(capsys, ca, regions, out)
    assert issued(renewed) == {"edge-aa"}
    [row] = [r for r in renewed["certificates"] if r["file"] == "edge-aa.pem"]
    [was] = [r for r in first["certificates"] if r["file"] == "edge-aa.pem"]
    assert row["not_after"] >= was["not_after"]  # (ISO times, the same zone: 90 days again)
    assert certs.is_current(out / "edge-aa.pem", out / "edge-aa.key", certs.load_ca(ca)[0],
                            fresh_s=80 * 86400)

    # other names: another domain reissues every certificate with names, not the relays'
    moved = issue(capsys, ca, regions, out, "--domain", "mesh.example.net")
    assert issued(moved) == EXPECTED - RELAYS
    assert moved["domain"] == "mesh.example.net"

    # more nodes: only the new ones
    more = issue(capsys, ca, regions, out, "--domain", "mesh.example.net", "--nodes", "2")
    assert issued(more) == {"relay-bb-n2", "relay-cc-n2"}
    assert more["regions"] == {"aa": ["n1", "n2"], "bb": ["n1", "n2"], "cc": ["n1", "n2"]}

    # a rotated CA: everything, signed by the new one; the bundle trusts both
    capsys.readouterr()
    assert main.main(["certs", "rotate-ca", "--dir", str(ca)]) == 0
    rotated = issue(capsys, ca, regions, out, "--domain", "mesh.example.net", "--nodes", "2")
    assert rotated["issued"] == 15 and rotated["kept"] == 0
    new_ca = certs.load_ca(ca)[0]
    for r in rotated["certificates"]:
        assert certs.verify_signed_by(certs.load_cert(out / r["file"]), new_ca), r["file"]
    assert len(certs.load_bundle(out / "bundle.pem")) == 2


def test_only_some_regions(deployment, capsys):
    ca, regions, out = deployment
    result = issue(capsys, ca, regions, out, "--only", "bb", "--controllers", "1")
    assert {Path(r["file"]).stem for r in result["certificates"]} == \
        {"controller-c1", "etcd-c1", "edge-bb", "relay-bb-n1"}
    assert result["regions"] == {"bb": ["n1"]} and result["controllers"] == 1


def test_refusals(tmp_path, home, capsys):
    ca = tmp_path / "ca"
    certs.create_ca(ca)
    regions = write_catalogue(tmp_path / "regions")
    out = tmp_path / "out"
    base = ["certs", "issue", "--for-catalogue", str(regions), "--dir", str(ca)]
    assert "--for-catalogue needs --out DIR" in refusal(capsys, *base)
    assert "takes no NAME or --host" in refusal(capsys, *base, "--out", str(out), "edge")
    assert "takes no NAME or --host" in refusal(capsys, *base, "--out", str(out), "--host",
                                                "a.example")
    assert "--out goes with --for-catalogue" in refusal(
        capsys, "certs", "issue", "edge", "--host", "a.example", "--dir", str(ca), "--out",
        str(out))
    assert "--renew-within from 0 to less than --days" in refusal(
        capsys, *base, "--out", str(out), "--days", "5")  # (renew within 30 of 5 days)
    assert "--days must be at least 1" in refusal(capsys, *base, "--out", str(out), "--days",
                                                  "0", "--renew-within", "0")
    err = refusal(capsys, *base, "--out", str(out), "--only", "zz")
    assert "cannot plan the certificates" in err and "'zz'" in err
    assert "controllers must be 1 or more" in refusal(capsys, *base, "--out", str(out),
                                                      "--controllers", "0")
    assert "--domain" in refusal(capsys, *base, "--out", str(out), "--domain", "Not A Domain")

    missing = tmp_path / "no-ca"
    err = refusal(capsys, "certs", "issue", "--for-catalogue", str(regions), "--out",
                  str(out), "--dir", str(missing))
    assert f"no usable CA in {missing}" in err and "certs init" in err
    assert not missing.exists()  # not created behind the operator's back

    (regions / "bb.yaml").write_text("id: bb\nname: B\ncountry: GB\nlat: 1\nlon: 2\n"
                                     "capacity: {relays: 99}\n")
    (regions / "cc.yaml").write_text("id: cc\nname: C\ncountry: JP\nlat: 1\nlon: 2\n"
                                     "provider: {aws: tokyo}\n")
    err = refusal(capsys, *base, "--out", str(out))
    assert f"{regions / 'bb.yaml'}: capacity.relays: must be a whole number from 1 to 64" \
        in err
    assert f"{regions / 'cc.yaml'}: provider.aws: 'tokyo' is not an AWS region" in err
    assert not out.exists()  # nothing written for a catalogue that does not load


# -- is_current ----------------------------------------------------------------------------------

@pytest.fixture
def leaf(tmp_path):
    ca = tmp_path / "ca"
    certs.create_ca(ca)
    cert, key = certs.issue_cert(tmp_path, ca, "edge", ["edge.example", "10.0.0.1"], days=40)
    return ca, cert, key


def test_is_current(leaf, tmp_path):
    ca, cert, key = leaf
    ca_cert = certs.load_ca(ca)[0]
    assert certs.is_current(cert, key, ca_cert, ["edge.example", "10.0.0.1"], 30 * 86400)
    assert certs.is_current(cert, key, ca_cert, ["edge.example"])  # a subset of its names
    assert not certs.is_current(cert, key, ca_cert, ["other.example"])
    assert not certs.is_current(cert, key, ca_cert, [], 41 * 86400)  # ends within 41 days
    assert not certs.is_current(cert, tmp_path / "nope.key", ca_cert)
    assert not certs.is_current(tmp_path / "nope.pem", key, ca_cert)
    (tmp_path / "junk.pem").write_text("not a certificate")
    assert not certs.is_current(tmp_path / "junk.pem", key, ca_cert)
    other = tmp_path / "other-ca"
    certs.create_ca(other)
    assert not certs.is_current(cert, key, certs.load_ca(other)[0])


def test_a_certificate_whose_key_is_not_its_own_is_not_current(leaf, tmp_path):
    # a certificate beside another certificate's key (a copy gone wrong, a reissue
    # interrupted between the key and the certificate) is not current: the process given
    # that pair could not start TLS
    ca, cert, key = leaf
    (tmp_path / "x").mkdir()
    _, other_key = certs.issue_cert(tmp_path / "x", ca, "x", ["x.example"])
    key.write_bytes(other_key.read_bytes())
    assert not certs.is_current(cert, key, certs.load_ca(ca)[0])
