// The GPTFAST_* switches read from the environment (debugging, and opt-in paths until measured).
#pragma once
#include <cstdlib>
#include <string_view>

namespace gf {

// True when environment variable `name` is set to exactly `value`.
inline bool env_is(const char* name, std::string_view value) {
  const char* v = std::getenv(name);
  return v && value == v;
}

}  // namespace gf
