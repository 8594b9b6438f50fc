// The CUDA backend: bf16 activations on one GPU per rank, decode and verify as replayed CUDA graphs,
// tensor-parallel reductions through NCCL. Declared without CUDA headers so the CLI can include it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/model_config.h"
#include "core/weight_format.h"
#include "engine/backend.h"

namespace gf {

class Comm;

// True when the CUDA runtime sees at least one device (false, never a throw, when there is no driver).
bool cuda_device_available();

// Uploads one rank's shard to the GPU numbered comm.local_rank() (modulo the visible devices) and
// joins the tensor-parallel group (NCCL, bootstrapped over comm) when comm.size() > 1. Collective
// over comm: the ranks agree (comm.all_ok) that every load succeeded before NCCL init, so one rank's
// failure (out of memory: one line with bytes needed and free) ends all of them with an error.
std::unique_ptr<Backend> make_cuda_backend(const HostShard& shard, Comm& comm, const BackendOptions& o);

// The same backend with random weights generated on the GPU in `fmt` for this rank's slice of `cfg`
// (real shapes of any preset, nothing read from disk): for benchmarks. Weights are deterministic in seed.
std::unique_ptr<Backend> make_cuda_backend_synthetic(const ModelConfig& cfg, const RankSlice& slice,
                                                     FormatSpec fmt, uint64_t seed, Comm& comm,
                                                     const BackendOptions& o);

// What --bench prints beside tok/s (rank-local numbers).
struct CudaBenchInfo {
  std::string device;            // e.g. "NVIDIA H100 80GB HBM3"
  double read_gbps = 0;          // measured read-only bandwidth of this GPU (large reduction), GB/s
  int graph_kernels = -1;        // kernel nodes in the decode graph (-1: not captured yet)
  double kernels_per_layer = -1; // graph_kernels / n_layers
  int graph_nodes = -1;          // all nodes of the decode graph (kernels, copies, NCCL, ...)
  int pdl_edges = -1;            // its programmatic edges (sm_90+ unless GPTFAST_PDL=0; else 0)
  int forward_graphs = 0;        // forwards (one per M <= 16 seen twice) replayed as graphs
  int64_t device_bytes = 0;      // device memory this backend holds (weights, KV cache, buffers)
};
// Measures (first call: ~100 ms, up to 2 GB of scratch; skipped, read_gbps 0, without measure_bandwidth)
// and reports; throws gf::Error when `b` is not a CUDA backend.
CudaBenchInfo cuda_bench_info(Backend& b, bool measure_bandwidth = true);

}  // namespace gf
