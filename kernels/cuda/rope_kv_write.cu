// RoPE on the q and k heads of M tokens' QKV rows, in place, and those tokens' k (rotated) and v written
// into one layer's cache: one kernel where cpu::rope and cpu::kv_write are two, because at decode each
// launch in the graph costs about as much as the work (two ~4 us kernels per layer on an H100).
// Angles in double, as the CPU twin: long positions keep their precision.
#include "kernels/cuda/launch.cuh"

namespace gf::cuda {
namespace {
// Threads [0, n_rot): one rotate-half pair each of the q then k heads (k also goes to the cache);
// threads [n_rot, n_rot + n_v): one v element each. blockIdx.y is the token.
__global__ void rope_kv_write_kernel(bf16* qkv, int64_t row_stride, int64_t n_heads, int64_t n_kv_heads,
                                     int64_t head_dim, const int32_t* pos, const double* inv_freq, int64_t max_seq,
                                     bf16* kc, bf16* vc) {
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // qkv (the QKV matmul's output) and pos come from earlier nodes; attention reads the cache
  const int m = blockIdx.y;
  const int64_t p = pos[m], half = head_dim / 2;
  const int64_t n_rot = (n_heads + n_kv_heads) * half, n_v = n_kv_heads * head_dim;
  bf16* row = qkv + m * row_stride;
  const bool cached = p >= 0 && p < max_seq;  // the host validates positions; never write out of the cache
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n_rot + n_v; t += int64_t(gridDim.x) * blockDim.x) {
    if (t < n_rot) {
      const int64_t h = t / half, i = t % half;
      double sn, cs;
      sincos(double(p) * inv_freq[i], &sn, &cs);
      bf16* a = row + h * head_dim + i;
      const float x0 = __bfloat162float(a[0]), x1 = __bfloat162float(a[half]);
      const bf16 r0 = __float2bfloat16(float(x0 * cs - x1 * sn)), r1 = __float2bfloat16(float(x1 * cs + x0 * sn));
      a[0] = r0, a[half] = r1;
      if (h >= n_heads && cached) {  // a k head: [kv head][position][head_dim]
        bf16* k = kc + ((h - n_heads) * max_seq + p) * head_dim + i;
        k[0] = r0, k[half] = r1;
      }
    } else if (cached) {
      const int64_t e = t - n_rot, h = e / head_dim, d = e % head_dim;
      vc[(h * max_seq + p) * head_dim + d] = row[(n_heads + n_kv_heads) * head_dim + e];
    }
  }
}
}  // namespace

void launch_rope_kv_write(bf16* qkv, int M, int64_t row_stride, int64_t n_heads, int64_t n_kv_heads,
                          int64_t head_dim, const int32_t* pos, const double* inv_freq, int64_t max_seq, bf16* k_cache,
                          bf16* v_cache, cudaStream_t s) {
  GF_CHECK(M > 0 && M <= 65535, "cuda rope_kv_write: M must be in [1, 65535], got ", M);
  GF_CHECK(n_heads > 0 && n_kv_heads > 0 && head_dim > 0 && head_dim % 2 == 0 && max_seq > 0,
           "cuda rope_kv_write: heads and max_seq must be > 0 and head_dim even, got head_dim ", head_dim);
  GF_CHECK(row_stride >= (n_heads + 2 * n_kv_heads) * head_dim, "cuda rope_kv_write: row_stride ", row_stride,
           " < the q, k and v heads' width");
  GF_CHECK(qkv && pos && inv_freq && k_cache && v_cache, "cuda rope_kv_write: null pointer");
  const int64_t n = (n_heads + n_kv_heads) * head_dim / 2 + n_kv_heads * head_dim;
  const dim3 grid(unsigned(std::min<int64_t>(detail::ceil_div(n, 256), 128)), M);
  detail::launch("cuda rope_kv_write", rope_kv_write_kernel, grid, 256, 0, s, qkv, row_stride, n_heads, n_kv_heads,
                 head_dim, pos, inv_freq, max_seq, k_cache, v_cache);
}

}  // namespace gf::cuda
