// GGUF checkpoints as a CheckpointSource: llama.* metadata -> ModelConfig, llama.cpp tensor names
// -> canonical ones, rows dequantized to fp32 on demand, Q/K rows put back into Hugging Face order.
#include "sharding/gguf_reader.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <unordered_map>

#include "core/error.h"
#include "sharding/gguf_dequant.h"
#include "sharding/gguf_parse.h"
#include "sharding/gguf_tokenizer.h"

namespace gf {
namespace {

struct Tensor {
  const GgufTensorInfo* info = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t rope_heads =
      0;  // > 0: rows are llama.cpp-permuted (interleaved RoPE) over this many heads
  int64_t head_dim = 0;
};

class GgufCheckpoint final : public CheckpointSource {
 public:
  explicit GgufCheckpoint(const std::string& path) : file_(path) {
    read_config();
    map_tensors();
    tokenizer_json_ = gguf_tokenizer_json(file_);
    chat_template_ = std::string(file_.get_string_opt("tokenizer.chat_template").value_or(""));
  }

  const ModelConfig& config() const override { return cfg_; }
  bool has(const std::string& name) const override { return tensors_.count(name) > 0; }
  std::vector<int64_t> shape2d(const std::string& name) const override {
    const Tensor& t = get(name);
    return {t.rows, t.cols};
  }
  void read_rows(const std::string& name, int64_t r0, int64_t r1, float* out) const override;
  std::string tokenizer_json() const override { return tokenizer_json_; }
  std::string chat_template() const override { return chat_template_; }
  std::string describe() const override { return file_.path(); }

 private:
  void read_config();
  void map_tensors();
  void add(const std::string& canonical, const std::string& gguf_name, std::vector<int64_t> shape,
           int64_t rope_heads = 0);
  const Tensor& get(const std::string& name) const {
    auto it = tensors_.find(name);
    GF_CHECK(it != tensors_.end(), file_.path(), ": GGUF checkpoint has no tensor '", name, "'");
    return it->second;
  }

  GgufFile file_;
  ModelConfig cfg_;
  std::unordered_map<std::string, Tensor> tensors_;
  std::string tokenizer_json_, chat_template_;
};

std::string model_name(const GgufFile& f) {
  std::string name;
  auto base = f.get_string_opt("general.basename");
  auto size = f.get_string_opt("general.size_label");
  if (base && size)
    name = std::string(*base) + "-" + std::string(*size);
  else if (auto n = f.get_string_opt("general.name"))
    name = std::string(*n);
  else
    name = std::filesystem::path(f.path()).stem().string();
  for (char& c : name)
    c = std::isalnum(uint8_t(c)) || c == '.' || c == '-' ? char(std::tolower(uint8_t(c))) : '-';
  return name;
}

void GgufCheckpoint::read_config() {
  const GgufFile& f = file_;
  const std::string arch(f.get_string("general.architecture"));
  GF_CHECK(arch == "llama", f.path(), ": GGUF 'general.architecture' is '", arch,
           "', expected llama");
  check_gguf_special_ids(f);
  auto positive = [&](const std::string& key) {
    int64_t v = f.get_int("llama." + key);
    GF_CHECK(v > 0 && v <= (int64_t(1) << 31), f.path(), ": GGUF 'llama.", key, "' = ", v,
             ", expected a positive count");
    return v;
  };
  cfg_.name = model_name(f);
  cfg_.dim = positive("embedding_length");
  cfg_.n_layers = positive("block_count");
  cfg_.n_heads = positive("attention.head_count");
  cfg_.n_kv_heads =
      f.find("llama.attention.head_count_kv") ? positive("attention.head_count_kv") : cfg_.n_heads;
  cfg_.head_dim = f.find("llama.attention.key_length") ? positive("attention.key_length")
                                                       : cfg_.dim / cfg_.n_heads;
  cfg_.hidden_dim = positive("feed_forward_length");
  cfg_.max_seq_len = positive("context_length");
  cfg_.norm_eps = f.get_float("llama.attention.layer_norm_rms_epsilon");
  cfg_.rope_theta = f.get_float_opt("llama.rope.freq_base").value_or(10000.0);
  if (auto rot = f.get_int_opt("llama.rope.dimension_count"))
    GF_CHECK(*rot == cfg_.head_dim, f.path(), ": GGUF 'llama.rope.dimension_count' = ", *rot,
             ", expected head_dim ", cfg_.head_dim,
             " (partial rotary embeddings are not supported)");
  if (auto v = f.get_int_opt("llama.attention.value_length"))
    GF_CHECK(*v == cfg_.head_dim, f.path(), ": GGUF 'llama.attention.value_length' = ", *v,
             ", expected key_length ", cfg_.head_dim);
  auto scaling = f.get_string_opt("llama.rope.scaling.type");
  GF_CHECK(!scaling || *scaling == "none", f.path(), ": GGUF 'llama.rope.scaling.type' is '",
           scaling.value_or(""), "', only unscaled RoPE is supported from GGUF");
  GF_CHECK(!f.find_tensor("rope_freqs.weight"), f.path(),
           ": GGUF tensor 'rope_freqs.weight' (llama3 RoPE scaling) is not supported; import the "
           "HF checkpoint");

  cfg_.vocab_size = int64_t(f.get_strings("tokenizer.ggml.tokens").size());
  if (auto v = f.get_int_opt("llama.vocab_size"))
    GF_CHECK(*v == cfg_.vocab_size, f.path(), ": GGUF 'llama.vocab_size' = ", *v,
             " but tokenizer.ggml.tokens has ", cfg_.vocab_size, " entries");
  cfg_.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  cfg_.bos_id = f.get_int_opt("tokenizer.ggml.bos_token_id").value_or(-1);
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                          "tokenizer.ggml.eom_token_id"})
    if (auto id = f.get_int_opt(key))
      if (std::find(cfg_.eos_ids.begin(), cfg_.eos_ids.end(), *id) == cfg_.eos_ids.end())
        cfg_.eos_ids.push_back(*id);
  cfg_.validate(f.path());
}

