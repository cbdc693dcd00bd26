"""What provisioning derives from the catalogue (skymesh/provisioning.py): AWS hints, relay
node ids per region, the certificates a deployment needs; and the catalogue's checks of the
`provider:` and `capacity:` fields those come from (skymesh/catalogue.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skymesh import yamlfile
from skymesh.catalogue import (
    AWS_REGION,
    INSTANCE_TYPE,
    CatalogueError,
    Region,
    _aws_problems,
    load_catalogue,
)
from skymesh.provisioning import AwsHint, ProvisioningError, aws_hint, certificate_plan, node_ids

SHIPPED = Path(__file__).resolve().parents[3] / "regions"


def region(rid: str = "xx", **extra) -> Region:
    return Region(rid, rid.title(), "DE", 50.0, 8.0, (), extra)


# -- hints and node ids ------------------------------------------------------------------------

def test_aws_hint_from_a_string_a_mapping_or_none():
    assert aws_hint(region(provider={"aws": "eu-west-2"})) == AwsHint("eu-west-2", None)
    assert aws_hint(region(provider={"aws": {"region": "eu-west-2",
                                             "instance_type": "c6in.large"}})) == \
        AwsHint("eu-west-2", "c6in.large")
    assert aws_hint(region(provider={"aws": {"region": "us-east-1"}})) == \
        AwsHint("us-east-1", None)
    assert aws_hint(region()) is None
    assert aws_hint(region(provider={"gcp": "europe-west3"})) is None
    assert aws_hint(region(provider=None)) is None


def test_node_ids_from_capacity_an_override_or_one():
    assert node_ids(region()) == ["n1"]
    assert node_ids(region(capacity={"gbps": 10})) == ["n1"]
    assert node_ids(region(capacity={"relays": 3})) == ["n1", "n2", "n3"]
    assert node_ids(region(capacity={"relays": 3}), override=1) == ["n1"]
    assert node_ids(region(), override=2) == ["n1", "n2"]
    for bad in (0, -1):
        with pytest.raises(ProvisioningError, match="1 or more"):
            node_ids(region(), override=bad)


# -- the certificate plan ----------------------------------------------------------------------

def shipped() -> dict[str, Region]:
    return load_catalogue(SHIPPED)


def capacities() -> dict[str, int]:
    """Each shipped region's relays, read from its file (not through provisioning)."""
    out = {}
    for f in SHIPPED.glob("*.yaml"):
        if f.name == "policy.yaml":
            continue
        data = yamlfile.load(f.read_text())
        out[data["id"]] = (data.get("capacity") or {}).get("relays", 1)
    return out


def test_the_plan_of_the_shipped_catalogue():
    regions = shipped()
    assert len(regions) == 45
    relays = capacities()
    plan = certificate_plan(regions)
    kinds = [s.kind for s in plan]
    assert kinds.count("controller") == 3 and kinds.count("etcd") == 3
    assert kinds.count("edge") == 45
    assert kinds.count("relay") == sum(relays.values())
    assert len(plan) == 6 + 45 + sum(relays.values())
    assert max(relays.values()) > 1  # (the capacity is really used)
    stems = [s.stem for s in plan]
    assert len(set(stems)) == len(stems)
    for rid, count in relays.items():
        assert [s.node for s in plan if s.kind == "relay" and s.region == rid] == \
            [f"n{i}" for i in range(1, count + 1)]
        assert [s.hosts for s in plan if s.kind == "edge" and s.region == rid] == \
            [("edge.skymesh.internal", f"{rid}.edge.skymesh.internal")]
    # one node per region when asked
    assert len(certificate_plan(regions, nodes=1)) == 6 + 45 + 45


