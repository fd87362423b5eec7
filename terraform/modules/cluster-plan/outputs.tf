output "nodes" {
  description = "Every node by name (master-1..N, control, agent-1..N): role, index, private_ip, user_data (#cloud-config), secrets (file on the node -> secret name) and node_uuid (agents only)."
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
  description = "The control service: its private address, REST port and agent port."
  value = {
    host       = local.control.private_ip
    rest_port  = var.ports.control_rest
    agent_port = var.ports.control_agent
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
  description = "How an operator lists the nodes; replace <dir> with the directory holding cluster.crt and the admin user's certificate and key."
  value       = "flockerctl --certs-path <dir> --user ${var.admin_user} --control-service ${local.control_public} --control-port ${var.ports.control_rest} list-nodes"
}

output "example_marathon_app" {
  description = "A Marathon app (JSON) with a Flocker volume at /data, for POST /v2/apps."
  value       = local.example_marathon_app
}

output "release_files" {
  description = "The release tarball's paths the plan relies on (release/layout.json)."
  value       = local.release_files
}
