// libFuzzer target: fuzzed text and ids through two fixed small tokenizers (byte-level BPE and
// SentencePiece-style BPE, tests/fuzz/data/). Byte 0 picks the tokenizer and add_special_tokens; the
// rest is the text, and also (as little-endian int16 pairs) a list of ids to decode. Checks two
// properties that hold for any input: byte-level BPE round-trips valid UTF-8 exactly, and a stream
// of ids yields the same text as decoding them at once (where that text is valid UTF-8).
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

gf::Tokenizer load(const char* name) {
  const std::string path = std::string(GF_FUZZ_DATA_DIR) + "/" + name;
  std::ifstream in(path, std::ios::binary);
  GF_CHECK(in, path, ": cannot open the fixed tokenizer");
  std::ostringstream s;
  s << in.rdbuf();
  return gf::Tokenizer::from_json(s.str(), path);
}

// On a violation prints both sides (non-printing bytes as \xNN) so the report needs no debugger.
void check(bool ok, const char* what, std::string_view got = {}, std::string_view want = {}) {
  if (ok) return;
  auto show = [](std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
      char buf[8];
      std::snprintf(buf, sizeof buf, c < 0x20 || c >= 0x7f ? "\\x%02X" : "%c", c);
      out += buf;
    }
    return out;
  };
  std::fprintf(stderr, "fuzz_tokenizer_text: property violated: %s\n  got:  \"%s\"\n  want: \"%s\"\n", what,
               show(got).c_str(), show(want).c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const gf::Tokenizer tokenizers[2] = {load("bytelevel.json"), load("sentencepiece.json")};
  if (size == 0) return 0;
  const bool byte_level = (data[0] & 1) == 0, add_special = (data[0] & 2) != 0;
  const gf::Tokenizer& tok = tokenizers[byte_level ? 0 : 1];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  gf::fuzz::expect_clean([&] {
    auto ids = tok.encode(text, add_special);
    for (int32_t id : ids) check(id >= 0 && id < tok.vocab_size(), "encode returned an id outside the vocab");
    (void)tok.decode(ids, true);
    // Without the template's BOS and keeping specials, byte-level BPE loses nothing.
    if (byte_level) {
      const std::string back = tok.decode(tok.encode(text, false), false);
      check(back == text, "byte-level decode(encode(text)) != text", back, text);
    }
  });
  // Arbitrary ids (some out of range: a gf::Error) decoded at once and streamed.
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < text.size(); i += 2) {
    int16_t v;
    std::memcpy(&v, text.data() + i, 2);
    ids.push_back(int32_t(v) % int32_t(tok.vocab_size() + 8));
  }
  gf::fuzz::expect_clean([&] {
    const std::string whole = tok.decode(ids, true);
    gf::Tokenizer::Stream stream(tok, true);
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    streamed += stream.flush();
    check(streamed == whole, "streamed text != decode(ids)", streamed, whole);
  });
  return 0;
}