def test_names_and_hosts_of_each_certificate():
    regions = {"fra": region("fra", capacity={"relays": 2}), "lon": region("lon")}
    plan = certificate_plan(regions, domain="mesh.example.net", controllers=2)
    assert [(s.stem, s.kind, s.hosts, s.region, s.node) for s in plan] == [
        ("controller-c1", "controller", ("c1.mesh.example.net", "resolve.mesh.example.net"),
         "", "c1"),
        ("etcd-c1", "etcd", ("etcd-c1.mesh.example.net", "localhost", "127.0.0.1"), "", "c1"),
        ("controller-c2", "controller", ("c2.mesh.example.net", "resolve.mesh.example.net"),
         "", "c2"),
        ("etcd-c2", "etcd", ("etcd-c2.mesh.example.net", "localhost", "127.0.0.1"), "", "c2"),
        ("edge-fra", "edge", ("edge.mesh.example.net", "fra.edge.mesh.example.net"), "fra",
         ""),
        ("relay-fra-n1", "relay", (), "fra", "n1"),
        ("relay-fra-n2", "relay", (), "fra", "n2"),
        ("edge-lon", "edge", ("edge.mesh.example.net", "lon.edge.mesh.example.net"), "lon",
         ""),
        ("relay-lon-n1", "relay", (), "lon", "n1"),
    ]
    assert certificate_plan(regions, nodes=3)[-1].stem == "relay-lon-n3"


@pytest.mark.parametrize("domain", ["", "internal", "Skymesh.Internal", "-a.example",
                                    "a-.example", "a..example", "a_b.example", "a.example.",
                                    ".a.example", "a b.example", "x" * 64 + ".example",
                                    "a." * 100 + "example"])
def test_a_bad_domain_is_refused(domain):
    with pytest.raises(ProvisioningError, match="--domain"):
        certificate_plan({"fra": region("fra")}, domain=domain)


def test_good_domains():
    for domain in ("skymesh.internal", "mesh.example.co.uk", "a-b.c9.example"):
        assert certificate_plan({"fra": region("fra")}, domain=domain)[0].hosts == \
            (f"c1.{domain}", f"resolve.{domain}")


@pytest.mark.parametrize("controllers", [0, -1])
def test_no_controllers_is_refused(controllers):
    with pytest.raises(ProvisioningError, match="controllers must be 1 or more"):
        certificate_plan({"fra": region("fra")}, controllers=controllers)


def test_no_nodes_is_refused():
    with pytest.raises(ProvisioningError, match="1 or more"):
        certificate_plan({"fra": region("fra")}, nodes=0)


def test_every_aws_hint_of_the_shipped_catalogue_passes_its_checks():
    regions = shipped()
    hints = {rid: aws_hint(r) for rid, r in regions.items()}
    aws = {rid: h for rid, h in hints.items() if h is not None}
    assert len(aws) >= 20, "the shipped catalogue should mostly run on AWS"
    for rid, hint in aws.items():
        assert AWS_REGION.fullmatch(hint.region), (rid, hint)
        assert hint.instance_type is None or INSTANCE_TYPE.fullmatch(hint.instance_type)
        assert _aws_problems(regions[rid].extra["provider"]["aws"], rid) == []
    # every file that names AWS has its hint
    assert len(aws) == sum("aws:" in f.read_text() for f in SHIPPED.glob("*.yaml"))


# -- the catalogue's checks of provider and capacity -------------------------------------------

