# The cluster's certificates, made during the apply (no manual `flockerctl ca` step), exactly as
# `flockerctl ca` makes them (cli/src/ca/): ECDSA P-256 keys; every subject is
# CN=<name>, OU=<cluster uuid>; the CA is self-signed with keyCertSign and cRLSign; leaves carry
# digitalSignature plus one extended usage (serverAuth for the control service, clientAuth for
# nodes and API users). One control service certificate and key serve flocker-control on every
# master; its names are the plan's control_service_certificate_sans: the DNS SAN
# "control-service" (what the project's clients verify) and every master's private address,
# private DNS name and Elastic IP (what other clients, the readiness check among them, dial).
#
# Keys are PKCS#8 PEM, the form `flockerctl ca` writes. All of them end up in the Terraform state
# (README.md, "Secrets and the Terraform state"); on the nodes they come from SSM (secrets.tf).

locals {
  ca_validity_hours = 10 * 365 * 24
  # Leaves expire a month before the CA, so that none outlives the CA that vouches for it.
  leaf_validity_hours = local.ca_validity_hours - 30 * 24
}

resource "random_uuid" "cluster_id" {}

resource "random_uuid" "agent" {
  count = var.agent_count
}

# The cluster CA.
resource "tls_private_key" "ca" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_self_signed_cert" "ca" {
  private_key_pem = tls_private_key.ca.private_key_pem

  subject {
    common_name         = var.cluster_name
    organizational_unit = random_uuid.cluster_id.result
  }

  is_ca_certificate     = true
  set_subject_key_id    = true
  validity_period_hours = local.ca_validity_hours
  allowed_uses          = ["cert_signing", "crl_signing"]
}

# The control service, on every master: CN control-service.
resource "tls_private_key" "control" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "control" {
  private_key_pem = tls_private_key.control.private_key_pem

  subject {
    common_name         = "control-service"
    organizational_unit = random_uuid.cluster_id.result
  }

  dns_names    = module.plan.control_service_certificate_sans.dns_names
  ip_addresses = module.plan.control_service_certificate_sans.ip_addresses
}

resource "tls_locally_signed_cert" "control" {
  cert_request_pem   = tls_cert_request.control.cert_request_pem
  ca_private_key_pem = tls_private_key.ca.private_key_pem
  ca_cert_pem        = tls_self_signed_cert.ca.cert_pem

  set_subject_key_id    = true
  validity_period_hours = local.leaf_validity_hours
  allowed_uses          = ["digital_signature", "server_auth"]
}

# One node certificate per agent: CN node-<uuid>; the uuid is the node's identity in the cluster.
resource "tls_private_key" "agent" {
  count = var.agent_count

  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "agent" {
  count = var.agent_count

  private_key_pem = tls_private_key.agent[count.index].private_key_pem

  subject {
    common_name         = "node-${random_uuid.agent[count.index].result}"
    organizational_unit = random_uuid.cluster_id.result
  }
}

resource "tls_locally_signed_cert" "agent" {
  count = var.agent_count

  cert_request_pem   = tls_cert_request.agent[count.index].cert_request_pem
  ca_private_key_pem = tls_private_key.ca.private_key_pem
  ca_cert_pem        = tls_self_signed_cert.ca.cert_pem

  set_subject_key_id    = true
  validity_period_hours = local.leaf_validity_hours
  allowed_uses          = ["digital_signature", "client_auth"]
}

# API users: "plugin" (the isolators, on every agent) and var.admin_user (the operator).
resource "tls_private_key" "api_user" {
  for_each = local.api_users

  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "api_user" {
  for_each = local.api_users

  private_key_pem = tls_private_key.api_user[each.key].private_key_pem

  subject {
    common_name         = "user-${each.value}"
    organizational_unit = random_uuid.cluster_id.result
  }
}

resource "tls_locally_signed_cert" "api_user" {
  for_each = local.api_users

  cert_request_pem   = tls_cert_request.api_user[each.key].cert_request_pem
  ca_private_key_pem = tls_private_key.ca.private_key_pem
  ca_cert_pem        = tls_self_signed_cert.ca.cert_pem

  set_subject_key_id    = true
  validity_period_hours = local.leaf_validity_hours
  allowed_uses          = ["digital_signature", "client_auth"]
}

locals {
  # role => username
  api_users = {
    plugin = "plugin"
    admin  = var.admin_user
  }
}
