// Hugging Face checkpoint directories: config.json refusals (RELIABILITY test 4), index.json refusals
// (test 5), name mapping and config fields read as transformers reads them.
#include "sharding/checkpoint_source.h"
#include "test_util.h"

namespace gf {
namespace {

using test::json;
namespace fs = std::filesystem;

json tiny_config_json() {
  return {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 16}, {"num_hidden_layers", 1},
          {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"intermediate_size", 24}, {"vocab_size", 10},
          {"max_position_embeddings", 32}, {"rms_norm_eps", 1e-5}, {"rope_theta", 500000.0},
          {"bos_token_id", 1}, {"eos_token_id", {2, 3}}, {"tie_word_embeddings", false}};
}

// The HF tensors of tiny_config_json(), split over `files` safetensors files (round robin).
std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> hf_tensors() {
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> m;
  uint32_t seed = 1;
  auto add = [&](const std::string& n, int64_t r, int64_t c) {
    m[n] = {r == 1 ? std::vector<int64_t>{c} : std::vector<int64_t>{r, c}, test::random_floats(size_t(r * c), seed++)};
  };
  add("model.embed_tokens.weight", 10, 16);
  add("model.norm.weight", 1, 16);
  add("lm_head.weight", 10, 16);
  std::string p = "model.layers.0.";
  add(p + "self_attn.q_proj.weight", 16, 16);
  add(p + "self_attn.k_proj.weight", 8, 16);
  add(p + "self_attn.v_proj.weight", 8, 16);
  add(p + "self_attn.o_proj.weight", 16, 16);
  add(p + "mlp.gate_proj.weight", 24, 16);
  add(p + "mlp.up_proj.weight", 24, 16);
  add(p + "mlp.down_proj.weight", 16, 24);
  add(p + "input_layernorm.weight", 1, 16);
  add(p + "post_attention_layernorm.weight", 1, 16);
  return m;
}

void make_dir(const fs::path& d, const json& cfg, int files = 1) {
  fs::create_directories(d);
  test::write_file(d / "config.json", cfg.dump());
  test::write_file(d / "tokenizer.json", R"({"model": {"type": "BPE"}})");
  test::write_file(d / "tokenizer_config.json", R"({"chat_template": "{{ x }}"})");
  auto all = hf_tensors();
  if (files == 1) {
    test::write_file(d / "model.safetensors", test::st_make(all));
    return;
  }
  std::vector<std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>> parts(files);
  json map = json::object();
  int i = 0;
  for (auto& [n, t] : all) {
    parts[i % files][n] = t;
    map[n] = std::string("part") + std::to_string(i % files) + ".safetensors";
    ++i;
  }
  for (int f = 0; f < files; ++f) test::write_file(d / (std::string("part") + std::to_string(f) + ".safetensors"), test::st_make(parts[f]));
  test::write_file(d / "model.safetensors.index.json", json{{"metadata", json::object()}, {"weight_map", map}}.dump());
}

TEST(HfCheckpoint, ReadsConfigNamesAndRows) {
  test::TempDir tmp;
  json cfg = tiny_config_json();
  cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 16}};
  make_dir(tmp / "m", cfg, 3);
  test::write_file(tmp / "m" / "generation_config.json", R"({"eos_token_id": [3, 4, 5]})");
  auto src = open_checkpoint((tmp / "m").string());
  const ModelConfig& c = src->config();
  EXPECT_EQ(c.dim, 16);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.hidden_dim, 24);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_ids, (std::vector<int64_t>{3, 4, 5}));  // generation_config wins
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position, 16);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(src->chat_template(), "{{ x }}");
  EXPECT_EQ(src->shape2d("layers.0.w2"), (std::vector<int64_t>{16, 24}));
  EXPECT_EQ(src->shape2d("layers.0.ffn_norm"), (std::vector<int64_t>{1, 16}));
  auto hf = hf_tensors();
  const std::vector<std::pair<std::string, std::string>> names = {
      {"embed", "model.embed_tokens.weight"}, {"norm", "model.norm.weight"}, {"lm_head", "lm_head.weight"},
      {"layers.0.wq", "model.layers.0.self_attn.q_proj.weight"}, {"layers.0.wk", "model.layers.0.self_attn.k_proj.weight"},
      {"layers.0.wv", "model.layers.0.self_attn.v_proj.weight"}, {"layers.0.wo", "model.layers.0.self_attn.o_proj.weight"},
      {"layers.0.w1", "model.layers.0.mlp.gate_proj.weight"}, {"layers.0.w3", "model.layers.0.mlp.up_proj.weight"},
      {"layers.0.w2", "model.layers.0.mlp.down_proj.weight"},
      {"layers.0.attn_norm", "model.layers.0.input_layernorm.weight"},
      {"layers.0.ffn_norm", "model.layers.0.post_attention_layernorm.weight"}};
  for (const auto& [canon, name] : names) {
    auto s = src->shape2d(canon);
    const auto& want = hf[name].second;
    ASSERT_EQ(size_t(s[0] * s[1]), want.size()) << canon;
    std::vector<float> rows(size_t((s[0] - 1) * s[1]));  // rows [1, end): offsets are honoured
    if (s[0] > 1) {
      src->read_rows(canon, 1, s[0], rows.data());
      EXPECT_EQ(rows, std::vector<float>(want.begin() + s[1], want.end())) << canon;
    } else {
      rows.resize(size_t(s[1]));
      src->read_rows(canon, 0, 1, rows.data());
      EXPECT_EQ(rows, want) << canon;
    }
  }
}

