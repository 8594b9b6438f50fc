// SwiGLU gate: out[m][i] = silu(h13[m][i]) * h13[m][hidden + i].
#include "kernels/cuda/launch.cuh"

namespace gf::cuda {
namespace {
__global__ void silu_mul_kernel(const bf16* h13, int64_t hidden, int64_t n, bf16* out) {
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // h13 is the W13 matmul's output
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = t / hidden, i = t % hidden;
    const float g = __bfloat162float(h13[m * 2 * hidden + i]), u = __bfloat162float(h13[m * 2 * hidden + hidden + i]);
    out[t] = __float2bfloat16(g / (1.f + __expf(-g)) * u);
  }
}
}  // namespace

void launch_silu_mul(const bf16* h13, int M, int64_t hidden, bf16* out, cudaStream_t s) {
  GF_CHECK(M > 0 && hidden > 0, "cuda silu_mul: M and hidden must be > 0");
  GF_CHECK(h13 && out, "cuda silu_mul: null pointer");
  const int64_t n = M * hidden;
  detail::launch("cuda silu_mul", silu_mul_kernel, unsigned(std::min<int64_t>(detail::ceil_div(n, 256), 2048)), 256, 0,
                 s, h13, hidden, n, out);
}

}  // namespace gf::cuda
