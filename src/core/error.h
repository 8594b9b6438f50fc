// The one error type of host code: a single line naming where, what and (where known) how to fix.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace gf {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, std::string hint = {})
      : std::runtime_error(what), hint_(std::move(hint)) {}
  const std::string& hint() const { return hint_; }

 private:
  std::string hint_;
};

namespace detail {
template <typename... Args>
std::string cat(Args&&... args) {
  std::ostringstream s;
  (s << ... << args);
  return s.str();
}
}  // namespace detail

}  // namespace gf

// Input validation that stays in release builds (never assert): GF_CHECK(n > 0, "file: field n must be > 0").
#define GF_CHECK(cond, ...)                                             \
  do {                                                                  \
    if (!(cond)) throw ::gf::Error(::gf::detail::cat(__VA_ARGS__));     \
  } while (0)
#define GF_FAIL(...) throw ::gf::Error(::gf::detail::cat(__VA_ARGS__))
// Internal invariants: names the expression and the source line.
#define GF_ASSERT(cond)                                                                        \
  do {                                                                                         \
    if (!(cond))                                                                               \
      throw ::gf::Error(::gf::detail::cat("internal error: ", #cond, " (", __FILE__, ":", __LINE__, ")")); \
  } while (0)
