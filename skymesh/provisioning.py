"""What provisioning derives from the catalogue, in one place for `skymesh certs issue
--for-catalogue` and the terraform configuration (terraform/) to agree on: where a region
runs (its AWS hint), how many relay nodes it has and their ids, and which certificates the
deployed mesh needs, with the names each is for.

Names, not addresses: a deployment's certificates are issued before its machines exist, so
they name fixed DNS names under the mesh's domain (`c1.skymesh.internal`, ...), which the
machines' cloud-init maps to the addresses terraform allocated (terraform/README.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from skymesh.catalogue import Region

DEFAULT_DOMAIN = "skymesh.internal"
DEFAULT_CONTROLLERS = 3
DOMAIN = re.compile(r"^(?=.{1,200}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
                    r"(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")


class ProvisioningError(ValueError):
    pass


@dataclass(frozen=True)
class AwsHint:
    region: str
    instance_type: str | None  # None: the deployment's default


def aws_hint(region: Region) -> AwsHint | None:
    """Where `region` runs on AWS, from its `provider` hint (checked by the catalogue's
    loader); None when it has none."""
    hint = (region.extra.get("provider") or {}).get("aws")
    if hint is None:
        return None
    if isinstance(hint, dict):
        return AwsHint(hint["region"], hint.get("instance_type"))
    return AwsHint(hint, None)


def node_ids(region: Region, override: int | None = None) -> list[str]:
    """The ids of `region`'s relay nodes: n1..nN, N its `capacity.relays` (1 when absent)
    or `override`."""
    count = override if override is not None else \
        int((region.extra.get("capacity") or {}).get("relays", 1))
    if count < 1:
        raise ProvisioningError(f"nodes per region must be 1 or more, got {count}")
    return [f"n{i}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class CertSpec:
    """One certificate of a deployment: its file stem in the output directory, what it is
    (relay, edge, controller, etcd), and the DNS names it is for."""

    stem: str
    kind: str
    hosts: tuple[str, ...] = ()
    region: str = ""
    node: str = ""  # relay node id, or controller replica id


def controller_ids(count: int) -> list[str]:
    if count < 1:
        raise ProvisioningError(f"controllers must be 1 or more, got {count}")
    return [f"c{i}" for i in range(1, count + 1)]


def controller_host(replica: str, domain: str) -> str:
    return f"{replica}.{domain}"


def resolver_host(domain: str) -> str:
    """The name clients reach the EdgeResolver by (every replica serves it): a public DNS
    name with an address record per controller, where `domain` is one the operator owns."""
    return f"resolve.{domain}"


def etcd_host(replica: str, domain: str) -> str:
    return f"etcd-{replica}.{domain}"


def edge_hosts(region: str, domain: str) -> tuple[str, str]:
    """The client edge's names: the one every edge shares (the SDK's server name) and the
    region's own."""
    return (f"edge.{domain}", f"{region}.edge.{domain}")


def certificate_plan(regions: Mapping[str, Region], domain: str = DEFAULT_DOMAIN,
                     controllers: int = DEFAULT_CONTROLLERS,
                     nodes: int | None = None) -> list[CertSpec]:
    """Every certificate a deployment of `regions` needs: per controller replica its mesh
    identity (for its own name and the resolvers') and its etcd member's server
    certificate; per region a client-edge certificate and one mesh identity per relay
    node."""
    if not DOMAIN.fullmatch(domain):
        raise ProvisioningError(f"--domain {domain!r}: expected a DNS domain such as "
                                f"{DEFAULT_DOMAIN}")
    plan: list[CertSpec] = []
    for replica in controller_ids(controllers):
        plan.append(CertSpec(f"controller-{replica}", "controller",
                             (controller_host(replica, domain), resolver_host(domain)),
                             node=replica))
        plan.append(CertSpec(f"etcd-{replica}", "etcd",
                             (etcd_host(replica, domain), "localhost", "127.0.0.1"),
                             node=replica))
    for rid, region in regions.items():
        plan.append(CertSpec(f"edge-{rid}", "edge", edge_hosts(rid, domain), region=rid))
        for node in node_ids(region, nodes):
            plan.append(CertSpec(f"relay-{rid}-{node}", "relay", region=rid, node=node))
    return plan
