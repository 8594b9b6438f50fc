// libFuzzer target: bytes as tokenizer.json -> Tokenizer::from_json, then every entry point on
// fixed texts and ids (a tokenizer that loads must encode, decode and stream without failing).
#include <algorithm>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  gf::fuzz::expect_clean([&] {
    gf::Tokenizer tok = gf::Tokenizer::from_json(json, "fuzz.json");
    for (const char* text : {"", "Hello world, it's 2024!\n\tx", "Caf\xC3\xA9 \xE6\x9D\xB1 \xF0\x9F\x9A\x80",
                             "<s><|begin_of_text|> a  b</s>", "\xE2\x96\x81\xE2\x96\x81 12345678"}) {
      auto ids = tok.encode(text, true);
      (void)tok.decode(ids, false);
      (void)tok.decode(ids, true);
    }
    // Every id in range decodes and streams; the vocab may be large, so only its two ends.
    const int64_t n = tok.vocab_size();
    std::vector<int32_t> ids;
    for (int64_t i = 0; i < std::min<int64_t>(n, 64); ++i) ids.push_back(int32_t(i));
    for (int64_t i = std::max<int64_t>(64, n - 64); i < n; ++i) ids.push_back(int32_t(i));
    for (int32_t id : ids) (void)tok.token_to_id(tok.id_to_token(id));
    (void)tok.decode(ids, false);
    gf::Tokenizer::Stream stream(tok);
    for (int32_t id : ids) (void)stream.push(id);
    (void)stream.flush();
  });
  return 0;
}
