// RMSNorm, the residual add fused with it, and the plain residual add; one block per token row.
#include "kernels/cuda/launch.cuh"

namespace gf::cuda {
namespace {
constexpr int kThreads = 512;

// x (and delta when given) -> [x += delta] -> out = x * rsqrt(mean(x^2) + eps) * w.
// The sum of squares uses the bf16-rounded x that is stored, so the norm sees what later layers see.
__global__ void rmsnorm_kernel(bf16* x, const bf16* delta, const uint16_t* w, int64_t dim, float eps, bf16* out,
                               bool write_x) {
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // x and delta come from the previous kernels
  const int64_t base = blockIdx.x * dim;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = __bfloat162float(x[base + i]);
    if (delta) {
      const bf16 r = __float2bfloat16(v + __bfloat162float(delta[base + i]));
      if (write_x) x[base + i] = r;
      v = __bfloat162float(r);
    }
    ss += v * v;
  }
  const float inv = rsqrtf(detail::block_sum(ss) / float(dim) + eps);
  if (!out) return;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = __bfloat162float(x[base + i]);
    if (delta && !write_x) v = __bfloat162float(__float2bfloat16(v + __bfloat162float(delta[base + i])));
    out[base + i] = __float2bfloat16(v * inv * detail::bf16_lo(w[i]));
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
}  // namespace

void launch_rmsnorm(const bf16* x, const uint16_t* w, int M, int64_t dim, float eps, bf16* out, cudaStream_t s) {
  check_args("cuda rmsnorm", x, w, M, dim, out);
  // x is only read here (the cast serves the shared kernel, which writes x only with a delta).
  detail::launch("cuda rmsnorm", rmsnorm_kernel, M, kThreads, 0, s, const_cast<bf16*>(x), nullptr, w, dim, eps, out,
                 false);
}

void launch_add_rmsnorm(bf16* x, const bf16* delta, const uint16_t* w, int M, int64_t dim, float eps, bf16* out,
                        cudaStream_t s) {
  check_args("cuda add_rmsnorm", x, w, M, dim, out);
  GF_CHECK(delta, "cuda add_rmsnorm: null delta");
  GF_CHECK(out != x, "cuda add_rmsnorm: out must not alias x (x is the residual stream)");
  detail::launch("cuda add_rmsnorm", rmsnorm_kernel, M, kThreads, 0, s, x, delta, w, dim, eps, out, true);
}

void launch_add(bf16* x, const bf16* delta, int M, int64_t dim, cudaStream_t s) {
  GF_CHECK(M > 0 && dim > 0 && x && delta, "cuda add: M, dim must be > 0 and pointers non-null");
  const int64_t n = M * dim;
  detail::launch("cuda add", add_kernel, unsigned(std::min<int64_t>(detail::ceil_div(n, 256), 1024)), 256, 0, s, x,
                 delta, n);
}

}  // namespace gf::cuda
