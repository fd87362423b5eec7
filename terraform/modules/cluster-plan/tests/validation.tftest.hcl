# Bad input is refused by the variable it is wrong in, and by that one only: expect_failures
# fails a run if any other check fails too.

variables {
  cluster_name = "prod"
  agent_node_uuids = [
    "5b1c2f0e-3d4a-4c8e-9f10-2a3b4c5d6e7f",
    "9e4d7a21-8b6c-4f0d-a1e2-3c4d5e6f7a8b",
    "c2a7e9d4-1f3b-4e5c-8d6a-7b8c9d0e1f2a",
  ]
  release_url          = "https://releases.example.com/flocker-rs/0.1.0/flocker-rs-0.1.0-linux-x86_64.tar.gz"
  release_sha256       = "3f1c8e2a9b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e"
  shared_storage       = { source = "fs-0123456789abcdef0.efs.eu-west-1.amazonaws.com:/" }
  secret_fetch_command = "aws ssm get-parameter --with-decryption --query Parameter.Value --output text --name"
  certificates = {
    cluster_crt = file("tests/fixtures/cluster.crt")
    control_crt = file("tests/fixtures/control.crt")
    plugin_crt  = file("tests/fixtures/plugin.crt")
    node_crts = [
      file("tests/fixtures/node-1.crt"),
      file("tests/fixtures/node-2.crt"),
      file("tests/fixtures/node-3.crt"),
    ]
  }
}

# The defaults above are valid: every run below changes one thing.
run "valid_baseline" {
  command = plan

  assert {
    condition     = length(output.nodes) == 6
    error_message = "The baseline must be valid."
  }
}

run "cluster_name_uppercase" {
  command = plan
  variables {
    cluster_name = "Prod"
  }
  expect_failures = [var.cluster_name]
}

run "cluster_name_trailing_dash" {
  command = plan
  variables {
    cluster_name = "prod-"
  }
  expect_failures = [var.cluster_name]
}

run "master_count_two" {
  command = plan
  variables {
    master_count = 2
  }
  expect_failures = [var.master_count]
}

run "agent_count_zero" {
  command = plan
  variables {
    agent_count      = 0
    agent_node_uuids = []
    certificates = {
      cluster_crt = file("tests/fixtures/cluster.crt")
      control_crt = file("tests/fixtures/control.crt")
      plugin_crt  = file("tests/fixtures/plugin.crt")
      node_crts   = []
    }
  }
  expect_failures = [var.agent_count]
}

run "agent_count_fifty_one" {
  command = plan
  variables {
    agent_count      = 51
    subnet_cidr      = "10.20.0.0/24"
    agent_node_uuids = [for i in range(51) : format("00000000-0000-4000-8000-%012d", i + 1)]
    certificates = {
      cluster_crt = file("tests/fixtures/cluster.crt")
      control_crt = file("tests/fixtures/control.crt")
      plugin_crt  = file("tests/fixtures/plugin.crt")
      node_crts   = [for i in range(51) : file("tests/fixtures/node-1.crt")]
    }
  }
  expect_failures = [var.agent_count]
}

run "agent_node_uuids_too_few" {
  command = plan
  variables {
    agent_node_uuids = ["5b1c2f0e-3d4a-4c8e-9f10-2a3b4c5d6e7f", "9e4d7a21-8b6c-4f0d-a1e2-3c4d5e6f7a8b"]
  }
  expect_failures = [var.agent_node_uuids]
}

run "agent_node_uuid_not_a_uuid" {
  command = plan
  variables {
    agent_node_uuids = ["5b1c2f0e-3d4a-4c8e-9f10-2a3b4c5d6e7f", "node-9e4d7a21", "c2a7e9d4-1f3b-4e5c-8d6a-7b8c9d0e1f2a"]
  }
  expect_failures = [var.agent_node_uuids]
}

run "agent_node_uuid_uppercase" {
  command = plan
  variables {
    agent_node_uuids = ["5B1C2F0E-3D4A-4C8E-9F10-2A3B4C5D6E7F", "9e4d7a21-8b6c-4f0d-a1e2-3c4d5e6f7a8b", "c2a7e9d4-1f3b-4e5c-8d6a-7b8c9d0e1f2a"]
  }
  expect_failures = [var.agent_node_uuids]
}

run "agent_node_uuids_repeated" {
  command = plan
  variables {
    agent_node_uuids = ["5b1c2f0e-3d4a-4c8e-9f10-2a3b4c5d6e7f", "5b1c2f0e-3d4a-4c8e-9f10-2a3b4c5d6e7f", "c2a7e9d4-1f3b-4e5c-8d6a-7b8c9d0e1f2a"]
  }
  expect_failures = [var.agent_node_uuids]
}

