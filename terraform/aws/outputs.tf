locals {
  # Each master's Elastic IP: Marathon, the Mesos UI and flocker-control, to admin_cidr.
  master_public_ips = { for name in keys(local.master_positions) : name => aws_eip.master[name].public_ip }
  control_hosts     = [for name in sort(keys(local.master_public_ips)) : local.master_public_ips[name]]

  # Where the operator keeps the cluster's client files (a shell expression, quoted where used).
  certs_dir = "$HOME/.flocker/${var.cluster_name}"
}

output "marathon_urls" {
  description = "Marathon on each master, on its public address (reachable from admin_cidr only). Any master serves; standbys proxy to the leader."
  value       = [for name in sort(keys(local.master_public_ips)) : "http://${local.master_public_ips[name]}:${var.ports.marathon}"]
}

output "marathon_private_urls" {
  description = "Marathon on each master, on its private address (from inside the VPC)."
  value       = module.plan.marathon_urls
}

output "mesos_master_urls" {
  description = "The Mesos master UI on each master's public address (reachable from admin_cidr only)."
  value       = [for name in sort(keys(local.master_public_ips)) : "http://${local.master_public_ips[name]}:${var.ports.mesos_master}"]
}

output "zookeeper_url" {
  description = "The masters' ZooKeeper ensemble, as Mesos takes it (private addresses)."
  value       = module.plan.zookeeper_url
}

output "control_service" {
  description = "The control service, on every master: public hosts (the masters' Elastic IPs, reachable from admin_cidr) and private hosts, in master order, its ports, its store and, for the ZooKeeper store, its --store URL and its --store-credentials file on the masters (user flocker; the password is in SSM, /flocker/<cluster_name>/master-N/zookeeper.secret). Clients are given every host and fail over between them."
  value = {
    public_hosts      = local.control_hosts
    private_hosts     = module.plan.control_service.hosts
    rest_port         = module.plan.control_service.rest_port
    agent_port        = module.plan.control_service.agent_port
    store             = module.plan.control_service.store
    store_url         = module.plan.control_service_store_url
    store_credentials = module.plan.control_service_store_credentials
    urls              = [for host in local.control_hosts : "https://${host}:${var.ports.control_rest}"]
  }
}

output "agent_nodes" {
  description = "Agent name => its node UUID (the CN of its certificate is node-<uuid>) and private address."
  value = {
    for name, position in local.agent_positions : name => {
      node_uuid  = random_uuid.agent[position].result
      private_ip = local.nodes[name].private_ip
    }
  }
}

output "registered_nodes" {
  description = "Master name => what its control service's /v1/state/nodes listed when the apply's readiness check passed."
  value       = { for name, answer in data.http.control_ready : name => jsondecode(answer.response_body) }
}

output "cluster_id" {
  description = "The cluster's UUID (the OU of every certificate)."
  value       = random_uuid.cluster_id.result
}

output "cluster_crt" {
  description = "The cluster CA certificate (public): cluster.crt."
  value       = tls_self_signed_cert.ca.cert_pem
}

output "admin_crt" {
  description = "The operator's API certificate (CN user-<admin_user>), public: <admin_user>.crt."
  value       = tls_locally_signed_cert.api_user["admin"].cert_pem
}

output "admin_key" {
  description = "The operator's private key: <admin_user>.key. Write it with umask 077 (see write_certificates_commands)."
  value       = tls_private_key.api_user["admin"].private_key_pem_pkcs8
  sensitive   = true
}

output "write_certificates_commands" {
  description = "Shell commands that write cluster.crt, <admin_user>.crt and <admin_user>.key for flockerctl (run them in this directory)."
  value       = <<-EOT
    mkdir -p "${local.certs_dir}" && chmod 0700 "${local.certs_dir}"
    terraform output -raw cluster_crt > "${local.certs_dir}/cluster.crt"
    terraform output -raw admin_crt > "${local.certs_dir}/${var.admin_user}.crt"
    (umask 077 && terraform output -raw admin_key > "${local.certs_dir}/${var.admin_user}.key")
  EOT
}

output "flockerctl_command" {
  description = "A ready-to-run flockerctl command line (the plan's, with the certificates directory filled in; --control-service lists every master), once write_certificates_commands has run."
  value       = replace(module.plan.flockerctl_command, "<dir>", "\"${local.certs_dir}\"")

  precondition {
    condition     = strcontains(module.plan.flockerctl_command, "<dir>")
    error_message = "The plan's flockerctl_command no longer has the <dir> placeholder this output fills in."
  }
}

output "flockerctl_environment" {
  description = "The same settings as export lines, for a shell session of flockerctl commands."
  value       = <<-EOT
    export FLOCKER_CERTS_PATH="${local.certs_dir}"
    export FLOCKER_USER=${var.admin_user}
    export FLOCKER_CONTROL_SERVICE=${join(",", local.control_hosts)}
    export FLOCKER_CONTROL_PORT=${var.ports.control_rest}
  EOT
}

output "example_marathon_app" {
  description = "A Marathon app with a movable volume (FLOCKER_ID); post it with: terraform output -raw example_marathon_app | curl -sS -X POST -H 'Content-Type: application/json' --data-binary @- <marathon url>/v2/apps"
  value       = module.plan.example_marathon_app
}

output "shared_storage" {
  description = "The EFS file system every agent mounts (loopback and directory backends); null with btrfs."
  value = local.uses_shared_storage ? {
    id       = one(aws_efs_file_system.shared[*].id)
    dns_name = one(aws_efs_file_system.shared[*].dns_name)
  } : null
}

output "btrfs_pools" {
  description = "btrfs backend: agent name => its pool's EBS volume (volume_id), the device the agent finds it at (device) and the port the other agents push volumes to it on (transfer_port); empty with loopback and directory."
  value = {
    for name, volume in aws_ebs_volume.pool : name => {
      volume_id     = volume.id
      device        = module.plan.dataset_storage.pool_devices[name]
      transfer_port = module.plan.dataset_storage.transfer_port
    }
  }
}

output "kms_key_arn" {
  description = "The cluster's KMS key (SSM parameters, EFS, EBS, flow logs)."
  value       = aws_kms_key.cluster.arn
}
