// Encode (added tokens, normalizer, pre-tokenizer, BPE, post-processor), decode (the decoder chain)
// and streaming decode, following the `tokenizers` library's semantics step for step.
#include <algorithm>
#include <cctype>
#include <cstdio>

#include "core/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace gf {
namespace {

struct Piece {
  std::string text;
  bool at_origin;  // begins at offset 0 of the original text (Metaspace's prepend_scheme "first")
};

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  out.append(s, pos);
  s = std::move(out);
}

// tokenizers' NormalizedString::split: matches and the gaps between them, grouped by `behavior`,
// empty pieces dropped. `matches` are sorted, non-overlapping [begin, end) byte ranges.
void split_piece(const Piece& p, const std::vector<std::pair<size_t, size_t>>& matches,
                 SplitBehavior behavior, bool invert, std::vector<Piece>& out) {
  struct Part {
    size_t b, e;
    bool match;
  };
  std::vector<Part> parts;
  size_t prev = 0;
  for (auto [b, e] : matches) {
    if (b > prev) parts.push_back({prev, b, invert});
    parts.push_back({b, e, !invert});
    prev = e;
  }
  if (prev < p.text.size() || p.text.empty()) parts.push_back({prev, p.text.size(), invert});

  std::vector<Part> kept;
  switch (behavior) {
    case SplitBehavior::Isolated:
      kept = std::move(parts);
      break;
    case SplitBehavior::Removed:
      for (const Part& x : parts)
        if (!x.match) kept.push_back(x);
      break;
    case SplitBehavior::Contiguous: {
      bool prev_match = false;
      for (const Part& x : parts) {
        if (!kept.empty() && x.match == prev_match)
          kept.back().e = x.e;
        else
          kept.push_back(x);
        prev_match = x.match;
      }
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      bool prev_match = false;
      for (const Part& x : parts) {
        if (x.match && !prev_match && !kept.empty())
          kept.back().e = x.e;
        else
          kept.push_back(x);
        prev_match = x.match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool prev_match = false;
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->match && !prev_match && !kept.empty())
          kept.back().b = it->b;
        else
          kept.push_back(*it);
        prev_match = it->match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    }
  }
  for (const Part& x : kept)
    if (x.e > x.b) out.push_back({p.text.substr(x.b, x.e - x.b), p.at_origin && x.b == 0});
}

std::vector<std::pair<size_t, size_t>> regex_matches(const Regex& re, std::string_view s) {
  std::vector<std::pair<size_t, size_t>> m;
  re.for_each_match(s, [&](size_t b, size_t e) { m.emplace_back(b, e); });
  return m;
}

std::vector<Piece> pre_tokenize(const PreTokenizer& pt, std::vector<Piece> pieces) {
  std::vector<Piece> out;
  for (Piece& p : pieces) {
    switch (pt.kind) {
      case PreTokenizer::Split:
      case PreTokenizer::Digits:
        split_piece(p, regex_matches(*pt.regex, p.text), pt.behavior, pt.invert, out);
        break;
      case PreTokenizer::ByteLevel: {
        if (pt.add_prefix_space && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, 1, ' ');
        const size_t first = out.size();
        if (pt.regex)
          split_piece(p, regex_matches(*pt.regex, p.text), SplitBehavior::Isolated, false, out);
        else if (!p.text.empty())
          out.push_back(p);
        const auto& table = utf8::ByteLevelTable::get();
        for (size_t i = first; i < out.size(); ++i) {
          std::string mapped;
          for (unsigned char c : out[i].text) mapped += table.byte_to_char[c];
          out[i].text = std::move(mapped);
        }
        break;
      }
      case PreTokenizer::Metaspace: {
        replace_all(p.text, " ", pt.replacement);
        const bool starts = p.text.compare(0, pt.replacement.size(), pt.replacement) == 0;
        const bool prepend = pt.prepend == PreTokenizer::Always ||
                             (pt.prepend == PreTokenizer::First && p.at_origin);
        if (prepend && !starts && !p.text.empty()) p.text.insert(0, pt.replacement);
        if (!pt.split) {
          if (!p.text.empty()) out.push_back(std::move(p));
          break;
        }
        std::vector<std::pair<size_t, size_t>> m;
        for (size_t pos = 0; (pos = p.text.find(pt.replacement, pos)) != std::string::npos;
             pos += pt.replacement.size())
          m.emplace_back(pos, pos + pt.replacement.size());
        split_piece(p, m, SplitBehavior::MergedWithNext, false, out);
        break;
      }
    }
  }
  return out;
}

