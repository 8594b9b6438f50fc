// UTF-8 helpers for the tokenizer: validation, lossy repair (as Rust's from_utf8_lossy) and the
// GPT-2 byte <-> printable-character table that byte-level BPE vocabularies are written in.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace gf::utf8 {

// Length of the valid (possibly incomplete) UTF-8 prefix starting at s[i], per Unicode Table 3-7;
// `complete` says whether it forms a whole character. 0 means s[i] cannot start a character.
inline size_t scan(std::string_view s, size_t i, bool& complete) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  complete = true;
  if (c < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF)
    need = 2;
  else if (c == 0xE0)
    need = 3, lo = 0xA0;
  else if (c == 0xED)
    need = 3, hi = 0x9F;
  else if (c >= 0xE1 && c <= 0xEF)
    need = 3;
  else if (c == 0xF0)
    need = 4, lo = 0x90;
  else if (c == 0xF4)
    need = 4, hi = 0x8F;
  else if (c >= 0xF1 && c <= 0xF3)
    need = 4;
  else
    return 0;
  size_t n = 1;
  for (; n < need; ++n) {
    if (i + n >= s.size()) {
      complete = false;
      return n;
    }
    const unsigned char x = b(i + n);
    const bool ok = n == 1 ? (x >= lo && x <= hi) : (x >= 0x80 && x <= 0xBF);
    if (!ok) {
      complete = false;
      return n;
    }
  }
  return n;
}

// Byte offset of the first invalid byte, or npos when s is valid UTF-8.
inline size_t first_invalid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    bool complete;
    const size_t n = scan(s, i, complete);
    if (n == 0 || !complete) return i;
    i += n;
  }
  return std::string_view::npos;
}

// Bytes at the end of s that begin a valid character still waiting for its remaining bytes.
inline size_t incomplete_tail(std::string_view s) {
  const size_t from = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = from; i < s.size(); ++i) {
    bool complete;
    const size_t n = scan(s, i, complete);
    if (n > 0 && !complete && i + n == s.size()) return n;
  }
  return 0;
}

// Valid UTF-8 with each maximal invalid subpart replaced by U+FFFD (what Rust's from_utf8_lossy
// does).
inline std::string lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    bool complete;
    const size_t n = scan(s, i, complete);
    if (n > 0 && complete) {
      out.append(s.substr(i, n));
    } else {
      out.append("\xEF\xBF\xBD");
    }
    i += n > 0 ? n : 1;
  }
  return out;
}

inline void append_codepoint(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes the character at s[i] (s valid UTF-8) and advances i.
inline uint32_t next_codepoint(std::string_view s, size_t& i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n && i + k < s.size(); ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

// GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the other 68 bytes
// are shifted to U+0100.. so every token is printable text.
struct ByteLevelTable {
  std::array<std::string, 256> byte_to_char;  // UTF-8 of the stand-in character
  std::array<int16_t, 0x144> char_to_byte;    // code point -> byte, -1 when not a stand-in

  ByteLevelTable() {
    char_to_byte.fill(-1);
    uint32_t shifted = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = printable ? b : 0x100 + shifted++;
      append_codepoint(byte_to_char[b], cp);
      char_to_byte[cp] = static_cast<int16_t>(b);
    }
  }
  static const ByteLevelTable& get() {
    static const ByteLevelTable t;
    return t;
  }
};

}  // namespace gf::utf8
