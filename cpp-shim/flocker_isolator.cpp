#include "flocker_isolator.hpp"

#include <glog/logging.h>

#include <mesos/module/isolator.hpp>

#include <process/dispatch.hpp>
#include <process/id.hpp>

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

namespace flocker {

namespace {

// What travels through the core as `ctx`: where to send the answer. Never a pointer into the
// Process, which may be gone when the answer comes; a dispatch to a gone Process is dropped.
struct Pending
{
  PID<FlockerIsolatorProcess> pid;
  uint64_t id;
};

// Runs on a core thread: copy the answer, hand it to the Process, return.
extern "C" void onAnswered(void* ctx, int ok, const char* json) noexcept
{
  std::unique_ptr<Pending> pending(static_cast<Pending*>(ctx));
  try {
    process::dispatch(
        pending->pid,
        &FlockerIsolatorProcess::answered,
        pending->id,
        ok != 0,
        std::string(json != nullptr ? json : ""));
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

FlockerIsolatorProcess::FlockerIsolatorProcess(Core _core)
  : ProcessBase(process::ID::generate("flocker-isolator")),
    core(std::move(_core)) {}

Future<std::string> FlockerIsolatorProcess::call(
    const std::function<flocker_result(flocker_done_callback, void*)>& start)
{
  const uint64_t id = next++;
  Owned<Promise<std::string>> promise(new Promise<std::string>());
  Future<std::string> future = promise->future();
  pending[id] = promise;

  auto context = std::unique_ptr<Pending>(new Pending{self(), id});
  const flocker_result result = start(onAnswered, context.get());
  if (result != FLOCKER_OK) {
    // The core refused the call: it will never answer, so `context` stays ours to free.
    pending.erase(id);
    return process::Failure("the Flocker isolator core refused the call (" + stringify(static_cast<int>(result)) + ")");
  }
  context.release(); // the core answers exactly once, and onAnswered frees it
  return future;
}

void FlockerIsolatorProcess::answered(uint64_t id, bool ok, const std::string& text)
{
  Option<Owned<Promise<std::string>>> promise = pending.get(id);
  if (promise.isNone()) {
    return;
  }
  pending.erase(id);
  if (ok) {
    promise.get()->set(text);
  } else {
    promise.get()->fail(text);
  }
}

Future<Option<ContainerLaunchInfo>> FlockerIsolatorProcess::prepare(
    const ContainerID& containerId,
    const ContainerConfig& containerConfig)
{
  const std::string id = toJson(containerId);
  const std::string config = toJson(containerConfig);
  return call([this, id, config](flocker_done_callback done, void* ctx) {
           return flocker_isolator_prepare(core.get(), id.c_str(), config.c_str(), done, ctx);
         })
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
  return call([this, id](flocker_done_callback done, void* ctx) {
           return flocker_isolator_cleanup(core.get(), id.c_str(), done, ctx);
         })
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
  return call([this, json](flocker_done_callback done, void* ctx) {
           return flocker_isolator_recover(core.get(), json.c_str(), done, ctx);
         })
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
  return new FlockerIsolator(Core(core));
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
