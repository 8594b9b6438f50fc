// argmax and sampling on the device (one block), the twin of cpu::sample: temperature -> top-k ->
// top-p -> inverse CDF at u. Candidates rank by (logit descending, id ascending); top-k and top-p cut
// that order at a boundary token found by a 4-pass radix select (8 bits of the logit's order key per
// pass, a histogram of weight per digit, double precision); ties at the boundary are resolved in id
// order by a block scan. The inverse CDF walks the kept tokens in id order, as the CPU twin does.
// The split sampler (LM head split over vocab) is here too: each rank's local top-k as packed
// candidates (top_k_part_kernel on slices of the row, top_k_merge_kernel on their union), and one block
// that finishes on the gathered union (sample_candidates_kernel), the twin of cpu::sample_from_candidates.
#include <cmath>

#include "kernels/cuda/launch.cuh"

namespace gf::cuda {
namespace {
constexpr int kThreads = 1024;

// Order key: smaller = ranks earlier (larger logit). NaN-free logits are assumed (they come from matmul).
// -0 is keyed as +0: the CPU compares them equal, so their tie goes to the lower id.
__device__ __forceinline__ uint32_t rank_key(float f) {
  const uint32_t b = __float_as_uint(f == 0.f ? 0.f : f);
  return ~(b & 0x80000000u ? ~b : b | 0x80000000u);
}

// The logit of an order key (rank_key's inverse, up to the sign of zero).
__host__ __device__ __forceinline__ float key_logit(uint32_t key) {
  const uint32_t x = ~key, b = x & 0x80000000u ? x & 0x7fffffffu : ~x;
  float f;
  memcpy(&f, &b, 4);
  return f;
}

// A split-sampler candidate: (order key << 32) | token id. Ascending order is (logit desc, id asc), the
// sampler's rank order, and the logit comes back exactly from the key; kEmpty (the largest) fills slots.
constexpr unsigned long long kEmpty = ~0ull;
__device__ __forceinline__ unsigned long long pack_candidate(uint32_t key, int64_t id) {
  return (static_cast<unsigned long long>(key) << 32) | uint32_t(id);
}

__device__ double block_sum_d(double v) {
  __shared__ double part[32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  v = (threadIdx.x & 31) < (blockDim.x >> 5) ? part[threadIdx.x & 31] : 0.0;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Exclusive prefix sum over threads (in thread order).
__device__ double block_exclusive_scan_d(double v) {
  __shared__ double part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  double inc = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double t = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += t;
  }
  __syncthreads();
  if (lane == 31) part[warp] = inc;
  __syncthreads();
  double before = 0.0;
  for (int w = 0; w < warp; ++w) before += part[w];
  return before + inc - v;
}

struct Cut {  // the boundary token: everything ranking at or before (key, id) is kept
  uint32_t key = 0xffffffffu;
  int64_t id = INT64_MAX;
  __device__ bool keeps(uint32_t k, int64_t i) const { return k < key || (k == key && i <= id); }
};

// The first token in rank order whose cumulative weight reaches target (>=). weight(i, key) >= 0.
template <class W>
__device__ Cut select_cut(const float* logits, int64_t vocab, W weight, double target) {
  __shared__ double hist[256];
  __shared__ uint32_t s_prefix;
  __shared__ double s_remaining;
  __shared__ int64_t s_id;
  if (threadIdx.x == 0) s_prefix = 0, s_remaining = target;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    const uint32_t hi_mask = pass == 0 ? 0u : 0xffffffffu << (shift + 8);
    for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0.0;
    __syncthreads();
    const uint32_t prefix = s_prefix;
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
      const uint32_t k = rank_key(logits[i]);
      if ((k & hi_mask) == prefix) {
        const double w = weight(i, k);
        if (w > 0.0) atomicAdd(&hist[(k >> shift) & 255], w);
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      double acc = 0.0, rem = s_remaining;
      int b = 0, last = -1;
      for (; b < 256; ++b) {
        if (hist[b] > 0.0) last = b;
        if (hist[b] > 0.0 && acc + hist[b] >= rem) break;
        acc += hist[b];
      }
      if (b == 256) {  // rounding left the target unreached: take the last token with weight
        b = last < 0 ? 255 : last;
        acc -= last < 0 ? 0.0 : hist[b];
        rem = acc + hist[b];
      }
      s_prefix = prefix | (uint32_t(b) << shift);
      s_remaining = rem - acc;
    }
    __syncthreads();
  }
  // ties (same logit): the first in id order whose cumulative weight reaches the remainder
  const uint32_t key = s_prefix;
  const double rem = s_remaining;
  const int64_t per = (vocab + blockDim.x - 1) / blockDim.x, lo = threadIdx.x * per, hi = detail::min64(lo + per, vocab);
  double mine = 0.0;
  for (int64_t i = lo; i < hi; ++i)
    if (rank_key(logits[i]) == key) mine += weight(i, key);
  const double before = block_exclusive_scan_d(mine);
  if (threadIdx.x == 0) s_id = -1;
  __syncthreads();
  if (mine > 0.0 && before < rem && before + mine >= rem) {  // this thread's range holds the crossing
    double cum = before;
    for (int64_t i = lo; i < hi; ++i)
      if (rank_key(logits[i]) == key && (cum += weight(i, key)) >= rem) { s_id = i; break; }
  }
  __syncthreads();
  Cut c;
  c.key = key;
  c.id = s_id >= 0 ? s_id : vocab - 1;  // rounding: keep every tie
  __syncthreads();
  return c;
}

__global__ void __launch_bounds__(kThreads) sample_kernel(const float* logits, int64_t vocab, float temp,
                                                          int top_k, float top_p, const double* u,
                                                          int32_t* token) {
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // logits / candidates / u come from the previous kernel or copy
  __shared__ int64_t s_pick;
  // max logit
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, logits[i]);
  {
    __shared__ float part[32];
    mx = detail::warp_max(mx);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = detail::warp_max((threadIdx.x & 31) < (blockDim.x >> 5) ? part[threadIdx.x & 31] : -INFINITY);
  }
  const double dmx = mx, inv_t = 1.0 / double(temp);
  auto prob = [&](int64_t i) { return exp((double(logits[i]) - dmx) * inv_t); };
  Cut ck, cp;
  if (top_k > 0 && top_k < vocab) ck = select_cut(logits, vocab, [](int64_t, uint32_t) { return 1.0; }, double(top_k));
  if (top_p < 1.f) {
    double tk = 0.0;
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
      if (ck.keeps(rank_key(logits[i]), i)) tk += prob(i);
    tk = block_sum_d(tk);
    cp = select_cut(logits, vocab, [&](int64_t i, uint32_t k) { return ck.keeps(k, i) ? prob(i) : 0.0; },
                    double(top_p) * tk);
  }
  // inverse CDF over the kept tokens in id order
  const int64_t per = (vocab + blockDim.x - 1) / blockDim.x, lo = threadIdx.x * per, hi = detail::min64(lo + per, vocab);
  double mine = 0.0;
  int64_t last = -1;
  for (int64_t i = lo; i < hi; ++i) {
    const uint32_t k = rank_key(logits[i]);
    if (ck.keeps(k, i) && cp.keeps(k, i)) mine += prob(i), last = i;
  }
  const double total = block_sum_d(mine), before = block_exclusive_scan_d(mine), target = u[0] * total;
  if (threadIdx.x == 0) s_pick = -1;
  __syncthreads();
  if (last >= 0) atomicMax(reinterpret_cast<unsigned long long*>(&s_pick), (unsigned long long)last);  // fallback
  __syncthreads();
  const int64_t fallback = s_pick;
  __syncthreads();
  if (threadIdx.x == 0) s_pick = -1;
  __syncthreads();
  if (mine > 0.0 && before <= target && before + mine > target) {
    double cum = before;
    for (int64_t i = lo; i < hi; ++i) {
      const uint32_t k = rank_key(logits[i]);
      if (ck.keeps(k, i) && cp.keeps(k, i) && (cum += prob(i)) > target) { s_pick = i; break; }
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) token[0] = int32_t(s_pick >= 0 ? s_pick : fallback);
}

__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* logits, int64_t vocab, int32_t* token) {
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // logits / candidates / u come from the previous kernel or copy
  // (value, id) packed so that one max picks the larger logit and, among equals, the lower id
  unsigned long long best = 0;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const unsigned long long v = (uint64_t(~rank_key(logits[i])) << 32) | uint32_t(~uint32_t(i));
    best = v > best ? v : best;
  }
  __shared__ unsigned long long s_best;
  if (threadIdx.x == 0) s_best = 0;
  __syncthreads();
  atomicMax(&s_best, best);
  __syncthreads();
  if (threadIdx.x == 0) token[0] = int32_t(~uint32_t(s_best & 0xffffffffu));
}
// The cut after the first `target` tokens in rank order (1 <= target <= n): select_cut with counts,
// which are exact, so the cut keeps exactly `target` tokens. Warp-aggregated histogram atomics: most
// logits share their top digits, and one atomic per digit per warp keeps the hot bins from serializing.
__device__ Cut select_count_cut(const float* logits, int64_t n, uint32_t target) {
  __shared__ uint32_t hist[256];
  __shared__ uint32_t s_prefix, s_rem;
  __shared__ int64_t s_id;
  const int lane = threadIdx.x & 31;
  if (threadIdx.x == 0) s_prefix = 0, s_rem = target;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    const uint32_t hi_mask = pass == 0 ? 0u : 0xffffffffu << (shift + 8);
    for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
    __syncthreads();
    const uint32_t prefix = s_prefix;
    for (int64_t base = 0; base < n; base += blockDim.x) {  // same trip count in every lane: match_any needs them all
      const int64_t i = base + threadIdx.x;
      const uint32_t k = i < n ? rank_key(logits[i]) : 0u;
      const bool in = i < n && (k & hi_mask) == prefix;
      const uint32_t digit = in ? (k >> shift) & 255u : 256u + lane;  // lanes out of play never match
      const uint32_t peers = __match_any_sync(0xffffffffu, digit);
      if (in && lane == __ffs(peers) - 1) atomicAdd(&hist[digit], uint32_t(__popc(peers)));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      uint32_t acc = 0, b = 0;
      const uint32_t rem = s_rem;
      while (b < 255 && acc + hist[b] < rem) acc += hist[b++];
      s_prefix = prefix | (b << shift);
      s_rem = rem - acc;
    }
    __syncthreads();
  }
  // ties (same key): keep the first s_rem of them in id order
  const uint32_t key = s_prefix, rem = s_rem;
  const int64_t per = (n + blockDim.x - 1) / blockDim.x, lo = detail::min64(threadIdx.x * per, n),
                hi = detail::min64(lo + per, n);
  uint32_t mine = 0;
  for (int64_t i = lo; i < hi; ++i) mine += rank_key(logits[i]) == key;
  const double before = block_exclusive_scan_d(double(mine));  // exact: counts < 2^53
  if (threadIdx.x == 0) s_id = n - 1;
  __syncthreads();
  if (mine > 0 && before < rem && before + mine >= rem) {
    uint32_t cum = uint32_t(before);
    for (int64_t i = lo; i < hi; ++i)
      if (rank_key(logits[i]) == key && ++cum == rem) { s_id = i; break; }
  }
  __syncthreads();
  Cut c;
  c.key = key;
  c.id = s_id;
  __syncthreads();
  return c;
}

