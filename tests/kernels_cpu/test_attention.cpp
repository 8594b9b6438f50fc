// attention: causal, GQA and MHA, at several positions, against a float64 softmax attention.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "core/error.h"
#include "kernel_test_util.h"
#include "kernels/cpu/cpu_ops.h"

namespace gf::test {
namespace {

// (n_heads, n_kv_heads, head_dim)
class AttentionTest : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(AttentionTest, MatchesFloat64Reference) {
  const auto [n_heads, n_kv, hd] = GetParam();
  const int64_t max_seq = 70, q_stride = (n_heads + 2 * n_kv) * hd;  // q inside qkv rows
  // Every cache slot holds random data, so a read past pos[m] changes the result and fails.
  std::mt19937_64 rng(100 + n_heads * 10 + n_kv + hd);
  auto k_cache = rand_floats(rng, n_kv * max_seq * hd, -2.f, 2.f);
  auto v_cache = rand_floats(rng, n_kv * max_seq * hd);
  const std::vector<std::vector<int32_t>> position_sets = {{0}, {69}, {30, 31, 32}, {5, 40, 12}};
  for (const auto& pos : position_sets) {
    const int M = int(pos.size());
    auto q = rand_floats(rng, M * q_stride, -2.f, 2.f);
    std::vector<float> out(M * n_heads * hd);
    cpu::attention(q.data(), M, q_stride, pos.data(), k_cache.data(), v_cache.data(), max_seq,
                   n_heads, n_kv, hd, out.data());
    std::vector<double> ref(out.size());
    for (int m = 0; m < M; ++m)
      for (int h = 0; h < n_heads; ++h) {
        const int kvh = h / (n_heads / n_kv);
        std::vector<double> s(pos[m] + 1);
        double mx = -1e300, sum = 0;
        for (int t = 0; t <= pos[m]; ++t) {
          double d = 0;
          for (int i = 0; i < hd; ++i)
            d += double(q[m * q_stride + h * hd + i]) * k_cache[(kvh * max_seq + t) * hd + i];
          s[t] = d / std::sqrt(double(hd));
          mx = std::max(mx, s[t]);
        }
        for (auto& e : s) sum += (e = std::exp(e - mx));
        for (int i = 0; i < hd; ++i) {
          double o = 0;
          for (int t = 0; t <= pos[m]; ++t) o += s[t] / sum * v_cache[(kvh * max_seq + t) * hd + i];
          ref[(m * n_heads + h) * hd + i] = o;
        }
      }
    expect_close(out, ref, 2e-6, 1e-5, "attention");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Heads, AttentionTest,
    ::testing::Values(std::make_tuple(4, 4, 64),    // MHA
                      std::make_tuple(8, 2, 40),    // GQA, head_dim not a multiple of 32
                      std::make_tuple(6, 1, 36),    // MQA
                      std::make_tuple(9, 3, 17)));  // odd head_dim

TEST(AttentionChecks, RefusesBadHeadsAndPositions) {
  std::vector<float> q(64, 0.5f), kv(4 * 8 * 8, 0.25f), out(64);
  const int32_t ok[] = {3}, past[] = {8};
  EXPECT_THROW(cpu::attention(q.data(), 1, 64, ok, kv.data(), kv.data(), 8, 6, 4, 8, out.data()),
               Error);
  EXPECT_THROW(cpu::attention(q.data(), 1, 64, past, kv.data(), kv.data(), 8, 8, 4, 8, out.data()),
               Error);
}

}  // namespace
}  // namespace gf::test
