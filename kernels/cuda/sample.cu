// argmax and sampling on the device (one block), the twin of cpu::sample: temperature -> top-k ->
// top-p -> inverse CDF at u. Candidates rank by (logit descending, id ascending); top-k and top-p cut
// that order at a boundary token found by a 4-pass radix select (8 bits of the logit's order key per
// pass, a histogram of weight per digit, double precision); ties at the boundary are resolved in id
// order by a block scan. The inverse CDF walks the kept tokens in id order, as the CPU twin does.
#include <cmath>

#include "kernels/cuda/common.cuh"

namespace gf::cuda {
namespace {
constexpr int kThreads = 1024;

// Order key: smaller = ranks earlier (larger logit). NaN-free logits are assumed (they come from matmul).
__device__ __forceinline__ uint32_t rank_key(float f) {
  const uint32_t b = __float_as_uint(f);
  return ~(b & 0x80000000u ? ~b : b | 0x80000000u);
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
}  // namespace

void launch_argmax(const float* logits, int64_t vocab, int32_t* token, cudaStream_t s) {
  GF_CHECK(vocab > 0 && vocab <= INT32_MAX, "cuda argmax: vocab must be in [1, 2^31), got ", vocab);
  GF_CHECK(logits && token, "cuda argmax: null pointer");
  argmax_kernel<<<1, kThreads, 0, s>>>(logits, vocab, token);
  detail::check_launch("cuda argmax");
}

void launch_sample(const float* logits, int64_t vocab, const cpu::SamplingParams& p, const double* u, int32_t* token,
                   cudaStream_t s) {
  GF_CHECK(vocab > 0 && vocab <= INT32_MAX, "cuda sample: vocab must be in [1, 2^31), got ", vocab);
  GF_CHECK(std::isfinite(p.temperature) && p.temperature >= 0.f, "cuda sample: temperature ", p.temperature,
           " must be finite and >= 0");
  GF_CHECK(p.top_k >= 0, "cuda sample: top_k ", p.top_k, " must be >= 0 (0 = off)");
  GF_CHECK(p.top_p > 0.f && p.top_p <= 1.f, "cuda sample: top_p ", p.top_p, " must be in (0, 1]");
  GF_CHECK(logits && token && (u || p.temperature == 0.f), "cuda sample: null pointer");
  if (p.temperature == 0.f) return launch_argmax(logits, vocab, token, s);
  sample_kernel<<<1, kThreads, 0, s>>>(logits, vocab, p.temperature, p.top_k, p.top_p, u, token);
  detail::check_launch("cuda sample");
}

}  // namespace gf::cuda
