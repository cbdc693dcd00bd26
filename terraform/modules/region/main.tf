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

  # Debian's images, by the architecture the instance type runs.
  arch   = contains(data.aws_ec2_instance_type.node.supported_architectures, "x86_64") ? "amd64" : "arm64"
  ami_id = var.ami_id != null ? var.ami_id : one(data.aws_ami.debian[*].id)

  # Up to three availability zones offering the instance type; nodes are spread over them.
  zones = slice(local.offered_zones, 0, min(3, length(local.offered_zones)))
  offered_zones = sort(setintersection(
    data.aws_ec2_instance_type_offerings.node.locations,
    data.aws_availability_zones.standard.names,
  ))
}

# --- the network --------------------------------------------------------------------------------

data "aws_availability_zones" "standard" {
  state = "available"

  # Not Local Zones or Wavelength: the region's own zones.
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

data "aws_ec2_instance_type_offerings" "node" {
  location_type = "availability-zone"

  filter {
    name   = "instance-type"
    values = [var.instance_type]
  }
}

resource "aws_vpc" "relays" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = "skymesh-${var.region_id}" }

  lifecycle {
    precondition {
      condition     = length(local.zones) > 0
      error_message = "No availability zone of ${data.aws_region.current.name} offers ${var.instance_type} (relays of ${var.region_id}); choose another instance type."
    }
  }
}

resource "aws_internet_gateway" "relays" {
  vpc_id = aws_vpc.relays.id

  tags = { Name = "skymesh-${var.region_id}" }
}

resource "aws_subnet" "relays" {
  count = length(local.zones)

  vpc_id            = aws_vpc.relays.id
  availability_zone = local.zones[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, count.index)

  tags = { Name = "skymesh-${var.region_id}-${local.zones[count.index]}" }
}

resource "aws_route_table" "relays" {
  vpc_id = aws_vpc.relays.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.relays.id
  }

  tags = { Name = "skymesh-${var.region_id}" }
}

resource "aws_route_table_association" "relays" {
  count = length(aws_subnet.relays)

  subnet_id      = aws_subnet.relays[count.index].id
  route_table_id = aws_route_table.relays.id
}

resource "aws_security_group" "relay" {
  name_prefix = "skymesh-relay-${var.region_id}-"
  description = "skymesh relays of ${var.region_id}: probes, traffic between regions, the QUIC client edge"
  vpc_id      = aws_vpc.relays.id

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

data "aws_ec2_instance_type" "node" {
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

# The node's address: its network interface and Elastic IP exist before the instance, so the
# instance boots with its public address (cloud-init installs packages at once) and its
# configuration can advertise it.
resource "aws_network_interface" "node" {
  count = var.node_count

  subnet_id       = aws_subnet.relays[count.index % max(1, length(aws_subnet.relays))].id
  security_groups = [aws_security_group.relay.id]

  tags = { Name = "skymesh-relay-${var.region_id}-${local.nodes[count.index]}" }
}

resource "aws_eip" "node" {
  count = var.node_count

  domain = "vpc"

  tags = { Name = "skymesh-relay-${var.region_id}-${local.nodes[count.index]}" }

  depends_on = [aws_internet_gateway.relays]
}

resource "aws_eip_association" "node" {
  count = var.node_count

  allocation_id        = aws_eip.node[count.index].id
  network_interface_id = aws_network_interface.node[count.index].id
}

resource "aws_instance" "node" {
  count = var.node_count

  ami                  = local.ami_id
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
      condition     = local.ami_id != null
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
