variable "region_id" {
  description = "The catalogue region these relay nodes serve (regions/<id>.yaml)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{2,32}$", var.region_id))
    error_message = "region_id: 2-32 characters of a-z, 0-9 and -, as in the catalogue."
  }
}

variable "node_count" {
  description = "Relay nodes in the region, ids n1..nN; each has its own certificate (relay-<region>-n<i>)."
  type        = number

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 64 && floor(var.node_count) == var.node_count
    error_message = "node_count: a whole number from 1 to 64 (the catalogue's limit)."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the nodes (x86_64 or arm64: the AMI follows it). Network-optimised types (c6in, c7gn) suit a relay."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type: an EC2 instance type such as c6in.large."
  }
}

variable "ami_id" {
  description = "AMI of the nodes (a Debian 12 image or one like it: cloud-init, apt, python3). Default: the newest Debian 12 image Debian publishes in the region; there is none in AWS China, where this is required."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id: an AMI id, ami- and 8 or 17 hex digits."
  }
}

variable "mesh" {
  description = "What every node of the mesh shares: the internal DNS domain, the controllers' gRPC port, the skymesh package to install (and the index it comes from), the log level, and how TLS keys reach nodes (secretsmanager or inline)."
  type = object({
    domain          = string
    controller_port = number
    skymesh_package = string
    pip_index_url   = optional(string)
    log_level       = string
    tls_mode        = string
  })

  validation {
    condition     = contains(["secretsmanager", "inline"], var.mesh.tls_mode)
    error_message = "mesh.tls_mode: \"secretsmanager\" or \"inline\"."
  }
  validation {
    condition     = contains(["debug", "info", "warning", "error", "critical"], var.mesh.log_level)
    error_message = "mesh.log_level: debug, info, warning, error or critical."
  }
  validation {
    condition     = var.mesh.controller_port >= 1 && var.mesh.controller_port <= 65535
    error_message = "mesh.controller_port: a port number, 1-65535."
  }
  validation {
    condition     = can(regex("^[a-z0-9.-]+$", var.mesh.domain)) && !can(regex("\\s", var.mesh.skymesh_package))
    error_message = "mesh.domain: a DNS name; mesh.skymesh_package: one requirement or URL, without spaces."
  }
}

variable "controllers" {
  description = "The controller replicas' public addresses by replica id (c1 = \"203.0.113.10\", ...): every relay is given every replica, by the name its certificate carries (c<i>.<domain>, mapped in /etc/hosts)."
  type        = map(string)

  validation {
    condition     = length(var.controllers) > 0 && alltrue([for id in keys(var.controllers) : can(regex("^c[0-9]+$", id))])
    error_message = "controllers: at least one, by replica ids c1, c2, ..."
  }
}

variable "relay_port" {
  description = "UDP port for probes and the mesh's traffic between regions, open to the world."
  type        = number
  default     = 7500

  validation {
    condition     = var.relay_port >= 1 && var.relay_port <= 65535 && floor(var.relay_port) == var.relay_port
    error_message = "relay_port: a port number, 1-65535."
  }
}

variable "edge_port" {
  description = "UDP port of the QUIC client edge, open to the world (443: the relay binds it with CAP_NET_BIND_SERVICE)."
  type        = number
  default     = 443

  validation {
    condition     = var.edge_port >= 1 && var.edge_port <= 65535 && floor(var.edge_port) == var.edge_port
    error_message = "edge_port: a port number, 1-65535."
  }
}

variable "certificates" {
  description = "Certificates (PEM) by file name as `skymesh certs issue` wrote them: bundle.pem, relay-<region>-n<i>.pem, edge-<region>.pem; those whose secret is in secret_arns may be left out."
  type        = map(string)
}

variable "private_keys" {
  description = "Private keys (PEM) by file name: relay-<region>-n<i>.key, edge-<region>.key; those whose secret is in secret_arns may be left out."
  type        = map(string)
  sensitive   = true
}

variable "secret_arns" {
  description = "Secrets made outside terraform, by name (relay-<region>-n<i>, edge-<region>: certificate chain then private key, PEM; bundle: the trust bundle); this module makes the others. Used with mesh.tls_mode \"secretsmanager\"."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for arn in values(var.secret_arns) : can(regex("^arn:aws(-cn)?:secretsmanager:", arn))])
    error_message = "secret_arns: each value is a Secrets Manager secret ARN."
  }
}

variable "vpc_cidr" {
  description = "Address range of the region's VPC (relays talk to each other and to the controllers by public address: ranges may repeat across regions)."
  type        = string
  default     = "10.80.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && try(tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 20, false)
    error_message = "vpc_cidr: an IPv4 CIDR from /16 to /20, such as 10.80.0.0/16 (its subnets are 8 bits longer)."
  }
}
