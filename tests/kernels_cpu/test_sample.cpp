// sample: greedy ties, top-k / top-p edge cases, determinism, and a chi-square check against
// softmax.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

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

}  // namespace
}  // namespace gf::test
