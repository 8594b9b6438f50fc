// out[M, rows] = x[M, cols] · Wᵀ for bf16 / int8 / int4 weights. Which kernel: M = 1 with int8 / int4
// weights, gemv1_kernel (below: int8 on fp16 as gemv_kernel, int4 on integer dot products); 2 <= M <= 16,
// the tensor-core GEMV of matmul_mma.cu where it fits; the rest of M <= 16 (bf16 at M = 1 among it),
// gemv_kernel; M > 16, cuBLAS.
// gemv_kernel (decode, speculative verify), a weight-only GEMV that streams every weight byte once:
// each warp owns R rows (and, for matrices of few rows, a 1/ks share of K); each lane issues
// R x kUnroll independent 16-byte loads before using them (the first batch before x is staged) and
// dequantizes in registers with exponent tricks (no int->float converts). x is staged in shared
// memory in a bank-conflict-free order (tiled over K when M*cols does not fit).
//   bf16 weights: fp32 x, fp32 FMAs (memory-bound already).
//   int8 / int4 weights: the fp32 path spent ~3 instructions per weight and stalled at 30-50% of the
//   read bandwidth, so these run on packed fp16: one LOP3/PRMT and one HFMA2 turn two weights into
//   exact fp16 q/128 (int8) or q/16 (int4), and one HFMA2 per pair accumulates against fp16 x over
//   one 16-byte load (16 or 32 weights) before the sum joins the fp32 accumulator. x is scaled by a
//   power of two per tile (exact) so that |x| < 2^11 and no such partial sum can overflow fp16.
// M > 16: cuBLAS (int8/int4 first dequantized to bf16, a slab of rows at a time, in GemmContext's scratch).
#include <cuda_fp16.h>

#include <algorithm>

#include "core/env.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/mma_layout.h"

namespace gf::cuda {
namespace {
constexpr int kWarps = 8, kThreads = kWarps * 32;
constexpr int kSmemBytes = 46 * 1024;    // x tile (+ int4 chunk sums): with the static red[] under the 48 KB
                                         // that needs no opt-in
constexpr int kSmemOptIn = 160 * 1024;   // for wide M where one warp pass over 48 KB does not fit

template <WeightFormat F>
constexpr int kPerLoad = F == WeightFormat::BF16 ? 8 : F == WeightFormat::INT8 ? 16 : 32;  // weights per 16 B

struct GemvArgs : detail::GemvOperands {
  int kt;               // x tile width (elements), a multiple of 32 * kPerLoad unless it covers all cols
  int kts;              // x tile stride in shared memory: kt rounded up to 32 * kPerLoad
  int ks;               // warps of a block that split K for the same rows (1, 2, 4 or 8)
};

// Shared-memory slot of x element k of a tile. Lane l reads the V x values of its chunk c = k / V
// as V/4 float4s; slabs of 32 chunks are stored float4-major ([c/32][q][c%32][4]) so that the 32
// lanes of one read hit 32 consecutive float4s: no bank conflicts (a row-major tile would put every
// lane of an int4 read on the same 4 banks, 8x the shared-memory wavefronts).
template <int V>
__device__ __forceinline__ int x_slot(int k) {
  const int c = k / V, q = (k % V) >> 2;
  return (((c >> 5) * (V / 4) + q) << 7) + ((c & 31) << 2) + (k & 3);
}
template <int V>
__device__ __forceinline__ int chunk_base(int c) { return ((c >> 5) * (V / 4) << 7) + ((c & 31) << 2); }

template <int MT>
__device__ __forceinline__ void fma_chunk8(float (&acc)[MT], const float* w, const float* xc, int M, int kts) {
#pragma unroll
  for (int m = 0; m < MT; ++m) {
    if (m < M) {  // xc: the chunk's first float4 of row 0; the next float4 is 128 floats on
      const float4 a = *reinterpret_cast<const float4*>(xc + m * kts);
      const float4 b = *reinterpret_cast<const float4*>(xc + m * kts + 128);
      acc[m] += w[0] * a.x + w[1] * a.y + w[2] * a.z + w[3] * a.w + w[4] * b.x + w[5] * b.y + w[6] * b.z + w[7] * b.w;
    }
  }
}

// ---- The fp16 path of int8 / int4 weights.
__device__ __forceinline__ __half2 h2(uint32_t u) { return *reinterpret_cast<__half2*>(&u); }
__device__ __forceinline__ uint32_t u32(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }

// Order of an octet of x in shared memory: the column pairs one weight word yields, the octet order of
// the tensor-core GEMV's B words (mma::perm, mma::permuted_word in mma_layout.h).
//   int8: a word is 4 columns; PRMT pairs bytes (0,2) and (1,3): octet [0,2,1,3,4,6,5,7].
//   int4: a word is 8 columns; masks pair nibbles (0,4), (1,5), then (2,6), (3,7) after >> 8:
//         octet [0,4,1,5,2,6,3,7].

// One 16-byte load of int8 / int4 weights -> V/2 fp16 pairs, exact: int8 q/128, int4 (q - 8)/16 (int4
// q in [0, 15], the zero point applies per group). Pair j multiplies x pair j of the load's octets.
template <WeightFormat F>
__device__ __forceinline__ void unpack_half(const uint4& v, __half2 (&q)[kPerLoad<F> / 2]) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (F == WeightFormat::INT8) {
      // byte ^ 0x80 = q + 128 under the fp16 exponent of 1024 (ulp 1): 1024 + 128 + q, then
      // (1152 + q) / 128 - 9 = q / 128 in one exact HFMA2
      const uint32_t b = u[i] ^ 0x80808080u;
      const __half2 k = h2(0x20002000u), off = h2(0xc880c880u);  // 1/128, -9
      q[2 * i] = __hfma2(h2(__byte_perm(b, 0x64646464u, 0x4240)), k, off);
      q[2 * i + 1] = __hfma2(h2(__byte_perm(b, 0x64646464u, 0x4341)), k, off);
    } else {
      // nibbles (n, n+4) masked under 1024: 1024 + q (n = 0, 2) or 1024 + 16 q (n = 1, 3), then
      // (1024 + q) / 16 - 64.5 and (1024 + 16 q) / 256 - 4.5, both (q - 8) / 16 exactly. Centred: the
      // partial sums then carry no 7.5 * sum(x) that the zero point's term would cancel afterwards
      // (which multiplied their fp16 rounding error several times)
      const uint32_t t = u[i] >> 8;
      const __half2 k0 = h2(0x2c002c00u), o0 = h2(0xd408d408u);  // 1/16, -64.5
      const __half2 k1 = h2(0x1c001c00u), o1 = h2(0xc480c480u);  // 1/256, -4.5
      q[4 * i] = __hfma2(h2((u[i] & 0x000f000fu) | 0x64006400u), k0, o0);
      q[4 * i + 1] = __hfma2(h2((u[i] & 0x00f000f0u) | 0x64006400u), k1, o1);
      q[4 * i + 2] = __hfma2(h2((t & 0x000f000fu) | 0x64006400u), k0, o0);
      q[4 * i + 3] = __hfma2(h2((t & 0x00f000f0u) | 0x64006400u), k1, o1);
    }
  }
}

