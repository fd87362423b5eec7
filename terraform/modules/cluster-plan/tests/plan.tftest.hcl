# The plan of realistic clusters. `command = apply` needs no provider here: the module only
# computes, so these runs work offline. Certificates are real RSA-4096 ones (Flocker 1.x's size,
# the largest a cluster has), public only: tests/fixtures holds no key.

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

run "three_masters_three_agents" {
  command = apply

  # Nodes, roles and addresses.
  assert {
    condition     = keys(output.nodes) == ["agent-1", "agent-2", "agent-3", "master-1", "master-2", "master-3"]
    error_message = "Expected master-1..3 and agent-1..3 (no control node: flocker-control runs on the masters), got ${jsonencode(keys(output.nodes))}."
  }
  assert {
    condition = [for n in ["master-1", "master-2", "master-3", "agent-1", "agent-2", "agent-3"] : output.nodes[n].role] == [
      "master", "master", "master", "agent", "agent", "agent",
    ]
    error_message = "Wrong roles."
  }
  assert {
    condition = [for n in ["master-1", "master-2", "master-3", "agent-1", "agent-2", "agent-3"] : output.nodes[n].private_ip] == [
      "10.20.1.10", "10.20.1.11", "10.20.1.12", "10.20.1.30", "10.20.1.31", "10.20.1.32",
    ]
    error_message = "Wrong addresses: masters at host 10+i, agents at 30+i."
  }
  assert {
    condition     = [for n in ["master-1", "master-2", "master-3", "agent-1", "agent-2", "agent-3"] : output.nodes[n].index] == [1, 2, 3, 1, 2, 3]
    error_message = "Wrong node indexes."
  }
  assert {
    condition     = output.nodes["agent-2"].node_uuid == "9e4d7a21-8b6c-4f0d-a1e2-3c4d5e6f7a8b" && output.nodes["master-1"].node_uuid == null
    error_message = "Agents carry their node UUID in order; masters none."
  }

  # ZooKeeper, quorum, Marathon.
  assert {
    condition     = output.zookeeper_url == "zk://10.20.1.10:2181,10.20.1.11:2181,10.20.1.12:2181/mesos"
    error_message = "Wrong ZooKeeper URL: ${output.zookeeper_url}."
  }
  assert {
    condition     = output.quorum == 2 && alltrue([for m in ["master-1", "master-2", "master-3"] : contains(output.mesos_master_flags[m], "--quorum=2")])
    error_message = "Three masters need a quorum of 2 on every master."
  }
  assert {
    condition = output.mesos_master_flags["master-2"] == [
      "--zk=zk://10.20.1.10:2181,10.20.1.11:2181,10.20.1.12:2181/mesos", "--quorum=2", "--work_dir=/var/lib/mesos/master",
      "--cluster=prod", "--port=5050", "--ip=10.20.1.11", "--hostname=10.20.1.11",
    ]
    error_message = "Wrong mesos-master flags: ${jsonencode(output.mesos_master_flags["master-2"])}."
  }
  assert {
    condition     = output.marathon_urls == ["http://10.20.1.10:8080", "http://10.20.1.11:8080", "http://10.20.1.12:8080"]
    error_message = "Wrong Marathon URLs."
  }
  assert {
    condition     = output.zookeeper_myid == { "master-1" = 1, "master-2" = 2, "master-3" = 3 }
    error_message = "Wrong ZooKeeper server ids."
  }
  assert {
    condition = alltrue([for m in ["master-1", "master-2", "master-3"] : strcontains(
      [for f in yamldecode(output.nodes[m].user_data).write_files : f.content if f.path == "/etc/zookeeper/conf/zoo.cfg"][0],
      "dataDir=/var/lib/zookeeper\nclientPort=2181\n# Marathon listens on its own port on the same node: no AdminServer (it would take 8080).\nadmin.enableServer=false\nautopurge.snapRetainCount=3\nautopurge.purgeInterval=24\nserver.1=10.20.1.10:2888:3888\nserver.2=10.20.1.11:2888:3888\nserver.3=10.20.1.12:2888:3888\n"
    )])
    error_message = "Every master's zoo.cfg lists the whole ensemble."
  }
  assert {
    condition     = strcontains(output.nodes["master-2"].user_data, "echo 2 > /var/lib/zookeeper/myid\n") && !strcontains(output.nodes["master-2"].user_data, "echo 1 > /var/lib/zookeeper/myid")
    error_message = "master-2's ZooKeeper myid must be 2."
  }

  # The control service: on every master, its configuration in the masters' ZooKeeper.
  assert {
    condition = output.control_service == {
      hosts        = ["10.20.1.10", "10.20.1.11", "10.20.1.12"]
      public_hosts = ["10.20.1.10", "10.20.1.11", "10.20.1.12"]
      rest_port    = 4523
      agent_port   = 4524
      store        = "zookeeper"
    }
    error_message = "Wrong control service: ${jsonencode(output.control_service)}."
  }
  assert {
    condition     = output.control_service_store_url == "zk://10.20.1.10:2181,10.20.1.11:2181,10.20.1.12:2181/flocker"
    error_message = "The store is every master's ZooKeeper, port 2181, node /flocker: ${jsonencode(output.control_service_store_url)}."
  }
  assert {
    condition = output.control_service_flags == [
      "--port", "4523", "--agent-port", "4524",
      "--store", "zk://10.20.1.10:2181,10.20.1.11:2181,10.20.1.12:2181/flocker",
      "--store-credentials", "/etc/flocker/zookeeper.secret",
    ]
    error_message = "Wrong flocker-control flags: ${jsonencode(output.control_service_flags)}."
  }
  assert {
    condition = alltrue([for m in ["master-1", "master-2", "master-3"] : [for f in yamldecode(output.nodes[m].user_data).write_files : f.content if f.path == "/etc/default/flocker-control"] == [
      "# flocker-control's ports and store (flocker-control.service reads them).\nFLOCKER_CONTROL_ARGS=\"--port 4523 --agent-port 4524 --store zk://10.20.1.10:2181,10.20.1.11:2181,10.20.1.12:2181/flocker --store-credentials /etc/flocker/zookeeper.secret\"\n",
    ]])
    error_message = "Every master's /etc/default/flocker-control gives the same ports, store and store credentials."
  }

  # The store's credentials: a secret of every master (the same value in each master's own
  # parameter), fetched at boot into a root-only file before flocker-control starts; agents,
  # where Mesos tasks run, never see it.
  assert {
    condition     = output.control_service_store_credentials == "/etc/flocker/zookeeper.secret"
    error_message = "With the ZooKeeper store, flocker-control reads its credentials from /etc/flocker/zookeeper.secret: ${jsonencode(output.control_service_store_credentials)}."
  }
  assert {
    condition = alltrue([for m in ["master-1", "master-2", "master-3"] :
      output.nodes[m].secrets["/etc/flocker/zookeeper.secret"] == "/flocker/prod/${m}/zookeeper.secret"
    ])
    error_message = "Every master fetches the ZooKeeper credentials from a secret under its own name."
  }
  assert {
    # runcmd is one sh script, run in order: the step that fetches zookeeper.secret (retried,
    # under umask 077, then chown root:root and chmod 0600) comes before the step that starts
    # flocker-control.
    condition = alltrue([for m in ["master-1", "master-2", "master-3"] : alltrue([
      for fetch in [[for i, step in yamldecode(output.nodes[m].user_data).runcmd : { index = i, step = step } if strcontains(step, "fetch_secret '/flocker/prod/${m}/zookeeper.secret' '/etc/flocker/zookeeper.secret'\n")]] :
      length(fetch) == 1
      && strcontains(fetch[0].step, "(umask 077 && ${var.secret_fetch_command} \"$1\" > \"$2.part\") && test -s \"$2.part\"; then\n")
      && strcontains(fetch[0].step, "mv -f \"$2.part\" \"$2\" && chown root:root \"$2\" && chmod 0600 \"$2\" && return 0\n")
      && fetch[0].index < one([for i, step in yamldecode(output.nodes[m].user_data).runcmd : i if strcontains(step, "systemctl enable --now flocker-control.service\n")])
    ])])
    error_message = "Each master must fetch /etc/flocker/zookeeper.secret (root's, mode 0600, made under umask 077) in a step before the one that starts flocker-control."
  }
  assert {
    condition = alltrue([for a in ["agent-1", "agent-2", "agent-3"] :
      !contains(keys(output.nodes[a].secrets), "/etc/flocker/zookeeper.secret")
      && !strcontains(output.nodes[a].user_data, "zookeeper.secret")
      && !strcontains(output.nodes[a].user_data, "--store-credentials")
    ])
    error_message = "Agents (where Mesos tasks run) must not get the ZooKeeper credentials, nor know where they are."
  }
  assert {
    condition     = alltrue([for n in values(output.nodes) : !contains([for f in yamldecode(n.user_data).write_files : f.path], "/etc/flocker/zookeeper.secret")])
    error_message = "The credentials are fetched at boot, never written from user data."
  }
  assert {
    condition     = output.control_service_certificate_sans == { dns_names = ["control-service"], ip_addresses = ["10.20.1.10", "10.20.1.11", "10.20.1.12"] }
    error_message = "The control certificate must be valid for every master: ${jsonencode(output.control_service_certificate_sans)}."
  }
  assert {
    condition = alltrue([for m in ["master-1", "master-2", "master-3"] :
      [for f in yamldecode(output.nodes[m].user_data).write_files : f.content if f.path == "/etc/flocker/control-service.crt"] == ["${trimspace(var.certificates.control_crt)}\n"]
    ])
    error_message = "Every master serves with the one control certificate."
  }
  assert {
    # The drop-in is the release unit's ExecStart less its --data-path: if the release's line
    # changes, this fails, and the drop-in must follow.
    condition = alltrue([for m in ["master-1", "master-2", "master-3"] : [for f in yamldecode(output.nodes[m].user_data).write_files : f.content if f.path == "/etc/systemd/system/flocker-control.service.d/store.conf"] == [
      templatefile("templates/flocker-control-store.conf.tftpl", {
        control_unit     = "flocker-control.service"
        zookeeper_unit   = "zookeeper.service"
        environment_file = "/etc/default/flocker-control"
        exec_start       = "/opt/flocker/bin/flocker-control --certificates-directory /etc/flocker $FLOCKER_CONTROL_ARGS"
      })
    ]]) && strcontains(file("../../../release/systemd/flocker-control.service"), "\nExecStart=/opt/flocker/bin/flocker-control --certificates-directory /etc/flocker --data-path /var/lib/flocker $FLOCKER_CONTROL_ARGS\n")
    error_message = "Every master's flocker-control drop-in must run the release's command line without its --data-path."
  }
  assert {
    condition = alltrue([for m in ["master-1", "master-2", "master-3"] : strcontains(
      [for f in yamldecode(output.nodes[m].user_data).write_files : f.content if f.path == "/etc/systemd/system/flocker-control.service.d/store.conf"][0],
      "\nWants=zookeeper.service\nAfter=zookeeper.service\nStartLimitIntervalSec=0\n\n[Service]\nExecStart=\nExecStart=/opt/flocker/bin/flocker-control --certificates-directory /etc/flocker $FLOCKER_CONTROL_ARGS\n"
    ) && !strcontains(output.nodes[m].user_data, "/var/lib/flocker")])
    error_message = "flocker-control starts after ZooKeeper, keeps retrying, has no --data-path, and no journal directory is made."
  }

  # agent.yml, read back.
  assert {
    condition = alltrue([for a in ["agent-1", "agent-2", "agent-3"] : yamldecode(output.agent_yml[a]) == {
      version           = 1
      "control-service" = { hostname = ["10.20.1.10", "10.20.1.11", "10.20.1.12"], port = 4524 }
      dataset = {
        backend             = "loopback"
        root_path           = "/mnt/flocker-shared/loopback"
        compute_instance_id = a
      }
    }])
    error_message = "Wrong agent.yml: ${output.agent_yml["agent-1"]}"
  }
  assert {
    condition     = startswith(yamldecode(output.agent_yml["agent-3"]).dataset.root_path, "/mnt/flocker-shared/")
    error_message = "The dataset root must be on the shared storage."
  }
  assert {
    condition = output.uses_shared_storage && jsonencode(output.dataset_storage) == jsonencode({
      backend        = "loopback"
      shared_storage = true
      root_path      = "/mnt/flocker-shared/loopback"
      pool           = null
      pool_devices   = {}
      transfer_port  = null
    })
    error_message = "loopback keeps its volumes on the shared storage, with no pool and no transfer port: ${jsonencode(output.dataset_storage)}"
  }
  assert {
    condition     = alltrue([for n in values(output.nodes) : !strcontains(n.user_data, "btrfs") && !strcontains(n.user_data, "4525") && !strcontains(n.user_data, ".device")])
    error_message = "A loopback cluster knows nothing of pools, devices or the transfer port."
  }
  assert {
    condition     = strcontains(output.agent_yml["agent-1"], "\"control-service\":\n  \"hostname\":\n  - \"10.20.1.10\"\n  - \"10.20.1.11\"\n  - \"10.20.1.12\"\n  \"port\": 4524\n")
    error_message = "agent.yml lists every master as a YAML list: ${output.agent_yml["agent-1"]}"
  }

  # modules.json, read back.
  assert {
    condition     = jsondecode(output.modules_json).libraries[0].file == "${jsondecode(file("../../../release/layout.json")).install_root}/${jsondecode(file("../../../release/layout.json")).files["isolator-module"].path}"
    error_message = "modules.json must load the module from where the release puts it (release/layout.json)."
  }
  assert {
    condition     = jsondecode(output.modules_json).libraries[0].modules[0].name == "com_clusterhq_flocker_FlockerIsolator"
    error_message = "Wrong module name."
  }
  assert {
    condition = { for p in jsondecode(output.modules_json).libraries[0].modules[0].parameters : p.key => p.value } == {
      control_service_host   = "10.20.1.10,10.20.1.11,10.20.1.12"
      control_service_port   = "4523"
      certificates_directory = "/etc/flocker"
      state_dir              = "/var/lib/mesos/flocker"
      host_path_roots        = "/tmp"
    }
    error_message = "Wrong isolator parameters: ${output.modules_json}"
  }
  assert {
    condition     = output.isolator_parameters == { for p in jsondecode(output.modules_json).libraries[0].modules[0].parameters : p.key => p.value }
    error_message = "isolator_parameters must be modules.json's parameters."
  }

  # mesos-agent flags.
  assert {
    condition = alltrue([for f in [
      "--master=zk://10.20.1.10:2181,10.20.1.11:2181,10.20.1.12:2181/mesos",
      "--work_dir=/var/lib/mesos",
      "--modules=file:///etc/mesos/flocker-modules.json",
      "--isolation=filesystem/linux,docker/runtime,com_clusterhq_flocker_FlockerIsolator",
      "--launcher=linux",
      "--image_providers=docker",
      "--containerizers=mesos",
      "--port=5051",
    ] : contains(output.mesos_agent_flags, f)])
    error_message = "mesos-agent must load the module and list it among the isolators: ${jsonencode(output.mesos_agent_flags)}"
  }
  assert {
    condition     = output.mesos_agent_node_flags["agent-2"] == concat(output.mesos_agent_flags, ["--ip=10.20.1.31", "--hostname=10.20.1.31"])
    error_message = "Each agent adds its own --ip and --hostname."
  }
  assert {
    condition     = strcontains(output.nodes["agent-3"].user_data, "MESOS_AGENT_ARGS=\"${join(" ", output.mesos_agent_node_flags["agent-3"])}\"")
    error_message = "agent-3's /etc/default/mesos-agent must hold its flags."
  }

  # Units.
  assert {
    condition     = strcontains(output.systemd_units["mesos-agent.service"], "\nRequires=flocker-node-ready.service flocker-dataset-agent.service\n")
    error_message = "mesos-agent must require the node's readiness and its dataset agent."
  }
  assert {
    condition     = can(regex("(?m)^After=.*\\bflocker-node-ready\\.service\\b.*$", output.systemd_units["mesos-agent.service"])) && can(regex("(?m)^After=.*\\bflocker-dataset-agent\\.service\\b.*$", output.systemd_units["mesos-agent.service"]))
    error_message = "mesos-agent must start after the node's readiness and its dataset agent."
  }
  assert {
    condition     = can(regex("(?m)^After=.*\\bzookeeper\\.service\\b", output.systemd_units["mesos-master.service"])) && can(regex("(?m)^After=.*\\bzookeeper\\.service\\b", output.systemd_units["marathon.service"]))
    error_message = "mesos-master and Marathon must start after ZooKeeper."
  }
  assert {
    condition     = keys(output.systemd_units) == ["marathon.service", "mesos-agent.service", "mesos-master.service", "zookeeper.service"]
    error_message = "The plan renders exactly the ZooKeeper, mesos-master, Marathon and mesos-agent units."
  }
  assert {
    condition     = alltrue([for u in values(output.systemd_units) : strcontains(u, "\nRestart=on-failure\n") && strcontains(u, "\n[Install]\nWantedBy=multi-user.target\n")])
    error_message = "Every unit restarts on failure and is wanted by multi-user.target."
  }

  # User data: format, release check, secrets, size.
  assert {
    condition     = alltrue([for n in values(output.nodes) : startswith(n.user_data, "#cloud-config\n")])
    error_message = "User data must start with #cloud-config."
  }
  assert {
    condition = alltrue([for n in values(output.nodes) : strcontains(n.user_data, "curl -fsSL --retry 5 --retry-connrefused -o \"$release_tgz\" '${var.release_url}'\n    echo \"${var.release_sha256}  $release_tgz\" | sha256sum -c -\n")
    && strcontains(n.user_data, "tar --strip-components=1 -C '/opt/flocker' -xzf \"$release_tgz\"\n")])
    error_message = "Every node downloads the release, checks its SHA-256, then unpacks it."
  }
  assert {
    condition     = alltrue([for n in values(output.nodes) : yamldecode(n.user_data).runcmd[0] == "# cloud-init runs these entries as one sh script: stop at the first step that fails.\nset -eu\n"])
    error_message = "runcmd must stop at the first failing step."
  }
  assert {
    condition     = alltrue([for n in values(output.nodes) : !can(regex("BEGIN [A-Z ]*PRIVATE KEY", n.user_data)) && !strcontains(n.user_data, "PRIVATE KEY")])
    error_message = "No private key in user data."
  }
  assert {
    # (The one pause allowed is the back-off between attempts to fetch a secret.)
    condition     = alltrue([for n in values(output.nodes) : !strcontains(replace(n.user_data, "sleep \"$attempt\"", ""), "sleep")])
    error_message = "No sleep: readiness is flocker-node-ready's and systemd's ordering."
  }
  assert {
    condition     = alltrue([for n in values(output.nodes) : length(n.user_data) < 16384])
    error_message = "User data must stay under AWS's 16 KiB."
  }
  assert {
    condition = alltrue([for m in ["master-1", "master-2", "master-3"] : output.nodes[m].secrets == {
      "/etc/flocker/control-service.key" = "/flocker/prod/${m}/control-service.key"
      "/etc/flocker/zookeeper.secret"    = "/flocker/prod/${m}/zookeeper.secret"
    }])
    error_message = "Every master fetches control-service.key and zookeeper.secret only, under its own name: ${jsonencode(output.nodes["master-1"].secrets)}"
  }
  assert {
    condition = alltrue([for a in ["agent-1", "agent-2", "agent-3"] : output.nodes[a].secrets == {
      "/etc/flocker/node.key"   = "/flocker/prod/${a}/node.key"
      "/etc/flocker/plugin.key" = "/flocker/prod/${a}/plugin.key"
    }])
    error_message = "Agents fetch node.key and plugin.key, under their own names."
  }
  assert {
    # Exactly the node's secrets: one retried fetch (under umask 077, into a 0600 file), called
    # once per secret, each into its file.
    condition = alltrue([for n in values(output.nodes) :
      length(split(var.secret_fetch_command, n.user_data)) - 1 == (length(n.secrets) > 0 ? 1 : 0)
      && length(split("fetch_secret '", n.user_data)) - 1 == length(n.secrets)
      && (length(n.secrets) == 0 || strcontains(n.user_data, "(umask 077 && ${var.secret_fetch_command} \"$1\" > \"$2.part\")"))
      && (length(n.secrets) == 0 || strcontains(n.user_data, "chmod 0600 \"$2\""))
      && alltrue([for path, name in n.secrets : strcontains(n.user_data, "fetch_secret '${name}' '${path}'\n")])
    ])
    error_message = "Each node must fetch exactly its own secrets, under umask 077, into 0600 files."
  }
  assert {
    condition     = alltrue([for n in values(output.nodes) : alltrue([for s in values(n.secrets) : startswith(s, "/flocker/prod/")])]) && length(distinct(flatten([for n in values(output.nodes) : values(n.secrets)]))) == 12
    error_message = "Secret names are <secret_prefix>/<node>/<file>, all different."
  }

  # write_files read back: what each node gets, byte for byte.
  assert {
    condition = [for f in yamldecode(output.nodes["agent-1"].user_data).write_files : f.path] == [
      "/etc/flocker/cluster.crt", "/etc/flocker/node.crt", "/etc/flocker/plugin.crt", "/etc/flocker/agent.yml",
      "/etc/mesos/flocker-modules.json", "/etc/default/flocker-node-ready", "/etc/default/mesos-agent",
      "/etc/systemd/system/mesos-agent.service", "/etc/systemd/system/flocker-dataset-agent.service.d/shared-storage.conf",
      "/etc/fstab",
    ]
    error_message = "Wrong files on an agent."
  }
  assert {
    condition = [for f in yamldecode(output.nodes["master-1"].user_data).write_files : f.path] == [
      "/etc/flocker/cluster.crt", "/etc/flocker/control-service.crt", "/etc/zookeeper/conf/zoo.cfg", "/etc/default/mesos-master",
      "/etc/default/marathon", "/etc/default/flocker-control", "/etc/systemd/system/zookeeper.service",
      "/etc/systemd/system/mesos-master.service", "/etc/systemd/system/marathon.service",
      "/etc/systemd/system/flocker-control.service.d/store.conf",
    ]
    error_message = "Wrong files on a master."
  }
  assert {
    condition = { for f in yamldecode(output.nodes["agent-2"].user_data).write_files : f.path => f.content } == {
      "/etc/flocker/cluster.crt"                                                = "${trimspace(var.certificates.cluster_crt)}\n"
      "/etc/flocker/node.crt"                                                   = "${trimspace(var.certificates.node_crts[1])}\n"
      "/etc/flocker/plugin.crt"                                                 = "${trimspace(var.certificates.plugin_crt)}\n"
      "/etc/flocker/agent.yml"                                                  = output.agent_yml["agent-2"]
      "/etc/mesos/flocker-modules.json"                                         = "${output.modules_json}\n"
      "/etc/default/flocker-node-ready"                                         = "# The control service's instances (every master) and REST port, for flocker-node-ready.service.\nFLOCKER_CONTROL_SERVICE=10.20.1.10,10.20.1.11,10.20.1.12\nFLOCKER_CONTROL_PORT=4523\n"
      "/etc/default/mesos-agent"                                                = "# agent-2's mesos-agent flags (mesos-agent.service reads them).\nMESOS_AGENT_ARGS=\"${join(" ", output.mesos_agent_node_flags["agent-2"])}\"\n"
      "/etc/systemd/system/mesos-agent.service"                                 = output.systemd_units["mesos-agent.service"]
      "/etc/systemd/system/flocker-dataset-agent.service.d/shared-storage.conf" = "[Unit]\nRequiresMountsFor=/mnt/flocker-shared\n"
      "/etc/fstab"                                                              = "fs-0123456789abcdef0.efs.eu-west-1.amazonaws.com:/ /mnt/flocker-shared nfs4 nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,_netdev 0 0\n"
    }
    error_message = "agent-2's files do not read back as rendered."
  }
  assert {
    condition     = alltrue([for n in values(output.nodes) : alltrue([for f in yamldecode(n.user_data).write_files : f.permissions == "0644" && f.owner == "root:root" && try(f.append, false) == (f.path == "/etc/fstab")])])
    error_message = "Public files are root's, 0644; only the /etc/fstab line is appended."
  }

  # Shared storage and start order.
  assert {
    condition = alltrue([for a in ["agent-1", "agent-2", "agent-3"] : strcontains(output.nodes[a].user_data,
    "systemctl start \"$(systemd-escape --path --suffix=mount '/mnt/flocker-shared')\"\n    mountpoint -q '/mnt/flocker-shared'\n    install -d -m 0700 '/mnt/flocker-shared/loopback'\n")])
    error_message = "Agents mount the shared storage and make the dataset root on it."
  }
  assert {
    condition     = alltrue([for a in ["agent-1", "agent-2", "agent-3"] : can(regex("(?s)install -m 0644 '/opt/flocker/systemd/flocker-dataset-agent.service' /etc/systemd/system/\n.*systemctl daemon-reload\n.*systemctl enable --now flocker-dataset-agent\\.service\n *systemctl enable --now flocker-node-ready\\.service\n *systemctl enable --now mesos-agent\\.service\n", output.nodes[a].user_data))])
    error_message = "Agents install the release's units, then start the dataset agent, the readiness check and mesos-agent, in that order."
  }
  assert {
    condition     = alltrue([for m in ["master-1", "master-2", "master-3"] : can(regex("(?s)install -m 0644 '/opt/flocker/systemd/flocker-control.service' /etc/systemd/system/\n.*systemctl enable --now zookeeper\\.service\n *systemctl enable --now flocker-control\\.service\n *systemctl enable --now mesos-master\\.service\n *systemctl enable --now marathon\\.service\n", output.nodes[m].user_data)) && !strcontains(output.nodes[m].user_data, "mesos-agent")])
    error_message = "Masters install the release's flocker-control unit, then start ZooKeeper, flocker-control, mesos-master and Marathon."
  }
  assert {
    condition     = alltrue([for a in ["agent-1", "agent-2", "agent-3"] : !strcontains(output.nodes[a].user_data, "flocker-control.service")])
    error_message = "Agents do not run flocker-control."
  }
  assert {
    condition     = strcontains(output.nodes["agent-1"].user_data, "*\" 1.11.0\") ;;")
    error_message = "Agents check the image's Mesos version against mesos_version."
  }

  # The rest.
  assert {
    condition     = output.release_files == sort([for f in values(jsondecode(file("../../../release/layout.json")).files) : f.path])
    error_message = "release_files must be release/layout.json's paths."
  }
  assert {
    condition     = output.flockerctl_command == "flockerctl --certs-path <dir> --user admin --control-service 10.20.1.10,10.20.1.11,10.20.1.12 --control-port 4523 list-nodes"
    error_message = "Wrong flockerctl command: ${output.flockerctl_command}"
  }
  assert {
    condition = (
      jsondecode(output.example_marathon_app).env == { FLOCKER_ID = "webapp-data", FLOCKER_CONTAINER_VOLUME_PATH = "/data" }
      && jsondecode(output.example_marathon_app).container.type == "MESOS"
      && jsondecode(output.example_marathon_app).upgradeStrategy == { minimumHealthCapacity = 0, maximumOverCapacity = 0 }
    )
    error_message = "Wrong example Marathon app: ${output.example_marathon_app}"
  }
}

