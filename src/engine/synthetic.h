// Random-weight models made in memory (--synthetic, tests): one rank's HostShard of a full model
// whose every weight element is a hash of (seed, tensor, global row, global column), so the rank
// slices of tp=1 and tp=N are cuts of the same model and give the same logits.
#pragma once
#include <cstdint>
#include <string>

#include "core/model_config.h"
#include "core/weight_format.h"
#include "model/shard_io.h"

namespace gf {

// `slice` from plan_rank_slice(cfg, tp, rank). int8 and int4 weights are drawn directly in their
// quantized form (q, scale and zero per global row), so they too are identical across tp.
HostShard make_synthetic_shard(const ModelConfig& cfg, const RankSlice& slice, FormatSpec fmt, uint64_t seed);

// A model preset (configs/models/NAME.ini, or a path to such a file): the architecture as
// key = value lines (dim, n_layers, n_heads, n_kv_heads, head_dim, hidden_dim, vocab_size, ...).
// Search order for a name: $GPTFAST_CONFIG_DIR/models, <executable>/../configs/models,
// <executable>/../share/gptfast-tp/configs/models, ./configs/models.
ModelConfig load_model_preset(const std::string& name_or_path);

}  // namespace gf
