// One-shot all-reduce over CUDA IPC peer memory for decode-sized bf16 messages within a node:
// copy in, flag the peers, wait for theirs, sum all ranks' buffers in rank order. One kernel, no host work.
#include <cuda_bf16.h>

#include "kernels/cuda/allreduce_oneshot.h"
#include "kernels/cuda/launch.cuh"

namespace gf::cuda {
namespace {

constexpr int kThreads = 512;

// System-scope release/acquire: the flag store orders the block's data stores (made visible to it by
// __syncthreads) before it for any peer GPU; the flag load orders the peer's data before our reads.
__device__ __forceinline__ void store_release_sys(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ uint32_t load_acquire_sys(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ uint32_t* flags_of(char* base) { return reinterpret_cast<uint32_t*>(base); }

// Eight bf16 of x at vector v, zero-padded past n.
__device__ __forceinline__ uint4 load_x(const bf16* x, int64_t v, int64_t n) {
  if ((v + 1) * 8 <= n) return *reinterpret_cast<const uint4*>(x + v * 8);
  uint4 r = make_uint4(0, 0, 0, 0);
  auto* h = reinterpret_cast<uint16_t*>(&r);
  const auto* xs = reinterpret_cast<const uint16_t*>(x);
  for (int64_t i = v * 8; i < n; ++i) h[i - v * 8] = xs[i];
  return r;
}

__device__ __forceinline__ void store_x(bf16* x, int64_t v, int64_t n, const float (&acc)[8]) {
  uint4 r;
  auto* h = reinterpret_cast<bf16*>(&r);
#pragma unroll
  for (int k = 0; k < 8; ++k) h[k] = __float2bfloat16_rn(acc[k]);
  if ((v + 1) * 8 <= n) {
    *reinterpret_cast<uint4*>(x + v * 8) = r;
  } else {
    for (int64_t i = v * 8; i < n; ++i) x[i] = h[i - v * 8];
  }
}

__global__ void __launch_bounds__(kThreads) allreduce_oneshot_kernel(bf16* x, int64_t n, OneshotPeers p) {
  __shared__ uint32_t s_epoch;
  __shared__ int s_failed;
  const int b = blockIdx.x, t = threadIdx.x;
  // (PDL) Nothing before the wait: the epoch counters and the failed flag are written by this rank's
  // previous call, x by the matmul before us, and our own buffer half may still be read by peers only
  // under the epoch protocol, which starts from the counters. Peers are unaffected: they see our flag
  // only after our copy-in, as without PDL.
  detail::pdl_launch_dependents();
  detail::pdl_wait();
  if (t == 0) {
    s_epoch = p.epoch[b] + 1;
    s_failed = *reinterpret_cast<volatile int*>(p.failed);
  }
  __syncthreads();
  // After a timed-out wait the peers are out of step: don't spin again, the host reports the error.
  if (s_failed) return;
  const uint32_t epoch = s_epoch;
  const size_t half = oneshot_flag_bytes() + ((epoch & 1) ? size_t(p.capacity) : 0);

  // This block's share of the message in 16-byte vectors; the same on every rank for the same n.
  const int64_t nv = (n + 7) / 8, per = (nv + gridDim.x - 1) / gridDim.x;
  const int64_t v0 = detail::min64(nv, int64_t(b) * per), v1 = detail::min64(nv, v0 + per);
  uint4* own = reinterpret_cast<uint4*>(p.base[p.rank] + half);
  for (int64_t v = v0 + t; v < v1; v += blockDim.x) own[v] = load_x(x, v, n);
  __syncthreads();

  if (t < p.world) store_release_sys(flags_of(p.base[t]) + b * kOneshotMaxRanks + p.rank, epoch);
  if (t < p.world) {
    const uint32_t* flag = flags_of(p.base[p.rank]) + b * kOneshotMaxRanks + t;
    const uint64_t t0 = global_ns();
    // Wrap-safe: a peer may already be one call ahead (its flag is epoch + 1), never two.
    while (int32_t(load_acquire_sys(flag) - epoch) < 0) {
      if (global_ns() - t0 > p.timeout_ns) {
        // A plain store (host-memory atomics need hardware x86 hosts lack); any one peer's name will do.
        *reinterpret_cast<volatile int*>(p.error) = 1 + t;
        *reinterpret_cast<volatile int*>(p.failed) = 1;
        __threadfence_system();
        s_failed = 1;
        break;
      }
    }
  }
  __syncthreads();
  if (s_failed) return;

  for (int64_t v = v0 + t; v < v1; v += blockDim.x) {
    float acc[8] = {};
#pragma unroll
    for (int r = 0; r < kOneshotMaxRanks; ++r) {
      if (r >= p.world) break;
      // L2-only loads: the data half is rewritten every other call, never serve it from a stale L1.
      const uint4 w = __ldcg(reinterpret_cast<const uint4*>(p.base[r] + half) + v);
      const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) acc[2 * k] += detail::bf16_lo(u[k]), acc[2 * k + 1] += detail::bf16_hi(u[k]);
    }
    store_x(x, v, n, acc);
  }
  if (t == 0) p.epoch[b] = epoch;
}

}  // namespace

void launch_allreduce_oneshot(bf16* x, int64_t n, const OneshotPeers& p, cudaStream_t s) {
  GF_CHECK(n >= 0, "allreduce_oneshot: n = ", n, " must be >= 0");
  GF_CHECK(p.world >= 1 && p.world <= kOneshotMaxRanks && p.rank >= 0 && p.rank < p.world,
           "allreduce_oneshot: rank ", p.rank, " of ", p.world, " outside [1, ", kOneshotMaxRanks, "] ranks");
  GF_CHECK(p.capacity % 16 == 0 && (n + 7) / 8 * 16 <= p.capacity, "allreduce_oneshot: ", n,
           " bf16 values exceed the shared buffer of ", p.capacity, " bytes");
  GF_CHECK(reinterpret_cast<uintptr_t>(x) % 16 == 0, "allreduce_oneshot: x must be 16-byte aligned");
  for (int r = 0; r < p.world; ++r) GF_CHECK(p.base[r], "allreduce_oneshot: rank ", r, "'s buffer is not mapped");
  GF_CHECK(p.epoch && p.failed && p.error, "allreduce_oneshot: epoch counters and error flags must be set");
  // Even n = 0 launches: every call must advance every rank's epochs alike.
  detail::launch("allreduce_oneshot", allreduce_oneshot_kernel, kOneshotBlocks, kThreads, 0, s, x, n, p);
}

}  // namespace gf::cuda
