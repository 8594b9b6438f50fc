// All-reduce latency per message size, NCCL vs the one-shot CUDA-IPC kernel (bf16, in place):
//   mpirun -np N bench_allreduce [--iters K]
// Each point is a CUDA graph of K calls replayed after warm-up, timed with events on rank 0, so the
// numbers are the device-side cost a decode graph pays (no launch overhead).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>

#include "comm/comm.h"
#include "core/error.h"
#include "engine/cuda/cuda_utils.h"
#include "engine/cuda/ipc_allreduce.h"
#include "engine/cuda/nccl_comm.h"

namespace {

using namespace gf;

// Microseconds per call of `call`, captured `k` times into one graph and replayed `reps` times.
double time_us(Comm& comm, NcclComm& nccl, cudaStream_t s, int k, const std::function<void()>& call) {
  cudaGraph_t g = nullptr;
  GF_CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < k; ++i) call();
  GF_CUDA_OK(cudaStreamEndCapture(s, &g));
  cuda::Graph graph(g);
  cudaGraphExec_t e = nullptr;
  GF_CUDA_OK(cudaGraphInstantiate(&e, g, 0));
  cuda::GraphExec exec(e);
  auto t0 = cuda::Event::create(true), t1 = cuda::Event::create(true);
  for (int i = 0; i < 3; ++i) GF_CUDA_OK(cudaGraphLaunch(exec.get(), s));
  nccl.wait(s, "bench warm-up");
  comm.barrier();  // start together: a late peer would be timed as latency
  const int reps = 10;
  GF_CUDA_OK(cudaEventRecord(t0.get(), s));
  for (int i = 0; i < reps; ++i) GF_CUDA_OK(cudaGraphLaunch(exec.get(), s));
  GF_CUDA_OK(cudaEventRecord(t1.get(), s));
  nccl.wait(s, "bench");
  float ms = 0;
  GF_CUDA_OK(cudaEventElapsedTime(&ms, t0.get(), t1.get()));
  return 1000.0 * ms / (reps * k);
}

int run(int argc, char** argv) {
  Comm comm = Comm::world();
  int iters = 50;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--iters") == 0) iters = std::max(1, std::atoi(argv[i + 1]));
  int n_dev = 0;
  GF_CUDA_OK(cudaGetDeviceCount(&n_dev));
  GF_CHECK(comm.local_rank() < n_dev, "rank ", comm.rank(), ": no GPU for local rank ", comm.local_rank());
  GF_CUDA_OK(cudaSetDevice(comm.local_rank()));
  NcclComm nccl(comm, 60);
  auto ipc = IpcAllreduce::create(comm, AllReduce::Auto, 60);
  auto stream = cuda::Stream::create();
  const size_t max_bytes = size_t(64) << 20;
  auto buf = cuda::DeviceMemory::alloc(max_bytes);
  GF_CUDA_OK(cudaMemset(buf.as(), 0, max_bytes));  // zeros stay zeros: sums never overflow across calls
  cudaDeviceProp prop{};
  GF_CUDA_OK(cudaGetDeviceProperties(&prop, comm.local_rank()));
  if (comm.rank() == 0) {
    std::printf("# %d ranks on %s; one-shot %s; NCCL_NVLS_ENABLE=%s\n", comm.size(), prop.name,
                ipc ? "available" : "unavailable (no peer access or several nodes)", std::getenv("NCCL_NVLS_ENABLE"));
    std::printf("%10s %12s %12s %9s\n", "bytes", "nccl_us", "oneshot_us", "speedup");
  }
  for (size_t bytes = 2048; bytes <= max_bytes; bytes *= 2) {
    const int64_t n = int64_t(bytes / 2);
    const int k = bytes > (size_t(4) << 20) ? 5 : iters;
    const double t_nccl =
        time_us(comm, nccl, stream.get(), k, [&] { nccl.allreduce_sum_bf16(buf.as(), size_t(n), stream.get()); });
    double t_one = -1;
    if (ipc && ipc->fits(n)) {
      t_one = time_us(comm, nccl, stream.get(), k, [&] { ipc->allreduce_sum_bf16(buf.as(), n, stream.get()); });
      ipc->check("bench");
    }
    if (comm.rank() == 0) {
      if (t_one > 0)
        std::printf("%10zu %12.2f %12.2f %8.2fx\n", bytes, t_nccl, t_one, t_nccl / t_one);
      else
        std::printf("%10zu %12.2f %12s %9s\n", bytes, t_nccl, "-", "-");
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  gf::MpiSession mpi(&argc, &argv);
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_allreduce: %s\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return 1;
}
