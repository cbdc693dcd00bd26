# The controller replicas (c1..cN) in the AWS region of the provider it is given, and their
# etcd: a VPC of their own, one node per availability zone (as far as there are zones), each
# with a network interface at a fixed private address and an Elastic IP made before the
# instance (so the relays' and etcd's names resolve from the start), an instance role that
# may read only that node's secrets, and a Debian instance that cloud-init turns into a
# controller (cloud-init.yaml.tftpl, with the project's systemd units from deploy/), with an
# etcd member beside it unless etcd_endpoints names an existing etcd. Each replica's
# configuration (controller.yaml.tftpl), the region catalogue and the apps file are kept in
# S3, where the controllers fetch them every few minutes (skymesh-controller-sync): a new
# region reaches them without replacing them.

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  replicas       = [for i in range(1, var.controller_count + 1) : "c${i}"]
  local_etcd     = length(var.etcd_endpoints) == 0
  secretsmanager = var.mesh.tls_mode == "secretsmanager"
  domain         = var.mesh.domain

  # Fixed private addresses in their zones' subnets, known at plan: etcd's peers find each
  # other by them.
  private_ip = {
    for i, c in local.replicas : c => cidrhost(module.network.subnet_cidrs[i % local.zone_count], 10 + floor(i / local.zone_count))
  }

  # Every replica's gRPC endpoint, by the name its certificate carries.
  endpoints      = [for c in local.replicas : "${c}.${local.domain}:${var.mesh.controller_port}"]
  etcd_endpoints = local.local_etcd ? [for c in local.replicas : "etcd-${c}.${local.domain}:2379"] : var.etcd_endpoints

  # Secrets: per replica its controller identity and, with a local etcd, its etcd member's;
  # the trust bundle; fabric keys when given. Those in secret_arns are made elsewhere.
  # Whether fabric keys are given is no secret (their value is); for_each takes no sensitive
  # values.
  fabric_given = nonsensitive(var.fabric_keys != null)
  has_fabric   = local.fabric_given || contains(keys(var.secret_arns), "fabric")
  secret_names = concat(
    [for c in local.replicas : "controller-${c}"],
    [for c in local.replicas : "etcd-${c}" if local.local_etcd],
    ["bundle"],
    [for f in ["fabric"] : f if local.fabric_given],
  )
  new_secrets = toset([
    for name in local.secret_names : name
    if local.secretsmanager && !contains(keys(var.secret_arns), name)
  ])
  secret_arn = merge(var.secret_arns, { for name, s in aws_secretsmanager_secret.this : name => s.arn })
  secret_value = {
    for name in local.new_secrets : name => (
      name == "bundle" ? var.certificates["bundle.pem"] :
      name == "fabric" ? var.fabric_keys :
      "${trimspace(var.certificates["${name}.pem"])}\n${trimspace(var.private_keys["${name}.key"])}\n"
    )
  }

  # What each replica reads: its own identities, the bundle, the fabric keys.
  readable = {
    for c in local.replicas : c => concat(
      ["controller-${c}", "bundle"],
      [for e in ["etcd-${c}"] : e if local.local_etcd],
      [for f in ["fabric"] : f if local.has_fabric],
    )
  }

  # Per replica: what skymesh-tls-fetch puts where (ARN MODE GROUP FILE [KEYFILE]), or, with
  # inline keys, the files cloud-init writes itself. etcd reads its own with group etcd.
  tls_manifest = {
    for c in local.replicas : c => !local.secretsmanager ? "" : join("", concat(
      ["${local.secret_arn["controller-${c}"]} 0644 skymesh /etc/skymesh/tls/controller.pem /etc/skymesh/tls/controller.key\n"],
      [for e in ["etcd-${c}"] : "${local.secret_arn[e]} 0644 etcd /etc/skymesh/tls/etcd.pem /etc/skymesh/tls/etcd.key\n" if local.local_etcd],
      ["${local.secret_arn["bundle"]} 0644 root /etc/skymesh/tls/bundle.pem\n"],
      [for f in ["fabric"] : "${local.secret_arn[f]} 0640 skymesh /etc/skymesh/tls/fabric.keys\n" if local.has_fabric],
    ))
  }
  inline_certificates = {
    for c in local.replicas : c => merge(
      { for file, name in {
        "controller.pem" = "controller-${c}.pem"
        "bundle.pem"     = "bundle.pem"
      } : "/etc/skymesh/tls/${file}" => var.certificates[name] if !local.secretsmanager },
      { for e in ["etcd-${c}.pem"] : "/etc/skymesh/tls/etcd.pem" => var.certificates[e] if !local.secretsmanager && local.local_etcd },
    )
  }
  inline_keys = {
    for c in local.replicas : c => merge(
      { for k in ["controller-${c}.key"] : "/etc/skymesh/tls/controller.key" => { group = "skymesh", pem = var.private_keys[k] } if !local.secretsmanager },
      { for k in ["etcd-${c}.key"] : "/etc/skymesh/tls/etcd.key" => { group = "etcd", pem = var.private_keys[k] } if !local.secretsmanager && local.local_etcd },
      { for k in ["fabric"] : "/etc/skymesh/tls/fabric.keys" => { group = "skymesh", pem = var.fabric_keys } if !local.secretsmanager && local.has_fabric },
    )
  }

  # The same unit files as deploy/systemd/ in the project: read here, written by cloud-init.
  deploy = "${path.module}/../../../deploy"
  units = merge(
    {
      "skymesh-controller.service"      = file("${local.deploy}/systemd/skymesh-controller.service")
      "skymesh-controller-sync.service" = file("${local.deploy}/systemd/skymesh-controller-sync.service")
      "skymesh-controller-sync.timer"   = file("${local.deploy}/systemd/skymesh-controller-sync.timer")
      "skymesh-tls-refresh.service"     = file("${local.deploy}/systemd/skymesh-tls-refresh.service")
      "skymesh-tls-refresh.timer"       = file("${local.deploy}/systemd/skymesh-tls-refresh.timer")
    },
    { for d in ["etcd.service.d/skymesh.conf"] : d => file("${local.deploy}/systemd/${d}") if local.local_etcd },
  )

  pip_install = concat(
    ["/opt/skymesh/bin/pip", "install", "--quiet", "--no-input"],
    var.mesh.pip_index_url == null ? [] : ["--index-url", var.mesh.pip_index_url],
    [var.mesh.skymesh_package],
  )

  # Replicas go round the network's zones (up to three offering the instance type; none fails
  # the plan, at modules/network's precondition).
  zone_count = max(1, length(module.network.zones))
}

