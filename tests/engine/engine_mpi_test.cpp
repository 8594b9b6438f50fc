// The forward on an in-memory random model under MPI: tp=1 vs tp=N logits and greedy ids, KV-cache
// consistency, identical sampled tokens on every rank. Run with mpirun -np 1 and -np 2.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "comm/comm.h"
#include "engine/generate.h"
#include "engine/rng.h"
#include "engine/synthetic.h"
#include "tests/mpi_test_main.h"

namespace gf {
namespace {

Comm* g_comm = nullptr;

ModelConfig tiny_config() {
  ModelConfig c;
  c.name = "test-tiny";
  c.dim = 64, c.n_layers = 3, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 16, c.hidden_dim = 128;
  c.vocab_size = 203;  // odd: exercises the vocab padding of the lm_head split
  c.max_seq_len = 128, c.rope_theta = 10000, c.bos_id = 1, c.eos_ids = {};
  return c;
}

std::vector<int32_t> random_ids(int n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = int32_t(splitmix64(seed * 1000 + i) % uint64_t(vocab));
  return ids;
}

void expect_close(const std::vector<float>& ref, const std::vector<float>& got, float atol, float rtol) {
  ASSERT_EQ(ref.size(), got.size());
  int bad = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    if (!(std::fabs(ref[i] - got[i]) <= atol + rtol * std::fabs(ref[i])) && bad++ < 5)
      ADD_FAILURE() << "logit " << i << ": " << ref[i] << " vs " << got[i];
  EXPECT_EQ(bad, 0);
}

class TpMatchesSingleRank : public ::testing::TestWithParam<FormatSpec> {};

TEST_P(TpMatchesSingleRank, LogitsAndGreedyIds) {
  Comm& comm = *g_comm;
  const ModelConfig cfg = tiny_config();
  const FormatSpec fmt = GetParam();
  HostShard whole = make_synthetic_shard(cfg, plan_rank_slice(cfg, 1, 0), fmt, 11);
  HostShard part = make_synthetic_shard(cfg, plan_rank_slice(cfg, comm.size(), comm.rank()), fmt, 11);
  BackendOptions bo;
  bo.max_seq = 64, bo.max_tokens = 5, bo.threads = 1;  // prompt of 13: prefill in 3 chunks
  auto b1 = make_cpu_backend(whole, comm, bo);
  auto bn = make_cpu_backend(part, comm, bo);
  GenerateOptions g;
  g.max_new_tokens = 12, g.keep_logits = true;
  const auto prompt = random_ids(13, cfg.vocab_size, 5);
  GenerateResult r1 = generate(*b1, cfg.vocab_size, prompt, g);
  GenerateResult rn = generate(*bn, cfg.vocab_size, prompt, g);
  EXPECT_EQ(r1.ids, rn.ids);
  EXPECT_EQ(r1.logit_rows, 13 + 12 - 1);
  EXPECT_EQ(rn.logit_rows, r1.logit_rows);
  expect_close(r1.logits, rn.logits, 1e-4f, 1e-3f);
  // The logits are not degenerate: rows differ and greedy does not repeat one token forever.
  float spread = 0;
  for (int64_t v = 0; v < cfg.vocab_size; ++v) spread = std::max(spread, std::fabs(r1.logits[v] - r1.logits[cfg.vocab_size + v]));
  EXPECT_GT(spread, 1e-2f);
}

INSTANTIATE_TEST_SUITE_P(Formats, TpMatchesSingleRank,
                         ::testing::Values(FormatSpec{WeightFormat::BF16, 0}, FormatSpec{WeightFormat::INT8, 0},
                                           FormatSpec{WeightFormat::INT4, 32}),
                         [](const auto& info) { return info.param.name(); });

TEST(KvCache, PrefillEqualsTokenByTokenDecode) {
  Comm& comm = *g_comm;
  const ModelConfig cfg = tiny_config();
  HostShard part = make_synthetic_shard(cfg, plan_rank_slice(cfg, comm.size(), comm.rank()), {}, 3);
  for (bool kv_int8 : {false, true}) {
    BackendOptions bo;
    bo.max_seq = 32, bo.max_tokens = 16, bo.threads = 1, bo.kv_int8 = kv_int8;
    auto b = make_cpu_backend(part, comm, bo);
    const int n = 11;
    const auto ids = random_ids(n, cfg.vocab_size, 9);
    std::vector<float> prefill(size_t(n * cfg.vocab_size)), decode(prefill.size());
    b->forward(ids.data(), n, 0);
    for (int m = 0; m < n; ++m) b->logits(m, prefill.data() + m * cfg.vocab_size);
    for (int m = 0; m < n; ++m) {  // overwrites the same cache positions one at a time
      b->forward(&ids[m], 1, m);
      b->logits(0, decode.data() + m * cfg.vocab_size);
    }
    SCOPED_TRACE(kv_int8 ? "int8 cache" : "fp32 cache");
    expect_close(prefill, decode, 1e-4f, 1e-3f);
  }
}

// --kv-cache int8 changes the logits (the option reaches the cache) by little: rounding each head row to
// 255 steps of its max moves a logit by well under a percent of the logits' spread.
TEST(KvCache, Int8StaysCloseToTheFp32Cache) {
  Comm& comm = *g_comm;
  const ModelConfig cfg = tiny_config();
  HostShard part = make_synthetic_shard(cfg, plan_rank_slice(cfg, comm.size(), comm.rank()), {}, 5);
  GenerateOptions g;
  g.max_new_tokens = 40, g.keep_logits = true;
  const auto prompt = random_ids(9, cfg.vocab_size, 3);
  BackendOptions bo;
  bo.max_seq = 64, bo.max_tokens = 8, bo.threads = 1;
  GenerateResult f = generate(*make_cpu_backend(part, comm, bo), cfg.vocab_size, prompt, g);
  bo.kv_int8 = true;
  GenerateResult q = generate(*make_cpu_backend(part, comm, bo), cfg.vocab_size, prompt, g);
  ASSERT_EQ(f.logits.size(), q.logits.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < f.logits.size(); ++i) {
    num += (double(q.logits[i]) - f.logits[i]) * (double(q.logits[i]) - f.logits[i]);
    den += double(f.logits[i]) * f.logits[i];
  }
  const double rel = std::sqrt(num / den);
  if (comm.rank() == 0) std::printf("int8 KV cache: logits rel L2 %.2e against fp32, greedy ids %s\n", rel,
                                    f.ids == q.ids ? "equal" : "differ");
  EXPECT_GT(rel, 0.0) << "the int8 cache changed nothing: is the option wired?";
  EXPECT_LT(rel, 1e-2);
}

TEST(Sampling, EveryRankDrawsTheSameTokens) {
  Comm& comm = *g_comm;
  const ModelConfig cfg = tiny_config();
  HostShard part = make_synthetic_shard(cfg, plan_rank_slice(cfg, comm.size(), comm.rank()), {}, 4);
  BackendOptions bo;
  bo.max_seq = 64, bo.max_tokens = 8, bo.threads = 1;
  auto b = make_cpu_backend(part, comm, bo);
  GenerateOptions g;
  g.max_new_tokens = 30, g.sampling = {1.0f, 0, 1.f}, g.seed = 99;
  auto r = generate(*b, cfg.vocab_size, random_ids(4, cfg.vocab_size, 1), g);
  ASSERT_EQ(r.ids.size(), 30u);
  std::vector<int32_t> all(r.ids.size() * comm.size());
  MPI_Allgather(r.ids.data(), int(r.ids.size()), MPI_INT32_T, all.data(), int(r.ids.size()), MPI_INT32_T, comm.mpi());
  for (int k = 1; k < comm.size(); ++k)
    EXPECT_TRUE(std::equal(r.ids.begin(), r.ids.end(), all.begin() + k * r.ids.size())) << "rank " << k;
  auto again = generate(*b, cfg.vocab_size, random_ids(4, cfg.vocab_size, 1), g);
  EXPECT_EQ(again.ids, r.ids);  // replayable from (seed, sample, step)
  g.sample_index = 1;
  EXPECT_NE(generate(*b, cfg.vocab_size, random_ids(4, cfg.vocab_size, 1), g).ids, r.ids);
}

TEST(Generate, StopsAtEosAndMaxSeq) {
  Comm& comm = *g_comm;
  ModelConfig cfg = tiny_config();
  HostShard part = make_synthetic_shard(cfg, plan_rank_slice(cfg, comm.size(), comm.rank()), {}, 4);
  BackendOptions bo;
  bo.max_seq = 10, bo.max_tokens = 8, bo.threads = 1;
  auto b = make_cpu_backend(part, comm, bo);
  GenerateOptions g;
  g.max_new_tokens = 50;
  const auto prompt = random_ids(4, cfg.vocab_size, 2);
  auto r = generate(*b, cfg.vocab_size, prompt, g);
  EXPECT_EQ(r.stop, "max_seq_len");
  EXPECT_EQ(r.ids.size(), 7u);  // positions 4..9 fed, plus the token drawn after position 9
  g.eos_ids = {r.ids[2]};
  auto e = generate(*b, cfg.vocab_size, prompt, g);
  EXPECT_EQ(e.stop, "eos");
  EXPECT_EQ(e.ids.back(), r.ids[2]);
  EXPECT_LE(e.ids.size(), 3u);
}

}  // namespace
}  // namespace gf

int main(int argc, char** argv) { return gf::run_tests_under_mpi(argc, argv, gf::g_comm); }
