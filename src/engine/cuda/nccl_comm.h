// The CUDA backend's tensor-parallel group: an NCCL communicator that cannot hang the job.
// Non-blocking init polled under a deadline; stream waits poll ncclCommGetAsyncError and abort the
// communicator (then throw, naming the situation) on an error or a silent peer.
#pragma once
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace gf {

class Comm;

class NcclComm {
 public:
  // Collective over `mpi`: rank 0 makes the unique id, MPI_Bcast hands it out. The current CUDA
  // device must already be this rank's GPU. Sets NCCL_NVLS_ENABLE=0 unless the user set it.
  NcclComm(Comm& mpi, double deadline_s);
  ~NcclComm();
  NcclComm(NcclComm&& o) noexcept;
  NcclComm& operator=(NcclComm&& o) noexcept;
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const;
  int size() const;

  // In-place sum over the group of n bf16 values (works inside stream capture).
  void allreduce_sum_bf16(void* buf, size_t n, cudaStream_t s);
  // recv[r * n + i] = rank r's send[i] for n floats each.
  void allgather_f32(const float* send, float* recv, size_t n, cudaStream_t s);
  // recv[r * n + i] = rank r's send[i] for n int32 values each.
  void allgather_i32(const int32_t* send, int32_t* recv, size_t n, cudaStream_t s);
  // Waits until `s` is idle, watching NCCL; on error or after deadline_s aborts the communicator and
  // throws gf::Error naming `situation`.
  void wait(cudaStream_t s, const std::string& situation);

 private:
  void check_enqueue(ncclResult_t r, const char* what);  // resolves ncclInProgress (non-blocking comm)
  [[noreturn]] void abort_and_fail(const std::string& why);
  ncclComm_t comm_ = nullptr;
  Comm* mpi_;  // the group (it outlives this communicator): rank, size, and after a deadline the silent peer
  double deadline_s_ = 60;
};

// Waits for `s` (NCCL-aware when nccl is non-null) with a deadline; throws gf::Error naming `situation`.
void wait_stream(cudaStream_t s, NcclComm* nccl, double deadline_s, const std::string& situation);

}  // namespace gf
