// PCRE2 wrapper: compile once, match many times without re-validating the subject.
#include "tokenizer/regex.h"

#include <pcre2.h>

#include <memory>

#include "core/error.h"

namespace gf {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

// Per-thread match state: a JIT stack big enough for long runs of one character class (the default
// 32 KiB is not), and a match limit so a pathological pattern from a file fails instead of hanging.
struct MatchState {
  pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, nullptr);
  MatchState() {
    pcre2_jit_stack_assign(ctx, nullptr, stack);
    pcre2_set_match_limit(ctx, 50'000'000);
  }
  ~MatchState() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(ctx);
  }
};

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& where) {
  int err = 0;
  PCRE2_SIZE off = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                        PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
  GF_CHECK(code_, where, ": regex does not compile at offset ", off, ": ", pcre2_message(err));
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(code_); }

void Regex::for_each_match(std::string_view s,
                           const std::function<void(size_t, size_t)>& on_match) const {
  thread_local MatchState state;
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;
  while (pos <= s.size()) {
    int rc = pcre2_match(code_, subject, s.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), state.ctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && jit_)  // fall back to the heap-based interpreter
      rc = pcre2_match(code_, subject, s.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md.get(),
                       state.ctx);
    if (rc == PCRE2_ERROR_NOMATCH) return;
    GF_CHECK(rc > 0, "tokenizer: pre-tokenizer regex failed on a ", s.size(),
             "-byte text: ", pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    const size_t b = ov[0], e = ov[1];
    on_match(b, e);
    if (e > pos) {
      pos = e;
    } else {  // empty match: step over one character
      if (pos >= s.size()) return;
      ++pos;
      while (pos < s.size() && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
}

}  // namespace gf
