// Rotate-half RoPE in place on M tokens' heads; angles in double (long positions keep precision).
#include "kernels/cuda/launch.cuh"

namespace gf::cuda {
namespace {
__global__ void rope_kernel(bf16* x, int64_t row_stride, int64_t n_heads, int64_t head_dim, const int32_t* pos,
                            const double* inv_freq) {
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // x (the QKV matmul's output) and pos come from earlier nodes
  const int m = blockIdx.y;
  const int64_t half = head_dim / 2, n = n_heads * half;
  const double p = pos[m];
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t h = t / half, i = t % half;
    double sn, cs;
    sincos(p * inv_freq[i], &sn, &cs);
    bf16* a = x + m * row_stride + h * head_dim + i;
    const float x0 = __bfloat162float(a[0]), x1 = __bfloat162float(a[half]);
    a[0] = __float2bfloat16(float(x0 * cs - x1 * sn));
    a[half] = __float2bfloat16(float(x1 * cs + x0 * sn));
  }
}
}  // namespace

void launch_rope(bf16* x, int M, int64_t row_stride, int64_t n_heads, int64_t head_dim, const int32_t* pos,
                 const double* inv_freq, cudaStream_t s) {
  GF_CHECK(M > 0 && M <= 65535, "cuda rope: M must be in [1, 65535], got ", M);
  GF_CHECK(n_heads > 0 && head_dim > 0 && head_dim % 2 == 0, "cuda rope: head_dim must be even and > 0, got ",
           head_dim);
  GF_CHECK(row_stride >= n_heads * head_dim, "cuda rope: row_stride ", row_stride, " < n_heads*head_dim");
  GF_CHECK(x && pos && inv_freq, "cuda rope: null pointer");
  const int64_t n = n_heads * head_dim / 2;
  const dim3 grid(unsigned(std::min<int64_t>(detail::ceil_div(n, 256), 64)), M);
  detail::launch("cuda rope", rope_kernel, grid, 256, 0, s, x, row_stride, n_heads, head_dim, pos, inv_freq);
}

}  // namespace gf::cuda
