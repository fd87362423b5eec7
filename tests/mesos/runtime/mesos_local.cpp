// mesos-local: a real Mesos master and `--num_slaves` real agents in one process, over the
// libmesos of scripts/mesos-runtime (the PyPI build has no programs of its own).
//
// Flags as upstream's mesos-local takes them: this program's own (the `local::Flags`, the
// logging flags, `--ip`, `--port`) from `MESOS_*` variables or the command line; the master's
// and the agents' flags only from `MESOS_*` variables, which `local::launch` reads itself.
// The agents are laid out under `--work_dir` as `agents/<i>/{work,run,fetch}`, the master
// under `master`.
//
// We include neither master/master.hpp nor slave/slave.hpp: they reach process/grpc.hpp, whose
// grpc headers the SDK does not have. local/local.hpp only forward-declares the master.

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>

#include <process/process.hpp>

#include <stout/option.hpp>
#include <stout/os.hpp>
#include <stout/stringify.hpp>

#include "local/flags.hpp"
#include "local/local.hpp"
#include "logging/logging.hpp"
#include "version/version.hpp"

namespace {

// Flags of this executable alone: one libprocess per process, so one address for all.
class Flags : public mesos::internal::local::Flags
{
public:
  Flags()
  {
    add(&Flags::ip, "ip", "IP address to listen on (sets LIBPROCESS_IP).");
    add(&Flags::port, "port", "Port to listen on (sets LIBPROCESS_PORT).", 5050);
  }

  Option<std::string> ip;
  int port;
};

// SIGTERM (and SIGINT) end the process at once, agents and master with it, as a kill -9
// would: executors of checkpointing frameworks keep running and a restart on the same work
// directory recovers them. An explicit handler, because as PID 1 of a PID namespace the
// default action would be to ignore the signal. Only async-signal-safe calls here.
extern "C" void exitOnSignal(int signal)
{
  const char message[] = "mesos-local: terminating on signal\n";
  ssize_t written = ::write(STDERR_FILENO, message, sizeof(message) - 1);
  (void) written;
  ::_exit(signal == SIGTERM ? EXIT_SUCCESS : 128 + signal);
}

} // namespace

int main(int argc, char** argv)
{
  Flags flags;
  Try<flags::Warnings> load = flags.load("MESOS_", argc, argv);

  if (flags.help) {
    std::cout << flags.usage() << std::endl;
    return EXIT_SUCCESS;
  }

  if (load.isError()) {
    std::cerr << "mesos-local: " << load.error() << std::endl
              << "(`" << argv[0] << " --help` lists this program's flags; the master's and"
              << " the agents' are taken from MESOS_* variables only)" << std::endl;
    return EXIT_FAILURE;
  }

  if (flags.port < 1 || flags.port > 65535) {
    std::cerr << "mesos-local: --port must be within 1..65535, not " << flags.port << std::endl;
    return EXIT_FAILURE;
  }

  if (flags.num_slaves < 0) {
    std::cerr << "mesos-local: --num_slaves must not be negative" << std::endl;
    return EXIT_FAILURE;
  }

  os::setenv("LIBPROCESS_PORT", stringify(flags.port));
  if (flags.ip.isSome()) {
    os::setenv("LIBPROCESS_IP", flags.ip.get());
  }

  // The agents' `--launcher_dir` defaults to where the official build would be installed
  // (/usr/local/libexec/mesos); ours is the runtime's (PKGLIBEXECDIR, as scripts/mesos-runtime
  // compiles this). Set before any thread starts: setenv is not thread-safe.
  if (os::getenv("MESOS_LAUNCHER_DIR").isNone()) {
    os::setenv("MESOS_LAUNCHER_DIR", PKGLIBEXECDIR);
  }

  // "master" as the delegate: `/state` and friends without a process prefix go to the master.
  process::initialize("master");

  // `/version`, as mesos-master and mesos-agent serve it (local::launch does not).
  process::spawn(new mesos::internal::VersionProcess(), true);

  // Logs to stderr unless --log_dir is given; installs glog's stack dump on crashes.
  mesos::internal::logging::initialize(argv[0], true, flags);

  for (const flags::Warning& warning : load->warnings) {
    LOG(WARNING) << warning.message;
  }

  // After logging::initialize: glog's failure handler, installed there, takes SIGTERM too (and
  // dumps every thread's stack).
  struct sigaction action = {};
  action.sa_handler = exitOnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);

  LOG(INFO) << "mesos-local: " << flags.num_slaves << " agent(s), work directory "
            << flags.work_dir;

  process::wait(mesos::internal::local::launch(flags));

  return EXIT_SUCCESS;
}
