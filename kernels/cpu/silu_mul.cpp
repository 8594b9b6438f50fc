// silu_mul: the SwiGLU gate, out[m][i] = silu(h13[m][i]) * h13[m][hidden + i].
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace gf::cpu {

void silu_mul(const float* h13, int M, int64_t hidden, float* out) {
#pragma omp parallel for schedule(static) if (int64_t(M) * hidden > (1 << 16))
  for (int m = 0; m < M; ++m) {
    const float* gate = h13 + 2 * hidden * m;
    const float* up = gate + hidden;
    float* o = out + hidden * m;
#pragma omp simd
    for (int64_t i = 0; i < hidden; ++i) o[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
  }
}

}  // namespace gf::cpu
