terraform {
  # 1.5: check blocks (the catalogue regions this configuration does not provision are
  # reported by one).
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.90 knows the AWS regions of early 2025 (mx-central-1, ap-southeast-5 and -7); 6.x
      # reworks aws_instance's network_interface block, which the controllers module uses.
      version = "~> 5.90"
    }
  }
}
