output "id" {
  description = "The AMI of the nodes: ami_id, else Debian's newest Debian 12 image for the instance type; null where there is none (AWS China without ami_id)."
  value       = var.ami_id != null ? var.ami_id : one(data.aws_ami.debian[*].id)
}