@pytest.fixture
def regions_dir(tmp_path, monkeypatch):
    """An empty `regions/` directory; messages then read `regions/<file>`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "regions").mkdir()
    return tmp_path / "regions"


def problems_of(regions_dir: Path, extra: str) -> list[str]:
    (regions_dir / "xx.yaml").write_text(
        f"id: xx\nname: Xx\ncountry: DE\nlat: 50\nlon: 8\n{extra}\n")
    with pytest.raises(CatalogueError) as info:
        load_catalogue("regions")
    return info.value.problems


def loads(regions_dir: Path, extra: str) -> Region:
    (regions_dir / "xx.yaml").write_text(
        f"id: xx\nname: Xx\ncountry: DE\nlat: 50\nlon: 8\n{extra}\n")
    return load_catalogue("regions")["xx"]


def test_good_provider_and_capacity_are_kept(regions_dir):
    r = loads(regions_dir, "provider: {aws: {region: eu-west-2, instance_type: c6in.large}, "
              "gcp: europe-west2}\ncapacity: {relays: 64, gbps: 0.5}")
    assert aws_hint(r) == AwsHint("eu-west-2", "c6in.large")
    assert node_ids(r)[-1] == "n64" and r.extra["capacity"]["gbps"] == 0.5
    assert r.to_dict()["provider"]["gcp"] == "europe-west2"
    assert node_ids(loads(regions_dir, "capacity: {}")) == ["n1"]
    assert aws_hint(loads(regions_dir, "provider: {azure: {location: uksouth}}")) is None


@pytest.mark.parametrize("extra, problem", [
    ("provider: {aws: eu-west-9x}", "provider.aws: 'eu-west-9x' is not an AWS region"),
    ("provider: {aws: EU-WEST-2}", "provider.aws: 'EU-WEST-2' is not an AWS region"),
    ("provider: {aws: london}", "provider.aws: 'london' is not an AWS region"),
    ("provider: {aws: 5}", "provider.aws: 5 is not an AWS region"),
    ("provider: {aws: }", "provider.aws: None is not an AWS region"),
    ("provider: {aws: [eu-west-2]}", "provider.aws: ['eu-west-2'] is not an AWS region"),
    ("provider: {aws: {instance_type: c6in.large}}",
     "provider.aws.region: None is not an AWS region"),
    ("provider: {aws: {region: eu-west-2, instance_type: large}}",
     "provider.aws.instance_type: 'large' is not an EC2 instance type"),
    ("provider: {aws: {region: eu-west-2, instance_type: 4}}",
     "provider.aws.instance_type: 4 is not an EC2 instance type"),
    ("provider: {aws: {region: eu-west-2, zone: a}}",
     "provider.aws: unknown fields ['zone'] (known: region, instance_type)"),
    ("provider: {AWS: eu-west-2}", "provider: 'AWS' is not a cloud name"),
    ("provider: {gcp: ''}", "provider.gcp: must name a region, got ''"),
    ("provider: {gcp: 5}", "provider.gcp: must name a region, got 5"),
    ("provider: aws", "provider: must be a mapping of cloud to its region"),
    ("provider: {}", "provider: must be a mapping of cloud to its region"),
    ("provider:", "provider: must be a mapping of cloud to its region"),
    ("capacity: 3", "capacity: must be a mapping such as {relays: 3, gbps: 100}, got 3"),
    ("capacity:", "capacity: must be a mapping"),
    ("capacity: {relays: 0}", "capacity.relays: must be a whole number from 1 to 64, got 0"),
    ("capacity: {relays: 65}", "capacity.relays: must be a whole number from 1 to 64, got 65"),
    ("capacity: {relays: true}", "capacity.relays: must be a whole number from 1 to 64"),
    ("capacity: {relays: 1.5}", "capacity.relays: must be a whole number from 1 to 64"),
    ("capacity: {relays: '2'}", "capacity.relays: must be a whole number from 1 to 64"),
    ("capacity: {gbps: fast}", "capacity.gbps: must be a number, got 'fast'"),
    ("capacity: {gbps: -1}", "capacity.gbps: must be a number, got -1"),
    ("capacity: {gbps: .nan}", "capacity.gbps: must be a number, got nan"),
    ("capacity: {gbps: true}", "capacity.gbps: must be a number, got True"),
])
def test_bad_provider_or_capacity_is_refused_naming_file_and_field(regions_dir, extra,
                                                                    problem):
    found = problems_of(regions_dir, extra)
    assert len(found) == 1, found
    assert found[0].startswith(f"regions/xx.yaml: {problem}"), found


def test_provider_and_capacity_problems_come_with_the_others(regions_dir):
    found = problems_of(regions_dir, "provider: {aws: mars-1}\ncapacity: {relays: 0}\n"
                        "tags: [x, x]")
    assert [p.split(": ")[1] for p in found] == ["tags", "provider.aws", "capacity.relays"]


def test_a_misspelt_capacity_field_is_refused(regions_dir):
    # `capacity: {relay: 3}` (for relays) would deploy one relay node and nobody be told
    found = problems_of(regions_dir, "capacity: {relay: 3, gbps: 10}")
    assert len(found) == 1 and found[0].startswith("regions/xx.yaml: capacity"), found
    assert "relay" in found[0]