# --- the network --------------------------------------------------------------------------------

# A VPC of the controllers' own, a public subnet in each of up to three availability zones that
# offer the instance type.
module "network" {
  source = "../network"

  name          = "skymesh-controllers"
  instance_type = var.instance_type
  vpc_cidr      = var.vpc_cidr
}

# These were this module's own before modules/network: moved, not destroyed and made again
# (each subnet and association keeps its index).
moved {
  from = aws_vpc.controllers
  to   = module.network.aws_vpc.this
}

moved {
  from = aws_internet_gateway.controllers
  to   = module.network.aws_internet_gateway.this
}

moved {
  from = aws_subnet.controllers
  to   = module.network.aws_subnet.this
}

moved {
  from = aws_route_table.controllers
  to   = module.network.aws_route_table.this
}

moved {
  from = aws_route_table_association.controllers
  to   = module.network.aws_route_table_association.this
}

# The replicas' own group: the resolver for everyone; gRPC and etcd between replicas.
resource "aws_security_group" "controller" {
  name_prefix = "skymesh-controller-"
  description = "skymesh controllers: the resolver, and gRPC and etcd between replicas"
  vpc_id      = module.network.vpc_id

  tags = { Name = "skymesh-controller" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "resolver" {
  security_group_id = aws_security_group.controller.id
  description       = "skymesh EdgeResolver, for clients"
  ip_protocol       = "tcp"
  from_port         = var.resolver_port
  to_port           = var.resolver_port
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "grpc_replicas" {
  security_group_id            = aws_security_group.controller.id
  description                  = "skymesh gRPC between replicas"
  ip_protocol                  = "tcp"
  from_port                    = var.mesh.controller_port
  to_port                      = var.mesh.controller_port
  referenced_security_group_id = aws_security_group.controller.id
}

resource "aws_vpc_security_group_ingress_rule" "etcd" {
  count = local.local_etcd ? 1 : 0

  security_group_id            = aws_security_group.controller.id
  description                  = "etcd clients and peers, between replicas only"
  ip_protocol                  = "tcp"
  from_port                    = 2379
  to_port                      = 2380
  referenced_security_group_id = aws_security_group.controller.id
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.controller.id
  description       = "everything out"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

# gRPC from the relays (one rule per relay node: a group holds 60 rules unless the quota is
# raised, so the relays have a group of their own) and from the operators.
resource "aws_security_group" "grpc_clients" {
  name_prefix = "skymesh-controller-grpc-"
  description = "skymesh controllers: gRPC from the relays and the operators"
  vpc_id      = module.network.vpc_id

  tags = { Name = "skymesh-controller-grpc" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "grpc_relays" {
  for_each = var.relay_addresses

  security_group_id = aws_security_group.grpc_clients.id
  description       = "skymesh relay ${each.key}"
  ip_protocol       = "tcp"
  from_port         = var.mesh.controller_port
  to_port           = var.mesh.controller_port
  cidr_ipv4         = "${each.value}/32"
}

resource "aws_vpc_security_group_ingress_rule" "grpc_operators" {
  for_each = toset(var.operator_cidrs)

  security_group_id = aws_security_group.grpc_clients.id
  description       = "skymesh operators"
  ip_protocol       = "tcp"
  from_port         = var.mesh.controller_port
  to_port           = var.mesh.controller_port
  cidr_ipv4         = each.value
}

# --- configuration, catalogue and apps file ---------------------------------------------------

# Not secrets (the apps file holds public keys; keys are in Secrets Manager or the user data),
# but what the controllers read at start: kept here rather than in the user data, so that a
# change reaches running controllers (skymesh-controller-sync restarts them, each at its own
# moment) instead of replacing them.
resource "aws_s3_bucket" "data" {
  bucket_prefix = "skymesh-controllers-"
  # Its objects are copies of the catalogue and the apps file.
  force_destroy = true
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_object" "catalogue" {
  for_each = var.catalogue

  bucket       = aws_s3_bucket.data.id
  key          = "regions/${each.key}"
  content      = each.value
  content_type = "application/yaml"
}

resource "aws_s3_object" "apps" {
  bucket       = aws_s3_bucket.data.id
  key          = "apps.yaml"
  content      = var.apps_yaml
  content_type = "application/yaml"
}

resource "aws_s3_object" "config" {
  for_each = toset(local.replicas)

  bucket       = aws_s3_bucket.data.id
  key          = "replicas/${each.key}/controller.yaml"
  content      = local.config[each.key]
  content_type = "application/yaml"
}

# --- TLS secrets --------------------------------------------------------------------------------

resource "aws_secretsmanager_secret" "this" {
  for_each = local.new_secrets

  name        = "skymesh/${local.domain}/controllers/${each.key}"
  description = "skymesh ${each.key == "bundle" ? "trust bundle (CA certificates, PEM)" : each.key == "fabric" ? "fabric keys" : "TLS identity ${each.key}: certificate chain and private key, PEM"}"
  # The secrets are copies of certs_dir's files: a recovery window would only keep the names
  # taken, so that a destroy and a new apply collide.
  recovery_window_in_days = 0
}

resource "aws_secretsmanager_secret_version" "this" {
  for_each = aws_secretsmanager_secret.this

  secret_id     = each.value.id
  secret_string = local.secret_value[each.key]
}

# --- the nodes ----------------------------------------------------------------------------------

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.${data.aws_partition.current.dns_suffix}"]
    }
  }
}

# One role per replica, so that a replica reads its own keys and no other's.
resource "aws_iam_role" "node" {
  for_each = toset(local.replicas)

  name               = "skymesh-controller-${each.key}"
  description        = "skymesh controller ${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy" "node_secrets" {
  for_each = local.secretsmanager ? toset(local.replicas) : toset([])

  name = "own-tls-secrets"
  role = aws_iam_role.node[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "OwnTlsSecrets"
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = [for name in local.readable[each.key] : local.secret_arn[name]]
    }]
  })
}

resource "aws_iam_role_policy" "node_data" {
  for_each = toset(local.replicas)

  name = "controller-data"
  role = aws_iam_role.node[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ListData"
        Effect   = "Allow"
        Action   = ["s3:ListBucket"]
        Resource = [aws_s3_bucket.data.arn]
      },
      {
        Sid      = "ReadData"
        Effect   = "Allow"
        Action   = ["s3:GetObject"]
        Resource = ["${aws_s3_bucket.data.arn}/*"]
      },
    ]
  })
}

