output "public_ips" {
  description = "Each replica's public address (its Elastic IP), by replica id (c1..cN): the relays reach c<i>.<domain> there."
  value       = { for c in local.replicas : c => aws_eip.node[c].public_ip }
}

output "nodes" {
  description = "Each replica by id: public and private address, instance id."
  value = {
    for c in local.replicas : c => {
      public_ip   = aws_eip.node[c].public_ip
      private_ip  = local.private_ip[c]
      instance_id = aws_instance.node[c].id
    }
  }
}

output "endpoints" {
  description = "The replicas' gRPC endpoints, by the names their certificates carry (c<i>.<domain>:PORT)."
  value       = local.endpoints
}

output "resolver_endpoints" {
  description = "The EdgeResolver at each replica's public address (IP:PORT), for clients."
  value       = [for c in local.replicas : "${aws_eip.node[c].public_ip}:${var.resolver_port}"]
}

output "hosts" {
  description = "/etc/hosts lines naming the replicas at their public addresses, for operators' machines."
  value       = [for c in local.replicas : "${aws_eip.node[c].public_ip} ${c}.${local.domain}"]
}

output "etcd_endpoints" {
  description = "The etcd the replicas keep their state on (their own members, or etcd_endpoints)."
  value       = local.etcd_endpoints
}
