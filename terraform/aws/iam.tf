# One IAM role and instance profile per node, instead of access keys: a node's role may read only
# its own SSM parameters, <secret_prefix>/<node name>/*, and decrypt them with the cluster's KMS
# key only when SSM asks on its behalf for one of those same parameters (kms:ViaService and the
# PARAMETER_ARN encryption context SSM sets). Nothing else: no wildcard beyond the node's own
# parameter path. Each master reads the control service's key and its ZooKeeper credentials from
# parameters of its own (the same values in each: every master serves the control service with
# one certificate, and every flocker-control authenticates to ZooKeeper as the same user); no
# agent's role can read either.

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    sid     = "EC2AssumesTheNodeRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

locals {
  # The parameters a node may read: exactly the names the plan gives its secrets (secrets.tf
  # checks that every one of them is under this path).
  node_parameter_arns = {
    for name, node in local.nodes :
    name => "arn:${local.partition}:ssm:${var.region}:${local.account_id}:parameter${local.secret_prefix}/${name}/*"
  }
}

resource "aws_iam_role" "node" {
  for_each = local.nodes

  name               = "${var.cluster_name}-${each.key}"
  description        = "Node ${each.key} of cluster ${var.cluster_name}: reads its own SSM parameters only"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json

  tags = {
    Name = "${var.cluster_name}-${each.key}"
    Role = each.value.role
  }
}

data "aws_iam_policy_document" "node" {
  for_each = local.nodes

  statement {
    sid       = "ReadOwnParameters"
    effect    = "Allow"
    actions   = ["ssm:GetParameter"]
    resources = [local.node_parameter_arns[each.key]]
  }

  statement {
    sid       = "DecryptOwnParametersThroughSSM"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.cluster.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ssm.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:PARAMETER_ARN"
      values   = [local.node_parameter_arns[each.key]]
    }
  }
}

resource "aws_iam_role_policy" "node" {
  for_each = local.nodes

  name   = "read-own-secrets"
  role   = aws_iam_role.node[each.key].id
  policy = data.aws_iam_policy_document.node[each.key].json
}

resource "aws_iam_instance_profile" "node" {
  for_each = local.nodes

  name = "${var.cluster_name}-${each.key}"
  role = aws_iam_role.node[each.key].name

  tags = {
    Name = "${var.cluster_name}-${each.key}"
  }
}

# The role VPC Flow Logs uses to write to the flow-log group, and to nothing else.
data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    sid     = "VPCFlowLogsAssumesTheRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "${var.cluster_name}-vpc-flow-logs"
  description        = "VPC flow logs of cluster ${var.cluster_name} to CloudWatch Logs"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    sid    = "WriteTheFlowLogGroupOnly"
    effect = "Allow"
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = [
      aws_cloudwatch_log_group.flow_logs.arn,
      "${aws_cloudwatch_log_group.flow_logs.arn}:*",
    ]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}