// Shared-memory unit (16 bytes, one octet of fp16 x) of octet o of a tile: lane l's chunk c = o / (V/8)
// keeps its V/8 units 32 units apart, slabs of 32 chunks side by side: the 32 lanes of one read hit 32
// consecutive units, no bank conflicts.
template <int V>
__device__ __forceinline__ int half_unit(int o) {
  const int c = o / (V / 8), q = o % (V / 8);
  return ((c >> 5) * (V / 8) + q) * 32 + (c & 31);
}
template <int V>
__device__ __forceinline__ int half_chunk_base(int c) { return (c >> 5) * (V / 8) * 32 + (c & 31); }

// The sum of the (scaled fp16) x values of one load's chunk, its V/8 units at p, p + 32, ... (int4: the
// zero point's term).
template <int V>
__device__ __forceinline__ float chunk_sum(const uint4* p) {
  float s = 0.f;
#pragma unroll
  for (int q = 0; q < V / 8; ++q) {
    const uint4 t = p[q * 32];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float2 f = __half22float2(h2((&t.x)[k]));
      s += f.x + f.y;
    }
  }
  return s;
}

// Calls f(i, octet) for every octet i < total = M n8 of x[:, k0 : k0 + 8 n8] (row i / n8, columns
// k0 + 8 (i % n8) onwards), kBatch per thread at a time, all of a batch's 16-byte loads issued before any
// is used: a load-use loop here costs one L2 round trip per octet per thread, which dominated small
// matrices. (total is the caller's: computed here, it moved an instruction of gemv1's code.)
template <int kBatch, class F>
__device__ __forceinline__ void for_x_octets(const GemvArgs& a, int64_t k0, int n8, int total, F&& f) {
  for (int i0 = threadIdx.x; i0 < total; i0 += kBatch * kThreads) {
    uint4 t[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = i0 + b * kThreads;
      if (i < total) t[b] = detail::load_act(a.x + (i / n8) * a.cols + k0 + (i % n8) * 8);
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b)
      if (i0 + b * kThreads < total) f(i0 + b * kThreads, t[b]);
  }
}

// x[:, k0 : k0 + kt] -> xh (fp16 octets in half_unit order, mma::perm within), scaled by 2^-e with the
// smallest e >= 0 that brings max |x| of the tile under 2^11; returns 2^e. Two passes: the bf16 bits
// go in (and the tile's max with them), then every unit is converted in place. x is 16-byte aligned.
template <WeightFormat F>
__device__ float stage_x_half(const GemvArgs& a, int64_t k0, int kt, uint4* xh, unsigned* xmax) {
  constexpr int V = kPerLoad<F>, kBatch = 4;
  const int n8 = kt / 8, total = a.M * n8, rsu = a.kts / 8;
  uint32_t mx = 0;
  for_x_octets<kBatch>(a, k0, n8, total, [&](int i, const uint4& t) {
    const uint32_t w[4] = {t.x, t.y, t.z, t.w};
    uint32_t o[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      o[k] = mma::permuted_word(F, w, k);
      mx = __vmaxu2(mx, w[k] & 0x7fff7fffu);  // |bf16| orders as its bits
    }
    xh[(i / n8) * rsu + half_unit<V>(i % n8)] = make_uint4(o[0], o[1], o[2], o[3]);
  });
  mx = __reduce_max_sync(0xffffffffu, max(mx & 0xffffu, mx >> 16));
  if ((threadIdx.x & 31) == 0) atomicMax(xmax, mx);
  __syncthreads();
  const int e = min(126, max(0, int(*xmax >> 7) - 127 - 10));  // |x| < 2^(E+1): E + 1 - e <= 11
  const float down = __uint_as_float(uint32_t(127 - e) << 23);
  for (int j = threadIdx.x; j < a.M * rsu; j += kThreads) {
    uint4 u = xh[j];
    uint32_t* w = reinterpret_cast<uint32_t*>(&u);
#pragma unroll
    for (int k = 0; k < 4; ++k) w[k] = u32(__floats2half2_rn(detail::bf16_lo(w[k]) * down, detail::bf16_hi(w[k]) * down));
    xh[j] = u;
  }
  return __uint_as_float(uint32_t(127 + e) << 23);
}

