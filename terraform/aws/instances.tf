# The nodes. What runs on each (units, configuration files, the release download and the secret
# fetch) comes from the provider-free plan in ../modules/cluster-plan; this file gives it the AWS
# facts (EFS, certificates, the secret store) and launches one instance per node it plans.

locals {
  secret_prefix = "/flocker/${var.cluster_name}"

  # The node names the plan uses (interface: "master-1".., "control", "agent-1"..).
  control_name = "control"

  # Agent name => position in agent_node_uuids / node_crts / random_uuid.agent.
  agent_positions = { for position in range(var.agent_count) : "agent-${position + 1}" => position }

  nodes              = module.plan.nodes
  control_private_ip = module.plan.control_service.host

  instance_types = {
    master  = var.master_instance_type
    control = var.control_instance_type
    agent   = var.agent_instance_type
  }

  # Which nodes get a public address, and why:
  #   control: its Elastic IP (below), on its own network interface: a fixed address, since it is
  #            a SAN of the control certificate, for flockerctl and the readiness check;
  #   master:  Marathon and the Mesos UI serve admin_cidr (security.tf), and the release download;
  #   agent:   outbound HTTPS only (release, SSM/KMS, Docker registry): no NAT gateway (network.tf);
  #            nothing is admitted from outside the VPC (security.tf).
  public_ip_by_role = {
    master  = true
    control = false
    agent   = true
  }
}

module "plan" {
  source = "../modules/cluster-plan"

  cluster_name     = var.cluster_name
  master_count     = var.master_count
  agent_count      = var.agent_count
  agent_node_uuids = random_uuid.agent[*].result
  mesos_version    = var.mesos_version
  backend          = var.backend
  ports            = var.ports
  subnet_cidr      = var.subnet_cidr
  release_url      = var.release_url
  release_sha256   = var.release_sha256

  host_path_roots         = var.host_path_roots
  volume_prefixes_by_role = var.volume_prefixes_by_role

  shared_storage = {
    source = "${aws_efs_file_system.shared.dns_name}:/"
  }

  secret_prefix        = local.secret_prefix
  secret_fetch_command = "aws ssm get-parameter --region ${var.region} --with-decryption --query Parameter.Value --output text --name"

  certificates = {
    cluster_crt = tls_self_signed_cert.ca.cert_pem
    control_crt = tls_locally_signed_cert.control.cert_pem
    plugin_crt  = tls_locally_signed_cert.api_user["plugin"].cert_pem
    node_crts   = tls_locally_signed_cert.agent[*].cert_pem
  }

  admin_user                  = var.admin_user
  control_service_public_host = aws_eip.control.public_ip
}

# The control node's network interface and public address, made before the node: the Elastic IP
# is a SAN of the control certificate, so it must exist before the certificate; and being on the
# interface from the start, the node has its public address (for the release download) from its
# first boot instruction, and keeps address and interface if the instance is ever replaced.
resource "aws_network_interface" "control" {
  description     = "${var.cluster_name} control node"
  subnet_id       = aws_subnet.cluster.id
  private_ips     = [local.control_private_ip]
  security_groups = [aws_security_group.control.id]

  tags = {
    Name = "${var.cluster_name}-control"
  }
}

resource "aws_eip" "control" {
  #checkov:skip=CKV2_AWS_19:The address is attached to the control instance, through its primary network interface (aws_eip_association.control with network_interface_id), so that it exists before the instance boots; the check only recognises an association by instance_id.
  domain = "vpc"

  tags = {
    Name = "${var.cluster_name}-control"
  }

  depends_on = [aws_internet_gateway.cluster]
}

resource "aws_eip_association" "control" {
  allocation_id        = aws_eip.control.id
  network_interface_id = aws_network_interface.control.id
}

resource "aws_instance" "node" {
  #checkov:skip=CKV_AWS_88:Public addresses only where needed, per role (local.public_ip_by_role): masters serve Marathon and the Mesos UI to admin_cidr only; agents need outbound HTTPS (release, SSM/KMS, Docker registry) and admit nothing from outside the VPC; the control node uses its Elastic IP instead. A NAT gateway would need the control node and masters behind load balancers, since the plan puts every node in one subnet (network.tf).
  for_each = local.nodes

  ami           = var.mesos_ami_id
  instance_type = local.instance_types[each.value.role]
  # The control node comes up on its own interface (above); the others get one here.
  subnet_id                   = each.key == local.control_name ? null : aws_subnet.cluster.id
  private_ip                  = each.key == local.control_name ? null : each.value.private_ip
  vpc_security_group_ids      = each.value.role == "master" ? [aws_security_group.master.id] : each.value.role == "agent" ? [aws_security_group.agent.id] : null
  associate_public_ip_address = each.key == local.control_name ? null : local.public_ip_by_role[each.value.role]
  iam_instance_profile        = aws_iam_instance_profile.node[each.key].name
  key_name                    = var.ssh_key_name

  # The plan's cloud-init: it writes the public certificates and configuration, downloads and
  # checks the release, fetches this node's keys from SSM, and starts the units. No secret in it.
  user_data                   = each.value.user_data
  user_data_replace_on_change = false

  dynamic "network_interface" {
    for_each = each.key == local.control_name ? [aws_network_interface.control.id] : []

    content {
      network_interface_id = network_interface.value
      device_index         = 0
    }
  }

  monitoring    = true
  ebs_optimized = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size_gb
    encrypted             = true
    kms_key_id            = aws_kms_key.cluster.arn
    delete_on_termination = true
  }

  tags = {
    Name = "${var.cluster_name}-${each.key}"
    Role = each.value.role
  }

  volume_tags = {
    Name = "${var.cluster_name}-${each.key}-root"
  }

  # A node needs, when it boots: its secrets in SSM and the right to read them, the route out
  # (release download, AWS APIs), and on agents the EFS mount target.
  depends_on = [
    aws_ssm_parameter.secret,
    aws_iam_role_policy.node,
    aws_route.internet,
    aws_route_table_association.cluster,
    aws_efs_mount_target.shared,
    aws_vpc_security_group_egress_rule.https,
    aws_vpc_security_group_egress_rule.vpc,
    aws_eip_association.control,
  ]

  lifecycle {
    # cloud-init runs user data once, at first boot: a changed plan (new release, new flags)
    # would otherwise stop and start every node at once, masters included, which loses the
    # ZooKeeper quorum. Roll changes one node at a time instead (README.md, "Changing a running
    # cluster"): terraform apply -replace='aws_instance.node["agent-1"]'.
    ignore_changes = [user_data, ami]

    precondition {
      condition     = contains(keys(local.instance_types), each.value.role)
      error_message = "The plan gives node ${each.key} the role \"${each.value.role}\"; this module knows master, control and agent."
    }

    precondition {
      condition     = each.value.role != "agent" || contains(keys(local.agent_positions), each.key)
      error_message = "The plan names an agent \"${each.key}\"; this module expects agent-1..agent-${var.agent_count} (their certificates and keys are made in that order)."
    }

    precondition {
      condition     = each.key != local.control_name || each.value.private_ip == local.control_private_ip
      error_message = "The plan gives the control node the address ${each.value.private_ip} but names ${local.control_private_ip} as the control service's host."
    }

    precondition {
      condition     = contains(keys(local.nodes), local.control_name)
      error_message = "The plan has no node named \"${local.control_name}\"; this module gives that node the Elastic IP and the control certificate."
    }
  }
}
