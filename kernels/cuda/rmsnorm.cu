// RMSNorm, the residual add fused with it, and the plain residual add; one block per token row.
#include "kernels/cuda/launch.cuh"

namespace gf::cuda {
namespace {
constexpr int kThreads = 512, kUnits = 2;  // a chunk of kThreads x kUnits units covers dim 8192 in octets

// U bf16 values at p as floats: one 16-byte access when U = 8 (p 16-byte aligned), else scalar.
template <int U>
__device__ __forceinline__ void load_units(const void* p, float (&f)[U]) {
  if constexpr (U == 8) {
    detail::bf16x8(*static_cast<const uint4*>(p), f);
  } else {
    f[0] = detail::bf16_lo(*static_cast<const uint16_t*>(p));
  }
}
template <int U>
__device__ __forceinline__ void store_units(bf16* p, const float (&f)[U]) {
  if constexpr (U == 8) {
    uint4 v;
    uint32_t* u = &v.x;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const __nv_bfloat162 h = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
      u[i] = *reinterpret_cast<const uint32_t*>(&h);
    }
    *reinterpret_cast<uint4*>(p) = v;
  } else {
    p[0] = __float2bfloat16(f[0]);
  }
}

// x (and delta when given: x += delta, stored) -> out = x * rsqrt(mean(x^2) + eps) * w, one block per row.
// Each thread holds kUnits units of U values (U = 8: 16-byte accesses, when dim and the pointers allow)
// of a chunk in registers, every load of the chunk issued before the first use: the scalar loop this
// replaced waited for memory once per element and took 10 us per 4096-wide row on an H100 (two per
// layer). Rows longer than one chunk read x and w again in the second pass. The sum of squares uses the
// bf16-rounded x that is stored, so the norm sees what later layers see.
template <int U>
__global__ void __launch_bounds__(kThreads) rmsnorm_kernel(bf16* x, const bf16* delta, const uint16_t* w, int64_t dim,
                                                           float eps, bf16* out) {
  detail::pdl_launch_dependents();
  const int64_t base = blockIdx.x * dim, chunk = int64_t(kThreads) * kUnits * U;
  auto at = [&](int64_t c0, int j) { return c0 + (int64_t(j) * kThreads + threadIdx.x) * U; };  // a unit's column
  float wv[kUnits][U], v[kUnits][U];
#pragma unroll
  for (int j = 0; j < kUnits; ++j)  // w is a weight (no kernel writes it): read before the wait
    if (at(0, j) < dim) load_units<U>(w + at(0, j), wv[j]);
  detail::pdl_wait();  // x and delta come from the previous kernels
  float ss = 0.f;
  for (int64_t c0 = 0; c0 < dim; c0 += chunk) {
    float d[kUnits][U];
#pragma unroll
    for (int j = 0; j < kUnits; ++j) {
      if (at(c0, j) >= dim) continue;
      load_units<U>(x + base + at(c0, j), v[j]);
      if (delta) load_units<U>(delta + base + at(c0, j), d[j]);
    }
#pragma unroll
    for (int j = 0; j < kUnits; ++j) {
      if (at(c0, j) >= dim) continue;
#pragma unroll
      for (int e = 0; e < U; ++e) {
        if (delta) v[j][e] = __bfloat162float(__float2bfloat16(v[j][e] + d[j][e]));
        ss += v[j][e] * v[j][e];
      }
      if (delta) store_units<U>(x + base + at(c0, j), v[j]);
    }
  }
  const float inv = rsqrtf(detail::block_sum(ss) / float(dim) + eps);
  for (int64_t c0 = 0; c0 < dim; c0 += chunk) {
#pragma unroll
    for (int j = 0; j < kUnits; ++j) {
      if (at(c0, j) >= dim) continue;
      if (dim > chunk) {  // rows of several chunks: x again (this thread stored it) and w
        load_units<U>(x + base + at(c0, j), v[j]), load_units<U>(w + at(c0, j), wv[j]);
      }
#pragma unroll
      for (int e = 0; e < U; ++e) v[j][e] *= inv * wv[j][e];
      store_units<U>(out + base + at(c0, j), v[j]);
    }
  }
}

__global__ void add_kernel(bf16* x, const bf16* delta, int64_t n) {
  detail::pdl_launch_dependents();
  detail::pdl_wait();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = __float2bfloat16(__bfloat162float(x[i]) + __bfloat162float(delta[i]));
}

void check_args(const char* op, const void* x, const void* w, int M, int64_t dim, const void* out) {
  GF_CHECK(M > 0 && dim > 0, op, ": M and dim must be > 0, got M=", M, " dim=", dim);
  GF_CHECK(x && w && out, op, ": null pointer");
}

void launch_norm(const char* op, bf16* x, const bf16* delta, const uint16_t* w, int M, int64_t dim, float eps, bf16* out,
                 cudaStream_t s) {
  bool octets = dim % 8 == 0;  // 16-byte units where every row and pointer allows them
  for (const void* p : {static_cast<const void*>(x), static_cast<const void*>(delta), static_cast<const void*>(w),
                        static_cast<const void*>(out)})
    octets = octets && reinterpret_cast<uintptr_t>(p) % 16 == 0;
  if (octets) return detail::launch(op, rmsnorm_kernel<8>, M, kThreads, 0, s, x, delta, w, dim, eps, out);
  detail::launch(op, rmsnorm_kernel<1>, M, kThreads, 0, s, x, delta, w, dim, eps, out);
}
}  // namespace

void launch_rmsnorm(const bf16* x, const uint16_t* w, int M, int64_t dim, float eps, bf16* out, cudaStream_t s) {
  check_args("cuda rmsnorm", x, w, M, dim, out);
  // x is only read here (the cast serves the shared kernel, which writes x only with a delta).
  launch_norm("cuda rmsnorm", const_cast<bf16*>(x), nullptr, w, M, dim, eps, out, s);
}

void launch_add_rmsnorm(bf16* x, const bf16* delta, const uint16_t* w, int M, int64_t dim, float eps, bf16* out,
                        cudaStream_t s) {
  check_args("cuda add_rmsnorm", x, w, M, dim, out);
  GF_CHECK(delta, "cuda add_rmsnorm: null delta");
  GF_CHECK(out != x, "cuda add_rmsnorm: out must not alias x (x is the residual stream)");
  launch_norm("cuda add_rmsnorm", x, delta, w, M, dim, eps, out, s);
}

void launch_add(bf16* x, const bf16* delta, int M, int64_t dim, cudaStream_t s) {
  GF_CHECK(M > 0 && dim > 0 && x && delta, "cuda add: M, dim must be > 0 and pointers non-null");
  const int64_t n = M * dim;
  detail::launch("cuda add", add_kernel, unsigned(std::min<int64_t>(detail::ceil_div(n, 256), 1024)), 256, 0, s, x,
                 delta, n);
}

}  // namespace gf::cuda
