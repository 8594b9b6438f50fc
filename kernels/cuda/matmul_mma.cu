// out[M, rows] = x[M, cols] · Wᵀ for M <= 16 on the tensor cores: mma.sync m16n8k16 (bf16 in, fp32
// accumulate) with the weights as A (16 rows x 16 k) and x as B (16 k x 8 tokens), one or two n-tiles.
// The shipped GEMV (matmul.cu) spends a LOP3/FADD plus M FFMAs and shared-memory reads per weight;
// here one mma covers 256 weights for 8 tokens, so decode and speculative verify (M up to 16) cost
// about the dequantization alone. Layout and k order: mma_layout.h (checked on the host by
// tests/kernels_cpu/test_mma_layout.cpp).
//
// Rounding versus an fp32 GEMV over the dequantized weights: bf16 and int8 weights enter the mma
// exactly (int8: 128 + (q & 127) built exactly, then one exact bf16 add of -128 or -256; the row scale
// multiplies the fp32 sum). int4 weights are dequantized in bf16 before the mma: (128 + q) - 128 is
// exact, then fma(q, scale, zero) rounds once to bf16 (2^-9 relative per weight), the same single
// rounding the cuBLAS prefill path puts on int4 weights. Products of bf16 are exact; sums are fp32.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/mma_layout.h"

