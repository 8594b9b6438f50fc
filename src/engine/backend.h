// A backend runs the model of one rank: CPU (reference, fallback) or CUDA (speed).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "model/shard_io.h"

namespace gf {

class Comm;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Runs the model on M tokens `ids` (host array) at positions pos0 .. pos0+M-1, writing the KV
  // cache there (positions past them are overwritten later: this is also how speculation rolls back).
  virtual void forward(const int32_t* ids, int M, int64_t pos0) = 0;
  // Logits over the whole vocabulary (cfg.vocab_size floats) of row m of the last forward,
  // identical on every rank (gathered over the tensor-parallel group).
  virtual void logits(int m, float* out) = 0;
  // The next token from row m of the last forward; identical on every rank for the same u.
  virtual int32_t sample(int m, const cpu::SamplingParams& p, double u) = 0;
  // What the split sampler draws from for row m, 0 < k <= cpu::kMaxSplitTopK: every rank's k best
  // (logit, id) pairs concatenated (tp * k slots, id -1 where empty), identical on every rank; collective.
  // For cpu::candidate_weights: a full row's distribution at tp * k values instead of vocab.
  virtual void candidates(int m, int k, std::vector<float>& logits, std::vector<int32_t>& ids) = 0;
  // Bytes one decode step reads on this rank (weights without the embedding; KV cache excluded).
  virtual int64_t weight_bytes() const = 0;
  virtual int max_tokens() const = 0;  // largest M one forward takes
  virtual int64_t max_seq() const = 0;
};

// The CUDA backend's tensor-parallel all-reduce: NCCL, the one-shot CUDA-IPC kernel for small
// messages within a node, or auto (one-shot where it can run and the message is small).
enum class AllReduce { Auto, Nccl, Oneshot };

struct BackendOptions {
  int64_t max_seq = 2048;   // KV cache length
  // --kv-cache int8: each K and V head row of the cache rounded to int8 with one scale per (kv head,
  // position), cpu::round_kv_int8 (half the bytes attention reads at long context); else bf16 (CUDA) / fp32 (CPU).
  bool kv_int8 = false;
  int max_tokens = 512;     // largest forward (prefill chunk; speculative verify needs k+1)
  int threads = 0;          // CPU threads, 0 = all cores / local ranks
  AllReduce allreduce = AllReduce::Auto;  // CUDA backend only (see --allreduce)
};

std::unique_ptr<Backend> make_cpu_backend(const HostShard& shard, Comm& comm, const BackendOptions& o);

}  // namespace gf
