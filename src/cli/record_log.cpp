// --output's resumable record file and the SIGTERM stop flag.
#include "cli/record_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace gf {

RecordLog::RecordLog(const std::string& path) : path_(path) {
  std::string text;
  {
    std::ifstream in(path, std::ios::binary);
    if (in) text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // Only newline-terminated lines are records; anything after the last newline is a torn write.
  const size_t complete = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  std::istringstream lines(text.substr(0, complete));
  std::string line;
  for (int64_t n = 1; std::getline(lines, line); ++n) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    GF_CHECK(j.is_object() && j.contains("prompt_index") && j["prompt_index"].is_number_integer(), "--output ", path,
             ":", n, ": not a gptfast-tp record (expected a JSON object with prompt_index); use a new file");
    const int64_t sample = j.contains("sample") && j["sample"].is_number_integer() ? j["sample"].get<int64_t>() : -1;
    done_.insert({j["prompt_index"].get<int64_t>(), sample});
  }
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  GF_CHECK(fd_ >= 0, "--output ", path, ": cannot open for writing: ", std::strerror(errno));
  if (::ftruncate(fd_, off_t(complete)) != 0 || ::lseek(fd_, 0, SEEK_END) < 0) {
    const int e = errno;
    ::close(fd_);
    GF_FAIL("--output ", path, ": cannot drop the torn last line: ", std::strerror(e));
  }
}

RecordLog::~RecordLog() {
  if (fd_ >= 0) ::close(fd_);
}

void RecordLog::append(const std::string& json_line) {
  const std::string line = json_line + "\n";
  size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    GF_CHECK(n > 0, "--output ", path_, ": write failed: ", std::strerror(errno));
    off += size_t(n);
  }
  GF_CHECK(::fdatasync(fd_) == 0, "--output ", path_, ": fdatasync failed: ", std::strerror(errno));
}

namespace {
volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_sigterm(int) { g_stop = 1; }
}  // namespace

void install_stop_on_sigterm() {
  struct sigaction sa {};
  sa.sa_handler = on_sigterm;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() { return g_stop != 0; }

}  // namespace gf
