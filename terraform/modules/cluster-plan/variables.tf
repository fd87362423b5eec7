variable "cluster_name" {
  description = "The cluster's name: node names, secret names and the Mesos cluster name derive from it."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.cluster_name))
    error_message = "cluster_name must be 3 to 32 characters: lowercase letters, digits and '-', starting with a letter and not ending with '-'."
  }
}

variable "master_count" {
  description = "How many masters (each runs ZooKeeper, mesos-master, Marathon and flocker-control): 1, 3 or 5."
  type        = number
  default     = 3
  nullable    = false

  validation {
    condition     = contains([1, 3, 5], var.master_count)
    error_message = "master_count must be 1, 3 or 5 (an odd ZooKeeper ensemble; 2 or 4 masters tolerate no more failures than one fewer)."
  }
}

variable "agent_count" {
  description = "How many Mesos agent nodes (each runs flocker-dataset-agent, the isolator module and mesos-agent): 1 to 50."
  type        = number
  default     = 3
  nullable    = false

  validation {
    condition     = var.agent_count >= 1 && var.agent_count <= 50 && floor(var.agent_count) == var.agent_count
    error_message = "agent_count must be a whole number from 1 to 50."
  }
}

variable "agent_node_uuids" {
  description = "Each agent's Flocker node UUID, in agent order (the CN of its node.crt is node-<uuid>)."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.agent_node_uuids) == var.agent_count
    error_message = "agent_node_uuids must have exactly agent_count entries, one per agent, in agent order."
  }
  validation {
    condition     = alltrue([for u in var.agent_node_uuids : can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", u))])
    error_message = "Every entry of agent_node_uuids must be a lowercase UUID such as 5b1c2f0e-3d4a-4c8e-9f10-2a3b4c5d6e7f."
  }
  validation {
    condition     = length(distinct(var.agent_node_uuids)) == length(var.agent_node_uuids)
    error_message = "agent_node_uuids must not repeat a UUID: each agent is a node of its own."
  }
}

variable "mesos_version" {
  description = "The Mesos version of the image, which the isolator module is built against exactly (each agent checks it at boot)."
  type        = string
  default     = "1.11.0"
  nullable    = false

  validation {
    condition     = contains(["1.9.0", "1.10.0", "1.11.0"], var.mesos_version)
    error_message = "mesos_version must be one of 1.9.0, 1.10.0 or 1.11.0."
  }
}

variable "backend" {
  description = "The dataset agents' backend: loopback (block devices in files on the shared storage), directory (directories on the shared storage) or btrfs (each agent's own btrfs pool on its own block device, btrfs_pool_device(s); volumes move by a push between agents over mutual TLS on ports.agent_transfer; no shared storage)."
  type        = string
  default     = "loopback"
  nullable    = false

  validation {
    condition     = contains(["loopback", "directory", "btrfs"], var.backend)
    error_message = "backend must be \"loopback\", \"directory\" or \"btrfs\"."
  }
}

variable "ports" {
  description = "TCP ports: the control service's REST and agent APIs, ZooKeeper's client port, mesos-master, mesos-agent, Marathon, and the dataset agents' transfer port (agent_transfer: where, with the btrfs backend, other agents push volumes to this one)."
  type = object({
    control_rest   = optional(number, 4523)
    control_agent  = optional(number, 4524)
    zookeeper      = optional(number, 2181)
    mesos_master   = optional(number, 5050)
    mesos_agent    = optional(number, 5051)
    marathon       = optional(number, 8080)
    agent_transfer = optional(number, 4525)
  })
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for p in values(var.ports) : p >= 1 && p <= 65535 && floor(p) == p])
    error_message = "Every port must be a whole number from 1 to 65535."
  }
  validation {
    condition     = length(distinct(values(var.ports))) == length(values(var.ports)) && !contains(values(var.ports), 2888) && !contains(values(var.ports), 3888)
    error_message = "The ports must all differ, and differ from 2888 and 3888 (ZooKeeper's peer and election ports on the masters)."
  }
}

