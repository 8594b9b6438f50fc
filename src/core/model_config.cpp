// ModelConfig checks, RoPE frequencies and the tensor-parallel split plan.
#include "core/model_config.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace gf {

void ModelConfig::validate(const std::string& where) const {
  auto positive = [&](int64_t v, const char* field) {
    GF_CHECK(v > 0, where, ": field ", field, " must be > 0, got ", v);
  };
  positive(dim, "hidden_size");
  positive(n_layers, "num_hidden_layers");
  positive(n_heads, "num_attention_heads");
  positive(n_kv_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  positive(hidden_dim, "intermediate_size");
  positive(vocab_size, "vocab_size");
  positive(max_seq_len, "max_position_embeddings");
  GF_CHECK(n_heads % n_kv_heads == 0, where, ": num_attention_heads (", n_heads,
           ") must be a multiple of num_key_value_heads (", n_kv_heads, ")");
  GF_CHECK(head_dim % 2 == 0, where, ": head_dim must be even for RoPE, got ", head_dim);
  GF_CHECK(dim % 2 == 0 && hidden_dim % 2 == 0, where,
           ": hidden_size and intermediate_size must be even");
  GF_CHECK(norm_eps > 0 && std::isfinite(norm_eps), where, ": rms_norm_eps must be > 0");
  GF_CHECK(rope_theta > 0 && std::isfinite(rope_theta), where, ": rope_theta must be > 0");
  GF_CHECK(rope_scaling.type == "none" || rope_scaling.type == "llama3", where,
           ": rope_scaling.rope_type '", rope_scaling.type, "' is not supported (none, llama3)");
  if (rope_scaling.type == "llama3") {
    GF_CHECK(rope_scaling.factor > 0 && rope_scaling.high_freq_factor > rope_scaling.low_freq_factor &&
                 rope_scaling.original_max_position > 0,
             where, ": rope_scaling needs factor > 0, high_freq_factor > low_freq_factor and "
                    "original_max_position_embeddings > 0");
  }
  GF_CHECK(bos_id < vocab_size, where, ": bos_token_id ", bos_id, " >= vocab_size ", vocab_size);
  for (int64_t e : eos_ids)
    GF_CHECK(e >= 0 && e < vocab_size, where, ": eos_token_id ", e, " outside [0, ", vocab_size, ")");
}

std::vector<double> ModelConfig::rope_inv_freq() const {
  std::vector<double> inv(head_dim / 2);
  for (int64_t i = 0; i < head_dim / 2; ++i)
    inv[i] = 1.0 / std::pow(rope_theta, double(2 * i) / double(head_dim));
  if (rope_scaling.type == "llama3") {  // as in Meta's reference and HF's _compute_llama3_parameters
    const auto& s = rope_scaling;
    double low_wavelen = s.original_max_position / s.low_freq_factor;
    double high_wavelen = s.original_max_position / s.high_freq_factor;
    for (double& f : inv) {
      double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = f / s.factor;
      } else if (wavelen >= high_wavelen) {
        double smooth = (s.original_max_position / wavelen - s.low_freq_factor) /
                        (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  return inv;
}

int64_t ModelConfig::n_params() const {
  int64_t attn = dim * (n_heads + 2 * n_kv_heads) * head_dim + n_heads * head_dim * dim;
  int64_t ffn = 3 * dim * hidden_dim;
  int64_t per_layer = attn + ffn + 2 * dim;
  return n_layers * per_layer + vocab_size * dim * (tie_word_embeddings ? 1 : 2) + dim;
}

RankSlice plan_rank_slice(const ModelConfig& cfg, int64_t tp, int64_t r, int64_t qgroup) {
  GF_CHECK(tp >= 1, "tp must be >= 1, got ", tp);
  GF_CHECK(r >= 0 && r < tp, "tp rank ", r, " outside [0, ", tp, ")");
  const int64_t H = cfg.n_heads, KV = cfg.n_kv_heads, group = H / KV;
  RankSlice s;
  s.tp_rank = r;
  s.tp_size = tp;
  if (KV >= tp) {  // whole kv groups, balanced (sizes differ by at most one group)
    s.kv_head_begin = r * KV / tp;
    s.n_kv_heads = (r + 1) * KV / tp - s.kv_head_begin;
    s.head_begin = s.kv_head_begin * group;
    s.n_heads = s.n_kv_heads * group;
  } else {  // each kv head replicated on tp/KV ranks, which share its q heads
    GF_CHECK(tp % KV == 0, "cannot split ", cfg.name, " for tp=", tp, ": num_key_value_heads (", KV,
             ") is below tp, so tp must be a multiple of it");
    int64_t rep = tp / KV;
    GF_CHECK(group % rep == 0, "cannot split ", cfg.name, " for tp=", tp, ": the ", group,
             " q heads of each kv head do not divide among ", rep, " ranks");
    s.kv_head_begin = r / rep;
    s.n_kv_heads = 1;
    s.head_begin = s.kv_head_begin * group + (r % rep) * (group / rep);
    s.n_heads = group / rep;
  }
  GF_CHECK(qgroup >= 1, "quantization group must be >= 1, got ", qgroup);
  GF_CHECK((s.head_begin * cfg.head_dim) % qgroup == 0, "cannot split ", cfg.name, " for tp=", tp,
           " with int4 group size ", qgroup, ": rank ", r, "'s attention columns start at ",
           s.head_begin * cfg.head_dim, ", not a whole group; use a smaller --group-size");
  // hidden units are dealt out in whole groups (balanced; the last rank may hold a short group)
  const int64_t units = (cfg.hidden_dim + qgroup - 1) / qgroup;
  GF_CHECK(units >= tp, "cannot split ", cfg.name, " for tp=", tp, ": intermediate_size ",
           cfg.hidden_dim, " holds fewer than tp groups of ", qgroup);
  auto unit_start = [&](int64_t k) { return std::min(cfg.hidden_dim, (k * units / tp) * qgroup); };
  s.hidden_begin = unit_start(r);
  s.hidden_dim = unit_start(r + 1) - s.hidden_begin;
  s.vocab_padded = (cfg.vocab_size + tp - 1) / tp * tp;
  s.vocab_local = s.vocab_padded / tp;
  s.vocab_begin = r * s.vocab_local;
  return s;
}

}  // namespace gf
