// One-shot all-reduce setup and teardown: peer-access checks agreed by every rank, CUDA-IPC buffer
// exchange over MPI, epoch counters and the error flag; the per-call choice between it and NCCL.
#include "engine/cuda/ipc_allreduce.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <cstring>
#include <thread>
#include <vector>

#include "core/error.h"
#include "engine/cuda/nccl_comm.h"

namespace gf {
namespace {

void mpi_ok(int rc, const char* what) { GF_CHECK(rc == MPI_SUCCESS, "MPI: ", what, " failed (code ", rc, ")"); }

// Every rank's GPU as a PCI bus id (the one name that means the same GPU in every process, whatever
// CUDA_VISIBLE_DEVICES each has), gathered over comm.
std::vector<std::string> gather_bus_ids(Comm& comm, int device) {
  constexpr int kLen = 64;
  char mine[kLen] = {};
  GF_CUDA_OK(cudaDeviceGetPCIBusId(mine, kLen, device));
  std::vector<char> all(size_t(kLen) * comm.size());
  mpi_ok(MPI_Allgather(mine, kLen, MPI_CHAR, all.data(), kLen, MPI_CHAR, comm.mpi()), "MPI_Allgather(bus ids)");
  std::vector<std::string> ids;
  for (int r = 0; r < comm.size(); ++r) ids.emplace_back(all.data() + size_t(r) * kLen, strnlen(all.data() + size_t(r) * kLen, kLen));
  return ids;
}

// Why this rank's GPU cannot read every peer's GPU directly ("" when it can).
std::string peer_access_problem(Comm& comm, int device, const std::vector<std::string>& bus) {
  for (int r = 0; r < comm.size(); ++r) {
    if (r == comm.rank()) continue;
    if (bus[r] == bus[comm.rank()]) return detail::cat("ranks ", comm.rank(), " and ", r, " share GPU ", bus[r]);
    int peer = -1, ok = 0;
    if (cudaDeviceGetByPCIBusId(&peer, bus[r].c_str()) != cudaSuccess) {
      cudaGetLastError();
      return detail::cat("rank ", comm.rank(), " cannot see rank ", r, "'s GPU ", bus[r], " (CUDA_VISIBLE_DEVICES?)");
    }
    if (cudaDeviceCanAccessPeer(&ok, device, peer) != cudaSuccess || !ok) {
      cudaGetLastError();
      return detail::cat("GPU ", bus[comm.rank()], " has no peer access to ", bus[r]);
    }
    const cudaError_t e = cudaDeviceEnablePeerAccess(peer, 0);
    if (e == cudaErrorPeerAccessAlreadyEnabled) {
      cudaGetLastError();  // enabled by an earlier instance: fine
    } else if (e != cudaSuccess) {
      cudaGetLastError();
      return detail::cat("enabling peer access to ", bus[r], " failed: ", cudaGetErrorString(e));
    }
  }
  return "";
}

}  // namespace

std::unique_ptr<IpcAllreduce> IpcAllreduce::create(Comm& comm, AllReduce mode, double deadline_s) {
  if (mode == AllReduce::Nccl || comm.size() == 1) return nullptr;
  // Auto quietly keeps NCCL; an explicit --allreduce oneshot that cannot run is the user's error.
  auto refuse = [&](const std::string& why) -> std::unique_ptr<IpcAllreduce> {
    GF_CHECK(mode != AllReduce::Oneshot, "rank ", comm.rank(), ": --allreduce oneshot cannot run: ", why,
             "; use --allreduce auto or nccl");
    return nullptr;
  };
  // Both tests give the same answer on every rank without talking.
  if (comm.local_size() != comm.size())
    return refuse(detail::cat("the ", comm.size(), " ranks span several nodes (", comm.local_size(), " on this one)"));
  if (comm.size() > cuda::kOneshotMaxRanks)
    return refuse(detail::cat(comm.size(), " ranks, more than ", cuda::kOneshotMaxRanks));

  int device = 0;
  GF_CUDA_OK(cudaGetDevice(&device));
  const auto bus = gather_bus_ids(comm, device);
  const std::string problem = peer_access_problem(comm, device, bus);
  if (!comm.all_ok(problem.empty()))
    return refuse(problem.empty() ? "another rank's GPU has no peer access to the others" : problem);

  std::unique_ptr<IpcAllreduce> a(new IpcAllreduce());
  a->device_ = device;
  a->deadline_s_ = deadline_s;
  mpi_ok(MPI_Comm_dup(comm.mpi(), &a->mpi_), "MPI_Comm_dup");
  try {
    a->open(comm, deadline_s);  // fails on every rank or on none
  } catch (const Error& e) {
    a.reset();
    return refuse(e.what());  // e.g. containers that forbid CUDA IPC
  }
  return a;
}

// Steps that can fail locally are agreed before the next collective, so no rank waits in an
// MPI call that a failed peer will never make.
void IpcAllreduce::open(Comm& comm, double deadline_s) {
  const int R = comm.size(), me = comm.rank();
  std::string err;
  cudaIpcMemHandle_t mine{};
  try {
    shared_ = cuda::DeviceMemory::alloc(cuda::oneshot_flag_bytes() + 2 * kMaxBytes);
    epochs_ = cuda::DeviceMemory::alloc((cuda::kOneshotBlocks + 1) * sizeof(uint32_t));  // + the failed word
    error_ = cuda::PinnedMemory::alloc(sizeof(int));
    // Flags and counters start at 0 and epochs at 1, so nothing a peer reads is stale.
    GF_CUDA_OK(cudaMemset(shared_.as(), 0, shared_.bytes()));
    GF_CUDA_OK(cudaMemset(epochs_.as(), 0, epochs_.bytes()));
    *error_.as<int>() = 0;
    GF_CUDA_OK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&peers_.error), error_.as(), 0));
    GF_CUDA_OK(cudaIpcGetMemHandle(&mine, shared_.as()));
    GF_CUDA_OK(cudaDeviceSynchronize());  // zeroed before any peer can signal into it
  } catch (const std::exception& e) {
    err = e.what();
  }
  GF_CHECK(comm.all_ok(err.empty()), err.empty() ? detail::cat("rank ", me, ": another rank failed to set up the one-shot all-reduce") : err);

  std::vector<cudaIpcMemHandle_t> all(R);
  mpi_ok(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, mpi_), "MPI_Allgather(IPC handles)");
  peers_.rank = me;
  peers_.world = R;
  peers_.capacity = int64_t(kMaxBytes);
  peers_.epoch = epochs_.as<uint32_t>();
  peers_.failed = reinterpret_cast<int*>(epochs_.as<uint32_t>() + cuda::kOneshotBlocks);
  peers_.timeout_ns = uint64_t(deadline_s * 1e9);
  peers_.base[me] = shared_.as<char>();
  for (int r = 0; r < R && err.empty(); ++r) {
    if (r == me) continue;
    void* p = nullptr;
    const cudaError_t e = cudaIpcOpenMemHandle(&p, all[r], cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) {
      cudaGetLastError();
      err = detail::cat("rank ", me, ": opening rank ", r, "'s CUDA IPC buffer failed: ", cudaGetErrorString(e));
    } else {
      peers_.base[r] = static_cast<char*>(p);
    }
  }
  GF_CHECK(comm.all_ok(err.empty()), err.empty() ? detail::cat("rank ", me, ": another rank could not map the one-shot buffers") : err);
}

