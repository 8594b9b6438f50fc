// rmsnorm: out[m] = x[m] / sqrt(mean(x[m]^2) + eps) * w.
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/rmsnorm_impl.h"

namespace gf::cpu {

void rmsnorm(const float* x, const uint16_t* w, int M, int64_t dim, float eps, float* out) {
#pragma omp parallel for schedule(static) if (M > 1)
  for (int m = 0; m < M; ++m) detail::rmsnorm_row(x + m * dim, w, dim, eps, out + m * dim);
}

}  // namespace gf::cpu
