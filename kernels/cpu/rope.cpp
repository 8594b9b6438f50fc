// rope: rotate-half rotary embedding (Hugging Face's q/k layout) applied in place.
#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"

namespace gf::cpu {

void rope(float* x, int M, int64_t row_stride, int64_t n_heads, int64_t head_dim,
          const int32_t* pos, const double* inv_freq) {
  GF_CHECK(head_dim > 0 && head_dim % 2 == 0, "rope: head_dim ", head_dim,
           " must be positive and even");
  const int64_t half = head_dim / 2;
#pragma omp parallel if (M > 1)
  {
    std::vector<float> cs(half), sn(half);
#pragma omp for schedule(static)
    for (int m = 0; m < M; ++m) {
      // The angle in double: pos * inv_freq reaches ~1e5 rad at long context, beyond fp32's
      // precision.
      for (int64_t i = 0; i < half; ++i) {
        const double a = double(pos[m]) * inv_freq[i];
        cs[i] = float(std::cos(a));
        sn[i] = float(std::sin(a));
      }
      for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + m * row_stride + h * head_dim;
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          const float x0 = v[i], x1 = v[i + half];
          v[i] = x0 * cs[i] - x1 * sn[i];
          v[i + half] = x1 * cs[i] + x0 * sn[i];
        }
      }
    }
  }
}

}  // namespace gf::cpu