bool is_space(uint32_t cp) {  // Rust's char::is_whitespace (Unicode White_Space)
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Word characters for single_word: ASCII alphanumerics, '_' and (approximately) any non-ASCII
// letter.
bool is_word_char(uint32_t cp) {
  return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
         cp == '_' || (cp >= 0x80 && !is_space(cp));
}

uint32_t last_codepoint(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return utf8::next_codepoint(s, i);
}

struct Segment {
  size_t b, e;
  int32_t added;  // id of the added token, -1 for text to tokenize
};

// tokenizers' AddedVocabulary::find_matches: leftmost-longest matches of the added tokens, filtered
// by single_word and widened by lstrip/rstrip, with the text between them.
std::vector<Segment> split_added(const std::vector<AddedToken>& added, std::string_view text) {
  struct Hit {
    size_t b, len, tok;
  };
  std::vector<Hit> hits;
  for (size_t t = 0; t < added.size(); ++t)
    for (size_t pos = 0; (pos = text.find(added[t].content, pos)) != std::string_view::npos; ++pos)
      hits.push_back({pos, added[t].content.size(), t});
  std::sort(hits.begin(), hits.end(),
            [](const Hit& a, const Hit& b) { return a.b != b.b ? a.b < b.b : a.len > b.len; });

  std::vector<Segment> segs;
  size_t done = 0,
         scan_end = 0;  // done: text consumed; scan_end: end of the last leftmost-longest hit
  for (const Hit& h : hits) {
    if (h.b < scan_end) continue;
    scan_end = h.b + h.len;
    const AddedToken& tok = added[h.tok];
    size_t b = h.b, e = h.b + h.len;
    if (b < done) continue;  // inside a previous token's rstrip
    if (tok.single_word) {
      const bool start_ok = b == 0 || !is_word_char(last_codepoint(text.substr(0, b)));
      size_t k = e;
      const bool end_ok = e == text.size() || !is_word_char(utf8::next_codepoint(text, k));
      if (!start_ok || !end_ok) continue;
    }
    if (tok.lstrip)
      while (b > done && is_space(last_codepoint(text.substr(0, b)))) {
        --b;
        while (b > done && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
      }
    if (tok.rstrip)
      for (size_t k = e; k < text.size() && is_space(utf8::next_codepoint(text, k));) e = k;
    if (done < b) segs.push_back({done, b, -1});
    segs.push_back({b, e, tok.id});
    done = e;
  }
  if (done < text.size() || text.empty()) segs.push_back({done, text.size(), -1});
  return segs;
}

}  // namespace

std::string Tokenizer::Impl::normalize(std::string_view text) const {
  std::string s(text);
  for (const Normalizer& n : normalizers) {
    if (n.kind == Normalizer::Prepend) {
      if (!s.empty()) s.insert(0, n.to);
    } else {
      replace_all(s, n.from, n.to);
    }
  }
  return s;
}

void Tokenizer::Impl::encode_segment(std::string_view text, bool at_origin,
                                     std::vector<int32_t>& out) const {
  const std::string s = normalize(text);
  for (const Segment& seg : split_added(added_normalized, s)) {
    if (seg.added >= 0) {
      out.push_back(seg.added);
      continue;
    }
    std::vector<Piece> pieces{{s.substr(seg.b, seg.e - seg.b), at_origin && seg.b == 0}};
    for (const PreTokenizer& pt : pre_tokenizers) pieces = pre_tokenize(pt, std::move(pieces));
    for (const Piece& p : pieces) bpe.tokenize(p.text, out);
  }
}

// "<0xNN>": a byte-fallback token's text and its byte.
static bool byte_fallback_value(const std::string& t, unsigned* v) {
  return t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
         std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4])) &&
         std::sscanf(t.c_str() + 3, "%2x", v) == 1;
}

bool Tokenizer::Impl::is_byte_token(int32_t id) const {
  unsigned v;
  return byte_fallback_decoder && id >= 0 && id < static_cast<int32_t>(id_to_token.size()) &&
         byte_fallback_value(id_to_token[id], &v);
}

bool Tokenizer::Impl::visible(int32_t id, bool skip_special) const {
  return id >= 0 && id < static_cast<int32_t>(id_to_token.size()) && !(skip_special && is_special[id]);
}

