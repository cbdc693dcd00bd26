# The image of one group of skymesh nodes, in the AWS region of the provider it is given:
# ami_id if given, else the newest Debian 12 image Debian publishes there, amd64 or arm64 as the
# instance type runs. Debian publishes none in AWS China: there id is null unless ami_id is
# given, and the callers' instances fail their precondition saying so.

data "aws_partition" "current" {}

data "aws_ec2_instance_type" "this" {
  instance_type = var.instance_type
}

data "aws_ami" "debian" {
  count = var.ami_id == null && data.aws_partition.current.partition == "aws" ? 1 : 0

  most_recent = true
  # Debian's own account (wiki.debian.org/Cloud/AmazonEC2Image).
  owners = ["136693071363"]

  filter {
    name   = "name"
    values = ["debian-12-${local.arch}-*"]
  }
}

locals {
  # Debian's images, by the architecture the instance type runs.
  arch = contains(data.aws_ec2_instance_type.this.supported_architectures, "x86_64") ? "amd64" : "arm64"
}
