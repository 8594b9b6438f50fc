// sample: greedy ties, top-k / top-p edge cases, determinism, and a chi-square check against
// softmax; the split sampler (local top-k per rank, finished on the union) against sample().
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "core/error.h"
#include "kernel_test_util.h"
#include "kernels/cpu/cpu_ops.h"

namespace gf::test {
namespace {

using cpu::SamplingParams;

SamplingParams params(float t, int k = 0, float p = 1.f) {
  SamplingParams s;
  s.temperature = t;
  s.top_k = k;
  s.top_p = p;
  return s;
}

TEST(Sample, GreedyTakesTheLowestIdAmongMaxima) {
  const std::vector<float> l = {0.5f, 2.f, -1.f, 2.f, 1.9f};
  for (double u : {0.0, 0.5, 0.999}) EXPECT_EQ(cpu::sample(l.data(), 5, params(0.f), u), 1);
  const std::vector<float> neg = {-3.f, -2.f, -2.f};
  EXPECT_EQ(cpu::sample(neg.data(), 3, params(0.f), 0.3), 1);
}

TEST(Sample, TopKOneIsGreedy) {
  std::mt19937_64 rng(5);
  auto l = rand_floats(rng, 1000, -5.f, 5.f);
  const int32_t greedy = cpu::sample(l.data(), 1000, params(0.f), 0.0);
  for (double u : {0.0, 0.3, 0.999999})
    EXPECT_EQ(cpu::sample(l.data(), 1000, params(1.5f, 1), u), greedy);
}

TEST(Sample, TopKBreaksTiesByLowerId) {
  const std::vector<float> l = {1.f, 3.f, 3.f, 3.f, 0.f};  // k=2 keeps ids 1 and 2, never 3
  std::map<int, int> seen;
  for (int i = 0; i < 1000; ++i) ++seen[cpu::sample(l.data(), 5, params(1.f, 2), (i + 0.5) / 1000)];
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], 500);  // equal weights: half the u range each
  EXPECT_EQ(seen[2], 500);
}

TEST(Sample, TinyTopPKeepsOnlyTheMostLikely) {
  std::mt19937_64 rng(6);
  auto l = rand_floats(rng, 777, -4.f, 4.f);
  const int32_t greedy = cpu::sample(l.data(), 777, params(0.f), 0.0);
  for (double u : {0.0, 0.5, 0.999})
    EXPECT_EQ(cpu::sample(l.data(), 777, params(1.f, 0, 1e-6f), u), greedy);
}

TEST(Sample, TopPKeepsTheSmallestPrefixReachingP) {
  // Probabilities by id: 0.05, 0.3, 0.15, 0.5. top_p 0.75 keeps {3, 1} (0.5 + 0.3 >= 0.75).
  const std::vector<double> pr = {0.05, 0.3, 0.15, 0.5};
  std::vector<float> l;
  for (double x : pr) l.push_back(float(std::log(x)));
  const auto p = params(1.f, 0, 0.75f);
  // Inverse CDF in id order over the kept {1: 0.3/0.8, 3: 0.5/0.8}: id 1 below u = 0.375.
  EXPECT_EQ(cpu::sample(l.data(), 4, p, 0.0), 1);
  EXPECT_EQ(cpu::sample(l.data(), 4, p, 0.37), 1);
  EXPECT_EQ(cpu::sample(l.data(), 4, p, 0.38), 3);
  EXPECT_EQ(cpu::sample(l.data(), 4, p, 0.999), 3);
  // top_p 0.85 adds id 2 (cumulative 0.95): ids 1, 2, 3 all reachable, id 0 never.
  std::map<int, int> seen;
  for (int i = 0; i < 1000; ++i)
    ++seen[cpu::sample(l.data(), 4, params(1.f, 0, 0.85f), (i + 0.5) / 1000)];
  EXPECT_EQ(seen.count(0), 0u);
  EXPECT_EQ(seen.size(), 3u);
  // top-k first, then top-p over the renormalized top-k: k=2 leaves {3: 0.625, 1: 0.375}; p=0.6
  // keeps 3.
  for (double u : {0.0, 0.7, 0.99}) EXPECT_EQ(cpu::sample(l.data(), 4, params(1.f, 2, 0.6f), u), 3);
}

TEST(Sample, TopPStopsWhereTheCumulativeReachesPExactly) {
  const std::vector<float> l = {2.f, 2.f, 2.f, 2.f};  // 0.25 each: ids 0 and 1 reach 0.5 exactly
  std::map<int, int> seen;
  for (int i = 0; i < 1000; ++i)
    ++seen[cpu::sample(l.data(), 4, params(1.f, 0, 0.5f), (i + 0.5) / 1000)];
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], 500);
  EXPECT_EQ(seen[1], 500);
}

