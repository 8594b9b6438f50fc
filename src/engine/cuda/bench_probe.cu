// Read-bandwidth probe: every thread streams 16-byte loads and folds them so nothing is elided.
#include "engine/cuda/bench_probe.h"

#include <algorithm>

#include "engine/cuda/cuda_utils.h"

namespace gf::cuda {
namespace {

__global__ void read_fold(const uint4* __restrict__ in, size_t n, unsigned* out) {
  unsigned acc = 0;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {  // four loads in flight per thread
    uint4 a = in[i], b = in[i + stride], c = in[i + 2 * stride], d = in[i + 3 * stride];
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
  }
  for (; i < n; i += stride) {
    uint4 a = in[i];
    acc ^= a.x ^ a.y ^ a.z ^ a.w;
  }
  if (acc == 0x9e3779b9u) out[0] = acc;  // practically never taken; keeps the loads alive
}

}  // namespace

double measure_read_bandwidth_gbps(cudaStream_t s) {
  size_t free_b = 0, total_b = 0;
  GF_CUDA_OK(cudaMemGetInfo(&free_b, &total_b));
  size_t bytes = std::min<size_t>(size_t(2) << 30, free_b / 2) / 4096 * 4096;
  GF_CHECK(bytes >= (size_t(64) << 20), "bench: only ", free_b, " bytes of GPU memory free for the bandwidth probe");
  auto buf = DeviceMemory::alloc(bytes + 64);
  GF_CUDA_OK(cudaMemsetAsync(buf.as(), 0x5a, bytes + 64, s));
  int dev = 0, sms = 0;
  GF_CUDA_OK(cudaGetDevice(&dev));
  GF_CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  auto t0 = Event::create(true), t1 = Event::create(true);
  const size_t n = bytes / sizeof(uint4);
  auto* out = reinterpret_cast<unsigned*>(buf.as<char>() + bytes);
  float best_ms = 1e30f;
  for (int rep = 0; rep < 7; ++rep) {  // the first is a warm-up
    GF_CUDA_OK(cudaEventRecord(t0.get(), s));
    read_fold<<<sms * 8, 512, 0, s>>>(buf.as<const uint4>(), n, out);
    GF_CUDA_OK(cudaGetLastError());
    GF_CUDA_OK(cudaEventRecord(t1.get(), s));
    GF_CUDA_OK(cudaEventSynchronize(t1.get()));
    float ms = 0;
    GF_CUDA_OK(cudaEventElapsedTime(&ms, t0.get(), t1.get()));
    if (rep > 0) best_ms = std::min(best_ms, ms);
  }
  return double(bytes) / (best_ms * 1e-3) / 1e9;
}

}  // namespace gf::cuda
