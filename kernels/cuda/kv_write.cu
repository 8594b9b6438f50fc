// Writes each token's k and v heads into one layer's bf16 cache [n_kv][max_seq][head_dim] at its position.
#include "kernels/cuda/launch.cuh"

namespace gf::cuda {
namespace {
__global__ void kv_write_kernel(const bf16* k, const bf16* v, int64_t row_stride, const int32_t* pos,
                                int64_t n_kv_heads, int64_t head_dim, int64_t max_seq, bf16* kc, bf16* vc) {
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // k, v (after RoPE) and pos come from earlier nodes; the cache is read by attention
  const int m = blockIdx.y;
  const int64_t p = pos[m];
  if (p < 0 || p >= max_seq) return;  // the host validates positions; never write out of the cache
  const int64_t n = n_kv_heads * head_dim;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t h = t / head_dim, d = t % head_dim, dst = (h * max_seq + p) * head_dim + d;
    kc[dst] = k[m * row_stride + t];
    vc[dst] = v[m * row_stride + t];
  }
}
}  // namespace

void launch_kv_write(const bf16* k, const bf16* v, int M, int64_t row_stride, const int32_t* pos,
                     int64_t n_kv_heads, int64_t head_dim, int64_t max_seq, bf16* k_cache, bf16* v_cache,
                     cudaStream_t s) {
  GF_CHECK(M > 0 && M <= 65535, "cuda kv_write: M must be in [1, 65535], got ", M);
  GF_CHECK(n_kv_heads > 0 && head_dim > 0 && max_seq > 0, "cuda kv_write: n_kv_heads, head_dim, max_seq must be > 0");
  GF_CHECK(row_stride >= n_kv_heads * head_dim, "cuda kv_write: row_stride ", row_stride, " < n_kv_heads*head_dim");
  GF_CHECK(k && v && pos && k_cache && v_cache, "cuda kv_write: null pointer");
  const int64_t n = n_kv_heads * head_dim;
  const dim3 grid(unsigned(std::min<int64_t>(detail::ceil_div(n, 256), 64)), M);
  detail::launch("cuda kv_write", kv_write_kernel, grid, 256, 0, s, k, v, row_stride, pos, n_kv_heads, head_dim,
                 max_seq, k_cache, v_cache);
}

}  // namespace gf::cuda