variable "subnet_cidr" {
  description = "The nodes' IPv4 subnet: masters at host 10+i, agents at host 30+i (i from 0)."
  type        = string
  default     = "10.20.1.0/24"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$", var.subnet_cidr)) && can(cidrnetmask(var.subnet_cidr))
    error_message = "subnet_cidr must be an IPv4 CIDR block such as 10.20.1.0/24."
  }
  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0)) ? cidrhost(var.subnet_cidr, 0) == split("/", var.subnet_cidr)[0] : true
    error_message = "subnet_cidr must name its network address (10.20.1.0/24, not 10.20.1.5/24)."
  }
  validation {
    # The last agent is host 29 + agent_count; the block's last address (broadcast, reserved on
    # AWS) must lie beyond it.
    condition     = can(cidrnetmask(var.subnet_cidr)) ? pow(2, 32 - tonumber(split("/", var.subnet_cidr)[1])) >= 31 + var.agent_count : true
    error_message = "subnet_cidr is too small: the nodes use hosts 10 to 29 + agent_count of it (a /26 holds up to 33 agents, a /25 all 50)."
  }
}

variable "release_url" {
  description = "HTTPS URL of the release tarball (scripts/release builds it; layout in release/layout.json)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^https://[^/\\s'\"\\\\]+/[^\\s'\"\\\\]+$", var.release_url))
    error_message = "release_url must be an https:// URL with a path, without spaces, quotes or backslashes."
  }
}

variable "release_sha256" {
  description = "SHA-256 of the release tarball, as scripts/release prints it (64 lowercase hex digits)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.release_sha256))
    error_message = "release_sha256 must be 64 lowercase hexadecimal digits."
  }
}

variable "shared_storage" {
  description = "The storage every agent mounts at shared_root_path, as an /etc/fstab entry (on AWS, source is \"<EFS DNS name>:/\"): needed by the loopback and directory backends, whose volumes live there; null with btrfs, whose volumes live on each agent's own disk."
  type = object({
    source  = string
    fstype  = optional(string, "nfs4")
    options = optional(string, "nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,_netdev")
  })
  default = null

  validation {
    condition     = (var.shared_storage == null) == (var.backend == "btrfs")
    error_message = "shared_storage is needed by the loopback and directory backends (their volumes live on it, which is how they move between agents) and must be null with btrfs (each agent's volumes live on its own disk and move by a push): ${var.backend == "btrfs" ? "leave it null" : "give it"}."
  }
  validation {
    condition     = var.shared_storage == null ? true : can(regex("^[^\\s'\"\\\\#]+$", var.shared_storage.source))
    error_message = "shared_storage.source must be non-empty, without spaces, quotes, backslashes or '#' (e.g. fs-0123.efs.eu-west-1.amazonaws.com:/)."
  }
  validation {
    condition     = var.shared_storage == null ? true : can(regex("^[a-z0-9][a-z0-9.]*$", var.shared_storage.fstype))
    error_message = "shared_storage.fstype must be a file system type such as nfs4 or nfs."
  }
  validation {
    condition     = var.shared_storage == null ? true : can(regex("^[^\\s'\"\\\\#]+$", var.shared_storage.options))
    error_message = "shared_storage.options must be non-empty mount options without spaces, quotes, backslashes or '#'."
  }
}

variable "shared_root_path" {
  description = "Where the agents mount the shared storage; the datasets live in <shared_root_path>/<backend> (loopback and directory; unused with btrfs)."
  type        = string
  default     = "/mnt/flocker-shared"
  nullable    = false

  validation {
    condition     = can(regex("^(/[A-Za-z0-9_.-]+)+$", var.shared_root_path)) && !can(regex("(^|/)\\.\\.?(/|$)", var.shared_root_path))
    error_message = "shared_root_path must be an absolute path such as /mnt/flocker-shared: letters, digits, '_', '.', '-' between slashes, no trailing slash, no '.' or '..'."
  }
}

