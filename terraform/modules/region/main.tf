# The relay nodes of one catalogue region, in the AWS region of the provider it is given: a
# VPC of its own, a security group open on the relay's two UDP ports, and per node an Elastic
# IP (allocated before the instance, so the node's configuration can advertise it), an
# instance role that may read only that node's secrets, and a Debian instance that cloud-init
# turns into a relay (cloud-init.yaml.tftpl, with the project's systemd units from deploy/).

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  nodes = [for i in range(1, var.node_count + 1) : "n${i}"]

  # TLS identities (certs_dir's file names without .pem/.key): each node's own, for mutual TLS
  # with the controllers and the other relays, and the region's client edge, which its nodes
  # share. "bundle" is the mesh's trust bundle.
  node_identity  = { for n in local.nodes : n => "relay-${var.region_id}-${n}" }
  edge_identity  = "edge-${var.region_id}"
  secretsmanager = var.mesh.tls_mode == "secretsmanager"

  # The secrets this module makes: one per identity, and the bundle, except those made
  # outside terraform (secret_arns).
  new_secrets = toset([
    for name in concat(values(local.node_identity), [local.edge_identity, "bundle"]) : name
    if local.secretsmanager && !contains(keys(var.secret_arns), name)
  ])
  secret_arn = merge(var.secret_arns, { for name, s in aws_secretsmanager_secret.tls : name => s.arn })

  # Per node: what skymesh-tls-fetch puts where (ARN MODE GROUP FILE [KEYFILE]), or, with
  # inline keys, the files cloud-init writes itself.
  tls_manifest = {
    for n in local.nodes : n => local.secretsmanager ? join("", [
      "${local.secret_arn[local.node_identity[n]]} 0644 skymesh /etc/skymesh/tls/relay.pem /etc/skymesh/tls/relay.key\n",
      "${local.secret_arn[local.edge_identity]} 0644 skymesh /etc/skymesh/tls/edge.pem /etc/skymesh/tls/edge.key\n",
      "${local.secret_arn["bundle"]} 0644 root /etc/skymesh/tls/bundle.pem\n",
    ]) : ""
  }
  inline_certificates = {
    for n in local.nodes : n => {
      for file, name in {
        "relay.pem"  = "${local.node_identity[n]}.pem"
        "edge.pem"   = "${local.edge_identity}.pem"
        "bundle.pem" = "bundle.pem"
      } : "/etc/skymesh/tls/${file}" => var.certificates[name] if !local.secretsmanager
    }
  }
  inline_keys = {
    for n in local.nodes : n => {
      for file, name in {
        "relay.key" = "${local.node_identity[n]}.key"
        "edge.key"  = "${local.edge_identity}.key"
      } : "/etc/skymesh/tls/${file}" => var.private_keys[name] if !local.secretsmanager
    }
  }

  # The same unit files as deploy/systemd/ in the project: read here, written by cloud-init.
  deploy = "${path.module}/../../../deploy"
  units = {
    "skymesh-relay.service"       = file("${local.deploy}/systemd/skymesh-relay.service")
    "skymesh-tls-refresh.service" = file("${local.deploy}/systemd/skymesh-tls-refresh.service")
    "skymesh-tls-refresh.timer"   = file("${local.deploy}/systemd/skymesh-tls-refresh.timer")
  }

  pip_install = concat(
    ["/opt/skymesh/bin/pip", "install", "--quiet", "--no-input"],
    var.mesh.pip_index_url == null ? [] : ["--index-url", var.mesh.pip_index_url],
    [var.mesh.skymesh_package],
  )
}

# --- the network --------------------------------------------------------------------------------

# A VPC of the region's own, a public subnet in each of up to three availability zones that
# offer the instance type; the nodes are spread over them.
module "network" {
  source = "../network"

  name          = "skymesh-${var.region_id}"
  instance_type = var.instance_type
  vpc_cidr      = var.vpc_cidr
}

# These were this module's own before modules/network: moved, not destroyed and made again
# (each subnet and association keeps its index).
moved {
  from = aws_vpc.relays
  to   = module.network.aws_vpc.this
}

moved {
  from = aws_internet_gateway.relays
  to   = module.network.aws_internet_gateway.this
}

moved {
  from = aws_subnet.relays
  to   = module.network.aws_subnet.this
}

moved {
  from = aws_route_table.relays
  to   = module.network.aws_route_table.this
}

moved {
  from = aws_route_table_association.relays
  to   = module.network.aws_route_table_association.this
}

resource "aws_security_group" "relay" {
  name_prefix = "skymesh-relay-${var.region_id}-"
  description = "skymesh relays of ${var.region_id}: probes, traffic between regions, the QUIC client edge"
  vpc_id      = module.network.vpc_id

  tags = { Name = "skymesh-relay-${var.region_id}" }

  lifecycle {
    create_before_destroy = true
  }
}

