// attention: causal, GQA-aware attention of M query tokens over one layer's KV cache.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/cpu_ops.h"

namespace gf::cpu {

void attention(const float* q, int M, int64_t q_stride, const int32_t* pos, const float* k_cache,
               const float* v_cache, int64_t max_seq, int64_t n_heads, int64_t n_kv_heads,
               int64_t head_dim, float* out) {
  GF_CHECK(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "attention: n_heads ", n_heads,
           " must be a multiple of n_kv_heads ", n_kv_heads);
  for (int m = 0; m < M; ++m)
    GF_CHECK(pos[m] >= 0 && pos[m] < max_seq, "attention: position ", pos[m], " of token ", m,
             " is outside the KV cache [0, ", max_seq, ")");
  const int64_t group = n_heads / n_kv_heads;
  const float scale = 1.f / std::sqrt(float(head_dim));
#pragma omp parallel
  {
    std::vector<float> p(max_seq);
#pragma omp for collapse(2) schedule(dynamic)
    for (int m = 0; m < M; ++m)
      for (int64_t h = 0; h < n_heads; ++h) {
        const float* qh = q + m * q_stride + h * head_dim;
        const float* kh = k_cache + (h / group) * max_seq * head_dim;
        const float* vh = v_cache + (h / group) * max_seq * head_dim;
        const int64_t n = int64_t(pos[m]) + 1;  // causal: positions 0..pos[m]
        float mx = -INFINITY;
        for (int64_t t = 0; t < n; ++t) {
          p[t] = detail::dot(qh, kh + t * head_dim, head_dim) * scale;
          mx = std::max(mx, p[t]);
        }
        float sum = 0.f;  // softmax with the max subtracted: exp never overflows
        for (int64_t t = 0; t < n; ++t) sum += (p[t] = std::exp(p[t] - mx));
        float* o = out + (m * n_heads + h) * head_dim;
        std::fill(o, o + head_dim, 0.f);
        for (int64_t t = 0; t < n; ++t) {
          const float wt = p[t] / sum;
          const float* vt = vh + t * head_dim;
#pragma omp simd
          for (int64_t d = 0; d < head_dim; ++d) o[d] += wt * vt[d];
        }
      }
  }
}

}  // namespace gf::cpu
