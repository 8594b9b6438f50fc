// A compiled PCRE2 pattern (UTF + UCP, JIT where available) for pre-tokenizer splits. Never
// std::regex: it recurses per character and a long prompt overflows the stack.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

struct pcre2_real_code_8;

namespace gf {

class Regex {
 public:
  // `where` names the file and field for a pattern that does not compile.
  Regex(const std::string& pattern, const std::string& where);
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  ~Regex();

  // Calls on_match(begin, end) for each non-overlapping match in s, left to right (byte offsets).
  // s must be valid UTF-8 (checked by the caller once per prompt, not per call).
  void for_each_match(std::string_view s,
                      const std::function<void(size_t, size_t)>& on_match) const;

 private:
  pcre2_real_code_8* code_ = nullptr;
  bool jit_ = false;
};

}  // namespace gf
