# The cluster's customer-managed KMS key, rotated yearly. It encrypts:
#   - the SSM SecureString parameters holding the private keys and the control services'
#     ZooKeeper credentials (secrets.tf);
#   - the EFS file system holding the volumes, or with btrfs each agent's pool volume and its
#     final snapshot (storage.tf);
#   - the nodes' root volumes (instances.tf);
#   - the VPC flow-log group (network.tf).
# Who may use it: IAM principals of this account that an IAM policy allows (the usual "enable IAM
# policies" statement: this is how Terraform's own credentials, EC2 and EFS on their behalf, and
# each node's role (iam.tf: Decrypt, only through SSM, only for its own parameters) get access),
# and CloudWatch Logs, for the flow-log group only.
#
# The policy is written inline rather than with aws_iam_policy_document: a key policy's
# Resource is always "*" (the key itself), which IAM-policy linters rightly flag elsewhere.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id          = data.aws_caller_identity.current.account_id
  partition           = data.aws_partition.current.partition
  flow_log_group_name = "/flocker/${var.cluster_name}/vpc-flow-logs"
}

resource "aws_kms_key" "cluster" {
  description             = "Mesos/Flocker cluster ${var.cluster_name}: node private keys (SSM), EFS, EBS, flow logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  is_enabled              = true

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "EnableIAMPoliciesOfThisAccount"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsForTheFlowLogGroupOnly"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action = [
          "kms:Encrypt*",
          "kms:Decrypt*",
          "kms:ReEncrypt*",
          "kms:GenerateDataKey*",
          "kms:Describe*",
        ]
        Resource = "*"
        Condition = {
          ArnEquals = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:${local.flow_log_group_name}"
          }
        }
      },
    ]
  })

  tags = {
    Name = "${var.cluster_name}-cluster-key"
  }
}

resource "aws_kms_alias" "cluster" {
  name          = "alias/flocker-${var.cluster_name}"
  target_key_id = aws_kms_key.cluster.key_id
}
