// Tokenizer::from_json: parses and validates a Hugging Face tokenizer.json (BPE model; the
// normalizers, pre-tokenizers, decoders and post-processors Llama-family files use).
#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace gf {
namespace {

using json = nlohmann::json;

// GPT-2's split, what ByteLevel's use_regex applies.
constexpr const char* kGpt2Split =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr int64_t kMaxVocab = int64_t{1} << 24;

// Field access that names where/field in every error.
struct Reader {
  const std::string& where;

  const json& get(const json& obj, const std::string& path, const char* key) const {
    GF_CHECK(obj.is_object(), where, ": ", path, " must be an object");
    auto it = obj.find(key);
    GF_CHECK(it != obj.end(), where, ": ", path, path.empty() ? "" : ".", key, " is missing");
    return *it;
  }
  std::string str(const json& obj, const std::string& path, const char* key) const {
    const json& v = get(obj, path, key);
    GF_CHECK(v.is_string(), where, ": ", path, ".", key, " must be a string");
    return v.get<std::string>();
  }
  bool flag(const json& obj, const std::string& path, const char* key, bool dflt) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return dflt;
    GF_CHECK(it->is_boolean(), where, ": ", path, ".", key, " must be true or false");
    return it->get<bool>();
  }
  int64_t integer(const json& v, const std::string& path) const {
    GF_CHECK(v.is_number_integer(), where, ": ", path, " must be an integer");
    return v.get<int64_t>();
  }
  // A {"String": s} or {"Regex": r} pattern, as a PCRE2 pattern.
  std::string pattern(const json& obj, const std::string& path, bool* is_regex = nullptr) const {
    const json& p = get(obj, path, "pattern");
    if (p.is_object() && p.contains("Regex")) {
      if (is_regex) *is_regex = true;
      return str(p, path + ".pattern", "Regex");
    }
    if (is_regex) *is_regex = false;
    return str(p, path + ".pattern", "String");
  }
  std::string type(const json& obj, const std::string& path) const {
    return str(obj, path, "type");
  }
};

std::string regex_quote(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && static_cast<unsigned char>(c) < 0x80)
      out += '\\';
    out += c;
  }
  return out;
}

void parse_normalizer(const Reader& r, const json& n, const std::string& path, Tokenizer::Impl& t) {
  if (n.is_null()) return;
  const std::string type = r.type(n, path);
  if (type == "Sequence") {
    const json& list = r.get(n, path, "normalizers");
    GF_CHECK(list.is_array(), r.where, ": ", path, ".normalizers must be an array");
    for (size_t i = 0; i < list.size(); ++i)
      parse_normalizer(r, list[i], path + ".normalizers[" + std::to_string(i) + "]", t);
  } else if (type == "Prepend") {
    t.normalizers.push_back({Normalizer::Prepend, "", r.str(n, path, "prepend")});
  } else if (type == "Replace") {
    bool is_regex;
    std::string from = r.pattern(n, path, &is_regex);
    GF_CHECK(!is_regex, r.where, ": ", path,
             ".pattern: a Regex Replace normalizer is not supported (String only)");
    GF_CHECK(!from.empty(), r.where, ": ", path, ".pattern.String must not be empty");
    t.normalizers.push_back({Normalizer::Replace, from, r.str(n, path, "content")});
  } else {
    GF_FAIL(r.where, ": ", path, ".type '", type,
            "' is not a supported normalizer (Sequence, Prepend, Replace)");
  }
}

SplitBehavior parse_behavior(const Reader& r, const json& n, const std::string& path) {
  const std::string b = r.str(n, path, "behavior");
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  GF_FAIL(r.where, ": ", path, ".behavior '", b, "' is not a split behavior");
}

PreTokenizer::Prepend parse_prepend(const Reader& r, const json& n, const std::string& path) {
  if (n.contains("prepend_scheme")) {
    const std::string s = r.str(n, path, "prepend_scheme");
    if (s == "always") return PreTokenizer::Always;
    if (s == "never") return PreTokenizer::Never;
    if (s == "first") return PreTokenizer::First;
    GF_FAIL(r.where, ": ", path, ".prepend_scheme '", s, "' is not always/never/first");
  }
  return r.flag(n, path, "add_prefix_space", true) ? PreTokenizer::Always : PreTokenizer::Never;
}

