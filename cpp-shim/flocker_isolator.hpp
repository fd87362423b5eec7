// The Mesos side of com_clusterhq_flocker_FlockerIsolator: a thin C++ facade that Mesos loads
// as an isolator module, forwarding every call to the Rust core through its C ABI
// (flocker_isolator.h). It decides nothing: protobuf to JSON, forward, answer back.
//
// As Mesos's own isolators do, the facade owns a libprocess Process, spawned in the constructor
// and terminated and waited for in the destructor; each call is one dispatch to it. The core
// answers on its own threads through a completion callback, which only dispatches the answer
// back to the Process: no libprocess thread ever waits for the core.
//
// The Process also keeps the isolator's metrics (flocker/...), which the agent serves in its own
// /metrics/snapshot: counted from each answer's outcome, whose failure cause the core names.

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

#include <process/metrics/counter.hpp>
#include <process/metrics/metric.hpp>
#include <process/metrics/pull_gauge.hpp>
#include <process/metrics/timer.hpp>

#include <stout/duration.hpp>
#include <stout/hashmap.hpp>
#include <stout/hashset.hpp>
#include <stout/nothing.hpp>
#include <stout/option.hpp>
#include <stout/try.hpp>

#include "flocker_isolator.h"

namespace flocker {

// Owns the core's handle: freed when the last owner lets go (the Process, and the metrics
// process's copy of the volumes_in_use gauge; work in flight keeps the core alive on its side).
struct CoreDeleter
{
  void operator()(flocker_isolator* core) const noexcept { flocker_isolator_free(core); }
};

using Core = std::shared_ptr<flocker_isolator>;

// What a call of the core came to: flocker_outcome, copied off the core's thread.
struct Outcome
{
  bool ok;
  std::string text;  // the JSON answer ("" for none), or the error message
  std::string cause; // on failure, one of flocker_failure_cause's names
  uint32_t volumes;  // on success, the container's Flocker volumes
};

// The isolator's metrics, added to libprocess's when made and removed when destroyed. Used on
// the Process only.
class Metrics
{
public:
  explicit Metrics(const Core& core);
  ~Metrics();

  // Counts a prepare's outcome; `latency` is set (recording the time since the prepare began)
  // only for a prepare that got its container at least one volume.
  void prepared(const Outcome& outcome, process::Promise<Nothing>& latency);
  void cleanedUp(const Outcome& outcome);

  process::metrics::Timer<Milliseconds> prepareLatency;

private:
  template <typename T>
  void add(const T& metric);

  process::metrics::Counter prepares;
  process::metrics::Counter preparesWithoutVolume;
  process::metrics::Counter prepareFailures;
  hashmap<std::string, process::metrics::Counter> prepareFailuresByCause;
  process::metrics::Counter cleanups;
  process::metrics::Counter cleanupFailures;
  process::metrics::PullGauge volumesInUse;

  // Each metric added, and whether libprocess took it (a name can be taken already, by another
  // agent's isolator in the same process: that one is not ours to remove).
  std::vector<std::pair<process::Owned<process::metrics::Metric>, process::Future<Nothing>>> added;
};

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
  void answered(uint64_t id, const Outcome& outcome);

private:
  using Observer = std::function<void(const Outcome&)>;

  struct Call
  {
    process::Owned<process::Promise<std::string>> promise;
    Observer observe; // sees the outcome first (for the metrics); may be empty
  };

  // Starts a call of the core; its answer (the JSON, or "" for none) completes the future.
  process::Future<std::string> call(
      const std::function<flocker_result(flocker_outcome_callback, void*)>& start,
      const Observer& observe);

  Core core;
  Metrics metrics;
  uint64_t next = 0;
  hashmap<uint64_t, Call> pending;
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