resource "aws_iam_instance_profile" "node" {
  for_each = toset(local.replicas)

  name = aws_iam_role.node[each.key].name
  role = aws_iam_role.node[each.key].name
}

# The replicas' image: Debian's newest Debian 12 for the instance type, unless ami_id.
module "ami" {
  source = "../ami"

  instance_type = var.instance_type
  ami_id        = var.ami_id
}

# The replica's addresses exist before its instance: the private one that its etcd peers and
# the other replicas reach it at, the public one the relays and operators do.
resource "aws_network_interface" "node" {
  for_each = toset(local.replicas)

  subnet_id       = module.network.subnet_ids[index(local.replicas, each.key) % local.zone_count]
  private_ips     = [local.private_ip[each.key]]
  security_groups = [aws_security_group.controller.id, aws_security_group.grpc_clients.id]

  tags = { Name = "skymesh-controller-${each.key}" }
}

resource "aws_eip" "node" {
  for_each = toset(local.replicas)

  domain = "vpc"

  tags = { Name = "skymesh-controller-${each.key}" }

  depends_on = [module.network.internet_gateway_id]
}

resource "aws_eip_association" "node" {
  for_each = toset(local.replicas)

  allocation_id        = aws_eip.node[each.key].id
  network_interface_id = aws_network_interface.node[each.key].id
}