// Ascending bitonic sort of the block's values, thread i's v being element i; returns thread i's
// element of the sorted order. Elements [0, width) are sorted (width a power of two <= blockDim.x);
// the warps past them return at once (the barrier below counts only the others). Strides below 32
// exchange by shuffles, the others through shared memory, double-buffered so that one barrier a step
// suffices (a buffer is written again two steps later, after a barrier every reader of it has passed).
// Unrolled for each width: the loop's own instructions cost as much as the compare-exchange.
template <int kLog>
__device__ __forceinline__ unsigned long long bitonic_steps(unsigned long long v, unsigned long long (*buf)[kThreads],
                                                            int threads) {
  const int i = threadIdx.x;
  int p = 0;
#pragma unroll
  for (int size = 2; size <= 1 << kLog; size <<= 1) {
#pragma unroll
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      unsigned long long o;
      if (stride >= 32) {
        buf[p][i] = v;
        asm volatile("bar.sync 1, %0;" ::"r"(threads) : "memory");
        o = buf[p][i ^ stride];
        p ^= 1;
      } else {
        o = __shfl_xor_sync(0xffffffffu, v, stride);
      }
      const bool keep_min = ((i & stride) == 0) == ((i & size) == 0);  // lower slot of an ascending pair
      v = keep_min == (o < v) ? o : v;
    }
  }
  return v;
}

