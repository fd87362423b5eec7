#include "flocker_isolator.hpp"

#include <glog/logging.h>

#include <mesos/module/isolator.hpp>

#include <process/dispatch.hpp>
#include <process/id.hpp>

#include <process/metrics/metrics.hpp>

#include <stout/foreach.hpp>
#include <stout/json.hpp>
#include <stout/protobuf.hpp>
#include <stout/stringify.hpp>

using mesos::ContainerID;
using mesos::Parameters;
using mesos::slave::ContainerConfig;
using mesos::slave::ContainerLaunchInfo;
using mesos::slave::ContainerState;
using mesos::slave::Isolator;

using process::Future;
using process::Owned;
using process::PID;
using process::Promise;

using process::metrics::Counter;
using process::metrics::PullGauge;

namespace flocker {

namespace {

// What travels through the core as `ctx`: where to send the answer. Never a pointer into the
// Process, which may be gone when the answer comes; a dispatch to a gone Process is dropped.
struct Pending
{
  PID<FlockerIsolatorProcess> pid;
  uint64_t id;
};

std::string copy(const char* text)
{
  return text != nullptr ? text : "";
}

// Runs on a core thread: copy the answer, hand it to the Process, return.
extern "C" void onAnswered(void* ctx, const flocker_outcome* answer) noexcept
{
  std::unique_ptr<Pending> pending(static_cast<Pending*>(ctx));
  try {
    Outcome outcome{false, "the Flocker isolator core answered nothing", "other", 0};
    if (answer != nullptr) {
      outcome = Outcome{answer->ok != 0, copy(answer->text), copy(answer->cause), answer->volumes};
    }
    process::dispatch(pending->pid, &FlockerIsolatorProcess::answered, pending->id, outcome);
  } catch (...) {
    LOG(ERROR) << "Flocker isolator: could not hand an answer back to libprocess";
  }
}

// Rust log records, into the agent's log.
extern "C" void onLog(void*, int level, const char* target, const char* message) noexcept
{
  const char* text = message != nullptr ? message : "";
  const char* from = target != nullptr ? target : "flocker";
  switch (level) {
    case 1: LOG(ERROR) << "[" << from << "] " << text; break;
    case 2: LOG(WARNING) << "[" << from << "] " << text; break;
    case 3: LOG(INFO) << "[" << from << "] " << text; break;
    default: VLOG(1) << "[" << from << "] " << text; break;
  }
}

std::string toJson(const google::protobuf::Message& message)
{
  return stringify(JSON::protobuf(message));
}

} // namespace

// Timers keep an hour of samples for their statistics (count, min, max, percentiles), as the
// agent's own timers do.
Metrics::Metrics(const Core& core)
  : prepareLatency("flocker/prepare_latency", Hours(1)),
    prepares("flocker/prepares"),
    preparesWithoutVolume("flocker/prepares_without_volume"),
    prepareFailures("flocker/prepare_failures"),
    cleanups("flocker/cleanups"),
    cleanupFailures("flocker/cleanup_failures"),
    volumesInUse("flocker/volumes_in_use", [core]() -> Future<double> {
      uint64_t count = 0;
      if (flocker_isolator_volumes_in_use(core.get(), &count) != FLOCKER_OK) {
        return process::Failure("the Flocker isolator core cannot say");
      }
      return static_cast<double>(count);
    })
{
  // Every cause up front, so that each shows 0 until it happens.
  for (size_t i = 0; flocker_failure_cause(i) != nullptr; i++) {
    const std::string cause = flocker_failure_cause(i);
    prepareFailuresByCause.put(cause, Counter("flocker/prepare_failures/" + cause));
  }
  add(prepares);
  add(preparesWithoutVolume);
  add(prepareFailures);
  foreachvalue (const Counter& counter, prepareFailuresByCause) {
    add(counter);
  }
  add(cleanups);
  add(cleanupFailures);
  add(prepareLatency);
  add(volumesInUse);
}

template <typename T>
void Metrics::add(const T& metric)
{
  added.emplace_back(Owned<process::metrics::Metric>(new T(metric)), process::metrics::add(metric));
}

Metrics::~Metrics()
{
  for (const auto& metric : added) {
    if (metric.second.isReady()) {
      process::metrics::remove(*metric.first);
    }
  }
}

void Metrics::prepared(const Outcome& outcome, Promise<Nothing>& latency)
{
  if (!outcome.ok) {
    ++prepareFailures;
    Option<Counter> byCause = prepareFailuresByCause.get(outcome.cause);
    if (byCause.isNone()) {
      byCause = prepareFailuresByCause.get("other");
    }
    if (byCause.isSome()) {
      ++byCause.get(); // a copy that shares the counter's value
    }
  } else if (outcome.volumes == 0) {
    ++preparesWithoutVolume;
  } else {
    ++prepares;
    latency.set(Nothing());
  }
}

void Metrics::cleanedUp(const Outcome& outcome)
{
  if (!outcome.ok) {
    ++cleanupFailures;
  } else if (outcome.volumes > 0) {
    ++cleanups;
  }
}

FlockerIsolatorProcess::FlockerIsolatorProcess(Core _core)
  : ProcessBase(process::ID::generate("flocker-isolator")),
    core(std::move(_core)),
    metrics(core) {}

Future<std::string> FlockerIsolatorProcess::call(
    const std::function<flocker_result(flocker_outcome_callback, void*)>& start,
    const Observer& observe)
{
  const uint64_t id = next++;
  Owned<Promise<std::string>> promise(new Promise<std::string>());
  Future<std::string> future = promise->future();
  pending.put(id, Call{promise, observe});

  auto context = std::unique_ptr<Pending>(new Pending{self(), id});
  const flocker_result result = start(onAnswered, context.get());
  if (result != FLOCKER_OK) {
    // The core refused the call: it will never answer, so `context` stays ours to free.
    const std::string message =
      "the Flocker isolator core refused the call (" + stringify(static_cast<int>(result)) + ")";
    const std::string cause = result == FLOCKER_INVALID_ARGUMENT ? "invalid_request" : "other";
    answered(id, Outcome{false, message, cause, 0});
    return future;
  }
  context.release(); // the core answers exactly once, and onAnswered frees it
  return future;
}

void FlockerIsolatorProcess::answered(uint64_t id, const Outcome& outcome)
{
  Option<Call> call = pending.get(id);
  if (call.isNone()) {
    return;
  }
  pending.erase(id);
  if (call->observe) {
    call->observe(outcome);
  }
  if (outcome.ok) {
    call->promise->set(outcome.text);
  } else {
    call->promise->fail(outcome.text);
  }
}

Future<Option<ContainerLaunchInfo>> FlockerIsolatorProcess::prepare(
    const ContainerID& containerId,
    const ContainerConfig& containerConfig)
{
  const std::string id = toJson(containerId);
  const std::string config = toJson(containerConfig);
  // Timed from here; recorded only if the container gets a volume (an unset promise records
  // nothing: the timer's callback runs only when the future completes).
  Owned<Promise<Nothing>> latency(new Promise<Nothing>());
  metrics.prepareLatency.time(latency->future());
  return call(
           [this, id, config](flocker_outcome_callback done, void* ctx) {
             return flocker_isolator_prepare_with_outcome(
                 core.get(), id.c_str(), config.c_str(), done, ctx);
           },
           [this, latency](const Outcome& outcome) { metrics.prepared(outcome, *latency); })
    .then([](const std::string& json) -> Future<Option<ContainerLaunchInfo>> {
      if (json.empty()) {
        return None();
      }
      Try<JSON::Object> object = JSON::parse<JSON::Object>(json);
      if (object.isError()) {
        return process::Failure("the Flocker isolator core answered with bad JSON: " + object.error());
      }
      Try<ContainerLaunchInfo> launchInfo = protobuf::parse<ContainerLaunchInfo>(object.get());
      if (launchInfo.isError()) {
        return process::Failure("the Flocker isolator core answered with a bad launch info: " + launchInfo.error());
      }
      return launchInfo.get();
    });
}

Future<Nothing> FlockerIsolatorProcess::cleanup(const ContainerID& containerId)
{
  const std::string id = toJson(containerId);
  return call(
           [this, id](flocker_outcome_callback done, void* ctx) {
             return flocker_isolator_cleanup_with_outcome(core.get(), id.c_str(), done, ctx);
           },
           [this](const Outcome& outcome) { metrics.cleanedUp(outcome); })
    .then([](const std::string&) { return Nothing(); });
}

Future<Nothing> FlockerIsolatorProcess::recover(
    const std::vector<ContainerState>& states,
    const hashset<ContainerID>& orphans)
{
  JSON::Array stateArray;
  for (const ContainerState& state : states) {
    stateArray.values.push_back(JSON::protobuf(state));
  }
  JSON::Array orphanArray;
  for (const ContainerID& orphan : orphans) {
    orphanArray.values.push_back(JSON::protobuf(orphan));
  }
  JSON::Object request;
  request.values["states"] = stateArray;
  request.values["orphans"] = orphanArray;
  const std::string json = stringify(request);
  return call(
           [this, json](flocker_outcome_callback done, void* ctx) {
             return flocker_isolator_recover_with_outcome(core.get(), json.c_str(), done, ctx);
           },
           Observer())
    .then([](const std::string&) { return Nothing(); });
}

Try<Isolator*> FlockerIsolator::create(const Parameters& parameters)
{
  flocker_set_log_callback(onLog, nullptr, 3);
  JSON::Object object;
  for (const mesos::Parameter& parameter : parameters.parameter()) {
    object.values[parameter.key()] = parameter.value();
  }
  const std::string json = stringify(object);
  flocker_isolator* core = nullptr;
  char* error = nullptr;
  if (flocker_isolator_new(json.c_str(), &core, &error) != FLOCKER_OK) {
    const std::string message = error != nullptr ? error : "the parameters were refused";
    flocker_string_free(error);
    return Error(message);
  }
  return new FlockerIsolator(Core(core, CoreDeleter()));
}

FlockerIsolator::FlockerIsolator(Core core)
  : process(new FlockerIsolatorProcess(std::move(core)))
{
  process::spawn(process.get());
}

FlockerIsolator::~FlockerIsolator()
{
  process::terminate(process.get());
  process::wait(process.get());
}

Future<Nothing> FlockerIsolator::recover(
    const std::vector<ContainerState>& states,
    const hashset<ContainerID>& orphans)
{
  return process::dispatch(process.get(), &FlockerIsolatorProcess::recover, states, orphans);
}

Future<Option<ContainerLaunchInfo>> FlockerIsolator::prepare(
    const ContainerID& containerId,
    const ContainerConfig& containerConfig)
{
  return process::dispatch(
      process.get(), &FlockerIsolatorProcess::prepare, containerId, containerConfig);
}

Future<Nothing> FlockerIsolator::cleanup(const ContainerID& containerId)
{
  return process::dispatch(process.get(), &FlockerIsolatorProcess::cleanup, containerId);
}

} // namespace flocker

