// add_rmsnorm: the residual add fused with the next RMSNorm (x += delta; out = rmsnorm(x)).
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/rmsnorm_impl.h"

namespace gf::cpu {

void add_rmsnorm(float* x, const float* delta, const uint16_t* w, int M, int64_t dim, float eps,
                 float* out) {
#pragma omp parallel for schedule(static) if (M > 1)
  for (int m = 0; m < M; ++m) {
    float* xm = x + m * dim;
    const float* dm = delta + m * dim;
#pragma omp simd
    for (int64_t i = 0; i < dim; ++i) xm[i] += dm[i];
    detail::rmsnorm_row(xm, w, dim, eps, out + m * dim);
  }
}

}  // namespace gf::cpu