// x[:, k0 : k0 + kt] -> xs (fp32, x_slot order), by octets where x is 16-byte aligned. kt and cols are
// multiples of 8, so an aligned x keeps every octet aligned.
template <int V, int kBatch>  // kBatch loads per thread in flight (the prefetched weights hold registers too)
__device__ __forceinline__ void stage_x(const GemvArgs& a, int64_t k0, int kt, float* xs) {
  const int n8 = kt / 8, total = a.M * n8;
  if (reinterpret_cast<uintptr_t>(a.x) % 16 == 0) {
    for_x_octets<kBatch>(a, k0, n8, total, [&](int i, const uint4& t) {
      float* d = xs + (i / n8) * a.kts + x_slot<V>((i % n8) * 8);  // octet = 2 float4s, 128 floats apart
      *reinterpret_cast<float4*>(d) = make_float4(detail::bf16_lo(t.x), detail::bf16_hi(t.x), detail::bf16_lo(t.y), detail::bf16_hi(t.y));
      *reinterpret_cast<float4*>(d + 128) =
          make_float4(detail::bf16_lo(t.z), detail::bf16_hi(t.z), detail::bf16_lo(t.w), detail::bf16_hi(t.w));
    });
  } else {
    for (int i = threadIdx.x; i < a.M * kt; i += kThreads) {
      const int m = i / kt, k = i % kt;
      xs[m * a.kts + x_slot<V>(k)] = __bfloat162float(a.x[m * a.cols + k0 + k]);
    }
  }
}

// Block = kWarps warps = (kWarps / ks) row groups of R rows x ks warps splitting K. Warp w of a row
// group reads slabs (32 lanes x 16 bytes) w, w + ks, ...; partial sums meet in shared memory.
template <WeightFormat F, int MT, int R, class Out>
__global__ void __launch_bounds__(kThreads, 2) gemv_kernel(GemvArgs a, Out* __restrict__ out) {
  // R x kUnroll 16-byte loads in flight per lane; bf16/int8 at M = 1 (kPipe) load the next batch while
  // this one is computed (+3-4% end to end). int4 measured faster with R = 4 and no lookahead (the
  // registers allow only R = 2 with it: 191 vs 209 tok/s on 7B).
  constexpr bool kPipe = MT == 1 && F != WeightFormat::INT4, kHalf = F != WeightFormat::BF16;
  constexpr int V = kPerLoad<F>, kUnroll = R >= 4 ? 2 : 4;
  // [M][kts] x (fp32 in x_slot order, or fp16 units in half_unit order), then (int4) csum[M][kts/32]
  extern __shared__ float4 smem[];
  __shared__ float red[kWarps][R][MT];
  __shared__ unsigned xmax;  // fp16 path: the tile's max |x| as bf16 bits
  detail::pdl_launch_dependents();
  float* xs = reinterpret_cast<float*>(smem);
  uint4* xh = reinterpret_cast<uint4*>(smem);
  float* csum = xs + a.M * a.kts / (kHalf ? 2 : 1);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, ks = warp % a.ks, rg = warp / a.ks;
  const int64_t row0 = (int64_t(blockIdx.x) * (kWarps / a.ks) + rg) * R;
  const uint8_t* wrow[R];
#pragma unroll
  for (int r = 0; r < R; ++r) wrow[r] = a.q + min(row0 + r, a.rows - 1) * a.row_bytes;  // tail rows: read, don't write
  float acc[R][MT];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < MT; ++m) acc[r][m] = 0.f;

  uint4 v[kUnroll][R];
  uint32_t sz[kUnroll][R];  // int4: scale | zero << 16 of the chunk's group
  auto load_batch = [&](int64_t k0, int n_loads, int sb) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = (sb + u * a.ks) * 32 + lane;
      if (c < n_loads) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          v[u][r] = detail::load_stream(wrow[r] + weight_byte_of_col(F, k0 + int64_t(c) * V));
          if constexpr (F == WeightFormat::INT4) {
            const int64_t i = detail::min64(row0 + r, a.rows - 1) * a.n_groups + (k0 + int64_t(c) * V) / a.group_size;
            sz[u][r] = uint32_t(__ldg(a.scale + i)) | uint32_t(__ldg(a.zero + i)) << 16;
          }
        }
      }
    }
  };
  // the first weights are in flight while x is staged, and (PDL) while the kernel that writes x finishes:
  // weights, scales and zeros are written by no kernel, so they may be read before the wait
  load_batch(0, int(detail::min64(a.kt, a.cols)) / V, ks);
  detail::pdl_wait();  // x is the previous kernel's output; out may still be read by an earlier one
  if (threadIdx.x == 0) xmax = 0;
  bool loaded = true;
  for (int64_t k0 = 0; k0 < a.cols; k0 += a.kt) {
    const int kt = int(detail::min64(a.kt, a.cols - k0));
    __syncthreads();  // the previous tile is no longer read
    float up = 1.f;   // fp16 path: x was scaled down by this
    if constexpr (kHalf) up = stage_x_half<F>(a, k0, kt, xh, &xmax);
    else stage_x<V, MT >= 8 ? 1 : 4>(a, k0, kt, xs);
    const int n_loads = kt / V;
    if constexpr (F == WeightFormat::INT4) {
      __syncthreads();
      for (int i = threadIdx.x; i < a.M * n_loads; i += kThreads) {  // sum of x over each load's 32 columns
        const int m = i / n_loads, c = i % n_loads;
        csum[m * (a.kts / 32) + c] = chunk_sum<V>(xh + m * (a.kts / 8) + half_chunk_base<V>(c));
      }
    }
    __syncthreads();
    if (kHalf && threadIdx.x == 0) xmax = 0;  // every thread read it before the barrier above
    for (int sb = ks; sb * 32 < n_loads; sb += a.ks * kUnroll) {
      if (!loaded) load_batch(k0, n_loads, sb);
      loaded = false;
      uint4 cv[kUnroll][R];
      uint32_t csz[kUnroll][R];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int r = 0; r < R; ++r) {
          cv[u][r] = v[u][r];
          if constexpr (F == WeightFormat::INT4) csz[u][r] = sz[u][r];
        }
      if constexpr (kPipe)
        if ((sb + a.ks * kUnroll) * 32 < n_loads) load_batch(k0, n_loads, sb + a.ks * kUnroll), loaded = true;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int c = (sb + u * a.ks) * 32 + lane;
        if (c >= n_loads) continue;
        if constexpr (!kHalf) {
          const float* xc = xs + chunk_base<V>(c);
#pragma unroll
          for (int r = 0; r < R; ++r) {
            float w[V];
            detail::bf16x8(cv[u][r], w);
            fma_chunk8<MT>(acc[r], w, xc, a.M, a.kts);
          }
        } else {
          const uint4* xc = xh + half_chunk_base<V>(c);
#pragma unroll
          for (int r = 0; r < R; ++r) {
            __half2 q[V / 2];
            unpack_half<F>(cv[u][r], q);
            float sc = up * 128.f, zc = 0.f;  // int8: q/128; the row scale comes at the end
            if constexpr (F == WeightFormat::INT4) {  // w = s q + z = 16 s (q - 8)/16 + (z + 8 s)
              const float sg = detail::bf16_lo(uint16_t(csz[u][r])), zg = detail::bf16_lo(uint16_t(csz[u][r] >> 16));
              sc = up * 16.f * sg, zc = up * (zg + 8.f * sg);
            }
#pragma unroll
            for (int m = 0; m < MT; ++m) {
              if (m >= a.M) break;
              __half2 d = h2(0u);
#pragma unroll
              for (int j = 0; j < V / 8; ++j) {
                const uint4 xu = xc[m * (a.kts / 8) + j * 32];
                d = __hfma2(q[4 * j], h2(xu.x), d);
                d = __hfma2(q[4 * j + 1], h2(xu.y), d);
                d = __hfma2(q[4 * j + 2], h2(xu.z), d);
                d = __hfma2(q[4 * j + 3], h2(xu.w), d);
              }
              const float2 f = __half22float2(d);
              acc[r][m] = fmaf(sc, f.x + f.y, acc[r][m]);
              if constexpr (F == WeightFormat::INT4) acc[r][m] = fmaf(zc, csum[m * (a.kts / 32) + c], acc[r][m]);
            }
          }
        }
      }
    }
    loaded = false;
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      const float t = detail::warp_sum(acc[r][m]);
      if (lane == 0) red[warp][r][m] = t;
    }
  __syncthreads();
  const int n_rg = kWarps / a.ks;
  for (int i = threadIdx.x; i < n_rg * R * a.M; i += kThreads) {
    const int g = i / (R * a.M), r = i / a.M % R, m = i % a.M;
    const int64_t row = (int64_t(blockIdx.x) * n_rg + g) * R + r;
    if (row >= a.rows) continue;
    float t = 0.f;
    for (int j = 0; j < a.ks; ++j) t += red[g * a.ks + j][r][m];
    if (F == WeightFormat::INT8) t *= detail::bf16_lo(a.scale[row]);
    if constexpr (sizeof(Out) == 4) out[m * a.rows + row] = t;
    else out[m * a.rows + row] = __float2bfloat16(t);
  }
}

