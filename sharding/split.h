// gptfast-shard's work: one streaming pass over a checkpoint writing every rank file of a TP split,
// crash-safe (tmp + fsync + rename, manifest last), resumable; and --verify.
#pragma once
#include <cstdint>
#include <string>

#include "core/weight_format.h"
#include "sharding/checkpoint_source.h"

namespace gf {

struct ShardOptions {
  std::string from;   // checkpoint dir or .gguf
  std::string model;  // name in the store
  std::string store;  // <store>/<model>/tp<N>-<fmt>
  int64_t tp = 1;
  FormatSpec fmt;
  bool resume = false, force = false, progress = true;
};

// Writes <store>/<model>/tp<tp>-<fmt>/{rank<r>.h5, manifest.json}; returns that directory.
std::string run_shard(const ShardOptions& opt);
// The same from an open source (opt.from unused); tests feed in-memory checkpoints this way.
std::string run_shard(const CheckpointSource& src, const ShardOptions& opt);

// Re-hashes every rank file listed in <dir>/manifest.json; prints one line per bad file to stderr and
// returns how many are bad (a missing manifest counts as one).
int verify_shard_dir(const std::string& dir);

}  // namespace gf
