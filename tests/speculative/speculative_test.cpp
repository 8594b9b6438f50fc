// Speculative decoding on in-memory random models under MPI (mpirun -np 1 and -np 2): greedy output
// equals plain greedy, sampling keeps the target's distribution (chi-square, and a wrong rule is
// caught), caches after a rejecting / all-accepting round match a plain decode, bad drafts refused.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "comm/comm.h"
#include "core/error.h"
#include "engine/rng.h"
#include "engine/speculative.h"
#include "engine/synthetic.h"
#include "sharding/quantize.h"
#include "tests/mpi_test_main.h"

namespace gf {
namespace {

Comm* g_comm = nullptr;

ModelConfig tiny_config(int64_t vocab, int64_t dim = 64, int64_t layers = 3) {
  ModelConfig c;
  c.name = "spec-tiny";
  c.dim = dim, c.n_layers = layers, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = dim / 4, c.hidden_dim = 2 * dim;
  c.vocab_size = vocab, c.max_seq_len = 256, c.rope_theta = 10000, c.bos_id = 1;
  return c;
}

std::vector<int32_t> random_ids(int n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = int32_t(splitmix64(seed * 1000 + i) % uint64_t(vocab));
  return ids;
}

// The same model's weights in another format: what gptfast-shard --int8 / --int4 would make of it.
HostShard quantized_copy(const HostShard& s, FormatSpec fmt) {
  HostShard q = s;
  q.fmt = fmt;
  auto conv = [&](HostWeight& w) { w = quantize(dequantize(w).data(), w.rows, w.cols, fmt); };
  conv(q.lm_head);
  for (auto& L : q.layers) conv(L.wqkv), conv(L.wo), conv(L.w13), conv(L.w2);
  return q;
}

// One rank's target and (rank 0 only) a whole draft; the draft runs over a one-rank communicator.
struct Models {
  Comm self = Comm::self();
  HostShard target_shard, draft_shard;
  std::unique_ptr<Backend> target, draft;
  int64_t draft_vocab = 0;
  Models(const ModelConfig& cfg, uint64_t seed, const std::function<HostShard()>& make_draft, BackendOptions bo) {
    target_shard = make_synthetic_shard(cfg, plan_rank_slice(cfg, g_comm->size(), g_comm->rank()), {}, seed);
    target = make_cpu_backend(target_shard, *g_comm, bo);
    if (g_comm->rank() != 0) return;
    draft_shard = make_draft();
    draft_vocab = draft_shard.cfg.vocab_size;
    draft = make_cpu_backend(draft_shard, self, bo);
  }
};

BackendOptions small_options(int64_t max_seq = 128) {
  BackendOptions bo;
  bo.max_seq = max_seq, bo.max_tokens = 16, bo.threads = 1;
  return bo;
}

// ---- greedy: token for token the target's greedy output ----

struct GreedyCase {
  const char* draft;  // "other": a different random model; "int8" / "int4": the target quantized
  int k;
};

class GreedyMatchesPlain : public ::testing::TestWithParam<GreedyCase> {};

TEST_P(GreedyMatchesPlain, TokenForToken) {
  const auto [kind, k] = GetParam();
  const ModelConfig cfg = tiny_config(203);
  const uint64_t seed = 11;
  auto make_draft = [&, kind = std::string(kind)] {
    if (kind == "other") return make_synthetic_shard(tiny_config(203, 32, 2), plan_rank_slice(tiny_config(203, 32, 2), 1, 0), {}, 77);
    HostShard whole = make_synthetic_shard(cfg, plan_rank_slice(cfg, 1, 0), {}, seed);
    return quantized_copy(whole, kind == "int8" ? FormatSpec{WeightFormat::INT8, 0} : FormatSpec{WeightFormat::INT4, 32});
  };
  for (int64_t max_seq : {128, 30}) {  // 30: the KV cache ends the run mid-round
    Models m(cfg, seed, make_draft, small_options(max_seq));
    GenerateOptions g;
    g.max_new_tokens = 60;
    const auto prompt = random_ids(7, cfg.vocab_size, 3);
    const GenerateResult plain = generate(*m.target, cfg.vocab_size, prompt, g);
    SpeculativeOptions so;
    so.k = k;
    SpeculativeResult spec =
        speculative_generate(*m.target, cfg.vocab_size, m.draft.get(), m.draft_vocab, *g_comm, prompt, g, so);
    EXPECT_EQ(spec.gen.ids, plain.ids) << "max_seq " << max_seq;
    EXPECT_EQ(spec.gen.stop, plain.stop);
    int64_t rounds = 0;
    for (int64_t c : spec.spec.accept_counts) rounds += c;
    EXPECT_EQ(rounds, spec.spec.rounds);
    EXPECT_GT(spec.spec.rounds, 0);
    if (std::string(kind) == "int8") {
      EXPECT_GT(spec.spec.mean_accepted(), 0.5 * k);  // a close copy mostly agrees
    }
    if (g_comm->rank() == 0 && max_seq == 128)
      std::printf("[ draft %s k=%d ] rounds %lld, mean accepted %.2f\n", kind, k, (long long)spec.spec.rounds,
                  spec.spec.mean_accepted());
    // eos: stops at the same token, even when it falls inside an accepted run.
    g.eos_ids = {plain.ids[std::min<size_t>(9, plain.ids.size() - 1)]};
    const GenerateResult plain_eos = generate(*m.target, cfg.vocab_size, prompt, g);
    spec = speculative_generate(*m.target, cfg.vocab_size, m.draft.get(), m.draft_vocab, *g_comm, prompt, g, so);
    EXPECT_EQ(spec.gen.ids, plain_eos.ids);
    EXPECT_EQ(spec.gen.stop, "eos");
  }
}

INSTANTIATE_TEST_SUITE_P(Drafts, GreedyMatchesPlain,
                         ::testing::Values(GreedyCase{"other", 1}, GreedyCase{"other", 3}, GreedyCase{"other", 8},
                                           GreedyCase{"int8", 1}, GreedyCase{"int8", 3}, GreedyCase{"int8", 8},
                                           GreedyCase{"int4", 1}, GreedyCase{"int4", 3}, GreedyCase{"int4", 8}),
                         [](const auto& info) { return std::string(info.param.draft) + "_k" + std::to_string(info.param.k); });

// ---- refusals, the same on every rank ----

TEST(Refuses, DraftOfAnotherVocabulary) {
  const ModelConfig cfg = tiny_config(203);
  Models m(cfg, 11, [] { return make_synthetic_shard(tiny_config(200, 32, 2), plan_rank_slice(tiny_config(200, 32, 2), 1, 0), {}, 5); },
           small_options());
  GenerateOptions g;
  try {
    speculative_generate(*m.target, cfg.vocab_size, m.draft.get(), m.draft_vocab, *g_comm, {1, 2, 3}, g, {});
    ADD_FAILURE() << "a draft with vocab 200 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocab_size is 200 but the target's is 203"), std::string::npos) << e.what();
  }
  EXPECT_THROW(speculative_generate(*m.target, cfg.vocab_size, nullptr, 0, *g_comm, {1, 2, 3}, g, {}), Error);
}

