// What the SDK's executor sources need and the PyPI libmesos lacks (its static link left out
// what the Python bindings could not reach). Linked into mesos-executor and
// mesos-default-executor.

#include <cstdlib>
#include <sstream>
#include <string>

#include <glog/logging.h>

#include <process/pid.hpp>

#include "docker/executor.hpp"

// Used by the executor library (`executor/executor.cpp`) to name the agent's PID.
process::UPID::operator std::string() const
{
  std::ostringstream out;
  out << *this;
  return out.str();
}

// exec/exec.cpp asks, with dynamic_cast, whether the running executor is the Docker executor;
// the cast needs DockerExecutor's typeinfo, which comes with its vtable, which needs these.
// Nothing here constructs a DockerExecutor (its constructor is not even defined), so none of
// them can run; each says so if that ever changes.
namespace mesos {
namespace internal {
namespace docker {

namespace {

[[noreturn]] void notBuilt(const char* method)
{
  LOG(FATAL) << "DockerExecutor::" << method << " called, but the Docker executor is not part"
             << " of scripts/mesos-runtime's build";
  std::abort();
}

} // namespace

DockerExecutor::~DockerExecutor() { notBuilt("~DockerExecutor"); }

void DockerExecutor::registered(
    ExecutorDriver*, const ExecutorInfo&, const FrameworkInfo&, const SlaveInfo&)
{
  notBuilt("registered");
}

void DockerExecutor::reregistered(ExecutorDriver*, const SlaveInfo&)
{
  notBuilt("reregistered");
}

void DockerExecutor::disconnected(ExecutorDriver*) { notBuilt("disconnected"); }

void DockerExecutor::launchTask(ExecutorDriver*, const TaskInfo&) { notBuilt("launchTask"); }

void DockerExecutor::killTask(ExecutorDriver*, const TaskID&) { notBuilt("killTask"); }

void DockerExecutor::killTask(ExecutorDriver*, const TaskID&, const Option<KillPolicy>&)
{
  notBuilt("killTask");
}

void DockerExecutor::frameworkMessage(ExecutorDriver*, const std::string&)
{
  notBuilt("frameworkMessage");
}

void DockerExecutor::shutdown(ExecutorDriver*) { notBuilt("shutdown"); }

void DockerExecutor::error(ExecutorDriver*, const std::string&) { notBuilt("error"); }

} // namespace docker {
} // namespace internal {
} // namespace mesos {
