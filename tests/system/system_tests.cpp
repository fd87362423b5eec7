// The system suite: libflocker_isolator.so driven through its C header as the Mesos shim drives
// it, against a real control service and real dataset agents with real loop devices and mounts.
// The Mesos agent itself cannot run here; these tests stand in for it, making the calls it makes.

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sched.h>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <fcntl.h>

#include <gtest/gtest.h>

#include "cluster.hpp"
#include "isolator.hpp"

namespace fs = std::filesystem;

using flocker_test::Answer;
using flocker_test::containerIdJson;
using flocker_test::Isolator;
using flocker_test::jsonString;
using flocker_test::LogCapture;
using flocker_test::TestCluster;

namespace {

std::string readFile(const fs::path& path)
{
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

void writeFile(const fs::path& path, const std::string& text)
{
  std::ofstream file(path, std::ios::binary);
  file << text;
  if (!file) throw std::runtime_error("cannot write " + path.string());
}

// Replaces every `from` in `text`; a fixture that no longer has `from` is a broken test.
std::string replaceAll(std::string text, const std::string& from, const std::string& to)
{
  size_t at = text.find(from);
  if (at == std::string::npos) throw std::runtime_error("the fixture has no " + from);
  for (; at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

std::string fixture(const std::string& name)
{
  return readFile(fs::path(FLOCKER_FIXTURES_DIR) / (name + ".json"));
}

// A fixture with its volume's FLOCKER_ID and FLOCKER_CONTAINER_VOLUME_PATH values swapped for
// the test's (they appear quoted, as whole JSON strings).
std::string withVolume(
    const std::string& name,
    const std::string& fixtureId,
    const std::string& fixturePath,
    const std::string& id,
    const fs::path& path)
{
  std::string config = replaceAll(fixture(name), jsonString(fixtureId), jsonString(id));
  return replaceAll(config, jsonString(fixturePath), jsonString(path.string()));
}

std::string commandTask(const std::string& id, const fs::path& path)
{
  return withVolume("command-task", "webapp-data", "/tmp/data", id, path);
}

// A name of its own for each volume and container, so runs never meet.
std::string unique(const std::string& prefix)
{
  static std::atomic<int> counter{0};
  return prefix + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
}

std::unique_ptr<Isolator> isolatorFor(const flocker_test::Node& node)
{
  std::string error;
  std::unique_ptr<Isolator> isolator = Isolator::create(node.parameters, &error);
  if (isolator == nullptr) throw std::runtime_error("the isolator was refused: " + error);
  return isolator;
}

bool isUnder(const fs::path& path, const fs::path& root)
{
  const std::string text = path.string();
  return text.rfind(root.string() + "/", 0) == 0;
}

bool linkExists(const fs::path& path)
{
  std::error_code ignored;
  return fs::symlink_status(path, ignored).type() != fs::file_type::not_found;
}

// Tests need root for loop devices, mounts and namespaces; without it they fail, loudly.
void requireRoot()
{
  if (geteuid() != 0) {
    FAIL() << "the system suite needs root (loop devices, mounts, network namespaces); "
              "run it as root, as CI does";
  }
}

class SystemTest : public ::testing::Test
{
protected:
  void SetUp() override
  {
    ASSERT_NO_FATAL_FAILURE(requireRoot());
    LogCapture::install();
    cluster = std::make_unique<TestCluster>(2);
  }

  fs::path link(const std::string& name) const { return fs::path(cluster->links()) / name; }

  std::unique_ptr<TestCluster> cluster;
};

TEST_F(SystemTest, CommandTaskVolumeMovesFromNodeAToNodeBWithTheSameBytes)
{
  auto a = isolatorFor(cluster->node(0));
  auto b = isolatorFor(cluster->node(1));
  const std::string volume = unique("webapp-data");
  const fs::path path = link("webapp");
  const std::string config = commandTask(volume, path);
  const std::string first = unique("container");

  Answer prepared = a->prepare(containerIdJson(first), config);
  ASSERT_TRUE(prepared.ok) << prepared.text;
  EXPECT_EQ(prepared.text, "null") << "a task without an image needs no launch info";
  ASSERT_TRUE(fs::is_symlink(path));
  EXPECT_TRUE(isUnder(fs::read_symlink(path), cluster->node(0).mountRoot)) << fs::read_symlink(path);
  EXPECT_TRUE(cluster->mountedOn(volume, 0));
  EXPECT_EQ(cluster->leaseHolders(), std::vector<std::string>{cluster->node(0).uuid});
  const std::string bytes = "written on node A by " + first;
  writeFile(path / "data.txt", bytes);

  Answer cleaned = a->cleanup(containerIdJson(first));
  ASSERT_TRUE(cleaned.ok) << cleaned.text;
  EXPECT_FALSE(linkExists(path)) << "the link stayed after cleanup";
  EXPECT_TRUE(cluster->leaseHolders().empty()) << "the lease stayed after cleanup";

  const std::string second = unique("container");
  prepared = b->prepare(containerIdJson(second), config);
  ASSERT_TRUE(prepared.ok) << prepared.text;
  ASSERT_TRUE(fs::is_symlink(path));
  EXPECT_TRUE(isUnder(fs::read_symlink(path), cluster->node(1).mountRoot)) << fs::read_symlink(path);
  EXPECT_EQ(readFile(path / "data.txt"), bytes) << "node B does not see node A's bytes";
  EXPECT_TRUE(cluster->mountedOn(volume, 1));
  EXPECT_FALSE(cluster->mountedOn(volume, 0)) << "node A still has the volume mounted";
  EXPECT_EQ(cluster->datasetsNamed(volume), 1);
  ASSERT_TRUE(b->cleanup(containerIdJson(second)).ok);

  bool logged = false;
  for (const std::string& line : LogCapture::lines()) {
    logged = logged || line.find(first) != std::string::npos;
  }
  EXPECT_TRUE(logged) << "no log record names the container " << first;
}

TEST_F(SystemTest, CustomExecutorTaskGetsItsVolume)
{
  auto a = isolatorFor(cluster->node(0));
  const std::string volume = unique("billing-db");
  const fs::path path = link("pgdata");
  const std::string config =
      withVolume("custom-executor", "billing-db", "/var/lib/postgresql/data", volume, path);
  const std::string container = unique("container");

  Answer prepared = a->prepare(containerIdJson(container), config);
  ASSERT_TRUE(prepared.ok) << prepared.text;
  ASSERT_TRUE(fs::is_symlink(path));
  EXPECT_TRUE(isUnder(fs::read_symlink(path), cluster->node(0).mountRoot));
  EXPECT_TRUE(fs::is_directory(path)) << "the link does not reach a mounted volume";
  EXPECT_EQ(cluster->datasetsNamed(volume), 1);
  ASSERT_TRUE(a->cleanup(containerIdJson(container)).ok);
  EXPECT_FALSE(linkExists(path));
  EXPECT_TRUE(cluster->leaseHolders().empty());
}

TEST_F(SystemTest, NestedTaskGroupContainerGetsItsVolumeAndCleanupReleasesIt)
{
  auto a = isolatorFor(cluster->node(0));
  const std::string volume = unique("orders-data");
  const fs::path path = link("orders");
  const std::string config =
      withVolume("task-group-nested", "orders-data", "/var/lib/orders", volume, path);
  const std::string nested = containerIdJson(unique("task"), unique("executor"));

  Answer prepared = a->prepare(nested, config);
  ASSERT_TRUE(prepared.ok) << prepared.text;
  ASSERT_TRUE(fs::is_symlink(path));
  EXPECT_TRUE(cluster->mountedOn(volume, 0));
  EXPECT_EQ(cluster->leaseHolders(), std::vector<std::string>{cluster->node(0).uuid});

  ASSERT_TRUE(a->cleanup(nested).ok);
  EXPECT_FALSE(linkExists(path));
  EXPECT_TRUE(cluster->leaseHolders().empty());
}

TEST_F(SystemTest, VolumeInUseOnNodeAIsRefusedOnNodeBNamingNodeA)
{
  auto a = isolatorFor(cluster->node(0));
  auto b = isolatorFor(cluster->node(1));
  const std::string volume = unique("billing");
  const fs::path pathA = link("billing-a");
  const fs::path pathB = link("billing-b");
  const std::string containerA = unique("container");
  ASSERT_TRUE(a->prepare(containerIdJson(containerA), commandTask(volume, pathA)).ok);

  Answer refused = b->prepare(containerIdJson(unique("container")), commandTask(volume, pathB));
  EXPECT_FALSE(refused.ok);
  EXPECT_NE(refused.text.find("in use on node " + cluster->node(0).uuid), std::string::npos)
      << refused.text;
  EXPECT_FALSE(linkExists(pathB)) << "node B made a link";
  EXPECT_TRUE(fs::is_symlink(pathA)) << "node A's link was touched";
  EXPECT_TRUE(cluster->mountedOn(volume, 0)) << "node A's volume went away";
  EXPECT_EQ(cluster->leaseHolders(), std::vector<std::string>{cluster->node(0).uuid});
  ASSERT_TRUE(a->cleanup(containerIdJson(containerA)).ok);
}

TEST_F(SystemTest, RecoverAfterAnAgentRestartKeepsRunningContainersAndCleansTheRest)
{
  // Three containers when the agent stops: one still running, one the agent knows as an orphan
  // (it will destroy it, calling cleanup), one it does not know at all (only our checkpoint does).
  const std::string running = unique("container");
  const std::string orphan = unique("container");
  const std::string unknown = unique("container");
  const std::string runningVolume = unique("running");
  const fs::path runningPath = link("running");
  const fs::path orphanPath = link("orphan");
  const fs::path unknownPath = link("unknown");
  {
    auto before = isolatorFor(cluster->node(0));
    ASSERT_TRUE(before->prepare(containerIdJson(running), commandTask(runningVolume, runningPath)).ok);
    ASSERT_TRUE(before->prepare(containerIdJson(orphan), commandTask(unique("orphan"), orphanPath)).ok);
    ASSERT_TRUE(before->prepare(containerIdJson(unknown), commandTask(unique("unknown"), unknownPath)).ok);
  } // the agent stops: its isolator goes, the checkpoints stay

  auto after = isolatorFor(cluster->node(0));
  const std::string recover = "{\"states\":[{\"container_id\":" + containerIdJson(running) +
                              ",\"pid\":4242,\"directory\":\"/var/lib/mesos/sandbox\"}],"
                              "\"orphans\":[" + containerIdJson(orphan) + "]}";
  Answer recovered = after->recover(recover);
  ASSERT_TRUE(recovered.ok) << recovered.text;
  EXPECT_TRUE(fs::is_symlink(runningPath)) << "a running container's link was removed";
  EXPECT_TRUE(fs::is_symlink(orphanPath)) << "a known orphan was cleaned before the agent asked";
  EXPECT_FALSE(linkExists(unknownPath)) << "an unknown container's link stayed";
  const std::string node = cluster->node(0).uuid;
  EXPECT_EQ(cluster->leaseHolders(), (std::vector<std::string>{node, node}));
  EXPECT_TRUE(cluster->mountedOn(runningVolume, 0));

  // The agent destroys its orphans; then the running container ends. Both are known again.
  ASSERT_TRUE(after->cleanup(containerIdJson(orphan)).ok);
  EXPECT_FALSE(linkExists(orphanPath));
  EXPECT_EQ(cluster->leaseHolders(), std::vector<std::string>{node});
  ASSERT_TRUE(after->cleanup(containerIdJson(running)).ok);
  EXPECT_FALSE(linkExists(runningPath));
  EXPECT_TRUE(cluster->leaseHolders().empty());
}

TEST_F(SystemTest, RecoveringTheAgentsOwnStateFixtureWithNothingCheckpointedChangesNothing)
{
  auto a = isolatorFor(cluster->node(0));
  Answer recovered = a->recover(fixture("recover"));
  ASSERT_TRUE(recovered.ok) << recovered.text;
  EXPECT_TRUE(cluster->leaseHolders().empty());
}

TEST_F(SystemTest, ContainersWithoutFlockerVolumesGetNothingAndHalfPairsAreRefused)
{
  auto a = isolatorFor(cluster->node(0));
  for (const char* name : {"not-flocker", "debug-container"}) {
    Answer prepared = a->prepare(containerIdJson(unique("container")), fixture(name));
    EXPECT_TRUE(prepared.ok) << name << ": " << prepared.text;
    EXPECT_EQ(prepared.text, "null") << name;
  }
  Answer refused = a->prepare(containerIdJson(unique("container")), fixture("bad-half-pair"));
  EXPECT_FALSE(refused.ok);
  EXPECT_NE(refused.text.find("FLOCKER_CONTAINER_VOLUME_PATH"), std::string::npos) << refused.text;
  EXPECT_TRUE(cluster->leaseHolders().empty());
}

TEST_F(SystemTest, TheOriginalModulesParameterNamesWork)
{
  std::map<std::string, std::string> parameters = cluster->node(0).parameters;
  parameters["ipaddress"] = parameters.at("control_service_host");
  parameters["port"] = parameters.at("control_service_port");
  parameters.erase("control_service_host");
  parameters.erase("control_service_port");
  std::string error;
  auto a = Isolator::create(parameters, &error);
  ASSERT_NE(a, nullptr) << error;
  const std::string container = unique("container");
  Answer prepared = a->prepare(containerIdJson(container), commandTask(unique("old"), link("old")));
  ASSERT_TRUE(prepared.ok) << prepared.text;
  ASSERT_TRUE(a->cleanup(containerIdJson(container)).ok);
}

TEST(Parameters, BadParametersAreRefusedWithTheParameterNamedAndNoIsolator)
{
  const std::vector<std::pair<std::map<std::string, std::string>, std::string>> cases = {
      {{{"ipaddress", "127.0.0.1"}, {"prot", "4523"}}, "prot"},
      {{{"ipaddress", "127.0.0.1"}, {"port", "45x"}}, "control_service_port"},
      {{{"port", "4523"}}, "control_service_host"},
  };
  for (const auto& [parameters, named] : cases) {
    std::string error;
    EXPECT_EQ(Isolator::create(parameters, &error), nullptr) << named;
    EXPECT_NE(error.find(named), std::string::npos) << error;
  }
}

// Runs `work` on a thread that has joined the network namespace at `path`; every thread the
// isolator starts from there is in that namespace too, as on a host of its own.
template <typename Work>
void inNamespace(const std::string& path, Work work)
{
  std::exception_ptr failure;
  std::thread thread([&] {
    try {
      const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
        throw std::runtime_error("cannot join the network namespace " + path);
      }
      close(fd);
      work();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  thread.join();
  if (failure) std::rethrow_exception(failure);
}

// The node's address as the control service sees it, from its node list.
std::string hostOf(TestCluster& cluster, const std::string& uuid)
{
  std::istringstream answer(cluster.ask("nodes"));
  std::string entry;
  answer >> entry; // "nodes"
  while (answer >> entry) {
    if (entry.rfind(uuid + "=", 0) == 0) return entry.substr(uuid.size() + 1);
  }
  return "";
}

TEST(NetworkNamespaces, NodesAsSeparateHostsMoveAVolumeOverTheirOwnLinks)
{
  ASSERT_NO_FATAL_FAILURE(requireRoot());
  TestCluster cluster(2, /*netns=*/true);
  const std::string hostA = hostOf(cluster, cluster.node(0).uuid);
  ASSERT_EQ(hostA.rfind("10.", 0), 0u) << "node A is not on its own link: " << hostA;

  std::unique_ptr<Isolator> a, b, blind;
  inNamespace(cluster.node(0).netns, [&] {
    a = isolatorFor(cluster.node(0));
    // Proof the isolator lives in the namespace: the host's loopback is not reachable there.
    std::map<std::string, std::string> loopback = cluster.node(0).parameters;
    loopback["control_service_host"] = "127.0.0.1";
    loopback["state_dir"] += "-blind";
    blind = isolatorFor(flocker_test::Node{"", "", "", loopback});
  });
  inNamespace(cluster.node(1).netns, [&] { b = isolatorFor(cluster.node(1)); });

  const fs::path root(cluster.links());
  const std::string volume = unique("netns-data");
  Answer unreachable = blind->prepare(containerIdJson(unique("container")), commandTask(volume, root / "blind"));
  EXPECT_FALSE(unreachable.ok) << "reached the control service at 127.0.0.1 from inside the namespace";
  EXPECT_NE(unreachable.text.find("control service"), std::string::npos) << unreachable.text;

  const std::string first = unique("container");
  const fs::path pathA = root / "a";
  ASSERT_TRUE(a->prepare(containerIdJson(first), commandTask(volume, pathA)).ok);
  writeFile(pathA / "data.txt", "from the host at " + hostA);

  Answer refused = b->prepare(containerIdJson(unique("container")), commandTask(volume, root / "b"));
  EXPECT_FALSE(refused.ok);
  EXPECT_NE(refused.text.find("(" + hostA + ")"), std::string::npos)
      << "the refusal does not name node A's address: " << refused.text;

  ASSERT_TRUE(a->cleanup(containerIdJson(first)).ok);
  const std::string second = unique("container");
  Answer prepared = b->prepare(containerIdJson(second), commandTask(volume, root / "b"));
  ASSERT_TRUE(prepared.ok) << prepared.text;
  EXPECT_EQ(readFile(root / "b" / "data.txt"), "from the host at " + hostA);
  EXPECT_TRUE(cluster.mountedOn(volume, 1));
  ASSERT_TRUE(b->cleanup(containerIdJson(second)).ok);
}

} // namespace