// ---- rollback ----

// A draft that is the target model (whole) with its logits rotated by `shift` ids: shift 0 agrees
// with the target's argmax (every draft accepted), shift 1 never does (rejected at position 0).
class ShiftedDraft final : public Backend {
 public:
  ShiftedDraft(std::unique_ptr<Backend> inner, int64_t vocab, int shift) : inner_(std::move(inner)), vocab_(vocab), shift_(shift) {}
  std::string name() const override { return "shifted"; }
  void forward(const int32_t* ids, int M, int64_t pos0) override { inner_->forward(ids, M, pos0); }
  void logits(int m, float* out) override {
    std::vector<float> l(vocab_);
    inner_->logits(m, l.data());
    for (int64_t v = 0; v < vocab_; ++v) out[(v + shift_) % vocab_] = l[v];
  }
  int32_t sample(int m, const cpu::SamplingParams& p, double u) override {
    std::vector<float> l(vocab_);
    logits(m, l.data());
    return cpu::sample(l.data(), vocab_, p, u);
  }
  void candidates(int m, int k, std::vector<float>& cl, std::vector<int32_t>& ids) override {
    std::vector<float> l(vocab_);
    logits(m, l.data());
    cl.resize(size_t(k)), ids.resize(size_t(k));
    cpu::local_top_k(l.data(), vocab_, 0, k, cl.data(), ids.data());
  }
  int64_t weight_bytes() const override { return 0; }
  int max_tokens() const override { return inner_->max_tokens(); }
  int64_t max_seq() const override { return inner_->max_seq(); }
  Backend& inner() { return *inner_; }

