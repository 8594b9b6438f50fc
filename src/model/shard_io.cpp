// Reads one rank file (layout in shard_io.h), checking every attribute, dtype and shape.
#include "model/shard_io.h"

#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "io/hdf5.h"
#include "model/shard_store.h"

namespace gf {

QWeightView HostWeight::view() const {
  QWeightView v;
  v.format = fmt.format;
  v.rows = rows;
  v.cols = cols;
  v.group_size = fmt.group_size;
  v.q = q.data();
  v.scale = scale.empty() ? nullptr : scale.data();
  v.zero = zero.empty() ? nullptr : zero.data();
  return v;
}

int64_t HostShard::weight_bytes() const {
  int64_t b = lm_head.bytes() + 2 * int64_t(norm.size());
  for (const HostLayer& l : layers)
    b += l.wqkv.bytes() + l.wo.bytes() + l.w13.bytes() + l.w2.bytes() + 2 * int64_t(l.attn_norm.size() + l.ffn_norm.size());
  return b;
}

namespace {

struct Reader {
  const h5::Group& root;
  int64_t done = 0, total = 1;
  void (*progress)(int64_t, int64_t) = nullptr;

  void tick(int64_t bytes) {
    done += bytes;
    if (progress) progress(done, total);
  }
  std::vector<uint16_t> bf16(const h5::Group& g, const std::string& name, const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<uint16_t> v(static_cast<size_t>(n));
    g.read(name, h5::DType::BF16, shape, v.data());
    tick(2 * n);
    return v;
  }
  HostWeight weight(const std::string& name, const FormatSpec& fmt, int64_t rows, int64_t cols) {
    h5::Group g = root.open_group(name);
    std::string f = g.attr_string("format");
    GF_CHECK(f == fmt.name(), root.file(), ": ", g.path(), "@format: expected ", fmt.name(), ", got ", f);
    HostWeight w;
    w.fmt = fmt;
    w.rows = rows;
    w.cols = cols;
    switch (fmt.format) {
      case WeightFormat::BF16:
        w.q.resize(size_t(2 * rows * cols));
        g.read("w", h5::DType::BF16, {rows, cols}, w.q.data());
        break;
      case WeightFormat::INT8:
        w.q.resize(size_t(rows * cols));
        g.read("q", h5::DType::I8, {rows, cols}, w.q.data());
        w.scale = bf16(g, "scale", {rows});
        break;
      case WeightFormat::INT4: {
        int64_t ng = (cols + fmt.group_size - 1) / fmt.group_size;
        w.q.resize(size_t(rows * ((cols + 1) / 2)));
        g.read("q", h5::DType::U8, {rows, (cols + 1) / 2}, w.q.data());
        w.scale = bf16(g, "scale", {rows, ng});
        w.zero = bf16(g, "zero", {rows, ng});
        break;
      }
    }
    tick(int64_t(w.q.size()));
    return w;
  }
};

// The command that re-makes the set `path` belongs to (<store>/<model>/tp<N>-<format>/rank<r>.h5).
std::string remake_command(const std::string& path, const h5::Group& root, const FormatSpec& fmt) {
  const std::filesystem::path store = std::filesystem::path(path).parent_path().parent_path().parent_path();
  return shard_command(root.attr_string("source"), root.attr_string("model_name"),
                       store.empty() ? std::string(".") : store.string(), root.attr_int("tp_size"), fmt, " --force");
}

void expect_eq(const std::string& file, const char* field, int64_t got, int64_t want) {
  GF_CHECK(got == want, file, ": attribute ", field, ": expected ", want, " (from the split plan), got ", got);
}

}  // namespace

HostShard read_rank_shard(const std::string& path, void (*progress)(int64_t, int64_t)) {
  h5::Group root = h5::open_file_readonly(path);
  HostShard s;
  s.path = path;
  s.fmt = FormatSpec::parse(root.attr_string("weight_format"));
  // Version 1 differs from 2 only in the int4 sets' LM head (int4 then, int8 now): bf16/int8 v1 files still read.
  int64_t version = root.attr_int("format_version");
  GF_CHECK(version == kShardFormatVersion || (version == 1 && s.fmt.format != WeightFormat::INT4), path,
           ": attribute format_version: expected ", kShardFormatVersion, " for ", s.fmt.name(), ", got ", version,
           "; re-make the set with this build: ", remake_command(path, root, s.fmt));
  ModelConfig& c = s.cfg;
  c.name = root.attr_string("model_name");
  c.dim = root.attr_int("dim");
  c.n_layers = root.attr_int("n_layers");
  c.n_heads = root.attr_int("n_heads");
  c.n_kv_heads = root.attr_int("n_kv_heads");
  c.head_dim = root.attr_int("head_dim");
  c.hidden_dim = root.attr_int("hidden_dim");
  c.vocab_size = root.attr_int("vocab_size");
  c.max_seq_len = root.attr_int("max_seq_len");
  c.norm_eps = root.attr_double("norm_eps");
  c.rope_theta = root.attr_double("rope_theta");
  c.rope_scaling.type = root.attr_string("rope_type");
  c.rope_scaling.factor = root.attr_double("rope_factor");
  c.rope_scaling.low_freq_factor = root.attr_double("rope_low_freq_factor");
  c.rope_scaling.high_freq_factor = root.attr_double("rope_high_freq_factor");
  c.rope_scaling.original_max_position = root.attr_int("rope_original_max_position");
  c.tie_word_embeddings = root.attr_int("tie_word_embeddings") != 0;
  c.bos_id = root.attr_int("bos_id");
  c.eos_ids = root.attr_ints("eos_ids");
  c.validate(path);

  expect_eq(path, "group_size", root.attr_int("group_size"), s.fmt.group_size);
  int64_t tp = root.attr_int("tp_size"), rank = root.attr_int("tp_rank");
  GF_CHECK(tp >= 1 && rank >= 0 && rank < tp, path, ": attributes tp_rank/tp_size: ", rank, "/", tp, " out of range");
  s.slice = plan_rank_slice(c, tp, rank, s.fmt.format == WeightFormat::INT4 ? s.fmt.group_size : 1);
  const RankSlice& p = s.slice;
  expect_eq(path, "head_begin", root.attr_int("head_begin"), p.head_begin);
  expect_eq(path, "n_heads_local", root.attr_int("n_heads_local"), p.n_heads);
  expect_eq(path, "kv_head_begin", root.attr_int("kv_head_begin"), p.kv_head_begin);
  expect_eq(path, "n_kv_heads_local", root.attr_int("n_kv_heads_local"), p.n_kv_heads);
  expect_eq(path, "hidden_begin", root.attr_int("hidden_begin"), p.hidden_begin);
  expect_eq(path, "hidden_dim_local", root.attr_int("hidden_dim_local"), p.hidden_dim);
  expect_eq(path, "vocab_padded", root.attr_int("vocab_padded"), p.vocab_padded);
  expect_eq(path, "vocab_begin", root.attr_int("vocab_begin"), p.vocab_begin);
  expect_eq(path, "vocab_local", root.attr_int("vocab_local"), p.vocab_local);

  h5::Group tok = root.open_group("tokenizer");
  auto tj = tok.read_bytes("json");
  auto ct = tok.read_bytes("chat_template");
  s.tokenizer_json.assign(tj.begin(), tj.end());
  s.chat_template.assign(ct.begin(), ct.end());
  GF_CHECK(!s.tokenizer_json.empty(), path, ": /tokenizer/json is empty");

  const int64_t D = c.dim, hd = c.head_dim, qkv_rows = (p.n_heads + 2 * p.n_kv_heads) * hd;
  // Total for progress: bf16 tensors plus each weight's q bytes (scales are small).
  Reader r{root, 0, 1, progress};
  r.total = 2 * (c.vocab_size * D + D) + 2 * p.vocab_local * D +
            c.n_layers * (4 * D + 2 * (qkv_rows * D + D * p.n_heads * hd + 3 * p.hidden_dim * D));
  s.embed = r.bf16(root, "embed", {c.vocab_size, D});
  s.norm = r.bf16(root, "norm", {D});
  s.lm_head = r.weight("lm_head", lm_head_format(s.fmt), p.vocab_local, D);
  h5::Group layers = root.open_group("layers");
  s.layers.resize(size_t(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    char name[24];
    std::snprintf(name, sizeof name, "%03lld", static_cast<long long>(i));
    h5::Group lg = layers.open_group(name);
    HostLayer& l = s.layers[size_t(i)];
    l.attn_norm = r.bf16(lg, "attn_norm", {D});
    l.ffn_norm = r.bf16(lg, "ffn_norm", {D});
    std::string base = std::string("layers/") + name + "/";
    l.wqkv = r.weight(base + "wqkv", s.fmt, qkv_rows, D);
    l.wo = r.weight(base + "wo", s.fmt, D, p.n_heads * hd);
    l.w13 = r.weight(base + "w13", s.fmt, 2 * p.hidden_dim, D);
    l.w2 = r.weight(base + "w2", s.fmt, D, p.hidden_dim);
  }
  return s;
}

}  // namespace gf
