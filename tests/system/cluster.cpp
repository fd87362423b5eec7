#include "cluster.hpp"

#include <csignal>
#include <sstream>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

namespace flocker_test {

TestCluster::TestCluster(int count, bool netns)
{
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0) {
    throw std::runtime_error("cannot make pipes to the test cluster");
  }
  const std::string program = std::string(FLOCKER_TARGET_DIR) + "/flocker-test-cluster";
  const std::string nodeCount = std::to_string(count);
  child = fork();
  if (child == 0) {
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    close(in[1]);
    close(out[0]);
    std::vector<const char*> argv{program.c_str(), "--nodes", nodeCount.c_str()};
    if (netns) argv.push_back("--netns");
    argv.push_back(nullptr);
    execv(program.c_str(), const_cast<char* const*>(argv.data()));
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  toCluster = fdopen(in[1], "w");
  fromCluster = fdopen(out[0], "r");
  nodes.resize(static_cast<size_t>(count));
  for (std::string line = readLine(); line != "ready"; line = readLine()) {
    std::istringstream words(line);
    std::string kind, key;
    words >> kind;
    if (kind == "links") {
      words >> linksDirectory;
      continue;
    }
    size_t index;
    words >> index >> key;
    std::string rest;
    std::getline(words >> std::ws, rest);
    Node& node = nodes.at(index);
    if (key == "uuid") node.uuid = rest;
    else if (key == "netns") node.netns = rest;
    else if (key == "mount_root") node.mountRoot = rest;
    else if (key == "parameter") {
      const size_t space = rest.find(' ');
      node.parameters[rest.substr(0, space)] = rest.substr(space + 1);
    }
  }
}

TestCluster::~TestCluster()
{
  if (toCluster != nullptr) {
    fputs("quit\n", toCluster);
    fclose(toCluster);
  }
  if (child > 0) {
    int status;
    waitpid(child, &status, 0);
  }
  if (fromCluster != nullptr) fclose(fromCluster);
}

std::string TestCluster::readLine()
{
  char buffer[16384];
  if (fgets(buffer, sizeof buffer, fromCluster) == nullptr) {
    throw std::runtime_error("the test cluster stopped answering (see its output above)");
  }
  std::string line(buffer);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return line;
}

std::string TestCluster::ask(const std::string& question)
{
  fputs((question + "\n").c_str(), toCluster);
  fflush(toCluster);
  return readLine();
}

int TestCluster::datasetsNamed(const std::string& flockerId)
{
  std::istringstream answer(ask("datasets " + flockerId));
  std::string word;
  int count = -1;
  answer >> word >> count;
  return count;
}

bool TestCluster::mountedOn(const std::string& flockerId, int index)
{
  return ask("mounted " + flockerId + " " + std::to_string(index)) == "mounted yes";
}

std::vector<std::string> TestCluster::leaseHolders()
{
  std::istringstream answer(ask("leases"));
  std::string word, holder;
  int count;
  answer >> word >> count;
  std::vector<std::string> holders;
  while (answer >> holder) holders.push_back(holder);
  return holders;
}

} // namespace flocker_test
