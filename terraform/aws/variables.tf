# Every input is validated here; checks that need the region's data, or the plan's, are
# preconditions on the resources they concern (network.tf, instances.tf, secrets.tf). The plan
# module validates its inputs again, with checks across variables (subnet size against
# agent_count, for one).

variable "region" {
  description = "AWS region to deploy in, e.g. eu-west-1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1 or us-gov-west-1."
  }
}

variable "availability_zone" {
  description = "Availability zone of the cluster's subnet, in var.region (e.g. eu-west-1b). Checked against the region's available zones."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9][a-z]$", var.availability_zone))
    error_message = "availability_zone must be a zone name such as eu-west-1b."
  }
}

variable "admin_cidr" {
  description = "IPv4 CIDR the operators (and the machine running terraform, for the readiness check) connect from: the only source allowed to reach the control REST API, Marathon, the Mesos master UI and SSH."
  type        = string

  validation {
    condition = (
      can(cidrhost(var.admin_cidr, 0)) &&
      can(regex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$", var.admin_cidr)) &&
      try(tonumber(split("/", var.admin_cidr)[1]) >= 8, false)
    )
    error_message = "admin_cidr must be an IPv4 CIDR of prefix /8 or narrower (never 0.0.0.0/0), e.g. 203.0.113.7/32."
  }
}

variable "cluster_name" {
  description = "Name of the cluster: the CA's common name, and the prefix of every AWS name."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.cluster_name))
    error_message = "cluster_name must be 3 to 32 characters: lowercase letters, digits and '-', starting with a letter and not ending with '-'."
  }
}

variable "master_count" {
  description = "Number of master nodes (ZooKeeper ensemble + mesos-master + Marathon + flocker-control on each): 1, 3 or 5."
  type        = number
  default     = 3

  validation {
    condition     = contains([1, 3, 5], var.master_count)
    error_message = "master_count must be 1, 3 or 5 (a ZooKeeper ensemble needs an odd size)."
  }
}

variable "agent_count" {
  description = "Number of agent nodes (mesos-agent + flocker-dataset-agent + the isolator module)."
  type        = number
  default     = 3

  validation {
    condition     = var.agent_count >= 1 && var.agent_count <= 50 && floor(var.agent_count) == var.agent_count
    error_message = "agent_count must be a whole number from 1 to 50."
  }
}

variable "master_instance_type" {
  description = "Instance type of the master nodes (ZooKeeper, mesos-master, Marathon's JVM and flocker-control: 8 GiB is comfortable)."
  type        = string
  default     = "m6i.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.master_instance_type)) && !can(regex("^t[12]\\.", var.master_instance_type))
    error_message = "master_instance_type must be an instance type such as m6i.large; t1/t2 types cannot be EBS-optimized."
  }
}

variable "agent_instance_type" {
  description = "Instance type of the agent nodes (they run the tasks)."
  type        = string
  default     = "m6i.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.agent_instance_type)) && !can(regex("^t[12]\\.", var.agent_instance_type))
    error_message = "agent_instance_type must be an instance type such as m6i.large; t1/t2 types cannot be EBS-optimized."
  }
}

variable "root_volume_size_gb" {
  description = "Size of every node's (encrypted, gp3) root volume, in GiB."
  type        = number
  default     = 30

  validation {
    condition     = var.root_volume_size_gb >= 16 && var.root_volume_size_gb <= 1024 && floor(var.root_volume_size_gb) == var.root_volume_size_gb
    error_message = "root_volume_size_gb must be a whole number from 16 to 1024."
  }
}

variable "mesos_ami_id" {
  description = "AMI with Mesos, Marathon, ZooKeeper, awscli, nfs-common and btrfs-progs installed (README.md, \"Baking the Mesos AMI\"). Must be in var.region."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.mesos_ami_id))
    error_message = "mesos_ami_id must look like ami-0123456789abcdef0."
  }
}

variable "mesos_version" {
  description = "Mesos version baked into the AMI; the release's isolator module must be built against the same one."
  type        = string
  default     = "1.11.0"

  validation {
    condition     = contains(["1.9.0", "1.10.0", "1.11.0"], var.mesos_version)
    error_message = "mesos_version must be one of 1.9.0, 1.10.0, 1.11.0."
  }
}

variable "release_url" {
  description = "HTTPS URL of the project's release tarball (scripts/release): binaries, systemd units and the isolator module."
  type        = string

  validation {
    condition     = can(regex("^https://[^/\\s'\"\\\\]+/[^\\s'\"\\\\]+$", var.release_url))
    error_message = "release_url must be an https:// URL with a path, without spaces, quotes or backslashes."
  }
}

variable "release_sha256" {
  description = "SHA-256 of the release tarball, 64 lowercase hex digits; nodes refuse a tarball that does not match."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.release_sha256))
    error_message = "release_sha256 must be 64 lowercase hexadecimal digits."
  }
}

variable "backend" {
  description = "Dataset backend of the agents: loopback (ext4 in loop files on EFS) or directory (plain directories on EFS), where a move is a rename on EFS; or btrfs (each agent's own btrfs pool on an EBS volume of its own, no EFS), where a move is a push of the bytes from agent to agent on ports.agent_transfer."
  type        = string
  default     = "loopback"

  validation {
    condition     = contains(["loopback", "directory", "btrfs"], var.backend)
    error_message = "backend must be \"loopback\", \"directory\" or \"btrfs\"."
  }
}

