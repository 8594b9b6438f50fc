// tokenizer.ggml.* -> tokenizer.json, producing the structures HF's own converters write for the
// same models (GPT-2 / SmolLM2 / Llama 3 byte-level BPE; Llama 2 SentencePiece BPE).
#include "sharding/gguf_tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/error.h"

namespace gf {
namespace {

using Json = nlohmann::ordered_json;

// llama.cpp token types (tokenizer.ggml.token_type).
constexpr int64_t kUnknown = 2, kControl = 3, kUserDefined = 4;

const char* const kSpecialIdKeys[] = {"bos",       "eos", "unknown", "padding", "seperator",
                                      "separator", "cls", "mask",    "eot",     "eom"};

// Llama 3's pre-tokenizer split (tokenizer.ggml.pre = llama-bpe), as in its tokenizer.json.
const char* const kLlama3Split =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

Json byte_level(bool add_prefix_space, bool use_regex) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", add_prefix_space},
          {"trim_offsets", true},
          {"use_regex", use_regex}};
}

// BOS (and EOS) around each sequence, as HF writes for Llama 2 / Llama 3.
Json template_processing(const std::vector<std::string_view>& tokens, std::optional<int64_t> bos,
                         std::optional<int64_t> eos) {
  Json single = Json::array(), pair = Json::array(), specials = Json::object();
  auto special = [&](int64_t id) {
    std::string t(tokens[size_t(id)]);
    specials[t] = {{"id", t}, {"ids", {id}}, {"tokens", {t}}};
    return Json{{"SpecialToken", {{"id", t}, {"type_id", 0}}}};
  };
  auto seq = [](const char* id, int type_id) {
    return Json{{"Sequence", {{"id", id}, {"type_id", type_id}}}};
  };
  for (int part = 0; part < 2; ++part) {
    Json& out = part == 0 ? single : pair;
    for (int s = 0; s <= part; ++s) {
      if (bos) out.push_back(special(*bos));
      out.push_back(seq(s == 0 ? "A" : "B", s));
      if (eos) out.push_back(special(*eos));
    }
  }
  return {{"type", "TemplateProcessing"},
          {"single", single},
          {"pair", pair},
          {"special_tokens", specials}};
}

// Code-point boundaries of a UTF-8 string (byte offsets, excluding 0 and size).
std::vector<size_t> char_boundaries(std::string_view s) {
  std::vector<size_t> b;
  for (size_t i = 1; i < s.size(); ++i)
    if ((uint8_t(s[i]) & 0xC0) != 0x80) b.push_back(i);
  return b;
}

// SentencePiece scores -> BPE merges, as HF's SentencePieceExtractor: every split of a piece into
// two vocab pieces is a merge ranked by the merged piece's score (higher first), ties by ids.
Json spm_merges(const std::vector<std::string_view>& tokens, const std::vector<float>& scores,
                const std::unordered_map<std::string_view, int64_t>& vocab) {
  struct Merge {
    int64_t l, r;
    float score;
  };
  std::vector<Merge> merges;
  for (size_t id = 0; id < tokens.size(); ++id) {
    std::string_view piece = tokens[id];
    size_t first = merges.size();
    for (size_t cut : char_boundaries(piece)) {
      auto l = vocab.find(piece.substr(0, cut)), r = vocab.find(piece.substr(cut));
      if (l != vocab.end() && r != vocab.end())
        merges.push_back({l->second, r->second, scores[id]});
    }
    std::sort(merges.begin() + first, merges.end(),
              [](const Merge& a, const Merge& b) { return a.l != b.l ? a.l < b.l : a.r < b.r; });
  }
  std::stable_sort(merges.begin(), merges.end(),
                   [](const Merge& a, const Merge& b) { return a.score > b.score; });
  Json out = Json::array();
  for (const Merge& m : merges)
    out.push_back(std::string(tokens[m.l]) + " " + std::string(tokens[m.r]));
  return out;
}

}  // namespace

void check_gguf_special_ids(const GgufFile& f) {
  const int64_t n_vocab = int64_t(f.get_strings("tokenizer.ggml.tokens").size());
  for (const char* name : kSpecialIdKeys) {
    std::string key = std::string("tokenizer.ggml.") + name + "_token_id";
    if (auto id = f.get_int_opt(key))
      GF_CHECK(*id >= 0 && *id < n_vocab, f.path(), ": GGUF '", key, "' = ", *id,
               " is outside the vocab [0, ", n_vocab, ")");
  }
}

