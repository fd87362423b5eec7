# Where the agents keep their volumes, as the plan says (module.plan.uses_shared_storage, which
# depends on var.backend alone):
#
#   loopback, directory: shared storage. One EFS file system, encrypted with the cluster's KMS
#     key, with a mount target in the cluster's subnet that only the agents can reach (NFS,
#     security.tf). Every agent mounts it at the plan's shared_root_path; the dataset backend
#     keeps its loop files (or directories) there, so a volume written on one agent is attached
#     on another: that is what makes it move.
#   btrfs: no shared storage, no EFS. Each agent has an EBS volume of its own (encrypted with the
#     cluster's KMS key), attached after it is launched, which its dataset agent formats as
#     btrfs (only if blank) and mounts as its pool; a volume moves by a push from agent to agent
#     over mutual TLS on ports.agent_transfer (security.tf). The plan names each agent's device
#     by its volume id, which the NVMe controller of a Nitro instance carries as its serial:
#     /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<id without '-'> (udev's standard
#     rules), so the pool is on that volume whatever order the devices are found in.
#
# Destroying the cluster destroys this file system, or these volumes, and every volume on them.

locals {
  uses_shared_storage = module.plan.uses_shared_storage
  efs                 = local.uses_shared_storage ? { shared = true } : {}
  btrfs_pools         = local.uses_shared_storage ? {} : local.agent_positions

  # Each agent's pool device, in agent order (agent-1, agent-2, ..., agent-10: not the keys'
  # lexical order), as the plan takes them.
  btrfs_pool_devices = [for position in range(var.agent_count) :
    "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${replace(aws_ebs_volume.pool["agent-${position + 1}"].id, "-", "")}"
    if !local.uses_shared_storage
  ]
}

resource "aws_efs_file_system" "shared" {
  count = length(local.efs)

  creation_token   = "flocker-${var.cluster_name}"
  encrypted        = true
  kms_key_id       = aws_kms_key.cluster.arn
  performance_mode = "generalPurpose"

  tags = {
    Name = "${var.cluster_name}-shared"
  }
}

# AWS Backup's daily EFS backups (the default backup plan, 35 days): the volumes are the tasks'
# state, the one thing here that cannot be recreated by another apply.
resource "aws_efs_backup_policy" "shared" {
  count = length(local.efs)

  file_system_id = aws_efs_file_system.shared[0].id

  backup_policy {
    status = "ENABLED"
  }
}

resource "aws_efs_mount_target" "shared" {
  count = length(local.efs)

  file_system_id  = aws_efs_file_system.shared[0].id
  subnet_id       = aws_subnet.cluster.id
  security_groups = [aws_security_group.efs[0].id]
}

# The file system and its mount target were single resources before the btrfs backend: keep the
# existing ones (no new file system, no lost volumes).
moved {
  from = aws_efs_file_system.shared
  to   = aws_efs_file_system.shared[0]
}

moved {
  from = aws_efs_backup_policy.shared
  to   = aws_efs_backup_policy.shared[0]
}

moved {
  from = aws_efs_mount_target.shared
  to   = aws_efs_mount_target.shared[0]
}

# The btrfs backend's pools: the agents' instance type must show EBS volumes as NVMe devices
# (Nitro), whose serial is the volume id the plan names the device by.
data "aws_ec2_instance_type" "agent" {
  count = length(local.btrfs_pools) > 0 ? 1 : 0

  instance_type = var.agent_instance_type
}

resource "aws_ebs_volume" "pool" {
  for_each = local.btrfs_pools

  availability_zone = aws_subnet.cluster.availability_zone
  size              = var.btrfs_pool_size_gb
  type              = "gp3"
  encrypted         = true
  kms_key_id        = aws_kms_key.cluster.arn
  # A last snapshot when the volume is destroyed (terraform destroy, fewer agents): the
  # volumes on it are the tasks' state. Encrypted with the cluster's key, which is deleted 30
  # days after the cluster (kms.tf): copy what you keep under another key before then.
  final_snapshot = true

  tags = {
    Name = "${var.cluster_name}-${each.key}-btrfs-pool"
    Node = each.key
  }

  lifecycle {
    precondition {
      condition     = one(data.aws_ec2_instance_type.agent[*].ebs_nvme_support) == "required"
      error_message = "The btrfs backend needs agents whose EBS volumes are NVMe devices (Nitro instance types, such as m6i, m5 or c6i): ${var.agent_instance_type} has EBS NVMe support \"${coalesce(one(data.aws_ec2_instance_type.agent[*].ebs_nvme_support), "unknown")}\", so the pool's device could not be named by its volume id."
    }
  }
}

resource "aws_volume_attachment" "pool" {
  for_each = aws_ebs_volume.pool

  # The name AWS records; the instance sees an NVMe device, found by the volume id (above).
  device_name = "/dev/sdf"
  volume_id   = each.value.id
  instance_id = aws_instance.node[each.key].id
  # Before a detach (the agent replaced, or the cluster destroyed), stop the instance, so that
  # the pool is unmounted cleanly. A replaced agent gets the same volume back, its pool and its
  # volumes as they were (its dataset agent formats only a blank device).
  stop_instance_before_detaching = true
}
