# The private keys the nodes need, as SSM SecureString parameters encrypted with the cluster's
# KMS key, named exactly as the plan's nodes[*].secrets say (file on the node => parameter name).
# User data never holds a key: each node fetches its own parameters at boot with
# secret_fetch_command, into files created under umask 077, and its role can read nothing else
# (iam.tf).

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

  # "<node name>/<file name>" => PEM of the private key that file holds on that node.
  private_keys = merge(
    {
      for name in keys(local.master_positions) :
      "${name}/control-service.key" => tls_private_key.control.private_key_pem_pkcs8
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
  value       = lookup(local.private_keys, "${each.value.node}/${each.value.file}", "")

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
      condition     = contains(keys(local.private_keys), "${each.value.node}/${each.value.file}")
      error_message = "The plan asks for a secret this module does not make: ${each.value.path} on ${each.value.node} (known: control-service.key on masters, node.key and plugin.key on agents)."
    }
  }
}
