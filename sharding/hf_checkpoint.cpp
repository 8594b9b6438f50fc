// A Hugging Face checkpoint directory (config.json, *.safetensors [+ index], tokenizer.json) as a
// CheckpointSource, and open_checkpoint(), which picks the reader by what the path is.
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "sharding/checkpoint_source.h"
#include "sharding/gguf_reader.h"
#include "sharding/safetensors.h"

namespace gf {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  GF_CHECK(in, p.string(), ": cannot open");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json read_json(const fs::path& p) {
  try {
    return json::parse(read_text(p));
  } catch (const json::exception& e) {
    GF_FAIL(p.string(), ": not valid JSON (", e.what(), ")");
  }
}

// Typed field access: a present field of the wrong type is an error naming file and field.
int64_t get_int(const json& j, const std::string& file, const char* key, std::optional<int64_t> dflt = {}) {
  if (!j.contains(key) || j[key].is_null()) {
    GF_CHECK(dflt.has_value(), file, ": field ", key, " is missing");
    return *dflt;
  }
  GF_CHECK(j[key].is_number_integer(), file, ": field ", key, " must be an integer, got ", j[key].dump());
  return j[key].get<int64_t>();
}
double get_num(const json& j, const std::string& file, const char* key, double dflt) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  GF_CHECK(j[key].is_number(), file, ": field ", key, " must be a number, got ", j[key].dump());
  return j[key].get<double>();
}
// bos/eos ids: an integer or (eos) a list of integers.
std::vector<int64_t> get_ids(const json& j, const std::string& file, const char* key) {
  std::vector<int64_t> v;
  if (!j.contains(key) || j[key].is_null()) return v;
  const json& x = j[key];
  if (x.is_number_integer()) return {x.get<int64_t>()};
  GF_CHECK(x.is_array(), file, ": field ", key, " must be an integer or a list of integers");
  for (const json& e : x) {
    GF_CHECK(e.is_number_integer(), file, ": field ", key, " must be an integer or a list of integers");
    v.push_back(e.get<int64_t>());
  }
  return v;
}

ModelConfig parse_config(const fs::path& dir) {
  const std::string f = (dir / "config.json").string();
  GF_CHECK(fs::exists(dir / "config.json"), f, ": missing (a Hugging Face checkpoint directory needs config.json)");
  json j = read_json(dir / "config.json");
  GF_CHECK(j.is_object(), f, ": must be a JSON object");
  if (j.contains("architectures")) {
    bool ok = false;
    for (const json& a : j["architectures"])
      ok |= a.is_string() && (a == "LlamaForCausalLM" || a == "MistralForCausalLM");
    GF_CHECK(ok, f, ": field architectures is ", j["architectures"].dump(),
             "; supported: LlamaForCausalLM, MistralForCausalLM");
  }
  if (j.contains("hidden_act"))
    GF_CHECK(j["hidden_act"] == "silu", f, ": field hidden_act must be \"silu\", got ", j["hidden_act"].dump());
  for (const char* bias : {"attention_bias", "mlp_bias"})
    GF_CHECK(!j.contains(bias) || j[bias] == false, f, ": field ", bias, " = true is not supported");
  ModelConfig c;
  c.dim = get_int(j, f, "hidden_size");
  c.n_layers = get_int(j, f, "num_hidden_layers");
  c.n_heads = get_int(j, f, "num_attention_heads");
  c.n_kv_heads = get_int(j, f, "num_key_value_heads", c.n_heads);
  GF_CHECK(c.n_heads > 0, f, ": field num_attention_heads must be > 0, got ", c.n_heads);
  c.head_dim = get_int(j, f, "head_dim", c.dim / c.n_heads);
  c.hidden_dim = get_int(j, f, "intermediate_size");
  c.vocab_size = get_int(j, f, "vocab_size");
  c.max_seq_len = get_int(j, f, "max_position_embeddings");
  c.norm_eps = get_num(j, f, "rms_norm_eps", 1e-6);
  c.rope_theta = get_num(j, f, "rope_theta", 10000.0);
  if (j.contains("tie_word_embeddings")) {
    GF_CHECK(j["tie_word_embeddings"].is_boolean(), f, ": field tie_word_embeddings must be true or false");
    c.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  }
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const json& r = j["rope_scaling"];
    GF_CHECK(r.is_object(), f, ": field rope_scaling must be an object");
    std::string type = r.contains("rope_type") ? r["rope_type"].get<std::string>()
                                               : r.value("type", std::string("none"));
    GF_CHECK(type == "llama3" || type == "default", f, ": rope_scaling type '", type,
             "' is not supported (llama3)");
    if (type == "llama3") {
      c.rope_scaling.type = "llama3";
      c.rope_scaling.factor = get_num(r, f, "factor", 1.0);
      c.rope_scaling.low_freq_factor = get_num(r, f, "low_freq_factor", 1.0);
      c.rope_scaling.high_freq_factor = get_num(r, f, "high_freq_factor", 4.0);
      c.rope_scaling.original_max_position = get_int(r, f, "original_max_position_embeddings", 8192);
    }
  }
  auto bos = get_ids(j, f, "bos_token_id");
  c.eos_ids = get_ids(j, f, "eos_token_id");
  if (fs::exists(dir / "generation_config.json")) {  // what generation uses wins
    const std::string gf = (dir / "generation_config.json").string();
    json g = read_json(dir / "generation_config.json");
    auto gbos = get_ids(g, gf, "bos_token_id"), geos = get_ids(g, gf, "eos_token_id");
    if (!gbos.empty()) bos = gbos;
    if (!geos.empty()) c.eos_ids = geos;
  }
  GF_CHECK(bos.size() <= 1, f, ": field bos_token_id must be one integer");
  c.bos_id = bos.empty() ? -1 : bos[0];
  return c;
}

