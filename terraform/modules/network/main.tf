# The network of one group of skymesh nodes, in the AWS region of the provider it is given: a
# VPC, an internet gateway, and a public subnet in each of up to three availability zones that
# offer the nodes' instance type, routed to the gateway. The region module (relays) and the
# controllers module each have one; their nodes' security groups, network interfaces and
# Elastic IPs are theirs.

data "aws_region" "current" {}

# Not Local Zones or Wavelength: the region's own zones.
data "aws_availability_zones" "standard" {
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

data "aws_ec2_instance_type_offerings" "this" {
  location_type = "availability-zone"

  filter {
    name   = "instance-type"
    values = [var.instance_type]
  }
}

locals {
  # Up to three availability zones offering the instance type, in name order: subnet i is in
  # zones[i].
  zones = slice(local.offered_zones, 0, min(3, length(local.offered_zones)))
  offered_zones = sort(setintersection(
    data.aws_ec2_instance_type_offerings.this.locations,
    data.aws_availability_zones.standard.names,
  ))
}

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = var.name }

  lifecycle {
    precondition {
      condition     = length(local.zones) > 0
      error_message = "No availability zone of ${data.aws_region.current.name} offers ${var.instance_type} (${var.name}); choose another instance type."
    }
  }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id

  tags = { Name = var.name }
}

resource "aws_subnet" "this" {
  count = length(local.zones)

  vpc_id            = aws_vpc.this.id
  availability_zone = local.zones[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, count.index)

  tags = { Name = "${var.name}-${local.zones[count.index]}" }
}

resource "aws_route_table" "this" {
  vpc_id = aws_vpc.this.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }

  tags = { Name = var.name }
}

resource "aws_route_table_association" "this" {
  count = length(aws_subnet.this)

  subnet_id      = aws_subnet.this[count.index].id
  route_table_id = aws_route_table.this.id
}
