// argmax and sampling on the device (one block), the twin of cpu::sample: temperature -> top-k ->
// top-p -> inverse CDF at u. Candidates rank by (logit descending, id ascending); top-k and top-p cut
// that order at a boundary token found by a 4-pass radix select (8 bits of the logit's order key per
// pass, a histogram of weight per digit, double precision); ties at the boundary are resolved in id
// order by a block scan. The inverse CDF walks the kept tokens in id order, as the CPU twin does.
// The split sampler (LM head split over vocab) is here too: each rank's local top-k as packed
// candidates (local_top_k_kernel), and one block that finishes on the gathered union
// (sample_candidates_kernel), the twin of cpu::sample_from_candidates.
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
__device__ __forceinline__ float key_logit(uint32_t key) {
  const uint32_t x = ~key;
  return __uint_as_float(x & 0x80000000u ? x & 0x7fffffffu : ~x);
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

__global__ void __launch_bounds__(kThreads) sample_kernel(const float* __restrict__ logits, int64_t vocab, float temp,
                                                          int top_k, float top_p, const double* __restrict__ u,
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

__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* __restrict__ logits, int64_t vocab, int32_t* token) {
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

// Ascending sort of s[0, width) in shared memory; width a power of two <= blockDim.x.
__device__ void bitonic_sort(unsigned long long* s, int width) {
  for (int size = 2; size <= width; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      __syncthreads();
      const int i = threadIdx.x, j = i ^ stride;
      if (i < width && j > i) {
        const unsigned long long a = s[i], b = s[j];
        if ((a > b) == ((i & size) == 0)) s[i] = b, s[j] = a;
      }
    }
  }
  __syncthreads();
}

__global__ void __launch_bounds__(kThreads) local_top_k_kernel(const float* __restrict__ logits, int64_t n,
                                                               int64_t id_begin, int k,
                                                               unsigned long long* __restrict__ cand) {
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // logits / candidates / u come from the previous kernel or copy
  __shared__ unsigned long long s_c[cpu::kMaxSplitTopK];
  __shared__ unsigned long long s_best;
  __shared__ int s_count;
  if (k == 1) {  // greedy: the smallest packed candidate is the largest logit, lowest id
    unsigned long long best = kEmpty;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const unsigned long long c = pack_candidate(rank_key(logits[i]), id_begin + i);
      best = c < best ? c : best;
    }
    if (threadIdx.x == 0) s_best = kEmpty;
    __syncthreads();
    atomicMin(&s_best, best);
    __syncthreads();
    if (threadIdx.x == 0) cand[0] = s_best;
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
  for (int j = kk + threadIdx.x; j < width; j += blockDim.x) s_c[j] = kEmpty;
  bitonic_sort(s_c, width);
  for (int j = threadIdx.x; j < k; j += blockDim.x) cand[j] = j < kk ? s_c[j] : kEmpty;
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
__global__ void __launch_bounds__(kThreads) sample_candidates_kernel(const unsigned long long* __restrict__ cand,
                                                                     int n_lists, int k, int need, float temp,
                                                                     float top_p, const double* __restrict__ u,
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

void launch_local_top_k(const float* logits, int64_t n_valid, int64_t id_begin, int k, uint64_t* cand,
                        cudaStream_t s) {
  GF_CHECK(k >= 1 && k <= cpu::kMaxSplitTopK, "cuda local_top_k: k ", k, " outside [1, ", cpu::kMaxSplitTopK, "]");
  GF_CHECK(n_valid >= 0 && id_begin >= 0 && id_begin + n_valid <= INT32_MAX, "cuda local_top_k: ids [", id_begin,
           ", ", id_begin + n_valid, ") must fit int32");
  GF_CHECK(cand && (logits || n_valid == 0), "cuda local_top_k: null pointer");
  static_assert(cpu::kMaxSplitTopK <= kThreads, "the sort and the finish give each candidate a thread");
  detail::launch("cuda local_top_k", local_top_k_kernel, 1, kThreads, 0, s, logits, n_valid, id_begin, k,
                 reinterpret_cast<unsigned long long*>(cand));
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
