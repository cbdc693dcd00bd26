# --- the catalogue and what of it to provision ----------------------------------------------

variable "regions_dir" {
  description = "The region catalogue: a directory of <id>.yaml region files (policy.yaml beside them is the residency policy, not a region). Default: the project's regions/."
  type        = string
  default     = null
}

variable "only_regions" {
  description = "Catalogue region ids to provision; empty: every region with an AWS hint. Controllers serve exactly the regions provisioned."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.only_regions : can(regex("^[a-z0-9-]{2,32}$", id))])
    error_message = "only_regions: region ids are 2-32 characters of a-z, 0-9 and -."
  }
}

variable "relays_per_region" {
  description = "Relay nodes of a region (ids n1..nN), by region id, overriding the catalogue's capacity.relays (default 1 where the catalogue says nothing). `skymesh certs issue --nodes N` must have issued their certificates."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for n in values(var.relays_per_region) : n >= 1 && n <= 64 && floor(n) == n])
    error_message = "relays_per_region: each count is a whole number from 1 to 64 (the catalogue's limit)."
  }
}

variable "relay_instance_type" {
  description = "EC2 instance type of relay nodes whose region's AWS hint names none ({aws: {region: ..., instance_type: ...}} does)."
  type        = string
  default     = "c6in.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.relay_instance_type))
    error_message = "relay_instance_type: an EC2 instance type such as c6in.large."
  }
}

variable "ami_ids" {
  description = "AMI per AWS region (e.g. {\"cn-north-1\" = \"ami-...\"}), for nodes there; default: the newest Debian 12 image published by Debian. Required in the AWS China regions, where Debian publishes none."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for id in values(var.ami_ids) : can(regex("^ami-[0-9a-f]{8,17}$", id))])
    error_message = "ami_ids: each value is an AMI id (ami- and 8 or 17 hex digits)."
  }
}

# --- controllers and etcd ---------------------------------------------------------------------

variable "controller_aws_region" {
  description = "AWS region of the controller replicas (and of their etcd): the default aws provider's region."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.controller_aws_region))
    error_message = "controller_aws_region: an AWS region name such as us-east-1."
  }
}

variable "controller_count" {
  description = "Controller replicas (c1..cN), each an etcd member unless etcd_endpoints names an existing etcd. Odd, so that etcd keeps a quorum through the loss of (N-1)/2 of them."
  type        = number
  default     = 3

  validation {
    condition     = contains([1, 3, 5, 7], var.controller_count)
    error_message = "controller_count: 1, 3, 5 or 7 (an etcd cluster wants an odd number of members)."
  }
}

variable "controller_instance_type" {
  description = "EC2 instance type of the controller replicas."
  type        = string
  default     = "m6i.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.controller_instance_type))
    error_message = "controller_instance_type: an EC2 instance type such as m6i.large."
  }
}

variable "etcd_endpoints" {
  description = "An existing etcd cluster's client endpoints (HOST:PORT, TLS; it must trust the mesh's bundle.pem for client certificates). Empty: the controller nodes run etcd themselves (Debian's etcd-server)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.etcd_endpoints : can(regex("^[0-9A-Za-z.-]+:[0-9]{1,5}$", e))])
    error_message = "etcd_endpoints: each is HOST:PORT."
  }
}

variable "operator_cidrs" {
  description = "Networks (CIDR) the operators' admin commands reach the controllers' gRPC port from. Relays are let in by their own addresses."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.operator_cidrs : can(cidrhost(c, 0)) && !startswith(c, "0.0.0.0/")])
    error_message = "operator_cidrs: each is an IPv4 CIDR such as 198.51.100.0/24, and not the whole Internet."
  }
}

variable "apps_file" {
  description = "The apps file: each app's token public keys (YAML, see skymesh/apps.py), installed on the controllers as /etc/skymesh/apps.yaml."
  type        = string

  validation {
    condition     = fileexists(var.apps_file)
    error_message = "apps_file: no such file."
  }
}

variable "fabric_keys_file" {
  description = "A fabric keys file (hex keys, one a line) to seed the controllers with; a secret, delivered like the TLS keys. Default: the controllers make their own and keep them in etcd."
  type        = string
  default     = null

  validation {
    # || does not short-circuit: fileexists(null) must not be reached unguarded.
    condition     = var.fabric_keys_file == null || try(fileexists(var.fabric_keys_file), false)
    error_message = "fabric_keys_file: no such file."
  }
}

# --- credentials --------------------------------------------------------------------------------

variable "aws_profile" {
  description = "AWS CLI profile for the commercial AWS regions (default: the usual credential chain: environment, ~/.aws, instance role)."
  type        = string
  default     = null
}