TEST(Sample, IsDeterministicAndMonotoneInU) {
  std::mt19937_64 rng(8);
  auto l = rand_floats(rng, 5000, -3.f, 3.f);
  const auto p = params(0.8f, 50, 0.9f);
  int32_t prev = -1;
  for (int i = 0; i < 2000; ++i) {
    const double u = i / 2000.0;
    const int32_t a = cpu::sample(l.data(), 5000, p, u);
    EXPECT_EQ(a, cpu::sample(l.data(), 5000, p, u));
    EXPECT_GE(a, prev);  // the inverse CDF walks kept ids in ascending order
    prev = a;
  }
}

// With temperature T the token frequencies over uniform u follow softmax(logits / T).
void expect_follows_softmax(float temperature) {
  const std::vector<float> l = {0.3f, -1.2f, 1.1f, 0.f, -0.4f};
  std::vector<double> prob(5);
  double z = 0;
  for (int i = 0; i < 5; ++i) z += (prob[i] = std::exp(l[i] / double(temperature)));
  for (auto& x : prob) x /= z;
  std::mt19937_64 rng(99);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  const int N = 20000;
  std::vector<int> count(5);
  for (int i = 0; i < N; ++i) ++count[cpu::sample(l.data(), 5, params(temperature), uni(rng))];
  double chi2 = 0;
  for (int i = 0; i < 5; ++i) chi2 += std::pow(count[i] - N * prob[i], 2) / (N * prob[i]);
  EXPECT_LT(chi2, 18.47) << "chi-square with 4 degrees of freedom above its 0.1% critical value";
}

TEST(Sample, FollowsSoftmaxAtTemperatureOne) { expect_follows_softmax(1.f); }
TEST(Sample, FollowsSoftmaxAtTemperatureHalf) { expect_follows_softmax(0.5f); }

TEST(Sample, RefusesBadParameters) {
  const std::vector<float> l = {0.1f, 0.2f};
  EXPECT_THROW(cpu::sample(l.data(), 2, params(-1.f), 0.5), Error);
  EXPECT_THROW(cpu::sample(l.data(), 2, params(1.f, -1), 0.5), Error);
  EXPECT_THROW(cpu::sample(l.data(), 2, params(1.f, 0, 0.f), 0.5), Error);
  EXPECT_THROW(cpu::sample(l.data(), 2, params(1.f), 1.0), Error);
  EXPECT_THROW(cpu::sample(l.data(), 0, params(0.f), 0.5), Error);
}

// What every rank of a vocab split would send: the concatenated local_top_k of each rank's slice of the
// row padded to a multiple of tp (padding ids are not tokens), as the CPU backend computes them.
void split_candidates(const std::vector<float>& row, int tp, int k, std::vector<float>& cl,
                      std::vector<int32_t>& ci) {
  const int64_t vocab = int64_t(row.size()), local = (vocab + tp - 1) / tp;
  cl.assign(size_t(tp) * k, 0.f);
  ci.assign(size_t(tp) * k, 0);
  for (int r = 0; r < tp; ++r) {
    const int64_t begin = r * local, n_valid = std::clamp<int64_t>(vocab - begin, 0, local);
    cpu::local_top_k(row.data() + begin, n_valid, begin, k, cl.data() + r * k, ci.data() + r * k);
  }
}

TEST(Sample, SplitChoosesWhatTheFullRowChooses) {
  std::mt19937_64 rng(11);
  const SamplingParams ps[] = {params(0.f),          params(1.f, 1),        params(0.7f, 40),
                               params(1.f, 40, 0.9f), params(1.3f, 2, 0.5f), params(0.9f, 1024, 0.95f),
                               params(1.f, 300, 1e-6f), params(2.f, 1000, 0.99f)};
  int trials = 0;
  for (int64_t vocab : {int64_t(37), int64_t(301), int64_t(4099)}) {
    for (int rep = 0; rep < 3; ++rep) {
      std::normal_distribution<float> nd(0.f, 2.f);
      std::vector<float> row(static_cast<size_t>(vocab));
      // rep 0: a coarse grid, so many logits tie and tie rules decide the cut
      for (auto& v : row) v = rep == 0 ? std::round(nd(rng)) : nd(rng);
      for (int tp : {1, 2, 3, 4, 8}) {
        const int64_t local = (vocab + tp - 1) / tp;
        std::vector<float> r = row;
        if (rep == 2)  // the row's maximum repeated on both sides of every rank boundary
          for (int b = 1; b < tp; ++b)
            if (b * local < vocab) r[b * local - 1] = r[b * local] = 9.f;
        for (const auto& p : ps) {
          std::vector<float> cl;
          std::vector<int32_t> ci;
          split_candidates(r, tp, cpu::split_top_k(p), cl, ci);
          if (p.temperature > 0.f) {  // speculative sampling's distribution from the candidates: the full row's, bit for bit
            std::vector<double> w;
            const std::vector<int32_t> kept = cpu::sampling_candidates(r.data(), vocab, p, w);
            const auto cw = cpu::candidate_weights(cl.data(), ci.data(), int64_t(cl.size()), vocab, p);
            ASSERT_EQ(cw.size(), kept.size()) << "vocab " << vocab << " tp " << tp << " k " << p.top_k;
            for (size_t j = 0; j < kept.size(); ++j) {
              ASSERT_EQ(cw[j].first, kept[j]);
              ASSERT_EQ(cw[j].second, w[size_t(kept[j])]);
            }
          }
          for (int i = 0; i < 40; ++i) {
            const double u = (i + 0.37) / 40;
            ASSERT_EQ(cpu::sample_from_candidates(cl.data(), ci.data(), int64_t(cl.size()), vocab, p, u),
                      cpu::sample(r.data(), vocab, p, u))
                << "vocab " << vocab << " rep " << rep << " tp " << tp << " T " << p.temperature << " k " << p.top_k
                << " p " << p.top_p << " u " << u;
            ++trials;
          }
        }
      }
    }
  }
  EXPECT_EQ(trials, 3 * 3 * 5 * 8 * 40);
}