run "one_master_one_agent" {
  command = apply

  variables {
    master_count     = 1
    agent_count      = 1
    agent_node_uuids = ["5b1c2f0e-3d4a-4c8e-9f10-2a3b4c5d6e7f"]
    certificates = {
      cluster_crt = file("tests/fixtures/cluster.crt")
      control_crt = file("tests/fixtures/control.crt")
      plugin_crt  = file("tests/fixtures/plugin.crt")
      node_crts   = [file("tests/fixtures/node-1.crt")]
    }
  }

  assert {
    condition     = keys(output.nodes) == ["agent-1", "master-1"]
    error_message = "Expected master-1 and agent-1, got ${jsonencode(keys(output.nodes))}."
  }
  assert {
    condition     = [for n in ["master-1", "agent-1"] : "${output.nodes[n].role}@${output.nodes[n].private_ip}"] == ["master@10.20.1.10", "agent@10.20.1.30"]
    error_message = "Wrong roles or addresses."
  }
  assert {
    condition     = output.zookeeper_url == "zk://10.20.1.10:2181/mesos" && output.quorum == 1 && contains(output.mesos_master_flags["master-1"], "--quorum=1")
    error_message = "One master: a one-host ZooKeeper URL and a quorum of 1."
  }
  assert {
    condition     = endswith([for f in yamldecode(output.nodes["master-1"].user_data).write_files : f.content if f.path == "/etc/zookeeper/conf/zoo.cfg"][0], "autopurge.purgeInterval=24\nserver.1=10.20.1.10:2888:3888\n")
    error_message = "A one-master ensemble lists itself only."
  }
  assert {
    condition     = yamldecode(output.agent_yml["agent-1"]).dataset.compute_instance_id == "agent-1" && yamldecode(output.agent_yml["agent-1"])["control-service"] == { hostname = ["10.20.1.10"], port = 4524 }
    error_message = "Wrong agent.yml: ${output.agent_yml["agent-1"]}"
  }

  # One master still keeps the configuration in ZooKeeper (its one-member ensemble).
  assert {
    condition     = output.control_service_store_url == "zk://10.20.1.10:2181/flocker" && output.control_service.store == "zookeeper"
    error_message = "One master: the store is its own ZooKeeper: ${jsonencode(output.control_service_store_url)}."
  }
  assert {
    condition     = strcontains(output.nodes["master-1"].user_data, "FLOCKER_CONTROL_ARGS=\"--port 4523 --agent-port 4524 --store zk://10.20.1.10:2181/flocker --store-credentials /etc/flocker/zookeeper.secret\"\n") && strcontains(output.nodes["master-1"].user_data, "systemctl enable --now flocker-control.service\n")
    error_message = "The one master runs flocker-control on its ZooKeeper, with the store's credentials."
  }
  assert {
    condition     = output.control_service_certificate_sans == { dns_names = ["control-service"], ip_addresses = ["10.20.1.10"] }
    error_message = "Wrong certificate names: ${jsonencode(output.control_service_certificate_sans)}."
  }
  assert {
    condition     = output.isolator_parameters["control_service_host"] == "10.20.1.10" && output.flockerctl_command == "flockerctl --certs-path <dir> --user admin --control-service 10.20.1.10 --control-port 4523 list-nodes"
    error_message = "The isolator and flockerctl are given the one master."
  }
  assert {
    condition     = output.nodes["agent-1"].node_uuid == "5b1c2f0e-3d4a-4c8e-9f10-2a3b4c5d6e7f"
    error_message = "Wrong node UUID."
  }
  assert {
    condition     = length(output.nodes["agent-1"].user_data) < 16384 && startswith(output.nodes["agent-1"].user_data, "#cloud-config\n")
    error_message = "Bad agent user data."
  }
}

