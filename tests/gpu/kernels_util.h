// Test helpers for the CUDA kernels: RAII device buffers, bf16 host/device transfers, comparisons.
#pragma once
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/bf16.h"
#include "core/error.h"
#include "kernels/cuda/cuda_ops.h"

namespace gf::test {

template <class T>
class DevBuf {  // move-only device array
 public:
  explicit DevBuf(size_t n) : n_(n) { cuda::check_cuda(cudaMalloc(&p_, std::max<size_t>(n, 1) * sizeof(T)), "DevBuf"); }
  ~DevBuf() { if (p_) cudaFree(p_); }
  DevBuf(DevBuf&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  void poison() { cuda::check_cuda(cudaMemset(p_, 0xff, n_ * sizeof(T)), "poison"); }  // NaN in float and bf16
  // Synchronized: a pageable cudaMemcpy may return before its DMA lands, and a kernel on a non-blocking
  // stream would not wait for it.
  void upload(const std::vector<T>& h) {
    cuda::check_cuda(cudaMemcpy(p_, h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "upload");
    cuda::check_cuda(cudaDeviceSynchronize(), "upload");
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    cuda::check_cuda(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return h;
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

inline std::vector<float> bf16_dev_to_float(const DevBuf<cuda::bf16>& d) {
  std::vector<cuda::bf16> h = d.download();
  std::vector<float> f(h.size());
  for (size_t i = 0; i < h.size(); ++i) f[i] = float(h[i]);
  return f;
}

// Random values already rounded to bf16, uploaded as bf16; returns the exact floats.
inline std::vector<float> random_bf16(DevBuf<cuda::bf16>& d, std::mt19937& rng, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> f(d.size());
  std::vector<cuda::bf16> h(d.size());
  for (size_t i = 0; i < f.size(); ++i) {
    f[i] = round_to_bf16(dist(rng));
    h[i] = cuda::bf16(f[i]);
  }
  d.upload(h);
  return f;
}

// Every element written (finite) and |got - ref| <= atol + rtol |ref|; reports the first failures.
inline void expect_close(const std::vector<float>& got, const std::vector<float>& ref, float atol, float rtol,
                         const char* what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < ref.size() && bad < 5; ++i) {
    if (!std::isfinite(got[i]) || std::fabs(got[i] - ref[i]) > atol + rtol * std::fabs(ref[i])) {
      ADD_FAILURE() << what << ": element " << i << " got " << got[i] << " want " << ref[i];
      ++bad;
    }
  }
}

inline double rel_norm_err(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += double(got[i] - ref[i]) * (got[i] - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace gf::test