resource "aws_instance" "node" {
  for_each = toset(local.replicas)

  ami                  = module.ami.id
  instance_type        = var.instance_type
  iam_instance_profile = aws_iam_instance_profile.node[each.key].name

  network_interface {
    network_interface_id = aws_network_interface.node[each.key].id
    device_index         = 0
  }

  # Compressed: the 16 KiB limit is on what is sent (units, configuration, inline keys).
  user_data_base64 = base64gzip(local.user_data[each.key])

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = 32
    encrypted   = true
  }

  tags = {
    Name           = "skymesh-controller-${each.key}"
    SkymeshReplica = each.key
  }

  lifecycle {
    # Neither a newer Debian image nor new user data (cloud-init acts on it at the first boot
    # only) replaces running replicas: terraform would replace them all at once, and their
    # etcd with them. Replace them one at a time instead (README: Changing nodes).
    ignore_changes = [ami, user_data_base64]

    precondition {
      condition     = module.ami.id != null
      error_message = "No AMI for the controllers in ${data.aws_region.current.name}: Debian publishes none there (AWS China); set ami_ids[\"${data.aws_region.current.name}\"]."
    }
  }

  # What the node fetches as it boots, and its permission to.
  depends_on = [
    aws_eip_association.node,
    aws_secretsmanager_secret_version.this,
    aws_iam_role_policy.node_secrets,
    aws_iam_role_policy.node_data,
    aws_s3_object.catalogue,
    aws_s3_object.apps,
    aws_s3_object.config,
  ]
}

