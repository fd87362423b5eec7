# Provider-free on purpose: this module only computes (variables, locals, outputs and built-in
# functions: templatefile, jsonencode, yamlencode, cidrhost), so `terraform init`, `validate` and
# `test` need no network. 1.9 is the first release whose variable validations may read other
# variables (agent_node_uuids against agent_count, subnet_cidr against agent_count...).
terraform {
  required_version = ">= 1.9"
}