variable "btrfs_pool_device" {
  description = "btrfs backend: the block device holding each agent's pool, unless btrfs_pool_devices names each agent's own. The dataset agent formats it (mkfs.btrfs, never -f) only if blkid -p finds nothing on it, and mounts it at /var/lib/flocker/btrfs. The default, /dev/nvme1n1, is the first volume attached after the root volume on a Nitro instance with no instance store (on Xen instances, a volume attached as /dev/sdf is /dev/xvdf); NVMe names follow the order devices are found in, so where a cloud module knows each agent's volume, it passes stable names in btrfs_pool_devices instead (terraform/aws: /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_<volume id without '-'>)."
  type        = string
  default     = "/dev/nvme1n1"
  nullable    = false

  validation {
    # Letters, digits, '_', '.', ':' and '-' only, so that the device's systemd unit name is
    # the path with '-' escaped as \x2d and '/' as '-' (systemd-escape --path).
    condition     = can(regex("^/dev(/[A-Za-z0-9_.:-]+)+$", var.btrfs_pool_device)) && !can(regex("(^|/)\\.\\.?(/|$)", var.btrfs_pool_device))
    error_message = "btrfs_pool_device must be a device path under /dev such as /dev/nvme1n1 or /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0: letters, digits, '_', '.', ':', '-' between slashes, no trailing slash, no '.' or '..'."
  }
}

variable "btrfs_pool_devices" {
  description = "btrfs backend: each agent's pool device, in agent order (as agent_node_uuids), e.g. stable /dev/disk/by-id/... names of each agent's own volume. Empty (the default): every agent uses btrfs_pool_device."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = length(var.btrfs_pool_devices) == 0 || (var.backend == "btrfs" && length(var.btrfs_pool_devices) == var.agent_count)
    error_message = "btrfs_pool_devices is for the btrfs backend, and has exactly agent_count entries, one per agent, in agent order (or none: every agent then uses btrfs_pool_device)."
  }
  validation {
    condition = alltrue([for d in var.btrfs_pool_devices :
      can(regex("^/dev(/[A-Za-z0-9_.:-]+)+$", d)) && !can(regex("(^|/)\\.\\.?(/|$)", d))
    ])
    error_message = "Every entry of btrfs_pool_devices must be a device path under /dev such as /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0: letters, digits, '_', '.', ':', '-' between slashes, no trailing slash, no '.' or '..'."
  }
}

variable "secret_prefix" {
  description = "Prefix of the secrets' names: <secret_prefix>/<node name>/<file>. Null means /flocker/<cluster_name>."
  type        = string
  default     = null

  validation {
    condition     = var.secret_prefix == null ? true : can(regex("^(/[A-Za-z0-9_.-]+)+$", var.secret_prefix))
    error_message = "secret_prefix must start with '/' and hold letters, digits, '_', '.', '-' between slashes, without a trailing slash (e.g. /flocker/prod)."
  }
}

variable "secret_fetch_command" {
  description = "Shell command prefix that prints a secret given its name as the last argument, e.g. \"aws ssm get-parameter --with-decryption --query Parameter.Value --output text --name\"."
  type        = string
  nullable    = false

  validation {
    condition     = trimspace(var.secret_fetch_command) != "" && !can(regex("[\\r\\n]", var.secret_fetch_command))
    error_message = "secret_fetch_command must be a non-empty, single-line shell command prefix."
  }
}

variable "certificates" {
  description = "Public PEM certificates (never keys): the cluster CA, the control service's, the isolator's API user (plugin), and one node certificate per agent in the order of agent_node_uuids."
  type = object({
    cluster_crt = string
    control_crt = string
    plugin_crt  = string
    node_crts   = list(string)
  })
  nullable = false

  validation {
    condition = alltrue([
      for pem in concat([var.certificates.cluster_crt, var.certificates.control_crt, var.certificates.plugin_crt], var.certificates.node_crts) :
      can(regex("^-----BEGIN CERTIFICATE-----\\r?\\n[A-Za-z0-9+/=\\s-]+-----END CERTIFICATE-----$", trimspace(pem))) && !strcontains(pem, "PRIVATE KEY")
    ])
    error_message = "Every certificate must be PEM (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----) and hold no private key."
  }
  validation {
    condition     = length(var.certificates.node_crts) == var.agent_count
    error_message = "certificates.node_crts must have exactly agent_count entries, in the order of agent_node_uuids."
  }
}