run "mesos_version_unsupported" {
  command = plan
  variables {
    mesos_version = "1.8.0"
  }
  expect_failures = [var.mesos_version]
}

run "backend_aws" {
  command = plan
  variables {
    backend = "aws"
  }
  expect_failures = [var.backend]
}

run "btrfs_valid" {
  # The btrfs baseline: no shared storage, the default pool device.
  command = plan
  variables {
    backend        = "btrfs"
    shared_storage = null
  }

  assert {
    condition     = !output.uses_shared_storage && output.dataset_storage.transfer_port == 4525
    error_message = "btrfs with no shared storage must be valid."
  }
}

run "btrfs_with_shared_storage" {
  # Each agent's volumes are on its own disk: shared storage would be unused, and is refused.
  command = plan
  variables {
    backend = "btrfs"
  }
  expect_failures = [var.shared_storage]
}

run "loopback_without_shared_storage" {
  command = plan
  variables {
    shared_storage = null
  }
  expect_failures = [var.shared_storage]
}

run "btrfs_pool_device_relative" {
  command = plan
  variables {
    backend           = "btrfs"
    shared_storage    = null
    btrfs_pool_device = "nvme1n1"
  }
  expect_failures = [var.btrfs_pool_device]
}

run "btrfs_pool_device_outside_dev" {
  command = plan
  variables {
    backend           = "btrfs"
    shared_storage    = null
    btrfs_pool_device = "/var/lib/flocker/pool.img"
  }
  expect_failures = [var.btrfs_pool_device]
}

run "btrfs_pool_device_dotdot" {
  command = plan
  variables {
    backend           = "btrfs"
    shared_storage    = null
    btrfs_pool_device = "/dev/../etc/passwd"
  }
  expect_failures = [var.btrfs_pool_device]
}

run "btrfs_pool_device_quote" {
  # Anything systemd-escape would escape beyond '-' and '/', or a shell would read, is refused.
  command = plan
  variables {
    backend           = "btrfs"
    shared_storage    = null
    btrfs_pool_device = "/dev/sdb'; rm -rf /'"
  }
  expect_failures = [var.btrfs_pool_device]
}

run "btrfs_pool_devices_too_few" {
  command = plan
  variables {
    backend            = "btrfs"
    shared_storage     = null
    btrfs_pool_devices = ["/dev/nvme1n1", "/dev/nvme1n1"]
  }
  expect_failures = [var.btrfs_pool_devices]
}

run "btrfs_pool_devices_bad_path" {
  command = plan
  variables {
    backend            = "btrfs"
    shared_storage     = null
    btrfs_pool_devices = ["/dev/nvme1n1", "/dev/disk/by-id/nvme-Amazon Elastic Block Store_vol0123", "/dev/nvme1n1"]
  }
  expect_failures = [var.btrfs_pool_devices]
}

run "btrfs_pool_devices_with_loopback" {
  command = plan
  variables {
    btrfs_pool_devices = ["/dev/nvme1n1", "/dev/nvme1n1", "/dev/nvme1n1"]
  }
  expect_failures = [var.btrfs_pool_devices]
}

run "port_zero" {
  command = plan
  variables {
    ports = { control_rest = 0 }
  }
  expect_failures = [var.ports]
}

run "port_too_large" {
  command = plan
  variables {
    ports = { marathon = 65536 }
  }
  expect_failures = [var.ports]
}

run "ports_duplicated" {
  command = plan
  variables {
    ports = { marathon = 5050 }
  }
  expect_failures = [var.ports]
}

run "transfer_port_too_large" {
  command = plan
  variables {
    ports = { agent_transfer = 70000 }
  }
  expect_failures = [var.ports]
}

run "transfer_port_is_the_agent_api" {
  command = plan
  variables {
    ports = { agent_transfer = 4524 }
  }
  expect_failures = [var.ports]
}

run "port_is_zookeeper_peer_port" {
  command = plan
  variables {
    ports = { mesos_agent = 2888 }
  }
  expect_failures = [var.ports]
}

run "subnet_too_small" {
  command = plan
  variables {
    subnet_cidr = "10.20.1.0/29"
  }
  expect_failures = [var.subnet_cidr]
}

run "subnet_too_small_for_the_agents" {
  # A /26 holds 33 agents (hosts 30..62), not 34.
  command = plan
  variables {
    subnet_cidr      = "10.20.1.0/26"
    agent_count      = 34
    agent_node_uuids = [for i in range(34) : format("00000000-0000-4000-8000-%012d", i + 1)]
    certificates = {
      cluster_crt = file("tests/fixtures/cluster.crt")
      control_crt = file("tests/fixtures/control.crt")
      plugin_crt  = file("tests/fixtures/plugin.crt")
      node_crts   = [for i in range(34) : file("tests/fixtures/node-1.crt")]
    }
  }
  expect_failures = [var.subnet_cidr]
}

