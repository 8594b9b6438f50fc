// embed, rmsnorm, add_rmsnorm, add, silu_mul, rope, kv_write and round_kv_int8 against float64 references.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "kernel_test_util.h"
#include "kernels/cpu/cpu_ops.h"

namespace gf::test {
namespace {

std::vector<double> rmsnorm_ref(const std::vector<float>& x, const std::vector<uint16_t>& w, int M,
                                int64_t dim, float eps) {
  std::vector<double> out(x.size());
  for (int m = 0; m < M; ++m) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(x[m * dim + i]) * x[m * dim + i];
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t i = 0; i < dim; ++i) out[m * dim + i] = x[m * dim + i] * inv * bf16_to_float(w[i]);
  }
  return out;
}

TEST(Embed, CopiesBf16RowsExactly) {
  std::mt19937_64 rng(1);
  const int64_t vocab = 50, dim = 37;
  auto table = rand_bf16(rng, vocab * dim);
  std::vector<int32_t> ids = {49, 0, 17, 17, 3};
  std::vector<float> x(ids.size() * dim);
  cpu::embed(ids.data(), int(ids.size()), table.data(), vocab, dim, x.data());
  for (size_t m = 0; m < ids.size(); ++m)
    for (int64_t i = 0; i < dim; ++i)
      ASSERT_EQ(x[m * dim + i], bf16_to_float(table[ids[m] * dim + i]));
  const int32_t bad[] = {3, 50};
  EXPECT_THROW(cpu::embed(bad, 2, table.data(), vocab, dim, x.data()), Error);
  const int32_t neg[] = {-1};
  EXPECT_THROW(cpu::embed(neg, 1, table.data(), vocab, dim, x.data()), Error);
}

TEST(Rmsnorm, MatchesReferenceAndMayAlias) {
  for (int M : {1, 3, 17})
    for (int64_t dim : {7, 576, 1001}) {
      std::mt19937_64 rng(10 + M + dim);
      auto x = rand_floats(rng, M * dim, -3.f, 3.f);
      auto w = rand_bf16(rng, dim, 0.5f, 1.5f);
      const auto ref = rmsnorm_ref(x, w, M, dim, 1e-5f);
      std::vector<float> out(x.size());
      cpu::rmsnorm(x.data(), w.data(), M, dim, 1e-5f, out.data());
      expect_close(out, ref, 1e-6, 1e-5, "rmsnorm");
      cpu::rmsnorm(x.data(), w.data(), M, dim, 1e-5f, x.data());  // in place
      expect_close(x, ref, 1e-6, 1e-5, "rmsnorm in place");
    }
}

TEST(AddRmsnorm, UpdatesResidualAndNormalizes) {
  for (int M : {1, 3, 17}) {
    const int64_t dim = 333;
    std::mt19937_64 rng(20 + M);
    auto x = rand_floats(rng, M * dim), delta = rand_floats(rng, M * dim);
    auto w = rand_bf16(rng, dim, 0.5f, 1.5f);
    std::vector<float> sum(x.size());
    std::vector<double> sum_ref(x.size());
    for (size_t i = 0; i < x.size(); ++i)
      sum_ref[i] = sum[i] = x[i] + delta[i];  // fp32 add is exact enough
    const auto ref = rmsnorm_ref(sum, w, M, dim, 1e-6f);
    std::vector<float> out(x.size());
    cpu::add_rmsnorm(x.data(), delta.data(), w.data(), M, dim, 1e-6f, out.data());
    expect_close(x, sum_ref, 0, 0, "residual");
    expect_close(out, ref, 1e-6, 1e-5, "normalized");
  }
}

TEST(Add, AddsElementwise) {
  std::mt19937_64 rng(3);
  const int M = 17, dim = 4099;  // past the threading threshold
  auto x = rand_floats(rng, M * dim), d = rand_floats(rng, M * dim);
  std::vector<double> ref(x.size());
  for (size_t i = 0; i < x.size(); ++i) ref[i] = double(x[i]) + d[i];
  cpu::add(x.data(), d.data(), M, dim);
  expect_close(x, ref, 1e-7, 1e-7, "add");
}

TEST(SiluMul, GatesTheUpProjection) {
  for (int M : {1, 3, 17}) {
    const int64_t hidden = 1537;
    std::mt19937_64 rng(40 + M);
    auto h13 = rand_floats(rng, M * 2 * hidden, -6.f, 6.f);
    std::vector<float> out(M * hidden);
    cpu::silu_mul(h13.data(), M, hidden, out.data());
    std::vector<double> ref(out.size());
    for (int m = 0; m < M; ++m)
      for (int64_t i = 0; i < hidden; ++i) {
        const double g = h13[m * 2 * hidden + i], u = h13[m * 2 * hidden + hidden + i];
        ref[m * hidden + i] = g / (1 + std::exp(-g)) * u;
      }
    expect_close(out, ref, 1e-6, 1e-5, "silu_mul");
  }
}

