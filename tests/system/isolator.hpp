// The test's side of libflocker_isolator: the C ABI driven exactly as the Mesos shim drives it
// (parameters as a JSON object, ContainerID and ContainerConfig as JSON, a completion callback),
// except that each call waits for its answer, which only a test may do.

#ifndef FLOCKER_SYSTEM_ISOLATOR_HPP
#define FLOCKER_SYSTEM_ISOLATOR_HPP

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "flocker_isolator.h"

namespace flocker_test {

// What a prepare, cleanup or recover came to: `ok` with the JSON (or "null"), or the error.
struct Answer
{
  bool ok = false;
  std::string text;
};

class Isolator
{
public:
  // Makes an isolator from module parameters; nullptr and `*error` set if they are refused.
  static std::unique_ptr<Isolator> create(
      const std::map<std::string, std::string>& parameters, std::string* error);
  ~Isolator();
  Isolator(const Isolator&) = delete;
  Isolator& operator=(const Isolator&) = delete;

  Answer prepare(const std::string& containerIdJson, const std::string& containerConfigJson);
  Answer cleanup(const std::string& containerIdJson);
  Answer recover(const std::string& recoverJson);

private:
  explicit Isolator(flocker_isolator* core) : core(core) {}
  flocker_isolator* core;
};

// The library's log records, from every thread, as "<level> <target> <message>" lines.
class LogCapture
{
public:
  static void install();
  static std::vector<std::string> lines();

private:
  static void record(void* ctx, int level, const char* target, const char* message);
  static std::mutex lock;
  static std::vector<std::string> captured;
};

// `text` as a JSON string, quotes included.
std::string jsonString(const std::string& text);

// A ContainerID as JSON: {"value": id}, or with a parent.
std::string containerIdJson(const std::string& value, const std::string& parent = "");

} // namespace flocker_test

#endif
