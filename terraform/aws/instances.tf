# The nodes. What runs on each (units, configuration files, the release download and the secret
# fetch) comes from the provider-free plan in ../modules/cluster-plan; this file gives it the AWS
# facts (EFS or the agents' EBS pools, certificates, the secret store) and launches one instance
# per node it plans.

locals {
  secret_prefix = "/flocker/${var.cluster_name}"

  # The node names the plan uses (interface: "master-1".., "agent-1"..) => position, from the
  # counts rather than from the plan's nodes: the masters' interfaces and Elastic IPs are made
  # before the certificate the plan carries, since the certificate names them.
  master_positions = { for position in range(var.master_count) : "master-${position + 1}" => position }
  agent_positions  = { for position in range(var.agent_count) : "agent-${position + 1}" => position }

  nodes              = module.plan.nodes
  master_private_ips = { for name, position in local.master_positions : name => module.plan.control_service.hosts[position] }

  instance_types = {
    master = var.master_instance_type
    agent  = var.agent_instance_type
  }

  # Public addresses, and why:
  #   master: its Elastic IP (below), on its own network interface: a fixed address, since each
  #           is a name of the control certificate (flocker-control runs on every master), for
  #           flockerctl, the readiness check, Marathon and the Mesos UI (admin_cidr only), and
  #           the release download;
  #   agent:  auto-assigned, for outbound HTTPS only (release, SSM/KMS, Docker registry): no NAT
  #           gateway (network.tf); nothing is admitted from outside the VPC (security.tf).
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

  # Shared storage (loopback, directory): the EFS file system; btrfs: none, but each agent's own
  # EBS volume, named by its volume id (storage.tf).
  shared_storage = local.uses_shared_storage ? {
    source = "${one(aws_efs_file_system.shared[*].dns_name)}:/"
  } : null
  btrfs_pool_devices = local.btrfs_pool_devices

  secret_prefix        = local.secret_prefix
  secret_fetch_command = "aws ssm get-parameter --region ${var.region} --with-decryption --query Parameter.Value --output text --name"

  certificates = {
    cluster_crt = tls_self_signed_cert.ca.cert_pem
    control_crt = tls_locally_signed_cert.control.cert_pem
    plugin_crt  = tls_locally_signed_cert.api_user["plugin"].cert_pem
    node_crts   = tls_locally_signed_cert.agent[*].cert_pem
  }

  admin_user = var.admin_user

  # flocker-control runs on every master; its certificate names every master's private IP (the
  # plan adds them), Elastic IP and private DNS name.
  control_service_store        = var.control_service_store
  control_service_public_hosts = [for name in keys(local.master_positions) : aws_eip.master[name].public_ip]
  control_service_extra_sans   = compact([for name in keys(local.master_positions) : aws_network_interface.master[name].private_dns_name])
}

# Each master's network interface and public address, made before the master: its Elastic IP
# and private DNS name are names of the control certificate, so they must exist before the
# certificate; and being on the interface from the start, the master has its public address
# (for the release download) from its first boot instruction, and keeps address and interface
# if the instance is ever replaced.
resource "aws_network_interface" "master" {
  for_each = local.master_positions

  description     = "${var.cluster_name} ${each.key}"
  subnet_id       = aws_subnet.cluster.id
  private_ips     = [local.master_private_ips[each.key]]
  security_groups = [aws_security_group.master.id]

  tags = {
    Name = "${var.cluster_name}-${each.key}"
  }
}

resource "aws_eip" "master" {
  #checkov:skip=CKV2_AWS_19:Each address is attached to its master, through the master's primary network interface (aws_eip_association.master with network_interface_id), so that it exists before the instance boots; the check only recognises an association by instance_id.
  for_each = local.master_positions

  domain = "vpc"

  tags = {
    Name = "${var.cluster_name}-${each.key}"
  }

  depends_on = [aws_internet_gateway.cluster]
}

resource "aws_eip_association" "master" {
  for_each = local.master_positions

  allocation_id        = aws_eip.master[each.key].id
  network_interface_id = aws_network_interface.master[each.key].id
}

resource "aws_instance" "node" {
  #checkov:skip=CKV_AWS_88:Public addresses only where needed, per role: masters use their Elastic IPs (the control service, Marathon and the Mesos UI, to admin_cidr only); agents need outbound HTTPS (release, SSM/KMS, Docker registry) and admit nothing from outside the VPC. A NAT gateway would need the masters behind load balancers, since the plan puts every node in one subnet (network.tf).
  for_each = local.nodes

  ami           = var.mesos_ami_id
  instance_type = local.instance_types[each.value.role]
  # Masters come up on their own interfaces (above); agents get one here.
  subnet_id                   = each.value.role == "master" ? null : aws_subnet.cluster.id
  private_ip                  = each.value.role == "master" ? null : each.value.private_ip
  vpc_security_group_ids      = each.value.role == "master" ? null : [aws_security_group.agent.id]
  associate_public_ip_address = each.value.role == "master" ? null : true
  iam_instance_profile        = aws_iam_instance_profile.node[each.key].name
  key_name                    = var.ssh_key_name

  # The plan's cloud-init: it writes the public certificates and configuration, downloads and
  # checks the release, fetches this node's keys (and on masters the ZooKeeper credentials) from
  # SSM, and starts the units. No secret in it.
  user_data                   = each.value.user_data
  user_data_replace_on_change = false

  dynamic "network_interface" {
    for_each = each.value.role == "master" ? [each.key] : []

    content {
      network_interface_id = aws_network_interface.master[network_interface.value].id
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
  # (release download, AWS APIs), and on agents the EFS mount target (loopback, directory). A
  # btrfs agent's pool volume is attached once it runs (storage.tf); its user data waits for it.
  depends_on = [
    aws_ssm_parameter.secret,
    aws_iam_role_policy.node,
    aws_route.internet,
    aws_route_table_association.cluster,
    aws_efs_mount_target.shared,
    aws_vpc_security_group_egress_rule.https,
    aws_vpc_security_group_egress_rule.vpc,
    aws_eip_association.master,
  ]

  lifecycle {
    # cloud-init runs user data once, at first boot: a changed plan (new release, new flags)
    # would otherwise stop and start every node at once, masters included, which loses the
    # ZooKeeper quorum. Roll changes one node at a time instead (README.md, "Changing a running
    # cluster"): terraform apply -replace='aws_instance.node["agent-1"]'.
    ignore_changes = [user_data, ami]

    precondition {
      condition     = contains(keys(local.instance_types), each.value.role)
      error_message = "The plan gives node ${each.key} the role \"${each.value.role}\"; this module knows master and agent."
    }

    precondition {
      condition     = each.value.role != "master" || contains(keys(local.master_positions), each.key)
      error_message = "The plan names a master \"${each.key}\"; this module expects master-1..master-${var.master_count} (their interfaces and Elastic IPs are made in that order)."
    }

    precondition {
      condition     = each.value.role != "agent" || contains(keys(local.agent_positions), each.key)
      error_message = "The plan names an agent \"${each.key}\"; this module expects agent-1..agent-${var.agent_count} (their certificates and keys are made in that order)."
    }

    precondition {
      condition     = each.value.role != "master" || lookup(local.master_private_ips, each.key, null) == each.value.private_ip
      error_message = "The plan gives ${each.key} the address ${each.value.private_ip}, not the one its interface was made with (the control service's hosts: ${join(", ", module.plan.control_service.hosts)})."
    }
  }
}