run "one_master_journal" {
  # A single-master (dev) cluster may keep the configuration in flocker-control's journal on the
  # master's disk instead of its one-member ZooKeeper.
  command = apply

  variables {
    master_count          = 1
    control_service_store = "journal"
  }

  assert {
    condition     = output.control_service_store_url == null && output.control_service.store == "journal"
    error_message = "The journal store has no ZooKeeper URL."
  }
  assert {
    condition     = output.control_service_flags == ["--port", "4523", "--agent-port", "4524", "--data-path", "/var/lib/flocker"]
    error_message = "Wrong flocker-control flags: ${jsonencode(output.control_service_flags)}."
  }
  assert {
    condition = (
      strcontains(output.nodes["master-1"].user_data, "FLOCKER_CONTROL_ARGS=\"--port 4523 --agent-port 4524 --data-path /var/lib/flocker\"\n")
      && strcontains(output.nodes["master-1"].user_data, "    install -d -m 0700 '/var/lib/flocker'\n")
      && !strcontains(output.nodes["master-1"].user_data, "--store zk://10.")
    )
    error_message = "The master makes the journal's directory and runs flocker-control on it."
  }
  assert {
    condition = (
      output.control_service_store_credentials == null
      && output.nodes["master-1"].secrets == { "/etc/flocker/control-service.key" = "/flocker/prod/master-1/control-service.key" }
      && alltrue([for n in values(output.nodes) : !strcontains(n.user_data, "zookeeper.secret") && !strcontains(n.user_data, "--store-credentials")])
    )
    error_message = "The journal store needs no ZooKeeper credentials: no --store-credentials, no zookeeper.secret to fetch."
  }
  assert {
    condition = alltrue([for a in ["agent-1", "agent-2", "agent-3"] :
      yamldecode(output.agent_yml[a])["control-service"].hostname == ["10.20.1.10"]
    ]) && output.isolator_parameters["control_service_host"] == "10.20.1.10"
    error_message = "Clients are given the one master."
  }
}