// x -> per chunk c of 32 columns (one 16-byte load of int4 weights) two int8 terms, x = d_c (xq + xr / 254)
// to within d_c / 508 (d_c = max |x| / 127 over the chunk; bf16 x itself is only good to 2^-9 relative),
// for integer dot products (dp4a) against the weights' nibbles. Word 2i of xq / xr holds the even columns
// of octet i (the low nibbles of weight word i), word 2i + 1 the odd ones, one byte each. Units (16 bytes)
// at half_chunk_base<32>(c) + 32 u: xq in u = 0, 1, xr in u = 2, 3 (conflict-free, as half_unit). dc[c] =
// (d_c, the chunk's sum of x: the zero point's term).
__device__ void stage_x_q8(const GemvArgs& a, uint4* xs, float2* dc) {
  const int n = int(a.cols / 32);
  for (int c = threadIdx.x; c < n; c += kThreads) {
    float v[32];
#pragma unroll
    for (int o = 0; o < 4; ++o) {
      const uint4 t = detail::load_act(a.x + int64_t(c) * 32 + 8 * o);
      const uint32_t w[4] = {t.x, t.y, t.z, t.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) v[8 * o + 2 * k] = detail::bf16_lo(w[k]), v[8 * o + 2 * k + 1] = detail::bf16_hi(w[k]);
    }
    float amax = 0.f, sum = 0.f;
#pragma unroll
    for (int k = 0; k < 32; ++k) amax = fmaxf(amax, fabsf(v[k])), sum += v[k];
    const float inv = amax > 0.f ? 127.f / amax : 0.f;
    uint32_t q[8], r[8];
#pragma unroll
    for (int w = 0; w < 8; ++w) {
      q[w] = r[w] = 0;
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        const float t = v[8 * (w / 2) + (w & 1) + 2 * b] * inv, tq = rintf(t);  // |t| <= 127; t - tq is exact
        q[w] |= uint32_t(int(tq) & 0xff) << (8 * b);
        r[w] |= uint32_t(int(rintf((t - tq) * 254.f)) & 0xff) << (8 * b);
      }
    }
    const int base = half_chunk_base<32>(c);
    xs[base] = make_uint4(q[0], q[1], q[2], q[3]);
    xs[base + 32] = make_uint4(q[4], q[5], q[6], q[7]);
    xs[base + 64] = make_uint4(r[0], r[1], r[2], r[3]);
    xs[base + 96] = make_uint4(r[4], r[5], r[6], r[7]);
    dc[c] = make_float2(amax / 127.f, sum);
  }
}

