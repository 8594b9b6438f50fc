// Helpers shared by the kernels of kernels/cuda/ (internal: not part of the cuda_ops.h contract).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <utility>

#include "core/error.h"
#include "kernels/cuda/cuda_ops.h"

namespace gf::cuda::detail {

// Checks the launch just made (configuration errors surface here; faults surface at the next sync).
inline void check_launch(const char* op) { check_cuda(cudaGetLastError(), op); }

__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// An attribute of the current device, asked once per (device, attribute): launches sit in hot loops
// and graph captures, where a driver query each time would cost more than some kernels.
inline int device_attr(cudaDeviceAttr attr) {
  static std::map<std::pair<int, int>, int> cache;
  int dev = 0;
  check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
  auto [it, fresh] = cache.try_emplace({dev, int(attr)}, 0);
  if (fresh) check_cuda(cudaDeviceGetAttribute(&it->second, attr, dev), "cudaDeviceGetAttribute");
  return it->second;
}
inline int sm_count() { return device_attr(cudaDevAttrMultiProcessorCount); }
// Dynamic shared memory a kernel may opt into: `want`, or less where the device allows less (sm_86 /
// sm_89 cards running the sm_80 build allow 99 KB; asking for more fails cudaFuncSetAttribute).
inline int smem_opt_in(int want) { return std::min(want, device_attr(cudaDevAttrMaxSharedMemoryPerBlockOptin)); }

// A kernel's dynamic shared memory beyond `plain` bytes (what needs no opt-in): its limit raised to
// smem_opt_in(want), once per kernel (the kernel is a template argument: kernels of one signature must not
// share the flag), before any graph capture uses it. op names the kernel in the error.
template <auto kKernel>
void allow_smem(int64_t smem, int64_t plain, int want, const char* op) {
  if (smem <= plain) return;
  const int opt_in = smem_opt_in(want);
  static const bool raised =
      cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, opt_in) == cudaSuccess;
  GF_CHECK(raised, op, ": cannot raise shared memory to ", opt_in, " bytes");
}

// Blocks of kKernel (threads per block, smem dynamic bytes) resident on the whole device at once, at
// least one per SM: asked of the occupancy API once per (kernel, smem), for grids of only resident blocks.
template <auto kKernel>
int64_t resident_blocks(int threads, size_t smem, const char* op) {
  static std::map<size_t, int> per_sm;
  auto [it, fresh] = per_sm.try_emplace(smem, 0);
  if (fresh) check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&it->second, kKernel, threads, smem), op);
  return int64_t(std::max(it->second, 1)) * sm_count();
}

// Warps of a block that split K for the same row tiles (of a GEMV's kernel): doubled up to `warps`
// while each keeps >= 2 of the k_units and the blocks number fewer than 2 per SM, so that matrices of
// few rows (wo, w2: 4096) still put enough loads in flight on every SM.
inline int split_k(int64_t k_units, int64_t row_tiles, int warps) {
  int ks = 1;
  while (ks < warps && k_units >= 2 * ks && ceil_div(row_tiles, warps / ks) < 2 * sm_count()) ks *= 2;
  return ks;
}
__host__ __device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float part[32];
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n = blockDim.x >> 5;
  __syncthreads();  // part[] may still be read by a previous call
  if (lane == 0) part[warp] = v;
  __syncthreads();
  v = lane < n ? part[lane] : 0.f;
  return warp_sum(v);
}

// The operands both weight-only GEMVs (matmul.cu, matmul_mma.cu) take: x [M, cols] and W's rows of
// row_bytes bytes, with int4 scales and zeros per group (int8: scale per row).
struct GemvOperands {
  const bf16* x;
  int M;
  int64_t rows, cols;
  const uint8_t* q;     // row r starts at q + r * row_bytes
  int64_t row_bytes;
  const uint16_t* scale;
  const uint16_t* zero;
  int64_t n_groups;
  int group_size;
};
inline GemvOperands gemv_operands(const bf16* x, int M, const QWeightView& w) {
  return {x, M, w.rows, w.cols, static_cast<const uint8_t*>(w.q), weight_byte_of_col(w.format, w.cols), w.scale,
          w.zero, w.n_groups(), w.group_size};
}

// bf16 pair / octet unpacking: bf16 is the top half of an fp32, so widening is a shift or a mask.
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }  // also: one bf16's bits
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
// One 16-byte load of 8 bf16 values -> fp32, in order.
__device__ __forceinline__ void bf16x8(const uint4& v, float (&f)[8]) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) f[2 * i] = bf16_lo(u[i]), f[2 * i + 1] = bf16_hi(u[i]);
}

// 16 bytes of weights, read once: streamed past L1 so they do not evict what is reused.
__device__ __forceinline__ uint4 load_stream(const uint8_t* p) { return __ldcs(reinterpret_cast<const uint4*>(p)); }

// 16 bytes of an activation (anything an earlier kernel of the stream writes): a coherent ld.global, never
// ld.global.nc (__ldg, or what the compiler makes of a const __restrict__ pointer). Under PDL a kernel runs
// while its predecessor still writes, which breaks nc's "read-only for the kernel's lifetime", and the
// compiler may then move the load above pdl_wait(): a GEMV reading x through __ldg got x from before
// it was written (wrong logits, the same every run). asm volatile keeps it after the wait.
__device__ __forceinline__ uint4 load_act(const void* p) {
  uint4 v;
  asm volatile("ld.global.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

// splitmix64: a stateless hash of (seed, index) for synthetic data.
__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
__device__ __forceinline__ float hash_uniform(uint64_t seed, uint64_t i) {  // [0, 1)
  return float(mix64(seed * 0x632be59bd9b4e019ull + i) >> 40) * (1.f / 16777216.f);
}
__device__ __forceinline__ float hash_normal(uint64_t seed, uint64_t i) {  // Box-Muller, one of the pair
  const uint64_t h = mix64(seed * 0x632be59bd9b4e019ull + i);
  const float u1 = (float(h >> 40) + 1.f) * (1.f / 16777217.f), u2 = float(h & 0xffffffu) * (1.f / 16777216.f);
  return sqrtf(-2.f * __logf(u1)) * __cosf(6.2831853f * u2);
}

}  // namespace gf::cuda::detail
