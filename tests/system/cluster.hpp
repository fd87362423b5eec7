// A whole cluster for the suite: `flocker-test-cluster` (a Rust program of the project's test
// kit) makes fresh certificates, starts a control service and dataset agents, prints what the
// tests need, and answers questions on a pipe. It is taken down when the TestCluster goes.

#ifndef FLOCKER_SYSTEM_CLUSTER_HPP
#define FLOCKER_SYSTEM_CLUSTER_HPP

#include <cstdio>
#include <map>
#include <string>
#include <sys/types.h>
#include <vector>

namespace flocker_test {

struct Node
{
  std::string uuid;
  std::string netns;      // "-" when the node shares the test's network
  std::string mountRoot;  // where its agent mounts datasets
  std::map<std::string, std::string> parameters;  // the module's parameters, as modules.json has them
};

class TestCluster
{
public:
  // Starts a cluster of `nodes` agents, each in its own network namespace if `netns`.
  explicit TestCluster(int nodes, bool netns = false);
  ~TestCluster();
  TestCluster(const TestCluster&) = delete;
  TestCluster& operator=(const TestCluster&) = delete;

  const Node& node(int index) const { return nodes.at(static_cast<size_t>(index)); }
  const std::string& links() const { return linksDirectory; }

  // One question, one answer line (see flocker-test-cluster's usage).
  std::string ask(const std::string& question);

  // How many live datasets a FLOCKER_ID names.
  int datasetsNamed(const std::string& flockerId);
  // Whether node `index` has the FLOCKER_ID's dataset mounted, by the cluster state.
  bool mountedOn(const std::string& flockerId, int index);
  // The node UUIDs holding leases.
  std::vector<std::string> leaseHolders();

private:
  std::string readLine();

  pid_t child = -1;
  FILE* toCluster = nullptr;
  FILE* fromCluster = nullptr;
  std::vector<Node> nodes;
  std::string linksDirectory;
};

} // namespace flocker_test

#endif
