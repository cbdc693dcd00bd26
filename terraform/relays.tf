# Relay nodes: one module block per AWS region (see providers.tf), each instantiating the
# region module for the catalogue regions that AWS region hosts (local.relays, main.tf).

locals {
  # The AWS regions with a provider alias (providers.tf) and a module block (below). A
  # catalogue region hinting another fails the plan (terraform_data.catalogue, main.tf).
  aws_regions_covered = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "ca-west-1",
    "mx-central-1",
    "sa-east-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-central-2",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "af-south-1",
    "ap-south-1",
    "ap-south-2",
    "ap-east-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "cn-north-1",
    "cn-northwest-1",
  ]

  # Every provisioned region's module instance, by catalogue region id.
  relay_modules = merge(
    module.relays_us_east_1,
    module.relays_us_east_2,
    module.relays_us_west_1,
    module.relays_us_west_2,
    module.relays_ca_central_1,
    module.relays_ca_west_1,
    module.relays_mx_central_1,
    module.relays_sa_east_1,
    module.relays_eu_west_1,
    module.relays_eu_west_2,
    module.relays_eu_west_3,
    module.relays_eu_central_1,
    module.relays_eu_central_2,
    module.relays_eu_south_1,
    module.relays_eu_south_2,
    module.relays_eu_north_1,
    module.relays_il_central_1,
    module.relays_me_south_1,
    module.relays_me_central_1,
    module.relays_af_south_1,
    module.relays_ap_south_1,
    module.relays_ap_south_2,
    module.relays_ap_east_1,
    module.relays_ap_southeast_1,
    module.relays_ap_southeast_2,
    module.relays_ap_southeast_3,
    module.relays_ap_southeast_4,
    module.relays_ap_southeast_5,
    module.relays_ap_southeast_7,
    module.relays_ap_northeast_1,
    module.relays_ap_northeast_2,
    module.relays_ap_northeast_3,
    module.relays_cn_north_1,
    module.relays_cn_northwest_1
  )
}

module "relays_us_east_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "us-east-1" }
  providers = { aws = aws.us_east_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "us-east-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_us_east_2" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "us-east-2" }
  providers = { aws = aws.us_east_2 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "us-east-2", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_us_west_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "us-west-1" }
  providers = { aws = aws.us_west_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "us-west-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_us_west_2" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "us-west-2" }
  providers = { aws = aws.us_west_2 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "us-west-2", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_ca_central_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "ca-central-1" }
  providers = { aws = aws.ca_central_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "ca-central-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_ca_west_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "ca-west-1" }
  providers = { aws = aws.ca_west_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "ca-west-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_mx_central_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "mx-central-1" }
  providers = { aws = aws.mx_central_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "mx-central-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_sa_east_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "sa-east-1" }
  providers = { aws = aws.sa_east_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "sa-east-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_eu_west_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "eu-west-1" }
  providers = { aws = aws.eu_west_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "eu-west-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_eu_west_2" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "eu-west-2" }
  providers = { aws = aws.eu_west_2 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "eu-west-2", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_eu_west_3" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "eu-west-3" }
  providers = { aws = aws.eu_west_3 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "eu-west-3", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_eu_central_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "eu-central-1" }
  providers = { aws = aws.eu_central_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "eu-central-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_eu_central_2" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "eu-central-2" }
  providers = { aws = aws.eu_central_2 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "eu-central-2", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_eu_south_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "eu-south-1" }
  providers = { aws = aws.eu_south_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "eu-south-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_eu_south_2" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "eu-south-2" }
  providers = { aws = aws.eu_south_2 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "eu-south-2", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_eu_north_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "eu-north-1" }
  providers = { aws = aws.eu_north_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "eu-north-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_il_central_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "il-central-1" }
  providers = { aws = aws.il_central_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "il-central-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_me_south_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "me-south-1" }
  providers = { aws = aws.me_south_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "me-south-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_me_central_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "me-central-1" }
  providers = { aws = aws.me_central_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "me-central-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_af_south_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "af-south-1" }
  providers = { aws = aws.af_south_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "af-south-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_ap_south_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "ap-south-1" }
  providers = { aws = aws.ap_south_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "ap-south-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_ap_south_2" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "ap-south-2" }
  providers = { aws = aws.ap_south_2 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "ap-south-2", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_ap_east_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "ap-east-1" }
  providers = { aws = aws.ap_east_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "ap-east-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_ap_southeast_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "ap-southeast-1" }
  providers = { aws = aws.ap_southeast_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "ap-southeast-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_ap_southeast_2" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "ap-southeast-2" }
  providers = { aws = aws.ap_southeast_2 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "ap-southeast-2", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_ap_southeast_3" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "ap-southeast-3" }
  providers = { aws = aws.ap_southeast_3 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "ap-southeast-3", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_ap_southeast_4" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "ap-southeast-4" }
  providers = { aws = aws.ap_southeast_4 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "ap-southeast-4", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_ap_southeast_5" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "ap-southeast-5" }
  providers = { aws = aws.ap_southeast_5 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "ap-southeast-5", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_ap_southeast_7" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "ap-southeast-7" }
  providers = { aws = aws.ap_southeast_7 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "ap-southeast-7", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_ap_northeast_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "ap-northeast-1" }
  providers = { aws = aws.ap_northeast_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "ap-northeast-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_ap_northeast_2" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "ap-northeast-2" }
  providers = { aws = aws.ap_northeast_2 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "ap-northeast-2", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_ap_northeast_3" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "ap-northeast-3" }
  providers = { aws = aws.ap_northeast_3 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "ap-northeast-3", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_cn_north_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "cn-north-1" }
  providers = { aws = aws.cn_north_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "cn-north-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}

module "relays_cn_northwest_1" {
  source    = "./modules/region"
  for_each  = { for id, r in local.relays : id => r if r.aws_region == "cn-northwest-1" }
  providers = { aws = aws.cn_northwest_1 }

  region_id     = each.key
  node_count    = each.value.nodes
  instance_type = each.value.instance_type
  ami_id        = lookup(var.ami_ids, "cn-northwest-1", null)
  mesh          = local.mesh
  controllers   = module.controllers.public_ips
  relay_port    = var.relay_port
  edge_port     = var.edge_port
  certificates  = local.relay_certificates[each.key]
  private_keys  = local.relay_private_keys[each.key]
  secret_arns   = local.secret_arns
}
