// The tensor-parallel all-reduce (one-shot CUDA IPC below 512 KB, NCCL above, through the same
// call) on random bf16 data from 2 B to 64 MB against an fp64 reference, bitwise identical on every
// rank (nccl-tests -c); inside a replayed CUDA graph; a silent peer; engine decode oneshot vs NCCL.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "comm/comm.h"
#include "core/bf16.h"
#include "core/error.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_utils.h"
#include "engine/cuda/ipc_allreduce.h"
#include "engine/cuda/nccl_comm.h"
#include "engine/rng.h"
#include "engine/synthetic.h"
#include "tests/mpi_test_main.h"

namespace gf {
namespace {

Comm* g_comm = nullptr;

// Rank r's input element i of draw `seed`: uniform in [-1, 1) as bf16; every rank can compute all of them.
uint16_t input(uint64_t seed, int rank, int64_t i) {
  const uint64_t h = splitmix64(splitmix64(seed * 8 + uint64_t(rank)) ^ uint64_t(i));
  return float_to_bf16(float(int64_t(h >> 40) - (int64_t(1) << 23)) * 0x1p-23f);
}

uint64_t fnv1a(const std::vector<uint16_t>& v) {
  uint64_t h = 1469598103934665603ull;
  for (uint16_t x : v) h = (h ^ (x & 0xff)) * 1099511628211ull, h = (h ^ (x >> 8)) * 1099511628211ull;
  return h;
}

// True when every rank holds the same bits.
bool same_on_every_rank(const std::vector<uint16_t>& v) {
  uint64_t mine = fnv1a(v);
  std::vector<uint64_t> all(g_comm->size());
  MPI_Allgather(&mine, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, g_comm->mpi());
  for (uint64_t h : all)
    if (h != mine) return false;
  return true;
}

// Elements of out[i] that miss the fp64 sum over ranks of input(seed, r, i) * scale by more than bf16
// rounding allows: `roundings` roundings of an fp32 sum (one-shot), or one per ring step (NCCL).
int64_t count_bad(const std::vector<uint16_t>& out, uint64_t seed, double scale, bool oneshot, int roundings = 1) {
  const int R = g_comm->size();
  int64_t bad = 0;
  for (int64_t i = 0; i < int64_t(out.size()); ++i) {
    double ref = 0, mag = 0;
    for (int r = 0; r < R; ++r) {
      const double x = double(bf16_to_float(input(seed, r, i))) * scale;
      ref += x, mag += std::fabs(x);
    }
    const double tol = oneshot ? roundings * 0x1p-8 * std::fabs(ref) + R * 0x1p-23 * mag : R * 0x1p-8 * mag;
    const double got = bf16_to_float(out[i]);
    bad += !(std::fabs(got - ref) <= tol);  // NaN counts as bad
  }
  return bad;
}

bool gpus_for_every_rank() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n >= g_comm->local_size();
}

class Allreduce : public ::testing::Test {
 protected:
  void SetUp() override {
    if (g_comm->size() < 2 || !gpus_for_every_rank()) GTEST_SKIP() << "needs two ranks, one GPU each";
    GF_CUDA_OK(cudaSetDevice(g_comm->local_rank()));
    nccl_.emplace(*g_comm, 60);
    ipc_ = IpcAllreduce::create(*g_comm, AllReduce::Auto, 60);
    if (!ipc_) GTEST_SKIP() << "one-shot all-reduce unavailable here (GPUs without peer access, or several nodes)";
    stream_ = cuda::Stream::create();
  }
  void wait(const char* what) {
    nccl_->wait(stream_.get(), what);
    ipc_->check(what);
  }
  std::optional<NcclComm> nccl_;
  std::unique_ptr<IpcAllreduce> ipc_;
  cuda::Stream stream_;
};

TEST_F(Allreduce, RandomSizesAgainstFp64AndBitwiseAcrossRanks) {
  const int64_t limit = int64_t(IpcAllreduce::kMaxBytes / 2);  // largest one-shot message in bf16 values
  const int64_t sizes[] = {1, 3, 8, 9, 255, 4096, 8191, 65536, limit - 1, limit, limit + 1, int64_t(1) << 20,
                           int64_t(32) << 20};  // 2 B .. 64 MB
  auto d = cuda::DeviceMemory::alloc(sizes[std::size(sizes) - 1] * 2);
  for (int64_t n : sizes) {
    const bool oneshot = ipc_->fits(n);
    EXPECT_EQ(oneshot, n <= limit) << n;
    for (uint64_t seed = 1; seed <= (n <= limit ? 3u : 1u); ++seed) {  // 3 calls: both data halves, then reuse
      std::vector<uint16_t> h(n);
      for (int64_t i = 0; i < n; ++i) h[i] = input(seed * 1000 + uint64_t(n), g_comm->rank(), i);
      // On the test's own stream: a pageable cudaMemcpy may return before its DMA lands, and the
      // non-blocking stream would not wait for it (this once read a previous draw, 5-15% of 256K values).
      GF_CUDA_OK(cudaMemcpyAsync(d.as(), h.data(), n * 2, cudaMemcpyHostToDevice, stream_.get()));
      allreduce_sum_bf16(ipc_.get(), &*nccl_, d.as(), n, stream_.get());
      wait("allreduce test");
      GF_CUDA_OK(cudaMemcpyAsync(h.data(), d.as(), n * 2, cudaMemcpyDeviceToHost, stream_.get()));
      GF_CUDA_OK(cudaStreamSynchronize(stream_.get()));
      EXPECT_EQ(count_bad(h, seed * 1000 + uint64_t(n), 1.0, oneshot), 0)
          << n << " values through " << (oneshot ? "one-shot" : "NCCL");
      EXPECT_TRUE(same_on_every_rank(h)) << n << " values: ranks differ";
    }
  }
}

// Two messages in one captured graph (the second reduced twice in place), replayed 200 times on
// fresh data, with eager calls interleaved: the device-side epochs keep every replay in step.
TEST_F(Allreduce, CapturedGraphReplayedManyTimes) {
  const int64_t na = 8192, nb = 1001;  // Llama-70B's dim; an odd size with a partial vector
  auto src = cuda::PinnedMemory::alloc((na + nb) * 2);
  auto dst = cuda::PinnedMemory::alloc((na + nb) * 2);
  auto a = cuda::DeviceMemory::alloc(na * 2), b = cuda::DeviceMemory::alloc(nb * 2);
  auto* hs = src.as<uint16_t>();
  cudaStream_t s = stream_.get();
  cudaGraph_t g = nullptr;
  GF_CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  GF_CUDA_OK(cudaMemcpyAsync(a.as(), hs, na * 2, cudaMemcpyHostToDevice, s));
  allreduce_sum_bf16(ipc_.get(), &*nccl_, a.as(), na, s);
  GF_CUDA_OK(cudaMemcpyAsync(b.as(), hs + na, nb * 2, cudaMemcpyHostToDevice, s));
  allreduce_sum_bf16(ipc_.get(), &*nccl_, b.as(), nb, s);
  allreduce_sum_bf16(ipc_.get(), &*nccl_, b.as(), nb, s);
  GF_CUDA_OK(cudaMemcpyAsync(dst.as(), a.as(), na * 2, cudaMemcpyDeviceToHost, s));
  GF_CUDA_OK(cudaMemcpyAsync(dst.as<uint16_t>() + na, b.as(), nb * 2, cudaMemcpyDeviceToHost, s));
  GF_CUDA_OK(cudaStreamEndCapture(s, &g));
  cuda::Graph graph(g);
  cudaGraphExec_t exec = nullptr;
  GF_CUDA_OK(cudaGraphInstantiate(&exec, g, 0));
  cuda::GraphExec graph_exec(exec);

  int64_t bad = 0, differ = 0;
  for (int rep = 0; rep < 200; ++rep) {
    const uint64_t sa = 7000 + rep, sb = 9000 + rep;
    for (int64_t i = 0; i < na; ++i) hs[i] = input(sa, g_comm->rank(), i);
    for (int64_t i = 0; i < nb; ++i) hs[na + i] = input(sb, g_comm->rank(), i);
    GF_CUDA_OK(cudaGraphLaunch(graph_exec.get(), s));
    if (rep % 10 == 3) allreduce_sum_bf16(ipc_.get(), &*nccl_, a.as(), 5, s);  // an eager call between replays
    wait("graph replay");
    std::vector<uint16_t> out_a(dst.as<uint16_t>(), dst.as<uint16_t>() + na), out_b(dst.as<uint16_t>() + na,
                                                                                   dst.as<uint16_t>() + na + nb);
    bad += count_bad(out_a, sa, 1.0, true);
    // b's second pass sums R copies of the first pass's bf16 result: R * sum within two roundings.
    bad += count_bad(out_b, sb, double(g_comm->size()), true, 2);
    differ += !same_on_every_rank(out_a) + !same_on_every_rank(out_b);
  }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(differ, 0);
}

// A rank that skips a call: the others' kernels give up at the deadline and check() names it.
TEST_F(Allreduce, SilentPeerTimesOutAndIsNamed) {
  auto ipc = IpcAllreduce::create(*g_comm, AllReduce::Oneshot, 2.0);
  auto d = cuda::DeviceMemory::alloc(4096 * 2);
  GF_CUDA_OK(cudaMemset(d.as(), 0, 4096 * 2));
  if (g_comm->rank() == 0) {
    ipc->allreduce_sum_bf16(d.as(), 4096, stream_.get());
    GF_CUDA_OK(cudaStreamSynchronize(stream_.get()));  // returns: the kernel's wait is bounded
    try {
      ipc->check("silent peer test");
      FAIL() << "a one-shot call without its peers completed";
    } catch (const Error& e) {
      const std::string w = e.what();
      EXPECT_NE(w.find("for rank 1"), std::string::npos) << w;
      EXPECT_EQ(w.find('\n'), std::string::npos) << w;
    }
  }
  g_comm->barrier();
}

// The engine at tp = world: greedy decode with the one-shot all-reduce gives NCCL's tokens.
TEST(AllreduceEngine, DecodeOneshotEqualsNccl) {
  if (g_comm->size() < 2 || !gpus_for_every_rank()) GTEST_SKIP() << "needs two ranks, one GPU each";
  ModelConfig c;
  c.name = "tiny-allreduce";
  c.dim = 512, c.n_layers = 4, c.n_heads = 8, c.n_kv_heads = 4, c.head_dim = 64, c.hidden_dim = 1024;
  c.vocab_size = 2000, c.max_seq_len = 256, c.norm_eps = 1e-5, c.rope_theta = 10000;
  c.bos_id = 1, c.eos_ids = {2};
  GF_CUDA_OK(cudaSetDevice(g_comm->local_rank()));
  if (!IpcAllreduce::create(*g_comm, AllReduce::Auto, 60))
    GTEST_SKIP() << "one-shot all-reduce unavailable here (GPUs without peer access, or several nodes)";
  const RankSlice slice = plan_rank_slice(c, g_comm->size(), g_comm->rank());
  const HostShard shard = make_synthetic_shard(c, slice, FormatSpec::parse("bf16"), 4242);
  auto decode = [&](AllReduce mode) {
    BackendOptions o;
    o.max_seq = 256, o.max_tokens = 16, o.allreduce = mode;
    auto b = make_cuda_backend(shard, *g_comm, o);
    std::vector<int32_t> ids = {1, 50, 700, 33, 1999, 8, 123, 1500};
    b->forward(ids.data(), int(ids.size()), 0);  // prefill: 8 rows, still one-shot sized
    std::vector<int32_t> out;
    int32_t tok = b->sample(int(ids.size()) - 1, {}, 0.0);
    for (int t = 0; t < 64; ++t) {
      out.push_back(tok);
      b->forward(&tok, 1, int64_t(ids.size()) + t);  // decode graph with the all-reduce captured
      tok = b->sample(0, {}, 0.0);
    }
    // Speculative-verify-sized forwards (6 rows), three times over the same positions: from the second on
    // a captured graph with the all-reduce inside; every row's argmax joins the comparison.
    for (int r = 0; r < 3; ++r) {
      std::vector<int32_t> chunk(out.end() - 6, out.end());
      b->forward(chunk.data(), 6, int64_t(ids.size()) + 64);
      for (int m = 0; m < 6; ++m) out.push_back(b->sample(m, {}, 0.0));
    }
    return out;
  };
  const auto oneshot = decode(AllReduce::Oneshot), nccl = decode(AllReduce::Nccl);
  EXPECT_EQ(oneshot, nccl);
  int distinct = 0;
  for (size_t i = 1; i < nccl.size(); ++i) distinct += nccl[i] != nccl[i - 1];
  EXPECT_GT(distinct, 8) << "the greedy sequence is degenerate: the comparison lost its power";
}

}  // namespace
}  // namespace gf

int main(int argc, char** argv) { return gf::run_tests_under_mpi(argc, argv, gf::g_comm); }
