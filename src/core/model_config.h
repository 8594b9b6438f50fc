// The model's architecture (same on every rank) and one rank's slice of it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gf {

struct RopeScaling {
  std::string type = "none";  // "none" or "llama3"
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

struct ModelConfig {
  std::string name;            // e.g. "smollm2-135m"
  int64_t dim = 0;             // hidden_size
  int64_t n_layers = 0;        // num_hidden_layers
  int64_t n_heads = 0;         // num_attention_heads
  int64_t n_kv_heads = 0;      // num_key_value_heads
  int64_t head_dim = 0;        // dim / n_heads unless the checkpoint says otherwise
  int64_t hidden_dim = 0;      // intermediate_size
  int64_t vocab_size = 0;
  int64_t max_seq_len = 0;     // max_position_embeddings
  double norm_eps = 1e-5;      // rms_norm_eps
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  int64_t bos_id = -1;              // -1: none
  std::vector<int64_t> eos_ids;     // generation stops at any of these

  // Throws gf::Error naming `where` and the field when the architecture is inconsistent
  // (kv_heads = 0, heads not divisible by kv_heads, ...). Called before any allocation.
  void validate(const std::string& where) const;
  // RoPE inverse frequencies (head_dim/2 of them), llama3 scaling applied.
  std::vector<double> rope_inv_freq() const;
  // Parameters (embedding included) for bandwidth reports.
  int64_t n_params() const;
};

// How one tensor-parallel rank's weights are cut (decided at shard time, stored in the rank file).
// q heads are assigned by whole kv groups (a kv head and its n_heads/n_kv_heads q heads); when
// n_kv_heads < tp each kv head is replicated on tp/n_kv_heads ranks, which split its q heads.
struct RankSlice {
  int64_t tp_rank = 0, tp_size = 1;
  int64_t head_begin = 0, n_heads = 0;       // this rank's q heads [head_begin, head_begin + n_heads)
  int64_t kv_head_begin = 0, n_kv_heads = 0; // this rank's kv heads
  int64_t hidden_begin = 0, hidden_dim = 0;  // this rank's rows of w1/w3 (columns of w2)
  int64_t vocab_padded = 0;                  // vocab rounded up to a multiple of tp
  int64_t vocab_begin = 0, vocab_local = 0;  // this rank's rows of lm_head
};

// The split plan for one rank; throws gf::Error (naming the fields) when tp cannot split the model.
// `group` (the int4 group size, else 1) aligns the row-split boundaries (w2's hidden columns, wo's head
// columns) to whole quantization groups, so weights quantized once over whole rows split without
// re-quantizing and every tp gives the same weights.
RankSlice plan_rank_slice(const ModelConfig& cfg, int64_t tp_size, int64_t tp_rank, int64_t group = 1);

}  // namespace gf
