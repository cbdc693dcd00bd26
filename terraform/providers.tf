# The aws provider of each AWS region relays may run in. Terraform cannot make provider
# configurations from data, so there is one alias per region here and one module block per
# region in relays.tf; adding a catalogue region in an AWS region listed here is one YAML file.
# A region of AWS not listed: add its alias here, its module block and its name in
# local.aws_regions_covered (relays.tf); tests/unit/deploy checks the three agree.
#
# Every configuration is configured at every plan, used or not: so that a plan needs no
# credentials for regions nothing runs in (opt-in regions the account has not enabled, the
# China partition), the aliases make no call to AWS until a resource needs one.

# The controllers' region: the default configuration.
provider "aws" {
  region  = var.controller_aws_region
  profile = var.aws_profile

  default_tags {
    tags = local.tags
  }
}

# N. Virginia
provider "aws" {
  alias                       = "us_east_1"
  region                      = "us-east-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Ohio
provider "aws" {
  alias                       = "us_east_2"
  region                      = "us-east-2"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# N. California
provider "aws" {
  alias                       = "us_west_1"
  region                      = "us-west-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Oregon
provider "aws" {
  alias                       = "us_west_2"
  region                      = "us-west-2"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Canada Central
provider "aws" {
  alias                       = "ca_central_1"
  region                      = "ca-central-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Calgary
provider "aws" {
  alias                       = "ca_west_1"
  region                      = "ca-west-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Mexico
provider "aws" {
  alias                       = "mx_central_1"
  region                      = "mx-central-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# São Paulo
provider "aws" {
  alias                       = "sa_east_1"
  region                      = "sa-east-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Ireland
provider "aws" {
  alias                       = "eu_west_1"
  region                      = "eu-west-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# London
provider "aws" {
  alias                       = "eu_west_2"
  region                      = "eu-west-2"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Paris
provider "aws" {
  alias                       = "eu_west_3"
  region                      = "eu-west-3"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Frankfurt
provider "aws" {
  alias                       = "eu_central_1"
  region                      = "eu-central-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Zurich
provider "aws" {
  alias                       = "eu_central_2"
  region                      = "eu-central-2"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Milan
provider "aws" {
  alias                       = "eu_south_1"
  region                      = "eu-south-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Spain
provider "aws" {
  alias                       = "eu_south_2"
  region                      = "eu-south-2"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Stockholm
provider "aws" {
  alias                       = "eu_north_1"
  region                      = "eu-north-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Tel Aviv
provider "aws" {
  alias                       = "il_central_1"
  region                      = "il-central-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Bahrain
provider "aws" {
  alias                       = "me_south_1"
  region                      = "me-south-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# UAE
provider "aws" {
  alias                       = "me_central_1"
  region                      = "me-central-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Cape Town
provider "aws" {
  alias                       = "af_south_1"
  region                      = "af-south-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Mumbai
provider "aws" {
  alias                       = "ap_south_1"
  region                      = "ap-south-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Hyderabad
provider "aws" {
  alias                       = "ap_south_2"
  region                      = "ap-south-2"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Hong Kong
provider "aws" {
  alias                       = "ap_east_1"
  region                      = "ap-east-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Singapore
provider "aws" {
  alias                       = "ap_southeast_1"
  region                      = "ap-southeast-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Sydney
provider "aws" {
  alias                       = "ap_southeast_2"
  region                      = "ap-southeast-2"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Jakarta
provider "aws" {
  alias                       = "ap_southeast_3"
  region                      = "ap-southeast-3"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Melbourne
provider "aws" {
  alias                       = "ap_southeast_4"
  region                      = "ap-southeast-4"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Malaysia
provider "aws" {
  alias                       = "ap_southeast_5"
  region                      = "ap-southeast-5"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Thailand
provider "aws" {
  alias                       = "ap_southeast_7"
  region                      = "ap-southeast-7"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Tokyo
provider "aws" {
  alias                       = "ap_northeast_1"
  region                      = "ap-northeast-1"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Seoul
provider "aws" {
  alias                       = "ap_northeast_2"
  region                      = "ap-northeast-2"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Osaka
provider "aws" {
  alias                       = "ap_northeast_3"
  region                      = "ap-northeast-3"
  profile                     = var.aws_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Beijing, AWS China: the AWS China partition, its own accounts and credentials
provider "aws" {
  alias                       = "cn_north_1"
  region                      = "cn-north-1"
  profile                     = var.aws_china_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}

# Ningxia, AWS China: the AWS China partition, its own accounts and credentials
provider "aws" {
  alias                       = "cn_northwest_1"
  region                      = "cn-northwest-1"
  profile                     = var.aws_china_profile
  skip_credentials_validation = true
  skip_requesting_account_id  = true

  default_tags {
    tags = local.tags
  }
}
