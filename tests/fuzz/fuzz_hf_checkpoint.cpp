// libFuzzer target: a Hugging Face checkpoint directory with one file fuzzed, opened through
// open_checkpoint (config.json -> ModelConfig, index.json -> which safetensors hold what; seeds from
// make_seeds.py). Byte 0
// picks the file: 0 config.json, 1 model.safetensors.index.json, 2 generation_config.json,
// 3 tokenizer_config.json; the other files are small valid ones written once.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "sharding/checkpoint_source.h"

namespace {

namespace fs = std::filesystem;

const char* const kConfig = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 16,
  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 32,
  "vocab_size": 4, "rms_norm_eps": 1e-5, "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2})";

// A safetensors file of one F32 tensor with `shape`, values 1, 2, 3, ...
std::string safetensors(const std::string& name, std::vector<int> shape) {
  int n = 1;
  std::string dims;
  for (int d : shape) n *= d, dims += (dims.empty() ? "" : ",") + std::to_string(d);
  std::string header = "{\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[" + dims + "],\"data_offsets\":[0," +
                       std::to_string(4 * n) + "]}}";
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = char((uint64_t(header.size()) >> (8 * i)) & 0xFF);
  out += header;
  for (int i = 0; i < n; ++i) {
    float v = float(i + 1);
    out.append(reinterpret_cast<const char*>(&v), 4);
  }
  return out;
}

const fs::path& checkpoint_dir() {
  static const fs::path dir = [] {
    fs::path d = gf::fuzz::scratch().path() / "ckpt";
    fs::create_directories(d);
    // One file holds everything, or an index splits the same two tensors over a and b.
    std::string both = safetensors("model.embed_tokens.weight", {4, 8});
    gf::fuzz::write_file(d / "model.safetensors", both);
    gf::fuzz::write_file(d / "a.safetensors", both);
    gf::fuzz::write_file(d / "b.safetensors", safetensors("model.norm.weight", {8}));
    gf::fuzz::write_file(d / "tokenizer.json", "{}");  // read as text only by open_checkpoint
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const fs::path& dir = checkpoint_dir();
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  const int which = data[0] % 4;
  gf::fuzz::write_file(dir / "config.json", which == 0 ? body : kConfig);
  std::error_code ec;
  for (const char* f : {"model.safetensors.index.json", "generation_config.json", "tokenizer_config.json"})
    fs::remove(dir / f, ec);
  if (which == 1) gf::fuzz::write_file(dir / "model.safetensors.index.json", body);
  if (which == 2) gf::fuzz::write_file(dir / "generation_config.json", body);
  if (which == 3) gf::fuzz::write_file(dir / "tokenizer_config.json", body);

  gf::fuzz::expect_clean([&] {
    auto src = gf::open_checkpoint(dir.string());
    std::vector<float> row;
    for (const char* name : {"embed", "norm", "lm_head", "layers.0.wq"}) {
      if (!src->has(name)) continue;
      auto s = src->shape2d(name);
      if (s[0] == 0) continue;
      row.resize(size_t(s[1]));
      src->read_rows(name, s[0] - 1, s[0], row.data());
    }
    (void)src->chat_template();
    (void)src->describe();
  });
  return 0;
}
