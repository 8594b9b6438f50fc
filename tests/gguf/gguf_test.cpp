// GGUF import units: dequantization of every supported type against gguf.quants, the tiny llama's
// config and Q/K rows (permutation undone), tokenizer.json shape, and the malformed-file corpus.
// Inputs come from make_gguf_cases.py, in the directory named by $GF_GGUF_CASES.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "sharding/gguf_dequant.h"
#include "sharding/gguf_parse.h"
#include "sharding/gguf_reader.h"

namespace fs = std::filesystem;

namespace {

fs::path cases() {
  const char* d = std::getenv("GF_GGUF_CASES");
  if (!d) throw std::runtime_error("set GF_GGUF_CASES to the output of make_gguf_cases.py");
  return d;
}

std::vector<float> read_f32(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<float> v(fs::file_size(p) / 4);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * 4));
  return v;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(GgufDequant, EveryTypeMatchesGgufPackage) {
  gf::GgufFile f((cases() / "quants.gguf").string());
  std::vector<float> expected = read_f32(cases() / "quants.f32");
  ASSERT_EQ(f.tensors().size(), 9u);
  size_t at = 0;
  for (const gf::GgufTensorInfo& t : f.tensors()) {
    SCOPED_TRACE(t.name);
    gf::GgmlTypeInfo ti = gf::ggml_type_info(t.ggml_type);
    ASSERT_EQ(gf::ggml_type_name(t.ggml_type), t.name);
    const int64_t cols = t.ne[0], rows = t.n_elements / cols,
                  row_bytes = cols / ti.block_size * ti.type_size;
    std::vector<float> out(static_cast<size_t>(cols));
    int mismatches = 0;
    for (int64_t r = 0; r < rows; ++r) {
      gf::dequantize_row(t.ggml_type, f.tensor_data(t) + r * row_bytes, cols, out.data());
      for (int64_t c = 0; c < cols; ++c, ++at) {
        float ref = expected.at(at);
        mismatches += !(std::fabs(out[size_t(c)] - ref) <= 1e-6f + 1e-6f * std::fabs(ref));
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
  EXPECT_EQ(at, expected.size());
}

TEST(GgufReader, TinyLlamaConfigAndNames) {
  auto src = gf::open_gguf_checkpoint((cases() / "tiny.gguf").string());
  const gf::ModelConfig& c = src->config();
  EXPECT_EQ(c.name, "tiny-llama");
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.hidden_dim, 128);
  EXPECT_EQ(c.vocab_size, 32);
  EXPECT_EQ(c.max_seq_len, 256);
  EXPECT_DOUBLE_EQ(c.rope_theta, 100000.0);
  EXPECT_NEAR(c.norm_eps, 1e-5, 1e-12);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(src->has("lm_head"));
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_ids, std::vector<int64_t>{2});
  EXPECT_EQ(src->shape2d("embed"), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(src->shape2d("layers.1.wk"), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(src->shape2d("layers.1.w2"), (std::vector<int64_t>{64, 128}));
  EXPECT_EQ(src->shape2d("norm"), (std::vector<int64_t>{1, 64}));
  EXPECT_THROW(src->shape2d("layers.2.wq"), gf::Error);
  EXPECT_NE(src->chat_template().find("<|im_start|>"), std::string::npos);
}

// Rows must come back in HF order: the file holds them permuted the way convert_hf_to_gguf does.
TEST(GgufReader, QkPermutationUndone) {
  auto src = gf::open_gguf_checkpoint((cases() / "tiny.gguf").string());
  std::vector<float> hf = read_f32(cases() / "tiny_hf.f32");
  std::vector<float> wq(64 * 64), wk(32 * 64), part(10 * 64);
  src->read_rows("layers.0.wq", 0, 64, wq.data());
  src->read_rows("layers.0.wk", 0, 32, wk.data());
  src->read_rows("layers.0.wk", 13, 23, part.data());
  EXPECT_TRUE(std::equal(wq.begin(), wq.end(), hf.begin()));
  EXPECT_TRUE(std::equal(wk.begin(), wk.end(), hf.begin() + wq.size()));
  EXPECT_TRUE(std::equal(part.begin(), part.end(), hf.begin() + wq.size() + 13 * 64));
  // The stored order really differs (else this test could not fail).
  gf::GgufFile f((cases() / "tiny.gguf").string());
  const gf::GgufTensorInfo* raw = f.find_tensor("blk.0.attn_q.weight");
  ASSERT_NE(raw, nullptr);
  EXPECT_NE(std::memcmp(f.tensor_data(*raw), hf.data(), 64 * 64 * 4), 0);
  EXPECT_THROW(src->read_rows("layers.0.wq", 60, 65, wq.data()), gf::Error);
}

TEST(GgufReader, TokenizerJson) {
  auto src = gf::open_gguf_checkpoint((cases() / "tiny.gguf").string());
  auto j = nlohmann::json::parse(src->tokenizer_json());
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_EQ(j["model"]["vocab"].size(), 32u);
  EXPECT_EQ(j["model"]["vocab"]["abc"], 30);
  EXPECT_EQ(j["model"]["merges"], (nlohmann::json{"a b", "ab c", "Ġ a"}));
  ASSERT_EQ(j["added_tokens"].size(), 3u);
  EXPECT_EQ(j["added_tokens"][2]["content"], "<|im_end|>");
  EXPECT_TRUE(j["added_tokens"][2]["special"]);
  EXPECT_EQ(j["pre_tokenizer"]["pretokenizers"][0]["type"], "Digits");
}

TEST(GgufReader, MalformedCorpusFailsWithOneLine) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(cases() / "malformed")) {
    if (e.path().extension() != ".gguf") continue;
    ++n;
    SCOPED_TRACE(e.path().filename().string());
    std::string field = read_text(fs::path(e.path()).replace_extension(".field"));
    try {
      gf::open_gguf_checkpoint(e.path().string());
      ADD_FAILURE() << "accepted";
    } catch (const gf::Error& err) {
      std::string msg = err.what();
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      EXPECT_NE(msg.find(e.path().string()), std::string::npos) << msg;
      EXPECT_NE(msg.find(field), std::string::npos) << "expected '" << field << "' in: " << msg;
    }
  }
  EXPECT_GE(n, 25);
}

}  // namespace
