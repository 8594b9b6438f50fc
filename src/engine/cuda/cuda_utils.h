// Host-side CUDA helpers of the engine: a checking macro and move-only RAII owners for streams,
// events, graphs, device and pinned memory.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "core/error.h"

// Throws gf::Error naming the call, the CUDA error and the source line (stays in release builds).
#define GF_CUDA_OK(expr)                                                                        \
  do {                                                                                         \
    cudaError_t gf_cuda_err_ = (expr);                                                         \
    if (gf_cuda_err_ != cudaSuccess)                                                           \
      throw ::gf::Error(::gf::detail::cat(#expr, " failed: ", cudaGetErrorString(gf_cuda_err_), \
                                          " (", __FILE__, ":", __LINE__, ")"));                \
  } while (0)

namespace gf::cuda {

// A unique owner of one handle with a destroy function; destroy errors are ignored (destructors
// must not throw, and a failed teardown after an error has nothing better to do).
template <class H, cudaError_t (*Destroy)(H)>
class Owned {
 public:
  Owned() = default;
  explicit Owned(H h) : h_(h) {}
  ~Owned() { reset(); }
  Owned(Owned&& o) noexcept : h_(std::exchange(o.h_, H{})) {}
  Owned& operator=(Owned&& o) noexcept {
    if (this != &o) { reset(); h_ = std::exchange(o.h_, H{}); }
    return *this;
  }
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  H get() const { return h_; }
  explicit operator bool() const { return h_ != H{}; }
  void reset() {
    if (h_ != H{}) Destroy(h_);
    h_ = H{};
  }

 private:
  H h_{};
};

using Graph = Owned<cudaGraph_t, cudaGraphDestroy>;
using GraphExec = Owned<cudaGraphExec_t, cudaGraphExecDestroy>;

inline cudaError_t destroy_stream(cudaStream_t s) { return cudaStreamDestroy(s); }
inline cudaError_t destroy_event(cudaEvent_t e) { return cudaEventDestroy(e); }
inline cudaError_t free_device(void* p) { return cudaFree(p); }
inline cudaError_t free_pinned(void* p) { return cudaFreeHost(p); }

class Stream : public Owned<cudaStream_t, destroy_stream> {
 public:
  Stream() = default;
  static Stream create() {
    cudaStream_t s;
    GF_CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));  // never syncs with stream 0
    return Stream(s);
  }

 private:
  explicit Stream(cudaStream_t s) : Owned(s) {}
};

class Event : public Owned<cudaEvent_t, destroy_event> {
 public:
  Event() = default;
  static Event create(bool timing = false) {
    cudaEvent_t e;
    GF_CUDA_OK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
    return Event(e);
  }

 private:
  explicit Event(cudaEvent_t e) : Owned(e) {}
};

// Device memory (cudaMalloc) or pinned host memory (cudaMallocHost), with its size.
template <cudaError_t (*Free)(void*), bool kPinned>
class Memory {
 public:
  Memory() = default;
  static Memory alloc(size_t bytes) {
    Memory m;
    if (bytes == 0) return m;
    if constexpr (kPinned) {
      GF_CUDA_OK(cudaMallocHost(&m.p_, bytes));
    } else {
      GF_CUDA_OK(cudaMalloc(&m.p_, bytes));
    }
    m.bytes_ = bytes;
    return m;
  }
  ~Memory() { if (p_) Free(p_); }
  Memory(Memory&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  Memory& operator=(Memory&& o) noexcept {
    if (this != &o) {
      if (p_) Free(p_);
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  Memory(const Memory&) = delete;
  Memory& operator=(const Memory&) = delete;
  template <class T = void>
  T* as() const { return static_cast<T*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};
using DeviceMemory = Memory<free_device, false>;
using PinnedMemory = Memory<free_pinned, true>;

// Device arrays carved out of one allocation start at this alignment (cudaMalloc's own).
inline size_t align_up(size_t n) { return (n + 255) / 256 * 256; }

}  // namespace gf::cuda