namespace {

// The module's factory: never throws across the module boundary; a failure is logged and is a
// nullptr, which makes the agent say "Failed to create isolator".
Isolator* createFlockerIsolator(const Parameters& parameters)
{
  try {
    Try<Isolator*> isolator = flocker::FlockerIsolator::create(parameters);
    if (isolator.isError()) {
      LOG(ERROR) << "Cannot create the Flocker isolator: " << isolator.error();
      return nullptr;
    }
    return isolator.get();
  } catch (const std::exception& error) {
    LOG(ERROR) << "Cannot create the Flocker isolator: " << error.what();
  } catch (...) {
    LOG(ERROR) << "Cannot create the Flocker isolator";
  }
  return nullptr;
}

} // namespace

// The symbol Mesos looks up: the module's name. Its Mesos version must equal the agent's exactly
// (an isolator module is never accepted by another version), so the module is built against the
// agent's own headers.
mesos::modules::Module<Isolator> com_clusterhq_flocker_FlockerIsolator(
    MESOS_MODULE_API_VERSION,
    MESOS_VERSION,
    "flocker-rs",
    "flocker-rs@users.noreply.github.com",
    "Persistent, movable volumes for tasks (FLOCKER_ID, FLOCKER_CONTAINER_VOLUME_PATH).",
    nullptr,
    createFlockerIsolator);
