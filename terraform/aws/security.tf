# Security groups, least privilege. One group per role, plus one for EFS's mount target (loopback
# and directory backends only: btrfs has no EFS).
#
# Ingress, cluster-internal rules by security-group reference (never by CIDR):
#   masters  4523 (REST API)   from agents (isolator, flocker-node-ready)   + from admin_cidr
#   masters  4524 (agent API)  from agents only
#   masters  2181 (ZooKeeper)  from masters (mesos-master, Marathon, flocker-control's store)
#                              and agents (mesos-agent)
#   masters  2888, 3888        from masters (ZooKeeper quorum and leader election)
#   masters  5050 (Mesos)      from masters (replicated log, Marathon) and agents + from admin_cidr
#   masters  8080 (Marathon)   from masters (a standby proxies to the leader)  + from admin_cidr
#   masters  32768-60999       from masters: Marathon's scheduler driver listens on a random
#                              libprocess port (LIBPROCESS_PORT unset), and the leading
#                              mesos-master, perhaps on another master, sends it offers there
#   agents   5051 (Mesos)      from masters
#   agents   4525 (transfer)   from agents only, btrfs backend only: where a dataset agent takes
#                              the pushes of volumes from the others (mutual TLS, cluster CA)
#   EFS      2049 (NFS)        from agents only (loopback and directory backends only)
#   all      22 (SSH)          from admin_cidr, and only when var.ssh_key_name is set
# Egress, for the two node groups (the EFS group has none):
#   TCP 443 to 0.0.0.0/0: the release tarball (release_url may be any HTTPS host, e.g. GitHub),
#     the AWS APIs the nodes call (SSM GetParameter and, through it, KMS Decrypt), and on agents
#     the Docker registry the Mesos containerizer pulls task images from
#     (--image_providers=docker). Those endpoints have no fixed addresses, hence 0.0.0.0/0; only
#     TLS on port 443 can leave.
#   TCP to vpc_cidr: cluster traffic (the receiving group decides what is admitted).
# DNS (the VPC resolver), the instance metadata service and the Amazon Time Sync Service are
# link-local services that security groups do not filter.

locals {
  zookeeper_peer_ports = [2888, 3888]

  node_security_groups = {
    master = aws_security_group.master.id
    agent  = aws_security_group.agent.id
  }

  # name => rule: to the group of `to`, from the group of `from`.
  cluster_ingress = {
    control-rest-from-agents = { to = "master", from = "agent", from_port = var.ports.control_rest, to_port = var.ports.control_rest, what = "flocker-control REST API from the isolators and flocker-node-ready" }
    control-agent-api        = { to = "master", from = "agent", from_port = var.ports.control_agent, to_port = var.ports.control_agent, what = "flocker-control agent API from the dataset agents" }
    zookeeper-from-masters   = { to = "master", from = "master", from_port = var.ports.zookeeper, to_port = var.ports.zookeeper, what = "ZooKeeper clients: mesos-master, Marathon and flocker-control" }
    zookeeper-from-agents    = { to = "master", from = "agent", from_port = var.ports.zookeeper, to_port = var.ports.zookeeper, what = "ZooKeeper clients: mesos-agent's master detection" }
    zookeeper-quorum         = { to = "master", from = "master", from_port = local.zookeeper_peer_ports[0], to_port = local.zookeeper_peer_ports[0], what = "ZooKeeper quorum (followers to the leader)" }
    zookeeper-election       = { to = "master", from = "master", from_port = local.zookeeper_peer_ports[1], to_port = local.zookeeper_peer_ports[1], what = "ZooKeeper leader election" }
    mesos-master-from-master = { to = "master", from = "master", from_port = var.ports.mesos_master, to_port = var.ports.mesos_master, what = "Mesos masters' replicated log and Marathon to mesos-master" }
    mesos-master-from-agents = { to = "master", from = "agent", from_port = var.ports.mesos_master, to_port = var.ports.mesos_master, what = "mesos-agent registration and status updates" }
    marathon-from-masters    = { to = "master", from = "master", from_port = var.ports.marathon, to_port = var.ports.marathon, what = "Marathon standbys proxying to the leader" }
    libprocess-from-masters  = { to = "master", from = "master", from_port = 32768, to_port = 60999, what = "Mesos master to Marathon's scheduler driver (random libprocess port)" }
    mesos-agent-from-masters = { to = "agent", from = "master", from_port = var.ports.mesos_agent, to_port = var.ports.mesos_agent, what = "mesos-master to mesos-agent" }
  }

  # name => rule: to the group of `to`, from var.admin_cidr.
  admin_ingress = {
    control-rest-from-admin = { to = "master", port = var.ports.control_rest, what = "flocker-control REST API for flockerctl and the readiness check" }
    mesos-master-from-admin = { to = "master", port = var.ports.mesos_master, what = "Mesos master UI and API" }
    marathon-from-admin     = { to = "master", port = var.ports.marathon, what = "Marathon UI and API" }
  }
}

