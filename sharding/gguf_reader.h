// GGUF (v2/v3) checkpoints as a CheckpointSource: metadata, tensor infos, dequantization to fp32,
// llama.cpp names mapped to canonical ones (Q/K row permutation undone), tokenizer -> tokenizer.json.
#pragma once
#include <memory>
#include <string>

#include "sharding/checkpoint_source.h"

namespace gf {

std::unique_ptr<CheckpointSource> open_gguf_checkpoint(const std::string& path);

}  // namespace gf
