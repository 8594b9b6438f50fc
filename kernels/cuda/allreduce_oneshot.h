// The one-shot all-reduce kernel's contract: every rank sums every peer's CUDA-IPC buffer in rank
// order (fp32, bf16 out), synchronized by per-block epoch flags. The host side that maps the
// buffers and picks this or NCCL is src/engine/cuda/ipc_allreduce.h.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/cuda_ops.h"

namespace gf::cuda {

constexpr int kOneshotMaxRanks = 8;
// A fixed grid: every call advances every block's epoch counter alike, so the counters of all
// ranks stay equal to the number of calls made whatever the message sizes were.
constexpr int kOneshotBlocks = 32;

// Layout of each rank's shared buffer: flags[kOneshotBlocks][kOneshotMaxRanks] (uint32, written by
// the peers), padded to oneshot_flag_bytes(), then two data halves of `capacity` bytes picked by
// the call's epoch parity (a fast rank writes the other half while a slow peer still reads this one).
constexpr size_t oneshot_flag_bytes() {
  return (size_t(kOneshotBlocks) * kOneshotMaxRanks * sizeof(uint32_t) + 255) / 256 * 256;
}

struct OneshotPeers {
  char* base[kOneshotMaxRanks] = {};  // every rank's shared buffer as mapped in this process
  int rank = 0, world = 0;
  int64_t capacity = 0;               // bytes per data half, a multiple of 16
  uint32_t* epoch = nullptr;          // [kOneshotBlocks] this rank's private call counters (device)
  int* failed = nullptr;              // device copy of `error`, read by every call (host memory is a PCIe trip)
  int* error = nullptr;               // host-mapped: 1 + the peer rank a wait gave up on, else 0
  uint64_t timeout_ns = 0;            // how long one wait spins before it gives up
};

// x[0, n) = the sum over ranks of every rank's x (in place), identical bits on every rank. x must be
// 16-byte aligned and n * 2 bytes (rounded up to 16) must fit `capacity`. Graph-capturable: the
// epoch lives in device memory, so a replayed launch needs no new arguments.
void launch_allreduce_oneshot(bf16* x, int64_t n, const OneshotPeers& p, cudaStream_t s);

}  // namespace gf::cuda
