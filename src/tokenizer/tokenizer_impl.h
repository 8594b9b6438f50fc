// Private: the parsed tokenizer.json pipeline (added tokens -> normalizer -> pre-tokenizer -> BPE
// -> post-processor; decoder chain), mirroring the `tokenizers` library step for step.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"

namespace gf {

// Heterogeneous lookup so string_views index the vocabulary without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct AddedToken {
  std::string content;  // as matched: normalized for a normalized token
  std::string written;  // as in the file (what token_to_id looks up)
  int32_t id = 0;
  bool special = false, lstrip = false, rstrip = false, single_word = false;
  bool normalized = false;  // matched in normalized text, its content normalized too
};

struct Normalizer {
  enum Kind { Prepend, Replace } kind;
  std::string from, to;  // Prepend: to; Replace: from -> to
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct PreTokenizer {
  enum Kind { ByteLevel, Split, Metaspace, Digits } kind;
  std::shared_ptr<Regex> regex;  // Split, Digits, ByteLevel with use_regex
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel
  std::string replacement;        // Metaspace
  enum Prepend { Always, Never, First } prepend = Always;
  bool split = false;  // Metaspace: split on the replacement
};

struct Decoder {
  enum Kind { ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace } kind;
  std::string from, to;  // Replace; Metaspace: from = replacement
  std::string content;   // Strip
  size_t start = 0, stop = 0;
  bool prepend = true;  // Metaspace: strip the first token's leading replacement
};

struct Bpe {
  Vocab vocab;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>>
      merges;  // (left << 32 | right) -> (rank, merged id)
  std::optional<int32_t> unk;
  bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
  std::vector<int32_t> byte_token;  // byte -> id of <0xNN>, -1 when absent (byte_fallback)

  // Appends the ids of one pre-tokenized word, as tokenizers' BPE::tokenize does.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;
};

struct Tokenizer::Impl {
  Bpe bpe;
  std::vector<std::string> id_to_token;  // dense: every id < vocab_size has a token
  std::vector<uint8_t> is_special;       // by id
  // Added tokens, longest first (leftmost-longest matching): those matched in the raw text, then
  // those matched in each normalized segment (content normalized), as tokenizers does.
  std::vector<AddedToken> added, added_normalized;
  std::vector<Normalizer> normalizers;
  std::vector<PreTokenizer> pre_tokenizers;
  std::vector<Decoder> decoders;
  bool has_decoder = false;
  // post-processor template for one sequence: ids before and after it
  std::vector<int32_t> prefix, suffix;

  std::string normalize(std::string_view text) const;
  // Normalizes a segment free of raw added tokens, then matches normalized added tokens,
  // pre-tokenizes and runs BPE on the rest.
  void encode_segment(std::string_view text, bool at_origin, std::vector<int32_t>& out) const;
  // The decoder chain; `raw` keeps invalid UTF-8 bytes (for streaming), `at_start` applies the
  // rules that only hold at the beginning of the text (Strip's leading cut, Metaspace's first
  // token).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special, bool raw,
                     bool at_start) const;
  bool byte_fallback_decoder = false;  // the decoder chain has ByteFallback
  // A "<0xNN>" token that the ByteFallback decoder turns into its byte.
  bool is_byte_token(int32_t id) const;
  // An id decode() keeps (known, and not a special token being skipped).
  bool visible(int32_t id, bool skip_special) const;
};

}  // namespace gf