IpcAllreduce::~IpcAllreduce() {
  cudaSetDevice(device_);
  cudaDeviceSynchronize();  // our kernels are done with the peers' memory (a stuck wait ends at its timeout)
  // A peer may still be reading our buffer: meet before freeing it. Unwinding from an error, or with
  // a peer that does not come within a short deadline, leave the buffer allocated instead (the job
  // is ending; a peer reading freed memory would fault) and never wait long: the error must print.
  bool met = false;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && mpi_ != MPI_COMM_NULL && std::uncaught_exceptions() == 0) {
    MPI_Request req = MPI_REQUEST_NULL;
    int done = 0;
    if (MPI_Ibarrier(mpi_, &req) == MPI_SUCCESS) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto limit = std::chrono::duration<double>(std::min(deadline_s_, 10.0));
      while (MPI_Test(&req, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && !done &&
             std::chrono::steady_clock::now() - t0 < limit)
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    met = done;
    if (met) MPI_Comm_free(&mpi_);  // else a barrier is pending on it: leave it
  }
  if (!met) static_cast<void>(new cuda::DeviceMemory(std::move(shared_)));  // deliberately leaked
  for (int r = 0; r < peers_.world; ++r)
    if (r != peers_.rank && peers_.base[r]) cudaIpcCloseMemHandle(peers_.base[r]);
  cudaGetLastError();  // teardown errors after a failure have nothing better to do
}

void IpcAllreduce::allreduce_sum_bf16(void* x, int64_t n, cudaStream_t s) {
  cuda::launch_allreduce_oneshot(static_cast<cuda::bf16*>(x), n, peers_, s);
}

void IpcAllreduce::check(const std::string& situation) const {
  const int e = *reinterpret_cast<volatile const int*>(error_.as<int>());
  GF_CHECK(e == 0, situation, ": the one-shot all-reduce waited more than ", deadline_s_, " s for rank ", e - 1,
           " (stopped, hung or dead)");
}

void allreduce_sum_bf16(IpcAllreduce* ipc, NcclComm* nccl, void* x, int64_t n, cudaStream_t s) {
  if (ipc && ipc->fits(n)) return ipc->allreduce_sum_bf16(x, n, s);
  GF_CHECK(nccl || !ipc, "allreduce of ", n, " values: above the one-shot limit and no NCCL communicator");
  if (nccl) nccl->allreduce_sum_bf16(x, size_t(n), s);
}

}  // namespace gf
