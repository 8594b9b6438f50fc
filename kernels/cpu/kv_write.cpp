// kv_write: stores each token's k and v heads at its position in one layer's cache
// [kv_head][seq][head_dim]; round_kv_int8: the int8 cache's rounding of one head row.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"

namespace gf::cpu {

void kv_write(const float* k, const float* v, int M, int64_t row_stride, const int32_t* pos,
              int64_t n_kv_heads, int64_t head_dim, int64_t max_seq, float* k_cache,
              float* v_cache) {
  for (int m = 0; m < M; ++m)
    GF_CHECK(pos[m] >= 0 && pos[m] < max_seq, "kv_write: position ", pos[m], " of token ", m,
             " is outside the KV cache [0, ", max_seq, ")");
  const size_t bytes = size_t(head_dim) * sizeof(float);
  for (int m = 0; m < M; ++m)
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      const int64_t dst = (h * max_seq + pos[m]) * head_dim, src = m * row_stride + h * head_dim;
      std::memcpy(k_cache + dst, k + src, bytes);
      std::memcpy(v_cache + dst, v + src, bytes);
    }
}

void round_kv_int8(float* x, int64_t n) {
  float amax = 0.f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (amax == 0.f) return;
  const float inv = 127.f / amax, s = amax / 127.f;  // the CUDA kernel computes both the same way
  for (int64_t i = 0; i < n; ++i) x[i] = std::rint(x[i] * inv) * s;
}

}  // namespace gf::cpu
