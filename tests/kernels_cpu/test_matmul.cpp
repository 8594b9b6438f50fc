// matmul in each weight format against a float64 matmul over the dequantized weights.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>
#include <tuple>

#include "core/error.h"
#include "kernel_test_util.h"
#include "kernels/cpu/cpu_ops.h"

namespace gf::test {
namespace {

// A random weight in one format, its view, and its dequantized value in double.
struct TestWeight {
  std::vector<uint8_t> q;
  std::vector<uint16_t> scale, zero;
  std::vector<double> deq;  // (rows, cols)
  QWeightView view;
};

TestWeight make_weight(std::mt19937_64& rng, WeightFormat f, int64_t rows, int64_t cols,
                       int group) {
  TestWeight t;
  t.view.format = f;
  t.view.rows = rows;
  t.view.cols = cols;
  t.view.group_size = group;
  t.deq.resize(rows * cols);
  if (f == WeightFormat::BF16) {
    auto w = rand_bf16(rng, rows * cols);
    t.q.resize(w.size() * 2);
    std::memcpy(t.q.data(), w.data(), t.q.size());
    for (int64_t i = 0; i < rows * cols; ++i) t.deq[i] = bf16_to_float(w[i]);
  } else if (f == WeightFormat::INT8) {
    std::uniform_int_distribution<int> d(-127, 127);
    t.q.resize(rows * cols);
    for (auto& b : t.q) b = uint8_t(int8_t(d(rng)));
    t.scale = rand_bf16(rng, rows, 0.002f, 0.02f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        t.deq[r * cols + c] = double(int8_t(t.q[r * cols + c])) * bf16_to_float(t.scale[r]);
  } else {
    std::uniform_int_distribution<int> d(0, 255);
    const int64_t row_bytes = (cols + 1) / 2;  // odd cols: the last byte of a row holds one column
    t.q.resize(rows * row_bytes);
    for (auto& b : t.q) b = uint8_t(d(rng));
    const int64_t ng = t.view.n_groups();
    t.scale = rand_bf16(rng, rows * ng, 0.01f, 0.1f);
    t.zero = rand_bf16(rng, rows * ng, -0.5f, 0.5f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const uint8_t b = t.q[r * row_bytes + c / 2];
        const int nib = c % 2 == 0 ? b & 15 : b >> 4;  // even column in the low nibble
        const int64_t g = r * ng + c / group;
        t.deq[r * cols + c] = nib * double(bf16_to_float(t.scale[g])) + bf16_to_float(t.zero[g]);
      }
  }
  t.view.q = t.q.data();
  t.view.scale = t.scale.empty() ? nullptr : t.scale.data();
  t.view.zero = t.zero.empty() ? nullptr : t.zero.data();
  return t;
}

// (format, rows, cols, int4 group size, M)
using Case = std::tuple<WeightFormat, int64_t, int64_t, int, int>;

class MatmulTest : public ::testing::TestWithParam<Case> {};

TEST_P(MatmulTest, MatchesFloat64OverDequantizedWeights) {
  const auto [f, rows, cols, group, M] = GetParam();
  std::mt19937_64 rng(1234 + rows * 7 + cols * 13 + M);
  TestWeight w = make_weight(rng, f, rows, cols, group);
  auto x = rand_floats(rng, size_t(M) * cols);
  std::vector<float> out(size_t(M) * rows,
                         std::numeric_limits<float>::quiet_NaN());  // unwritten → NaN → fail
  cpu::matmul(x.data(), M, w.view, out.data());
  for (int m = 0; m < M; ++m)
    for (int64_t r = 0; r < rows; ++r) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < cols; ++c) {
        ref += double(x[m * cols + c]) * w.deq[r * cols + c];
        mag += std::fabs(double(x[m * cols + c]) * w.deq[r * cols + c]);
      }
      // fp32 accumulation error grows with the summed magnitude, not with |ref| (which may cancel).
      const std::string what = "out[m=" + std::to_string(m) + "][r=" + std::to_string(r) + "]";
      expect_close(&out[m * rows + r], &ref, 1, 1e-5 * mag + 1e-7, 1e-5, what.c_str());
    }
}

std::vector<Case> cases() {
  std::vector<Case> c;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {37, 100}, {5, 120}, {64, 256}, {19, 1000}, {7, 1030}};
  for (int M : {1, 3, 17})
    for (auto [rows, cols] : shapes) {
      c.emplace_back(WeightFormat::BF16, rows, cols + 1, 0, M);  // odd cols: vector tails
      c.emplace_back(WeightFormat::INT8, rows, cols + 3, 0, M);
      for (int g : {32, 64, 128})
        c.emplace_back(WeightFormat::INT4, rows, cols, g, M);     // ragged last groups
      c.emplace_back(WeightFormat::INT4, rows, cols + 1, 32, M);  // odd cols
    }
  // Decode and speculative verify (M <= 8) read weights in registers, int4 in 64-column blocks:
  // every M, shapes with no block (40), whole blocks only (576, SmolLM2's dim), blocks plus a
  // ragged tail, and a group size (16) that takes the portable path.
  const std::vector<std::pair<int64_t, int64_t>> small = {{6, 40}, {9, 576}, {23, 1000}, {11, 201}};
  for (int M = 1; M <= 8; ++M)
    for (auto [rows, cols] : small) {
      for (int g : {32, 64, 128}) c.emplace_back(WeightFormat::INT4, rows, cols, g, M);
      c.emplace_back(WeightFormat::INT4, rows, cols, 16, M);
      if (M == 1 || M == 2 || M == 6 || M == 8) {
        c.emplace_back(WeightFormat::BF16, rows, cols, 0, M);
        c.emplace_back(WeightFormat::INT8, rows, cols, 0, M);
      }
    }
  return c;
}

std::string case_name(const ::testing::TestParamInfo<Case>& i) {
  const auto [f, rows, cols, group, M] = i.param;
  const char* fn = f == WeightFormat::BF16 ? "bf16" : f == WeightFormat::INT8 ? "int8" : "int4g";
  return std::string(fn) + (group ? std::to_string(group) : "") + "_" + std::to_string(rows) + "x" +
         std::to_string(cols) + "_M" + std::to_string(M);
}

INSTANTIATE_TEST_SUITE_P(Formats, MatmulTest, ::testing::ValuesIn(cases()), case_name);

TEST(MatmulChecks, RefusesMalformedViews) {
  std::mt19937_64 rng(7);
  TestWeight w = make_weight(rng, WeightFormat::INT4, 4, 64, 32);
  std::vector<float> x(64, 0.5f), out(4);
  QWeightView odd_group = w.view;
  odd_group.group_size = 31;
  EXPECT_THROW(cpu::matmul(x.data(), 1, odd_group, out.data()), Error);
  QWeightView no_zero = w.view;
  no_zero.zero = nullptr;
  EXPECT_THROW(cpu::matmul(x.data(), 1, no_zero, out.data()), Error);
  QWeightView bad_group = w.view;
  bad_group.group_size = 0;
  EXPECT_THROW(cpu::matmul(x.data(), 1, bad_group, out.data()), Error);
}

}  // namespace
}  // namespace gf::test
