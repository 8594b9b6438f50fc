// Quantizer round trips: every format's error stays within its bound; layouts match weight_format.h.
#include <cmath>

#include "core/bf16.h"
#include "sharding/quantize.h"
#include "test_util.h"

namespace gf {
namespace {

TEST(Quantize, Bf16IsRoundToNearest) {
  auto w = test::random_floats(7 * 33, 1);
  HostWeight h = quantize(w.data(), 7, 33, {WeightFormat::BF16, 0});
  auto d = dequantize(h);
  for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(d[i], round_to_bf16(w[i]));
}

TEST(Quantize, Int8WithinHalfStep) {
  const int64_t R = 9, C = 70;
  auto w = test::random_floats(R * C, 2, 3.0f);
  for (int64_t c = 0; c < C; ++c) w[3 * C + c] = 0;  // an all-zero row: scale 0, no NaN
  HostWeight h = quantize(w.data(), R, C, {WeightFormat::INT8, 0});
  ASSERT_EQ(h.q.size(), size_t(R * C));
  ASSERT_EQ(h.scale.size(), size_t(R));
  auto d = dequantize(h);
  for (int64_t r = 0; r < R; ++r) {
    float s = bf16_to_float(h.scale[r]);
    for (int64_t c = 0; c < C; ++c) {
      float err = std::fabs(d[r * C + c] - w[r * C + c]);
      // half a step, plus the clamp when the bf16-rounded scale came out a little small
      ASSERT_LE(err, 0.5f * s + std::fabs(w[r * C + c]) * (1.0f / 128)) << r << "," << c;
      ASSERT_LE(std::abs(int(int8_t(h.q[r * C + c]))), 127);
    }
  }
  EXPECT_EQ(h.scale[3], 0);
}

class Int4 : public ::testing::TestWithParam<int> {};

TEST_P(Int4, WithinHalfStepRaggedLastGroup) {
  const int G = GetParam();
  const int64_t R = 5, C = 2 * G + 10;  // last group short
  auto w = test::random_floats(R * C, 3, 2.0f);
  for (float& x : w) x += 0.7f;  // asymmetric ranges exercise the zero point
  HostWeight h = quantize(w.data(), R, C, {WeightFormat::INT4, G});
  const int64_t ng = 3;
  ASSERT_EQ(h.view().n_groups(), ng);
  ASSERT_EQ(h.q.size(), size_t(R * C / 2));
  auto d = dequantize(h);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) {
      float s = bf16_to_float(h.scale[r * ng + c / G]), z = bf16_to_float(h.zero[r * ng + c / G]);
      float x = w[r * C + c];
      ASSERT_LE(std::fabs(d[r * C + c] - x), 0.5f * s + (std::fabs(z) + std::fabs(x)) / 128 + 1e-6f)
          << "G=" << G << " " << r << "," << c;
    }
  // Packing: element 2j in the low nibble, 2j+1 in the high one.
  int lo = h.q[0] & 0x0f, hi = h.q[0] >> 4;
  float s0 = bf16_to_float(h.scale[0]), z0 = bf16_to_float(h.zero[0]);
  EXPECT_FLOAT_EQ(d[0], lo * s0 + z0);
  EXPECT_FLOAT_EQ(d[1], hi * s0 + z0);
}
INSTANTIATE_TEST_SUITE_P(GroupSizes, Int4, ::testing::Values(32, 64, 128));

TEST(Quantize, RowsAreIndependent) {  // what lets the splitter quantize chunk by chunk
  const int64_t R = 6, C = 40;
  auto w = test::random_floats(R * C, 4);
  for (FormatSpec f : {FormatSpec{WeightFormat::INT8, 0}, FormatSpec{WeightFormat::INT4, 32}}) {
    HostWeight whole = quantize(w.data(), R, C, f), chunked = make_weight(f, R, C);
    quantize_rows(w.data() + 4 * C, 2, chunked, 4);
    quantize_rows(w.data(), 4, chunked, 0);
    EXPECT_EQ(whole.q, chunked.q);
    EXPECT_EQ(whole.scale, chunked.scale);
    EXPECT_EQ(whole.zero, chunked.zero);
  }
}

TEST(Quantize, ColumnCutsOfWholeRowQuantization) {
  const int64_t R = 4, C = 100;  // cuts at 0 / 64 (int4 groups of 32 and 64) and a ragged odd tail
  auto w = test::random_floats(R * C, 6);
  for (FormatSpec f : {FormatSpec{WeightFormat::BF16, 0}, FormatSpec{WeightFormat::INT8, 0},
                       FormatSpec{WeightFormat::INT4, 32}, FormatSpec{WeightFormat::INT4, 64}}) {
    SCOPED_TRACE(f.name());
    HostWeight whole = quantize(w.data(), R, C, f);
    auto ref = dequantize(whole);
    for (auto [c0, n] : {std::pair<int64_t, int64_t>{0, 64}, {64, 36}, {64, 35}}) {
      HostWeight cut = make_weight(f, R + 1, n);
      copy_cols(whole, c0, cut, 1);  // rows land one down
      auto d = dequantize(cut);
      for (int64_t r = 0; r < R; ++r) {
        for (int64_t c = 0; c < n; ++c) ASSERT_EQ(d[(r + 1) * n + c], ref[r * C + c0 + c]) << r << "," << c;
      }
      if (f.format == WeightFormat::INT4 && n % 2) {  // the unused high nibble of row 1's last byte
        EXPECT_EQ(cut.q[size_t(2 * ((n + 1) / 2) - 1)] >> 4, 0);
      }
    }
  }
}

}  // namespace
}  // namespace gf
