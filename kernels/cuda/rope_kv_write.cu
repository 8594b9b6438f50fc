// RoPE on the q and k heads of M tokens' QKV rows, in place, and those tokens' k (rotated) and v written
// into one layer's cache: one kernel where cpu::rope and cpu::kv_write are two, because at decode each
// launch in the graph costs about as much as the work (two ~4 us kernels per layer on an H100).
// Angles in double, as the CPU twin: long positions keep their precision.
#include "kernels/cuda/launch.cuh"

namespace gf::cuda {
namespace {
// Rotates pair (i, i + half) of the head at a in place (token position p); returns the bf16 results.
__device__ __forceinline__ void rotate_pair(bf16* a, int64_t i, int64_t half, int64_t p, const double* inv_freq,
                                            bf16& r0, bf16& r1) {
  double sn, cs;
  sincos(double(p) * inv_freq[i], &sn, &cs);
  const float x0 = __bfloat162float(a[i]), x1 = __bfloat162float(a[i + half]);
  r0 = __float2bfloat16(float(x0 * cs - x1 * sn)), r1 = __float2bfloat16(float(x1 * cs + x0 * sn));
  a[i] = r0, a[i + half] = r1;
}

// bf16 cache. Threads [0, n_rot): one rotate-half pair each of the q then k heads (k also goes to the
// cache); threads [n_rot, n_rot + n_v): one v element each. blockIdx.y is the token.
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
      bf16 r0, r1;
      rotate_pair(row + h * head_dim, i, half, p, inv_freq, r0, r1);
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

// int8 cache: threads [0, n_qrot) rotate the q heads' pairs as above (n_qrot rounded up to whole warps);
// then one warp per k head (its pairs rotated first) and one per v head: the row's max |x| is a warp
// reduction, then each lane rounds its values as cpu::round_kv_int8 and lane 0 writes the scale.
constexpr int kMaxPerLane = 8;  // head_dim <= 256
__global__ void rope_kv_write_int8_kernel(bf16* qkv, int64_t row_stride, int64_t n_heads, int64_t n_kv_heads,
                                          int64_t head_dim, const int32_t* pos, const double* inv_freq,
                                          int64_t max_seq, KvLayer kv) {
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // as above
  const int m = blockIdx.y;
  const int64_t p = pos[m], half = head_dim / 2, n_q = n_heads * half, n_qrot = detail::ceil_div(n_q, 32) * 32;
  bf16* row = qkv + m * row_stride;
  const bool cached = p >= 0 && p < max_seq;
  const int64_t total = n_qrot + 2 * n_kv_heads * 32;  // a multiple of 32: every warp runs whole iterations
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    if (t < n_qrot) {
      bf16 r0, r1;
      if (t < n_q) rotate_pair(row + t / half * head_dim, t % half, half, p, inv_freq, r0, r1);
      continue;
    }
    const int64_t u = (t - n_qrot) / 32, lane = t % 32;
    const bool is_k = u < n_kv_heads;
    const int64_t h = is_k ? u : u - n_kv_heads;
    bf16* src = row + (n_heads + (is_k ? 0 : n_kv_heads) + h) * head_dim;
    float x[kMaxPerLane];  // k: pairs (lane + 32 j, + half); v: elements lane + 32 j
    const int per = int(head_dim / 32);
    float amax = 0.f;
#pragma unroll
    for (int j = 0; j < kMaxPerLane; ++j) {
      if (j >= per) break;
      if (is_k) {
        if (j % 2) continue;
        const int64_t i = lane + 32 * (j / 2);
        bf16 r0, r1;
        rotate_pair(src, i, half, p, inv_freq, r0, r1);
        x[j] = __bfloat162float(r0), x[j + 1] = __bfloat162float(r1);
      } else {
        x[j] = __bfloat162float(src[lane + 32 * j]);
      }
    }
#pragma unroll
    for (int j = 0; j < kMaxPerLane; ++j)
      if (j < per) amax = fmaxf(amax, fabsf(x[j]));
    amax = detail::warp_max(amax);
    if (!cached) continue;
    const float inv = amax > 0.f ? 127.f / amax : 0.f, s = amax / 127.f;
    int8_t* dst = static_cast<int8_t*>(is_k ? kv.k : kv.v) + (h * max_seq + p) * head_dim;
#pragma unroll
    for (int j = 0; j < kMaxPerLane; ++j) {
      if (j >= per) break;
      const int64_t d = is_k ? lane + 32 * (j / 2) + (j % 2) * half : lane + 32 * j;
      dst[d] = int8_t(rintf(x[j] * inv));
    }
    if (lane == 0) (is_k ? kv.k_scale : kv.v_scale)[h * max_seq + p] = s;
  }
}
}  // namespace

void launch_rope_kv_write(bf16* qkv, int M, int64_t row_stride, int64_t n_heads, int64_t n_kv_heads,
                          int64_t head_dim, const int32_t* pos, const double* inv_freq, int64_t max_seq,
                          const KvLayer& kv, cudaStream_t s) {
  GF_CHECK(M > 0 && M <= 65535, "cuda rope_kv_write: M must be in [1, 65535], got ", M);
  GF_CHECK(n_heads > 0 && n_kv_heads > 0 && head_dim > 0 && head_dim % 2 == 0 && max_seq > 0,
           "cuda rope_kv_write: heads and max_seq must be > 0 and head_dim even, got head_dim ", head_dim);
  GF_CHECK(row_stride >= (n_heads + 2 * n_kv_heads) * head_dim, "cuda rope_kv_write: row_stride ", row_stride,
           " < the q, k and v heads' width");
  GF_CHECK(qkv && pos && inv_freq && kv.k && kv.v, "cuda rope_kv_write: null pointer");
  if (kv.int8()) {
    GF_CHECK(kv.v_scale && head_dim % 64 == 0 && head_dim / 32 <= kMaxPerLane,
             "cuda rope_kv_write: the int8 KV cache needs both scales and head_dim 64, 128, 192 or 256, got ", head_dim);
    const int64_t n = detail::ceil_div(n_heads * head_dim / 2, 32) * 32 + 2 * n_kv_heads * 32;
    const dim3 grid(unsigned(std::min<int64_t>(detail::ceil_div(n, 256), 128)), M);
    detail::launch("cuda rope_kv_write", rope_kv_write_int8_kernel, grid, 256, 0, s, qkv, row_stride, n_heads,
                   n_kv_heads, head_dim, pos, inv_freq, max_seq, kv);
    return;
  }
  const int64_t n = (n_heads + n_kv_heads) * head_dim / 2 + n_kv_heads * head_dim;
  const dim3 grid(unsigned(std::min<int64_t>(detail::ceil_div(n, 256), 128)), M);
  detail::launch("cuda rope_kv_write", rope_kv_write_kernel, grid, 256, 0, s, qkv, row_stride, n_heads, n_kv_heads,
                 head_dim, pos, inv_freq, max_seq, static_cast<bf16*>(kv.k), static_cast<bf16*>(kv.v));
}

}  // namespace gf::cuda