void parse_pre_tokenizer(const Reader& r, const json& n, const std::string& path,
                         Tokenizer::Impl& t) {
  if (n.is_null()) return;
  const std::string type = r.type(n, path);
  PreTokenizer p{};
  if (type == "Sequence") {
    const json& list = r.get(n, path, "pretokenizers");
    GF_CHECK(list.is_array(), r.where, ": ", path, ".pretokenizers must be an array");
    for (size_t i = 0; i < list.size(); ++i)
      parse_pre_tokenizer(r, list[i], path + ".pretokenizers[" + std::to_string(i) + "]", t);
    return;
  } else if (type == "ByteLevel") {
    p.kind = PreTokenizer::ByteLevel;
    p.add_prefix_space = r.flag(n, path, "add_prefix_space", false);
    if (r.flag(n, path, "use_regex", true))
      p.regex = std::make_shared<Regex>(kGpt2Split, r.where + ": " + path);
  } else if (type == "Split") {
    p.kind = PreTokenizer::Split;
    bool is_regex;
    std::string pat = r.pattern(n, path, &is_regex);
    p.regex = std::make_shared<Regex>(is_regex ? pat : regex_quote(pat),
                                      r.where + ": " + path + ".pattern");
    p.behavior = parse_behavior(r, n, path);
    p.invert = r.flag(n, path, "invert", false);
  } else if (type == "Digits") {
    p.kind = PreTokenizer::Digits;
    const bool individual = r.flag(n, path, "individual_digits", false);
    p.regex = std::make_shared<Regex>(R"(\p{N})", r.where + ": " + path);
    p.behavior = individual ? SplitBehavior::Isolated : SplitBehavior::Contiguous;
  } else if (type == "Metaspace") {
    p.kind = PreTokenizer::Metaspace;
    p.replacement = r.str(n, path, "replacement");
    GF_CHECK(!p.replacement.empty(), r.where, ": ", path, ".replacement must not be empty");
    p.prepend = parse_prepend(r, n, path);
    p.split = r.flag(n, path, "split", true);
  } else {
    GF_FAIL(r.where, ": ", path, ".type '", type,
            "' is not a supported pre-tokenizer (Sequence, ByteLevel, Split, Digits, Metaspace)");
  }
  t.pre_tokenizers.push_back(std::move(p));
}

void parse_decoder(const Reader& r, const json& n, const std::string& path, Tokenizer::Impl& t) {
  if (n.is_null()) return;
  t.has_decoder = true;
  const std::string type = r.type(n, path);
  Decoder d{};
  if (type == "Sequence") {
    const json& list = r.get(n, path, "decoders");
    GF_CHECK(list.is_array(), r.where, ": ", path, ".decoders must be an array");
    for (size_t i = 0; i < list.size(); ++i)
      parse_decoder(r, list[i], path + ".decoders[" + std::to_string(i) + "]", t);
    return;
  } else if (type == "ByteLevel") {
    d.kind = Decoder::ByteLevel;
  } else if (type == "Replace") {
    d.kind = Decoder::Replace;
    bool is_regex;
    d.from = r.pattern(n, path, &is_regex);
    GF_CHECK(!is_regex && !d.from.empty(), r.where, ": ", path,
             ".pattern must be a non-empty String");
    d.to = r.str(n, path, "content");
  } else if (type == "ByteFallback") {
    d.kind = Decoder::ByteFallback;
    t.byte_fallback_decoder = true;
  } else if (type == "Fuse") {
    d.kind = Decoder::Fuse;
  } else if (type == "Strip") {
    d.kind = Decoder::Strip;
    d.content = r.str(n, path, "content");
    GF_CHECK(!d.content.empty(), r.where, ": ", path, ".content must not be empty");
    const int64_t start = r.integer(r.get(n, path, "start"), path + ".start");
    const int64_t stop = r.integer(r.get(n, path, "stop"), path + ".stop");
    GF_CHECK(start >= 0 && stop >= 0, r.where, ": ", path, ".start/.stop must be >= 0");
    d.start = static_cast<size_t>(start), d.stop = static_cast<size_t>(stop);
  } else if (type == "Metaspace") {
    d.kind = Decoder::Metaspace;
    d.from = r.str(n, path, "replacement");
    d.prepend = parse_prepend(r, n, path) != PreTokenizer::Never;
  } else {
    GF_FAIL(r.where, ": ", path, ".type '", type,
            "' is not a supported decoder (Sequence, ByteLevel, Replace, ByteFallback, Fuse, "
            "Strip, Metaspace)");
  }
  t.decoders.push_back(std::move(d));
}

