// The Mesos side of com_clusterhq_flocker_FlockerIsolator: a thin C++ facade that Mesos loads
// as an isolator module, forwarding every call to the Rust core through its C ABI
// (flocker_isolator.h). It decides nothing: protobuf to JSON, forward, answer back.
//
// As Mesos's own isolators do, the facade owns a libprocess Process, spawned in the constructor
// and terminated and waited for in the destructor; each call is one dispatch to it. The core
// answers on its own threads through a completion callback, which only dispatches the answer
// back to the Process: no libprocess thread ever waits for the core.

#ifndef FLOCKER_SHIM_FLOCKER_ISOLATOR_HPP
#define FLOCKER_SHIM_FLOCKER_ISOLATOR_HPP

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <mesos/mesos.hpp>
#include <mesos/slave/containerizer.hpp>
#include <mesos/slave/isolator.hpp>

#include <process/future.hpp>
#include <process/owned.hpp>
#include <process/process.hpp>

#include <stout/hashmap.hpp>
#include <stout/hashset.hpp>
#include <stout/nothing.hpp>
#include <stout/option.hpp>
#include <stout/try.hpp>

#include "flocker_isolator.h"

namespace flocker {

// Owns the core's handle: freed when the last owner lets go (work in flight keeps the core
// alive on its side).
struct CoreDeleter
{
  void operator()(flocker_isolator* core) const noexcept { flocker_isolator_free(core); }
};

using Core = std::unique_ptr<flocker_isolator, CoreDeleter>;

class FlockerIsolatorProcess : public process::Process<FlockerIsolatorProcess>
{
public:
  explicit FlockerIsolatorProcess(Core core);

  process::Future<Nothing> recover(
      const std::vector<mesos::slave::ContainerState>& states,
      const hashset<mesos::ContainerID>& orphans);

  process::Future<Option<mesos::slave::ContainerLaunchInfo>> prepare(
      const mesos::ContainerID& containerId,
      const mesos::slave::ContainerConfig& containerConfig);

  process::Future<Nothing> cleanup(const mesos::ContainerID& containerId);

  // The core's answer to call `id`, dispatched here from the core's thread.
  void answered(uint64_t id, bool ok, const std::string& text);

private:
  // Starts a call of the core; its answer (the JSON, or "" for none) completes the future.
  process::Future<std::string> call(
      const std::function<flocker_result(flocker_done_callback, void*)>& start);

  Core core;
  uint64_t next = 0;
  hashmap<uint64_t, process::Owned<process::Promise<std::string>>> pending;
};

class FlockerIsolator : public mesos::slave::Isolator
{
public:
  // Makes the core from the module's parameters; an Error names what is wrong.
  static Try<mesos::slave::Isolator*> create(const mesos::Parameters& parameters);

  explicit FlockerIsolator(Core core);
  ~FlockerIsolator() override;

  // Task-group tasks are nested containers: they ask for volumes too.
  bool supportsNesting() override { return true; }
  bool supportsStandalone() override { return false; }

  process::Future<Nothing> recover(
      const std::vector<mesos::slave::ContainerState>& states,
      const hashset<mesos::ContainerID>& orphans) override;

  process::Future<Option<mesos::slave::ContainerLaunchInfo>> prepare(
      const mesos::ContainerID& containerId,
      const mesos::slave::ContainerConfig& containerConfig) override;

  process::Future<Nothing> cleanup(const mesos::ContainerID& containerId) override;

private:
  process::Owned<FlockerIsolatorProcess> process;
};

} // namespace flocker

#endif // FLOCKER_SHIM_FLOCKER_ISOLATOR_HPP