variable "aws_china_profile" {
  description = "AWS CLI profile for the AWS China regions (cn-north-1, cn-northwest-1): a separate partition with its own accounts and credentials. Needed only when a provisioned region is there."
  type        = string
  default     = null
}

variable "certs_dir" {
  description = "Where `skymesh certs issue --for-catalogue regions/ --out DIR` put the mesh's certificates: bundle.pem, relay-<region>-n<i>.pem/.key, edge-<region>.pem/.key, controller-c<i>.pem/.key, etcd-c<i>.pem/.key."
  type        = string

  validation {
    condition     = fileexists("${var.certs_dir}/bundle.pem")
    error_message = "certs_dir: no bundle.pem there; issue the mesh's certificates first (skymesh certs issue --for-catalogue regions/ --out DIR)."
  }
}

variable "tls_key_mode" {
  description = "How private keys reach the nodes. \"secretsmanager\": one AWS Secrets Manager secret per key (with its certificate), readable only by its own node's instance role, fetched at boot and hourly (rotations reach running nodes). \"inline\": the PEM in the instance's user data (weaker: readable by anyone who may describe the instance's attributes; rotation replaces the node)."
  type        = string
  default     = "secretsmanager"

  validation {
    condition     = contains(["secretsmanager", "inline"], var.tls_key_mode)
    error_message = "tls_key_mode: \"secretsmanager\" or \"inline\"."
  }
}

variable "secret_arns" {
  description = "Secrets operators made themselves, by name (relay-<region>-n<i>, edge-<region>, controller-c<i>, etcd-c<i>: the certificate chain then the private key, PEM; bundle: bundle.pem; fabric: the fabric keys): those keys never enter terraform's state or this machine. With tls_key_mode \"secretsmanager\" only."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for arn in values(var.secret_arns) : can(regex("^arn:aws(-cn)?:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", arn))])
    error_message = "secret_arns: each value is a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)."
  }
}

# --- what runs on the nodes ---------------------------------------------------------------------

variable "domain" {
  description = "The mesh's internal DNS domain, as given to `skymesh certs issue --domain`: controllers are c<i>.<domain>, their etcd members etcd-c<i>.<domain> (names the nodes' /etc/hosts resolve; no DNS zone is needed)."
  type        = string
  default     = "skymesh.internal"

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.domain))
    error_message = "domain: a DNS name such as skymesh.internal."
  }
}

variable "skymesh_package" {
  description = "What the nodes pip-install into /opt/skymesh: a requirement (skymesh, skymesh==0.1.0) or a wheel's URL."
  type        = string
  default     = "skymesh"

  validation {
    condition     = length(trimspace(var.skymesh_package)) > 0 && !can(regex("\\s", var.skymesh_package))
    error_message = "skymesh_package: one requirement or URL, without spaces."
  }
}

variable "pip_index_url" {
  description = "Package index the nodes install skymesh from (pip --index-url); default: pip's own."
  type        = string
  default     = null

  validation {
    condition     = var.pip_index_url == null || can(regex("^https?://[^\\s]+$", var.pip_index_url))
    error_message = "pip_index_url: an http(s) URL."
  }
}

variable "log_level" {
  description = "Log level of the relays and controllers (their journal)."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warning", "error", "critical"], var.log_level)
    error_message = "log_level: debug, info, warning, error or critical."
  }
}

variable "relay_port" {
  description = "Relays' UDP port for probes and the mesh's traffic between regions (open to the world)."
  type        = number
  default     = 7500

  validation {
    condition     = var.relay_port >= 1 && var.relay_port <= 65535 && floor(var.relay_port) == var.relay_port
    error_message = "relay_port: a port number, 1-65535."
  }
}

variable "edge_port" {
  description = "Relays' UDP port of the QUIC client edge (open to the world)."
  type        = number
  default     = 443

  validation {
    condition     = var.edge_port >= 1 && var.edge_port <= 65535 && floor(var.edge_port) == var.edge_port
    error_message = "edge_port: a port number, 1-65535."
  }
}

variable "controller_port" {
  description = "Controllers' gRPC port (TCP), for relays, the other replicas and operators only."
  type        = number
  default     = 7400

  validation {
    condition     = var.controller_port >= 1 && var.controller_port <= 65535 && floor(var.controller_port) == var.controller_port
    error_message = "controller_port: a port number, 1-65535."
  }
}

variable "resolver_port" {
  description = "Controllers' EdgeResolver port (TCP), where clients find their nearest edges (open to the world)."
  type        = number
  default     = 7443

  validation {
    condition     = var.resolver_port >= 1 && var.resolver_port <= 65535 && floor(var.resolver_port) == var.resolver_port
    error_message = "resolver_port: a port number, 1-65535."
  }
}

variable "tags" {
  description = "Tags for every resource (on top of Project = skymesh)."
  type        = map(string)
  default     = {}
}
