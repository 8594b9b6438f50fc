// Test helper: prints what the GGUF reader makes of a file, for the Python checks against the
// `gguf` and `tokenizers` packages. Usage:
//   gguf_dump FILE config | tokenizer | rows NAME OUT.f32 | encode TEXT_FILE
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "sharding/gguf_reader.h"
#ifdef GF_HAVE_TOKENIZER
#include "tokenizer/tokenizer.h"
#endif

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::cerr << "usage: gguf_dump FILE config|tokenizer|rows NAME OUT|encode TEXT_FILE\n";
    return 2;
  }
  auto src = gf::open_gguf_checkpoint(argv[1]);
  const std::string cmd = argv[2];
  if (cmd == "config") {
    const gf::ModelConfig& c = src->config();
    std::cout << nlohmann::json{{"name", c.name},
                                {"dim", c.dim},
                                {"n_layers", c.n_layers},
                                {"n_heads", c.n_heads},
                                {"n_kv_heads", c.n_kv_heads},
                                {"head_dim", c.head_dim},
                                {"hidden_dim", c.hidden_dim},
                                {"vocab_size", c.vocab_size},
                                {"max_seq_len", c.max_seq_len},
                                {"norm_eps", c.norm_eps},
                                {"rope_theta", c.rope_theta},
                                {"tie_word_embeddings", c.tie_word_embeddings},
                                {"bos_id", c.bos_id},
                                {"eos_ids", c.eos_ids}}
              << "\n";
  } else if (cmd == "tokenizer") {
    std::cout << src->tokenizer_json();
  } else if (cmd == "rows" && argc == 5) {
    auto shape = src->shape2d(argv[3]);
    std::vector<float> out(size_t(shape[0] * shape[1]));
    src->read_rows(argv[3], 0, shape[0], out.data());
    std::ofstream(argv[4], std::ios::binary)
        .write(reinterpret_cast<const char*>(out.data()), std::streamsize(out.size() * 4));
  } else if (cmd == "encode" && argc == 4) {
#ifdef GF_HAVE_TOKENIZER
    auto tok = gf::Tokenizer::from_json(src->tokenizer_json(), argv[1]);
    std::ifstream in(argv[3]);
    for (std::string line; std::getline(in, line);) {
      for (int32_t id : tok.encode(line, false)) std::cout << id << ' ';
      std::cout << '\n';
    }
#else
    std::cerr << "gguf_dump: built without the tokenizer\n";
    return 77;
#endif
  } else {
    std::cerr << "gguf_dump: unknown command '" << cmd << "'\n";
    return 2;
  }
  return 0;
} catch (const gf::Error& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
