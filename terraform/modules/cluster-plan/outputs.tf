output "nodes" {
  description = "Every node by name (master-1..N, agent-1..N): role, index, private_ip, user_data (#cloud-config), secrets (file on the node -> secret name) and node_uuid (agents only)."
  value       = local.nodes

  precondition {
    condition     = alltrue([for name, bytes in local.user_data_bytes : bytes < 16384])
    error_message = "Some node's user data is 16 KiB or more, which AWS refuses: ${jsonencode(local.user_data_bytes)} bytes."
  }
  precondition {
    condition     = alltrue([for text in values(local.user_data) : !can(regex("BEGIN [A-Z ]*PRIVATE KEY", text))])
    error_message = "A private key made its way into some node's user data: keys must only be fetched at boot."
  }
}

output "zookeeper_url" {
  description = "The Mesos masters' ZooKeeper URL: zk://<master>:<port>,.../mesos."
  value       = local.zookeeper_url
}

output "quorum" {
  description = "The masters' replicated log quorum (mesos-master --quorum): floor(master_count / 2) + 1."
  value       = local.quorum
}

output "marathon_urls" {
  description = "Marathon on every master: http://<master ip>:<marathon port>."
  value       = local.marathon_urls
}

output "control_service" {
  description = "The control service, on every master: hosts (the masters' private IPs, in order), public_hosts (control_service_public_hosts, else hosts), REST port, agent port, store (\"zookeeper\" or \"journal\")."
  value = {
    hosts        = local.control_hosts
    public_hosts = local.control_public_hosts
    rest_port    = var.ports.control_rest
    agent_port   = var.ports.control_agent
    store        = var.control_service_store
  }
}

output "control_service_store_url" {
  description = "flocker-control's --store: zk://<every master>:<zookeeper port>/flocker; null with the journal store."
  value       = local.control_store_url
}

output "control_service_flags" {
  description = "flocker-control's flags on every master (FLOCKER_CONTROL_ARGS in /etc/default/flocker-control): ports, then --store and --store-credentials (or --data-path for the journal)."
  value       = local.control_flags
}

output "control_service_store_credentials" {
  description = "flocker-control's --store-credentials on every master: the file (/etc/flocker/zookeeper.secret) each master fetches at boot from its secret <secret_prefix>/<master>/zookeeper.secret, which must hold one line user:password, the same for every master; null with the journal store."
  value       = local.control_store_credentials
}

output "control_service_certificate_sans" {
  description = "The names the control certificate (CN control-service) must carry: dns_names (control-service first, then the host names among control_service_public_hosts and control_service_extra_sans) and ip_addresses (every master's private IP, then the IPv4 addresses among those)."
  value       = local.control_certificate_sans
}

output "isolator_parameters" {
  description = "The isolator module's parameters in modules.json, as a map (control_service_host lists every master, comma-separated)."
  value       = { for p in local.isolator_parameters : p.key => p.value }
}

output "uses_shared_storage" {
  description = "Whether the agents mount shared storage (shared_storage at shared_root_path): true for the loopback and directory backends, false for btrfs, which needs none (a cloud module makes no EFS or NFS for it). It depends on backend only, so a cloud module may decide from it what to make for this very plan."
  value       = local.uses_shared_storage
}

output "dataset_storage" {
  description = "Where the agents keep their volumes: backend; shared_storage (as uses_shared_storage); root_path (<shared_root_path>/<backend>, null with btrfs); and with btrfs, pool (where each agent mounts its pool), pool_devices (agent name => its pool's device) and transfer_port (where agents push volumes to each other, TCP, mutual TLS: open it between agents), else null, {} and null."
  value = {
    backend        = var.backend
    shared_storage = local.uses_shared_storage
    root_path      = local.uses_shared_storage ? local.dataset_root_path : null
    pool           = local.uses_shared_storage ? null : local.btrfs_pool_path
    pool_devices   = local.uses_shared_storage ? {} : local.pool_devices
    transfer_port  = local.uses_shared_storage ? null : var.ports.agent_transfer
  }
}

output "agent_yml" {
  description = "Each agent's /etc/flocker/agent.yml, by node name."
  value       = local.agent_yml
}

output "modules_json" {
  description = "The isolator's module manifest, /etc/mesos/flocker-modules.json on every agent."
  value       = local.modules_json
}

output "mesos_agent_flags" {
  description = "The mesos-agent flags every agent shares; each agent adds --ip and --hostname (see mesos_agent_node_flags)."
  value       = local.mesos_agent_flags
}

output "mesos_agent_node_flags" {
  description = "Each agent's complete mesos-agent flags, by node name."
  value       = local.mesos_agent_node_flags
}

output "mesos_master_flags" {
  description = "Each master's mesos-master flags, by node name."
  value       = local.mesos_master_flags
}

output "zookeeper_myid" {
  description = "Each master's ZooKeeper server id (/var/lib/zookeeper/myid), by node name."
  value       = local.zookeeper_myid
}

output "systemd_units" {
  description = "The units the plan renders, by unit name (the flocker-* units come from the release tarball)."
  value       = local.units
}

output "flockerctl_command" {
  description = "How an operator lists the nodes (--control-service lists every master's public host: flockerctl fails over between them); replace <dir> with the directory holding cluster.crt and the admin user's certificate and key."
  value       = "flockerctl --certs-path <dir> --user ${var.admin_user} --control-service ${join(",", local.control_public_hosts)} --control-port ${var.ports.control_rest} list-nodes"
}

output "example_marathon_app" {
  description = "A Marathon app (JSON) with a Flocker volume at /data, for POST /v2/apps."
  value       = local.example_marathon_app
}

output "release_files" {
  description = "The release tarball's paths the plan relies on (release/layout.json)."
  value       = local.release_files
}
