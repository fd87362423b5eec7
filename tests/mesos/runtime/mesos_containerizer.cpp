// mesos-containerizer: the helper the Mesos containerizer runs from the agent's
// `--launcher_dir` to start every container (`launch`), over the subcommands of the
// libmesos of scripts/mesos-runtime.
//
// Subcommands, as far as the PyPI build has them:
//   launch              MesosContainerizerLaunch: forks/execs the container's command (posix
//                       and linux launchers alike).
//   network-cni-setup   NetworkCniIsolatorSetup: used by the `network/cni` isolator only.
// Left out: `mount` (MesosContainerizerMount, make-rslave). Its code is not in the .so, and
// neither is anything that would run it: the string "make-rslave" does not occur in the .so.
// Port-mapping's subcommands are not in the .so either (the official build left that isolator
// out).

#include <string>

#include <stout/subcommand.hpp>

#include "slave/containerizer/mesos/isolators/network/cni/cni.hpp"
#include "slave/containerizer/mesos/launch.hpp"

int main(int argc, char** argv)
{
  using mesos::internal::slave::MesosContainerizerLaunch;
  using mesos::internal::slave::NetworkCniIsolatorSetup;

  // The agent hands the subcommand's flags over in the environment, not on the command line
  // (`--launch_info` is a whole ContainerLaunchInfo as JSON): MESOS_CONTAINERIZER_LAUNCH_INFO
  // and so on; the command line still works for a manual run.
  return Subcommand::dispatch(
      std::string("MESOS_CONTAINERIZER_"),
      argc,
      argv,
      new MesosContainerizerLaunch(),
      new NetworkCniIsolatorSetup());
}
