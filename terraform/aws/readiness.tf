# Readiness, instead of `sleep 120`: the apply ends only when flocker-control answers on every
# master's public address, over mutual TLS with the operator's certificate, and the masters'
# /v1/state/nodes together list every agent's node UUID.
#
# Each node gates itself the same way: flocker-node-ready (a unit of the plan) succeeds only once
# the control service answers and this node's UUID is in /v1/state/nodes, and mesos-agent starts
# only after it, so Mesos never offers an agent whose volumes cannot work yet.
#
# What the http provider retries: connection errors (a master still booting, the port not yet
# listening) and 5xx answers, every 5 s at first, then every 30 s (go-retryablehttp's
# exponential backoff), for about var.readiness_timeout_minutes. A 200 answer is not retried: if
# the control service is up but an agent has not reported yet, the precondition of
# terraform_data.control_ready fails and names the missing agents. Agents report within seconds
# of the control service answering (they retry while it boots), so this is rare; the remedy is
# to run `terraform apply` again, which changes nothing and re-reads this check (it is then read
# at plan time). The agents are looked for in the union of the masters' answers: an agent
# reports to one instance at a time, whichever its failover picked.

locals {
  # go-retryablehttp waits min_delay, then doubles, up to max_delay: 5 + 10 + 20 s, then 30 s each.
  readiness_min_delay_ms = 5000
  readiness_max_delay_ms = 30000
  readiness_attempts     = 3 + ceil((var.readiness_timeout_minutes * 60 - 35) / 30)

  # Every node UUID some master lists, and the agents none lists.
  listed_node_uuids = toset(flatten([
    for name, answer in data.http.control_ready : try([for node in jsondecode(answer.response_body) : lower(node.uuid)], [])
  ]))
  unlisted_agents = sort(setsubtract(toset(random_uuid.agent[*].result), local.listed_node_uuids))
}

data "http" "control_ready" {
  for_each = local.master_positions

  # The control certificate carries every master's Elastic IP as an IP SAN, so the TLS hostname
  # check against this address passes, and the CA is ours, not the system's.
  url    = "https://${aws_eip.master[each.key].public_ip}:${var.ports.control_rest}/v1/state/nodes"
  method = "GET"

  request_headers = {
    Accept = "application/json"
  }

  ca_cert_pem     = tls_self_signed_cert.ca.cert_pem
  client_cert_pem = tls_locally_signed_cert.api_user["admin"].cert_pem
  client_key_pem  = tls_private_key.api_user["admin"].private_key_pem_pkcs8

  request_timeout_ms = 10000

  retry {
    attempts     = local.readiness_attempts
    min_delay_ms = local.readiness_min_delay_ms
    max_delay_ms = local.readiness_max_delay_ms
  }

  depends_on = [
    aws_instance.node,
    aws_eip_association.master,
    aws_vpc_security_group_ingress_rule.admin,
  ]

  lifecycle {
    postcondition {
      condition     = self.status_code == 200
      error_message = "flocker-control on ${each.key} (${aws_eip.master[each.key].public_ip}:${var.ports.control_rest}) answered /v1/state/nodes with HTTP ${self.status_code}."
    }
  }
}

resource "terraform_data" "control_ready" {
  # Holds nothing: its precondition is the check, evaluated at every plan and apply once the
  # masters' answers are read.
  lifecycle {
    precondition {
      condition     = length(local.unlisted_agents) == 0
      error_message = "No master's control service lists these agents' node UUIDs yet: ${join(", ", local.unlisted_agents)}. An agent reports within seconds of the control service answering: run `terraform apply` again to re-check; if it persists, see the agent's journal (journalctl -u flocker-dataset-agent -u flocker-node-ready)."
    }
  }
}
