// The bandwidth ceiling --bench reports against: a large read-only reduction on this GPU.
#pragma once
#include <cuda_runtime.h>

namespace gf::cuda {

// Reads a buffer of up to 2 GiB (less when memory is short) several times; returns the best GB/s
// (bytes read / time, events on `s`). Leaves nothing allocated.
double measure_read_bandwidth_gbps(cudaStream_t s);

}  // namespace gf::cuda