run "directory_backend" {
  command = apply

  variables {
    cluster_name     = "lab-7"
    backend          = "directory"
    shared_root_path = "/srv/volumes"
    secret_prefix    = "/teams/storage/lab-7"
    mesos_version    = "1.9.0"
    shared_storage = {
      source  = "nfs.lab.internal:/exports/mesos"
      fstype  = "nfs"
      options = "vers=4.2,hard,_netdev"
    }
    host_path_roots         = ["/srv/links", "/tmp"]
    volume_prefixes_by_role = { billing = ["billing-", "pg-"], "*" = ["scratch-"] }
  }

  assert {
    condition = { for p in jsondecode(output.modules_json).libraries[0].modules[0].parameters : p.key => p.value if contains(["host_path_roots", "volume_prefixes_by_role"], p.key) } == {
      host_path_roots         = "/srv/links,/tmp"
      volume_prefixes_by_role = "*=scratch-;billing=billing-,pg-"
    }
    error_message = "The isolator's policy follows host_path_roots and volume_prefixes_by_role: ${output.modules_json}"
  }

  assert {
    condition = alltrue([for a in ["agent-1", "agent-2", "agent-3"] : yamldecode(output.agent_yml[a]).dataset == {
      backend             = "directory"
      root_path           = "/srv/volumes/directory"
      compute_instance_id = a
    }])
    error_message = "The directory backend's root is <shared_root_path>/directory."
  }
  assert {
    condition     = strcontains(output.nodes["agent-2"].user_data, "      nfs.lab.internal:/exports/mesos /srv/volumes nfs vers=4.2,hard,_netdev 0 0\n")
    error_message = "The fstab line follows shared_storage and shared_root_path."
  }
  assert {
    condition     = strcontains(output.nodes["agent-1"].user_data, "      [Unit]\n      RequiresMountsFor=/srv/volumes\n") && strcontains(output.nodes["agent-1"].user_data, "install -d -m 0700 '/srv/volumes/directory'\n")
    error_message = "The dataset agent waits for the mount at shared_root_path; the root is made on it."
  }
  assert {
    condition     = output.nodes["agent-3"].secrets["/etc/flocker/node.key"] == "/teams/storage/lab-7/agent-3/node.key" && output.nodes["master-2"].secrets["/etc/flocker/control-service.key"] == "/teams/storage/lab-7/master-2/control-service.key" && output.nodes["master-3"].secrets["/etc/flocker/zookeeper.secret"] == "/teams/storage/lab-7/master-3/zookeeper.secret"
    error_message = "Secret names follow secret_prefix."
  }
  assert {
    condition     = contains(output.mesos_master_flags["master-1"], "--cluster=lab-7") && strcontains(output.nodes["agent-1"].user_data, "*\" 1.9.0\") ;;")
    error_message = "cluster_name and mesos_version reach the nodes."
  }
}