TEST(HfCheckpoint, ConfigRefusals) {
  struct Case {
    const char* key;
    json value;
    std::string needle;
  };
  std::vector<Case> cases = {
      {"num_key_value_heads", 0, "num_key_value_heads must be > 0"},
      {"num_key_value_heads", 3, "multiple of num_key_value_heads"},
      {"hidden_size", "16", "hidden_size must be an integer"},
      {"vocab_size", nullptr, "vocab_size is missing"},
      {"architectures", {"GPT2LMHeadModel"}, "architectures"},
      {"bos_token_id", 99, "bos_token_id 99"},
      {"rope_scaling", {{"rope_type", "yarn"}, {"factor", 2.0}}, "yarn"},
      {"eos_token_id", {2, "x"}, "eos_token_id must be"},
  };
  test::TempDir tmp;
  int i = 0;
  for (const Case& k : cases) {
    SCOPED_TRACE(k.key);
    json cfg = tiny_config_json();
    if (k.value.is_null()) cfg.erase(k.key);
    else cfg[k.key] = k.value;
    fs::path d = tmp / (std::string("c") + std::to_string(i++));
    make_dir(d, cfg);
    test::expect_error([&] { open_checkpoint(d.string()); }, {"config.json", k.needle});
  }
}

TEST(HfCheckpoint, IndexRefusals) {
  struct Case {
    std::string name, target, needle;
  };
  test::TempDir tmp;
  std::vector<Case> cases = {
      {"dotdot", "../outside.safetensors", "inside the checkpoint directory"},
      {"absolute", "/etc/passwd", "inside the checkpoint directory"},
      {"missing", "nope.safetensors", "nope.safetensors, which is missing"},
      {"wrongfile", "part1.safetensors", "does not hold it"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    fs::path d = tmp / k.name;
    make_dir(d, tiny_config_json(), 2);
    json idx = json::parse(std::ifstream(d / "model.safetensors.index.json"));
    json& entry = idx["weight_map"]["model.norm.weight"];
    if (k.name == "wrongfile")  // the other part than the one that holds it
      entry = entry == "part1.safetensors" ? "part0.safetensors" : "part1.safetensors";
    else
      entry = k.target;
    test::write_file(d / "model.safetensors.index.json", idx.dump());
    test::expect_error([&] { open_checkpoint(d.string()); }, {"model.safetensors.index.json", k.needle});
  }
  // A tensor held by two files.
  fs::path d = tmp / "twice";
  make_dir(d, tiny_config_json(), 2);
  auto all = hf_tensors();
  test::write_file(d / "extra.safetensors",
                   test::st_make({{"model.norm.weight", all["model.norm.weight"]}, {"extra.thing", all["model.norm.weight"]}}));
  json idx = json::parse(std::ifstream(d / "model.safetensors.index.json"));
  idx["weight_map"]["extra.thing"] = "extra.safetensors";
  test::write_file(d / "model.safetensors.index.json", idx.dump());
  test::expect_error([&] { open_checkpoint(d.string()); }, {"model.norm.weight", "is also in"});
}

TEST(HfCheckpoint, MissingPiecesAreNamed) {
  test::TempDir tmp;
  make_dir(tmp / "m", tiny_config_json());
  fs::remove(tmp / "m" / "tokenizer.json");
  test::expect_error([&] { open_checkpoint((tmp / "m").string()); }, {"tokenizer.json", "required"});
  fs::create_directories(tmp / "empty");
  test::expect_error([&] { open_checkpoint((tmp / "empty").string()); }, {"config.json", "missing"});
  test::expect_error([&] { open_checkpoint((tmp / "x.bin").string()); }, {"x.bin", "not a checkpoint"});
}

}  // namespace
}  // namespace gf
