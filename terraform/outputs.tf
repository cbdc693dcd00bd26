output "relays" {
  description = "Relay nodes by catalogue region: the AWS region, and each node's public address by node id (n1..nN)."
  value = {
    for id, m in local.relay_modules : id => {
      aws_region = local.relays[id].aws_region
      nodes      = m.public_ips
    }
  }
}

output "relay_addresses" {
  description = "Every relay node's public address, by <region>/<node> (the names `skymesh mesh` uses)."
  value       = local.relay_addresses
}

output "regions_not_on_aws" {
  description = "Selected catalogue regions without an AWS hint: reported, not provisioned (the regions_not_on_aws check says so at every plan)."
  value       = local.not_on_aws
}

output "controllers" {
  description = "Controller replicas by id (c1..cN): public and private address."
  value       = module.controllers.nodes
}

output "controller_endpoints" {
  description = "The controllers' gRPC endpoints as relays and admin commands name them (c<i>.<domain>:PORT; resolve the names with the hosts output)."
  value       = module.controllers.endpoints
}

output "resolver_endpoints" {
  description = "Where clients resolve their nearest edges (the controllers' public addresses, resolver port)."
  value       = module.controllers.resolver_endpoints
}

output "hosts" {
  description = "/etc/hosts lines for an operator's machine: the controllers' names (their certificates name them) at their public addresses."
  value       = module.controllers.hosts
}
