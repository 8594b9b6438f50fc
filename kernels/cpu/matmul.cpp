// matmul: out[M, rows] = x[M, cols] · Wᵀ for bf16 / int8 / int4 weights, dequantized on the fly.
// Each thread owns whole output rows and reads every weight row once for all M tokens.
// Decode (M = 1) is bound by weight bandwidth, or by the instructions that turn weights into
// floats: rows are read in place and converted in registers (int4: 8 nibbles per int32 lane,
// against x reordered once per call to match, zeros folded in through per-group sums of x).
// int4 keeps that path up to kSmallM tokens (a speculative verify). A batch (prefill, verify,
// perplexity) is bound by FMA throughput: a register tile of kTileRows rows x kTileToks tokens
// loads each weight vector once per kTileToks tokens and each x vector once per kTileRows rows
// (2-2.5x the FLOP rate of per-token dots on one Zen 4 core; see tests/bench/bench_cpu_matmul).
// Without AVX2+FMA (or an int4 group size other than 32/64/128) rows are dequantized chunk by
// chunk into an L1-sized buffer and dotted with each token: the portable path.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "core/bf16.h"
#include "core/error.h"
#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/cpu_ops.h"

namespace gf::cpu {
namespace {

constexpr int64_t kChunk = 512;  // decode: columns per dequantized chunk, 2 KiB of fp32 in L1

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
[[gnu::always_inline]] inline float dequant_chunk(const QWeightView& w, int64_t r, int64_t c0,
                                                  int64_t n, float* buf) {
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

// Decode and the portable path: one weight row at a time, dotted with each token.
void matmul_rows(const float* x, int M, const QWeightView& w, float* out) {
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

#if defined(__AVX2__) && defined(__FMA__)
// The register tile: kTileRows x kTileToks accumulators + kTileRows weight vectors + one x vector.
// AVX-512VL gives the compiler 32 vector registers (4x6 + 4 + 1); plain AVX2 has 16 (3x4 + 3 + 1).
#ifdef __AVX512VL__
constexpr int kTileRows = 4, kTileToks = 6;
#else
constexpr int kTileRows = 3, kTileToks = 4;
#endif
// Longest column chunk: kTileRows weight rows plus kTileToks x slices, 4 KiB each, stay in L1.
constexpr int64_t kMaxTileChunk = 1024;

// A float buffer whose data() is 64-byte aligned: a 32-byte load that straddles two cache lines
// costs two, and the tile is bound by loads as much as by FMAs.
class AlignedFloats {
 public:
  explicit AlignedFloats(size_t n) : store_(n + 16, 0.f) {}
  float* data() {
    return store_.data() + (16 - reinterpret_cast<uintptr_t>(store_.data()) / 4 % 16) % 16;
  }
  const float* data() const { return const_cast<AlignedFloats*>(this)->data(); }

 private:
  std::vector<float> store_;
};

// 8 weights as fp32. bf16 and int8 rows are read in place: converting in the tile costs no time
// (the FMAs bound it), a dequantize-to-buffer pass did. int4 (groups, nibbles) goes via a buffer.
inline __m256 load8(const float* p) { return _mm256_load_ps(p); }
inline __m256 load8(const uint16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
inline __m256 load8(const int8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
inline float load1(const float* p) { return *p; }
inline float load1(const uint16_t* p) { return bf16_to_float(*p); }
inline float load1(const int8_t* p) { return float(*p); }

// part[r][t] (8 fp32 lanes each, at part + (r * M + t) * 8) += w_r[0, n8) * x_t[0, n8) lane-wise,
// for kTileRows weight rows and T tokens (stride ldx); n8 % 8 == 0. The partial sums stay 8 lanes
// wide across chunks and are reduced once, at the end of the row.
// Not inlined: inside the caller's loop nest GCC spilled the accumulators (measured 1.5x slower).
template <int T, typename W>
[[gnu::noinline]] void tile(const W* const* w, const float* x, int64_t ldx, int64_t n8, int M,
                            float* part, const W* const* pf = nullptr) {
  __m256 acc[kTileRows][T];
  for (int r = 0; r < kTileRows; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_loadu_ps(part + (r * M + t) * 8);
  for (int64_t k = 0; k < n8; k += 8) {
    __m256 wv[kTileRows];
    for (int r = 0; r < kTileRows; ++r) wv[r] = load8(w[r] + k);
    if (pf && k % (64 / sizeof(W)) == 0)  // a cache line per row every 64 bytes of weights
      for (int r = 0; r < kTileRows; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(pf[r] + k), _MM_HINT_T0);
    for (int t = 0; t < T; ++t) {
      const __m256 xv = _mm256_load_ps(x + t * ldx + k);
      for (int r = 0; r < kTileRows; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < kTileRows; ++r)
    for (int t = 0; t < T; ++t) _mm256_storeu_ps(part + (r * M + t) * 8, acc[r][t]);
}

// tile<nt> for a runtime nt in [1, T].
template <int T, typename W>
void tile_n(int nt, const W* const* w, const float* x, int64_t ldx, int64_t n8, int M,
            float* part, const W* const* pf) {
  if constexpr (T > 0) {
    if (nt == T) return tile<T>(w, x, ldx, n8, M, part, pf);
    tile_n<T - 1>(nt, w, x, ldx, n8, M, part, pf);
  }
}

// One chunk of n columns for kTileRows rows (nr of them real) and all M tokens: whole vectors in
// tiles, the last n % 8 columns in scalar into lane 0.
template <typename W>
void chunk_all_tokens(const W* const* w, int nr, const float* x, int64_t ldx, int64_t n, int M,
                      float* part, const W* const* pf = nullptr) {
  const int64_t n8 = n & ~int64_t(7);
  int m0 = 0;
  for (; m0 + kTileToks <= M; m0 += kTileToks)
    tile<kTileToks>(w, x + m0 * ldx, ldx, n8, M, part + m0 * 8, m0 == 0 ? pf : nullptr);
  // A verify of fewer than kTileToks tokens is only this tile: it prefetches too.
  if (m0 < M)
    tile_n<kTileToks - 1>(M - m0, w, x + m0 * ldx, ldx, n8, M, part + m0 * 8, m0 == 0 ? pf : nullptr);
  for (int64_t c = n8; c < n; ++c)
    for (int r = 0; r < nr; ++r)
      for (int m = 0; m < M; ++m) part[(r * M + m) * 8] += load1(w[r] + c) * x[m * ldx + c];
}

// chunk_all_tokens over bf16 or int8 rows read in place. The first token tile also prefetches the
// next row tile's chunk: a batch is compute-bound, and without it the FMAs stall on the weight
// stream from DRAM instead of overlapping it (a 6-token lm_head ran 1.6x slower).
template <typename W>
void chunk_in_place(const QWeightView& w, const int64_t* row, int nr, int64_t c0, int64_t n,
                    const float* x, int64_t ldx, int M, float* part) {
  const W *wr[kTileRows], *pf[kTileRows];
  for (int r = 0; r < kTileRows; ++r) {
    wr[r] = static_cast<const W*>(w.q) + row[r] * w.cols + c0;
    pf[r] = static_cast<const W*>(w.q) + std::min(row[r] + kTileRows, w.rows - 1) * w.cols + c0;
  }
  chunk_all_tokens(wr, nr, x, ldx, n, M, part, pf);
}

float hsum8(const float* v) {
  __m128 h = _mm_add_ps(_mm_loadu_ps(v), _mm_loadu_ps(v + 4));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

// ---- Small M (decode and speculative verify): weights read in place, never through a buffer ----

// Tokens the in-register paths take; above, a batch goes to matmul_tiled.
constexpr int kSmallM = 8;

// out[r] = W[r] · x for bf16 / int8 rows read in place (the int8 row scale applied once, at the end):
// converting 8 weights in registers is 2 instructions, a dequantize-to-buffer pass cost 4 more
// (int8 ran at half bf16's bytes per second, bound by instructions, not by memory).
template <typename W>
void matmul_in_place_m1(const float* x, const QWeightView& w, float* out) {
  const int64_t n8 = w.cols & ~int64_t(7);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < w.rows; ++r) {
    const W* row = static_cast<const W*>(w.q) + r * w.cols;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};  // four chains hide the FMA latency
    int64_t c = 0;
    for (; c + 32 <= n8; c += 32)
      for (int u = 0; u < 4; ++u)
        acc[u] = _mm256_fmadd_ps(load8(row + c + 8 * u), _mm256_loadu_ps(x + c + 8 * u), acc[u]);
    for (; c < n8; c += 8) acc[0] = _mm256_fmadd_ps(load8(row + c), _mm256_loadu_ps(x + c), acc[0]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    float s = hsum8(lanes);
    for (; c < w.cols; ++c) s += load1(row + c) * x[c];
    out[r] = w.format == WeightFormat::INT8 ? s * bf16_to_float(w.scale[r]) : s;
  }
}

// Token t's x in the int4 kernel's column order, plus its sum over each quantization group. A row's
// 64-column block is 32 bytes, read as 8 int32 lanes: lane j holds columns 8j..8j+7 as nibbles
// 0..7 (low nibble first), so (lane >> 4k) & 15 is column 8j+k, and xp[64b + 8k + j] = x[64b + 8j + k]
// lines x up with it. With the group sums, sum_c (q_c s + z) x_c = s sum_c q_c x_c + z sum_c x_c:
// the zero costs one FMA per group per row instead of one per weight. Built once per call; all
// rows share it.
struct Int4Tokens {
  Int4Tokens(const float* x, int T, const QWeightView& w)
      : blocks(w.cols / 64), groups(w.n_groups()), xp(size_t(T) * blocks * 64), gsum(size_t(T) * groups) {
    for (int t = 0; t < T; ++t) {
      const float* xt = x + t * w.cols;
      float* pt = xp.data() + t * blocks * 64;
      for (int64_t b = 0; b < blocks; ++b)
        for (int j = 0; j < 8; ++j)
          for (int k = 0; k < 8; ++k) pt[b * 64 + 8 * k + j] = xt[b * 64 + 8 * j + k];
      for (int64_t g = 0; g < groups; ++g) {
        float s = 0.f;
        for (int64_t c = g * w.group_size; c < std::min<int64_t>((g + 1) * w.group_size, w.cols); ++c)
          s += xt[c];
        gsum.data()[t * groups + g] = s;
      }
    }
  }
  int64_t blocks, groups;
  AlignedFloats xp, gsum;  // (T, blocks * 64), (T, groups)
};

// Nibble K of every int32 lane as a float (K is a template argument so the shift is an immediate).
template <int K>
inline __m256 nibble(__m256i v) {
  const __m256i s = K == 0 ? v : _mm256_srli_epi32(v, 4 * K);
#ifdef __AVX512VL__
  // vpermi2ps reads only the low 4 bits of each index: a lookup in a table of 0..15 masks and
  // converts in one op (5-15% faster on Zen 4 than and + convert, or than OR-ing the nibble into
  // the mantissa of 2^23 and subtracting it).
  return _mm256_permutex2var_ps(_mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), s,
                                _mm256_setr_ps(8, 9, 10, 11, 12, 13, 14, 15));
#else
  return _mm256_cvtepi32_ps(K == 7 ? s : _mm256_and_si256(s, _mm256_set1_epi32(15)));
#endif
}

// Per-lane scales of 64-column block b: lane j's columns lie in group (64b + 8j) / G.
template <int G>
inline __m256 block_scales(const uint16_t* sc, int64_t b) {
  if constexpr (G != 32) {
    return _mm256_set1_ps(bf16_to_float(sc[b * 64 / G]));
  } else {
    uint32_t two;  // the block's two groups: lanes 0-3 take the first, 4-7 the second
    std::memcpy(&two, sc + 2 * b, 4);
    const __m256i s = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_cvtsi32_si128(int(two))), 16);
    return _mm256_permutevar8x32_ps(_mm256_castsi256_ps(s), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
  }
}

// out[T, rows] = x[T, cols] · Wᵀ for int4 W, T <= kSmallM: each row is read once for all T tokens,
// its nibbles turned into floats in registers (nibble<K>) and FMA'd against the matching
// xp; the block's sums are scaled per group once per block, the zeros' term comes from the group
// sums, and a ragged tail of < 64 columns goes scalar.
template <int T, int G>
void matmul_int4_small(const float* x, const QWeightView& w, float* out) {
  const Int4Tokens a(x, T, w);
  const int64_t row_bytes = (w.cols + 1) / 2, ng = a.groups, nb = a.blocks, tail = nb * 64;
  const float* xp = a.xp.data();
  const float* gsum = a.gsum.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < w.rows; ++r) {
    const uint8_t* q = static_cast<const uint8_t*>(w.q) + r * row_bytes;
    const uint16_t* sc = w.scale + r * ng;
    __m256 tot[T];
    for (int t = 0; t < T; ++t) tot[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * b));
      const float* xb = xp + b * 64;
      __m256 acc[T];
      [&]<int... K>(std::integer_sequence<int, K...>) {
        (
            [&] {
              const __m256 f = nibble<K>(v);
              for (int t = 0; t < T; ++t) {
                const __m256 xv = _mm256_load_ps(xb + t * nb * 64 + 8 * K);
                acc[t] = K == 0 ? _mm256_mul_ps(f, xv) : _mm256_fmadd_ps(f, xv, acc[t]);
              }
            }(),
            ...);
      }(std::make_integer_sequence<int, 8>{});
      const __m256 s = block_scales<G>(sc, b);
      for (int t = 0; t < T; ++t) tot[t] = _mm256_fmadd_ps(acc[t], s, tot[t]);
    }
    // The zeros' term, 8 groups at a time into the same lanes: z_g * gsum[t][g].
    const uint16_t* zr = w.zero + r * ng;
    int64_t g = 0;
    for (; g + 8 <= ng; g += 8) {
      const __m256 z = load8(zr + g);
      for (int t = 0; t < T; ++t) tot[t] = _mm256_fmadd_ps(z, _mm256_loadu_ps(gsum + t * ng + g), tot[t]);
    }
    float res[T];
    for (int t = 0; t < T; ++t) {
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, tot[t]);
      res[t] = hsum8(lanes);
    }
    for (; g < ng; ++g)
      for (int t = 0; t < T; ++t) res[t] += bf16_to_float(zr[g]) * gsum[t * ng + g];
    for (int64_t c = tail; c < w.cols; ++c) {
      const float wq = float(c % 2 == 0 ? q[c / 2] & 15 : q[c / 2] >> 4) * bf16_to_float(sc[c / G]);
      for (int t = 0; t < T; ++t) res[t] += wq * x[t * w.cols + c];
    }
    for (int t = 0; t < T; ++t) out[t * w.rows + r] = res[t];
  }
}

// The group sizes the in-register path takes (compile-time, so a block's group is a shift).
bool int4_in_registers(const QWeightView& w) {
  return w.group_size == 32 || w.group_size == 64 || w.group_size == 128;
}

// matmul_int4_small<M, group_size> for a runtime M in [1, T].
template <int T>
void int4_small_n(const float* x, int M, const QWeightView& w, float* out) {
  if constexpr (T > 0) {
    if (M != T) return int4_small_n<T - 1>(x, M, w, out);
    if (w.group_size == 32) return matmul_int4_small<T, 32>(x, w, out);
    if (w.group_size == 64) return matmul_int4_small<T, 64>(x, w, out);
    return matmul_int4_small<T, 128>(x, w, out);
  }
}

// A batch of tokens (M > 1). x is first copied to 64-byte aligned rows. Per column chunk, every
// kTileToks-token tile runs over a tile of kTileRows weight rows (int4: dequantized once per chunk
// into a buffer). Threads take blocks of kBlockRows rows whose results are staged and written as
// whole spans of each token's output row: written one tile at a time they would be 16-byte pieces,
// and rows = 3072 or 49152 puts every token's piece in the same cache set.
void matmul_tiled(const float* x, int M, const QWeightView& w, float* out) {
  constexpr int kBlockRows = kTileRows * 8;
  const int64_t n_blocks = (w.rows + kBlockRows - 1) / kBlockRows;
  const int64_t ldx = (w.cols + 15) & ~int64_t(15);
  AlignedFloats xs(size_t(M) * ldx);
  for (int m = 0; m < M; ++m) std::copy_n(x + m * w.cols, w.cols, xs.data() + m * ldx);
  // Equal chunks, whole vectors: SmolLM2's 576 columns make one chunk, not 512 + a 64 remnant.
  const int64_t n_chunks = (w.cols + kMaxTileChunk - 1) / kMaxTileChunk;
  const int64_t chunk = ((w.cols + n_chunks - 1) / n_chunks + 15) & ~int64_t(15);
#pragma omp parallel
  {
    AlignedFloats wbuf(w.format == WeightFormat::INT4 ? kTileRows * chunk : 0);
    std::vector<float> part(size_t(kTileRows) * M * 8), staged(size_t(M) * kBlockRows);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t b0 = b * kBlockRows;
      const int nb = int(std::min<int64_t>(kBlockRows, w.rows - b0));
      for (int rt = 0; rt < nb; rt += kTileRows) {
        const int nr = std::min(kTileRows, nb - rt);
        int64_t row[kTileRows];  // a short last tile repeats its last row, never stored
        for (int r = 0; r < kTileRows; ++r) row[r] = b0 + rt + std::min(r, nr - 1);
        std::fill(part.begin(), part.end(), 0.f);
        for (int64_t c0 = 0; c0 < w.cols; c0 += chunk) {
          const int64_t n = std::min(chunk, w.cols - c0);
          const float* xc = xs.data() + c0;
          if (w.format == WeightFormat::BF16) {
            chunk_in_place<uint16_t>(w, row, nr, c0, n, xc, ldx, M, part.data());
          } else if (w.format == WeightFormat::INT8) {
            chunk_in_place<int8_t>(w, row, nr, c0, n, xc, ldx, M, part.data());
          } else {
            const float* wr[kTileRows];
            for (int r = 0; r < kTileRows; ++r) {
              dequant_chunk(w, row[r], c0, n, wbuf.data() + r * chunk);
              wr[r] = wbuf.data() + r * chunk;
            }
            chunk_all_tokens(wr, nr, xc, ldx, n, M, part.data());
          }
        }
        for (int r = 0; r < nr; ++r) {
          const float f = w.format == WeightFormat::INT8 ? bf16_to_float(w.scale[row[r]]) : 1.f;
          for (int m = 0; m < M; ++m)
            staged[m * kBlockRows + rt + r] = hsum8(part.data() + (r * M + m) * 8) * f;
        }
      }
      for (int m = 0; m < M; ++m)
        std::copy_n(staged.data() + m * kBlockRows, nb, out + m * w.rows + b0);
    }
  }
}
#endif

}  // namespace

void matmul(const float* x, int M, const QWeightView& w, float* out) {
  check_view(w);
  GF_CHECK(M >= 0, "matmul: M ", M, " must be >= 0");
  if (M == 0) return;
#if defined(__AVX2__) && defined(__FMA__)
  if (w.format == WeightFormat::INT4 && M <= kSmallM && int4_in_registers(w))
    return int4_small_n<kSmallM>(x, M, w, out);
  if (M == 1 && w.format == WeightFormat::BF16) return matmul_in_place_m1<uint16_t>(x, w, out);
  if (M == 1 && w.format == WeightFormat::INT8) return matmul_in_place_m1<int8_t>(x, w, out);
  if (M > 1) return matmul_tiled(x, M, w, out);
#endif
  matmul_rows(x, M, w, out);
}

}  // namespace gf::cpu
