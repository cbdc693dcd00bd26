# skymesh on AWS: the relay nodes of every catalogue region with an AWS hint (relays.tf, one
# module block per AWS region), the controller replicas and their etcd (module.controllers),
# and the checks that keep the catalogue and this configuration in step.

locals {
  regions_dir = coalesce(var.regions_dir, "${path.module}/../regions")

  # The catalogue: every region file, by the id its file is named for. policy.yaml, the
  # residency policy, lives beside the region files and is not a region.
  catalogue = {
    for f in fileset(local.regions_dir, "*.yaml") :
    trimsuffix(f, ".yaml") => yamldecode(file("${local.regions_dir}/${f}"))
    if f != "policy.yaml"
  }

  selected = {
    for id, r in local.catalogue : id => r
    if length(var.only_regions) == 0 || contains(var.only_regions, id)
  }

  # The regions provisioned here: those whose provider hints name AWS, as {aws: REGION} or
  # {aws: {region: REGION, instance_type: TYPE}}. aws_region is "" when the hint names no
  # region name (the plan then fails on terraform_data.catalogue, saying which).
  relays = {
    for id, r in local.selected : id => {
      aws_region    = try(regex("^[a-z]{2}(?:-[a-z]+)+-[0-9]$", try(r.provider.aws.region, r.provider.aws)), "")
      instance_type = try(r.provider.aws.instance_type, var.relay_instance_type)
      nodes         = lookup(var.relays_per_region, id, try(r.capacity.relays, 1))
    }
    if can(r.provider.aws)
  }

  # Selected regions without an AWS hint (another cloud's, or none): reported by the
  # regions_not_on_aws output and check, not provisioned.
  not_on_aws = sort([for id, r in local.selected : id if !can(r.provider.aws)])

  # What fails the plan (terraform_data.catalogue below).
  misnamed      = sort([for id, r in local.catalogue : id if try(r.id, null) != id])
  yml_files     = sort(fileset(local.regions_dir, "*.yml"))
  unknown_only  = sort([for id in var.only_regions : id if !contains(keys(local.catalogue), id)])
  no_aws_region = sort([for id, r in local.relays : id if r.aws_region == ""])
  uncovered = sort([
    for id, r in local.relays : "${id} (${r.aws_region})"
    if r.aws_region != "" && !contains(local.aws_regions_covered, r.aws_region)
  ])

  tags = merge({ Project = "skymesh" }, var.tags)

  # Settings every node shares.
  mesh = {
    domain          = var.domain
    controller_port = var.controller_port
    skymesh_package = var.skymesh_package
    pip_index_url   = var.pip_index_url
    log_level       = var.log_level
    tls_mode        = var.tls_key_mode
  }

  # TLS. Identities are certs_dir's file names without .pem/.key: each relay node's own, the
  # region's client edge (its nodes share it), each controller's and its etcd member's.
  relay_identities = {
    for id, r in local.relays : id => concat(
      [for i in range(1, r.nodes + 1) : "relay-${id}-n${i}"], ["edge-${id}"]
    )
  }
  local_etcd = length(var.etcd_endpoints) == 0
  controller_identities = concat(
    [for i in range(1, var.controller_count + 1) : "controller-c${i}"],
    [for i in range(1, var.controller_count + 1) : "etcd-c${i}" if local.local_etcd],
  )

  # Secrets operators made themselves hold their certificates and keys: those files are not
  # read, need not be on this machine, and never enter terraform's state.
  secret_arns = var.tls_key_mode == "secretsmanager" ? var.secret_arns : {}
  own_secrets = keys(local.secret_arns)

  relay_certificates = {
    for id, names in local.relay_identities : id => {
      for n in concat(names, ["bundle"]) : "${n}.pem" => file("${var.certs_dir}/${n}.pem")
      if !contains(local.own_secrets, n)
    }
  }
  relay_private_keys = {
    for id, names in local.relay_identities : id => {
      for n in names : "${n}.key" => sensitive(file("${var.certs_dir}/${n}.key"))
      if !contains(local.own_secrets, n)
    }
  }
  controller_certificates = {
    for n in concat(local.controller_identities, ["bundle"]) : "${n}.pem" => file("${var.certs_dir}/${n}.pem")
    if !contains(local.own_secrets, n)
  }
  controller_private_keys = {
    for n in local.controller_identities : "${n}.key" => sensitive(file("${var.certs_dir}/${n}.key"))
    if !contains(local.own_secrets, n)
  }
  fabric_keys = var.fabric_keys_file == null || contains(local.own_secrets, "fabric") ? null : sensitive(file(var.fabric_keys_file))

  # Every relay node's public address, by "<region>/<node>": the controllers let these in.
  relay_addresses = merge([
    for id, m in local.relay_modules : { for node, ip in m.public_ips : "${id}/${node}" => ip }
  ]...)
}

# Mistakes in the catalogue or the selection fail the plan, each saying what to do.
resource "terraform_data" "catalogue" {
  lifecycle {
    precondition {
      condition     = length(local.misnamed) == 0
      error_message = "Region files whose id is not their file name (<id>.yaml): ${join(", ", local.misnamed)}."
    }
    precondition {
      # skymesh reads *.yml region files too; this configuration would miss them.
      condition     = length(local.yml_files) == 0
      error_message = "Region files named .yml (rename them .yaml): ${join(", ", local.yml_files)}."
    }
    precondition {
      condition     = length(local.unknown_only) == 0
      error_message = "only_regions names regions the catalogue (${local.regions_dir}) has not: ${join(", ", local.unknown_only)}."
    }
    precondition {
      condition     = length(local.no_aws_region) == 0
      error_message = "Regions whose provider.aws names no AWS region (write {aws: eu-west-2} or {aws: {region: eu-west-2, instance_type: c6in.large}}): ${join(", ", local.no_aws_region)}."
    }
    precondition {
      condition     = length(local.uncovered) == 0
      error_message = "Regions hinting an AWS region this configuration has no provider for: ${join(", ", local.uncovered)}. Add the AWS region's provider alias (providers.tf), its module block and its name in local.aws_regions_covered (relays.tf)."
    }
    precondition {
      condition     = var.tls_key_mode == "secretsmanager" || length(var.secret_arns) == 0
      error_message = "secret_arns are for tls_key_mode = \"secretsmanager\"; with \"inline\" the keys come from certs_dir."
    }
  }
}

# Not an error: the catalogue may name regions that run on other clouds. Said at every plan.
check "regions_not_on_aws" {
  assert {
    condition     = length(local.not_on_aws) == 0
    error_message = "Catalogue regions without an AWS hint are not provisioned here, and the controllers do not serve them: ${join(", ", local.not_on_aws)}. Give a region {aws: REGION} in its provider hints to provision it."
  }
}

module "controllers" {
  source = "./modules/controllers"

  controller_count = var.controller_count
  instance_type    = var.controller_instance_type
  ami_id           = lookup(var.ami_ids, var.controller_aws_region, null)
  mesh             = local.mesh
  resolver_port    = var.resolver_port
  etcd_endpoints   = var.etcd_endpoints
  relay_addresses  = local.relay_addresses
  operator_cidrs   = var.operator_cidrs
  catalogue        = { for f in fileset(local.regions_dir, "*.yaml") : f => file("${local.regions_dir}/${f}") }
  serve_regions    = sort(keys(local.relays))
  apps_yaml        = file(var.apps_file)
  fabric_keys      = local.fabric_keys
  certificates     = local.controller_certificates
  private_keys     = local.controller_private_keys
  secret_arns      = local.secret_arns
}
