// Helpers of the CPU kernel tests: seeded random inputs, an atol + rtol*|ref| comparison.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/bf16.h"

namespace gf::test {

inline std::vector<float> rand_floats(std::mt19937_64& rng, size_t n, float lo = -1.f,
                                      float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline std::vector<uint16_t> rand_bf16(std::mt19937_64& rng, size_t n, float lo = -1.f,
                                       float hi = 1.f) {
  std::vector<uint16_t> v(n);
  for (auto& h : v) h = float_to_bf16(std::uniform_real_distribution<float>(lo, hi)(rng));
  return v;
}

// Every element within atol + rtol*|ref|; reports the first few misses with their index.
inline void expect_close(const float* got, const double* ref, size_t n, double atol, double rtol,
                         const char* what) {
  int misses = 0;
  for (size_t i = 0; i < n && misses < 5; ++i) {
    const double tol = atol + rtol * std::fabs(ref[i]);
    if (!(std::fabs(double(got[i]) - ref[i]) <= tol)) {  // written so NaN fails
      ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << ", want " << ref[i] << " (tol "
                    << tol << ")";
      ++misses;
    }
  }
}

inline void expect_close(const std::vector<float>& got, const std::vector<double>& ref, double atol,
                         double rtol, const char* what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  expect_close(got.data(), ref.data(), got.size(), atol, rtol, what);
}

}  // namespace gf::test