__device__ unsigned long long block_sort(unsigned long long v, int width) {
  __shared__ unsigned long long buf[2][kThreads];
  const int threads = width < 32 ? 32 : width;
  if (int(threadIdx.x) >= threads) return v;
  switch (width) {
    case 2: return bitonic_steps<1>(v, buf, threads);
    case 4: return bitonic_steps<2>(v, buf, threads);
    case 8: return bitonic_steps<3>(v, buf, threads);
    case 16: return bitonic_steps<4>(v, buf, threads);
    case 32: return bitonic_steps<5>(v, buf, threads);
    case 64: return bitonic_steps<6>(v, buf, threads);
    case 128: return bitonic_steps<7>(v, buf, threads);
    case 256: return bitonic_steps<8>(v, buf, threads);
    case 512: return bitonic_steps<9>(v, buf, threads);
    case 1024: return bitonic_steps<10>(v, buf, threads);
    default: return v;  // width 1
  }
}

// The smallest packed value over the block (kEmpty if none).
__device__ __forceinline__ unsigned long long block_min_u64(unsigned long long v) {
  __shared__ unsigned long long s_min;
  if (threadIdx.x == 0) s_min = kEmpty;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned long long t = __shfl_xor_sync(0xffffffffu, v, o);
    v = t < v ? t : v;
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) atomicMin(&s_min, v);
  __syncthreads();
  return s_min;
}

