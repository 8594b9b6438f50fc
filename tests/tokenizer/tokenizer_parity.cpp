// tokenizer_parity EXPECTED.json...: checks gf::Tokenizer against ids and decodes that the Python
// `tokenizers` package produced (make_fixtures.py) for any tokenizer.json; exits non-zero on a
// mismatch.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  GF_CHECK(f, path, ": cannot open");
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string show(const std::string& s) {  // short, one-line, escaped
  nlohmann::json j = s.size() > 80 ? s.substr(0, 80) + "..." : s;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string first_diff(const std::vector<int32_t>& got, const std::vector<int32_t>& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  std::ostringstream o;
  o << "sizes " << got.size() << " vs " << want.size() << ", first difference at " << i;
  if (i < got.size()) o << " got " << got[i];
  if (i < want.size()) o << " want " << want[i];
  return o.str();
}

int failures = 0;
void fail(const std::string& file, const std::string& what) {
  if (++failures <= 30) std::cerr << file << ": " << what << "\n";
}

void check_stream(const gf::Tokenizer& tok, const std::string& file,
                  const std::vector<int32_t>& ids, const std::string& want,
                  const std::string& text) {
  gf::Tokenizer::Stream stream(tok, true);
  std::string got;
  for (int32_t id : ids) {
    std::string piece = stream.push(id);
    if (!piece.empty() && piece.find("\xEF\xBF\xBD") != std::string::npos &&
        want.find("\xEF\xBF\xBD") == std::string::npos)
      fail(file, "stream emitted U+FFFD for " + show(text));
    got += piece;
  }
  got += stream.flush();
  if (got != want)
    fail(file, "stream of " + show(text) + " gave " + show(got) + ", want " + show(want));
}

void check_file(const std::string& path) {
  const auto exp = nlohmann::json::parse(read_file(path));
  const std::string tok_path = exp.at("tokenizer");
  const gf::Tokenizer tok = gf::Tokenizer::from_json(read_file(tok_path), tok_path);
  if (tok.vocab_size() != exp.at("vocab_size").get<int64_t>())
    fail(path, "vocab_size " + std::to_string(tok.vocab_size()) + ", want " +
                   exp.at("vocab_size").dump());
  size_t n = 0;
  for (const auto& c : exp.at("cases")) {
    const std::string text = c.at("text");
    const auto want = c.at("ids").get<std::vector<int32_t>>();
    const auto want_plain = c.at("ids_plain").get<std::vector<int32_t>>();
    const auto got = tok.encode(text, true);
    const auto got_plain = tok.encode(text, false);
    if (got != want) fail(path, "encode " + show(text) + ": " + first_diff(got, want));
    if (got_plain != want_plain)
      fail(path, "encode (no specials) " + show(text) + ": " + first_diff(got_plain, want_plain));
    const std::string dec = tok.decode(want, false), dec_skip = tok.decode(want, true);
    if (dec != c.at("decoded").get<std::string>()) fail(path, "decode " + show(text) + " gave " + show(dec));
    if (dec_skip != c.at("decoded_skip").get<std::string>())
      fail(path, "decode (skip) " + show(text) + " gave " + show(dec_skip));
    check_stream(tok, path, want, c.at("decoded_skip"), text);
    ++n;
  }
  for (const auto& d : exp.at("decodes")) {
    const auto ids = d.at("ids").get<std::vector<int32_t>>();
    const std::string want = d.at("decoded"), want_skip = d.at("decoded_skip");
    if (tok.decode(ids, false) != want)
      fail(path, "decode " + nlohmann::json(ids).dump() + " gave " + show(tok.decode(ids, false)) +
                     ", want " + show(want));
    if (tok.decode(ids, true) != want_skip)
      fail(path,
           "decode (skip) " + nlohmann::json(ids).dump() + " gave " + show(tok.decode(ids, true)));
    if (want_skip.find("\xEF\xBF\xBD") == std::string::npos)
      check_stream(tok, path, ids, want_skip, "ids " + nlohmann::json(ids).dump());
    ++n;
  }
  std::cout << path << ": " << n << " cases checked\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: tokenizer_parity EXPECTED.json...\n";
    return 2;
  }
  try {
    for (int i = 1; i < argc; ++i) check_file(argv[i]);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  if (failures) std::cerr << failures << " mismatches\n";
  return failures ? 1 : 0;
}
