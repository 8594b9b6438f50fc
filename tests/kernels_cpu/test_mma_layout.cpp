// Host emulation of the tensor-core GEMV (kernels/cuda/matmul_mma.cu), which no CI machine can run:
// every warp's lanes build their A and B fragments with mma_layout.h's functions as the kernel does
// (same loads, bit operations and bf16 arithmetic), the mma is computed from the fragments by the PTX
// m16n8k16 layout, and the C fragments land in the output as the kernel writes them. Checked against a
// float64 GEMV; every load is checked to stay inside its row.
#include <gtest/gtest.h>

#include <cfenv>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "kernels/cuda/mma_layout.h"
#include "tests/kernels_cpu/kernel_test_util.h"

namespace gf::test {
namespace {
namespace mma = gf::cuda::mma;
using Words = uint32_t[4];

// ---- The PTX figure, transcribed by hand for a few lanes (row, col) of A a0..a7, B b0..b3, C c0..c3.
TEST(MmaLayout, PtxFragmentsMatchTheIsaFigures) {
  // lane 0: g 0, t 0; lane 5: g 1, t 1; lane 31: g 7, t 3
  const int a_rc[3][8][2] = {{{0, 0}, {0, 1}, {8, 0}, {8, 1}, {0, 8}, {0, 9}, {8, 8}, {8, 9}},
                             {{1, 2}, {1, 3}, {9, 2}, {9, 3}, {1, 10}, {1, 11}, {9, 10}, {9, 11}},
                             {{7, 6}, {7, 7}, {15, 6}, {15, 7}, {7, 14}, {7, 15}, {15, 14}, {15, 15}}};
  const int b_k[3][4] = {{0, 1, 8, 9}, {2, 3, 10, 11}, {6, 7, 14, 15}};
  const int c_rc[3][4][2] = {{{0, 0}, {0, 1}, {8, 0}, {8, 1}}, {{1, 2}, {1, 3}, {9, 2}, {9, 3}},
                             {{7, 6}, {7, 7}, {15, 6}, {15, 7}}};
  const int lanes[3] = {0, 5, 31};
  for (int i = 0; i < 3; ++i) {
    const int l = lanes[i];
    for (int e = 0; e < 8; ++e) {
      EXPECT_EQ(mma::a_row(l, e), a_rc[i][e][0]) << "lane " << l << " a" << e;
      EXPECT_EQ(mma::a_col(l, e), a_rc[i][e][1]) << "lane " << l << " a" << e;
    }
    for (int e = 0; e < 4; ++e) {
      EXPECT_EQ(mma::b_row(l, e), b_k[i][e]) << "lane " << l << " b" << e;
      EXPECT_EQ(mma::b_col(l), mma::lane_g(l));
      EXPECT_EQ(mma::c_row(l, e), c_rc[i][e][0]) << "lane " << l << " c" << e;
      EXPECT_EQ(mma::c_col(l, e), c_rc[i][e][1]) << "lane " << l << " c" << e;
    }
  }
  // each fragment covers its matrix exactly once over the warp
  std::set<int> a, b, c;
  for (int l = 0; l < 32; ++l) {
    for (int e = 0; e < 8; ++e) a.insert(mma::a_row(l, e) * 16 + mma::a_col(l, e));
    for (int e = 0; e < 4; ++e) b.insert(mma::b_row(l, e) * 8 + mma::b_col(l)), c.insert(mma::c_row(l, e) * 8 + mma::c_col(l, e));
  }
  EXPECT_EQ(a.size(), 256u);
  EXPECT_EQ(b.size(), 128u);
  EXPECT_EQ(c.size(), 128u);
}

const WeightFormat kFormats[] = {WeightFormat::BF16, WeightFormat::INT8, WeightFormat::INT4};

TEST(MmaLayout, KOrderIsAPermutationOfEachChunk) {
  for (auto f : kFormats) {
    std::set<int> p, cols;
    for (int i = 0; i < 8; ++i) p.insert(mma::perm(f, i));
    EXPECT_EQ(p.size(), 8u);
    EXPECT_EQ(*p.rbegin(), 7);
    for (int s = 0; s < mma::steps(f); ++s)
      for (int kk = 0; kk < 16; ++kk) cols.insert(mma::chunk_col(f, s, kk));
    EXPECT_EQ(cols.size(), size_t(mma::chunk_cols(f)));
    EXPECT_EQ(*cols.rbegin(), mma::chunk_cols(f) - 1);
  }
}

// ---- Emulation.
struct Weight {
  WeightFormat f;
  int rows, cols, group;
  std::vector<uint8_t> q;         // the shard layout, row_bytes per row
  std::vector<uint16_t> scale, zero;
  int row_bytes() const { return int(weight_byte_of_col(f, cols)); }
  int n_groups() const { return f == WeightFormat::INT4 ? (cols + group - 1) / group : 1; }
  double at(int r, int c) const {  // the dequantized weight, exactly
    if (f == WeightFormat::BF16) return bf16_to_float(uint16_t(q[r * row_bytes() + 2 * c] | q[r * row_bytes() + 2 * c + 1] << 8));
    if (f == WeightFormat::INT8) return double(int8_t(q[r * row_bytes() + c])) * bf16_to_float(scale[r]);
    const uint8_t b = q[r * row_bytes() + c / 2];
    const int g = r * n_groups() + c / group;
    return double((c & 1) ? b >> 4 : b & 15) * bf16_to_float(scale[g]) + bf16_to_float(zero[g]);
  }
};

Weight random_weight(WeightFormat f, int rows, int cols, int group, std::mt19937_64& rng) {
  Weight w{f, rows, cols, group, {}, {}, {}};
  w.q.resize(size_t(rows) * w.row_bytes());
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : w.q) b = uint8_t(byte(rng));
  if (f == WeightFormat::BF16)  // random bytes would give Inf/NaN: draw values, store their bits
    for (size_t i = 0; i < w.q.size(); i += 2) {
      const uint16_t h = float_to_bf16(std::normal_distribution<float>(0.f, 0.05f)(rng));
      w.q[i] = uint8_t(h), w.q[i + 1] = uint8_t(h >> 8);
    }
  if (f == WeightFormat::INT8) w.scale = rand_bf16(rng, rows, 1e-4f, 4e-4f);
  if (f == WeightFormat::INT4) {
    w.scale = rand_bf16(rng, size_t(rows) * w.n_groups(), 0.002f, 0.01f);
    w.zero = rand_bf16(rng, size_t(rows) * w.n_groups(), -0.08f, -0.02f);
  }
  return w;
}

// bf16 fma with one round-to-nearest-even (as fma.rn.bf16x2): the exact value rounded to 8 bits.
uint16_t bf16_fma(uint16_t a, uint16_t b, uint16_t c) {
  const double v = double(bf16_to_float(a)) * bf16_to_float(b) + bf16_to_float(c);  // exact in double
  if (v == 0) return 0;
  int e;
  const double m = std::frexp(v, &e);  // |m| in [0.5, 1): 8 significant bits = m * 2^8
  std::fesetround(FE_TONEAREST);
  const float r = float(std::ldexp(std::nearbyint(std::ldexp(m, 8)), e - 8));  // exact in float
  return float_to_bf16(r);                                                      // exact: already 8 bits
}
uint16_t bf16_add_exact(uint16_t a, uint16_t b) {
  const float v = bf16_to_float(a) + bf16_to_float(b);
  EXPECT_EQ(bf16_to_float(float_to_bf16(v)), v) << "an add the kernel relies on being exact was not";
  return float_to_bf16(v);
}
uint32_t lo_hi(uint16_t lo, uint16_t hi) { return lo | uint32_t(hi) << 16; }

// The kernel's a_reg for one register, on the host.
uint32_t a_reg(WeightFormat f, const Words& w, int s, int hi, uint32_t s2, uint32_t z2) {
  const uint32_t b = mma::a_bits(f, w, s, hi);
  if (f == WeightFormat::BF16) return b;
  if (f == WeightFormat::INT8) {
    const uint32_t fix = mma::int8_fix(w, s, hi);
    return lo_hi(bf16_add_exact(uint16_t(b), uint16_t(fix)), bf16_add_exact(uint16_t(b >> 16), uint16_t(fix >> 16)));
  }
  const uint16_t m128 = 0xc300;  // the kernel's __hsub2(b, 128) is an add of -128
  const uint16_t q0 = bf16_add_exact(uint16_t(b), m128), q1 = bf16_add_exact(uint16_t(b >> 16), m128);
  return lo_hi(bf16_fma(q0, uint16_t(s2), uint16_t(z2)), bf16_fma(q1, uint16_t(s2 >> 16), uint16_t(z2 >> 16)));
}

// The whole launch, block by block and warp by warp (x: M rows of cols bf16; ks as the launcher would
// pick or forced to exercise the split). out: [M][rows] (double).
void emulate(const Weight& w, const std::vector<uint16_t>& x, int M, int ks, std::vector<double>& out) {
  const WeightFormat f = w.f;
  const int V = mma::per_load(f), W = mma::units_per_lane(f), KC = mma::chunk_cols(f), NT = M <= 8 ? 1 : 2;
  const int nc = (w.cols + KC - 1) / KC;
  out.assign(size_t(M) * w.rows, std::nan(""));
  std::vector<int> written(size_t(M) * w.rows, 0);
  const int row_tiles = (w.rows + 15) / 16;
  for (int rt = 0; rt < row_tiles; ++rt) {
    const int row0 = rt * 16;
    double acc[8][32][2][4] = {};  // [kw][lane][n-tile][c]
    for (int kw = 0; kw < ks; ++kw) {
      std::set<int> mine;
      for (int j = 0; j < mma::warp_chunks(nc, kw, ks); ++j) mine.insert(mma::warp_chunk(kw, j, ks));
      for (int c : mine) {
        // every lane's loads: rows g and g + 8 (clamped), 16 bytes from column t * V of the chunk
        Words wl[32][2];
        uint32_t s2[32][2] = {}, z2[32][2] = {};
        bool ok[32];
        for (int l = 0; l < 32; ++l) {
          const int t = mma::lane_t(l), col = c * KC + t * V;
          ok[l] = col < w.cols;
          for (int r = 0; r < 2; ++r) {
            const int row = std::min(row0 + mma::lane_g(l) + 8 * r, w.rows - 1);
            std::memset(wl[l][r], 0, 16);
            if (!ok[l]) continue;
            const int64_t off = int64_t(row) * w.row_bytes() + weight_byte_of_col(f, col);
            ASSERT_LE(weight_byte_of_col(f, col) + 16, w.row_bytes()) << "load past the row end";
            std::memcpy(wl[l][r], &w.q[off], 16);  // little-endian words, as on the GPU
            if (f == WeightFormat::INT4) {
              const int g = row * w.n_groups() + col / w.group;
              ASSERT_EQ((col + 31) / w.group, col / w.group) << "a load straddles two groups";
              s2[l][r] = w.scale[g] * 0x10001u, z2[l][r] = w.zero[g] * 0x10001u;
            }
          }
        }
        for (int i = 0; i < W; ++i) {
          // every lane's B octet per n-tile: its token row (clamped to M - 1), permuted in registers
          Words xb[32][2];
          for (int n = 0; n < NT; ++n)
            for (int l = 0; l < 32; ++l) {
              Words o = {0, 0, 0, 0};
              if (ok[l]) {
                const int64_t col = mma::lane_col(f, c, mma::lane_t(l), i);
                ASSERT_LE(col + 8, w.cols) << "x read past the row end";
                const size_t at = size_t(std::min(n * 8 + mma::lane_g(l), M - 1)) * w.cols + size_t(col);
                for (int j = 0; j < 4; ++j) o[j] = lo_hi(x[at + 2 * j], x[at + 2 * j + 1]);
              }
              for (int j = 0; j < 4; ++j) xb[l][n][j] = mma::permuted_word(f, o, j);
            }
          for (int s = 2 * i; s < 2 * i + 2; ++s) {
            // fragments -> matrices by the PTX layout
            double A[16][16], B[2][16][8];
            for (int l = 0; l < 32; ++l) {
              const uint32_t af[4] = {a_reg(f, wl[l][0], s, 0, s2[l][0], z2[l][0]), a_reg(f, wl[l][1], s, 0, s2[l][1], z2[l][1]),
                                      a_reg(f, wl[l][0], s, 1, s2[l][0], z2[l][0]), a_reg(f, wl[l][1], s, 1, s2[l][1], z2[l][1])};
              for (int e = 0; e < 8; ++e) A[mma::a_row(l, e)][mma::a_col(l, e)] = bf16_to_float(uint16_t(af[e / 2] >> (16 * (e & 1))));
              for (int n = 0; n < NT; ++n) {
                const uint32_t bf[2] = {xb[l][n][mma::b_word(s, 0)], xb[l][n][mma::b_word(s, 1)]};
                for (int e = 0; e < 4; ++e) B[n][mma::b_row(l, e)][mma::b_col(l)] = bf16_to_float(uint16_t(bf[e / 2] >> (16 * (e & 1))));
              }
            }
            for (int n = 0; n < NT; ++n)
              for (int l = 0; l < 32; ++l)
                for (int e = 0; e < 4; ++e) {
                  double d = 0;
                  for (int k = 0; k < 16; ++k) d += A[mma::c_row(l, e)][k] * B[n][k][mma::c_col(l, e)];
                  acc[kw][l][n][e] += d;
                }
          }
        }
      }
    }
    // split-K sum and the epilogue's writes
    for (int l = 0; l < 32; ++l)
      for (int n = 0; n < NT; ++n)
        for (int e = 0; e < 4; ++e) {
          double r = 0;
          for (int kw = 0; kw < ks; ++kw) r += acc[kw][l][n][e];
          const int row = row0 + mma::c_row(l, e), m = n * 8 + mma::c_col(l, e);
          if (row >= w.rows || m >= M) continue;
          if (w.f == WeightFormat::INT8) r *= bf16_to_float(w.scale[row]);
          out[size_t(m) * w.rows + row] = r;
          ++written[size_t(m) * w.rows + row];
        }
  }
  for (size_t i = 0; i < written.size(); ++i) EXPECT_EQ(written[i], 1) << "output " << i << " written " << written[i] << " times";
}

double rel_norm(const std::vector<double>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) num += (got[i] - ref[i]) * (got[i] - ref[i]), den += ref[i] * ref[i];
  return std::sqrt(num / den);  // NaN in got gives NaN: fails every <=
}

