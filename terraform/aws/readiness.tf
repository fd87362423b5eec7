# Readiness, instead of `sleep 120`: the apply ends only when the control service answers on its
# public address, over mutual TLS with the operator's certificate, and lists every agent's node
# UUID in /v1/state/nodes.
#
# Each node gates itself the same way: flocker-node-ready (a unit of the plan) succeeds only once
# the control service answers and this node's UUID is in /v1/state/nodes, and mesos-agent starts
# only after it, so Mesos never offers an agent whose volumes cannot work yet.
#
# What the http provider retries: connection errors (the control node still booting, the port
# not yet listening) and 5xx answers, every 5 s at first, then every 30 s (go-retryablehttp's
# exponential backoff), for about var.readiness_timeout_minutes. A 200 answer is not retried: if
# the control service is up but an agent has not reported yet, the postcondition below fails and
# names the missing agents. Agents report within seconds of the control service answering (they
# retry while it boots), so this is rare; the remedy is to run `terraform apply` again, which
# changes nothing and re-reads this check (it is then read at plan time).

locals {
  # go-retryablehttp waits min_delay, then doubles, up to max_delay: 5 + 10 + 20 s, then 30 s each.
  readiness_min_delay_ms = 5000
  readiness_max_delay_ms = 30000
  readiness_attempts     = 3 + ceil((var.readiness_timeout_minutes * 60 - 35) / 30)
}

data "http" "control_ready" {
  # The certificate of the control service carries the Elastic IP as an IP SAN, so the TLS
  # hostname check against this address passes, and the CA is ours, not the system's.
  url    = "https://${aws_eip.control.public_ip}:${var.ports.control_rest}/v1/state/nodes"
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
    aws_eip_association.control,
    aws_vpc_security_group_ingress_rule.admin,
  ]

  lifecycle {
    postcondition {
      condition     = self.status_code == 200
      error_message = "The control service at ${aws_eip.control.public_ip}:${var.ports.control_rest} answered /v1/state/nodes with HTTP ${self.status_code}."
    }

    postcondition {
      condition = length(setsubtract(
        toset(random_uuid.agent[*].result),
        toset(try([for node in jsondecode(self.response_body) : lower(node.uuid)], [])),
      )) == 0
      error_message = "Not every agent is in the control service's /v1/state/nodes yet; missing node UUIDs: ${join(", ", sort(setsubtract(toset(random_uuid.agent[*].result), toset(try([for node in jsondecode(self.response_body) : lower(node.uuid)], [])))))}. An agent reports within seconds of the control service answering: run `terraform apply` again to re-check; if it persists, see the agent's journal (journalctl -u flocker-dataset-agent -u flocker-node-ready)."
    }
  }
}
