# Shared storage: one EFS file system, encrypted with the cluster's KMS key, with a mount target
# in the cluster's subnet that only the agents can reach (NFS, security.tf). Every agent mounts it
# at the plan's shared_root_path; the dataset backend keeps its loop files (or directories)
# there, so a volume written on one agent is attached on another: that is what makes it move.
#
# Destroying the cluster destroys this file system and every volume on it.

resource "aws_efs_file_system" "shared" {
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
  file_system_id = aws_efs_file_system.shared.id

  backup_policy {
    status = "ENABLED"
  }
}

resource "aws_efs_mount_target" "shared" {
  file_system_id  = aws_efs_file_system.shared.id
  subnet_id       = aws_subnet.cluster.id
  security_groups = [aws_security_group.efs.id]
}
