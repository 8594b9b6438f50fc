// Synthetic data (a hash of (seed, index), so values do not depend on the launch shape) and
// float <-> bf16 conversion.
#include "kernels/cuda/common.cuh"

namespace gf::cuda {
namespace {
using detail::hash_normal;
using detail::hash_uniform;

#define GF_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

template <class T>
__global__ void uniform_kernel(T* out, int64_t n, uint64_t seed, float lo, float hi) {
  GF_GRID_STRIDE(i, n) out[i] = T(lo + (hi - lo) * hash_uniform(seed, i));
}
__global__ void normal_kernel(bf16* out, int64_t n, uint64_t seed, float mean, float sd) {
  GF_GRID_STRIDE(i, n) out[i] = __float2bfloat16(mean + sd * hash_normal(seed, i));
}
__global__ void int8_kernel(int8_t* q, int64_t n, uint64_t seed) {
  GF_GRID_STRIDE(i, n) q[i] = int8_t(min(int(hash_uniform(seed, i) * 255.f), 254) - 127);
}
__global__ void bytes_kernel(uint8_t* q, int64_t n, uint64_t seed) {  // two uniform nibbles per byte
  GF_GRID_STRIDE(i, n) q[i] = uint8_t(detail::mix64(seed * 0x9e3779b97f4a7c15ull + i) & 0xff);
}
// Scales vary by ±25% around `base` so a kernel that mixes up rows or groups shows it.
__global__ void scale_kernel(uint16_t* scale, uint16_t* zero, int64_t n, uint64_t seed, float base, float zero_mul) {
  GF_GRID_STRIDE(i, n) {
    const float s = base * (0.75f + 0.5f * hash_uniform(seed, i));
    scale[i] = __bfloat16_as_ushort(__float2bfloat16(s));
    if (zero) zero[i] = __bfloat16_as_ushort(__float2bfloat16(s * (zero_mul + 0.5f * hash_normal(seed ^ 0x5bd1e995, i))));
  }
}
__global__ void f2b_kernel(const float* in, int64_t n, bf16* out) { GF_GRID_STRIDE(i, n) out[i] = __float2bfloat16(in[i]); }
__global__ void b2f_kernel(const bf16* in, int64_t n, float* out) { GF_GRID_STRIDE(i, n) out[i] = __bfloat162float(in[i]); }

unsigned grid_for(int64_t n) { return unsigned(std::max<int64_t>(1, std::min<int64_t>(detail::ceil_div(n, 256), 4096))); }
}  // namespace

void launch_fill_uniform(bf16* out, int64_t n, uint64_t seed, float lo, float hi, cudaStream_t s) {
  GF_CHECK(out && n >= 0, "cuda fill_uniform: null output or negative n");
  if (n == 0) return;
  uniform_kernel<<<grid_for(n), 256, 0, s>>>(out, n, seed, lo, hi);
  detail::check_launch("cuda fill_uniform");
}
void launch_fill_uniform(float* out, int64_t n, uint64_t seed, float lo, float hi, cudaStream_t s) {
  GF_CHECK(out && n >= 0, "cuda fill_uniform: null output or negative n");
  if (n == 0) return;
  uniform_kernel<<<grid_for(n), 256, 0, s>>>(out, n, seed, lo, hi);
  detail::check_launch("cuda fill_uniform");
}
void launch_fill_normal(bf16* out, int64_t n, uint64_t seed, float mean, float stddev, cudaStream_t s) {
  GF_CHECK(out && n >= 0, "cuda fill_normal: null output or negative n");
  if (n == 0) return;
  normal_kernel<<<grid_for(n), 256, 0, s>>>(out, n, seed, mean, stddev);
  detail::check_launch("cuda fill_normal");
}

void launch_fill_random_weight(const QWeightView& w, uint64_t seed, float stddev, cudaStream_t s) {
  GF_CHECK(w.rows > 0 && w.cols > 0 && w.q, "cuda fill_random_weight: empty weight");
  const int64_t n = w.rows * w.cols;
  switch (w.format) {
    case WeightFormat::BF16:  // the view is const for the kernels that read it; here we own the data
      normal_kernel<<<grid_for(n), 256, 0, s>>>(static_cast<bf16*>(const_cast<void*>(w.q)), n, seed, 0.f, stddev);
      break;
    case WeightFormat::INT8: {  // uniform q in [-127, 127] has stddev 127 * scale / sqrt(3)
      GF_CHECK(w.scale, "cuda fill_random_weight: int8 needs scale");
      int8_kernel<<<grid_for(n), 256, 0, s>>>(static_cast<int8_t*>(const_cast<void*>(w.q)), n, seed);
      scale_kernel<<<grid_for(w.rows), 256, 0, s>>>(const_cast<uint16_t*>(w.scale), nullptr, w.rows, seed + 1,
                                                    stddev * 1.7320508f / 127.f, 0.f);
      break;
    }
    case WeightFormat::INT4: {  // uniform q in [0, 15]: stddev 15 * scale / sqrt(12); zero ≈ -7.5 scale
      GF_CHECK(w.scale && w.zero && w.group_size > 0 && w.cols % 2 == 0, "cuda fill_random_weight: int4 needs "
               "scale, zero, group_size > 0 and even cols");
      bytes_kernel<<<grid_for(n / 2), 256, 0, s>>>(static_cast<uint8_t*>(const_cast<void*>(w.q)), n / 2, seed);
      const int64_t ng = w.rows * w.n_groups();
      scale_kernel<<<grid_for(ng), 256, 0, s>>>(const_cast<uint16_t*>(w.scale), const_cast<uint16_t*>(w.zero), ng,
                                                seed + 1, stddev * 3.4641016f / 15.f, -7.5f);
      break;
    }
  }
  detail::check_launch("cuda fill_random_weight");
}

void launch_float_to_bf16(const float* in, int64_t n, bf16* out, cudaStream_t s) {
  GF_CHECK(in && out && n >= 0, "cuda float_to_bf16: null pointer or negative n");
  if (n == 0) return;
  f2b_kernel<<<grid_for(n), 256, 0, s>>>(in, n, out);
  detail::check_launch("cuda float_to_bf16");
}
void launch_bf16_to_float(const bf16* in, int64_t n, float* out, cudaStream_t s) {
  GF_CHECK(in && out && n >= 0, "cuda bf16_to_float: null pointer or negative n");
  if (n == 0) return;
  b2f_kernel<<<grid_for(n), 256, 0, s>>>(in, n, out);
  detail::check_launch("cuda bf16_to_float");
}

}  // namespace gf::cuda
