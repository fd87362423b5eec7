# The secrets the nodes need, as SSM SecureString parameters encrypted with the cluster's KMS
# key, named exactly as the plan's nodes[*].secrets say (file on the node => parameter name): the
# private keys, and on masters the control services' ZooKeeper credentials. User data never holds
# a secret: each node fetches its own parameters at boot with secret_fetch_command, into files
# created under umask 077 (root's, mode 0600), and its role can read nothing else (iam.tf).

# The control services' ZooKeeper credentials, made once per cluster: every flocker-control
# authenticates to ZooKeeper as flocker:<this password> (digest scheme, --store-credentials) and
# makes the configuration's znodes creator-only, so that Mesos tasks, which reach ZooKeeper on
# port 2181, can neither read nor change them. Letters and digits only (no ':', nothing a shell
# or ZooKeeper's user:password form would read differently); 40 of them, about 238 bits.
resource "random_password" "zookeeper" {
  length  = 40
  special = false
}

locals {
  # Every secret the plan asks for: parameter name => what goes in it.
  secrets = merge([
    for node_name, node in local.nodes : {
      for path, parameter in node.secrets : parameter => {
        node = node_name
        role = node.role
        path = path
        file = basename(path)
      }
    }
  ]...)

  zookeeper_user = "flocker"

  # "<node name>/<file name>" => what that file holds on that node: the PEM of a private key, or
  # (zookeeper.secret, masters only) the one line user:password flocker-control reads. Every
  # master gets the same control-service key and the same credentials, each from parameters of
  # its own.
  secret_values = merge(
    {
      for name in keys(local.master_positions) :
      "${name}/control-service.key" => tls_private_key.control.private_key_pem_pkcs8
    },
    {
      for name in keys(local.master_positions) :
      "${name}/zookeeper.secret" => "${local.zookeeper_user}:${random_password.zookeeper.result}"
    },
    {
      for name, position in local.agent_positions :
      "${name}/node.key" => tls_private_key.agent[position].private_key_pem_pkcs8
    },
    {
      for name, position in local.agent_positions :
      "${name}/plugin.key" => tls_private_key.api_user["plugin"].private_key_pem_pkcs8
    },
  )
}

resource "aws_ssm_parameter" "secret" {
  for_each = local.secrets

  name        = each.key
  description = "${each.value.path} of node ${each.value.node}, cluster ${var.cluster_name}"
  type        = "SecureString"
  tier        = "Standard"
  key_id      = aws_kms_key.cluster.arn
  value       = lookup(local.secret_values, "${each.value.node}/${each.value.file}", "")

  tags = {
    Name = each.key
    Node = each.value.node
  }

  lifecycle {
    precondition {
      condition     = startswith(each.key, "${local.secret_prefix}/${each.value.node}/")
      error_message = "The plan names the secret ${each.value.path} of ${each.value.node} \"${each.key}\", outside ${local.secret_prefix}/${each.value.node}/: the node's IAM role could not read it."
    }

    precondition {
      condition     = contains(keys(local.secret_values), "${each.value.node}/${each.value.file}")
      error_message = "The plan asks for a secret this module does not make: ${each.value.path} on ${each.value.node} (known: control-service.key and zookeeper.secret on masters, node.key and plugin.key on agents)."
    }
  }
}