void GgufCheckpoint::add(const std::string& canonical, const std::string& gguf_name,
                         std::vector<int64_t> shape, int64_t rope_heads) {
  const GgufTensorInfo* t = file_.find_tensor(gguf_name);
  GF_CHECK(t, file_.path(), ": GGUF tensor '", gguf_name, "' is missing");
  // GGUF lists dimensions fastest-first: ne = (cols, rows) for a row-major (rows, cols) matrix.
  std::vector<int64_t> ne(shape.rbegin(), shape.rend());
  auto str = [](const std::vector<int64_t>& v) {
    std::string s = "(";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + ")";
  };
  GF_CHECK(t->ne == ne, file_.path(), ": GGUF tensor '", gguf_name, "' has ne ", str(t->ne),
           ", expected ", str(ne));
  GF_CHECK(ggml_type_info(t->ggml_type).dequantizable, file_.path(), ": GGUF tensor '", gguf_name,
           "' has type ", ggml_type_name(t->ggml_type),
           "; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K");
  Tensor x;
  x.info = t;
  x.rows = shape.size() == 2 ? shape[0] : 1;
  x.cols = shape.back();
  x.rope_heads = rope_heads;
  x.head_dim = cfg_.head_dim;
  tensors_[canonical] = x;
}

void GgufCheckpoint::map_tensors() {
  const ModelConfig& c = cfg_;
  const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  add("embed", "token_embd.weight", {c.vocab_size, c.dim});
  add("norm", "output_norm.weight", {c.dim});
  if (!c.tie_word_embeddings) add("lm_head", "output.weight", {c.vocab_size, c.dim});
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".", l = "layers." + std::to_string(i) + ".";
    add(l + "attn_norm", b + "attn_norm.weight", {c.dim});
    add(l + "wq", b + "attn_q.weight", {q, c.dim}, c.n_heads);
    add(l + "wk", b + "attn_k.weight", {kv, c.dim}, c.n_kv_heads);
    add(l + "wv", b + "attn_v.weight", {kv, c.dim});
    add(l + "wo", b + "attn_output.weight", {c.dim, q});
    add(l + "ffn_norm", b + "ffn_norm.weight", {c.dim});
    add(l + "w1", b + "ffn_gate.weight", {c.hidden_dim, c.dim});
    add(l + "w3", b + "ffn_up.weight", {c.hidden_dim, c.dim});
    add(l + "w2", b + "ffn_down.weight", {c.dim, c.hidden_dim});
  }
  // Anything else (a bias, an extra layer) would be silently dropped: refuse it instead.
  GF_CHECK(file_.tensors().size() == tensors_.size(), file_.path(), ": GGUF has ",
           file_.tensors().size(), " tensors but a llama model with ", c.n_layers, " layers uses ",
           tensors_.size(), [&] {
             for (const auto& t : file_.tensors()) {
               bool used = false;
               for (const auto& [k, v] : tensors_) used |= v.info == &t;
               if (!used) return "; unexpected tensor '" + t.name + "'";
             }
             return std::string();
           }());
}

void GgufCheckpoint::read_rows(const std::string& name, int64_t r0, int64_t r1, float* out) const {
  const Tensor& t = get(name);
  GF_CHECK(0 <= r0 && r0 <= r1 && r1 <= t.rows, file_.path(), ": rows [", r0, ", ", r1, ") of '",
           name, "' outside [0, ", t.rows, ")");
  const GgmlTypeInfo ti = ggml_type_info(t.info->ggml_type);
  const int64_t row_bytes = t.cols / ti.block_size * ti.type_size;
  const uint8_t* data = file_.tensor_data(*t.info);
  const int64_t half = t.head_dim / 2;
  for (int64_t r = r0; r < r1; ++r) {
    int64_t src = r;
    if (t.rope_heads >
        0) {  // HF row (head, s, j) was written by convert_hf_to_gguf at (head, j, s)
      int64_t head = r / t.head_dim, w = r % t.head_dim;
      src = head * t.head_dim + 2 * (w % half) + w / half;
    }
    dequantize_row(t.info->ggml_type, data + src * row_bytes, t.cols, out + (r - r0) * t.cols);
  }
}

}  // namespace

std::unique_ptr<CheckpointSource> open_gguf_checkpoint(const std::string& path) {
  return std::make_unique<GgufCheckpoint>(path);
}

}  // namespace gf