// The smallest of the block's candidates, V slots a thread as block_select takes them (kEmpty if none):
// the greedy cut (k = 1) of both local top-k stages.
template <int V, class Val, class Has>
__device__ __forceinline__ unsigned long long block_min_of(Val val, Has has) {
  unsigned long long best = kEmpty;
#pragma unroll
  for (int j = 0; j < V; ++j) best = has(j) && val(j) < best ? val(j) : best;
  return block_min_u64(best);
}

// The local top-k in one block, re-reading the row at every pass: only for rows too long for the
// two-stage kernels below (their slices live in registers), e.g. n > 512K at k = 1024.
__global__ void __launch_bounds__(kThreads) local_top_k_kernel(const float* logits, int64_t n,
                                                               int64_t id_begin, int k,
                                                               unsigned long long* __restrict__ cand) {
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // logits / candidates / u come from the previous kernel or copy
  __shared__ unsigned long long s_c[cpu::kMaxSplitTopK];
  __shared__ int s_count;
  if (k == 1) {  // greedy: the smallest packed candidate is the largest logit, lowest id
    unsigned long long best = kEmpty;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const unsigned long long c = pack_candidate(rank_key(logits[i]), id_begin + i);
      best = c < best ? c : best;
    }
    best = block_min_u64(best);
    if (threadIdx.x == 0) cand[0] = best;
    return;
  }
  const int kk = int(detail::min64(k, n));
  Cut cut;  // keeps everything
  if (kk < n) cut = select_count_cut(logits, n, uint32_t(kk));
  if (threadIdx.x == 0) s_count = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const uint32_t key = rank_key(logits[i]);
    if (cut.keeps(key, i)) {
      const int at = atomicAdd(&s_count, 1);
      if (at < kk) s_c[at] = pack_candidate(key, id_begin + i);
    }
  }
  int width = 1;
  while (width < kk) width <<= 1;
  __syncthreads();
  const unsigned long long v = block_sort(int(threadIdx.x) < kk ? s_c[threadIdx.x] : kEmpty, width);
  if (int(threadIdx.x) < k) cand[threadIdx.x] = int(threadIdx.x) < kk ? v : kEmpty;
}

// The fast local top-k, in two kernels that keep their values in registers (one global read each):
//   part:  block b of G takes the slice [b n / G, (b+1) n / G) and writes its k best packed candidates,
//          unsorted, to scratch[b k, (b+1) k) (kEmpty past the slice's length); with G == 1 it is the
//          whole op and writes cand sorted;
//   merge: one block takes the G k candidates and writes the k best to cand, sorted, kEmpty-padded.
// Any slice's top k holds every token of the row's top k that lies in it, so the merge sees them all.
// Both select by block_select on the 64-bit packed candidate: candidates are distinct (one per id), so
// the k smallest are exactly those <= the cut it returns, ties of logits broken by id for free.
// Measured with Nsight Compute on an H200, k = 200: 8 + 7 us at n = 32000, 8 + 11 us at n = 128256
// (8 + 21 us at k = 1024), where the one-block kernel above, which reads the row once per radix pass,
// took 208 and 730 us.
constexpr int kPartLen = 4096;               // logits per part block (the row spread over more SMs)
constexpr int kPartMax = 32 * kThreads;      // the most a part block holds: 32 keys (uint32) a thread
constexpr int kMergeMax = 16 * kThreads;     // the most the merge holds: 16 candidates (uint64) a thread

// Parts for a row of n and k (1: one kernel); G k <= kMergeMax.
int64_t top_k_parts(int64_t n, int k) {
  return std::max<int64_t>(1, std::min<int64_t>((n + kPartLen - 1) / kPartLen, kMergeMax / k));
}