locals {
  # Each replica's configuration (/etc/skymesh/controller.yaml, by way of S3).
  config = {
    for c in local.replicas : c => templatefile("${path.module}/controller.yaml.tftpl", {
      replica       = c
      listen        = "0.0.0.0:${var.mesh.controller_port}"
      advertise     = "${c}.${local.domain}:${var.mesh.controller_port}"
      resolver      = "0.0.0.0:${var.resolver_port}"
      store         = local.etcd_endpoints
      serve_regions = var.serve_regions
      fabric        = local.has_fabric
      log_level     = var.mesh.log_level
    })
  }

  user_data = {
    for c in local.replicas : c => templatefile("${path.module}/cloud-init.yaml.tftpl", {
      replica = c
      # The replicas and the etcd members by name, at their private addresses.
      hosts      = [for r in local.replicas : "${local.private_ip[r]} ${r}.${local.domain} etcd-${r}.${local.domain}"]
      etcd       = local.local_etcd ? local.etcd_member[c] : ""
      data       = "s3://${aws_s3_bucket.data.id}"
      aws_region = data.aws_region.current.name
      packages   = concat(["python3-venv", "awscli"], local.local_etcd ? ["etcd-server"] : [])
      scripts = {
        "skymesh-tls-fetch"       = file("${local.deploy}/skymesh-tls-fetch")
        "skymesh-controller-sync" = file("${local.deploy}/skymesh-controller-sync")
      }
      pip_install  = local.pip_install
      units        = local.units
      tls_manifest = local.tls_manifest[c]
      tls_public   = local.inline_certificates[c]
      tls_keys     = local.inline_keys[c]
    })
  }

  # /etc/default/etcd of each member (Debian's etcd.service reads it): peers and clients on
  # mutual TLS, trusting the mesh's CA; names from /etc/hosts, which the etcd-c<i>
  # certificates carry.
  etcd_member = {
    for c in local.replicas : c => join("\n", [
      "# etcd member ${c} of the skymesh controllers (cloud-init, from terraform/modules/controllers)",
      "ETCD_NAME=${c}",
      "ETCD_DATA_DIR=/var/lib/etcd/skymesh",
      "ETCD_LISTEN_PEER_URLS=https://${local.private_ip[c]}:2380",
      "ETCD_LISTEN_CLIENT_URLS=https://${local.private_ip[c]}:2379,https://127.0.0.1:2379",
      "ETCD_INITIAL_ADVERTISE_PEER_URLS=https://etcd-${c}.${local.domain}:2380",
      "ETCD_ADVERTISE_CLIENT_URLS=https://etcd-${c}.${local.domain}:2379",
      "ETCD_INITIAL_CLUSTER=${join(",", [for r in local.replicas : "${r}=https://etcd-${r}.${local.domain}:2380"])}",
      "ETCD_INITIAL_CLUSTER_STATE=new",
      "ETCD_INITIAL_CLUSTER_TOKEN=skymesh-${local.domain}",
      "ETCD_CERT_FILE=/etc/skymesh/tls/etcd.pem",
      "ETCD_KEY_FILE=/etc/skymesh/tls/etcd.key",
      "ETCD_TRUSTED_CA_FILE=/etc/skymesh/tls/bundle.pem",
      "ETCD_CLIENT_CERT_AUTH=true",
      "ETCD_PEER_CERT_FILE=/etc/skymesh/tls/etcd.pem",
      "ETCD_PEER_KEY_FILE=/etc/skymesh/tls/etcd.key",
      "ETCD_PEER_TRUSTED_CA_FILE=/etc/skymesh/tls/bundle.pem",
      "ETCD_PEER_CLIENT_CERT_AUTH=true",
      "",
    ])
  }
}
