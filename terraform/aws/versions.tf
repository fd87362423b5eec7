terraform {
  # 1.6 would do for this module; ../modules/cluster-plan needs 1.9 (validations that read other
  # variables), and the whole configuration needs what its strictest module needs.
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    http = {
      source = "hashicorp/http"
      # 3.5 is the first with client certificates (client_cert_pem, client_key_pem), which the
      # readiness check needs: the control service admits only clients of the cluster's CA.
      version = "~> 3.5"
    }
  }

  # The state of this module holds the cluster's private keys in clear text (the CA key, the
  # control service's, every node's, the isolator's and the operator's): see README.md, "Secrets
  # and the Terraform state". Keep it in an encrypted remote backend that only the cluster's
  # administrators can read, for example:
  #
  # backend "s3" {
  #   bucket         = "example-terraform-state"          # versioned, SSE-KMS, public access blocked
  #   key            = "mesos-flocker/prod/terraform.tfstate"
  #   region         = "eu-west-1"
  #   encrypt        = true
  #   kms_key_id     = "arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000000"
  #   dynamodb_table = "example-terraform-locks"          # or use_lockfile = true (Terraform >= 1.10)
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project   = "mesos-flocker"
      Cluster   = var.cluster_name
      ManagedBy = "terraform"
    }
  }
}
