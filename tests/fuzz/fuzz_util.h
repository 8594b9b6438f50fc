// Shared by the libFuzzer targets: a scratch directory for parsers that take paths, and the rule
// that a parser may reject input only with a gf::Error (anything else, or an internal error, is a bug).
#pragma once
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "core/error.h"

namespace gf::fuzz {

// One private directory per process, removed at exit (libFuzzer exits normally after -max_total_time).
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/gf_fuzz_XXXXXX";
    GF_CHECK(::mkdtemp(tmpl.data()), tmpl, ": mkdtemp failed");
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline const ScratchDir& scratch() {
  static ScratchDir dir;
  return dir;
}

inline void write_file(const std::filesystem::path& p, std::string_view bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  GF_CHECK(out.good(), p.string(), ": cannot write the fuzz input");
}

// Runs `body`; a gf::Error is the parser rejecting the input (fine), except an internal error, which
// means validation let something through that an invariant later caught: abort so libFuzzer saves it.
template <typename F>
void expect_clean(F&& body) {
  try {
    body();
  } catch (const gf::Error& e) {
    if (std::string_view(e.what()).starts_with("internal error")) {
      std::fprintf(stderr, "fuzz: %s\n", e.what());
      std::abort();
    }
  }
}

}  // namespace gf::fuzz
