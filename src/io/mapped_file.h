// A read-only memory map of a whole file (RAII, move-only): how checkpoints are read lazily.
#pragma once
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include <xxhash.h>

#include "core/error.h"

namespace gf {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    GF_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      GF_FAIL(path, ": not a regular file");
    }
    size_ = uint64_t(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      int err = errno;
      ::close(fd);
      GF_CHECK(p != MAP_FAILED, path, ": mmap failed: ", std::strerror(err));
      data_ = static_cast<const uint8_t*>(p);
    } else {
      ::close(fd);
    }
  }
  MappedFile(MappedFile&& o) noexcept
      : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  MappedFile& operator=(MappedFile&& o) noexcept {
    if (this != &o) {
      unmap();
      path_ = std::move(o.path_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() { unmap(); }

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the whole pages inside [p, p + len) from this process (they stay in the page cache), so
  // streaming through a big file keeps the resident set at the chunk being worked on.
  void release(const uint8_t* p, uint64_t len) const {
    const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
    uint64_t b = (uint64_t(p - data_) + page - 1) / page * page, e = (uint64_t(p - data_) + len) / page * page;
    if (data_ && e > b) ::madvise(const_cast<uint8_t*>(data_) + b, e - b, MADV_DONTNEED);
  }

 private:
  void unmap() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = nullptr;
  }
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// xxh3-128 of a whole file as 32 hex digits (high 64 bits first): the manifest's content hash.
// Streamed with read() in 8 MB blocks, so hashing a 100 GB rank file costs 8 MB of memory.
inline std::string file_xxh3_128_hex(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  GF_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  XXH3_state_t* st = XXH3_createState();
  XXH3_128bits_reset(st);
  std::string block(8 << 20, 0);
  ssize_t n;
  while ((n = ::read(fd, block.data(), block.size())) > 0) XXH3_128bits_update(st, block.data(), size_t(n));
  int err = errno;
  ::close(fd);
  XXH128_hash_t h = XXH3_128bits_digest(st);
  XXH3_freeState(st);
  GF_CHECK(n == 0, path, ": read failed: ", std::strerror(err));
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return buf;
}

}  // namespace gf
