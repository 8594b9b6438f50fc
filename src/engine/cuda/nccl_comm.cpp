// NCCL communicator with deadlines: non-blocking init, polled waits, abort on error or silence.
#include "engine/cuda/nccl_comm.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "comm/comm.h"
#include "core/error.h"
#include "engine/cuda/cuda_utils.h"

namespace gf {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Between two queries of a stream being waited for: spin briefly first (a decode step ends within
// microseconds of the first query), yielding the core (a rank bound to one core shares it with NCCL's and
// the driver's threads), then sleep.
void pause_between_queries(int spin) {
  if (spin > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
  else std::this_thread::yield();
}

std::atomic<int> g_aborts_running{0};

// At exit, while an abort is still inside NCCL: the process's exit path (library destructors) then ran
// under it and crashed (SIGSEGV, a jump into freed memory; a 2-GPU silent-peer test, rank 1 at exit
// after "torn down"). Give it time to finish; if it does not, leave without the destructors.
void wait_for_aborts_at_exit() {
  const auto t0 = Clock::now();
  while (g_aborts_running.load() > 0 && seconds_since(t0) < 30) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (g_aborts_running.load() > 0) {
    std::fflush(nullptr);
    std::_Exit(1);  // only reached after an NCCL failure: never a success code
  }
}

// ncclCommAbort can block -- on its proxy thread, or on frees that wait for kernels still spinning on a
// silent peer; measured at 5 s with a peer gone -- and the error line must come regardless: it runs aside
// and gets limit_s to finish. A thread still running after that is left behind (the job is ending: the
// CLI calls MPI_Abort next), and the process's exit waits for it (wait_for_aborts_at_exit).
void abort_bounded(ncclComm_t comm, double limit_s) {
  static std::once_flag at_exit;
  std::call_once(at_exit, [] { std::atexit(wait_for_aborts_at_exit); });
  auto done = std::make_shared<std::atomic<bool>>(false);
  ++g_aborts_running;
  std::thread([comm, done] {
    ncclCommAbort(comm);
    done->store(true);
    --g_aborts_running;
  }).detach();
  const auto t0 = Clock::now();
  while (!done->load() && seconds_since(t0) < limit_s) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

}  // namespace

NcclComm::NcclComm(Comm& mpi, double deadline_s)
    : mpi_(&mpi), deadline_s_(deadline_s) {
  // NVLink multicast can take a shared host's GPUs out of service: never on unless asked for.
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  ncclUniqueId id{};
  if (rank() == 0) {
    ncclResult_t r = ncclGetUniqueId(&id);
    GF_CHECK(r == ncclSuccess, "ncclGetUniqueId failed: ", ncclGetErrorString(r));
  }
  mpi.bcast(&id, sizeof id, 0);

  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;  // init and collectives return at once; we poll with a deadline
  ncclResult_t r = ncclCommInitRankConfig(&comm_, size(), id, rank(), &cfg);
  if (r != ncclSuccess && r != ncclInProgress) {
    if (comm_) ncclCommAbort(std::exchange(comm_, nullptr));
    GF_FAIL("rank ", rank(), ": NCCL init failed: ", ncclGetErrorString(r));
  }
  const auto t0 = Clock::now();
  for (;;) {
    ncclResult_t state = ncclInProgress;
    ncclCommGetAsyncError(comm_, &state);
    if (state == ncclSuccess) break;
    if (state != ncclInProgress)
      abort_and_fail(detail::cat("NCCL init failed: ", ncclGetErrorString(state), " (",
                                 ncclGetLastError(comm_), ")"));
    if (seconds_since(t0) > deadline_s_)
      abort_and_fail(detail::cat("NCCL init did not complete within ", deadline_s_,
                                 " s: a peer rank is missing or silent"));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

NcclComm::~NcclComm() {
  if (!comm_) return;
  // Finalize flushes outstanding work (a collective step with the peers); a dead or silent peer
  // could stall it, so it gets a short deadline and abort is the fallback.
  ncclResult_t r = ncclCommFinalize(comm_);
  const auto t0 = Clock::now();
  while (r == ncclInProgress && seconds_since(t0) < std::min(deadline_s_, 10.0)) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    ncclCommGetAsyncError(comm_, &r);
  }
  if (r == ncclSuccess) {
    ncclCommDestroy(comm_);
  } else {
    abort_bounded(comm_, std::min(deadline_s_, 10.0));
  }
}

NcclComm::NcclComm(NcclComm&& o) noexcept
    : comm_(std::exchange(o.comm_, nullptr)), mpi_(o.mpi_), deadline_s_(o.deadline_s_) {}

NcclComm& NcclComm::operator=(NcclComm&& o) noexcept {
  if (this != &o) {
    if (comm_) ncclCommAbort(comm_);
    comm_ = std::exchange(o.comm_, nullptr);
    mpi_ = o.mpi_;
    deadline_s_ = o.deadline_s_;
  }
  return *this;
}

int NcclComm::rank() const { return mpi_->rank(); }
int NcclComm::size() const { return mpi_->size(); }

void NcclComm::abort_and_fail(const std::string& why) {
  if (comm_) abort_bounded(std::exchange(comm_, nullptr), std::min(deadline_s_, 10.0));
  GF_FAIL("rank ", rank(), " of ", size(), ": ", why, "; NCCL communicator aborted");
}

void NcclComm::check_enqueue(ncclResult_t r, const char* what) {
  GF_CHECK(comm_, "rank ", rank(), ": ", what, " on an aborted NCCL communicator");
  if (r == ncclInProgress) {  // non-blocking comm: the enqueue finishes asynchronously
    const auto t0 = Clock::now();
    do {
      ncclCommGetAsyncError(comm_, &r);
      if (r == ncclInProgress && seconds_since(t0) > deadline_s_)
        abort_and_fail(detail::cat(what, " could not be enqueued within ", deadline_s_, " s"));
    } while (r == ncclInProgress);
  }
  if (r != ncclSuccess) abort_and_fail(detail::cat(what, " failed: ", ncclGetErrorString(r)));
}

void NcclComm::allreduce_sum_bf16(void* buf, size_t n, cudaStream_t s) {
  check_enqueue(ncclAllReduce(buf, buf, n, ncclBfloat16, ncclSum, comm_, s), "ncclAllReduce");
}

void NcclComm::allgather_f32(const float* send, float* recv, size_t n, cudaStream_t s) {
  check_enqueue(ncclAllGather(send, recv, n, ncclFloat32, comm_, s), "ncclAllGather");
}

void NcclComm::allgather_i32(const int32_t* send, int32_t* recv, size_t n, cudaStream_t s) {
  check_enqueue(ncclAllGather(send, recv, n, ncclInt32, comm_, s), "ncclAllGather");
}

void NcclComm::wait(cudaStream_t s, const std::string& situation) {
  const auto t0 = Clock::now();
  for (int spin = 0;; ++spin) {
    cudaError_t e = cudaStreamQuery(s);
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady)
      abort_and_fail(detail::cat(situation, ": CUDA error ", cudaGetErrorString(e)));
    ncclResult_t state = ncclSuccess;
    ncclCommGetAsyncError(comm_, &state);
    if (state != ncclSuccess && state != ncclInProgress)
      abort_and_fail(detail::cat(situation, ": NCCL error ", ncclGetErrorString(state),
                                 " (a peer rank failed or died)"));
    if (seconds_since(t0) > deadline_s_)
      abort_and_fail(detail::cat(situation, " did not finish within ", deadline_s_, " s (GPTFAST_COLLECTIVE_TIMEOUT_S): ",
                                 mpi_->silent_peers(2.0)));
    pause_between_queries(spin);
  }
}

void wait_stream(cudaStream_t s, NcclComm* nccl, double deadline_s, const std::string& situation) {
  if (nccl) return nccl->wait(s, situation);
  const auto t0 = Clock::now();
  for (int spin = 0;; ++spin) {
    cudaError_t e = cudaStreamQuery(s);
    if (e == cudaSuccess) return;
    GF_CHECK(e == cudaErrorNotReady, situation, ": CUDA error ", cudaGetErrorString(e));
    GF_CHECK(seconds_since(t0) <= deadline_s, situation, " did not finish within ", deadline_s, " s");
    pause_between_queries(spin);
  }
}

}  // namespace gf
