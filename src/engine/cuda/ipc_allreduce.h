// The one-shot all-reduce's host side: CUDA-IPC shared buffers of the ranks of one node, mapped into
// every rank (handles exchanged with MPI_Allgather), epoch counters and an error flag; and the
// tensor-parallel all-reduce of the CUDA backend, which picks one-shot or NCCL per call by size.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "comm/comm.h"
#include "engine/backend.h"
#include "engine/cuda/cuda_utils.h"
#include "kernels/cuda/allreduce_oneshot.h"

namespace gf {

class NcclComm;

class IpcAllreduce {
 public:
  // Above this many bytes NCCL takes over; it is also the size of each of the two data halves every
  // rank shares. 128 KB covers every decode all-reduce (dim x 2 bytes: 16 KB for 70B). On 2 x H100
  // (2026-11-25) the one-shot results were wrong for messages of 256K+ values (gpu_allreduce_tp2), right
  // up to 64K values: until that is found, messages stay within the range that was checked.
  static constexpr size_t kMaxBytes = size_t(128) << 10;

  // Collective over comm; the current CUDA device must be this rank's GPU. Returns null where
  // one-shot cannot run -- ranks on several nodes, more than 8 ranks, GPUs without peer access --
  // when mode is Auto; throws gf::Error naming the reason when it is Oneshot; null for Nccl or one
  // rank. Every rank reaches the same answer. A wait longer than deadline_s ends the kernel with
  // the error flag set (see check()).
  static std::unique_ptr<IpcAllreduce> create(Comm& comm, AllReduce mode, double deadline_s);
  ~IpcAllreduce();
  IpcAllreduce(const IpcAllreduce&) = delete;
  IpcAllreduce& operator=(const IpcAllreduce&) = delete;

  bool fits(int64_t n) const { return (n + 7) / 8 * 16 <= int64_t(kMaxBytes); }  // n bf16 values
  // In-place sum of n bf16 values over the group (n must fit); capturable in a CUDA graph.
  void allreduce_sum_bf16(void* x, int64_t n, cudaStream_t s);
  // Throws gf::Error naming `situation` and the silent peer when a kernel's wait gave up.
  void check(const std::string& situation) const;

 private:
  IpcAllreduce() = default;
  void open(Comm& comm, double deadline_s);  // allocates, exchanges and maps the buffers
  MPI_Comm mpi_ = MPI_COMM_NULL;             // our own duplicate: teardown's barrier meets no one else's traffic
  int device_ = 0;
  double deadline_s_ = 60;
  cuda::DeviceMemory shared_;                // this rank's exported buffer
  cuda::DeviceMemory epochs_;                // [kOneshotBlocks] uint32 call counters, then the failed word
  cuda::PinnedMemory error_;                 // one int the kernels set and the host reads
  cuda::OneshotPeers peers_;                 // base[r != rank]: opened IPC mappings, closed in the destructor
};

// The backend's all-reduce: one-shot when `ipc` is set and takes n values, else NCCL (when set;
// with neither, one rank, nothing to do).
void allreduce_sum_bf16(IpcAllreduce* ipc, NcclComm* nccl, void* x, int64_t n, cudaStream_t s);

}  // namespace gf