// The cut under which lie exactly the target smallest of the block's candidates (1 <= target <= their
// number; they must be distinct). V slots a thread, in registers: has(j) says whether slot j holds one,
// val(j) is its packed value. A radix select over the 64 bits, 8 a pass from the top: a histogram of the
// next digit among the candidates that share the digits chosen so far, then warp 0 finds the bin where
// the running count reaches the remainder (a shuffle scan, 8 bins a lane). It stops at the first bin
// that holds exactly the remainder, whose candidates are then all in: cut = the chosen digits with
// every lower bit set. Ties of logits need no pass of their own: the passes below bit 32 order them by
// id. Bits known to be zero from bit low_top + 8 up to bit 31 take no pass, nor, with kShared, the top
// bits that every candidate shares: the first digit then ends at the highest bit where they differ
// (the merge's candidates, all near the top of the row, share the sign and most of the exponent; a
// part's rarely do, and finding them costs more there than it saves).
template <bool kShared, int V, class Val, class Has>
__device__ __forceinline__ unsigned long long block_select(Val val, Has has, uint32_t target, int low_top) {
  __shared__ __align__(16) uint32_t hist[2][256];  // this pass's; the other is cleared for the next
  __shared__ unsigned long long s_or[32], s_and[32];
  __shared__ unsigned long long s_prefix;
  __shared__ uint32_t s_rem;
  __shared__ int s_done;
  const int lane = threadIdx.x & 31;
  unsigned long long any = 0, all = ~0ull;  // OR and AND of the candidates
  if (kShared) {
#pragma unroll
    for (int j = 0; j < V; ++j)
      if (has(j)) any |= val(j), all &= val(j);
  }
  auto warp_or_and = [&] {
    any = (static_cast<unsigned long long>(__reduce_or_sync(0xffffffffu, uint32_t(any >> 32))) << 32) |
          __reduce_or_sync(0xffffffffu, uint32_t(any));
    all = (static_cast<unsigned long long>(__reduce_and_sync(0xffffffffu, uint32_t(all >> 32))) << 32) |
          __reduce_and_sync(0xffffffffu, uint32_t(all));
  };
  if (kShared) {
    warp_or_and();
    if (lane == 0) s_or[threadIdx.x >> 5] = any, s_and[threadIdx.x >> 5] = all;
  }
  if (threadIdx.x < 256) hist[0][threadIdx.x] = 0;
  __syncthreads();
  int fixed = 64;  // bits >= fixed are decided
  if (kShared) {
    any = s_or[lane], all = s_and[lane];  // blockDim.x == 1024: 32 warps
    warp_or_and();
    fixed = any == all ? 0 : 64 - __clzll(any ^ all);
  }
  unsigned long long prefix = fixed == 64 ? 0 : all >> fixed << fixed;  // the decided bits
  uint32_t rem = target;  // how many of the candidates under prefix are still to take
  for (int pass = 0; fixed > 0; ++pass) {
    const int shift = fixed > 8 ? fixed - 8 : 0;  // below 8 the digit overlaps decided bits: harmless
    uint32_t* h = hist[pass & 1];
    if (threadIdx.x < 256) hist[~pass & 1][threadIdx.x] = 0;  // last read by the scan before the last barrier
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const unsigned long long c = val(j);
      // one atomic a warp and bin: the compiler aggregates equal addresses (most candidates share the
      // top digits; __match_any_sync to do it by hand cost more than it saved)
      if (has(j) && (fixed == 64 || ((c ^ prefix) >> fixed) == 0)) atomicAdd(&h[uint32_t(c >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      const uint4 b0 = reinterpret_cast<const uint4*>(h)[2 * lane], b1 = reinterpret_cast<const uint4*>(h)[2 * lane + 1];
      const uint32_t b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
      uint32_t sum = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) sum += b[i];
      uint32_t incl = sum;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const uint32_t t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
      }
      uint32_t acc = incl - sum;
      if (acc < rem && rem <= incl) {  // the one lane whose bins reach the remainder
        int bin = 8;
        uint32_t count = 0;
#pragma unroll
        for (int i = 0; i < 8; ++i)  // the first bin where the running count reaches rem
          if (bin == 8) {
            if (acc + b[i] >= rem) bin = i, count = b[i];
            else acc += b[i];
          }
        s_prefix = prefix | (static_cast<unsigned long long>(8 * lane + bin) << shift);
        s_rem = rem - acc;
        s_done = count == rem - acc;
      }
    }
    __syncthreads();  // s_* are next written after the next pass's first barrier: every thread has read them
    prefix = s_prefix;
    rem = s_rem;
    fixed = shift;
    if (s_done) break;  // at shift 0 at the latest: one candidate is left (they are distinct)
    if (fixed <= 32 && fixed > low_top + 8) fixed = low_top + 8;
  }
  return prefix | ((1ull << fixed) - 1);
}

// Appends the block's candidates <= cut, plus offset, to dst at *count (shared, zeroed), in no
// particular order; one atomic a warp (they would queue on the one counter).
template <int V, class Val, class Has>
__device__ __forceinline__ void collect(Val val, Has has, unsigned long long cut, unsigned long long offset,
                                        unsigned long long* dst, int* count) {
  const int lane = threadIdx.x & 31;
  auto takes = [&](int j) { return __ballot_sync(0xffffffffu, has(j) && val(j) <= cut); };
  int n = 0;
#pragma unroll
  for (int j = 0; j < V; ++j) n += __popc(takes(j));  // twice rather than V masks held (registers)
  if (n == 0) return;
  int base = 0;
  if (lane == 0) base = atomicAdd(count, n);
  base = __shfl_sync(0xffffffffu, base, 0);
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const uint32_t m = takes(j);
    if (m >> lane & 1) dst[base + __popc(m & ((1u << lane) - 1))] = val(j) + offset;
    base += __popc(m);
  }
}