TEST(Rope, RotatesHalfPairsAndLeavesTheRestAlone) {
  const int64_t n_heads = 3, head_dim = 40,
                stride = n_heads * head_dim + 13;  // rows wider than the heads
  std::vector<double> inv_freq(head_dim / 2);
  for (int64_t i = 0; i < head_dim / 2; ++i) inv_freq[i] = std::pow(500000.0, -2.0 * i / head_dim);
  for (int M : {1, 3, 17}) {
    std::mt19937_64 rng(50 + M);
    auto x = rand_floats(rng, M * stride);
    std::vector<int32_t> pos(M);
    for (int m = 0; m < M; ++m)
      pos[m] = m == 0 ? 0 : int32_t(rng() % 131072);  // long-context angles too
    std::vector<double> ref(x.begin(), x.end());
    for (int m = 0; m < M; ++m)
      for (int64_t h = 0; h < n_heads; ++h)
        for (int64_t i = 0; i < head_dim / 2; ++i) {
          const int64_t a = m * stride + h * head_dim + i, b = a + head_dim / 2;
          const double ang = pos[m] * inv_freq[i];
          ref[a] = x[a] * std::cos(ang) - double(x[b]) * std::sin(ang);
          ref[b] = x[b] * std::cos(ang) + double(x[a]) * std::sin(ang);
        }
    cpu::rope(x.data(), M, stride, n_heads, head_dim, pos.data(), inv_freq.data());
    expect_close(x, ref, 1e-6, 1e-5, "rope");
  }
}

TEST(KvWrite, StoresEachTokenAtItsPosition) {
  const int64_t n_kv = 2, hd = 12, max_seq = 9,
                stride = 3 * n_kv * hd;  // k, v inside wider qkv rows
  std::mt19937_64 rng(60);
  auto k_cache = rand_floats(rng, n_kv * max_seq * hd),
       v_cache = rand_floats(rng, n_kv * max_seq * hd);
  const auto k0 = k_cache, v0 = v_cache;
  const int M = 3;
  auto qkv = rand_floats(rng, M * stride);
  const int32_t pos[M] = {4, 5, 8};
  cpu::kv_write(qkv.data(), qkv.data() + n_kv * hd, M, stride, pos, n_kv, hd, max_seq,
                k_cache.data(), v_cache.data());
  for (int64_t h = 0; h < n_kv; ++h)
    for (int64_t t = 0; t < max_seq; ++t)
      for (int64_t d = 0; d < hd; ++d) {
        const int64_t c = (h * max_seq + t) * hd + d;
        float wk = k0[c], wv = v0[c];
        for (int m = 0; m < M; ++m)
          if (pos[m] == t) {
            wk = qkv[m * stride + h * hd + d];
            wv = qkv[m * stride + n_kv * hd + h * hd + d];
          }
        ASSERT_EQ(k_cache[c], wk) << "h=" << h << " t=" << t << " d=" << d;
        ASSERT_EQ(v_cache[c], wv) << "h=" << h << " t=" << t << " d=" << d;
      }
  const int32_t past[] = {9};
  EXPECT_THROW(cpu::kv_write(qkv.data(), qkv.data(), 1, stride, past, n_kv, hd, max_seq,
                             k_cache.data(), v_cache.data()),
               Error);
}

// Each value becomes the nearest of the 255 multiples q * s (|q| <= 127) of s = max|x| / 127, in float64.
TEST(RoundKvInt8, NearestOf255StepsOfTheRowsMax) {
  std::mt19937_64 rng(61);
  for (int64_t n : {64, 128, 7}) {
    for (float range : {0.01f, 1.f, 300.f}) {
      auto x = rand_floats(rng, n, -range, range);
      const auto x0 = x;
      cpu::round_kv_int8(x.data(), n);
      double amax = 0;
      for (float v : x0) amax = std::max(amax, std::fabs(double(v)));
      const double s = amax / 127;
      for (int64_t i = 0; i < n; ++i) {
        const double q = double(x[i]) / s;
        EXPECT_NEAR(q, std::round(q), 1e-3) << "not a multiple of the step, i=" << i;
        EXPECT_LE(std::fabs(std::round(q)), 127.0);
        EXPECT_LE(std::fabs(double(x[i]) - x0[i]), s * (0.5 + 1e-4)) << "not the nearest step, i=" << i;
      }
    }
  }
  std::vector<float> zeros(16, 0.f);
  cpu::round_kv_int8(zeros.data(), 16);
  for (float v : zeros) EXPECT_EQ(v, 0.f);
}

}  // namespace
}  // namespace gf::test