void parse_post_processor(const Reader& r, const json& n, const std::string& path,
                          Tokenizer::Impl& t) {
  if (n.is_null()) return;
  const std::string type = r.type(n, path);
  if (type == "Sequence") {
    const json& list = r.get(n, path, "processors");
    GF_CHECK(list.is_array(), r.where, ": ", path, ".processors must be an array");
    for (size_t i = 0; i < list.size(); ++i)
      parse_post_processor(r, list[i], path + ".processors[" + std::to_string(i) + "]", t);
  } else if (type == "ByteLevel") {
    // Only trims offsets; ids are unchanged.
  } else if (type == "TemplateProcessing") {
    const json& single = r.get(n, path, "single");
    const json& specials = r.get(n, path, "special_tokens");
    GF_CHECK(single.is_array(), r.where, ": ", path, ".single must be an array");
    std::vector<int32_t> before, after;
    bool seen_a = false;
    for (size_t i = 0; i < single.size(); ++i) {
      const std::string ip = path + ".single[" + std::to_string(i) + "]";
      if (single[i].is_object() && single[i].contains("Sequence")) {
        seen_a = true;
        continue;
      }
      const std::string name =
          r.str(r.get(single[i], ip, "SpecialToken"), ip + ".SpecialToken", "id");
      const json& spec = r.get(specials, path + ".special_tokens", name.c_str());
      const json& ids = r.get(spec, path + ".special_tokens." + name, "ids");
      GF_CHECK(ids.is_array(), r.where, ": ", path, ".special_tokens.", name,
               ".ids must be an array");
      for (const json& id : ids) {
        const int64_t v = r.integer(id, path + ".special_tokens." + name + ".ids[]");
        GF_CHECK(v >= 0 && v < static_cast<int64_t>(t.id_to_token.size()), r.where, ": ", path,
                 ".special_tokens.", name, ".ids: id ", v, " is not below the vocab size ",
                 t.id_to_token.size());
        (seen_a ? after : before).push_back(static_cast<int32_t>(v));
      }
    }
    GF_CHECK(seen_a, r.where, ": ", path, ".single has no Sequence item");
    t.prefix.insert(t.prefix.begin(), before.begin(), before.end());
    t.suffix.insert(t.suffix.end(), after.begin(), after.end());
  } else {
    GF_FAIL(r.where, ": ", path, ".type '", type,
            "' is not a supported post-processor (Sequence, ByteLevel, TemplateProcessing)");
  }
}

