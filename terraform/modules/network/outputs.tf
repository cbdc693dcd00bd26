output "vpc_id" {
  description = "The VPC, for the nodes' security groups."
  value       = aws_vpc.this.id
}

output "zones" {
  description = "The availability zones with a subnet, in order: one to three, each offering instance_type (none fails the plan)."
  value       = local.zones
}

output "subnet_ids" {
  description = "The public subnets, one per zone in the order of zones."
  value       = aws_subnet.this[*].id
}

output "subnet_cidrs" {
  description = "The subnets' address ranges in the order of zones (cidrsubnet(vpc_cidr, 8, i)), known at plan: for fixed private addresses (cidrhost)."
  value       = aws_subnet.this[*].cidr_block
}

output "internet_gateway_id" {
  description = "The internet gateway: Elastic IPs for the nodes depend on it (depends_on = [module.network.internet_gateway_id])."
  value       = aws_internet_gateway.this.id
}