namespace gf::cuda {
namespace {
constexpr int kWarps = 8, kThreads = kWarps * 32;
constexpr int kUnroll = 4;  // chunks in flight per warp: 2 x kUnroll 16-byte loads per lane

struct MmaArgs : detail::GemvOperands {
  int ks;  // warps of a block that split K for the same 16 rows (1, 2, 4 or 8)
};

__device__ __forceinline__ __nv_bfloat162 as_bf2(uint32_t u) {
  __nv_bfloat162 r;
  memcpy(&r, &u, 4);
  return r;
}
__device__ __forceinline__ uint32_t as_u32(__nv_bfloat162 v) {
  uint32_t r;
  memcpy(&r, &v, 4);
  return r;
}

// D = A·B + D for one 16x8x16 tile; fragments as mma_layout.h's a_/b_/c_ functions give them.
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// One A register (bf16x2) of step s from a row's 16-byte load w; sz: int4 scale and zero of the
// load's group, each broadcast to both halves.
template <WeightFormat F>
__device__ __forceinline__ uint32_t a_reg(const uint32_t (&w)[4], int s, int hi, uint32_t s2, uint32_t z2) {
  const uint32_t b = mma::a_bits(F, w, s, hi);
  if constexpr (F == WeightFormat::BF16) {
    return b;
  } else if constexpr (F == WeightFormat::INT8) {
    return as_u32(__hadd2(as_bf2(b), as_bf2(mma::int8_fix(w, s, hi))));  // exact: integers below 2^8
  } else {
    const __nv_bfloat162 q = __hsub2(as_bf2(b), as_bf2(0x43004300u));     // exact: q in [0, 15]
    return as_u32(__hfma2(q, as_bf2(s2), as_bf2(z2)));                   // one rounding to bf16
  }
}

// Block = kWarps warps = (kWarps / ks) row tiles of 16 rows x ks warps splitting K. Warp kw of a row
// tile takes chunks kw, kw + ks, ... kUnroll at a time; partial sums meet in shared memory. All
// branches around mma are warp-uniform (mma.sync needs the whole warp).
// x is not staged in shared memory: each lane reads its B octets straight from global memory (through
// L1, where x stays: it is read by every warp of the SM) and permutes them in registers (permuted_word).
// Staging made every block copy all of x (M x cols) before its first mma: at M = 8 on the 7B shape as
// many bytes as its weights.
template <WeightFormat F, int NT, class Out>
__global__ void __launch_bounds__(kThreads, 2) mma_gemv_kernel(MmaArgs a, Out* __restrict__ out) {
  constexpr int V = mma::per_load(F), W = mma::units_per_lane(F), KC = mma::chunk_cols(F);
  __shared__ float red[kWarps][NT][4][32];  // the split-K partial sums
  detail::pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, kw = warp % a.ks, rt = warp / a.ks;
  const int g = mma::lane_g(lane), t = mma::lane_t(lane);
  const int64_t row0 = (int64_t(blockIdx.x) * (kWarps / a.ks) + rt) * 16;
  const int64_t rows2[2] = {detail::min64(row0 + g, a.rows - 1), detail::min64(row0 + g + 8, a.rows - 1)};  // tail: read, don't write
  const bf16* xrow[NT];  // this lane's B column (token) per n-tile; tokens >= M read token M-1, never written
#pragma unroll
  for (int n = 0; n < NT; ++n) xrow[n] = a.x + int64_t(min(n * 8 + g, a.M - 1)) * a.cols;
  const int nc = int((a.cols + KC - 1) / KC), nb = (mma::warp_chunks(nc, kw, a.ks) + kUnroll - 1) / kUnroll;
  float acc[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[n][e] = 0.f;

  uint4 v[kUnroll][2];
  uint32_t s2[kUnroll][2], z2[kUnroll][2];  // int4: scale, zero of the load's group (bf16x2 broadcast)
  // a lane past the end of a partial last chunk loads zero weights and zero x
  auto lane_ok = [&](int c) { return c < nc && int64_t(c) * KC + t * V < a.cols; };
  auto x_octet = [&](int c, int n, int i) {  // B octet i of chunk c for n-tile n, as loaded
    return lane_ok(c) ? detail::load_act(xrow[n] + mma::lane_col(F, c, t, i)) : make_uint4(0, 0, 0, 0);
  };
  // Where a chunk takes at most two x octets (bf16; int8 at M <= 8) a batch's octets are loaded with its
  // weights: registers allow it, and bf16 loading them in compute_batch showed their L1 latency (M = 8:
  // 6-35% slower than x staged in shared memory). Otherwise (int4; int8 at M > 8) they are loaded where
  // they are used.
  constexpr bool kXEarly = W * NT <= 2;
  uint4 xe[kXEarly ? kUnroll : 1][kXEarly ? W : 1][NT];
  auto load_x = [&](int b) {
    if constexpr (kXEarly)
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int i = 0; i < W; ++i)
#pragma unroll
          for (int n = 0; n < NT; ++n) xe[u][i][n] = x_octet(mma::warp_chunk(kw, b * kUnroll + u, a.ks), n, i);
  };
  auto load_batch = [&](int b) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = mma::warp_chunk(kw, b * kUnroll + u, a.ks);
      const bool ok = lane_ok(c);
      const int64_t col = int64_t(c) * KC + t * V;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        v[u][r] = ok ? detail::load_stream(a.q + rows2[r] * a.row_bytes + weight_byte_of_col(F, col)) : make_uint4(0, 0, 0, 0);
        if constexpr (F == WeightFormat::INT4) {
          s2[u][r] = z2[u][r] = 0;
          if (ok) {  // a 16-byte load (32 columns) never straddles a group: group_size % 32 == 0
            const int64_t i = rows2[r] * a.n_groups + col / a.group_size;
            s2[u][r] = uint32_t(__ldg(a.scale + i)) * 0x10001u;
            z2[u][r] = uint32_t(__ldg(a.zero + i)) * 0x10001u;
          }
        }
      }
    }
  };
  auto compute_batch = [&](int b) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = mma::warp_chunk(kw, b * kUnroll + u, a.ks);
      if (c >= nc) continue;  // warp-uniform
      const uint32_t w0[4] = {v[u][0].x, v[u][0].y, v[u][0].z, v[u][0].w};  // row g
      const uint32_t w1[4] = {v[u][1].x, v[u][1].y, v[u][1].z, v[u][1].w};  // row g + 8
#pragma unroll
      for (int i = 0; i < W; ++i) {
        uint32_t xb[NT][4];
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          const uint4 o = kXEarly ? xe[u][i][n] : x_octet(c, n, i);
          const uint32_t ow[4] = {o.x, o.y, o.z, o.w};
#pragma unroll
          for (int k = 0; k < 4; ++k) xb[n][k] = mma::permuted_word(F, ow, k);
        }