// The BPE model's vocabulary and merges, and the added tokens; builds the dense id table.
void parse_model(const Reader& r, const json& root, Tokenizer::Impl& t) {
  const json& model = r.get(root, "", "model");
  GF_CHECK(model.is_object(), r.where, ": model must be an object");
  const std::string type = model.contains("type") ? r.type(model, "model") : "BPE";
  GF_CHECK(type == "BPE", r.where, ": model.type '", type, "' is not supported (expected BPE)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(k);
    GF_CHECK(
        it == model.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty()),
        r.where, ": model.", k, " is not supported (expected null)");
  }
  Bpe& bpe = t.bpe;
  bpe.byte_fallback = r.flag(model, "model", "byte_fallback", false);
  bpe.fuse_unk = r.flag(model, "model", "fuse_unk", false);
  bpe.ignore_merges = r.flag(model, "model", "ignore_merges", false);

  const json& vocab = r.get(model, "model", "vocab");
  GF_CHECK(vocab.is_object(), r.where, ": model.vocab must be an object of token -> id");
  GF_CHECK(static_cast<int64_t>(vocab.size()) < kMaxVocab, r.where, ": model.vocab has ",
           vocab.size(), " tokens, more than ", kMaxVocab);
  const json* added = root.contains("added_tokens") && !root["added_tokens"].is_null()
                          ? &root["added_tokens"]
                          : nullptr;
  GF_CHECK(!added || added->is_array(), r.where, ": added_tokens must be an array");
  // Ids are dense (one embedding row each), so every id is below the number of distinct tokens.
  const int64_t limit = static_cast<int64_t>(vocab.size() + (added ? added->size() : 0));
  std::vector<const std::string*> by_id;
  auto claim = [&](int64_t id, const std::string& tok, const std::string& field) {
    GF_CHECK(id >= 0 && id < limit, r.where, ": ", field, ": id ", id, " of '", tok,
             "' is not below the vocab size ", limit);
    if (by_id.size() <= static_cast<size_t>(id)) by_id.resize(id + 1, nullptr);
    if (by_id[id] && *by_id[id] == tok) return;
    GF_CHECK(!by_id[id], r.where, ": ", field, ": id ", id, " of '", tok, "' is already used by '",
             *by_id[id], "'");
    by_id[id] = &tok;
  };
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int64_t id = r.integer(it.value(), "model.vocab['" + it.key() + "']");
    claim(id, it.key(), "model.vocab");
    bpe.vocab.emplace(it.key(), static_cast<int32_t>(id));
  }

  for (size_t i = 0; added && i < added->size(); ++i) {
    const json& a = (*added)[i];
    const std::string path = "added_tokens[" + std::to_string(i) + "]";
    AddedToken tok;
    tok.content = tok.written = r.str(a, path, "content");
    GF_CHECK(!tok.content.empty(), r.where, ": ", path, ".content is empty");
    const int64_t id = r.integer(r.get(a, path, "id"), path + ".id");
    tok.special = r.flag(a, path, "special", false);
    tok.lstrip = r.flag(a, path, "lstrip", false);
    tok.rstrip = r.flag(a, path, "rstrip", false);
    tok.single_word = r.flag(a, path, "single_word", false);
    tok.normalized = r.flag(a, path, "normalized", !tok.special);
    tok.id = static_cast<int32_t>(id);
    t.added.push_back(std::move(tok));
  }
  for (size_t i = 0; i < t.added.size(); ++i)
    claim(t.added[i].id, t.added[i].content, "added_tokens[" + std::to_string(i) + "].id");

  // Dense ids: the embedding table has one row per id, so a hole means a broken file.
  for (size_t id = 0; id < by_id.size(); ++id)
    GF_CHECK(by_id[id], r.where, ": model.vocab: no token has id ", id, " but ids go up to ",
             by_id.size() - 1, " (ids must be below the vocab size)");
  t.id_to_token.reserve(by_id.size());
  for (const std::string* s : by_id) t.id_to_token.push_back(*s);
  t.is_special.assign(by_id.size(), 0);
  for (const AddedToken& a : t.added)
    if (a.special) t.is_special[a.id] = 1;

  if (model.contains("unk_token") && !model["unk_token"].is_null()) {
    const std::string unk = r.str(model, "model", "unk_token");
    auto it = bpe.vocab.find(unk);
    GF_CHECK(it != bpe.vocab.end(), r.where, ": model.unk_token '", unk, "' is not in model.vocab");
    bpe.unk = it->second;
  }
  if (bpe.byte_fallback) {
    bpe.byte_token.assign(256, -1);
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      if (auto it = bpe.vocab.find(std::string_view(name)); it != bpe.vocab.end())
        bpe.byte_token[b] = it->second;
    }
  }

  const json& merges = r.get(model, "model", "merges");
  GF_CHECK(merges.is_array(), r.where, ": model.merges must be an array");
  bpe.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    const std::string path = "model.merges[" + std::to_string(i) + "]";
    std::string a, b;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      GF_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos, r.where, ": ",
               path, " '", s, "' must be two tokens separated by one space");
      a = s.substr(0, sp), b = s.substr(sp + 1);
    } else {
      GF_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), r.where, ": ",
               path, " must be \"a b\" or [a, b]");
      a = m[0].get<std::string>(), b = m[1].get<std::string>();
    }
    auto ia = bpe.vocab.find(a), ib = bpe.vocab.find(b), im = bpe.vocab.find(a + b);
    GF_CHECK(ia != bpe.vocab.end(), r.where, ": ", path, ": '", a, "' is not in model.vocab");
    GF_CHECK(ib != bpe.vocab.end(), r.where, ": ", path, ": '", b, "' is not in model.vocab");
    GF_CHECK(im != bpe.vocab.end(), r.where, ": ", path, ": the merge result '", a + b,
             "' is not in model.vocab");
    const uint64_t key = (uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second);
    bpe.merges[key] = {static_cast<int32_t>(i),
                       im->second};  // a repeated pair takes the later rank, as tokenizers
  }
}

}  // namespace

Tokenizer Tokenizer::from_json(const std::string& text, const std::string& where) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    GF_FAIL(where, ": not valid JSON (", e.what(), ")");
  }
  GF_CHECK(root.is_object(), where, ": the top level must be a JSON object");
  const Reader r{where};
  auto impl = std::make_unique<Impl>();
  parse_model(r, root, *impl);
  auto section = [&](const char* key) -> const json& {
    static const json null;
    auto it = root.find(key);
    return it == root.end() ? null : *it;
  };
  parse_normalizer(r, section("normalizer"), "normalizer", *impl);
  parse_pre_tokenizer(r, section("pre_tokenizer"), "pre_tokenizer", *impl);
  parse_decoder(r, section("decoder"), "decoder", *impl);
  parse_post_processor(r, section("post_processor"), "post_processor", *impl);
  // Normalized added tokens are matched after normalization, so their content is normalized too.
  std::vector<AddedToken> raw;
  for (AddedToken& a : impl->added) {
    if (!a.normalized) {
      raw.push_back(std::move(a));
      continue;
    }
    a.content = impl->normalize(a.content);
    impl->id_to_token[a.id] = a.content;  // tokenizers decodes it as its normalized form
    impl->added_normalized.push_back(std::move(a));
  }
  impl->added = std::move(raw);
  for (auto* list : {&impl->added, &impl->added_normalized})
    std::stable_sort(list->begin(), list->end(), [](const AddedToken& a, const AddedToken& b) {
      return a.content.size() > b.content.size();
    });
  return Tokenizer(std::move(impl));
}

}  // namespace gf
