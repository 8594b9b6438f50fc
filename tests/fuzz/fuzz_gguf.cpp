// libFuzzer target: bytes as a .gguf file -> GgufFile (header, metadata, tensor infos), its typed
// getters, then the whole import path: open_gguf_checkpoint (config, tensor map, tokenizer.json),
// a bounded dequantization of each tensor's edge rows, and the converted tokenizer itself.
#include <vector>

#include "fuzz/fuzz_util.h"
#include "sharding/gguf_parse.h"
#include "sharding/gguf_reader.h"
#include "tokenizer/tokenizer.h"

namespace {

// Keys the import reads, each asked for as every type: a wrong type must be a gf::Error.
const char* const kKeys[] = {
    "general.architecture",         "general.alignment",           "general.name",
    "llama.block_count",            "llama.embedding_length",      "llama.attention.head_count",
    "llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base", "tokenizer.ggml.model",
    "tokenizer.ggml.tokens",        "tokenizer.ggml.token_type",   "tokenizer.ggml.merges",
    "tokenizer.ggml.scores",        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.add_bos_token",
    "tokenizer.chat_template"};

void probe_getters(const gf::GgufFile& f) {
  for (const char* key : kKeys) {
    gf::fuzz::expect_clean([&] { f.get_int_opt(key); });
    gf::fuzz::expect_clean([&] { f.get_float_opt(key); });
    gf::fuzz::expect_clean([&] { f.get_bool_opt(key); });
    gf::fuzz::expect_clean([&] { f.get_string_opt(key); });
    gf::fuzz::expect_clean([&] { f.get_strings(key); });
    gf::fuzz::expect_clean([&] { f.get_ints(key); });
    gf::fuzz::expect_clean([&] { f.get_floats(key); });
  }
}

void probe_checkpoint(const std::string& path) {
  auto src = gf::open_gguf_checkpoint(path);
  const gf::ModelConfig& c = src->config();
  std::vector<std::string> names = {"embed", "norm", "lm_head"};
  for (int64_t i = 0; i < c.n_layers && i < 4; ++i)
    for (const char* w : {"attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w3", "w2"})
      names.push_back("layers." + std::to_string(i) + "." + w);
  std::vector<float> row;
  for (const std::string& n : names) {
    if (!src->has(n)) continue;
    auto s = src->shape2d(n);
    if (s[0] == 0 || s[1] > (1 << 16)) continue;  // a row this wide is valid but slow to fuzz
    row.resize(size_t(s[1]));
    src->read_rows(n, 0, 1, row.data());
    src->read_rows(n, s[0] - 1, s[0], row.data());
  }
  auto tok = gf::Tokenizer::from_json(src->tokenizer_json(), path + " (tokenizer)");
  auto ids = tok.encode("Hello world, 123 <|im_start|> \xE2\x96\x81x");
  (void)tok.decode(ids);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = (gf::fuzz::scratch().path() / "input.gguf").string();
  gf::fuzz::write_file(path, {reinterpret_cast<const char*>(data), size});
  gf::fuzz::expect_clean([&] {
    gf::GgufFile f(path);
    probe_getters(f);
    for (const auto& t : f.tensors()) (void)f.find_tensor(t.name);
    probe_checkpoint(path);
  });
  return 0;
}