# Open to the world: relays of every region probe and forward to each other here, including
# regions on other clouds whose addresses this configuration does not know.
resource "aws_vpc_security_group_ingress_rule" "relay" {
  security_group_id = aws_security_group.relay.id
  description       = "skymesh probes and traffic between regions"
  ip_protocol       = "udp"
  from_port         = var.relay_port
  to_port           = var.relay_port
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "edge" {
  security_group_id = aws_security_group.relay.id
  description       = "skymesh QUIC client edge"
  ip_protocol       = "udp"
  from_port         = var.edge_port
  to_port           = var.edge_port
  cidr_ipv4         = "0.0.0.0/0"
}

# Out: the controllers, the other relays, Secrets Manager, the Debian mirror and the package
# index.
resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.relay.id
  description       = "everything out"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

# --- TLS secrets --------------------------------------------------------------------------------

resource "aws_secretsmanager_secret" "tls" {
  for_each = local.new_secrets

  name        = "skymesh/${var.mesh.domain}/${var.region_id}/${each.key}"
  description = each.key == "bundle" ? "skymesh trust bundle (CA certificates, PEM)" : "skymesh TLS identity ${each.key}: certificate chain and private key, PEM"
  # The secrets are copies of certs_dir's files: a recovery window would only keep the names
  # taken, so that a destroy and a new apply collide.
  recovery_window_in_days = 0
}

resource "aws_secretsmanager_secret_version" "tls" {
  for_each = aws_secretsmanager_secret.tls

  secret_id     = each.value.id
  secret_string = each.key == "bundle" ? var.certificates["bundle.pem"] : "${trimspace(var.certificates["${each.key}.pem"])}\n${trimspace(var.private_keys["${each.key}.key"])}\n"
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

# One role per node, so that a node reads its own key and no other's.
resource "aws_iam_role" "node" {
  count = var.node_count

  name               = "skymesh-relay-${var.region_id}-${local.nodes[count.index]}"
  description        = "skymesh relay ${var.region_id}/${local.nodes[count.index]}"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy" "node_secrets" {
  count = local.secretsmanager ? var.node_count : 0

  name = "own-tls-secrets"
  role = aws_iam_role.node[count.index].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid    = "OwnTlsSecrets"
      Effect = "Allow"
      Action = ["secretsmanager:GetSecretValue"]
      Resource = [
        local.secret_arn[local.node_identity[local.nodes[count.index]]],
        local.secret_arn[local.edge_identity],
        local.secret_arn["bundle"],
      ]
    }]
  })
}

resource "aws_iam_instance_profile" "node" {
  count = var.node_count

  name = aws_iam_role.node[count.index].name
  role = aws_iam_role.node[count.index].name
}

# The nodes' image: Debian's newest Debian 12 for the instance type, unless ami_id.
module "ami" {
  source = "../ami"

  instance_type = var.instance_type
  ami_id        = var.ami_id
}

# The node's address: its network interface and Elastic IP exist before the instance, so the
# instance boots with its public address (cloud-init installs packages at once) and its
# configuration can advertise it.
resource "aws_network_interface" "node" {
  count = var.node_count

  subnet_id       = module.network.subnet_ids[count.index % max(1, length(module.network.subnet_ids))]
  security_groups = [aws_security_group.relay.id]

  tags = { Name = "skymesh-relay-${var.region_id}-${local.nodes[count.index]}" }
}

resource "aws_eip" "node" {
  count = var.node_count

  domain = "vpc"

  tags = { Name = "skymesh-relay-${var.region_id}-${local.nodes[count.index]}" }

  depends_on = [module.network.internet_gateway_id]
}

resource "aws_eip_association" "node" {
  count = var.node_count

  allocation_id        = aws_eip.node[count.index].id
  network_interface_id = aws_network_interface.node[count.index].id
}

resource "aws_instance" "node" {
  count = var.node_count

  ami                  = module.ami.id
  instance_type        = var.instance_type
  iam_instance_profile = aws_iam_instance_profile.node[count.index].name

  network_interface {
    network_interface_id = aws_network_interface.node[count.index].id
    device_index         = 0
  }

  # Compressed: the 16 KiB limit is on what is sent (inline keys, units, configuration).
  user_data_base64 = base64gzip(local.user_data[count.index])

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = 16
    encrypted   = true
  }

  tags = {
    Name          = "skymesh-relay-${var.region_id}-${local.nodes[count.index]}"
    SkymeshRegion = var.region_id
    SkymeshNode   = local.nodes[count.index]
  }

  lifecycle {
    # Neither a newer Debian image nor new user data (cloud-init acts on it at the first boot
    # only: a new skymesh version, a new controller) replaces running relays: terraform would
    # replace every node of every region at once. New nodes get them; replace the others one
    # at a time (README: Changing nodes).
    ignore_changes = [ami, user_data_base64]

    precondition {
      condition     = module.ami.id != null
      error_message = "No AMI for relays of ${var.region_id} in ${data.aws_region.current.name}: Debian publishes none there (AWS China); set ami_ids[\"${data.aws_region.current.name}\"]."
    }
  }

  # The node's secrets and its permission to read them, before it boots and fetches them.
  depends_on = [aws_eip_association.node, aws_secretsmanager_secret_version.tls, aws_iam_role_policy.node_secrets]
}

locals {
  user_data = [
    for i, n in local.nodes : templatefile("${path.module}/cloud-init.yaml.tftpl", {
      region_id    = var.region_id
      node         = n
      advertise    = aws_eip.node[i].public_ip
      listen       = "0.0.0.0:${var.relay_port}"
      edge_port    = var.edge_port
      controllers  = [for id in keys(var.controllers) : "${id}.${var.mesh.domain}:${var.mesh.controller_port}"]
      hosts        = [for id, ip in var.controllers : "${ip} ${id}.${var.mesh.domain}"]
      log_level    = var.mesh.log_level
      packages     = concat(["python3-venv"], local.secretsmanager ? ["awscli"] : [])
      pip_install  = local.pip_install
      units        = local.units
      fetch_script = file("${local.deploy}/skymesh-tls-fetch")
      tls_manifest = local.tls_manifest[n]
      tls_public   = local.inline_certificates[n]
      tls_keys     = local.inline_keys[n]
    })
  ]
}