// The M = 1 GEMV of int8 / int4 weights when x fits one tile (and int4 groups are a power-of-two
// multiple of 32): gemv_kernel's arithmetic in a loop with no other work. Nsight Compute showed that
// kernel issuing ~4 instructions per weight at M = 1 (register copies of the prefetched batch, 64-bit
// address and group-index arithmetic and bounds checks per load, kernel parameters reloaded under
// register pressure) where the unpack and the dot products need ~1.7: issue-bound at 50-65% of the read
// bandwidth with int4. Here each lane walks its chunks (16 bytes, c = lane + 32 * (ks_id + j * ks)) with
// two register buffers of R rows each: the loads of chunk j + 1 are in flight while chunk j is computed,
// and neither buffer is ever copied. Addresses are row pointers plus a 32-bit chunk offset. The grid holds
// only the blocks that are resident at once (persistent): each stages x once (its first two chunks' loads
// in flight meanwhile) and walks row blocks blockIdx.x, + gridDim.x, ..., the next one's first two chunks
// in flight while the current one's sums are reduced (the fixed costs, x staged and sums reduced, weigh
// most on the small matrices). Two chunks ahead there against one: 7B int4 g32 394.1 -> 397.6 tok/s, int8
// 327.3 -> 328.4 (H100, same call; per matrix int4 w2 15.3 -> 14.7 us, int8 wo 8.7 -> 8.0 us).
//   int8, fp16 products: w = s_row q = 128 s_row (q / 128):  sum = 128 s_row up sum_c D_c, with D_c the fp16
//     dot product of chunk c against x / up.
//   int4, integer products against x staged as two int8 terms (stage_x_q8): per 8 weights a mask, a shift
//     and a mask, then 4 dp4a, where the fp16 path spent a shift, 4 masks, 4 HFMA2 to unpack and 4 to multiply
//     (the integer-ALU ops of which ran at half rate): w = s q + z, sum = sum_c s_c d_c (Q_c + R_c / 254) +
//     z_c X_c, with Q_c, R_c the integer dot products of the chunk's nibbles with xq, xr and X_c its sum of x.
//     H100, same call against the fp16 path: 7B int4 g32 398.6 -> 433.0 / 436.5 tok/s; per matrix wqkv
//     62.9 -> 70.7%, w13 75.2 -> 82.0%, w2 60.9 -> 67.6% of the read ceiling (int8 weights through it gained
//     nothing: 72.4 -> 67.7% on wo, the rest equal, so int8 stays on fp16).
template <WeightFormat F, int R, class Out>
__global__ void __launch_bounds__(kThreads, 2) gemv1_kernel(GemvArgs a, int group_shift, Out* __restrict__ out) {
  constexpr int V = kPerLoad<F>;
  constexpr bool kInt4 = F == WeightFormat::INT4;
  extern __shared__ float4 smem[];  // x: int8 fp16 units in half_unit order; int4 stage_x_q8's units, then dc
  __shared__ float red[kWarps][R];
  __shared__ unsigned xmax;
  detail::pdl_launch_dependents();
  uint4* xh = reinterpret_cast<uint4*>(smem);
  float2* dc = reinterpret_cast<float2*>(smem) + a.kts / 4;  // int4: after the units (2 bytes per column)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, ks_id = warp % a.ks, rg = warp / a.ks;
  const int n_rg = kWarps / a.ks;
  const int64_t n_rb = detail::ceil_div(a.rows, int64_t(n_rg) * R);  // row blocks: blockIdx.x, + gridDim.x, ...
  const int n_loads = int(a.cols / V), step = 32 * a.ks;  // chunks per row; chunk stride of one lane
  const int n_j = ks_id * 32 < n_loads ? (n_loads - ks_id * 32 + step - 1) / step : 0;  // this lane's slabs
  const uint8_t* wrow[R];
  uint32_t grow[R];  // int4: index of the row's first group
  auto set_rows = [&](int64_t rb) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t row = detail::min64((rb * n_rg + rg) * R + r, a.rows - 1);  // tail rows: read, don't write
      wrow[r] = a.q + row * a.row_bytes;
      grow[r] = uint32_t(row * a.n_groups);
    }
  };
  uint4 wa[R], wb[R];
  uint32_t sa[R], sb[R];  // int4: scale | zero << 16 of the chunk's group
  auto load = [&](int j, uint4 (&w)[R], uint32_t (&sz)[R]) {
    const int c = lane + ks_id * 32 + j * step;
    if (j >= n_j || c >= n_loads) return;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      w[r] = detail::load_stream(wrow[r] + uint32_t(c) * 16u);
      if constexpr (kInt4) {
        const uint32_t g = grow[r] + (uint32_t(c) >> group_shift);
        sz[r] = uint32_t(__ldg(a.scale + g)) | uint32_t(__ldg(a.zero + g)) << 16;
      }
    }
  };
  // The loads run two slabs ahead of the computation across row blocks: slab j of a row block is loaded
  // while slab j - 2 is computed, the next row block's first two while its last two are, so the pipe never
  // drains (through the reduction's barriers too). A row block takes n_j rounded up to even slots (an odd
  // last one is empty) so that slab j always lands in buffer j % 2.
  const int n_slots = (n_j + 1) & ~1;
  int64_t next_rb = blockIdx.x;
  int next_j = 0;
  auto load_next = [&](uint4 (&w)[R], uint32_t (&sz)[R]) {
    if (next_rb >= n_rb || n_slots == 0) return;
    if (next_j == 0) set_rows(next_rb);  // the computations in flight need only their loaded registers
    load(next_j, w, sz);
    if (++next_j == n_slots) next_j = 0, next_rb += gridDim.x;
  };
  load_next(wa, sa);  // weights are written by no kernel: in flight before the wait, and while x is staged
  load_next(wb, sb);
  detail::pdl_wait();
  if (threadIdx.x == 0) xmax = 0;
  __syncthreads();
  float up = 1.f;
  if constexpr (kInt4) stage_x_q8(a, xh, dc);
  else up = stage_x_half<F>(a, 0, int(a.cols), xh, &xmax);
  __syncthreads();
  float acc[R], accz[R];  // int4: sum_c s_c d_c (Q_c + R_c / 254) and sum_c z_c X_c; int8: sum_c D_c
  auto compute = [&](int j, const uint4 (&w)[R], const uint32_t (&sz)[R]) {
    const int c = lane + ks_id * 32 + j * step;
    if (j >= n_j || c >= n_loads) return;
    if constexpr (kInt4) {
      const uint4 q0 = xh[half_chunk_base<V>(c)], q1 = xh[half_chunk_base<V>(c) + 32];
      const uint4 r0 = xh[half_chunk_base<V>(c) + 64], r1 = xh[half_chunk_base<V>(c) + 96];
      const int xq[8] = {int(q0.x), int(q0.y), int(q0.z), int(q0.w), int(q1.x), int(q1.y), int(q1.z), int(q1.w)};
      const int xr[8] = {int(r0.x), int(r0.y), int(r0.z), int(r0.w), int(r1.x), int(r1.y), int(r1.z), int(r1.w)};
      const float2 d = dc[c];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const uint32_t u[4] = {w[r].x, w[r].y, w[r].z, w[r].w};
        int dq = 0, dr = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) {  // nibbles 0 .. 15 as non-negative bytes: even columns, then odd
          const int lo = int(u[i] & 0x0f0f0f0fu), hi = int((u[i] >> 4) & 0x0f0f0f0fu);
          dq = __dp4a(lo, xq[2 * i], dq), dq = __dp4a(hi, xq[2 * i + 1], dq);
          dr = __dp4a(lo, xr[2 * i], dr), dr = __dp4a(hi, xr[2 * i + 1], dr);
        }
        const float t = fmaf(float(dr), 1.f / 254.f, float(dq));  // integers below 2^24: exact in fp32
        acc[r] = fmaf(detail::bf16_lo(sz[r]) * d.x, t, acc[r]);
        accz[r] = fmaf(detail::bf16_hi(sz[r]), d.y, accz[r]);
      }
    } else {
      uint4 xu[V / 8];
#pragma unroll
      for (int q = 0; q < V / 8; ++q) xu[q] = xh[half_chunk_base<V>(c) + q * 32];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        __half2 qv[V / 2];
        unpack_half<F>(w[r], qv);
        __half2 d = h2(0u);
#pragma unroll
        for (int q = 0; q < V / 8; ++q) {
          d = __hfma2(qv[4 * q], h2(xu[q].x), d);
          d = __hfma2(qv[4 * q + 1], h2(xu[q].y), d);
          d = __hfma2(qv[4 * q + 2], h2(xu[q].z), d);
          d = __hfma2(qv[4 * q + 3], h2(xu[q].w), d);
        }
        const float2 f = __half22float2(d);
        acc[r] += f.x + f.y;
      }
    }
  };
  for (int64_t rb = blockIdx.x; rb < n_rb; rb += gridDim.x) {
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.f, accz[r] = 0.f;
    for (int j = 0; j < n_slots; j += 2) {
      compute(j, wa, sa);
      load_next(wa, sa);
      compute(j + 1, wb, sb);
      load_next(wb, sb);
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float t = detail::warp_sum(kInt4 ? acc[r] + accz[r] : up * 128.f * acc[r]);
      if (lane == 0) red[warp][r] = t;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < n_rg * R; i += kThreads) {
      const int g = i / R, r = i % R;
      const int64_t row = (rb * n_rg + g) * R + r;
      if (row >= a.rows) continue;
      float t = 0.f;
      for (int k = 0; k < a.ks; ++k) t += red[g * a.ks + k][r];
      if constexpr (!kInt4) t *= detail::bf16_lo(a.scale[row]);
      if constexpr (sizeof(Out) == 4) out[row] = t;
      else out[row] = __float2bfloat16(t);
    }
    __syncthreads();  // red[] is rewritten by the next row block
  }
}

