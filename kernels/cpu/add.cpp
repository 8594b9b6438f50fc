// add: the residual connection, x[m] += delta[m].
#include "kernels/cpu/cpu_ops.h"

namespace gf::cpu {

void add(float* x, const float* delta, int M, int64_t dim) {
  const int64_t n = int64_t(M) * dim;
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) x[i] += delta[i];
}

}  // namespace gf::cpu