// cand[0, k) = the target candidates <= cut (plus offset), ascending, then kEmpty. Up to 256 of them,
// each one's place is the count of those below it, a quarter of the list per thread (all 32 warps
// busy, loads broadcast): cheaper than the 36 dependent steps of a bitonic sort of 256 on 8 warps.
template <int V, class Val, class Has>
__device__ __forceinline__ void write_sorted(Val val, Has has, unsigned long long cut, unsigned long long offset,
                                             int target, int k, unsigned long long* cand) {
  constexpr int kRankMax = kThreads / 4;
  __shared__ unsigned long long s_c[cpu::kMaxSplitTopK];
  __shared__ int s_rank[kRankMax];
  __shared__ int s_count;
  const int t = threadIdx.x;
  if (t == 0) s_count = 0;
  if (t < kRankMax) s_rank[t] = 0;
  __syncthreads();
  collect<V>(val, has, cut, offset, s_c, &s_count);
  __syncthreads();
  if (target <= kRankMax) {
    const int e = t % kRankMax, span = (target + 3) / 4, lo = t / kRankMax * span,
              hi = lo + span < target ? lo + span : target;
    if (e < target) {
      const unsigned long long mine = s_c[e];
      int below = 0;
#pragma unroll 8
      for (int j = lo; j < hi; ++j) below += s_c[j] < mine;
      if (below) atomicAdd(&s_rank[e], below);
    }
    __syncthreads();
    if (t < target) cand[s_rank[t]] = s_c[t];
    else if (t < k) cand[t] = kEmpty;
    return;
  }
  int width = 1;
  while (width < target) width <<= 1;
  const unsigned long long v = block_sort(t < target ? s_c[t] : kEmpty, width);
  if (t < k) cand[t] = t < target ? v : kEmpty;
}

// The first stage: this block's slice of the row, V keys a thread (slice element i: key[i / 1024] of
// thread i % 1024, so every load is coalesced). The packed values carry i, not the id (id_begin + lo +
// i, added on the way out): the same order, and the select skips the 16 high bits, zero.
// out: scratch, or cand when gridDim.x == 1.
template <int V>
__global__ void __launch_bounds__(kThreads) top_k_part_kernel(const float* logits, int64_t n,
                                                              int64_t id_begin, int k,
                                                              unsigned long long* __restrict__ out) {
  static_assert(V * kThreads <= 1 << 16, "slice indices fit 16 bits");
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // logits / candidates / u come from the previous kernel or copy
  __shared__ int s_count;
  const int64_t lo = n * blockIdx.x / gridDim.x;
  const int len = int(n * (blockIdx.x + 1) / gridDim.x - lo), t = threadIdx.x;
  const unsigned long long id0 = static_cast<unsigned long long>(id_begin + lo);
  uint32_t key[V];
#pragma unroll
  for (int j = 0; j < V; ++j) key[j] = j * kThreads + t < len ? rank_key(logits[lo + j * kThreads + t]) : 0u;
  auto has = [&](int j) { return j * kThreads + t < len; };
  auto val = [&](int j) { return pack_candidate(key[j], j * kThreads + t); };
  const int target = k < len ? k : len;
  unsigned long long cut = kEmpty;  // keeps all
  if (k == 1) {                     // greedy: the smallest packed candidate
    cut = block_min_of<V>(val, has);
  } else if (target < len) {
    cut = block_select<false, V>(val, has, uint32_t(target), 8);
  }
  if (gridDim.x == 1) return write_sorted<V>(val, has, cut, id0, target, k, out);
  unsigned long long* mine = out + int64_t(blockIdx.x) * k;
  if (t == 0) s_count = 0;
  __syncthreads();
  collect<V>(val, has, cut, id0, mine, &s_count);
  for (int j = target + t; j < k; j += blockDim.x) mine[j] = kEmpty;
}

// The second stage: the k best of the parts' m = G k candidates (kEmpty slots are none), into cand.
// target = min(k, n) <= the candidates there are: each part holds min(k, its length).
template <int V>
__global__ void __launch_bounds__(kThreads) top_k_merge_kernel(const unsigned long long* part, int m,
                                                               int target, int k,
                                                               unsigned long long* __restrict__ cand) {
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // the parts come from the previous kernel
  const int t = threadIdx.x;
  unsigned long long c[V];
#pragma unroll
  for (int j = 0; j < V; ++j) c[j] = j * kThreads + t < m ? part[j * kThreads + t] : kEmpty;
  auto has = [&](int j) { return c[j] != kEmpty; };
  auto val = [&](int j) { return c[j]; };
  unsigned long long cut = kEmpty;
  if (k == 1) {  // every slot may compete: an empty one holds kEmpty, the largest value
    cut = block_min_of<V>(val, [](int) { return true; });
  } else if (target > 0) {
    cut = block_select<true, V>(val, has, uint32_t(target), 24);
  }
  write_sorted<V>(val, has, cut, 0, target, k, cand);
}