// K split over the warps of a block (detail::split_k): a slab is one warp-wide pass (32 loads of 16 B).
template <WeightFormat F>
int split_k(const GemvArgs& a, int R) {
  return detail::split_k(detail::ceil_div(detail::min64(a.kt, a.cols) / kPerLoad<F>, 32), detail::ceil_div(a.rows, R),
                         kWarps);
}

template <WeightFormat F, int MT, int R, class Out>
void launch_gemv(GemvArgs a, Out* out, cudaStream_t s) {
  a.ks = split_k<F>(a, R);
  const int64_t blocks = detail::ceil_div(a.rows, int64_t(kWarps / a.ks) * R);
  const size_t smem = size_t(a.M) * a.kts * (F == WeightFormat::BF16 ? 4 : 2) +
                      (F == WeightFormat::INT4 ? size_t(a.M) * (a.kts / 32) * 4 : 0);
  detail::allow_smem<gemv_kernel<F, MT, R, Out>>(int64_t(smem), kSmemBytes, kSmemOptIn, "cuda matmul");
  detail::launch("cuda matmul", gemv_kernel<F, MT, R, Out>, unsigned(blocks), kThreads, smem, s, a, out);
}

// gemv1_kernel's conditions: M = 1, int8 / int4, x in one tile, int4 groups of 32 * 2^k columns.
int gemv1_group_shift(const GemvArgs& a, WeightFormat f) {
  if (a.M != 1 || f == WeightFormat::BF16 || a.kt != a.cols) return -1;
  if (f == WeightFormat::INT8) return 0;
  const int chunks = a.group_size / 32;
  return (chunks & (chunks - 1)) == 0 ? __builtin_ctz(unsigned(chunks)) : -1;
}

