variable "instance_type" {
  description = "EC2 instance type of the nodes: the Debian image is the one for the architecture it runs (x86_64: amd64, else arm64)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type: an EC2 instance type such as c6in.large."
  }
}

variable "ami_id" {
  description = "An AMI to use instead of Debian's (a Debian 12 image or one like it: cloud-init, apt, python3); null: the newest Debian 12 image Debian publishes in the region, none in AWS China."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id: an AMI id, ami- and 8 or 17 hex digits."
  }
}
