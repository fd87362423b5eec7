# One VPC, one subnet in the chosen zone (the plan gives every node a fixed address in it), an
# internet gateway, and VPC flow logs to a KMS-encrypted CloudWatch log group.
#
# Why a public subnet and no NAT gateway: the masters need fixed public addresses (they run the
# control service, and each one's Elastic IP is a SAN of its certificate, which operators and
# the readiness check reach), and they serve Marathon and the Mesos UI to admin_cidr, so they
# need public addresses in a subnet routed to the internet gateway. Every node also needs
# outbound HTTPS (the release tarball, the SSM and KMS APIs, and on agents the Docker registry).
# The plan puts all nodes in one subnet, so agents cannot sit behind a NAT gateway without
# moving the masters behind a load balancer; they get an auto-assigned public address instead
# (no extra cost, where a NAT gateway costs ~$33/month plus data). That address admits nothing:
# the agents' security group has no rule open to the internet, only to the cluster's own groups
# (and SSH to admin_cidr when a key pair is given). See security.tf.

# The chosen zone, if it is an available zone of the region (else an empty list: the subnet's
# precondition then stops the plan).
data "aws_availability_zones" "chosen" {
  state = "available"

  filter {
    name   = "zone-name"
    values = [var.availability_zone]
  }
}

resource "aws_vpc" "cluster" {
  cidr_block = var.vpc_cidr
  # EFS's DNS name resolves only with both on.
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = {
    Name = "${var.cluster_name}-vpc"
  }
}

# The default security group of the VPC is left with no rules at all, so that nothing launched in
# the VPC by mistake without a group is reachable.
resource "aws_default_security_group" "default" {
  vpc_id = aws_vpc.cluster.id

  tags = {
    Name = "${var.cluster_name}-default-deny"
  }
}

resource "aws_subnet" "cluster" {
  vpc_id            = aws_vpc.cluster.id
  cidr_block        = var.subnet_cidr
  availability_zone = var.availability_zone
  # Public addresses are given per instance, only where needed (instances.tf).
  map_public_ip_on_launch = false

  tags = {
    Name = "${var.cluster_name}-subnet"
  }

  lifecycle {
    precondition {
      condition     = contains(data.aws_availability_zones.chosen.names, var.availability_zone)
      error_message = "availability_zone ${var.availability_zone} is not an available zone of region ${var.region} (list them with: aws ec2 describe-availability-zones --region ${var.region} --query 'AvailabilityZones[?State==`available`].ZoneName')."
    }

    precondition {
      condition = (
        tonumber(split("/", var.subnet_cidr)[1]) >= tonumber(split("/", var.vpc_cidr)[1]) &&
        cidrhost("${cidrhost(var.subnet_cidr, 0)}/${split("/", var.vpc_cidr)[1]}", 0) == cidrhost(var.vpc_cidr, 0)
      )
      error_message = "subnet_cidr ${var.subnet_cidr} must lie inside vpc_cidr ${var.vpc_cidr}."
    }
  }
}

resource "aws_internet_gateway" "cluster" {
  vpc_id = aws_vpc.cluster.id

  tags = {
    Name = "${var.cluster_name}-igw"
  }
}

resource "aws_route_table" "cluster" {
  vpc_id = aws_vpc.cluster.id

  tags = {
    Name = "${var.cluster_name}-routes"
  }
}

# The default route: what security groups let out (HTTPS only, security.tf) leaves through the
# internet gateway, and replies reach the masters' public addresses.
resource "aws_route" "internet" {
  route_table_id         = aws_route_table.cluster.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.cluster.id
}

resource "aws_route_table_association" "cluster" {
  subnet_id      = aws_subnet.cluster.id
  route_table_id = aws_route_table.cluster.id
}

# VPC flow logs: every accepted and rejected flow, kept var.log_retention_days, encrypted with the
# cluster's KMS key (kms.tf allows CloudWatch Logs to use it for this log group only).
resource "aws_cloudwatch_log_group" "flow_logs" {
  name              = local.flow_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.cluster.arn
}

resource "aws_flow_log" "cluster" {
  vpc_id                   = aws_vpc.cluster.id
  traffic_type             = "ALL"
  log_destination_type     = "cloud-watch-logs"
  log_destination          = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn             = aws_iam_role.flow_logs.arn
  max_aggregation_interval = 600

  tags = {
    Name = "${var.cluster_name}-flow-logs"
  }
}