template <WeightFormat F, int R, class Out>
void launch_gemv1(GemvArgs a, int group_shift, Out* out, cudaStream_t s) {
  a.ks = split_k<F>(a, R);
  const int64_t blocks = detail::ceil_div(a.rows, int64_t(kWarps / a.ks) * R);
  const size_t smem = size_t(a.kts) * 2 + (F == WeightFormat::INT4 ? size_t(a.kts / 32) * 8 : 0);  // x, int4 dc
  constexpr auto kernel = gemv1_kernel<F, R, Out>;
  detail::allow_smem<kernel>(int64_t(smem), kSmemBytes, kSmemOptIn, "cuda matmul");
  const int64_t resident = detail::resident_blocks<kernel>(kThreads, smem, "cuda matmul occupancy");
  detail::launch("cuda matmul", kernel, unsigned(std::min(blocks, resident)), kThreads, smem, s, a, group_shift, out);
}

// R rows per warp share each x value read from shared memory; at M = 1 more rows per warp put more
// loads in flight and spend fewer shared-memory reads per weight (int4 most: 4 bytes of x per nibble).
// M = 1 with int8 / int4 weights runs gemv1_kernel (R = 4; measured on an H100, 7B, against R = 2 and
// against one block per row block: +3% and +10-12% tok/s) unless GPTFAST_GEMV=tiled asks for this file's
// first GEMV (the A/B, and the kernel's own tests), which also takes what gemv1 cannot.
template <WeightFormat F, class Out>
void gemv_dispatch(const GemvArgs& a, Out* out, cudaStream_t s) {
  static const bool tiled = env_is("GPTFAST_GEMV", "tiled");
  if constexpr (F != WeightFormat::BF16) {
    if (const int shift = gemv1_group_shift(a, F); shift >= 0 && !tiled) return launch_gemv1<F, 4>(a, shift, out, s);
  }
  if (a.M == 1) return launch_gemv<F, 1, F == WeightFormat::INT4 ? 4 : 2>(a, out, s);
  if (a.M <= 2) return launch_gemv<F, 2, 2>(a, out, s);
  if (a.M <= 4) return launch_gemv<F, 4, 2>(a, out, s);
  if (a.M <= 8) return launch_gemv<F, 8, F == WeightFormat::INT4 ? 1 : 2>(a, out, s);  // int4 R=2 spills at MT=8
  return launch_gemv<F, 16, F == WeightFormat::INT4 ? 1 : 2>(a, out, s);
}

// Dequantizes rows [r0, r0 + n) of w into dst (bf16, n x cols) for cuBLAS.
__global__ void dequant_kernel(QWeightView w, int64_t n_groups, int64_t r0, int64_t n, bf16* dst) {
  const int64_t total = n * w.cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = r0 + i / w.cols, c = i % w.cols;
    float v;
    if (w.format == WeightFormat::INT8) {  // |q| <= 127 is exact in bf16; the scale comes after the GEMM
      v = float(static_cast<const int8_t*>(w.q)[r * w.cols + c]);
    } else {
      const uint8_t b = static_cast<const uint8_t*>(w.q)[r * (w.cols / 2) + c / 2];
      const int64_t g = r * n_groups + c / w.group_size;
      v = float((c & 1) ? b >> 4 : b & 15) * detail::bf16_lo(w.scale[g]) + detail::bf16_lo(w.zero[g]);
    }
    dst[i] = __float2bfloat16(v);
  }
}

// out[m][r0 + i] *= scale[r0 + i] for the int8 rows of one slab (per-output-channel scale).
template <class Out>
__global__ void scale_rows_kernel(Out* out, int M, int64_t rows, int64_t r0, int64_t n, const uint16_t* scale) {
  const int64_t total = int64_t(M) * n;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = i / n, r = r0 + i % n;
    Out& o = out[m * rows + r];
    if constexpr (sizeof(Out) == 4) o = o * detail::bf16_lo(scale[r]);
    else o = __float2bfloat16(__bfloat162float(o) * detail::bf16_lo(scale[r]));
  }
}

template <class Out>
void gemm_cublas(const bf16* x, int M, const QWeightView& w, Out* out, GemmContext& g, cudaStream_t s) {
  cublasHandle_t h = g.handle();
  GF_CHECK(cublasSetStream(h, s) == CUBLAS_STATUS_SUCCESS, "cuda matmul: cublasSetStream failed");
  const float one = 1.f, zero = 0.f;
  const cudaDataType_t out_type = sizeof(Out) == 4 ? CUDA_R_32F : CUDA_R_16BF;
  // Row-major out[M, rows] is column-major (rows x M): out = Wᵀᵀ·x, W row-major (rows, cols) = col-major Wᵀ.
  auto gemm = [&](const bf16* wp, int64_t r0, int64_t n) {
    const cublasStatus_t st =
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(n), M, int(w.cols), &one, wp, CUDA_R_16BF, int(w.cols), x,
                     CUDA_R_16BF, int(w.cols), &zero, out + r0, out_type, int(w.rows), CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT);
    GF_CHECK(st == CUBLAS_STATUS_SUCCESS, "cuda matmul: cublasGemmEx failed: ", cublasGetStatusName(st));
  };
  if (w.format == WeightFormat::BF16) return gemm(static_cast<const bf16*>(w.q), 0, w.rows);
  const int64_t slab = detail::min64(w.rows, g.scratch_bytes() / (w.cols * 2));
  GF_CHECK(slab > 0, "cuda matmul: GemmContext scratch (", g.scratch_bytes(), " bytes) holds no row of ", w.cols,
           " bf16 columns; prefill with a quantized weight needs a larger dequant scratch");
  for (int64_t r0 = 0; r0 < w.rows; r0 += slab) {
    const int64_t n = std::min(slab, w.rows - r0);
    dequant_kernel<<<unsigned(detail::min64(detail::ceil_div(n * w.cols, 256), 8192)), 256, 0, s>>>(w, w.n_groups(), r0, n,
                                                                                                     g.scratch());
    detail::check_launch("cuda matmul dequant");
    gemm(g.scratch(), r0, n);
    if (w.format == WeightFormat::INT8) {
      scale_rows_kernel<<<unsigned(detail::min64(detail::ceil_div(M * n, 256), 4096)), 256, 0, s>>>(out, M, w.rows, r0,
                                                                                                    n, w.scale);
      detail::check_launch("cuda matmul int8 scale");
    }
  }
}

}  // namespace