run "custom_ports" {
  command = apply

  variables {
    subnet_cidr                  = "172.31.64.0/26"
    control_service_public_hosts = ["flocker-1.example.com", "203.0.113.11", "203.0.113.12"]
    control_service_extra_sans   = ["ip-172-31-64-10.eu-west-1.compute.internal", "203.0.113.11"]
    admin_user                   = "ops"
    ports = {
      control_rest  = 8443
      control_agent = 8444
      zookeeper     = 2281
      mesos_master  = 15050
      mesos_agent   = 15051
      marathon      = 18080
    }
  }

  assert {
    condition     = [for n in ["master-1", "master-3", "agent-1", "agent-3"] : output.nodes[n].private_ip] == ["172.31.64.10", "172.31.64.12", "172.31.64.30", "172.31.64.32"]
    error_message = "Addresses follow subnet_cidr."
  }
  assert {
    condition     = output.zookeeper_url == "zk://172.31.64.10:2281,172.31.64.11:2281,172.31.64.12:2281/mesos"
    error_message = "Wrong ZooKeeper URL: ${output.zookeeper_url}."
  }
  assert {
    condition = output.control_service == {
      hosts        = ["172.31.64.10", "172.31.64.11", "172.31.64.12"]
      public_hosts = ["flocker-1.example.com", "203.0.113.11", "203.0.113.12"]
      rest_port    = 8443
      agent_port   = 8444
      store        = "zookeeper"
    }
    error_message = "Wrong control service: ${jsonencode(output.control_service)}."
  }
  assert {
    condition     = output.control_service_store_url == "zk://172.31.64.10:2281,172.31.64.11:2281,172.31.64.12:2281/flocker"
    error_message = "The store follows ZooKeeper's port: ${jsonencode(output.control_service_store_url)}."
  }
  assert {
    condition = output.control_service_certificate_sans == {
      dns_names    = ["control-service", "flocker-1.example.com", "ip-172-31-64-10.eu-west-1.compute.internal"]
      ip_addresses = ["172.31.64.10", "172.31.64.11", "172.31.64.12", "203.0.113.11", "203.0.113.12"]
    }
    error_message = "The certificate names every master, the public hosts and the extra names, once each: ${jsonencode(output.control_service_certificate_sans)}."
  }
  assert {
    condition     = yamldecode(output.agent_yml["agent-1"])["control-service"] == { hostname = ["172.31.64.10", "172.31.64.11", "172.31.64.12"], port = 8444 }
    error_message = "agent.yml speaks to every master's agent port."
  }
  assert {
    condition     = { for p in jsondecode(output.modules_json).libraries[0].modules[0].parameters : p.key => p.value }["control_service_port"] == "8443"
    error_message = "The isolator speaks to the REST port."
  }
  assert {
    condition     = contains(output.mesos_agent_flags, "--port=15051") && contains(output.mesos_master_flags["master-2"], "--port=15050")
    error_message = "Mesos ports follow ports."
  }
  assert {
    condition     = output.marathon_urls == ["http://172.31.64.10:18080", "http://172.31.64.11:18080", "http://172.31.64.12:18080"] && strcontains(output.nodes["master-1"].user_data, "--http_port 18080 --hostname 172.31.64.10\"")
    error_message = "Marathon's port follows ports."
  }
  assert {
    condition     = strcontains(output.nodes["master-1"].user_data, "      clientPort=2281\n")
    error_message = "ZooKeeper's client port follows ports."
  }
  assert {
    condition     = strcontains(output.nodes["master-2"].user_data, "FLOCKER_CONTROL_ARGS=\"--port 8443 --agent-port 8444 --store zk://172.31.64.10:2281,172.31.64.11:2281,172.31.64.12:2281/flocker --store-credentials /etc/flocker/zookeeper.secret\"") && strcontains(output.nodes["agent-2"].user_data, "FLOCKER_CONTROL_SERVICE=172.31.64.10,172.31.64.11,172.31.64.12\n      FLOCKER_CONTROL_PORT=8443\n")
    error_message = "flocker-control and flocker-node-ready follow ports."
  }
  assert {
    condition     = output.flockerctl_command == "flockerctl --certs-path <dir> --user ops --control-service flocker-1.example.com,203.0.113.11,203.0.113.12 --control-port 8443 list-nodes"
    error_message = "Wrong flockerctl command: ${output.flockerctl_command}"
  }
}

