// Helpers for the sharding tests: temp dirs, hand-built safetensors files, an in-memory checkpoint.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "sharding/checkpoint_source.h"

namespace gf::test {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "gf_sharding_XXXXXX").string();
    path = ::mkdtemp(t.data());
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path operator/(const std::string& s) const { return path / s; }
};

inline void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

// 8-byte little-endian length + header text + data.
inline std::string st_raw(uint64_t n, const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xff);
  return s + header + data;
}
inline std::string st_file(const std::string& header, const std::string& data) {
  return st_raw(header.size(), header, data);
}

// A valid F32 safetensors file holding `tensors` (name -> (shape, values)), in map order.
inline std::string st_make(const std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>& tensors) {
  json h = json::object();
  std::string data;
  for (const auto& [name, t] : tensors) {
    size_t b = data.size();
    data.append(reinterpret_cast<const char*>(t.second.data()), t.second.size() * 4);
    h[name] = {{"dtype", "F32"}, {"shape", t.first}, {"data_offsets", {b, data.size()}}};
  }
  return st_file(h.dump(), data);
}

inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Expects gf::Error whose one-line message contains every needle.
template <typename F>
void expect_error(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no gf::Error thrown (wanted: " << needles[0] << ")";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    for (const auto& n : needles) EXPECT_NE(m.find(n), std::string::npos) << "'" << n << "' not in: " << m;
  }
}

// A checkpoint held in memory: canonical name -> (rows, cols, fp32 values).
class MemorySource : public CheckpointSource {
 public:
  MemorySource(ModelConfig cfg, uint32_t seed) : cfg_(std::move(cfg)) {
    const auto& c = cfg_;
    int64_t D = c.dim, hd = c.head_dim;
    add("embed", c.vocab_size, D, seed++);
    add("norm", 1, D, seed++);
    if (!c.tie_word_embeddings) add("lm_head", c.vocab_size, D, seed++);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      std::string p = "layers." + std::to_string(l) + ".";
      add(p + "attn_norm", 1, D, seed++);
      add(p + "ffn_norm", 1, D, seed++);
      add(p + "wq", c.n_heads * hd, D, seed++);
      add(p + "wk", c.n_kv_heads * hd, D, seed++);
      add(p + "wv", c.n_kv_heads * hd, D, seed++);
      add(p + "wo", D, c.n_heads * hd, seed++);
      add(p + "w1", c.hidden_dim, D, seed++);
      add(p + "w3", c.hidden_dim, D, seed++);
      add(p + "w2", D, c.hidden_dim, seed++);
    }
  }
  const ModelConfig& config() const override { return cfg_; }
  bool has(const std::string& n) const override { return t_.count(n) > 0; }
  std::vector<int64_t> shape2d(const std::string& n) const override {
    GF_CHECK(has(n), "memory: no ", n);
    return {t_.at(n).rows, t_.at(n).cols};
  }
  void read_rows(const std::string& n, int64_t r0, int64_t r1, float* out) const override {
    const T& t = t_.at(n);
    std::copy(t.v.begin() + r0 * t.cols, t.v.begin() + r1 * t.cols, out);
  }
  std::string tokenizer_json() const override { return R"({"model": {"type": "BPE"}})"; }
  std::string chat_template() const override { return "{{ messages }}"; }
  std::string describe() const override { return "memory:" + cfg_.name; }
  const std::vector<float>& values(const std::string& n) const { return t_.at(n).v; }

 private:
  struct T {
    int64_t rows, cols;
    std::vector<float> v;
  };
  void add(const std::string& n, int64_t r, int64_t c, uint32_t seed) {
    t_[n] = {r, c, random_floats(size_t(r * c), seed, 0.5f)};
  }
  ModelConfig cfg_;
  std::map<std::string, T> t_;
};

inline ModelConfig tiny_config(int64_t heads = 4, int64_t kv = 2, bool tied = false, int64_t head_dim = 12,
                               int64_t hidden = 100) {
  ModelConfig c;
  c.name = "tiny";
  c.dim = 48;
  c.n_layers = 2;
  c.n_heads = heads;
  c.n_kv_heads = kv;
  c.head_dim = head_dim;
  c.hidden_dim = hidden;  // 100: not a multiple of any group size (ragged int4 groups, uneven splits)
  c.vocab_size = 37;   // not a multiple of tp: padded lm_head rows
  c.max_seq_len = 64;
  c.tie_word_embeddings = tied;
  c.bos_id = 1;
  c.eos_ids = {2, 3};
  return c;
}

}  // namespace gf::test