struct Case {
  WeightFormat f;
  int rows, cols, group, ks;
};

TEST(MmaLayout, WarpEmulationMatchesFloat64Gemv) {
  std::mt19937_64 rng(12345);
  // rows 37: a partial row tile; cols with a partial last chunk (bf16 200, int8 208, int4 576 and 1376)
  const Case cases[] = {
      {WeightFormat::BF16, 37, 200, 0, 1},   {WeightFormat::BF16, 37, 200, 0, 4},
      {WeightFormat::BF16, 16, 1376, 0, 8},  {WeightFormat::INT8, 37, 208, 0, 1},
      {WeightFormat::INT8, 37, 208, 0, 2},   {WeightFormat::INT8, 21, 1376, 0, 8},
      {WeightFormat::INT4, 37, 576, 32, 1},  {WeightFormat::INT4, 37, 576, 64, 2},
      {WeightFormat::INT4, 19, 1376, 128, 4}, {WeightFormat::INT4, 33, 1376, 32, 8},
  };
  for (const Case& c : cases)
    for (int M : {1, 3, 8, 9, 16}) {
      SCOPED_TRACE("format " + std::to_string(int(c.f)) + " " + std::to_string(c.rows) + "x" + std::to_string(c.cols) +
                   " group " + std::to_string(c.group) + " ks " + std::to_string(c.ks) +
                   " M=" + std::to_string(M));
      const Weight w = random_weight(c.f, c.rows, c.cols, c.group, rng);
      const std::vector<uint16_t> x = rand_bf16(rng, size_t(M) * c.cols);
      std::vector<double> got;
      emulate(w, x, M, c.ks, got);
      if (HasFatalFailure()) return;
      std::vector<double> ref(got.size()), ref_rounded(got.size());
      for (int m = 0; m < M; ++m)
        for (int r = 0; r < c.rows; ++r) {
          double s = 0, sr = 0;
          for (int k = 0; k < c.cols; ++k) {
            const double xv = bf16_to_float(x[size_t(m) * c.cols + k]), wv = w.at(r, k);
            s += wv * xv, sr += double(round_to_bf16(float(wv))) * xv;  // int4: the kernel's bf16 weight
          }
          ref[size_t(m) * c.rows + r] = s, ref_rounded[size_t(m) * c.rows + r] = sr;
        }
      // bf16/int8 enter the mma exactly: only summation order differs. int4 is the bf16-rounded weight
      // exactly, and within one bf16 rounding per weight (2^-9) of the true product.
      if (c.f == WeightFormat::INT4) {
        EXPECT_LE(rel_norm(got, ref_rounded), 1e-12);
        EXPECT_LE(rel_norm(got, ref), 3e-3);
      } else {
        EXPECT_LE(rel_norm(got, ref), 1e-12);
      }
    }
}

}  // namespace
}  // namespace gf::test