run "five_masters_fifty_agents" {
  command = apply

  variables {
    master_count     = 5
    agent_count      = 50
    subnet_cidr      = "10.20.0.0/25"
    agent_node_uuids = [for i in range(50) : format("00000000-0000-4000-8000-%012d", i + 1)]
    certificates = {
      cluster_crt = file("tests/fixtures/cluster.crt")
      control_crt = file("tests/fixtures/control.crt")
      plugin_crt  = file("tests/fixtures/plugin.crt")
      node_crts   = [for i in range(50) : file("tests/fixtures/node-${i % 3 + 1}.crt")]
    }
  }

  assert {
    condition     = length(output.nodes) == 55 && output.nodes["agent-50"].private_ip == "10.20.0.79" && output.nodes["master-5"].private_ip == "10.20.0.14"
    error_message = "Five masters and 50 agents, the last at host 79."
  }
  assert {
    condition = (
      output.control_service_store_url == "zk://10.20.0.10:2181,10.20.0.11:2181,10.20.0.12:2181,10.20.0.13:2181,10.20.0.14:2181/flocker"
      && output.control_service_certificate_sans.ip_addresses == ["10.20.0.10", "10.20.0.11", "10.20.0.12", "10.20.0.13", "10.20.0.14"]
      && yamldecode(output.agent_yml["agent-50"])["control-service"].hostname == ["10.20.0.10", "10.20.0.11", "10.20.0.12", "10.20.0.13", "10.20.0.14"]
      && output.isolator_parameters["control_service_host"] == "10.20.0.10,10.20.0.11,10.20.0.12,10.20.0.13,10.20.0.14"
    )
    error_message = "Five masters: the store, the certificate, agent.yml and the isolator name all five."
  }
  assert {
    condition     = output.quorum == 3 && length(split(",", output.zookeeper_url)) == 5
    error_message = "Five masters: a quorum of 3 and five ZooKeeper hosts."
  }
  assert {
    condition     = output.nodes["agent-50"].node_uuid == "00000000-0000-4000-8000-000000000050"
    error_message = "UUIDs in agent order."
  }
  assert {
    condition     = alltrue([for n in values(output.nodes) : length(n.user_data) < 16384])
    error_message = "Even the largest cluster's user data stays under 16 KiB: ${jsonencode({ for k, n in output.nodes : k => length(n.user_data) })}"
  }
}