// M = 1 runs the GEMV above; 2 <= M <= 16 the tensor-core GEMV (matmul_mma.cu), where it fits. Measured on
// an H100 (7B shapes, tests/bench/bench_gpu_kernels): at M = 8 the mma kernel takes 1.0-1.2x the M = 1 time
// in bf16 and int8, 1.3-1.9x in int4, against 2.5-5x for this one (the SIMT GEMV does M dot products per
// weight); at M = 1 this one is up to 1.4x faster on the large matrices. GPTFAST_GEMV=simt / =mma force
// one kernel for every M <= 16 (A/B, tests); =tiled runs M = 1 on gemv_kernel instead of gemv1_kernel.
bool matmul_uses_mma(const QWeightView& w, int M) {
  static const bool simt = env_is("GPTFAST_GEMV", "simt"), mma = env_is("GPTFAST_GEMV", "mma");
  if (M > 16 || simt || !mma_gemv_fits(w, M)) return false;
  return mma || M >= 2;
}

int matmul_col_align(WeightFormat f) { return f == WeightFormat::BF16 ? 8 : f == WeightFormat::INT8 ? 16 : 32; }

namespace {

template <class Out>
void matmul_impl(const bf16* x, int M, const QWeightView& w, Out* out, GemmContext& g, cudaStream_t s) {
  GF_CHECK(M > 0, "cuda matmul: M must be > 0, got ", M);
  GF_CHECK(w.rows > 0 && w.cols > 0 && w.q && x && out, "cuda matmul: empty weight or null pointer");
  GF_CHECK(w.rows <= INT32_MAX && w.cols <= INT32_MAX, "cuda matmul: rows/cols must fit int32");
  const int align = matmul_col_align(w.format);
  GF_CHECK(w.cols % align == 0, "cuda matmul: ", w.format == WeightFormat::BF16 ? "bf16" : w.format == WeightFormat::INT8 ? "int8" : "int4",
           " weight cols must be a multiple of ", align, ", got ", w.cols);
  GF_CHECK(reinterpret_cast<uintptr_t>(w.q) % 16 == 0, "cuda matmul: weight q must be 16-byte aligned");
  if (w.format != WeightFormat::BF16) GF_CHECK(w.scale, "cuda matmul: quantized weight without scale");
  if (w.format == WeightFormat::INT4)
    GF_CHECK(w.zero && w.group_size > 0 && w.group_size % 32 == 0,
             "cuda matmul: int4 needs zero and a group size that is a multiple of 32, got ", w.group_size);
  if (M > 16) return gemm_cublas(x, M, w, out, g, s);
  GF_CHECK(w.format == WeightFormat::BF16 || reinterpret_cast<uintptr_t>(x) % 16 == 0,
           "cuda matmul: x must be 16-byte aligned for int8 / int4 weights");
  if (matmul_uses_mma(w, M) && reinterpret_cast<uintptr_t>(x) % 16 == 0) return launch_matmul_mma(x, M, w, out, s);

  GemvArgs a{detail::gemv_operands(x, M, w), 0, 0, 1};
  // x tile: all of cols if it fits, else a multiple of one warp-wide pass (32 lanes x 16 bytes);
  // shared memory holds whole passes (kts), the last one possibly partly used.
  const int64_t warp_step = 32 * 16 * w.cols / a.row_bytes;
  auto steps_in = [&](int64_t bytes) {
    // per column and token: x as fp32 (bf16 weights) or fp16, plus (int4) a 4-byte sum per 32 columns
    return (w.format == WeightFormat::BF16 ? bytes / (int64_t(M) * 4)
            : w.format == WeightFormat::INT8 ? bytes / (int64_t(M) * 2)
                                             : bytes * 32 / (int64_t(M) * (2 * 32 + 4))) / warp_step;
  };
  const int64_t steps_cols = detail::ceil_div(w.cols, warp_step);
  int64_t steps = steps_in(kSmemBytes);
  if (steps == 0) steps = steps_in(detail::smem_opt_in(kSmemOptIn));
  GF_ASSERT(steps > 0);
  a.kt = int(steps_cols <= steps ? w.cols : steps * warp_step);
  a.kts = int(std::min(steps, steps_cols) * warp_step);
  switch (w.format) {
    case WeightFormat::BF16: gemv_dispatch<WeightFormat::BF16>(a, out, s); break;
    case WeightFormat::INT8: gemv_dispatch<WeightFormat::INT8>(a, out, s); break;
    case WeightFormat::INT4: gemv_dispatch<WeightFormat::INT4>(a, out, s); break;
  }
  detail::check_launch("cuda matmul");
}
}  // namespace

void launch_matmul(const bf16* x, int M, const QWeightView& w, bf16* out, GemmContext& g, cudaStream_t s) {
  matmul_impl(x, M, w, out, g, s);
}
void launch_matmul(const bf16* x, int M, const QWeightView& w, float* out, GemmContext& g, cudaStream_t s) {
  matmul_impl(x, M, w, out, g, s);
}

}  // namespace gf::cuda