 private:
  std::unique_ptr<Backend> inner_;
  int64_t vocab_;
  int shift_;
};

// Logits of the last of `seq` from a fresh cache (one prefill): what a plain decode would see.
std::vector<float> fresh_logits(const HostShard& s, Comm& comm, const std::vector<int32_t>& seq) {
  auto b = make_cpu_backend(s, comm, small_options());
  std::vector<float> out(size_t(s.cfg.vocab_size));
  for (size_t p0 = 0; p0 < seq.size(); p0 += 16) {
    const int rows = int(std::min<size_t>(16, seq.size() - p0));
    b->forward(seq.data() + p0, rows, int64_t(p0));
    if (p0 + rows == seq.size()) b->logits(rows - 1, out.data());
  }
  return out;
}

void expect_close(const std::vector<float>& ref, const std::vector<float>& got, const char* what) {
  ASSERT_EQ(ref.size(), got.size());
  int bad = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    if (!(std::fabs(ref[i] - got[i]) <= 1e-4f + 1e-3f * std::fabs(ref[i])) && bad++ < 3)
      ADD_FAILURE() << what << " logit " << i << ": " << ref[i] << " vs " << got[i];
}

class Rollback : public ::testing::TestWithParam<int> {};  // the draft's shift

TEST_P(Rollback, CachesMatchPlainDecode) {
  const int shift = GetParam(), k = 4;
  const ModelConfig cfg = tiny_config(203);
  HostShard whole = make_synthetic_shard(cfg, plan_rank_slice(cfg, 1, 0), {}, 11);
  Models m(cfg, 11, [&] { return whole; }, small_options());
  Comm self = Comm::self();
  std::unique_ptr<ShiftedDraft> draft;
  if (g_comm->rank() == 0) draft = std::make_unique<ShiftedDraft>(std::move(m.draft), cfg.vocab_size, shift);
  GenerateOptions g;
  SpeculativeOptions so;
  so.k = k;
  SpeculativeDecoder d(*m.target, cfg.vocab_size, draft.get(), cfg.vocab_size, *g_comm, g, so);
  d.start(random_ids(6, cfg.vocab_size, 8));
  for (int r = 0; r < 3; ++r) {  // chained rounds: each starts from the previous one's rollback
    const auto fresh = d.round(100);
    EXPECT_EQ(fresh.size(), shift == 0 ? size_t(k + 1) : 1u) << "round " << r;
    const auto& seq = d.tokens();
    EXPECT_EQ(d.target_cached(), int64_t(seq.size()) - 1);
    // Target: feed the one token it has not seen; its logits must be a plain decode's.
    std::vector<float> got(size_t(cfg.vocab_size));
    m.target->forward(&seq.back(), 1, int64_t(seq.size()) - 1);
    m.target->logits(0, got.data());
    expect_close(fresh_logits(m.target_shard, *g_comm, seq), got, "target");
    if (g_comm->rank() == 0) {  // draft: catch up, then its next logits must be a plain decode's too
      const int row = d.draft_catch_up();
      draft->inner().logits(row, got.data());
      expect_close(fresh_logits(whole, self, seq), got, "draft");
    }
  }
  EXPECT_EQ(d.stats().accept_counts[shift == 0 ? k : 0], 3);
}

INSTANTIATE_TEST_SUITE_P(Shifts, Rollback, ::testing::Values(0, 1),
                         [](const auto& info) { return info.param == 0 ? "AcceptAll" : "RejectFirst"; });

