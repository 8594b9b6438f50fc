// matmul: out[M, rows] = x[M, cols] · Wᵀ for bf16 / int8 / int4 weights, dequantized on the fly.
// Each thread owns whole output rows and reads every weight row once for all M tokens: a row is
// dequantized chunk by chunk into an L1-sized fp32 buffer, then dotted with each token's slice.
#include <algorithm>
#include <vector>

#include "core/bf16.h"
#include "core/error.h"
#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/cpu_ops.h"

namespace gf::cpu {
namespace {

constexpr int64_t kChunk = 512;  // columns per dequantized chunk: 2 KiB of fp32, stays in L1

// buf[i] = int8 q[i] as float (the row's scale is applied once to the finished dot products).
void int8_to_float(const int8_t* q, int64_t n, float* buf) {
  int64_t i = 0;
#ifdef __AVX2__
  for (; i + 8 <= n; i += 8) {
    __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
    _mm256_storeu_ps(buf + i, _mm256_cvtepi32_ps(v));
  }
#endif
  for (; i < n; ++i) buf[i] = float(q[i]);
}

// buf[i] = nibble(i) * s + z for n columns from an even column (two per byte, even ones in the low
// nibble).
void int4_to_float(const uint8_t* q, int64_t n, float s, float z, float* buf) {
  int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
  const __m128i low4 = _mm_set1_epi8(0x0f);
  const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(z);
  auto put8 = [&](__m128i bytes, float* dst) {  // 8 nibble values (low 8 bytes) -> 8 floats
    _mm256_storeu_ps(dst, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)), vs, vz));
  };
  for (; i + 32 <= n; i += 32) {  // 16 bytes -> 32 columns
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i / 2));
    __m128i lo = _mm_and_si128(b, low4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), low4);
    __m128i c0 = _mm_unpacklo_epi8(lo, hi), c1 = _mm_unpackhi_epi8(lo, hi);  // columns in order
    put8(c0, buf + i);
    put8(_mm_srli_si128(c0, 8), buf + i + 8);
    put8(c1, buf + i + 16);
    put8(_mm_srli_si128(c1, 8), buf + i + 24);
  }
  for (; i + 16 <= n; i += 16) {  // 8 bytes -> 16 columns
    __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i / 2));
    __m128i cols =
        _mm_unpacklo_epi8(_mm_and_si128(b, low4), _mm_and_si128(_mm_srli_epi16(b, 4), low4));
    put8(cols, buf + i);
    put8(_mm_srli_si128(cols, 8), buf + i + 8);
  }
#endif
  for (; i + 1 < n; i += 2) {
    uint8_t b = q[i / 2];
    buf[i] = float(b & 15) * s + z;
    buf[i + 1] = float(b >> 4) * s + z;
  }
  if (i < n)
    buf[i] = float(q[i / 2] & 15) * s + z;  // odd cols: the row's last byte holds one column
}

// Dequantizes columns [c0, c0+n) of row r into buf; returns the factor the dot products still need.
float dequant_chunk(const QWeightView& w, int64_t r, int64_t c0, int64_t n, float* buf) {
  switch (w.format) {
    case WeightFormat::BF16:
      detail::bf16_row_to_float(static_cast<const uint16_t*>(w.q) + r * w.cols + c0, n, buf);
      return 1.f;
    case WeightFormat::INT8:
      int8_to_float(static_cast<const int8_t*>(w.q) + r * w.cols + c0, n, buf);
      return bf16_to_float(w.scale[r]);
    case WeightFormat::INT4: {
      const uint8_t* row =
          static_cast<const uint8_t*>(w.q) + r * ((w.cols + 1) / 2);  // odd cols round up
      const int64_t ng = w.n_groups();
      // One segment per quantization group the chunk touches (one division per chunk: idiv is
      // slow).
      for (int64_t c = c0, g = c0 / w.group_size; c < c0 + n; ++g) {
        const int64_t end = std::min((g + 1) * w.group_size, c0 + n);
        int4_to_float(row + c / 2, end - c, bf16_to_float(w.scale[r * ng + g]),
                      bf16_to_float(w.zero[r * ng + g]), buf + (c - c0));
        c = end;
      }
      return 1.f;
    }
  }
  return 1.f;
}

void check_view(const QWeightView& w) {
  GF_CHECK(w.rows > 0 && w.cols > 0, "matmul: weight shape (", w.rows, ", ", w.cols,
           ") must be positive");
  GF_CHECK(w.q != nullptr, "matmul: weight q is null");
  if (w.format == WeightFormat::BF16) return;
  GF_CHECK(w.scale != nullptr, "matmul: quantized weight has no scale");
  if (w.format == WeightFormat::INT8) return;
  GF_CHECK(w.zero != nullptr, "matmul: int4 weight has no zero");
  // Even groups start on a byte boundary, which the nibble unpacking relies on.
  GF_CHECK(w.group_size > 0 && w.group_size % 2 == 0, "matmul: int4 group_size ", w.group_size,
           " must be positive and even");
}

}  // namespace

void matmul(const float* x, int M, const QWeightView& w, float* out) {
  check_view(w);
  GF_CHECK(M >= 0, "matmul: M ", M, " must be >= 0");
  if (M == 0) return;
#pragma omp parallel
  {
    std::vector<float> buf(kChunk), acc(M);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < w.rows; ++r) {
      std::fill(acc.begin(), acc.end(), 0.f);
      float factor = 1.f;
      for (int64_t c0 = 0; c0 < w.cols; c0 += kChunk) {
        const int64_t n = std::min(kChunk, w.cols - c0);
        factor = dequant_chunk(w, r, c0, n, buf.data());
        for (int m = 0; m < M; ++m) acc[m] += detail::dot(buf.data(), x + m * w.cols + c0, n);
      }
      for (int m = 0; m < M; ++m) out[m * w.rows + r] = acc[m] * factor;
    }
  }
}

}  // namespace gf::cpu