// Hugging Face tensor name -> canonical name (checkpoint_source.h); "" for names we do not use.
std::string canonical(const std::string& hf) {
  static const std::map<std::string, std::string> top = {
      {"model.embed_tokens.weight", "embed"}, {"model.norm.weight", "norm"}, {"lm_head.weight", "lm_head"}};
  if (auto it = top.find(hf); it != top.end()) return it->second;
  static const std::map<std::string, std::string> per_layer = {
      {"self_attn.q_proj.weight", "wq"},        {"self_attn.k_proj.weight", "wk"},
      {"self_attn.v_proj.weight", "wv"},        {"self_attn.o_proj.weight", "wo"},
      {"mlp.gate_proj.weight", "w1"},           {"mlp.up_proj.weight", "w3"},
      {"mlp.down_proj.weight", "w2"},           {"input_layernorm.weight", "attn_norm"},
      {"post_attention_layernorm.weight", "ffn_norm"}};
  const std::string pre = "model.layers.";
  if (hf.rfind(pre, 0) != 0) return "";
  size_t dot = hf.find('.', pre.size());
  if (dot == std::string::npos) return "";
  std::string idx = hf.substr(pre.size(), dot - pre.size());
  if (idx.empty() || idx.find_first_not_of("0123456789") != std::string::npos) return "";
  auto it = per_layer.find(hf.substr(dot + 1));
  return it == per_layer.end() ? "" : "layers." + std::to_string(std::stoll(idx)) + "." + it->second;
}

class HfCheckpoint : public CheckpointSource {
 public:
  explicit HfCheckpoint(const fs::path& dir) : dir_(dir) {
    try {
      cfg_ = parse_config(dir);
    } catch (const json::exception& e) {  // a field of an unexpected JSON type deep inside
      GF_FAIL((dir / "config.json").string(), ": unexpected field type (", e.what(), ")");
    }
    cfg_.validate((dir / "config.json").string());  // before anything is read or allocated
    fs::path tok = dir / "tokenizer.json";
    GF_CHECK(fs::exists(tok), tok.string(), ": missing (the shard carries the tokenizer; it is required)");
    tokenizer_ = read_text(tok);
    if (fs::exists(dir / "tokenizer_config.json")) {
      json t = read_json(dir / "tokenizer_config.json");
      if (t.contains("chat_template")) {
        const json& ct = t["chat_template"];
        if (ct.is_string()) {
          chat_template_ = ct.get<std::string>();
        } else if (ct.is_array()) {  // [{name, template}]: the "default" one
          for (const json& e : ct)
            if (e.is_object() && e.value("name", "") == "default") chat_template_ = e.value("template", "");
        }
      }
    }
    open_weights();
  }