// ---- sampling: the target's distribution, exactly ----

// p-value of a chi-square statistic (Wilson-Hilferty normal approximation, good for df >= 10).
double chi2_pvalue(double x, int df) {
  const double h = 2.0 / (9.0 * df), z = (std::cbrt(x / df) - (1 - h)) / std::sqrt(h);
  return 0.5 * std::erfc(z / std::sqrt(2.0));
}

// Two equal-size samples, homogeneity test; cells with fewer than 10 hits together are pooled.
double two_sample_pvalue(const std::map<int, int>& a, const std::map<int, int>& b) {
  std::map<int, std::pair<int, int>> cells;
  for (auto [c, n] : a) cells[c].first += n;
  for (auto [c, n] : b) cells[c].second += n;
  double stat = 0;
  int df = -1, pa = 0, pb = 0;
  for (auto [c, n] : cells) {
    if (n.first + n.second < 10) {
      pa += n.first, pb += n.second;
      continue;
    }
    stat += double(n.first - n.second) * (n.first - n.second) / (n.first + n.second), ++df;
  }
  if (pa + pb > 0) stat += double(pa - pb) * (pa - pb) / (pa + pb), ++df;
  return chi2_pvalue(stat, df);
}

// The classic bug: after a rejection, draw from q instead of max(0, q - p).
Acceptance accept_resample_from_q(const double* q, const double* p, const int32_t* drafted, int k, int64_t vocab,
                                  const std::function<double()>& uniform) {
  for (int i = 0; i < k; ++i) {
    const int64_t x = drafted[i];
    if (uniform() * p[i * vocab + x] < q[i * vocab + x]) continue;
    return {i, accept_rejection(q + i * vocab, p, drafted, 0, vocab, uniform).next};  // k = 0: a draw from q
  }
  return accept_rejection(q, p, drafted, k, vocab, uniform);
}

// Joint counts of tokens 2..4 of 4 sampled (the first comes from the prefill; the rest from a round
// of 2 drafts and, after an early rejection, another round).
std::map<int, int> sample_counts(Models& m, const ModelConfig& cfg, AcceptFn rule, bool speculate, int n, uint64_t seed) {
  GenerateOptions g;
  g.max_new_tokens = 4, g.seed = seed;
  g.sampling = {0.9f, 6, 0.97f};
  SpeculativeOptions so;
  so.k = 3, so.accept = rule;
  const auto prompt = random_ids(5, cfg.vocab_size, 4);
  std::map<int, int> counts;
  for (int i = 0; i < n; ++i) {
    g.sample_index = uint64_t(i);
    const auto ids = speculate ? speculative_generate(*m.target, cfg.vocab_size, m.draft.get(), m.draft_vocab, *g_comm,
                                                      prompt, g, so).gen.ids
                               : generate(*m.target, cfg.vocab_size, prompt, g).ids;
    ++counts[(ids[1] * int(cfg.vocab_size) + ids[2]) * int(cfg.vocab_size) + ids[3]];
  }
  return counts;
}

TEST(Sampling, KeepsTargetDistribution) {
  const ModelConfig cfg = tiny_config(8, 32, 2), dcfg = tiny_config(8, 16, 1);
  Models m(cfg, 21, [&] { return make_synthetic_shard(dcfg, plan_rank_slice(dcfg, 1, 0), {}, 22); }, small_options());
  // Stated significance: the exact rule must give p > 0.001, the wrong one p < 0.001. Fewer samples at
  // tp > 1 (each forward then waits on collectives); the seeds are fixed, so the outcome is too.
  const int n = g_comm->size() == 1 ? 20000 : 6000;
  const auto plain = sample_counts(m, cfg, accept_rejection, false, n, 1);
  const double p_exact = two_sample_pvalue(plain, sample_counts(m, cfg, accept_rejection, true, n, 2));
  const double p_wrong = two_sample_pvalue(plain, sample_counts(m, cfg, accept_resample_from_q, true, n, 2));
  if (g_comm->rank() == 0) std::printf("[ chi-square ] exact rule p = %.4g, resample-from-q rule p = %.4g\n", p_exact, p_wrong);
  EXPECT_GT(p_exact, 1e-3);
  EXPECT_LT(p_wrong, 1e-3);
}

