// Writes one rank file in the layout of model/shard_io.h (the reader lives in model/shard_io.cpp;
// this pair of files is the layout's only definition).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "io/hdf5.h"
#include "model/shard_io.h"

namespace gf {

std::string layer_path(int64_t layer);  // "layers/007"

class ShardWriter {
 public:
  // Creates (truncates) `path` and writes the root attributes and the /tokenizer group.
  ShardWriter(const std::string& path, const ModelConfig& cfg, const RankSlice& slice, const FormatSpec& fmt,
              const std::string& source, const std::string& tokenizer_json, const std::string& chat_template);
  // A bf16 vector/matrix ("embed", "norm", "layers/003/attn_norm"); parent groups are made as needed.
  void write_bf16(const std::string& name, const std::vector<uint16_t>& v, const std::vector<int64_t>& shape);
  // A matmul weight ("lm_head", "layers/003/wqkv") as a group {format attr; w | q, scale[, zero]}.
  void write_weight(const std::string& name, const HostWeight& w);
  // Flushes everything to the file and closes it; a failure (disk full) throws.
  void finish();
  const std::string& path() const { return path_; }

 private:
  void make_parents(const std::string& name);
  std::string path_;
  std::optional<h5::Group> root_;
};

// A whole HostShard in one call (tests and tools).
void write_rank_shard(const HostShard& s, const std::string& path, const std::string& source);

}  // namespace gf