// How many entries of the ascending list a[0, n) are below key.
__device__ int count_below(const unsigned long long* a, int n, unsigned long long key) {
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (a[mid] < key) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// cpu::sample_from_candidates on the device. The union's first `need` candidates in rank order come
// from merging the sorted lists (a candidate's place = its index + what the other lists hold below
// it); then one candidate per thread: weights, top-p by a scan in rank order, the kept ids put in id
// order by counting, and the inverse CDF by a scan in id order. The scans sum in a tree, not left to
// right as the CPU does, so a u within rounding of a CDF boundary may pick the neighbour.
__global__ void __launch_bounds__(kThreads) sample_candidates_kernel(const unsigned long long* cand,
                                                                     int n_lists, int k, int need, float temp,
                                                                     float top_p, const double* u,
                                                                     int32_t* token) {
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // logits / candidates / u come from the previous kernel or copy
  __shared__ unsigned long long s_top[cpu::kMaxSplitTopK];  // rank order
  __shared__ double s_w[cpu::kMaxSplitTopK];                // id order, below
  __shared__ int32_t s_ids[cpu::kMaxSplitTopK];
  __shared__ int s_n, s_keep, s_pick;
  __shared__ double s_total;
  for (int j = threadIdx.x; j < need; j += blockDim.x) s_top[j] = kEmpty;
  if (threadIdx.x == 0) s_n = 0;
  __syncthreads();
  const int64_t total = int64_t(n_lists) * k;
  for (int64_t c = threadIdx.x; c < total; c += blockDim.x) {
    const unsigned long long key = cand[c];
    if (key == kEmpty) continue;
    const int r = int(c / k);
    int64_t at = c - int64_t(r) * k;
    for (int q = 0; q < n_lists; ++q)
      if (q != r) at += count_below(cand + int64_t(q) * k, k, key);
    if (at < need) s_top[at] = key, atomicAdd(&s_n, 1);
  }
  __syncthreads();
  const int kk = s_n;  // == need unless the lists were short
  if (kk == 0 || temp == 0.f) {
    if (threadIdx.x == 0) token[0] = kk ? int32_t(uint32_t(s_top[0])) : -1;
    return;
  }
  const int j = threadIdx.x;  // need <= kMaxSplitTopK == blockDim.x: one candidate per thread
  const double mx = key_logit(uint32_t(s_top[0] >> 32));
  const double w = j < kk ? exp((double(key_logit(uint32_t(s_top[j] >> 32))) - mx) / double(temp)) : 0.0;
  if (threadIdx.x == 0) s_keep = kk;
  if (top_p < 1.f) {
    const double cum = block_exclusive_scan_d(w) + w;
    if (j == kk - 1) s_total = cum;
    __syncthreads();
    if (j < kk && cum >= double(top_p) * s_total) atomicMin(&s_keep, j + 1);
  }
  __syncthreads();
  const int keep = s_keep;
  if (j < keep) {
    const int32_t id = int32_t(uint32_t(s_top[j]));
    int at = 0;
    for (int q = 0; q < keep; ++q) at += int32_t(uint32_t(s_top[q])) < id;
    s_w[at] = w, s_ids[at] = id;
  }
  __syncthreads();
  const double v = j < keep ? s_w[j] : 0.0, cum = block_exclusive_scan_d(v) + v;
  if (j == keep - 1) s_total = cum, s_pick = keep - 1;  // the last kept token if rounding leaves none
  __syncthreads();
  if (j < keep && cum > u[0] * s_total) atomicMin(&s_pick, j);
  __syncthreads();
  if (threadIdx.x == 0) token[0] = s_ids[s_pick];
}
}  // namespace

namespace {
// The checks both samplers' launchers make of the row and the parameters (op names the launcher).
void check_sampling(const char* op, int64_t vocab, const cpu::SamplingParams& p) {
  GF_CHECK(vocab > 0 && vocab <= INT32_MAX, op, ": vocab must be in [1, 2^31), got ", vocab);
  GF_CHECK(std::isfinite(p.temperature) && p.temperature >= 0.f, op, ": temperature ", p.temperature,
           " must be finite and >= 0");
  GF_CHECK(p.top_p > 0.f && p.top_p <= 1.f, op, ": top_p ", p.top_p, " must be in (0, 1]");
}
}  // namespace

int64_t local_top_k_scratch(int64_t n_valid) {
  return n_valid > kPartLen ? kMergeMax : 0;  // G k <= kMergeMax for every k; one part needs none
}

