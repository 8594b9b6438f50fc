// The shard file (one HDF5 file per tensor-parallel rank): layout, writing helpers and the reader.
//
// Root attributes: format_version, model_name, weight_format ("bf16" | "int8" | "int4g<G>"),
//   group_size, every ModelConfig field (dim, n_layers, n_heads, n_kv_heads, head_dim, hidden_dim,
//   vocab_size, max_seq_len, norm_eps, rope_theta, rope_type, rope_factor, rope_low_freq_factor,
//   rope_high_freq_factor, rope_original_max_position, tie_word_embeddings, bos_id, eos_ids),
//   every RankSlice field (tp_rank, tp_size, head_begin, n_heads_local, kv_head_begin,
//   n_kv_heads_local, hidden_begin, hidden_dim_local, vocab_padded, vocab_begin, vocab_local), source.
// /tokenizer/json           uint8[]  tokenizer.json verbatim (HF form; GGUF vocabularies converted to it)
// /tokenizer/chat_template  uint8[]  the Jinja chat template (may be empty)
// /embed                    bf16 (vocab_size, dim)            replicated
// /norm                     bf16 (dim)
// /lm_head                  weight (vocab_local, dim)         rows [vocab_begin, +vocab_local) of the
//                                                             vocab padded with zero rows to vocab_padded;
//                                                             format lm_head_format(weight_format): int8
//                                                             (per-row) in int4 sets, else weight_format
// /layers/NNN/attn_norm, ffn_norm   bf16 (dim)
// /layers/NNN/wqkv          weight ((n_heads_local + 2*n_kv_heads_local) * head_dim, dim)  rows q|k|v,
//                                                             q/k rows in Hugging Face (rotate-half) order
// /layers/NNN/wo            weight (dim, n_heads_local * head_dim)
// /layers/NNN/w13           weight (2 * hidden_dim_local, dim)  rows w1 | w3
// /layers/NNN/w2            weight (dim, hidden_dim_local)
// A weight is a group with attribute "format" (weight_format, but see /lm_head) and datasets per core/weight_format.h:
//   bf16 {w: uint16}, int8 {q: int8, scale: uint16}, int4 {q: uint8, scale: uint16, zero: uint16}.
// Quantization happens once over whole rows, before the split (plan_rank_slice aligns row-split
// boundaries to whole groups), so every tp holds the same weights: int8 scales of row-split weights
// (wo, w2) are the whole row's, and each rank holds its columns' groups of int4 scale/zero.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/model_config.h"
#include "core/weight_format.h"
#include "kernels/weight_view.h"

namespace gf {

// One matmul weight in host memory, in the shard layout.
struct HostWeight {
  FormatSpec fmt;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> q;             // bf16 / int8 / packed int4 bytes
  std::vector<uint16_t> scale, zero;  // bf16 bits (empty when unused)
  QWeightView view() const;
  int64_t bytes() const { return int64_t(q.size() + 2 * (scale.size() + zero.size())); }
};

struct HostLayer {
  std::vector<uint16_t> attn_norm, ffn_norm;  // bf16 (dim)
  HostWeight wqkv, wo, w13, w2;
};

struct HostShard {
  std::string path;
  ModelConfig cfg;
  RankSlice slice;
  FormatSpec fmt;
  std::string tokenizer_json, chat_template;
  std::vector<uint16_t> embed, norm;  // bf16
  HostWeight lm_head;  // in lm_head_format(fmt)
  std::vector<HostLayer> layers;
  int64_t weight_bytes() const;  // bytes a decode step reads (embedding excluded)
};

// Reads one rank file, checking every attribute, dtype and shape (errors name file, object, expected
// vs actual). `progress` (may be null) is called with (bytes read, total bytes).
HostShard read_rank_shard(const std::string& path, void (*progress)(int64_t, int64_t) = nullptr);

}  // namespace gf
