// Prompt lines, UTF-8 validation and the .npy writer (see text_io.h).
#include "cli/text_io.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace gf {

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = p[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > n) return false;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

std::string prompt_problem(std::string_view text) {
  if (text.size() > kMaxPromptBytes)
    return "prompt of " + std::to_string(text.size()) + " bytes exceeds the limit of " + std::to_string(kMaxPromptBytes);
  if (text.find('\0') != std::string_view::npos) return "prompt contains a NUL byte";
  if (!valid_utf8(text)) return "prompt is not valid UTF-8";
  return {};
}

std::vector<PromptLine> split_prompt_lines(const std::string& content) {
  std::vector<PromptLine> out;
  int64_t line = 0;
  for (size_t b = 0; b < content.size();) {
    size_t e = content.find('\n', b);
    if (e == std::string::npos) e = content.size();
    ++line;
    std::string text = content.substr(b, e - b);
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (!text.empty()) out.push_back({line, std::move(text)});
    b = e + 1;
  }
  return out;
}

void write_npy(const std::string& path, const float* data, int64_t rows, int64_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                       std::to_string(cols) + "), }";
  // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64 bytes.
  const size_t total = (10 + header.size() + 1 + 63) / 64 * 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header.push_back('\n');
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    GF_CHECK(f, "--logits-out: cannot write '", tmp, "'");
    const uint16_t hlen = uint16_t(header.size());
    f.write("\x93NUMPY\x01\x00", 8);
    const char len_le[2] = {char(hlen & 0xff), char(hlen >> 8)};
    f.write(len_le, 2);
    f.write(header.data(), std::streamsize(header.size()));
    f.write(reinterpret_cast<const char*>(data), std::streamsize(rows * cols * sizeof(float)));
    f.flush();
    GF_CHECK(f, "--logits-out: writing '", tmp, "' failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  GF_CHECK(!ec, "--logits-out: cannot rename '", tmp, "' to '", path, "': ", ec.message());
}

}  // namespace gf