variable "admin_user" {
  description = "The API user whose certificate (<admin_user>.crt/.key) the operator gives flockerctl."
  type        = string
  default     = "admin"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9_-]{0,31}$", var.admin_user))
    error_message = "admin_user must be 1 to 32 characters: lowercase letters, digits, '_' and '-', starting with a letter."
  }
}

variable "control_service_store" {
  description = "Where the flocker-control on every master keeps the configuration: \"zookeeper\" (the default; --store zk://<every master>:<zookeeper port>/flocker, shared by all instances) or \"journal\" (--data-path /var/lib/flocker on the master's disk; one master only)."
  type        = string
  default     = "zookeeper"
  nullable    = false

  validation {
    condition     = contains(["zookeeper", "journal"], var.control_service_store)
    error_message = "control_service_store must be \"zookeeper\" or \"journal\"."
  }
  validation {
    condition     = var.control_service_store == "zookeeper" || var.master_count == 1
    error_message = "control_service_store = \"journal\" needs master_count = 1: with several masters, each flocker-control would keep a configuration of its own. Use \"zookeeper\"."
  }
}

variable "control_service_public_hosts" {
  description = "The control service's addresses as operators reach them (flockerctl_command), e.g. every master's public IP; each is also a name of the control certificate. Empty: the masters' private IPs."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for h in var.control_service_public_hosts : can(regex("^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$", h))])
    error_message = "Every entry of control_service_public_hosts must be a host name or an IPv4 address."
  }
  validation {
    condition     = length(distinct(var.control_service_public_hosts)) == length(var.control_service_public_hosts)
    error_message = "control_service_public_hosts must not repeat a host."
  }
}

variable "control_service_extra_sans" {
  description = "More names (host names or IPv4 addresses) the control certificate must carry, e.g. the masters' private DNS names. It always carries control-service, every master's private IP and control_service_public_hosts."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for h in var.control_service_extra_sans : can(regex("^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$", h))])
    error_message = "Every entry of control_service_extra_sans must be a host name or an IPv4 address."
  }
}

variable "host_path_roots" {
  description = "Where a task without an image may have its volume linked on an agent (the isolator's host_path_roots): absolute directories. Empty: no host links, only volumes in the sandbox or in an image."
  type        = list(string)
  default     = ["/tmp"]
  nullable    = false

  validation {
    condition = alltrue([for r in var.host_path_roots :
      can(regex("^(/[A-Za-z0-9_.-]+)+$", r)) && !can(regex("(^|/)\\.\\.?(/|$)", r))
    ])
    error_message = "host_path_roots must be absolute directories such as /tmp or /srv/volumes: no '/' alone, no trailing slash, no '.' or '..', no commas."
  }
}

variable "volume_prefixes_by_role" {
  description = "Which FLOCKER_ID prefixes each Mesos role may use (the isolator's volume_prefixes_by_role), e.g. { billing = [\"billing-\"], \"*\" = [\"scratch-\"] }; a prefix \"*\" allows any name. Empty (the default): every role may use any volume name."
  type        = map(list(string))
  default     = {}
  nullable    = false

  validation {
    condition = alltrue([for role, prefixes in var.volume_prefixes_by_role :
      can(regex("^[^\\s=;,]+$", role)) && length(prefixes) > 0 &&
      alltrue([for p in prefixes : p == "*" || can(regex("^[A-Za-z0-9._-]+$", p))])
    ])
    error_message = "volume_prefixes_by_role maps roles (no spaces, '=', ';' or ',') to non-empty lists of prefixes made of letters, digits, '.', '_', '-' (or \"*\" for any name)."
  }
}