#pragma unroll
        for (int s = 2 * i; s < 2 * i + 2; ++s) {
          // A registers in PTX order: (row g, k lo), (row g+8, k lo), (row g, k hi), (row g+8, k hi)
          const uint32_t af[4] = {a_reg<F>(w0, s, 0, s2[u][0], z2[u][0]), a_reg<F>(w1, s, 0, s2[u][1], z2[u][1]),
                                  a_reg<F>(w0, s, 1, s2[u][0], z2[u][0]), a_reg<F>(w1, s, 1, s2[u][1], z2[u][1])};
#pragma unroll
          for (int n = 0; n < NT; ++n) mma_16816(acc[n], af, xb[n][mma::b_word(s, 0)], xb[n][mma::b_word(s, 1)]);
        }
      }
    }
  };

  // (PDL) weights, scales and zeros are written by no kernel: the first batch goes out before the wait
  // for the kernel that writes x (and for earlier readers of out)
  load_batch(0);
  detail::pdl_wait();
  load_x(0);
  for (int b = 0; b < nb; ++b) {
    if (b > 0) load_batch(b), load_x(b);
    compute_batch(b);
  }

  if (a.ks > 1) {  // lanes of the K-split warps hold the same (row, token) slots: sum them
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) red[warp][n][e][lane] = acc[n][e];
    __syncthreads();
    if (kw != 0) return;
    for (int j = 1; j < a.ks; ++j)
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[n][e] += red[warp + j][n][e][lane];
  }
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t row = row0 + mma::c_row(lane, e);
      const int m = n * 8 + mma::c_col(lane, e);
      if (row >= a.rows || m >= a.M) continue;
      float r = acc[n][e];
      if constexpr (F == WeightFormat::INT8) r *= detail::bf16_lo(a.scale[row]);
      if constexpr (sizeof(Out) == 4) out[m * a.rows + row] = r;
      else out[m * a.rows + row] = __float2bfloat16(r);
    }
}

template <WeightFormat F, int NT, class Out>
void launch_mma(MmaArgs a, Out* out, cudaStream_t s) {
  const int64_t row_tiles = detail::ceil_div(a.rows, 16);
  a.ks = detail::split_k(detail::ceil_div(a.cols, int64_t(mma::chunk_cols(F))), row_tiles, kWarps);
  const int64_t blocks = detail::ceil_div(row_tiles, kWarps / a.ks);
  detail::launch("cuda matmul_mma", mma_gemv_kernel<F, NT, Out>, unsigned(blocks), kThreads, 0, s, a, out);
}

template <WeightFormat F, class Out>
void mma_dispatch(const MmaArgs& a, Out* out, cudaStream_t s) {
  if (a.M <= 8) return launch_mma<F, 1>(a, out, s);
  launch_mma<F, 2>(a, out, s);
}

template <class Out>
void matmul_mma_impl(const bf16* x, int M, const QWeightView& w, Out* out, cudaStream_t s) {
  GF_CHECK(mma_gemv_fits(w, M), "cuda matmul_mma: unsupported M=", M, " or weight (rows ", w.rows, ", cols ", w.cols,
           ", group ", w.group_size, "); call only where mma_gemv_fits");
  GF_CHECK(x && out, "cuda matmul_mma: null x or out");
  GF_CHECK(reinterpret_cast<uintptr_t>(x) % 16 == 0, "cuda matmul_mma: x must be 16-byte aligned");
  if (w.format != WeightFormat::BF16) GF_CHECK(w.scale, "cuda matmul_mma: quantized weight without scale");
  if (w.format == WeightFormat::INT4) GF_CHECK(w.zero, "cuda matmul_mma: int4 weight without zero");
  MmaArgs a{detail::gemv_operands(x, M, w), 1};
  switch (w.format) {
    case WeightFormat::BF16: mma_dispatch<WeightFormat::BF16>(a, out, s); break;
    case WeightFormat::INT8: mma_dispatch<WeightFormat::INT8>(a, out, s); break;
    case WeightFormat::INT4: mma_dispatch<WeightFormat::INT4>(a, out, s); break;
  }
  detail::check_launch("cuda matmul_mma");
}
}  // namespace

bool mma_gemv_fits(const QWeightView& w, int M) {
  if (M < 1 || M > 16 || w.rows < 1 || w.cols < 1 || w.rows > INT32_MAX || w.cols > INT32_MAX || !w.q) return false;
  if (w.cols % mma::per_load(w.format) != 0 || reinterpret_cast<uintptr_t>(w.q) % 16 != 0) return false;
  // int4: every lane's 32 columns must share one group (scale and zero are applied per load)
  return w.format != WeightFormat::INT4 || (w.group_size > 0 && w.group_size % 32 == 0);
}

void launch_matmul_mma(const bf16* x, int M, const QWeightView& w, bf16* out, cudaStream_t s) {
  matmul_mma_impl(x, M, w, out, s);
}
void launch_matmul_mma(const bf16* x, int M, const QWeightView& w, float* out, cudaStream_t s) {
  matmul_mma_impl(x, M, w, out, s);
}

}  // namespace gf::cuda