TEST(Sample, SplitCandidateOrderDoesNotMatter) {
  std::mt19937_64 rng(12);
  const auto row = rand_floats(rng, 999, -3.f, 3.f);
  const auto p = params(0.8f, 50, 0.9f);
  std::vector<float> cl;
  std::vector<int32_t> ci;
  split_candidates(row, 3, 50, cl, ci);
  std::vector<size_t> perm(cl.size());
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<float> cl2;
  std::vector<int32_t> ci2;
  for (size_t j : perm) cl2.push_back(cl[j]), ci2.push_back(ci[j]);
  for (double u : {0.01, 0.4, 0.93})
    EXPECT_EQ(cpu::sample_from_candidates(cl2.data(), ci2.data(), int64_t(cl2.size()), 999, p, u),
              cpu::sample(row.data(), 999, p, u));
}

TEST(Sample, SplitLocalTopKRanksAndPads) {
  const std::vector<float> l = {1.f, 3.f, 2.f, 3.f, -1.f};
  std::vector<float> cl(7);
  std::vector<int32_t> ci(7);
  cpu::local_top_k(l.data(), 5, 100, 7, cl.data(), ci.data());
  EXPECT_EQ(ci, (std::vector<int32_t>{101, 103, 102, 100, 104, -1, -1}));
  EXPECT_EQ(cl[0], 3.f);
  EXPECT_EQ(cl[4], -1.f);
  EXPECT_TRUE(std::isinf(cl[6]) && cl[6] < 0);
  cpu::local_top_k(l.data(), 5, 0, 2, cl.data(), ci.data());
  EXPECT_EQ(ci[0], 1);
  EXPECT_EQ(ci[1], 3);
}

TEST(Sample, SplitWhichParametersSplit) {
  EXPECT_EQ(cpu::split_top_k(params(0.f)), 1);
  EXPECT_EQ(cpu::split_top_k(params(0.f, 5000)), 1);
  EXPECT_EQ(cpu::split_top_k(params(1.f, 40, 0.9f)), 40);
  EXPECT_EQ(cpu::split_top_k(params(1.f, cpu::kMaxSplitTopK)), cpu::kMaxSplitTopK);
  EXPECT_EQ(cpu::split_top_k(params(1.f, cpu::kMaxSplitTopK + 1)), 0);
  EXPECT_EQ(cpu::split_top_k(params(1.f, 0, 0.9f)), 0);
}

TEST(Sample, SplitRefusesCandidatesThatCannotHoldTheTopK) {
  const std::vector<float> cl = {2.f, 1.f, 0.5f};
  const std::vector<int32_t> ci = {4, 7, 4};
  EXPECT_THROW(cpu::sample_from_candidates(cl.data(), ci.data(), 2, 10, params(1.f, 3), 0.5), Error);  // 2 < 3
  EXPECT_THROW(cpu::sample_from_candidates(cl.data(), ci.data(), 3, 10, params(1.f, 3), 0.5), Error);  // id 4 twice
  EXPECT_THROW(cpu::sample_from_candidates(cl.data(), ci.data(), 3, 6, params(1.f, 3), 0.5), Error);   // id 7 >= 6
  EXPECT_THROW(cpu::sample_from_candidates(cl.data(), ci.data(), 3, 10, params(1.f, 0), 0.5), Error);  // no top-k
  EXPECT_THROW(cpu::sample_from_candidates(cl.data(), ci.data(), 2, 10, params(1.f, 2), 1.0), Error);  // u = 1
  EXPECT_EQ(cpu::sample_from_candidates(cl.data(), ci.data(), 2, 10, params(0.f), 0.5), 4);
}

}  // namespace
}  // namespace gf::test
