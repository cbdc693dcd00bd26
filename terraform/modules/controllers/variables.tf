variable "controller_count" {
  description = "Controller replicas, ids c1..cN, spread over the region's availability zones; each an etcd member unless etcd_endpoints names an existing etcd."
  type        = number
  default     = 3

  validation {
    condition     = contains([1, 3, 5, 7], var.controller_count)
    error_message = "controller_count: 1, 3, 5 or 7 (an etcd cluster wants an odd number of members)."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the controller nodes (x86_64 or arm64: the AMI follows it)."
  type        = string
  default     = "m6i.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type: an EC2 instance type such as m6i.large."
  }
}

variable "ami_id" {
  description = "AMI of the controller nodes (a Debian 12 image or one like it: cloud-init, apt, python3, etcd-server). Default: the newest Debian 12 image Debian publishes in the region."
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

variable "resolver_port" {
  description = "TCP port of the EdgeResolver, where clients find their nearest edges; open to the world."
  type        = number
  default     = 7443

  validation {
    condition     = var.resolver_port >= 1 && var.resolver_port <= 65535 && floor(var.resolver_port) == var.resolver_port
    error_message = "resolver_port: a port number, 1-65535."
  }
}

variable "etcd_endpoints" {
  description = "An existing etcd's client endpoints (HOST:PORT, TLS, trusting the mesh's bundle for client certificates). Empty: every controller node runs an etcd member (Debian's etcd-server), peers and clients on mutual TLS with the mesh's CA."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.etcd_endpoints : can(regex("^[0-9A-Za-z.-]+:[0-9]{1,5}$", e))])
    error_message = "etcd_endpoints: each is HOST:PORT."
  }
}

variable "relay_addresses" {
  description = "Every relay node's public address by <region>/<node>: they, and operator_cidrs, may reach the gRPC port."
  type        = map(string)
}

variable "operator_cidrs" {
  description = "Networks (IPv4 CIDR) the operators' admin commands reach the gRPC port from."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.operator_cidrs : can(cidrhost(c, 0))])
    error_message = "operator_cidrs: each is an IPv4 CIDR such as 198.51.100.0/24."
  }
}

variable "catalogue" {
  description = "The region catalogue, file name => content (<id>.yaml and policy.yaml): kept in S3, synced to the replicas' /etc/skymesh/regions/."
  type        = map(string)

  validation {
    condition     = length(var.catalogue) > 0 && alltrue([for f in keys(var.catalogue) : can(regex("^[a-z0-9-]+\\.yaml$", f))])
    error_message = "catalogue: one or more files named <id>.yaml."
  }
}

variable "serve_regions" {
  description = "Region ids the controllers serve (the configuration's `only`: the regions provisioned); empty: every region of the catalogue."
  type        = list(string)
  default     = []
}

variable "apps_yaml" {
  description = "The apps file's content: each app's token public keys (see skymesh/apps.py): kept in S3, synced to the replicas' /etc/skymesh/apps.yaml."
  type        = string

  validation {
    condition     = can(yamldecode(var.apps_yaml))
    error_message = "apps_yaml: not YAML."
  }
}

variable "fabric_keys" {
  description = "Fabric keys to seed the controllers with (hex keys, one a line); null: the controllers make their own (kept in etcd), unless secret_arns has \"fabric\"."
  type        = string
  default     = null
  sensitive   = true
}

variable "certificates" {
  description = "Certificates (PEM) by file name as `skymesh certs issue` wrote them: bundle.pem, controller-c<i>.pem, etcd-c<i>.pem; those whose secret is in secret_arns may be left out."
  type        = map(string)
}

variable "private_keys" {
  description = "Private keys (PEM) by file name: controller-c<i>.key, etcd-c<i>.key; those whose secret is in secret_arns may be left out."
  type        = map(string)
  sensitive   = true
}

variable "secret_arns" {
  description = "Secrets made outside terraform, by name (controller-c<i>, etcd-c<i>: certificate chain then private key, PEM; bundle: the trust bundle; fabric: fabric keys); this module makes the others. Used with mesh.tls_mode \"secretsmanager\"."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for arn in values(var.secret_arns) : can(regex("^arn:aws(-cn)?:secretsmanager:", arn))])
    error_message = "secret_arns: each value is a Secrets Manager secret ARN."
  }
}

variable "vpc_cidr" {
  description = "Address range of the controllers' VPC."
  type        = string
  default     = "10.90.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && try(tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 20, false)
    error_message = "vpc_cidr: an IPv4 CIDR from /16 to /20, such as 10.90.0.0/16 (its subnets are 8 bits longer)."
  }
}