resource "aws_security_group" "master" {
  name        = "${var.cluster_name}-master"
  description = "Mesos masters: ZooKeeper, mesos-master, Marathon, flocker-control"
  vpc_id      = aws_vpc.cluster.id

  tags = {
    Name = "${var.cluster_name}-master"
  }
}

resource "aws_security_group" "agent" {
  name        = "${var.cluster_name}-agent"
  description = "Mesos agents: mesos-agent, flocker-dataset-agent, isolator"
  vpc_id      = aws_vpc.cluster.id

  tags = {
    Name = "${var.cluster_name}-agent"
  }
}

resource "aws_security_group" "efs" {
  count = length(local.efs)

  name        = "${var.cluster_name}-efs"
  description = "EFS mount target: NFS from the agents only; no egress"
  vpc_id      = aws_vpc.cluster.id

  tags = {
    Name = "${var.cluster_name}-efs"
  }
}

resource "aws_vpc_security_group_ingress_rule" "cluster" {
  for_each = local.cluster_ingress

  security_group_id            = local.node_security_groups[each.value.to]
  referenced_security_group_id = local.node_security_groups[each.value.from]
  ip_protocol                  = "tcp"
  from_port                    = each.value.from_port
  to_port                      = each.value.to_port
  description                  = each.value.what

  tags = {
    Name = "${var.cluster_name}-${each.key}"
  }
}

resource "aws_vpc_security_group_ingress_rule" "admin" {
  for_each = local.admin_ingress

  security_group_id = local.node_security_groups[each.value.to]
  cidr_ipv4         = var.admin_cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  description       = each.value.what

  tags = {
    Name = "${var.cluster_name}-${each.key}"
  }
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each = var.ssh_key_name == null ? {} : local.node_security_groups

  security_group_id = each.value
  cidr_ipv4         = var.admin_cidr
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  description       = "SSH from the administrators only"

  tags = {
    Name = "${var.cluster_name}-ssh-${each.key}"
  }
}

resource "aws_vpc_security_group_ingress_rule" "efs_nfs_from_agents" {
  count = length(local.efs)

  security_group_id            = aws_security_group.efs[0].id
  referenced_security_group_id = aws_security_group.agent.id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  description                  = "NFS from the agents (shared storage of the volumes)"

  tags = {
    Name = "${var.cluster_name}-efs-nfs-from-agents"
  }
}

# btrfs: volumes move between the agents' own disks by pushes, agent to agent (the same rule as
# those of local.cluster_ingress, made only for this backend).
resource "aws_vpc_security_group_ingress_rule" "agent_transfer" {
  count = local.uses_shared_storage ? 0 : 1

  security_group_id            = aws_security_group.agent.id
  referenced_security_group_id = aws_security_group.agent.id
  ip_protocol                  = "tcp"
  from_port                    = var.ports.agent_transfer
  to_port                      = var.ports.agent_transfer
  description                  = "flocker-dataset-agent transfer port: volumes pushed from the other agents (btrfs)"

  tags = {
    Name = "${var.cluster_name}-agent-transfer-from-agents"
  }
}

moved {
  from = aws_security_group.efs
  to   = aws_security_group.efs[0]
}

moved {
  from = aws_vpc_security_group_ingress_rule.efs_nfs_from_agents
  to   = aws_vpc_security_group_ingress_rule.efs_nfs_from_agents[0]
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each = local.node_security_groups

  security_group_id = each.value
  # 0.0.0.0/0 on port 443 only: the release download (any HTTPS host), the SSM and KMS APIs, and
  # the Docker registry on agents have no fixed addresses (see the header of this file).
  cidr_ipv4   = "0.0.0.0/0"
  ip_protocol = "tcp"
  from_port   = 443
  to_port     = 443
  description = "HTTPS: release tarball, AWS APIs (SSM, KMS), Docker registry"

  tags = {
    Name = "${var.cluster_name}-https-out-${each.key}"
  }
}

resource "aws_vpc_security_group_egress_rule" "vpc" {
  for_each = local.node_security_groups

  security_group_id = each.value
  cidr_ipv4         = var.vpc_cidr
  ip_protocol       = "tcp"
  from_port         = 1
  to_port           = 65535
  description       = "Cluster traffic inside the VPC; the receiving group decides"

  tags = {
    Name = "${var.cluster_name}-vpc-out-${each.key}"
  }
}
