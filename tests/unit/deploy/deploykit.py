"""What the deployment tests share: where things are, stand-ins for what only AWS knows
(addresses, secret ARNs, availability zones), and the root configuration's module calls
evaluated into the modules' inputs as terraform would wire them, so that the region and
controllers modules are checked with what the root gives them, and the network and ami
modules with what those give them.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl

from skymesh.catalogue import load_catalogue

REPO = Path(__file__).resolve().parents[3]
TERRAFORM = REPO / "terraform"
REGIONS = REPO / "regions"
DEPLOY = REPO / "deploy"
MODULES = {"root": TERRAFORM, "region": TERRAFORM / "modules" / "region",
           "controllers": TERRAFORM / "modules" / "controllers",
           "network": TERRAFORM / "modules" / "network", "ami": TERRAFORM / "modules" / "ami"}

# Stand-ins for what only AWS knows: the controllers' Elastic IPs, an account, Debian's
# newest image.
CONTROLLER_IPS = {"c1": "198.51.100.11", "c2": "198.51.100.12", "c3": "198.51.100.13"}
ACCOUNT = "123456789012"
DATA_BUCKET = "skymesh-controllers-20261207000000000000000001"
DEBIAN_AMI = "ami-0123456789abcdef0"


def zone_stand_ins(aws_region: str) -> dict[str, Any]:
    """An AWS region's data sources for availability zones: zones a and b offer the instance
    type, c does not, and a Local Zone that offers it is not one of the region's own."""
    return {
        "data.aws_ec2_instance_type_offerings.this": {
            "locations": [f"{aws_region}b", f"{aws_region}a", f"{aws_region}-lax-1a"]},
        "data.aws_availability_zones.standard": {
            "names": [f"{aws_region}a", f"{aws_region}b", f"{aws_region}c"]},
    }


@functools.cache
def _region_number() -> dict[str, int]:
    return {rid: i for i, rid in enumerate(sorted(load_catalogue(REGIONS)))}


def relay_ip(region: str, index: int) -> str:
    """A distinct stand-in address per relay node (`index` from 0)."""
    return f"203.0.{_region_number()[region]}.{index + 10}"


def secret_arn(aws_region: str, name: str) -> str:
    partition = "aws-cn" if aws_region.startswith("cn-") else "aws"
    return f"arn:{partition}:secretsmanager:{aws_region}:{ACCOUNT}:secret:skymesh/{name}-AbCdEf"


def pem(kind: str, name: str) -> str:
    return f"-----BEGIN {kind}-----\nc3R1Yg== {name}\n-----END {kind}-----\n"


def relay_block(root: hcl.Module, aws_region: str) -> hcl.Block:
    """The root's module block for the relays in `aws_region`."""
    return root.module_calls()["relays_" + aws_region.replace("-", "_")]


def module_inputs(ev: hcl.Evaluator, block: hcl.Block) -> dict[str, Any]:
    """A module block's arguments, evaluated where the block is (ev: its instance)."""
    meta = {"source", "for_each", "count", "providers", "depends_on", "version"}
    return {name: ev.attribute(block, name) for name in block.attributes if name not in meta}


def root_evaluator(modules: dict[str, hcl.Module], root_vars: dict[str, Any],
                   **variables: Any) -> hcl.Evaluator:
    """The root configuration with stand-ins for what its modules put out: the controllers'
    addresses, and each provisioned region's relay addresses."""
    root = modules["root"]
    ev = hcl.Evaluator(root, {**root_vars, **variables})
    resources: dict[str, Any] = {
        "module.controllers": {"public_ips": dict(list(CONTROLLER_IPS.items())
                                                  [:ev.variables["controller_count"]])}}
    relays = ev.local("relays")
    for name, block in root.module_calls().items():
        if name == "controllers":
            continue
        selected = ev.attribute(block, "for_each")
        resources[f"module.{name}"] = {
            rid: {"public_ips": {f"n{i + 1}": relay_ip(rid, i)
                                 for i in range(relays[rid]["nodes"])}}
            for rid in selected}
    ev.resources.update(resources)
    return ev


def region_evaluator(modules: dict[str, hcl.Module], root_ev: hcl.Evaluator,
                     region: str) -> hcl.Evaluator:
    """The region module as the root instantiates it for catalogue region `region`, with
    stand-ins for its resources (Elastic IPs, secrets) and data sources."""
    relays = root_ev.local("relays")
    aws_region = relays[region]["aws_region"]
    block = relay_block(modules["root"], aws_region)
    inputs = module_inputs(root_ev.with_instance(each=(region, relays[region])), block)
    ev = hcl.Evaluator(modules["region"], inputs, cwd=TERRAFORM)
    partition = "aws-cn" if aws_region.startswith("cn-") else "aws"
    ev.resources.update({
        "data.aws_partition.current": {
            "partition": partition,
            "dns_suffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"},
        "data.aws_region.current": {"name": aws_region},
        "aws_eip.node": [{"public_ip": relay_ip(region, i)}
                         for i in range(inputs["node_count"])],
        "aws_secretsmanager_secret.tls": {
            name: {"arn": secret_arn(aws_region, f"{region}/{name}"),
                   "id": secret_arn(aws_region, f"{region}/{name}")}
            for name in ev.local("new_secrets")},
    })
    add_children(modules, ev)
    return ev


