"""The terraform configuration (terraform/), checked without terraform: every .tf file parsed
with python-hcl2; variables declared, used, typed, described and validated; module calls
against the modules' variables; providers pinned; one provider alias and module block per AWS
region; and the set of regions the root derives from regions/*.yaml, evaluated in Python
(hcl.py), against the catalogue's own reading of its AWS hints (skymesh.provisioning); the
network and ami modules the region and controllers modules share, and the moved blocks that
keep the network those modules had before.
Where a terraform binary happens to be installed, it checks the evaluator and the format."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
from pathlib import Path

import hcl
import pytest
from deploykit import (
    DEBIAN_AMI,
    MODULES,
    REGIONS,
    TERRAFORM,
    ami_evaluator,
    controllers_evaluator,
    module_inputs,
    network_evaluator,
    outputs,
    region_evaluator,
    relay_block,
    relay_ip,
    root_evaluator,
    terraform_binary,
    terraform_console,
)

from skymesh.catalogue import load_catalogue
from skymesh.provisioning import aws_hint, node_ids

META_ARGUMENTS = {"source", "version", "for_each", "count", "providers", "depends_on"}


# -- checks, as functions: the negative tests run them on broken copies ------------------------


def variable_problems(module: hcl.Module) -> list[str]:
    """Variables used but not declared, declared but not used, without a type or a
    description, or validated by a condition that does not look at them."""
    declared = module.variables()
    used = hcl.variables_used(module)
    ev = hcl.Evaluator(module, strict_variables=False)
    problems = [f"var.{n} is used and not declared" for n in sorted(used - set(declared))]
    problems += [f"variable {n} is declared and not used" for n in sorted(set(declared) - used)]
    for name, block in declared.items():
        if "type" not in block.attributes:
            problems.append(f"variable {name} has no type")
        if "description" not in block.attributes or \
                len(ev.attribute(block, "description")) < 20:
            problems.append(f"variable {name} has no description worth the name")
        for rule in block.children("validation"):
            refs = {tuple(c[:2]) for c in hcl.traversals(rule.attributes["condition"])}
            if ("var", name) not in refs or any(r[0] == "var" and r[1] != name for r in refs):
                problems.append(f"variable {name}: a validation condition must look at "
                                f"var.{name} and no other variable")
            if "error_message" not in rule.attributes:
                problems.append(f"variable {name}: a validation without an error_message")
    return problems


def module_call_problems(module: hcl.Module) -> list[str]:
    """Module calls that leave out a required variable of the module or pass one it does
    not have."""
    problems = []
    for name, block in module.module_calls().items():
        source = hcl.Evaluator(module, strict_variables=False).attribute(block, "source")
        called = hcl.load_module(module.path / source)
        variables = called.variables()
        given = set(block.attributes) - META_ARGUMENTS
        required = {n for n, b in variables.items() if "default" not in b.attributes}
        for missing in sorted(required - given):
            problems.append(f"module.{name}: required variable {missing} not given")
        for unknown in sorted(given - set(variables)):
            problems.append(f"module.{name}: {unknown} is not a variable of {source}")
    return problems


# -- the modules' shape -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODULES))
def test_module_layout(modules: dict[str, hcl.Module], name: str) -> None:
    path = modules[name].path
    for file in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (path / file).is_file(), f"{path}: no {file}"
    # its README names every variable, and variables and outputs live where readers look
    readme = (path / "README.md").read_text()
    undocumented = [v for v in modules[name].variables() if f"`{v}`" not in readme]
    assert not undocumented, f"{path}/README.md does not name {undocumented}"
    for block in modules[name].blocks:
        if block.type in ("variable", "output"):
            assert block.file.name == f"{block.type}s.tf", f"{block.type} {block.name} in " \
                                                            f"{block.file.name}"


@pytest.mark.parametrize("name", list(MODULES))
def test_variables_declared_used_typed_described(modules: dict[str, hcl.Module],
                                                 name: str) -> None:
    assert variable_problems(modules[name]) == []


@pytest.mark.parametrize("name", list(MODULES))
def test_outputs_described(modules: dict[str, hcl.Module], name: str) -> None:
    for block in modules[name].of("output"):
        assert {"description", "value"} <= set(block.attributes), block.name


@pytest.mark.parametrize("name", list(MODULES))
def test_module_calls_pass_required_and_known_variables(modules: dict[str, hcl.Module],
                                                        name: str) -> None:
    assert module_call_problems(modules[name]) == []


def test_who_calls_which_module(modules: dict[str, hcl.Module]) -> None:
    assert len(modules["root"].module_calls()) > 30  # the controllers and one per AWS region
    for name in ("region", "controllers"):
        calls = modules[name].module_calls()
        sources = {call: hcl.Evaluator(modules[name], strict_variables=False).attribute(
            block, "source") for call, block in calls.items()}
        assert sources == {"network": "../network", "ami": "../ami"}, name
    # the shared modules are leaves: no module of their own, no provider block (they get
    # their callers' aws provider, and with it its region and default tags)
    for name in ("network", "ami"):
        assert modules[name].module_calls() == {}
        assert modules[name].of("provider") == []


@pytest.mark.parametrize("name", list(MODULES))
def test_versions_pinned(modules: dict[str, hcl.Module], name: str) -> None:
    module = modules[name]
    ev = hcl.Evaluator(module, strict_variables=False)
    (terraform,) = module.of("terraform")
    required = ev.attribute(terraform, "required_version")
    lowest = re.search(r">=\s*(\d+)\.(\d+)", required)
    assert lowest and (int(lowest[1]), int(lowest[2])) >= (1, 5), required
    assert re.search(r"<\s*2\.0", required), f"{required}: no upper bound"
    (providers,) = terraform.children("required_providers")
    aws = ev.attribute(providers, "aws")
    assert aws["source"] == "hashicorp/aws"
    # a pessimistic constraint within 5.x: new minor versions, never a new major one
    assert re.fullmatch(r"~>\s*5\.\d+(\.\d+)?", aws["version"]), aws["version"]
    assert set(providers.attributes) == {"aws"}


def test_modules_agree_on_versions(modules: dict[str, hcl.Module]) -> None:
    seen = set()
    for module in modules.values():
        ev = hcl.Evaluator(module, strict_variables=False)
        (terraform,) = module.of("terraform")
        (providers,) = terraform.children("required_providers")
        seen.add((ev.attribute(terraform, "required_version"),
                  ev.attribute(providers, "aws")["version"]))
    assert len(seen) == 1, seen


# -- one provider alias and one module block per AWS region --------------------------------------


def provider_aliases(root: hcl.Module) -> dict[str, hcl.Block]:
    ev = hcl.Evaluator(root, strict_variables=False)
    return {ev.attribute(b, "alias"): b for b in root.of("provider") if "alias" in b.attributes}


def test_one_alias_and_module_block_per_aws_region(modules: dict[str, hcl.Module],
                                                   root_vars: dict) -> None:
    root = modules["root"]
    ev = hcl.Evaluator(root, root_vars)
    aliases = provider_aliases(root)
    covered = ev.local("aws_regions_covered")
    assert len(covered) == len(set(covered))
    regions_of_aliases = {}
    for alias, block in aliases.items():
        region = ev.attribute(block, "region")
        assert alias == region.replace("-", "_"), (alias, region)
        regions_of_aliases[region] = alias
        # the China partition has its own credentials
        profile = hcl._tokens_text(block.attributes["profile"]).strip()
        assert profile == ("var.aws_china_profile" if region.startswith("cn-")
                           else "var.aws_profile"), (alias, profile)
        # no call to AWS to configure a provider nothing may use
        assert ev.attribute(block, "skip_credentials_validation") is True
        assert ev.attribute(block, "skip_requesting_account_id") is True
    assert set(regions_of_aliases) == set(covered)
    assert {"cn-north-1", "cn-northwest-1"} <= set(covered)

    relays = {n: b for n, b in root.module_calls().items() if n != "controllers"}
    assert len(relays) == len(covered)
    merged = {".".join(chain[:2]) for chain in
              hcl.traversals(root.locals()["relay_modules"][0])}
    for region in covered:
        block = relay_block(root, region)
        assert hcl._tokens_text(block.attributes["providers"]).replace(" ", "") == \
            f"{{aws=aws.{regions_of_aliases[region]}}}"
        assert ev.attribute(block, "source") == "./modules/region"
        assert f"module.{block.labels[0]}" in merged, f"{block.labels[0]} not in relay_modules"
        # its for_each picks the catalogue regions in this AWS region and no other
        picked = ev.attribute(block, "for_each")
        assert all(r["aws_region"] == region for r in picked.values())
        assert set(picked) == {rid for rid, r in ev.local("relays").items()
                               if r["aws_region"] == region}


def test_every_aws_region_of_the_catalogue_has_its_alias(modules: dict[str, hcl.Module],
                                                         root_vars: dict) -> None:
    ev = hcl.Evaluator(modules["root"], root_vars)
    hinted = {aws_hint(r).region for r in load_catalogue(REGIONS).values() if aws_hint(r)}
    missing = hinted - set(ev.local("aws_regions_covered"))
    assert not missing, f"AWS regions the catalogue names without a provider alias: {missing}"


# -- the regions the root derives from the catalogue ---------------------------------------------


def test_regions_provisioned_are_the_aws_hinted(modules: dict[str, hcl.Module],
                                                root_vars: dict) -> None:
    catalogue = load_catalogue(REGIONS)
    ev = hcl.Evaluator(modules["root"], root_vars)
    relays = ev.local("relays")
    hinted = {rid: aws_hint(r) for rid, r in catalogue.items() if aws_hint(r) is not None}
    assert set(relays) == set(hinted)
    assert "beijing" in relays and "london" in relays
    for rid, hint in hinted.items():
        assert relays[rid]["aws_region"] == hint.region
        assert relays[rid]["instance_type"] == (hint.instance_type or "c6in.large")
        assert relays[rid]["nodes"] == len(node_ids(catalogue[rid]))
    assert ev.local("not_on_aws") == sorted(set(catalogue) - set(hinted))
    assert {"amsterdam", "dallas", "lagos"} <= set(ev.local("not_on_aws"))
    for failing in ("misnamed", "yml_files", "unknown_only", "no_aws_region", "uncovered"):
        assert ev.local(failing) == [], failing
    assert precondition_failures(ev) == []


def test_only_regions_selects_and_relays_per_region_overrides(
        modules: dict[str, hcl.Module], root_vars: dict) -> None:
    ev = hcl.Evaluator(modules["root"], {**root_vars,
                                         "only_regions": ["london", "amsterdam", "tokyo"],
                                         "relays_per_region": {"tokyo": 5}})
    assert sorted(ev.local("relays")) == ["london", "tokyo"]
    assert ev.local("relays")["tokyo"]["nodes"] == 5
    assert ev.local("relays")["london"]["nodes"] == 3
    assert ev.local("not_on_aws") == ["amsterdam"]
    assert ev.local("relay_identities")["tokyo"] == [
        "relay-tokyo-n1", "relay-tokyo-n2", "relay-tokyo-n3", "relay-tokyo-n4",
        "relay-tokyo-n5", "edge-tokyo"]


def precondition_failures(ev: hcl.Evaluator) -> list[str]:
    (block,) = [b for b in ev.module.of("resource") if b.labels == ["terraform_data",
                                                                   "catalogue"]]
    (lifecycle,) = block.children("lifecycle")
    return [ev.attribute(p, "error_message") for p in lifecycle.children("precondition")
            if not ev.attribute(p, "condition")]


def check_failures(ev: hcl.Evaluator) -> list[str]:
    return [ev.attribute(a, "error_message")
            for check in ev.module.of("check") for a in check.children("assert")
            if not ev.attribute(a, "condition")]


def test_mistakes_in_the_catalogue_fail_the_plan(modules: dict[str, hcl.Module],
                                                 root_vars: dict, tmp_path: Path) -> None:
    regions = tmp_path / "regions"
    shutil.copytree(REGIONS, regions)
    (regions / "nowhere.yaml").write_text(
        "id: nowhere\nname: Nowhere\ncountry: DE\nlat: 1\nlon: 1\n"
        "provider: {aws: xx-nowhere-1}\n")
    (regions / "typeonly.yaml").write_text(
        "id: typeonly\nname: T\ncountry: DE\nlat: 1\nlon: 1\n"
        "provider: {aws: {instance_type: c6in.large}}\n")
    (regions / "misfiled.yaml").write_text(
        "id: other\nname: M\ncountry: DE\nlat: 1\nlon: 1\nprovider: {gcp: europe-west3}\n")
    (regions / "legacy.yml").write_text("id: legacy\n")
    ev = hcl.Evaluator(modules["root"], {**root_vars, "regions_dir": str(regions),
                                         "only_regions": []})
    assert ev.local("uncovered") == ["nowhere (xx-nowhere-1)"]
    failures = precondition_failures(ev)
    assert len(failures) == 4, failures
    assert "misfiled" in failures[0]
    assert "legacy.yml" in failures[1]
    assert "typeonly" in failures[2]
    assert "nowhere (xx-nowhere-1)" in failures[3] and "providers.tf" in failures[3]
    # a region with no AWS hint is reported, not an error
    (warning,) = check_failures(ev)
    assert "misfiled" in warning and "amsterdam" in warning

    ev = hcl.Evaluator(modules["root"], {**root_vars, "only_regions": ["london", "atlantis"]})
    (failure,) = precondition_failures(ev)
    assert "atlantis" in failure
    assert check_failures(ev) == []


def test_root_variables_validate(modules: dict[str, hcl.Module], root_vars: dict) -> None:
    ev = hcl.Evaluator(modules["root"], root_vars)
    assert ev.check_validations() == []
    for bad, says in [
        ({"tls_key_mode": "plain"}, "tls_key_mode"),
        ({"controller_count": 2}, "odd"),
        ({"operator_cidrs": ["0.0.0.0/0"]}, "whole Internet"),
        ({"operator_cidrs": ["10.0.0.0/33"]}, "operator_cidrs"),
        ({"only_regions": ["London"]}, "only_regions"),
        ({"relays_per_region": {"london": 0}}, "relays_per_region"),
        ({"secret_arns": {"bundle": "arn:aws:s3:::bucket"}}, "secret_arns"),
        ({"pip_index_url": "ftp://mirror"}, "pip_index_url"),
        ({"fabric_keys_file": "/nonexistent/fabric.keys"}, "fabric_keys_file"),
        ({"certs_dir": "/nonexistent"}, "skymesh certs issue"),
        ({"edge_port": 70000}, "edge_port"),
    ]:
        failed = hcl.Evaluator(modules["root"], {**root_vars, **bad}).check_validations()
        assert len(failed) == 1 and says in failed[0], (bad, failed)


def test_root_passes_the_certificates_skymesh_certs_issues(modules: dict[str, hcl.Module],
                                                           root_vars: dict) -> None:
    """The root reads every certificate and key by the names `skymesh certs issue
    --for-catalogue` gives them (the certs_dir fixture has exactly those), except those
    whose secrets operators made themselves."""
    arn = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:mine-AbCdEf"
    ev = root_evaluator(modules, root_vars, secret_arns={"relay-london-n2": arn})
    relays = ev.local("relays")
    block = relay_block(modules["root"], "eu-west-2")
    inputs = module_inputs(ev.with_instance(each=("london", relays["london"])), block)
    assert sorted(inputs["certificates"]) == [
        "bundle.pem", "edge-london.pem", "relay-london-n1.pem", "relay-london-n3.pem"]
    assert sorted(inputs["private_keys"]) == [
        "edge-london.key", "relay-london-n1.key", "relay-london-n3.key"]
    assert "c3R1Yg== relay-london-n1" in inputs["certificates"]["relay-london-n1.pem"]
    assert inputs["secret_arns"] == {"relay-london-n2": arn}
    assert inputs["controllers"] == {"c1": "198.51.100.11", "c2": "198.51.100.12",
                                     "c3": "198.51.100.13"}

    controllers = module_inputs(ev, modules["root"].module_calls()["controllers"])
    assert sorted(controllers["private_keys"]) == [
        "controller-c1.key", "controller-c2.key", "controller-c3.key",
        "etcd-c1.key", "etcd-c2.key", "etcd-c3.key"]
    assert controllers["serve_regions"] == sorted(relays)
    assert set(controllers["catalogue"]) == {p.name for p in REGIONS.glob("*.yaml")}
    assert controllers["fabric_keys"] is None
    # every relay node may reach the controllers' gRPC port, by its own address
    assert len(controllers["relay_addresses"]) == sum(r["nodes"] for r in relays.values())
    assert controllers["relay_addresses"]["london/n3"] == relay_ip("london", 2)

    # with an existing etcd, no etcd member certificates are read
    ev = root_evaluator(modules, root_vars, etcd_endpoints=["etcd.example.net:2379"])
    controllers = module_inputs(ev, modules["root"].module_calls()["controllers"])
    assert sorted(controllers["private_keys"]) == [
        "controller-c1.key", "controller-c2.key", "controller-c3.key"]


# -- security groups -----------------------------------------------------------------------------


def ingress_rules(ev: hcl.Evaluator) -> dict[str, dict]:
    out = {}
    for address, block in ev.module.resources().items():
        if not address.startswith("aws_vpc_security_group_ingress_rule."):
            continue
        inst = ev.with_instance(count_index=0, each=("london/n1", "203.0.113.9")) \
            if {"for_each", "count"} & set(block.attributes) else ev
        rule = {n: (hcl._tokens_text(e).strip() if n in ("security_group_id",
                                                          "referenced_security_group_id")
                    else inst.attribute(block, n))
                for n, e in block.attributes.items() if n not in ("count", "for_each")}
        out[address.split(".", 1)[1]] = rule
    return out


def test_relays_open_their_udp_ports_to_the_world_and_nothing_else(
        modules: dict[str, hcl.Module], root_vars: dict) -> None:
    ev = region_evaluator(modules, root_evaluator(modules, root_vars), "london")
    rules = ingress_rules(ev)
    assert {(r["ip_protocol"], r["from_port"], r["to_port"], r["cidr_ipv4"])
            for r in rules.values()} == {("udp", 7500, 7500, "0.0.0.0/0"),
                                         ("udp", 443, 443, "0.0.0.0/0")}


def test_controllers_grpc_only_for_relays_and_operators(modules: dict[str, hcl.Module],
                                                        root_vars: dict) -> None:
    root = root_evaluator(modules, root_vars, operator_cidrs=["198.51.100.0/24"])
    ev = controllers_evaluator(modules, root)
    rules = ingress_rules(ev)
    world = {n for n, r in rules.items() if r.get("cidr_ipv4") == "0.0.0.0/0"}
    assert world == {"resolver"} and rules["resolver"]["from_port"] == 7443
    assert rules["resolver"]["ip_protocol"] == "tcp"
    grpc = {n for n, r in rules.items() if r["from_port"] == 7400}
    assert grpc == {"grpc_replicas", "grpc_relays", "grpc_operators"}
    assert rules["grpc_relays"]["cidr_ipv4"] == "203.0.113.9/32"  # each relay, by itself
    assert hcl._tokens_text(
        modules["controllers"].resources()["aws_vpc_security_group_ingress_rule.grpc_relays"]
        .attributes["for_each"]).strip() == "var.relay_addresses"
    assert hcl._tokens_text(
        modules["controllers"].resources()[
            "aws_vpc_security_group_ingress_rule.grpc_operators"].attributes["for_each"]
    ).strip() == "toset(var.operator_cidrs)"
    # etcd and replica-to-replica gRPC: from the controllers' own group only
    for name in ("etcd", "grpc_replicas"):
        assert rules[name]["referenced_security_group_id"] == \
            rules[name]["security_group_id"] == "aws_security_group.controller.id"
    assert (rules["etcd"]["from_port"], rules["etcd"]["to_port"]) == (2379, 2380)


def test_security_group_descriptions_are_what_aws_takes(modules: dict[str, hcl.Module],
                                                         root_vars: dict) -> None:
    """EC2 refuses a security group (rule) description with other characters (an
    apostrophe, say) at apply, long after a plan looked fine."""
    allowed = re.compile(r"[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]{0,255}")
    root = root_evaluator(modules, root_vars)
    for ev in (region_evaluator(modules, root, "london"), controllers_evaluator(modules, root)):
        for address, block in ev.module.resources().items():
            if address.startswith(("aws_security_group.", "aws_vpc_security_group_")):
                inst = ev.with_instance(count_index=0, each=("london/n1", "203.0.113.9"))
                description = inst.attribute(block, "description")
                assert allowed.fullmatch(description), (address, description)


# -- the network and ami modules, shared by the region and controllers modules -----------------


# What each caller's network was called before modules/network: its resources' names then, and
# the Name tag they carried (kept, so that the moved resources do not change).
NETWORK_BEFORE = {"region": ("relays", "skymesh-london"),
                  "controllers": ("controllers", "skymesh-controllers")}


def callers(modules: dict[str, hcl.Module], root_vars: dict, **variables) -> dict:
    root = root_evaluator(modules, root_vars, **variables)
    return {"region": region_evaluator(modules, root, "london"),
            "controllers": controllers_evaluator(modules, root)}


def vpc_precondition_failures(ev: hcl.Evaluator) -> list[str]:
    (lifecycle,) = ev.module.resources()["aws_vpc.this"].children("lifecycle")
    return [ev.attribute(p, "error_message") for p in lifecycle.children("precondition")
            if not ev.attribute(p, "condition")]


def test_network_subnets_in_up_to_three_zones_offering_the_type(
        modules: dict[str, hcl.Module], root_vars: dict) -> None:
    region = callers(modules, root_vars)["region"]
    ev = network_evaluator(modules, region)
    # of the stand-ins: the region's own zones that offer the type, not the Local Zone
    assert outputs(ev)["zones"] == ["eu-west-2a", "eu-west-2b"]
    assert outputs(ev)["subnet_cidrs"] == ["10.80.0.0/24", "10.80.1.0/24"]
    assert outputs(ev)["subnet_ids"] == ["subnet-0", "subnet-1"]
    assert vpc_precondition_failures(ev) == []
    association = ev.module.resources()["aws_route_table_association.this"]
    assert ev.attribute(association, "count") == 2

    five = [f"eu-west-2{z}" for z in "edcba"]
    ev = network_evaluator(modules, region, zones={
        "data.aws_ec2_instance_type_offerings.this": {"locations": five},
        "data.aws_availability_zones.standard": {"names": five}})
    assert outputs(ev)["zones"] == ["eu-west-2a", "eu-west-2b", "eu-west-2c"]
    assert outputs(ev)["subnet_cidrs"][2] == "10.80.2.0/24"

    # no zone offers the type: the plan fails, saying where and what
    ev = network_evaluator(modules, region, zones={
        "data.aws_ec2_instance_type_offerings.this": {"locations": ["eu-west-2-lax-1a"]},
        "data.aws_availability_zones.standard": {"names": ["eu-west-2a"]}})
    assert outputs(ev)["zones"] == [] and outputs(ev)["subnet_ids"] == []
    (failure,) = vpc_precondition_failures(ev)
    assert "eu-west-2" in failure and "c6in.large" in failure and "skymesh-london" in failure


@pytest.mark.parametrize("caller", sorted(NETWORK_BEFORE))
def test_network_keeps_the_names_it_had(modules: dict[str, hcl.Module], root_vars: dict,
                                        caller: str) -> None:
    ev = network_evaluator(modules, callers(modules, root_vars)[caller])
    _, name = NETWORK_BEFORE[caller]
    resources = ev.module.resources()
    for address in ("aws_vpc.this", "aws_internet_gateway.this", "aws_route_table.this"):
        assert ev.attribute(resources[address], "tags") == {"Name": name}, address
    zone = outputs(ev)["zones"][0]
    assert ev.with_instance(count_index=0).attribute(resources["aws_subnet.this"], "tags") == \
        {"Name": f"{name}-{zone}"}
    vpc_cidr = {"region": "10.80.0.0/16", "controllers": "10.90.0.0/16"}[caller]
    assert ev.attribute(resources["aws_vpc.this"], "cidr_block") == vpc_cidr


@pytest.mark.parametrize("caller", sorted(NETWORK_BEFORE))
def test_moved_blocks_keep_an_existing_network(modules: dict[str, hcl.Module],
                                               caller: str) -> None:
    """Every resource of the network module is where one of the caller's resources was
    before: a moved block each, whole resources (a counted one keeps its instances'
    indexes), so that terraform moves them in the state instead of destroying and making
    them again."""
    module = modules[caller]
    moves = {}
    for block in module.of("moved"):
        source, target = (hcl._tokens_text(block.attributes[n]).strip() for n in ("from", "to"))
        assert source not in moves, f"{source} moved twice"
        moves[source] = target
    old, _ = NETWORK_BEFORE[caller]
    network = modules["network"].resources()
    assert moves == {f"{address.split('.')[0]}.{old}": f"module.network.{address}"
                     for address in network}
    for source, target in moves.items():
        # the old address is free, and the new one a resource of the same type there
        assert source not in module.resources(), source
        assert re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+", source), f"{source}: not a whole resource"
        assert target.split(".")[2:] == source.split(".")[:1] + ["this"]
    # the counted ones are counted there as they were here (their indexes mean the same)
    for address in ("aws_subnet.this", "aws_route_table_association.this"):
        assert "count" in network[address].attributes, address


def test_controllers_fixed_addresses_are_in_their_subnets(modules: dict[str, hcl.Module],
                                                          root_vars: dict) -> None:
    ev = callers(modules, root_vars)["controllers"]
    network = ev.resources["module.network"]
    cidr_of = dict(zip(network["subnet_ids"], network["subnet_cidrs"], strict=True))
    interface = ev.module.resources()["aws_network_interface.node"]
    subnets = []
    for replica, address in ev.local("private_ip").items():
        inst = ev.with_instance(each=(replica, replica))
        subnet = inst.attribute(interface, "subnet_id")
        assert inst.attribute(interface, "private_ips") == [address]
        assert ipaddress.ip_address(address) in ipaddress.ip_network(cidr_of[subnet])
        subnets.append(subnet)
    # the replicas go round the zones, at distinct addresses
    assert subnets == ["subnet-0", "subnet-1", "subnet-0"]
    assert len(set(ev.local("private_ip").values())) == 3


def test_relays_spread_over_the_subnets(modules: dict[str, hcl.Module],
                                        root_vars: dict) -> None:
    ev = callers(modules, root_vars, relays_per_region={"london": 3})["region"]
    interface = ev.module.resources()["aws_network_interface.node"]
    assert [ev.with_instance(count_index=i).attribute(interface, "subnet_id")
            for i in range(3)] == ["subnet-0", "subnet-1", "subnet-0"]


def test_ami_is_debians_for_the_architecture_unless_given(modules: dict[str, hcl.Module],
                                                          root_vars: dict) -> None:
    root = root_evaluator(modules, root_vars)
    london = region_evaluator(modules, root, "london")
    debian = next(b for b in modules["ami"].of("data") if b.labels == ["aws_ami", "debian"])
    for architectures, image in [(("x86_64", "i386"), "debian-12-amd64-*"),
                                 (("arm64",), "debian-12-arm64-*")]:
        ev = ami_evaluator(modules, london, architectures)
        (name,) = debian.children("filter")
        assert ev.attribute(name, "values") == [image]
        assert ev.attribute(debian, "owners") == ["136693071363"]  # Debian's own account
        assert outputs(ev) == {"id": DEBIAN_AMI}
    assert london.resources["module.ami"] == {"id": DEBIAN_AMI}

    # AWS China: no Debian image, and the instances' precondition asks for one
    beijing = region_evaluator(modules, root, "beijing")
    assert ami_evaluator(modules, beijing).attribute(debian, "count") == 0
    assert beijing.resources["module.ami"] == {"id": None}
    (lifecycle,) = beijing.module.resources()["aws_instance.node"].children("lifecycle")
    (precondition,) = lifecycle.children("precondition")
    assert beijing.attribute(precondition, "condition") is False
    assert 'ami_ids["cn-north-1"]' in beijing.attribute(precondition, "error_message")

    mine = "ami-0fedcba9876543210"
    root = root_evaluator(modules, root_vars, ami_ids={"cn-north-1": mine})
    beijing = region_evaluator(modules, root, "beijing")
    assert ami_evaluator(modules, beijing).attribute(debian, "count") == 0
    assert beijing.resources["module.ami"] == {"id": mine}
    assert beijing.attribute(precondition, "condition") is True


# -- the evaluator -------------------------------------------------------------------------------


def test_evaluator_is_strict(modules: dict[str, hcl.Module], root_vars: dict) -> None:
    ev = hcl.Evaluator(modules["root"], root_vars)

    def value(text: str):
        return ev.eval(hcl.parse_expression(text), {})

    assert value('{ for k, v in { b = 1, a = 2 } : k => v * 2 }') == {"a": 4, "b": 2}
    assert value('[for k, v in { b = 1, a = 2 } : k]') == ["a", "b"]  # maps in key order
    assert value('"${[1]}"') == [1]  # one interpolation is its value itself
    assert value('true ? 1 : file("/nonexistent")') == 1  # only the branch taken
    assert value('try(local.catalogue.london.provider.gcp, "none")') == "none"
    assert value('can(local.catalogue.london.provider.aws)') is True
    assert value('1 == "1"') is False
    assert value('lookup({}, "a", try(null.b, 7))') == 7
    # || evaluates both sides, as Terraform (before 1.12) does
    with pytest.raises(hcl.EvalError):
        value('true || fileexists(null)')
    # what it does not know, it refuses; try() and can() do not hide that
    with pytest.raises(hcl.Unsupported):
        value('formatdate("YYYY", "2024-01-01T00:00:00Z")')
    with pytest.raises(hcl.Unsupported):
        value('try(formatdate("YYYY", "x"), 1)')
    with pytest.raises(hcl.Unsupported):
        value('can(aws_instance.node[0].id)')
    with pytest.raises(hcl.Unsupported):
        value('<<EOT\nheredoc\nEOT\n')
    with pytest.raises(hcl.HclError, match="undeclared"):
        value('var.nonexistent')
    with pytest.raises(hcl.EvalError, match="duplicate"):
        value('{ for s in ["a", "a"] : s => 1 }')


def test_a_broken_copy_is_caught(modules: dict[str, hcl.Module], tmp_path: Path) -> None:
    broken = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, broken, ignore=shutil.ignore_patterns(".terraform*"))
    main = broken / "modules" / "region" / "main.tf"
    text = main.read_text()
    # a variable misspelt wherever it is used: one undeclared, one no longer used at all
    assert text.count("var.edge_port") >= 2
    main.write_text(text.replace("var.edge_port", "var.edge_prot"))
    variables = broken / "modules" / "controllers" / "variables.tf"
    variables.write_text(variables.read_text().replace(
        '  type        = number\n  default     = 7443\n', '  default     = 7443\n'))
    relays = broken / "relays.tf"
    relays.write_text(relays.read_text().replace(
        "  edge_port     = var.edge_port\n", "  edge_ports    = var.edge_port\n", 1))
    region = hcl.load_module(broken / "modules" / "region")
    assert variable_problems(region) == ["var.edge_prot is used and not declared",
                                         "variable edge_port is declared and not used"]
    assert variable_problems(hcl.load_module(broken / "modules" / "controllers")) == [
        "variable resolver_port has no type"]
    assert module_call_problems(hcl.load_module(broken)) == [
        "module.relays_us_east_1: edge_ports is not a variable of ./modules/region"]
    # and in a module's own calls: the network's range misspelt in the controllers' call
    controllers = broken / "modules" / "controllers" / "main.tf"
    controllers.write_text(controllers.read_text().replace(
        "  vpc_cidr      = var.vpc_cidr\n", "  vpc_cdir      = var.vpc_cidr\n", 1))
    assert module_call_problems(hcl.load_module(broken / "modules" / "controllers")) == [
        "module.network: required variable vpc_cidr not given",
        "module.network: vpc_cdir is not a variable of ../network"]

    main.write_text(text.replace("cidr_ipv4         = \"0.0.0.0/0\"",
                                 "cidr_ipv4         = var.world", 1))
    assert "var.world is used and not declared" in variable_problems(
        hcl.load_module(broken / "modules" / "region"))
    with pytest.raises(hcl.HclError, match="not valid HCL"):
        (broken / "oops.tf").write_text('locals {\n  a = [1, 2\n}\n')
        hcl.load_module(broken)


# -- against a real terraform, where there is one ------------------------------------------------

needs_terraform = pytest.mark.skipif(terraform_binary() is None,
                                     reason="no terraform binary here (it is not installable "
                                     "from this project's package sources); the evaluator "
                                     "stands in for it")


def locals_only_config(modules: dict[str, hcl.Module], out: Path, names: set[str]) -> None:
    """The root's variables and the named locals, nothing that needs a provider: a
    configuration `terraform console` evaluates without `init`."""
    shutil.copy(TERRAFORM / "variables.tf", out / "variables.tf")
    lines = []
    for file in ("main.tf", "relays.tf"):
        text = (TERRAFORM / file).read_text()
        for block in hcl.parse_file(TERRAFORM / file):
            for name, expr in block.attributes.items():
                if block.type == "locals" and name in names:
                    lines.append(f"  {name} = {text[expr.meta.start_pos:expr.meta.end_pos]}\n")
    out.joinpath("locals.tf").write_text("locals {\n" + "".join(lines) + "}\n")


@needs_terraform
def test_terraform_agrees_with_the_evaluator(modules: dict[str, hcl.Module], root_vars: dict,
                                             tmp_path: Path) -> None:
    names = {"regions_dir", "catalogue", "selected", "relays", "not_on_aws", "misnamed",
             "yml_files", "unknown_only", "no_aws_region", "uncovered", "aws_regions_covered"}
    locals_only_config(modules, tmp_path, names)
    regions = tmp_path / "regions"
    shutil.copytree(REGIONS, regions)
    (regions / "nowhere.yaml").write_text(
        "id: nowhere\nname: N\ncountry: NO\nlat: 1e1\nlon: 1.5e1\n"
        "provider: {aws: xx-nowhere-1}\ncapacity: {relays: 04, gbps: 0x10}\ntags: [y, off]\n")
    for variables in ({}, {"only_regions": ["london", "amsterdam", "nowhere"],
                           "relays_per_region": {"london": 7}}):
        variables = {**root_vars, "regions_dir": str(regions), **variables}
        args = [f"-var={k}={v}" if isinstance(v, str) else
                f"-var={k}={hcl._json_text(v)}" for k, v in variables.items()]
        expression = "{" + ", ".join(f"{n} = local.{n}" for n in sorted(names)) + "}"
        theirs = terraform_console(tmp_path, expression, *args)
        ev = hcl.Evaluator(modules["root"], variables)
        ours = {n: ev.local(n) for n in names}
        assert theirs == hcl_json(ours)


def hcl_json(value):
    return json.loads(hcl._json_text(value))


@needs_terraform
def test_terraform_fmt() -> None:
    proc = subprocess.run([terraform_binary(), "fmt", "-check", "-recursive", "-diff", "."],
                          cwd=TERRAFORM, capture_output=True, text=True, timeout=60,
                          env={"TF_CLI_CONFIG_FILE": "/dev/null", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