TEST(Sampling, RanksAgree) {
  const ModelConfig cfg = tiny_config(203);
  Models m(cfg, 11, [] { return make_synthetic_shard(tiny_config(203, 32, 2), plan_rank_slice(tiny_config(203, 32, 2), 1, 0), {}, 77); },
           small_options());
  GenerateOptions g;
  g.max_new_tokens = 40, g.seed = 5, g.sampling = {1.0f, 0, 1.f};
  SpeculativeOptions so;
  so.k = 4;
  const auto r = speculative_generate(*m.target, cfg.vocab_size, m.draft.get(), m.draft_vocab, *g_comm,
                                      random_ids(5, cfg.vocab_size, 1), g, so);
  ASSERT_EQ(r.gen.ids.size(), 40u);
  std::vector<int32_t> all(r.gen.ids.size() * g_comm->size());
  MPI_Allgather(r.gen.ids.data(), int(r.gen.ids.size()), MPI_INT32_T, all.data(), int(r.gen.ids.size()), MPI_INT32_T,
                g_comm->mpi());
  for (int k = 1; k < g_comm->size(); ++k)
    EXPECT_TRUE(std::equal(r.gen.ids.begin(), r.gen.ids.end(), all.begin() + k * r.gen.ids.size())) << "rank " << k;
  EXPECT_GT(r.spec.rounds, 0);
}

// --synthetic-acceptance: with a draft the target never agrees with, rounds keep each drafted token at the
// asked rate, alike on every rank, greedy and sampled; 0 and 1 are exact.
TEST(SyntheticAcceptance, KeepsDraftsAtTheAskedRate) {
  const ModelConfig cfg = tiny_config(203);
  Models m(cfg, 11, [] { return make_synthetic_shard(tiny_config(203, 32, 2), plan_rank_slice(tiny_config(203, 32, 2), 1, 0), {}, 77); },
           small_options(256));
  for (const float temperature : {0.f, 1.f})
    for (const double rate : {0.0, 0.7, 1.0}) {
      GenerateOptions g;
      g.max_new_tokens = 240, g.seed = 5, g.sampling = {temperature, 0, 1.f};
      SpeculativeOptions so;
      so.k = 4, so.synthetic_acceptance = rate;
      const auto r = speculative_generate(*m.target, cfg.vocab_size, m.draft.get(), m.draft_vocab, *g_comm,
                                          random_ids(5, cfg.vocab_size, 1), g, so);
      const auto& c = r.spec.accept_counts;
      ASSERT_EQ(r.gen.ids.size(), 240u);
      // Each round draws until its first rejection: kept / drawn estimates the rate.
      int64_t kept = 0, drawn = 0;
      for (int n = 0; n <= so.k; ++n) kept += n * c[n], drawn += std::min(n + 1, so.k) * c[n];
      const double est = double(kept) / double(drawn);
      if (g_comm->rank() == 0)
        std::printf("[ t %.1f, rate %.1f ] %lld rounds, kept %lld of %lld drawn (%.3f)\n", temperature, rate,
                    (long long)r.spec.rounds, (long long)kept, (long long)drawn, est);
      if (rate == 0.0) {
        EXPECT_EQ(c[0], r.spec.rounds);
      }
      if (rate == 1.0) {
        EXPECT_EQ(r.spec.accepted, r.spec.drafted);
      }
      EXPECT_NEAR(est, rate, 0.08);
      std::vector<int64_t> all(c.size() * g_comm->size());
      MPI_Allgather(c.data(), int(c.size()), MPI_INT64_T, all.data(), int(c.size()), MPI_INT64_T, g_comm->mpi());
      for (int k = 1; k < g_comm->size(); ++k)
        EXPECT_TRUE(std::equal(c.begin(), c.end(), all.begin() + k * c.size())) << "rank " << k;
    }
}

}  // namespace
}  // namespace gf

int main(int argc, char** argv) { return gf::run_tests_under_mpi(argc, argv, gf::g_comm); }