std::string Tokenizer::Impl::decode(const std::vector<int32_t>& ids, bool skip_special, bool raw,
                                    bool at_start) const {
  std::vector<std::string> toks;
  for (int32_t id : ids) {
    // Unknown ids are dropped, as tokenizers does (a model's padded vocabulary may produce them).
    if (id < 0 || id >= static_cast<int32_t>(id_to_token.size())) continue;
    if (skip_special && is_special[id]) continue;
    toks.push_back(id_to_token[id]);
  }
  if (!has_decoder) {
    std::string out;
    for (size_t i = 0; i < toks.size(); ++i) out += (i ? " " : "") + toks[i];
    return out;
  }
  bool fused = false;  // the list is one string holding the whole text
  for (const Decoder& d : decoders) {
    switch (d.kind) {
      case Decoder::ByteLevel: {
        const auto& table = utf8::ByteLevelTable::get();
        std::string bytes;
        for (const std::string& t : toks) {
          std::string b;
          bool mapped = true;
          for (size_t i = 0; i < t.size() && mapped;) {
            const uint32_t cp = utf8::next_codepoint(t, i);
            const int v = cp < table.char_to_byte.size() ? table.char_to_byte[cp] : -1;
            if (v < 0)
              mapped = false;
            else
              b += static_cast<char>(v);
          }
          bytes += mapped ? b : t;  // a token outside the alphabet stands for its own bytes
        }
        toks = {raw ? bytes : utf8::lossy(bytes)};
        fused = true;
        break;
      }
      case Decoder::Replace:
        for (std::string& t : toks) replace_all(t, d.from, d.to);
        break;
      case Decoder::ByteFallback: {
        std::vector<std::string> out;
        std::string run;
        auto flush_run = [&] {
          if (run.empty()) return;
          if (raw || utf8::first_invalid(run) == std::string::npos)
            out.push_back(run);
          else
            for (size_t i = 0; i < run.size(); ++i) out.push_back("\xEF\xBF\xBD");
          run.clear();
        };
        for (std::string& t : toks) {
          unsigned v;
          if (byte_fallback_value(t, &v)) {
            run += static_cast<char>(v);
          } else {
            flush_run();
            out.push_back(std::move(t));
          }
        }
        flush_run();
        toks = std::move(out);
        break;
      }
      case Decoder::Fuse: {
        std::string all;
        for (const std::string& t : toks) all += t;
        toks = {all};
        fused = true;
        break;
      }
      case Decoder::Strip:
        for (size_t i = 0; i < toks.size(); ++i) {
          std::string& t = toks[i];
          size_t b = 0, e = t.size();
          const bool lead = at_start || !fused || i > 0;
          for (size_t k = 0; lead && k < d.start && t.compare(b, d.content.size(), d.content) == 0;
               ++k)
            b += d.content.size();
          for (size_t k = 0; k < d.stop && e >= b + d.content.size() &&
                             t.compare(e - d.content.size(), d.content.size(), d.content) == 0;
               ++k)
            e -= d.content.size();
          t = t.substr(b, e - b);
        }
        break;
      case Decoder::Metaspace:
        for (size_t i = 0; i < toks.size(); ++i)
          replace_all(toks[i], d.from, i == 0 && d.prepend && at_start ? "" : " ");
        break;
    }
  }
  std::string out;
  for (const std::string& t : toks) out += t;
  return raw ? out : utf8::lossy(out);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const size_t bad = utf8::first_invalid(text);
  GF_CHECK(bad == std::string_view::npos, "tokenizer: text is not valid UTF-8 at byte ", bad,
           " of ", text.size());
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = impl_->prefix;
  for (const Segment& s : split_added(impl_->added, text)) {
    if (s.added >= 0)
      ids.push_back(s.added);
    else
      impl_->encode_segment(text.substr(s.b, s.e - s.b), s.b == 0, ids);
  }
  if (add_special_tokens) ids.insert(ids.end(), impl_->suffix.begin(), impl_->suffix.end());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return impl_->decode(ids, skip_special_tokens, false, true);
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_to_token.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  for (const auto* list : {&impl_->added, &impl_->added_normalized})
    for (const AddedToken& a : *list)
      if (a.written == token) return a.id;
  if (auto it = impl_->bpe.vocab.find(token); it != impl_->bpe.vocab.end()) return it->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  GF_CHECK(id >= 0 && id < vocab_size(), "tokenizer: id ", id, " is outside the vocabulary (size ",
           vocab_size(), ")");
  return impl_->id_to_token[id];
}

// The pending window is decoded with the start-of-text rules only until a visible token has been
// emitted; bytes of a character still arriving stay in the window. A run of byte-fallback tokens is
// held whole until a visible token ends it: decode() turns every byte of a run that is not valid UTF-8
// into U+FFFD (as HF's ByteFallback), so a prefix streamed early could later be wrong.
std::string Tokenizer::Stream::push(int32_t id) {
  ids_.push_back(id);
  const Impl& im = *t_.impl_;
  auto last_visible = std::find_if(ids_.rbegin(), ids_.rend(), [&](int32_t i) { return im.visible(i, skip_); });
  if (last_visible != ids_.rend() && im.is_byte_token(*last_visible)) return "";
  const bool has_run = std::any_of(ids_.begin(), ids_.end(), [&](int32_t i) { return im.is_byte_token(i); });
  // With a finished run, the window decodes exactly as decode() would (invalid runs included).
  const std::string raw = im.decode(ids_, skip_, /*raw=*/!has_run, !started_);
  const size_t keep = has_run ? raw.size() : raw.size() - utf8::incomplete_tail(raw);
  std::string out = keep > emitted_ ? std::string(std::string_view(raw).substr(emitted_, keep - emitted_)) : "";
  if (!has_run) out = utf8::lossy(out);
  emitted_ = std::max(emitted_, keep);
  if (keep == raw.size()) {
    for (int32_t i : ids_)
      if (im.visible(i, skip_)) started_ = true;
    ids_.clear();
    emitted_ = 0;
  }
  return out;
}

std::string Tokenizer::Stream::flush() {
  const Impl& im = *t_.impl_;
  const bool has_run = std::any_of(ids_.begin(), ids_.end(), [&](int32_t i) { return im.is_byte_token(i); });
  const std::string raw = im.decode(ids_, skip_, /*raw=*/!has_run, !started_);
  std::string out = raw.size() > emitted_ ? std::string(std::string_view(raw).substr(emitted_)) : "";
  ids_.clear();
  emitted_ = 0;
  return has_run ? out : utf8::lossy(out);
}

}  // namespace gf