variable "btrfs_pool_size_gb" {
  description = "btrfs backend: the size of each agent's pool, an encrypted gp3 EBS volume (cluster KMS key), in GiB. Every volume on an agent counts against it, and a volume moving in needs room for its copy."
  type        = number
  default     = 100

  validation {
    condition     = var.btrfs_pool_size_gb >= 1 && var.btrfs_pool_size_gb <= 16384 && floor(var.btrfs_pool_size_gb) == var.btrfs_pool_size_gb
    error_message = "btrfs_pool_size_gb must be a whole number from 1 to 16384 (gp3's limit)."
  }
}

variable "ports" {
  description = "TCP ports of the services; agent_transfer is where, with the btrfs backend, agents push volumes to each other (open between agents only). ZooKeeper's peer ports (2888, 3888) are fixed."
  type = object({
    control_rest   = optional(number, 4523)
    control_agent  = optional(number, 4524)
    zookeeper      = optional(number, 2181)
    mesos_master   = optional(number, 5050)
    mesos_agent    = optional(number, 5051)
    marathon       = optional(number, 8080)
    agent_transfer = optional(number, 4525)
  })
  default = {}

  validation {
    condition     = alltrue([for port in values(var.ports) : port >= 1 && port <= 65535 && floor(port) == port])
    error_message = "Every port must be a whole number from 1 to 65535."
  }

  validation {
    condition     = length(distinct(concat(values(var.ports), [2888, 3888]))) == length(values(var.ports)) + 2
    error_message = "The ports must all differ, and differ from ZooKeeper's peer ports 2888 and 3888."
  }
}

variable "control_service_store" {
  description = "Where flocker-control, on every master, keeps the configuration: \"zookeeper\" (the default: in the masters' ZooKeeper ensemble, under /flocker, shared by every instance) or \"journal\" (on the master's root volume; master_count = 1 only)."
  type        = string
  default     = "zookeeper"

  validation {
    condition     = contains(["zookeeper", "journal"], var.control_service_store)
    error_message = "control_service_store must be \"zookeeper\" or \"journal\"."
  }

  validation {
    condition     = var.control_service_store == "zookeeper" || var.master_count == 1
    error_message = "control_service_store = \"journal\" needs master_count = 1: with several masters, each flocker-control would keep a configuration of its own."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC."
  type        = string
  default     = "10.20.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && can(regex("^[0-9.]+/(1[6-9]|2[0-8])$", var.vpc_cidr)) && try(cidrhost(var.vpc_cidr, 0) == split("/", var.vpc_cidr)[0], false)
    error_message = "vpc_cidr must be an IPv4 CIDR naming its network address, with a prefix from /16 to /28 (AWS's limits)."
  }
}

variable "subnet_cidr" {
  description = "IPv4 CIDR of the cluster's subnet, inside vpc_cidr; the plan puts masters at host 10+i and agents at 30+i."
  type        = string
  default     = "10.20.1.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0)) && can(regex("^[0-9.]+/(1[6-9]|2[0-6])$", var.subnet_cidr)) && try(cidrhost(var.subnet_cidr, 0) == split("/", var.subnet_cidr)[0], false)
    error_message = "subnet_cidr must be an IPv4 CIDR naming its network address (10.20.1.0/24, not 10.20.1.5/24), with a prefix from /16 to /26 (a /26 holds up to 33 agents, a /25 all 50)."
  }
}

variable "ssh_key_name" {
  description = "Name of an existing EC2 key pair for SSH from admin_cidr. null (the default): no key pair, and port 22 stays closed."
  type        = string
  default     = null

  validation {
    condition     = var.ssh_key_name == null || can(regex("^[\\x20-\\x7e]{1,255}$", var.ssh_key_name))
    error_message = "ssh_key_name must be null or the name of an EC2 key pair (1 to 255 printable ASCII characters)."
  }
}

variable "admin_user" {
  description = "API user made for the operator (certificate CN user-<admin_user>); its key is the sensitive output admin_key."
  type        = string
  default     = "admin"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_-]{0,31}$", var.admin_user)) && var.admin_user != "plugin"
    error_message = "admin_user must be 1 to 32 characters: lowercase letters, digits, '_' and '-', starting with a letter; and not \"plugin\" (the isolators' user)."
  }
}

variable "log_retention_days" {
  description = "Retention of the VPC flow logs in CloudWatch, in days (365 or more)."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention of at least a year: 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

variable "readiness_timeout_minutes" {
  description = "How long terraform apply waits for the control service to list every agent (roughly; see readiness.tf)."
  type        = number
  default     = 15

  validation {
    condition     = var.readiness_timeout_minutes >= 5 && var.readiness_timeout_minutes <= 60
    error_message = "readiness_timeout_minutes must be from 5 to 60."
  }
}

variable "host_path_roots" {
  description = "Where a task without an image may have its volume linked on an agent (passed to the cluster plan)."
  type        = list(string)
  default     = ["/tmp"]
  nullable    = false
}

variable "volume_prefixes_by_role" {
  description = "Which FLOCKER_ID prefixes each Mesos role may use (passed to the cluster plan); empty: any."
  type        = map(list(string))
  default     = {}
  nullable    = false
}
