# The plan of a Mesos cluster with Flocker volumes: who is where, what each node's files say, and
# the cloud-init user data that makes each node so. Nothing here talks to a provider.

locals {
  # The release tarball's layout, shared with scripts/release so the two never disagree.
  layout        = jsondecode(file("${path.module}/../../../release/layout.json"))
  install_root  = local.layout.install_root
  release_path  = { for key, f in local.layout.files : key => "${local.install_root}/${f.path}" }
  release_files = sort([for f in values(local.layout.files) : f.path])

  # Where things are on the nodes.
  certs_dir          = "/etc/flocker"
  modules_json_path  = "/etc/mesos/flocker-modules.json"
  agent_yml_path     = "${local.certs_dir}/agent.yml"
  dataset_root_path  = "${var.shared_root_path}/${var.backend}"
  btrfs_pool_path    = "/var/lib/flocker/btrfs"
  mount_root         = "/flocker"
  zookeeper_conf_dir = "/etc/zookeeper/conf"
  zookeeper_data_dir = "/var/lib/zookeeper"
  binaries = {
    mesos_master = "/usr/sbin/mesos-master"
    mesos_agent  = "/usr/sbin/mesos-agent"
    marathon     = "/opt/marathon/bin/marathon"
    java         = "/usr/bin/java"
  }
  environment_files = {
    flocker_control    = "/etc/default/flocker-control"
    flocker_node_ready = "/etc/default/flocker-node-ready"
    mesos_master       = "/etc/default/mesos-master"
    mesos_agent        = "/etc/default/mesos-agent"
    marathon           = "/etc/default/marathon"
  }

  # Unit names: ours, and the release's (named by their files in the tarball).
  unit_names = {
    zookeeper     = "zookeeper.service"
    mesos_master  = "mesos-master.service"
    marathon      = "marathon.service"
    mesos_agent   = "mesos-agent.service"
    control       = basename(local.layout.files["control-unit"].path)
    dataset_agent = basename(local.layout.files["agent-unit"].path)
    node_ready    = basename(local.layout.files["ready-unit"].path)
  }

  secret_prefix        = coalesce(var.secret_prefix, "/flocker/${var.cluster_name}")
  isolator_module_name = "com_clusterhq_flocker_FlockerIsolator"

  # Addresses: masters at host 10+i, agents at host 30+i.
  masters = [for i in range(var.master_count) : {
    name       = "master-${i + 1}"
    index      = i + 1
    private_ip = cidrhost(var.subnet_cidr, 10 + i)
  }]
  agents = [for i in range(var.agent_count) : {
    name       = "agent-${i + 1}"
    index      = i + 1
    private_ip = cidrhost(var.subnet_cidr, 30 + i)
    # try(): a bad agent_node_uuids is reported by its validation, not as an index error here.
    node_uuid = try(var.agent_node_uuids[i], null)
    node_crt  = try(var.certificates.node_crts[i], "")
  }]

  # ZooKeeper, Mesos and Marathon.
  zookeeper_hosts    = join(",", [for m in local.masters : "${m.private_ip}:${var.ports.zookeeper}"])
  zookeeper_url      = "zk://${local.zookeeper_hosts}/mesos"
  marathon_zk_url    = "zk://${local.zookeeper_hosts}/marathon"
  quorum             = floor(var.master_count / 2) + 1
  marathon_urls      = [for m in local.masters : "http://${m.private_ip}:${var.ports.marathon}"]
  zookeeper_myid     = { for m in local.masters : m.name => m.index }
  zookeeper_ensemble = [for m in local.masters : { id = m.index, ip = m.private_ip }]

  mesos_master_flags = { for m in local.masters : m.name => [
    "--zk=${local.zookeeper_url}",
    "--quorum=${local.quorum}",
    "--work_dir=/var/lib/mesos/master",
    "--cluster=${var.cluster_name}",
    "--port=${var.ports.mesos_master}",
    "--ip=${m.private_ip}",
    "--hostname=${m.private_ip}",
  ] }

  marathon_flags = { for m in local.masters : m.name => [
    "--master", local.zookeeper_url,
    "--zk", local.marathon_zk_url,
    "--http_port", tostring(var.ports.marathon),
    "--hostname", m.private_ip,
  ] }

  # The flags every agent shares; each adds its own --ip and --hostname.
  mesos_agent_flags = [
    "--master=${local.zookeeper_url}",
    "--work_dir=/var/lib/mesos",
    "--modules=file://${local.modules_json_path}",
    "--isolation=filesystem/linux,docker/runtime,${local.isolator_module_name}",
    "--launcher=linux",
    "--image_providers=docker",
    "--containerizers=mesos",
    "--port=${var.ports.mesos_agent}",
  ]
  mesos_agent_node_flags = { for a in local.agents : a.name => concat(local.mesos_agent_flags, [
    "--ip=${a.private_ip}",
    "--hostname=${a.private_ip}",
  ]) }

  # The control service: flocker-control on every master, every instance serving the one
  # configuration kept under /flocker in the masters' ZooKeeper ensemble (or, with a single
  # master and control_service_store = "journal", in that master's local journal). Clients are
  # given every master and fail over between them; the one certificate all instances serve with
  # is valid for every master's address.
  control_hosts        = [for m in local.masters : m.private_ip]
  control_public_hosts = [for h in coalescelist(var.control_service_public_hosts, local.control_hosts) : h]
  control_store_url    = var.control_service_store == "zookeeper" ? "zk://${local.zookeeper_hosts}/flocker" : null
  control_data_path    = var.control_service_store == "journal" ? "/var/lib/flocker" : null
  # With the ZooKeeper store, every instance authenticates to ZooKeeper with the same
  # user:password (digest scheme) from this file, and makes every znode of the store
  # creator-only: Mesos tasks reach port 2181 but can neither read nor change the configuration.
  # The file is a secret like the keys: fetched at boot into /etc/flocker, mode 0600, on masters
  # only (agents, where tasks run, never get it).
  control_store_credentials = local.control_store_url != null ? "${local.certs_dir}/zookeeper.secret" : null
  control_flags = concat(
    ["--port", tostring(var.ports.control_rest), "--agent-port", tostring(var.ports.control_agent)],
    local.control_store_url != null ? [
      "--store", local.control_store_url,
      "--store-credentials", local.control_store_credentials,
    ] : ["--data-path", local.control_data_path],
  )
  # The certificate's names: "control-service" (what the project's clients verify), then every
  # master's private address, the public hosts and the extra names (what other clients dial).
  control_names      = distinct(concat(local.control_public_hosts, var.control_service_extra_sans))
  control_name_is_ip = { for n in local.control_names : n => can(regex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}$", n)) }
  control_certificate_sans = {
    dns_names    = [for n in distinct(concat(["control-service"], [for n in local.control_names : n if !local.control_name_is_ip[n]])) : n]
    ip_addresses = [for n in distinct(concat(local.control_hosts, [for n in local.control_names : n if local.control_name_is_ip[n]])) : n]
  }

  # Where the agents keep their volumes. "shared": loopback and directory, on the storage every
  # agent mounts at shared_root_path, where a move is a rename. "pool": btrfs, each agent's own
  # pool on its own block device, where a move is a push of the bytes from agent to agent over
  # mutual TLS, on ports.agent_transfer; no shared storage at all.
  storage_kind        = var.backend == "btrfs" ? "pool" : "shared"
  uses_shared_storage = local.storage_kind == "shared"
  pool_devices = { for a in local.agents : a.name => (
    length(var.btrfs_pool_devices) > 0 ? try(var.btrfs_pool_devices[a.index - 1], var.btrfs_pool_device) : var.btrfs_pool_device
  ) }
  # The device's systemd unit (systemd-escape --path --suffix=device): the validation of the
  # device paths leaves '-' (escaped \x2d) and '/' (which becomes '-') as the only characters
  # to escape.
  pool_device_units = { for name, device in local.pool_devices : name => "${replace(replace(trimprefix(device, "/"), "-", "\\x2d"), "/", "-")}.device" }
  # How long systemd waits for the pool's device to appear (JobRunningTimeoutSec of its device
  # unit): on AWS the volume is attached only once the instance runs, a few minutes at most
  # after the launch, even when the apply makes 50 agents at once.
  pool_device_timeout = "15min"

  # The dataset agent's configuration (Flocker's agent.yml) and the isolator's module manifest.
  # The two kinds of dataset section have different keys (the agent refuses the other kind's),
  # hence the object indexed by the kind.
  agent_yml = { for a in local.agents : a.name => yamlencode({
    version = 1
    "control-service" = {
      hostname = local.control_hosts
      port     = var.ports.control_agent
    }
    dataset = {
      shared = {
        backend             = var.backend
        root_path           = local.dataset_root_path
        compute_instance_id = a.name
      }
      pool = {
        backend       = var.backend
        pool          = local.btrfs_pool_path
        pool_device   = local.pool_devices[a.name]
        transfer_port = var.ports.agent_transfer
        mount_root    = local.mount_root
      }
    }[local.storage_kind]
  }) }

  isolator_parameters = concat([
    { key = "control_service_host", value = join(",", local.control_hosts) },
    { key = "control_service_port", value = tostring(var.ports.control_rest) },
    { key = "certificates_directory", value = local.certs_dir },
    { key = "state_dir", value = "/var/lib/mesos/flocker" },
    { key = "host_path_roots", value = join(",", var.host_path_roots) },
    ], length(var.volume_prefixes_by_role) == 0 ? [] : [
    {
      key = "volume_prefixes_by_role"
      value = join(";", [for role, prefixes in var.volume_prefixes_by_role :
      "${role}=${join(",", prefixes)}"])
    },
  ])

  modules_json = jsonencode({
    libraries = [{
      file = local.release_path["isolator-module"]
      modules = [{
        name       = local.isolator_module_name
        parameters = local.isolator_parameters
      }]
    }]
  })

  # systemd units the plan renders (the flocker-* units come from the release).
  units = {
    (local.unit_names.zookeeper) = templatefile("${path.module}/templates/zookeeper.service.tftpl", {
      java       = local.binaries.java
      config_dir = local.zookeeper_conf_dir
      data_dir   = local.zookeeper_data_dir
      log_dir    = "/var/log/zookeeper"
    })
    (local.unit_names.mesos_master) = templatefile("${path.module}/templates/mesos-master.service.tftpl", {
      binary           = local.binaries.mesos_master
      environment_file = local.environment_files.mesos_master
      zookeeper_unit   = local.unit_names.zookeeper
    })
    (local.unit_names.marathon) = templatefile("${path.module}/templates/marathon.service.tftpl", {
      binary            = local.binaries.marathon
      environment_file  = local.environment_files.marathon
      zookeeper_unit    = local.unit_names.zookeeper
      mesos_master_unit = local.unit_names.mesos_master
    })
    (local.unit_names.mesos_agent) = templatefile("${path.module}/templates/mesos-agent.service.tftpl", {
      binary             = local.binaries.mesos_agent
      environment_file   = local.environment_files.mesos_agent
      isolator_module    = local.isolator_module_name
      ready_unit         = local.unit_names.node_ready
      dataset_agent_unit = local.unit_names.dataset_agent
    })
  }

  # A drop-in for the release's flocker-control unit on the masters: its ExecStart without the
  # built-in --data-path, so that the store is whichever FLOCKER_CONTROL_ARGS names.
  control_dropin = templatefile("${path.module}/templates/flocker-control-store.conf.tftpl", {
    control_unit     = local.unit_names.control
    zookeeper_unit   = local.unit_names.zookeeper
    environment_file = local.environment_files.flocker_control
    exec_start       = "${local.release_path["flocker-control"]} --certificates-directory ${local.certs_dir} $FLOCKER_CONTROL_ARGS"
  })

  # The files each role's nodes get through write_files (the user data ends each in one newline).
  cluster_crt_file = {
    path        = "${local.certs_dir}/cluster.crt"
    permissions = "0644"
    content     = trimspace(var.certificates.cluster_crt)
    append      = false
  }

  master_files = { for m in local.masters : m.name => [
    local.cluster_crt_file,
    {
      path        = "${local.certs_dir}/control-service.crt"
      permissions = "0644"
      append      = false
      content     = trimspace(var.certificates.control_crt)
    },
    {
      path        = "${local.zookeeper_conf_dir}/zoo.cfg"
      permissions = "0644"
      append      = false
      content = templatefile("${path.module}/templates/zoo.cfg.tftpl", {
        cluster_name = var.cluster_name
        data_dir     = local.zookeeper_data_dir
        client_port  = var.ports.zookeeper
        servers      = local.zookeeper_ensemble
      })
    },
    {
      path        = local.environment_files.mesos_master
      permissions = "0644"
      append      = false
      content     = "# ${m.name}'s mesos-master flags (${local.unit_names.mesos_master} reads them).\nMESOS_MASTER_ARGS=\"${join(" ", local.mesos_master_flags[m.name])}\"\n"
    },
    {
      path        = local.environment_files.marathon
      permissions = "0644"
      append      = false
      content     = "# ${m.name}'s Marathon flags (${local.unit_names.marathon} reads them).\nMARATHON_ARGS=\"${join(" ", local.marathon_flags[m.name])}\"\n"
    },
    {
      path        = local.environment_files.flocker_control
      permissions = "0644"
      append      = false
      content     = "# flocker-control's ports and store (${local.unit_names.control} reads them).\nFLOCKER_CONTROL_ARGS=\"${join(" ", local.control_flags)}\"\n"
    },
    {
      path        = "/etc/systemd/system/${local.unit_names.zookeeper}"
      permissions = "0644"
      append      = false
      content     = local.units[local.unit_names.zookeeper]
    },
    {
      path        = "/etc/systemd/system/${local.unit_names.mesos_master}"
      permissions = "0644"
      append      = false
      content     = local.units[local.unit_names.mesos_master]
    },
    {
      path        = "/etc/systemd/system/${local.unit_names.marathon}"
      permissions = "0644"
      append      = false
      content     = local.units[local.unit_names.marathon]
    },
    {
      path        = "/etc/systemd/system/${local.unit_names.control}.d/store.conf"
      permissions = "0644"
      append      = false
      content     = local.control_dropin
    },
  ] }

  agent_files = { for a in local.agents : a.name => [
    local.cluster_crt_file,
    {
      path        = "${local.certs_dir}/node.crt"
      permissions = "0644"
      append      = false
      content     = trimspace(a.node_crt)
    },
    {
      path        = "${local.certs_dir}/plugin.crt"
      permissions = "0644"
      append      = false
      content     = trimspace(var.certificates.plugin_crt)
    },
    {
      path        = local.agent_yml_path
      permissions = "0644"
      append      = false
      content     = local.agent_yml[a.name]
    },
    {
      path        = local.modules_json_path
      permissions = "0644"
      append      = false
      content     = local.modules_json
    },
    {
      path        = local.environment_files.flocker_node_ready
      permissions = "0644"
      append      = false
      content     = "# The control service's instances (every master) and REST port, for ${local.unit_names.node_ready}.\nFLOCKER_CONTROL_SERVICE=${join(",", local.control_hosts)}\nFLOCKER_CONTROL_PORT=${var.ports.control_rest}\n"
    },
    {
      path        = local.environment_files.mesos_agent
      permissions = "0644"
      append      = false
      content     = "# ${a.name}'s mesos-agent flags (${local.unit_names.mesos_agent} reads them).\nMESOS_AGENT_ARGS=\"${join(" ", local.mesos_agent_node_flags[a.name])}\"\n"
    },
    {
      path        = "/etc/systemd/system/${local.unit_names.mesos_agent}"
      permissions = "0644"
      append      = false
      content     = local.units[local.unit_names.mesos_agent]
    },
  ] }

  # What each agent's storage adds to its files: the shared storage's /etc/fstab line and the
  # dataset agent's wait for its mount; or the dataset agent's wait for the pool's device, and
  # how long systemd waits for that device to appear.
  agent_storage_files = { for a in local.agents : a.name => local.uses_shared_storage ? [
    {
      path        = "/etc/systemd/system/${local.unit_names.dataset_agent}.d/shared-storage.conf"
      permissions = "0644"
      append      = false
      content     = "[Unit]\nRequiresMountsFor=${var.shared_root_path}\n"
    },
    {
      path        = "/etc/fstab"
      permissions = "0644"
      append      = true
      content     = "${try(var.shared_storage.source, "")} ${var.shared_root_path} ${try(var.shared_storage.fstype, "")} ${try(var.shared_storage.options, "")} 0 0\n"
    },
    ] : [
    {
      path        = "/etc/systemd/system/${local.unit_names.dataset_agent}.d/pool-device.conf"
      permissions = "0644"
      append      = false
      content     = "[Unit]\n# The btrfs pool's device (${local.pool_devices[a.name]}): start only once it is there.\nRequires=${local.pool_device_units[a.name]}\nAfter=${local.pool_device_units[a.name]}\n"
    },
    {
      path        = "/etc/systemd/system/${local.pool_device_units[a.name]}.d/flocker-pool.conf"
      permissions = "0644"
      append      = false
      content     = "[Unit]\n# How long to wait for the btrfs pool's device to appear (a cloud volume may be attached after the boot).\nJobRunningTimeoutSec=${local.pool_device_timeout}\n"
    },
  ] }

  # Every node: its role, address, files, secrets (file on the node -> secret name) and units.
  node_list = concat(
    [for m in local.masters : {
      name       = m.name
      role       = "master"
      index      = m.index
      private_ip = m.private_ip
      node_uuid  = null
      files      = local.master_files[m.name]
      # The control service's key and, with the ZooKeeper store, its credentials: the same
      # values on every master, each master reading them from secrets of its own.
      secrets = merge(
        { "${local.certs_dir}/control-service.key" = "${local.secret_prefix}/${m.name}/control-service.key" },
        local.control_store_credentials == null ? {} : {
          (local.control_store_credentials) = "${local.secret_prefix}/${m.name}/${basename(local.control_store_credentials)}"
        },
      )
      release_checks = [for k in ["flocker-control", "flockerctl", "control-unit"] : local.release_path[k]]
      release_units  = [local.release_path["control-unit"]]
      start_units    = [local.unit_names.zookeeper, local.unit_names.control, local.unit_names.mesos_master, local.unit_names.marathon]
    }],
    [for a in local.agents : {
      name       = a.name
      role       = "agent"
      index      = a.index
      private_ip = a.private_ip
      node_uuid  = a.node_uuid
      files      = concat(local.agent_files[a.name], local.agent_storage_files[a.name])
      secrets = {
        "${local.certs_dir}/node.key"   = "${local.secret_prefix}/${a.name}/node.key"
        "${local.certs_dir}/plugin.key" = "${local.secret_prefix}/${a.name}/plugin.key"
      }
      release_checks = [for k in ["flocker-dataset-agent", "flocker-node-ready", "flockerctl", "isolator-module", "agent-unit", "ready-unit"] : local.release_path[k]]
      release_units  = [local.release_path["agent-unit"], local.release_path["ready-unit"]]
      start_units    = [local.unit_names.dataset_agent, local.unit_names.node_ready, local.unit_names.mesos_agent]
    }],
  )

  user_data = { for n in local.node_list : n.name => templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
    cluster_name = var.cluster_name
    name         = n.name
    role         = n.role
    index        = n.index
    # chomp + the literal block's own newline: each file ends in exactly one newline.
    files                = [for f in n.files : merge(f, { content = chomp(f.content) })]
    install_root         = local.install_root
    release_url          = var.release_url
    release_sha256       = var.release_sha256
    release_checks       = n.release_checks
    release_units        = n.release_units
    certs_dir            = local.certs_dir
    secrets              = [for path in sort(keys(n.secrets)) : { path = path, name = n.secrets[path] }]
    secret_fetch_command = var.secret_fetch_command
    mesos_agent_binary   = local.binaries.mesos_agent
    mesos_version        = var.mesos_version
    shared_root_path     = var.shared_root_path
    dataset_root_path    = local.dataset_root_path
    uses_shared_storage  = local.uses_shared_storage
    pool_device          = lookup(local.pool_devices, n.name, null)
    pool_device_unit     = lookup(local.pool_device_units, n.name, null)
    start_units          = n.start_units
    control_data_path    = local.control_data_path
  }) }

  # AWS refuses user data over 16 KiB: count bytes (base64 keeps them exact), not characters.
  user_data_bytes = { for name, text in local.user_data : name => (
    length(base64encode(text)) / 4 * 3 - (endswith(base64encode(text), "==") ? 2 : endswith(base64encode(text), "=") ? 1 : 0)
  ) }

  nodes = { for n in local.node_list : n.name => {
    role       = n.role
    index      = n.index
    private_ip = n.private_ip
    user_data  = local.user_data[n.name]
    secrets    = n.secrets
    node_uuid  = n.node_uuid
  } }

  example_marathon_app = jsonencode({
    id        = "/webapp"
    cmd       = "python3 -m http.server $PORT0 --directory /data"
    cpus      = 0.5
    mem       = 256
    instances = 1
    container = {
      type   = "MESOS"
      docker = { image = "python:3-slim" }
    }
    env = {
      FLOCKER_ID                    = "webapp-data"
      FLOCKER_CONTAINER_VOLUME_PATH = "/data"
    }
    # The volume is used by one task at a time: stop the old task before starting the new one.
    upgradeStrategy = {
      minimumHealthCapacity = 0
      maximumOverCapacity   = 0
    }
  })
}