def controllers_evaluator(modules: dict[str, hcl.Module],
                          root_ev: hcl.Evaluator) -> hcl.Evaluator:
    block = modules["root"].module_calls()["controllers"]
    ev = hcl.Evaluator(modules["controllers"], module_inputs(root_ev, block), cwd=TERRAFORM)
    region = root_ev.variables["controller_aws_region"]
    ev.resources.update({
        "data.aws_partition.current": {"partition": "aws", "dns_suffix": "amazonaws.com"},
        "data.aws_region.current": {"name": region},
        "aws_eip.node": {c: {"public_ip": ip} for c, ip in CONTROLLER_IPS.items()},
        "aws_s3_bucket.data": {"id": DATA_BUCKET, "arn": f"arn:aws:s3:::{DATA_BUCKET}"},
        "aws_secretsmanager_secret.this": {
            name: {"arn": secret_arn(region, f"controllers/{name}"),
                   "id": secret_arn(region, f"controllers/{name}")}
            for name in ev.local("new_secrets")},
    })
    add_children(modules, ev)
    return ev


# -- the modules the region and controllers modules call ----------------------------------------


def child_evaluator(modules: dict[str, hcl.Module], parent: hcl.Evaluator, call: str,
                    stand_ins: dict[str, Any]) -> hcl.Evaluator:
    """The module that `parent`'s `module "<call>"` block calls, with the inputs the block
    gives it and `stand_ins` for its data sources and resources."""
    block = parent.module.module_calls()[call]
    path = (parent.module.path / parent.attribute(block, "source")).resolve()
    (name,) = [n for n, p in MODULES.items() if p.resolve() == path]
    return hcl.Evaluator(modules[name], module_inputs(parent, block), cwd=TERRAFORM,
                         resources=stand_ins)


def network_evaluator(modules: dict[str, hcl.Module], parent: hcl.Evaluator,
                      zones: dict[str, Any] | None = None) -> hcl.Evaluator:
    """The network module as `parent` (region or controllers) calls it, in parent's AWS
    region with zone_stand_ins() (or `zones`), its VPC, gateway and subnets stood in for by
    their ids (and, for the subnets, the ranges their configuration gives them)."""
    aws_region = parent.resources["data.aws_region.current"]["name"]
    ev = child_evaluator(modules, parent, "network", {
        "data.aws_region.current": {"name": aws_region},
        **(zones or zone_stand_ins(aws_region))})
    subnet = ev.module.resources()["aws_subnet.this"]
    ev.resources.update({
        "aws_vpc.this": {"id": "vpc-0a1b2c3d"},
        "aws_internet_gateway.this": {"id": "igw-0a1b2c3d"},
        "aws_subnet.this": [
            {"id": f"subnet-{i}",
             "cidr_block": ev.with_instance(count_index=i).attribute(subnet, "cidr_block")}
            for i in range(ev.attribute(subnet, "count"))],
    })
    return ev


def ami_evaluator(modules: dict[str, hcl.Module], parent: hcl.Evaluator,
                  architectures: tuple[str, ...] = ("x86_64", "i386")) -> hcl.Evaluator:
    """The ami module as `parent` calls it, for an instance type of `architectures`, where
    Debian's newest image is DEBIAN_AMI (if the data source is read at all)."""
    ev = child_evaluator(modules, parent, "ami", {
        "data.aws_partition.current": parent.resources["data.aws_partition.current"],
        "data.aws_ec2_instance_type.this": {"supported_architectures": list(architectures)}})
    (debian,) = [b for b in ev.module.of("data") if b.labels == ["aws_ami", "debian"]]
    ev.resources["data.aws_ami.debian"] = [{"id": DEBIAN_AMI}] * ev.attribute(debian, "count")
    return ev


def outputs(ev: hcl.Evaluator) -> dict[str, Any]:
    """A module's outputs, as the module calling it sees them."""
    return {b.labels[0]: ev.attribute(b, "value") for b in ev.module.of("output")}


def add_children(modules: dict[str, hcl.Module], parent: hcl.Evaluator) -> None:
    """`module.network` and `module.ami` in `parent` (region or controllers): the outputs of
    those modules, evaluated with the inputs parent gives them."""
    parent.resources["module.network"] = outputs(network_evaluator(modules, parent))
    parent.resources["module.ami"] = outputs(ami_evaluator(modules, parent))


# -- the terraform binary, where there is one (it cannot be installed here) -------------------


def terraform_binary() -> str | None:
    return shutil.which("terraform")


def terraform_console(directory: Path, expression: str, *args: str) -> Any:
    """The value of `expression` in the configuration in `directory`, as `terraform
    console` computes it (JSON-encoded there, decoded here)."""
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "TF_IN_AUTOMATION": "1",
           "CHECKPOINT_DISABLE": "1"}
    proc = subprocess.run([terraform_binary(), "console", *args],
                          input=f"jsonencode({expression})\n", capture_output=True, text=True,
                          cwd=directory, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # the console prints the JSON text as an HCL string: quoted, escaped, with ${ as $${
    line = proc.stdout.strip().splitlines()[-1]
    text = json.loads(line).replace("$${", "${").replace("%%{", "%{")
    return json.loads(text)

