variable "name" {
  description = "Name tag of the VPC, its internet gateway and route table (skymesh-<region> for relays, skymesh-controllers); each subnet's is <name>-<zone>."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$", var.name))
    error_message = "name: 1-64 characters of letters, digits, . and -, such as skymesh-london."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the nodes the network is for: only availability zones that offer it get a subnet."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type: an EC2 instance type such as c6in.large."
  }
}

variable "vpc_cidr" {
  description = "Address range of the VPC; subnet i (in zones[i]) is cidrsubnet(vpc_cidr, 8, i)."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && try(tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 20, false)
    error_message = "vpc_cidr: an IPv4 CIDR from /16 to /20, such as 10.80.0.0/16 (its subnets are 8 bits longer)."
  }
}
