// Small I/O pieces of the CLI: prompt-file lines, UTF-8 checks, and the .npy writer for --logits-out.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gf {

constexpr size_t kMaxPromptBytes = 1 << 20;  // longer prompts are refused (RELIABILITY item 6)

bool valid_utf8(std::string_view s);
// Why `text` cannot be a prompt ("" when it can): invalid UTF-8, a NUL byte, over kMaxPromptBytes.
std::string prompt_problem(std::string_view text);

struct PromptLine {
  int64_t line = 0;  // 1-based line number in the file
  std::string text;
};
// Splits a prompt file into lines (LF or CRLF); blank lines are skipped, others kept verbatim.
std::vector<PromptLine> split_prompt_lines(const std::string& content);

// A little-endian float32 .npy (version 1.0) of shape (rows, cols), written under a temporary name
// and renamed, so a reader never sees half a file.
void write_npy(const std::string& path, const float* data, int64_t rows, int64_t cols);

}  // namespace gf