std::string gguf_tokenizer_json(const GgufFile& f) {
  const std::string model(f.get_string("tokenizer.ggml.model"));
  const auto& tokens = f.get_strings("tokenizer.ggml.tokens");
  std::vector<int64_t> types(tokens.size(), 1);
  if (f.find("tokenizer.ggml.token_type")) {
    types = f.get_ints("tokenizer.ggml.token_type");
    GF_CHECK(types.size() == tokens.size(), f.path(), ": GGUF 'tokenizer.ggml.token_type' has ",
             types.size(), " entries, expected one per token (", tokens.size(), ")");
  }
  check_gguf_special_ids(f);
  auto bos = f.get_int_opt("tokenizer.ggml.bos_token_id");
  auto eos = f.get_int_opt("tokenizer.ggml.eos_token_id");
  auto unk = f.get_int_opt("tokenizer.ggml.unknown_token_id");

  // A repeated piece keeps its last id, as HF's dicts do. The object is built in one go in id order
  // (ordered_json's per-key insert is a linear search).
  std::unordered_map<std::string_view, int64_t> index;
  for (size_t i = 0; i < tokens.size(); ++i) index[tokens[i]] = int64_t(i);
  std::vector<std::pair<const std::string, Json>> entries;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (index[tokens[i]] == int64_t(i)) entries.emplace_back(std::string(tokens[i]), int64_t(i));
  Json vocab = Json::object_t(entries.begin(), entries.end());
  Json added = Json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (types[i] != kControl && types[i] != kUserDefined && types[i] != kUnknown) continue;
    added.push_back({{"id", int64_t(i)},
                     {"content", std::string(tokens[i])},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", types[i] != kUserDefined}});
  }

  Json j = {
      {"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added}};
  Json bpe = {{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr},
              {"fuse_unk", false},
              {"byte_fallback", false},
              {"ignore_merges", false}};
  if (model == "gpt2") {
    const std::string pre(f.get_string_opt("tokenizer.ggml.pre").value_or("default"));
    bool add_bos = f.get_bool_opt("tokenizer.ggml.add_bos_token").value_or(pre == "llama-bpe");
    if (pre == "smollm") {
      j["normalizer"] = nullptr;
      j["pre_tokenizer"] = {
          {"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(false, true)}}};
    } else if (pre == "gpt2" || pre == "default") {
      j["normalizer"] = nullptr;
      j["pre_tokenizer"] = byte_level(false, true);
    } else if (pre == "llama-bpe") {
      j["normalizer"] = nullptr;
      j["pre_tokenizer"] = {{"type", "Sequence"},
                            {"pretokenizers",
                             {{{"type", "Split"},
                               {"pattern", {{"Regex", kLlama3Split}}},
                               {"behavior", "Isolated"},
                               {"invert", false}},
                              byte_level(false, false)}}};
    } else {
      GF_FAIL(f.path(), ": GGUF 'tokenizer.ggml.pre' is '", pre,
              "', expected smollm, gpt2 or llama-bpe");
    }
    j["post_processor"] =
        add_bos && bos ? template_processing(tokens, bos, std::nullopt) : byte_level(true, true);
    j["decoder"] = byte_level(true, true);
    bpe["ignore_merges"] = pre == "llama-bpe";  // Llama 3 looks whole words up before merging
    bpe["vocab"] = std::move(vocab);
    Json merges = Json::array();
    for (std::string_view m : f.get_strings("tokenizer.ggml.merges"))
      merges.push_back(std::string(m));
    bpe["merges"] = std::move(merges);
  } else if (model == "llama") {
    std::vector<float> scores = f.get_floats("tokenizer.ggml.scores");
    GF_CHECK(scores.size() == tokens.size(), f.path(), ": GGUF 'tokenizer.ggml.scores' has ",
             scores.size(), " entries, expected one per token (", tokens.size(), ")");
    bool prefix = f.get_bool_opt("tokenizer.ggml.add_space_prefix").value_or(true);
    bool add_bos = f.get_bool_opt("tokenizer.ggml.add_bos_token").value_or(true);
    bool add_eos = f.get_bool_opt("tokenizer.ggml.add_eos_token").value_or(false);
    Json norms = Json::array();
    if (prefix) norms.push_back({{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}});
    norms.push_back(
        {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}});
    j["normalizer"] = {{"type", "Sequence"}, {"normalizers", norms}};
    j["pre_tokenizer"] = nullptr;
    j["post_processor"] =
        template_processing(tokens, add_bos ? bos : std::nullopt, add_eos ? eos : std::nullopt);
    Json decoders = {
        {{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
        {{"type", "ByteFallback"}},
        {{"type", "Fuse"}}};
    if (prefix)
      decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    j["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
    if (unk) bpe["unk_token"] = std::string(tokens[size_t(*unk)]);
    bpe["fuse_unk"] = true;
    bpe["byte_fallback"] = true;
    bpe["vocab"] = std::move(vocab);
    bpe["merges"] = spm_merges(tokens, scores, index);
  } else {
    GF_FAIL(f.path(), ": GGUF 'tokenizer.ggml.model' is '", model, "', expected gpt2 or llama");
  }
  j["model"] = std::move(bpe);
  try {
    return j.dump();
  } catch (const nlohmann::json::exception& e) {  // a token that is not valid UTF-8
    GF_FAIL(f.path(), ": GGUF tokenizer cannot be written as tokenizer.json: ", e.what());
  }
}

}  // namespace gf
