// Private: one row of RMSNorm, shared by rmsnorm and add_rmsnorm.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/bf16.h"

namespace gf::cpu::detail {

// out = x / sqrt(mean(x^2) + eps) * w; out may alias x (the sum is taken before any write).
inline void rmsnorm_row(const float* x, const uint16_t* w, int64_t dim, float eps, float* out) {
  float ss = 0.f;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < dim; ++i) ss += x[i] * x[i];
  const float inv = 1.f / std::sqrt(ss / float(dim) + eps);
#pragma omp simd
  for (int64_t i = 0; i < dim; ++i) out[i] = x[i] * inv * bf16_to_float(w[i]);
}

}  // namespace gf::cpu::detail