# The btrfs backend: each agent's own pool on its own device, volumes pushed between agents on
# the transfer port; no shared storage.
run "btrfs_backend" {
  command = apply

  variables {
    backend        = "btrfs"
    shared_storage = null
  }

  assert {
    condition = alltrue([for a in ["agent-1", "agent-2", "agent-3"] : yamldecode(output.agent_yml[a]) == {
      version           = 1
      "control-service" = { hostname = ["10.20.1.10", "10.20.1.11", "10.20.1.12"], port = 4524 }
      dataset = {
        backend       = "btrfs"
        pool          = "/var/lib/flocker/btrfs"
        pool_device   = "/dev/nvme1n1"
        transfer_port = 4525
        mount_root    = "/flocker"
      }
    }])
    error_message = "Wrong btrfs agent.yml: ${output.agent_yml["agent-1"]}"
  }
  assert {
    # The agent refuses root_path and compute_instance_id with btrfs; the port is a number.
    condition = alltrue([for a in ["agent-1", "agent-2", "agent-3"] :
      !strcontains(output.agent_yml[a], "root_path") && !strcontains(output.agent_yml[a], "compute_instance_id")
      && strcontains(output.agent_yml[a], "\n  \"transfer_port\": 4525\n") && strcontains(output.agent_yml[a], "\n  \"pool_device\": \"/dev/nvme1n1\"\n")
    ])
    error_message = "btrfs agent.yml must have pool_device and a numeric transfer_port, and no root_path or compute_instance_id: ${output.agent_yml["agent-1"]}"
  }
  assert {
    condition = !output.uses_shared_storage && jsonencode(output.dataset_storage) == jsonencode({
      backend        = "btrfs"
      shared_storage = false
      root_path      = null
      pool           = "/var/lib/flocker/btrfs"
      pool_devices   = { "agent-1" = "/dev/nvme1n1", "agent-2" = "/dev/nvme1n1", "agent-3" = "/dev/nvme1n1" }
      transfer_port  = 4525
    })
    error_message = "btrfs needs no shared storage; its transfer port is the default 4525: ${jsonencode(output.dataset_storage)}"
  }

  # No shared storage anywhere: no fstab line, no mount, no wait for it.
  assert {
    condition = alltrue([for n in values(output.nodes) :
      !strcontains(n.user_data, "/etc/fstab") && !strcontains(n.user_data, "/mnt/flocker-shared")
      && !strcontains(n.user_data, "RequiresMountsFor") && !strcontains(n.user_data, "suffix=mount")
    ])
    error_message = "A btrfs cluster mounts no shared storage."
  }
  assert {
    condition = [for f in yamldecode(output.nodes["agent-1"].user_data).write_files : f.path] == [
      "/etc/flocker/cluster.crt", "/etc/flocker/node.crt", "/etc/flocker/plugin.crt", "/etc/flocker/agent.yml",
      "/etc/mesos/flocker-modules.json", "/etc/default/flocker-node-ready", "/etc/default/mesos-agent",
      "/etc/systemd/system/mesos-agent.service", "/etc/systemd/system/flocker-dataset-agent.service.d/pool-device.conf",
      "/etc/systemd/system/dev-nvme1n1.device.d/flocker-pool.conf",
    ]
    error_message = "Wrong files on a btrfs agent: ${jsonencode([for f in yamldecode(output.nodes["agent-1"].user_data).write_files : f.path])}"
  }
  assert {
    condition = alltrue([for a in ["agent-1", "agent-2", "agent-3"] : { for f in yamldecode(output.nodes[a].user_data).write_files : f.path => f.content if strcontains(f.path, ".d/") } == {
      "/etc/systemd/system/flocker-dataset-agent.service.d/pool-device.conf" = "[Unit]\n# The btrfs pool's device (/dev/nvme1n1): start only once it is there.\nRequires=dev-nvme1n1.device\nAfter=dev-nvme1n1.device\n"
      "/etc/systemd/system/dev-nvme1n1.device.d/flocker-pool.conf"           = "[Unit]\n# How long to wait for the btrfs pool's device to appear (a cloud volume may be attached after the boot).\nJobRunningTimeoutSec=15min\n"
    }])
    error_message = "The dataset agent waits for its pool's device, and systemd waits up to 15 minutes for it."
  }
  assert {
    # runcmd is one sh script, run in order: the wait for the device (and the check of the
    # tools) comes before the dataset agent starts.
    condition = alltrue([for a in ["agent-1", "agent-2", "agent-3"] : alltrue([
      for wait in [[for i, step in yamldecode(output.nodes[a].user_data).runcmd : { index = i, step = step } if strcontains(step, "systemctl start 'dev-nvme1n1.device'")]] :
      length(wait) == 1
      && strcontains(wait[0].step, "systemctl daemon-reload\nif ! systemctl start 'dev-nvme1n1.device'; then\n")
      && strcontains(wait[0].step, "\ntest -b '/dev/nvme1n1'\n")
      && strcontains(wait[0].step, "for tool in btrfs mkfs.btrfs blkid; do\n")
      && wait[0].index < one([for i, step in yamldecode(output.nodes[a].user_data).runcmd : i if strcontains(step, "systemctl enable --now flocker-dataset-agent.service\n")])
    ])])
    error_message = "Each btrfs agent waits for its pool's device and checks for btrfs-progs before its dataset agent starts."
  }

  # What does not depend on the backend is as with loopback: the masters' user data, the
  # isolator, mesos-agent, the secrets.
  assert {
    condition     = alltrue([for m in ["master-1", "master-2", "master-3"] : output.nodes[m].user_data == run.three_masters_three_agents.nodes[m].user_data])
    error_message = "The masters do not depend on the agents' backend."
  }
  assert {
    condition = (
      output.modules_json == run.three_masters_three_agents.modules_json
      && output.mesos_agent_node_flags == run.three_masters_three_agents.mesos_agent_node_flags
      && output.systemd_units == run.three_masters_three_agents.systemd_units
      && alltrue([for a in ["agent-1", "agent-2", "agent-3"] : output.nodes[a].secrets == run.three_masters_three_agents.nodes[a].secrets])
    )
    error_message = "The isolator, mesos-agent and the agents' secrets do not depend on the backend."
  }
  assert {
    condition     = alltrue([for n in values(output.nodes) : length(n.user_data) < 16384 && !strcontains(n.user_data, "PRIVATE KEY")])
    error_message = "btrfs user data stays under 16 KiB, with no key."
  }
}

