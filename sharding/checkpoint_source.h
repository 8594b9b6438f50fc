// What gptfast-shard reads: a checkpoint (Hugging Face safetensors dir or GGUF file) seen through
// canonical tensor names, one row range at a time so memory stays bounded by a few tensors.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/model_config.h"

namespace gf {

// Canonical names (HF orientation: 2-D weights are (out_features, in_features), 1-D are (n)):
//   embed, norm, lm_head (absent when tie_word_embeddings), layers.<i>.{attn_norm, wq, wk, wv, wo,
//   ffn_norm, w1, w3, w2}. wq/wk rows are in Hugging Face (rotate-half RoPE) order.
class CheckpointSource {
 public:
  virtual ~CheckpointSource() = default;
  virtual const ModelConfig& config() const = 0;
  virtual bool has(const std::string& name) const = 0;
  // {rows, cols}; 1-D tensors are {1, n}. Throws naming the checkpoint file when absent.
  virtual std::vector<int64_t> shape2d(const std::string& name) const = 0;
  // Rows [r0, r1) as fp32 into out[(r1 - r0) * cols], whatever the stored type.
  virtual void read_rows(const std::string& name, int64_t r0, int64_t r1, float* out) const = 0;
  virtual std::string tokenizer_json() const = 0;  // HF tokenizer.json text
  virtual std::string chat_template() const = 0;   // "" when none
  virtual std::string describe() const = 0;        // for messages and the shard's `source` attribute
};

// Opens a checkpoint by what it is: a directory with config.json, or a .gguf file.
std::unique_ptr<CheckpointSource> open_checkpoint(const std::string& path);

}  // namespace gf
