// The writing half of the shard layout (model/shard_io.h): root attributes, tokenizer, weights.
#include "sharding/shard_writer.h"

#include <cstdio>

#include "core/error.h"

namespace gf {

std::string layer_path(int64_t layer) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "layers/%03lld", static_cast<long long>(layer));
  return buf;
}

ShardWriter::ShardWriter(const std::string& path, const ModelConfig& c, const RankSlice& s, const FormatSpec& fmt,
                         const std::string& source, const std::string& tokenizer_json,
                         const std::string& chat_template)
    : path_(path), root_(h5::create_file(path)) {
  h5::Group& g = *root_;
  g.set_attr("format_version", int64_t(kShardFormatVersion));
  g.set_attr("model_name", c.name);
  g.set_attr("weight_format", fmt.name());
  g.set_attr("group_size", int64_t(fmt.group_size));
  g.set_attr("source", source);
  g.set_attr("dim", c.dim);
  g.set_attr("n_layers", c.n_layers);
  g.set_attr("n_heads", c.n_heads);
  g.set_attr("n_kv_heads", c.n_kv_heads);
  g.set_attr("head_dim", c.head_dim);
  g.set_attr("hidden_dim", c.hidden_dim);
  g.set_attr("vocab_size", c.vocab_size);
  g.set_attr("max_seq_len", c.max_seq_len);
  g.set_attr("norm_eps", c.norm_eps);
  g.set_attr("rope_theta", c.rope_theta);
  g.set_attr("rope_type", c.rope_scaling.type);
  g.set_attr("rope_factor", c.rope_scaling.factor);
  g.set_attr("rope_low_freq_factor", c.rope_scaling.low_freq_factor);
  g.set_attr("rope_high_freq_factor", c.rope_scaling.high_freq_factor);
  g.set_attr("rope_original_max_position", c.rope_scaling.original_max_position);
  g.set_attr("tie_word_embeddings", int64_t(c.tie_word_embeddings));
  g.set_attr("bos_id", c.bos_id);
  g.set_attr("eos_ids", c.eos_ids);
  g.set_attr("tp_rank", s.tp_rank);
  g.set_attr("tp_size", s.tp_size);
  g.set_attr("head_begin", s.head_begin);
  g.set_attr("n_heads_local", s.n_heads);
  g.set_attr("kv_head_begin", s.kv_head_begin);
  g.set_attr("n_kv_heads_local", s.n_kv_heads);
  g.set_attr("hidden_begin", s.hidden_begin);
  g.set_attr("hidden_dim_local", s.hidden_dim);
  g.set_attr("vocab_padded", s.vocab_padded);
  g.set_attr("vocab_begin", s.vocab_begin);
  g.set_attr("vocab_local", s.vocab_local);
  h5::Group tok = g.create_group("tokenizer");
  tok.write("json", h5::DType::U8, {int64_t(tokenizer_json.size())}, tokenizer_json.data());
  tok.write("chat_template", h5::DType::U8, {int64_t(chat_template.size())}, chat_template.data());
  g.create_group("layers");
}

void ShardWriter::make_parents(const std::string& name) {
  for (size_t p = name.find('/'); p != std::string::npos; p = name.find('/', p + 1)) {
    std::string parent = name.substr(0, p);
    if (!root_->has(parent)) root_->create_group(parent);
  }
}

void ShardWriter::write_bf16(const std::string& name, const std::vector<uint16_t>& v,
                             const std::vector<int64_t>& shape) {
  GF_ASSERT(root_);
  make_parents(name);
  root_->write(name, h5::DType::BF16, shape, v.data());
}

void ShardWriter::write_weight(const std::string& name, const HostWeight& w) {
  GF_ASSERT(root_);
  make_parents(name);
  h5::Group g = root_->create_group(name);
  g.set_attr("format", w.fmt.name());
  switch (w.fmt.format) {
    case WeightFormat::BF16: g.write("w", h5::DType::BF16, {w.rows, w.cols}, w.q.data()); break;
    case WeightFormat::INT8:
      g.write("q", h5::DType::I8, {w.rows, w.cols}, w.q.data());
      g.write("scale", h5::DType::BF16, {w.rows}, w.scale.data());
      break;
    case WeightFormat::INT4: {
      int64_t ng = w.view().n_groups();
      g.write("q", h5::DType::U8, {w.rows, (w.cols + 1) / 2}, w.q.data());
      g.write("scale", h5::DType::BF16, {w.rows, ng}, w.scale.data());
      g.write("zero", h5::DType::BF16, {w.rows, ng}, w.zero.data());
      break;
    }
  }
}

void ShardWriter::finish() {
  GF_ASSERT(root_);
  GF_CHECK(H5Fflush(root_->id(), H5F_SCOPE_GLOBAL) >= 0, path_, ": flushing failed (disk full or file size limit?)");
  root_.reset();
}

void write_rank_shard(const HostShard& s, const std::string& path, const std::string& source) {
  ShardWriter w(path, s.cfg, s.slice, s.fmt, source, s.tokenizer_json, s.chat_template);
  w.write_bf16("embed", s.embed, {s.cfg.vocab_size, s.cfg.dim});
  w.write_bf16("norm", s.norm, {s.cfg.dim});
  w.write_weight("lm_head", s.lm_head);
  for (size_t i = 0; i < s.layers.size(); ++i) {
    const HostLayer& l = s.layers[i];
    std::string p = layer_path(int64_t(i));
    w.write_bf16(p + "/attn_norm", l.attn_norm, {s.cfg.dim});
    w.write_bf16(p + "/ffn_norm", l.ffn_norm, {s.cfg.dim});
    w.write_weight(p + "/wqkv", l.wqkv);
    w.write_weight(p + "/wo", l.wo);
    w.write_weight(p + "/w13", l.w13);
    w.write_weight(p + "/w2", l.w2);
  }
  w.finish();
}

}  // namespace gf
