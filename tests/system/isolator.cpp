#include "isolator.hpp"

#include <cstdio>
#include <future>
#include <stdexcept>

namespace flocker_test {

namespace {

// Runs on one of the isolator's threads: copy the answer before the string goes.
void onDone(void* ctx, int ok, const char* json)
{
  auto* promise = static_cast<std::promise<Answer>*>(ctx);
  promise->set_value(Answer{ok != 0, json != nullptr ? json : "null"});
}

// Starts one call; waits for the callback, or says why the call was refused.
template <typename Start>
Answer callAndWait(Start start)
{
  std::promise<Answer> promise;
  std::future<Answer> answer = promise.get_future();
  const flocker_result result = start(&promise);
  if (result != FLOCKER_OK) {
    return Answer{false, "the call was refused (" + std::to_string(static_cast<int>(result)) + ")"};
  }
  return answer.get();
}

} // namespace

std::unique_ptr<Isolator> Isolator::create(
    const std::map<std::string, std::string>& parameters, std::string* error)
{
  std::string json = "{";
  for (const auto& [key, value] : parameters) {
    if (json.size() > 1) json += ",";
    json += jsonString(key) + ":" + jsonString(value);
  }
  json += "}";
  flocker_isolator* core = nullptr;
  char* message = nullptr;
  if (flocker_isolator_new(json.c_str(), &core, &message) != FLOCKER_OK) {
    *error = message != nullptr ? message : "refused without a message";
    flocker_string_free(message);
    return nullptr;
  }
  return std::unique_ptr<Isolator>(new Isolator(core));
}

Isolator::~Isolator()
{
  flocker_isolator_free(core);
}

Answer Isolator::prepare(const std::string& containerIdJson, const std::string& containerConfigJson)
{
  return callAndWait([&](std::promise<Answer>* promise) {
    return flocker_isolator_prepare(
        core, containerIdJson.c_str(), containerConfigJson.c_str(), onDone, promise);
  });
}

Answer Isolator::cleanup(const std::string& containerIdJson)
{
  return callAndWait([&](std::promise<Answer>* promise) {
    return flocker_isolator_cleanup(core, containerIdJson.c_str(), onDone, promise);
  });
}

Answer Isolator::recover(const std::string& recoverJson)
{
  return callAndWait([&](std::promise<Answer>* promise) {
    return flocker_isolator_recover(core, recoverJson.c_str(), onDone, promise);
  });
}

std::mutex LogCapture::lock;
std::vector<std::string> LogCapture::captured;

void LogCapture::install()
{
  flocker_set_log_callback(record, nullptr, 3);
}

std::vector<std::string> LogCapture::lines()
{
  std::lock_guard<std::mutex> guard(lock);
  return captured;
}

void LogCapture::record(void*, int level, const char* target, const char* message)
{
  std::lock_guard<std::mutex> guard(lock);
  captured.push_back(std::to_string(level) + " " + target + " " + message);
}

std::string jsonString(const std::string& text)
{
  std::string quoted = "\"";
  for (const char c : text) {
    switch (c) {
      case '"': quoted += "\\\""; break;
      case '\\': quoted += "\\\\"; break;
      case '\n': quoted += "\\n"; break;
      case '\t': quoted += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
          quoted += escaped;
        } else {
          quoted += c;
        }
    }
  }
  return quoted + "\"";
}

std::string containerIdJson(const std::string& value, const std::string& parent)
{
  if (parent.empty()) return "{\"value\":" + jsonString(value) + "}";
  return "{\"parent\":{\"value\":" + jsonString(parent) + "},\"value\":" + jsonString(value) + "}";
}

} // namespace flocker_test
