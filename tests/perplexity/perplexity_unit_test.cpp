// perplexity() on a fake backend whose logits are a known function of (token, position): the windows of
// the strided recipe, chunked forwards, and the NLL, mean and standard error against a direct sum.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "engine/perplexity.h"

namespace gf {
namespace {

constexpr int64_t kVocab = 37;

// Row m of a forward is f(ids[m], pos0 + m): it depends on the token and its position in the window,
// so a window fed from the wrong position or a row paired with the wrong target changes the answer.
double fake_logit(int32_t id, int64_t pos, int64_t v) { return 3.0 * std::sin(0.7 * id + 1.3 * pos + 0.37 * v * v); }

class FakeBackend final : public Backend {
 public:
  explicit FakeBackend(int max_tokens) : max_tokens_(max_tokens) {}
  std::string name() const override { return "fake"; }
  void forward(const int32_t* ids, int M, int64_t pos0) override {
    ASSERT_LE(M, max_tokens_);
    ASSERT_LE(pos0 + M, max_seq());
    ids_.assign(ids, ids + M);
    pos0_ = pos0;
    forwarded_ += M;
  }
  void logits(int m, float* out) override {
    for (int64_t v = 0; v < kVocab; ++v) out[v] = float(fake_logit(ids_[m], pos0_ + m, v));
  }
  int32_t sample(int, const cpu::SamplingParams&, double) override { return 0; }
  void candidates(int m, int k, std::vector<float>& l, std::vector<int32_t>& ids) override {
    std::vector<float> row(kVocab);
    logits(m, row.data());
    l.resize(size_t(k)), ids.resize(size_t(k));
    cpu::local_top_k(row.data(), kVocab, 0, k, l.data(), ids.data());
  }
  int64_t weight_bytes() const override { return 0; }
  int max_tokens() const override { return max_tokens_; }
  int64_t max_seq() const override { return 64; }
  int64_t forwarded_ = 0;

 private:
  int max_tokens_;
  std::vector<int32_t> ids_;
  int64_t pos0_ = 0;
};

std::vector<int32_t> random_ids(int n, unsigned seed) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(int32_t((seed = seed * 1103515245u + 12345u) >> 16) % kVocab);
  return ids;
}

// The per-token NLLs the recipe sums, computed directly: token t of a window starting at `begin` is
// predicted by f(ids[t-1], t-1-begin).
std::vector<double> direct_nlls(const std::vector<int32_t>& ids, const std::vector<PerplexityWindow>& ws) {
  std::vector<double> out;
  for (const auto& w : ws)
    for (int64_t t = w.first_scored; t < w.end; ++t) {
      double sum = 0;
      for (int64_t v = 0; v < kVocab; ++v) sum += std::exp(double(float(fake_logit(ids[t - 1], t - 1 - w.begin, v))));
      out.push_back(std::log(sum) - double(float(fake_logit(ids[t - 1], t - 1 - w.begin, ids[t]))));
    }
  return out;
}

TEST(Perplexity, WindowsFollowTheRecipe) {
  auto w = perplexity_windows(10, {4, 2});
  ASSERT_EQ(w.size(), 4u);  // [0,4) [2,6) [4,8) [6,10)
  EXPECT_EQ(w[0].begin, 0); EXPECT_EQ(w[0].end, 4); EXPECT_EQ(w[0].first_scored, 1);
  EXPECT_EQ(w[1].begin, 2); EXPECT_EQ(w[1].end, 6); EXPECT_EQ(w[1].first_scored, 4);
  EXPECT_EQ(w[3].begin, 6); EXPECT_EQ(w[3].end, 10); EXPECT_EQ(w[3].first_scored, 8);
  auto d = perplexity_windows(10, {4, 4});  // disjoint: first token of each window unscored
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[1].first_scored, 5); EXPECT_EQ(d[2].end, 10);
  auto s = perplexity_windows(5, {8, 3});  // shorter than the context: one window
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].end, 5);
  EXPECT_THROW(perplexity_windows(10, {4, 5}), Error);
  EXPECT_THROW(perplexity_windows(10, {1, 1}), Error);
}

TEST(Perplexity, MatchesDirectSum) {
  const auto ids = random_ids(53, 7);
  for (PerplexityOptions o : {PerplexityOptions{16, 5}, PerplexityOptions{16, 16}, PerplexityOptions{64, 8}}) {
    FakeBackend b(3);  // forwards in chunks of 3 inside each window
    const PerplexityResult r = perplexity(b, kVocab, ids, o);
    const auto nll = direct_nlls(ids, perplexity_windows(53, o));
    double mean = 0, var = 0;
    for (double x : nll) mean += x / double(nll.size());
    for (double x : nll) var += (x - mean) * (x - mean) / double(nll.size() - 1);
    EXPECT_EQ(r.scored, int64_t(nll.size()));
    EXPECT_NEAR(r.mean_nll, mean, 1e-12);
    EXPECT_NEAR(r.nll_stderr, std::sqrt(var / double(nll.size())), 1e-12);
    EXPECT_NEAR(r.ppl_stderr(), std::exp(mean) * std::sqrt(var / double(nll.size())), 1e-9);
    EXPECT_EQ(r.forward_tokens, b.forwarded_);
    EXPECT_GT(r.nll_stderr, 0);
  }
}

TEST(Perplexity, RefusesWhatCannotRun) {
  FakeBackend b(4);
  EXPECT_THROW(perplexity(b, kVocab, {5}, {16, 8}), Error);              // one token: nothing to score
  EXPECT_THROW(perplexity(b, kVocab, random_ids(90, 1), {128, 8}), Error);  // window past the KV cache
}

}  // namespace
}  // namespace gf