  const ModelConfig& config() const override { return cfg_; }
  bool has(const std::string& name) const override { return where_.count(name) > 0; }
  std::vector<int64_t> shape2d(const std::string& name) const override {
    const StTensor& t = find(name);
    GF_CHECK(t.shape.size() == 1 || t.shape.size() == 2, files_[where_.at(name).first]->path(), ": tensor ",
             where_.at(name).second, ": expected 1 or 2 dimensions, got ", t.shape.size());
    return t.shape.size() == 1 ? std::vector<int64_t>{1, t.shape[0]} : t.shape;
  }
  void read_rows(const std::string& name, int64_t r0, int64_t r1, float* out) const override {
    auto s = shape2d(name);
    GF_ASSERT(r0 >= 0 && r1 >= r0 && r1 <= s[0]);
    files_[where_.at(name).first]->read_f32(find(name), r0 * s[1], r1 * s[1], out);
  }
  std::string tokenizer_json() const override { return tokenizer_; }
  std::string chat_template() const override { return chat_template_; }
  std::string describe() const override { return fs::absolute(dir_).lexically_normal().string(); }

 private:
  const StTensor& find(const std::string& name) const {
    auto it = where_.find(name);
    GF_CHECK(it != where_.end(), dir_.string(), ": checkpoint has no tensor for ", name);
    return files_[it->second.first]->tensor(it->second.second);
  }

  void add_file(const fs::path& p) {
    files_.push_back(std::make_unique<SafetensorsFile>(p.string()));
    size_t idx = files_.size() - 1;
    for (const auto& [hf, t] : files_[idx]->tensors()) {
      std::string c = canonical(hf);
      if (c.empty()) continue;  // rotary_emb.inv_freq and the like
      GF_CHECK(!where_.count(c), p.string(), ": tensor ", hf, " is also in ",
               files_[where_[c].first]->path());
      where_[c] = {idx, hf};
    }
  }

  void open_weights() {
    fs::path single = dir_ / "model.safetensors", index = dir_ / "model.safetensors.index.json";
    if (fs::exists(index)) {
      const std::string f = index.string();
      json j = read_json(index);
      GF_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), f, ": field weight_map must be an object");
      std::map<std::string, std::vector<std::string>> by_file;  // file -> tensor names it should hold
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        GF_CHECK(it->is_string(), f, ": weight_map[", it.key(), "] must be a file name");
        std::string file = it->get<std::string>();
        fs::path rel(file);
        bool escapes = rel.is_absolute() || file.empty();
        for (const auto& part : rel) escapes |= part == "..";
        GF_CHECK(!escapes, f, ": weight_map[", it.key(), "] = '", file,
                 "' must be a file name inside the checkpoint directory");
        by_file[file].push_back(it.key());
      }
      for (const auto& [file, names] : by_file) {
        GF_CHECK(fs::is_regular_file(dir_ / file), f, ": weight_map names ", file, ", which is missing");
        add_file(dir_ / file);
        for (const std::string& n : names)
          GF_CHECK(files_.back()->tensors().count(n), f, ": weight_map puts ", n, " in ", file,
                   ", which does not hold it");
      }
    } else {
      GF_CHECK(fs::exists(single), dir_.string(), ": no model.safetensors or model.safetensors.index.json");
      add_file(single);
    }
  }

  fs::path dir_;
  ModelConfig cfg_;
  std::string tokenizer_, chat_template_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<size_t, std::string>> where_;  // canonical -> (file, HF name)
};

}  // namespace

std::unique_ptr<CheckpointSource> open_checkpoint(const std::string& path) {
  fs::path p(path);
  if (fs::is_directory(p)) {
    try {
      return std::make_unique<HfCheckpoint>(p);
    } catch (const json::exception& e) {  // a JSON file of an unexpected shape somewhere else
      GF_FAIL(path, ": unexpected JSON content (", e.what(), ")");
    }
  }
  if (p.extension() == ".gguf") return open_gguf_checkpoint(path);
  GF_FAIL(path, ": not a checkpoint (expected a Hugging Face directory with config.json, or a .gguf file)");
}

}  // namespace gf
