// The PDL switch of launch.cuh: on unless GPTFAST_PDL=0, decided once per device.
#include "core/env.h"
#include "kernels/cuda/launch.cuh"

namespace gf::cuda::detail {
namespace {
// Compiled like every kernel of this library: its PTX version is the __CUDA_ARCH__ their device
// code was compiled for on the running device (SASS for sm_90a, or sm_80 PTX JIT-compiled).
__global__ void pdl_probe_kernel() {}
}  // namespace

bool pdl_enabled() {
  static const bool requested = !env_is("GPTFAST_PDL", "0");
  if (!requested) return false;
  static std::map<int, bool> on;  // per device; launches come from one thread per process
  int dev = 0;
  check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
  auto [it, fresh] = on.try_emplace(dev, false);
  if (fresh) {
    cudaFuncAttributes a{};
    check_cuda(cudaFuncGetAttributes(&a, pdl_probe_kernel), "pdl: cudaFuncGetAttributes");
    it->second = device_attr(cudaDevAttrComputeCapabilityMajor) >= 9 && a.ptxVersion >= 90;
  }
  return it->second;
}

}  // namespace gf::cuda::detail
