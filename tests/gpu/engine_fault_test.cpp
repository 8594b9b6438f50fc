// A silent peer cannot hang the job: with two GPUs, rank 1 stops taking part in decode; rank 0's
// wait hits the collective deadline, aborts NCCL and throws a line naming the situation; when rank 1
// wakes, its own step fails the same way. Both must finish well inside ctest's TIMEOUT.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "comm/comm.h"
#include "core/error.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/synthetic.h"

namespace gf {
namespace {

Comm* g_comm = nullptr;
constexpr double kDeadline = 5;  // GPTFAST_COLLECTIVE_TIMEOUT_S, set in main before the communicator reads it

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

TEST(CudaFault, SilentPeerAbortsWithinDeadline) {
  int n_dev = 0;
  if (g_comm->size() < 2 || cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev < g_comm->local_size())
    GTEST_SKIP() << "needs two ranks, one GPU each";
  const double deadline = kDeadline;
  ASSERT_EQ(g_comm->timeout_s(), deadline);
  ModelConfig c;
  c.name = "fault";
  c.dim = 256, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 64, c.hidden_dim = 512;
  c.vocab_size = 512, c.max_seq_len = 256;
  const RankSlice s = plan_rank_slice(c, g_comm->size(), g_comm->rank());
  BackendOptions o;
  o.max_seq = 256;
  o.max_tokens = 8;
  auto b = make_cuda_backend(make_synthetic_shard(c, s, FormatSpec::parse("bf16"), 3), *g_comm, o);
  int32_t id = 5;
  for (int t = 0; t < 4; ++t) {  // healthy steps first: the decode graph is captured and replayed
    b->forward(&id, 1, t);
    id = b->sample(0, {}, 0.5);
  }
  g_comm->barrier();
  if (g_comm->rank() == 1) std::this_thread::sleep_for(std::chrono::duration<double>(3 * deadline));
  const double t0 = now_s();
  try {
    b->forward(&id, 1, 4);
    b->sample(0, {}, 0.5);
    FAIL() << "rank " << g_comm->rank() << ": a step with a silent peer completed";
  } catch (const Error& e) {
    const double waited = now_s() - t0;
    const std::string w = e.what();
    std::fprintf(stderr, "rank %d after %.1f s: %s\n", g_comm->rank(), waited, w.c_str());
    EXPECT_LT(waited, deadline + 10) << w;
    EXPECT_NE(w.find("rank " + std::to_string(g_comm->rank())), std::string::npos) << w;
    EXPECT_EQ(w.find('\n'), std::string::npos) << w;
  }
  std::fprintf(stderr, "rank %d: tearing the backend down\n", g_comm->rank());
  b.reset();  // teardown after an abort must not hang either (ctest's TIMEOUT would catch it)
  std::fprintf(stderr, "rank %d: torn down after %.1f s\n", g_comm->rank(), now_s() - t0);
}

}  // namespace
}  // namespace gf

int main(int argc, char** argv) {
  gf::MpiSession mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  // Comm::world() reads the deadline once (the test once set it after that, and ran with the default)
  setenv("GPTFAST_COLLECTIVE_TIMEOUT_S", std::to_string(gf::kDeadline).c_str(), 1);
  int rc;
  {
    gf::Comm comm = gf::Comm::world();
    gf::g_comm = &comm;
    rc = RUN_ALL_TESTS();
    const auto* u = ::testing::UnitTest::GetInstance();
    if (rc == 0 && u->successful_test_count() == 0 && u->skipped_test_count() > 0) rc = 77;
  }
  return rc;
}