run "btrfs_devices_per_agent_and_custom_transfer_port" {
  # A cloud module that knows each agent's volume names it by a stable path (terraform/aws:
  # the volume id as the NVMe serial); the transfer port follows ports.
  command = apply

  variables {
    backend        = "btrfs"
    shared_storage = null
    btrfs_pool_devices = [
      "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0",
      "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0fedcba9876543210",
      "/dev/disk/by-path/pci-0000:00:1f.0-nvme-1",
    ]
    ports = { agent_transfer = 14525 }
  }

  assert {
    condition = [for a in ["agent-1", "agent-2", "agent-3"] : yamldecode(output.agent_yml[a]).dataset.pool_device] == [
      "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0",
      "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0fedcba9876543210",
      "/dev/disk/by-path/pci-0000:00:1f.0-nvme-1",
    ] && output.dataset_storage.pool_devices["agent-2"] == "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0fedcba9876543210"
    error_message = "Each agent's pool is on its own device, in agent order."
  }
  assert {
    condition     = alltrue([for a in ["agent-1", "agent-2", "agent-3"] : yamldecode(output.agent_yml[a]).dataset.transfer_port == 14525]) && output.dataset_storage.transfer_port == 14525
    error_message = "The transfer port follows ports.agent_transfer."
  }
  assert {
    # systemd-escape --path --suffix=device: '-' becomes \x2d, '/' becomes '-'.
    condition = (
      [for f in yamldecode(output.nodes["agent-1"].user_data).write_files : f.content if f.path == "/etc/systemd/system/flocker-dataset-agent.service.d/pool-device.conf"] == [
        "[Unit]\n# The btrfs pool's device (/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0): start only once it is there.\nRequires=dev-disk-by\\x2did-nvme\\x2dAmazon_Elastic_Block_Store_vol0123456789abcdef0.device\nAfter=dev-disk-by\\x2did-nvme\\x2dAmazon_Elastic_Block_Store_vol0123456789abcdef0.device\n",
      ]
      && contains([for f in yamldecode(output.nodes["agent-3"].user_data).write_files : f.path], "/etc/systemd/system/dev-disk-by\\x2dpath-pci\\x2d0000:00:1f.0\\x2dnvme\\x2d1.device.d/flocker-pool.conf")
      && strcontains(output.nodes["agent-2"].user_data, "if ! systemctl start 'dev-disk-by\\x2did-nvme\\x2dAmazon_Elastic_Block_Store_vol0fedcba9876543210.device'; then\n")
    )
    error_message = "The device units are named as systemd-escape names them."
  }
}