void launch_local_top_k(const float* logits, int64_t n_valid, int64_t id_begin, int k, uint64_t* cand,
                        uint64_t* scratch, int64_t scratch_n, cudaStream_t s) {
  GF_CHECK(k >= 1 && k <= cpu::kMaxSplitTopK, "cuda local_top_k: k ", k, " outside [1, ", cpu::kMaxSplitTopK, "]");
  GF_CHECK(n_valid >= 0 && id_begin >= 0 && id_begin + n_valid <= INT32_MAX, "cuda local_top_k: ids [", id_begin,
           ", ", id_begin + n_valid, ") must fit int32");
  GF_CHECK(cand && (logits || n_valid == 0), "cuda local_top_k: null pointer");
  static_assert(cpu::kMaxSplitTopK <= kThreads, "the sort and the finish give each candidate a thread");
  auto* out = reinterpret_cast<unsigned long long*>(cand);
  const int64_t parts = top_k_parts(n_valid, k), per = (n_valid + parts - 1) / parts;
  if (per > kPartMax)  // a slice too long for a part block's registers: the one-block kernel
    return detail::launch("cuda local_top_k", local_top_k_kernel, 1, kThreads, 0, s, logits, n_valid, id_begin, k,
                          out);
  GF_CHECK(parts == 1 || (scratch && scratch_n >= parts * k), "cuda local_top_k: scratch of ", scratch_n,
           " words, ", parts * k, " needed (local_top_k_scratch)");
  auto* part = parts == 1 ? out : reinterpret_cast<unsigned long long*>(scratch);
  const auto first = per <= 4 * kThreads    ? top_k_part_kernel<4>
                     : per <= 8 * kThreads  ? top_k_part_kernel<8>
                     : per <= 16 * kThreads ? top_k_part_kernel<16>
                                            : top_k_part_kernel<32>;
  detail::launch("cuda local_top_k", first, dim3(unsigned(parts)), kThreads, 0, s, logits, n_valid, id_begin, k,
                 part);
  if (parts == 1) return;
  const int m = int(parts * k), target = int(std::min<int64_t>(k, n_valid));
  const auto merge = m <= kThreads       ? top_k_merge_kernel<1>
                     : m <= 2 * kThreads ? top_k_merge_kernel<2>
                     : m <= 4 * kThreads ? top_k_merge_kernel<4>
                     : m <= 8 * kThreads ? top_k_merge_kernel<8>
                                         : top_k_merge_kernel<16>;
  detail::launch("cuda local_top_k merge", merge, 1, kThreads, 0, s, part, m, target, k, out);
}

void launch_sample_from_candidates(const uint64_t* cand, int n_lists, int k, int64_t vocab,
                                   const cpu::SamplingParams& p, const double* u, int32_t* token, cudaStream_t s) {
  check_sampling("cuda sample_from_candidates", vocab, p);
  GF_CHECK(k >= 1 && k == cpu::split_top_k(p), "cuda sample_from_candidates: lists of ", k,
           " candidates, but these parameters need cpu::split_top_k = ", cpu::split_top_k(p));
  GF_CHECK(n_lists >= 1 && int64_t(n_lists) * k <= INT32_MAX, "cuda sample_from_candidates: ", n_lists, " lists");
  GF_CHECK(cand && token && (u || p.temperature == 0.f), "cuda sample_from_candidates: null pointer");
  const int need = int(detail::min64(k, vocab));
  detail::launch("cuda sample_from_candidates", sample_candidates_kernel, 1, kThreads, 0, s,
                 reinterpret_cast<const unsigned long long*>(cand), n_lists, k, need, p.temperature, p.top_p, u, token);
}

void unpack_candidates(const uint64_t* packed, int64_t n, float* logits, int32_t* ids) {
  for (int64_t i = 0; i < n; ++i) {
    const bool empty = packed[i] == kEmpty;
    logits[i] = empty ? -INFINITY : key_logit(uint32_t(packed[i] >> 32));
    ids[i] = empty ? -1 : int32_t(uint32_t(packed[i]));
  }
}

void launch_argmax(const float* logits, int64_t vocab, int32_t* token, cudaStream_t s) {
  GF_CHECK(vocab > 0 && vocab <= INT32_MAX, "cuda argmax: vocab must be in [1, 2^31), got ", vocab);
  GF_CHECK(logits && token, "cuda argmax: null pointer");
  detail::launch("cuda argmax", argmax_kernel, 1, kThreads, 0, s, logits, vocab, token);
}

void launch_sample(const float* logits, int64_t vocab, const cpu::SamplingParams& p, const double* u, int32_t* token,
                   cudaStream_t s) {
  check_sampling("cuda sample", vocab, p);
  GF_CHECK(p.top_k >= 0, "cuda sample: top_k ", p.top_k, " must be >= 0 (0 = off)");
  GF_CHECK(logits && token && (u || p.temperature == 0.f), "cuda sample: null pointer");
  if (p.temperature == 0.f) return launch_argmax(logits, vocab, token, s);
  detail::launch("cuda sample", sample_kernel, 1, kThreads, 0, s, logits, vocab, p.temperature, p.top_k, p.top_p, u,
                 token);
}

}  // namespace gf::cuda
