output "public_ips" {
  description = "Each node's public address (its Elastic IP), by node id (n1..nN)."
  value       = { for i, n in local.nodes : n => aws_eip.node[i].public_ip }
}

output "nodes" {
  description = "Each node by node id: public and private address, instance id."
  value = {
    for i, n in local.nodes : n => {
      public_ip   = aws_eip.node[i].public_ip
      private_ip  = aws_network_interface.node[i].private_ip
      instance_id = aws_instance.node[i].id
    }
  }
}

output "security_group_id" {
  description = "The relays' security group (to let more in, e.g. monitoring)."
  value       = aws_security_group.relay.id
}