run "subnet_not_a_cidr" {
  command = plan
  variables {
    subnet_cidr = "10.20.1.0"
  }
  expect_failures = [var.subnet_cidr]
}

run "subnet_not_its_network_address" {
  command = plan
  variables {
    subnet_cidr = "10.20.1.7/24"
  }
  expect_failures = [var.subnet_cidr]
}

run "release_url_http" {
  command = plan
  variables {
    release_url = "http://releases.example.com/flocker-rs-0.1.0-linux-x86_64.tar.gz"
  }
  expect_failures = [var.release_url]
}

run "release_url_quote" {
  command = plan
  variables {
    release_url = "https://releases.example.com/x.tar.gz'; rm -rf /'"
  }
  expect_failures = [var.release_url]
}

run "release_sha256_bad" {
  command = plan
  variables {
    release_sha256 = "3F1C8E2A9B7D6C5E4F3A2B1C0D9E8F7A6B5C4D3E2F1A0B9C8D7E6F5A4B3C2D1E"
  }
  expect_failures = [var.release_sha256]
}

run "release_sha256_short" {
  command = plan
  variables {
    release_sha256 = "3f1c8e2a"
  }
  expect_failures = [var.release_sha256]
}

run "shared_root_path_relative" {
  command = plan
  variables {
    shared_root_path = "mnt/flocker-shared"
  }
  expect_failures = [var.shared_root_path]
}

run "shared_root_path_dotdot" {
  command = plan
  variables {
    shared_root_path = "/mnt/../etc"
  }
  expect_failures = [var.shared_root_path]
}

run "shared_storage_source_with_space" {
  command = plan
  variables {
    shared_storage = { source = "fs-1.efs.amazonaws.com:/ /etc" }
  }
  expect_failures = [var.shared_storage]
}

run "secret_prefix_relative" {
  command = plan
  variables {
    secret_prefix = "flocker/prod"
  }
  expect_failures = [var.secret_prefix]
}

run "secret_fetch_command_empty" {
  command = plan
  variables {
    secret_fetch_command = "  "
  }
  expect_failures = [var.secret_fetch_command]
}

run "certificate_with_private_key" {
  command = plan
  variables {
    certificates = {
      cluster_crt = "${file("tests/fixtures/cluster.crt")}-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"
      control_crt = file("tests/fixtures/control.crt")
      plugin_crt  = file("tests/fixtures/plugin.crt")
      node_crts   = [file("tests/fixtures/node-1.crt"), file("tests/fixtures/node-2.crt"), file("tests/fixtures/node-3.crt")]
    }
  }
  expect_failures = [var.certificates]
}

run "node_crts_too_few" {
  command = plan
  variables {
    certificates = {
      cluster_crt = file("tests/fixtures/cluster.crt")
      control_crt = file("tests/fixtures/control.crt")
      plugin_crt  = file("tests/fixtures/plugin.crt")
      node_crts   = [file("tests/fixtures/node-1.crt")]
    }
  }
  expect_failures = [var.certificates]
}

run "admin_user_bad" {
  command = plan
  variables {
    admin_user = "Admin User"
  }
  expect_failures = [var.admin_user]
}

run "control_service_public_hosts_bad" {
  command = plan
  variables {
    control_service_public_hosts = ["203.0.113.10", "https://flocker.example.com"]
  }
  expect_failures = [var.control_service_public_hosts]
}

run "control_service_public_hosts_repeated" {
  command = plan
  variables {
    control_service_public_hosts = ["203.0.113.10", "203.0.113.10"]
  }
  expect_failures = [var.control_service_public_hosts]
}

run "control_service_public_hosts_comma" {
  # One entry per host: a comma would split it into two in --control-service.
  command = plan
  variables {
    control_service_public_hosts = ["203.0.113.10,203.0.113.11"]
  }
  expect_failures = [var.control_service_public_hosts]
}

run "control_service_extra_sans_bad" {
  command = plan
  variables {
    control_service_extra_sans = ["*.example.com"]
  }
  expect_failures = [var.control_service_extra_sans]
}

run "control_service_store_unknown" {
  command = plan
  variables {
    control_service_store = "etcd"
  }
  expect_failures = [var.control_service_store]
}

run "control_service_journal_with_three_masters" {
  # Each master would keep a configuration of its own.
  command = plan
  variables {
    control_service_store = "journal"
  }
  expect_failures = [var.control_service_store]
}
