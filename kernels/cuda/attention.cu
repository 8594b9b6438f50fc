// Causal attention over the bf16 KV cache, flash-decoding style: the sequence is split into chunks;
// block (chunk, kv head, token) streams its chunk's keys in tiles of 64 with an online softmax for
// the kv head's whole GQA group of q heads (each K/V byte is read once per group), and the chunks are
// merged by the last of them to finish (decode, verify) or by a combine pass (prefill). Positions are read on the device: the grid covers max_seq and blocks past
// a token's position exit at once, so one launch shape serves every decode step of a CUDA graph.
#include <cmath>

#include "kernels/cuda/launch.cuh"

namespace gf::cuda {
namespace {
constexpr int kThreads = 256, kTile = 64, kTargetBlocks = 264;  // ~2 blocks per H100 SM

struct Plan {
  int64_t chunk_len, n_chunks;
};
// Decode and verify (M <= 16): chunks of one or a few tiles, at most kMaxChunks of them. The grid covers
// max_seq, so chunk length sets how many blocks share a short context: with ~9 chunks of 512 keys (the
// old plan for 7B), a 200-token context ran on 32 blocks, one per kv head, 15 us per layer.
constexpr int64_t kMaxChunks = 64;
Plan make_plan(int M, int64_t n_kv_heads, int64_t max_seq) {
  if (M <= 16) {
    const int64_t len = detail::ceil_div(detail::ceil_div(max_seq, kMaxChunks), kTile) * kTile;
    return {len, detail::ceil_div(max_seq, len)};
  }
  int64_t n = detail::ceil_div(kTargetBlocks, int64_t(M) * n_kv_heads);
  n = std::max<int64_t>(1, std::min(n, detail::ceil_div(max_seq, kTile)));
  const int64_t len = detail::ceil_div(detail::ceil_div(max_seq, n), kTile) * kTile;
  return {len, detail::ceil_div(max_seq, len)};
}

// One q head's output from its chunks' (max, sum, o[hd]) records (softmax in base 2): the block's threads
// take d. Reads through L2 (__ldcg): other blocks wrote the records during this kernel or the last one.
__device__ void merge_chunks(const float* rec, int64_t n_valid, int hd, bf16* out) {
  float mx = -INFINITY;
  for (int64_t c = 0; c < n_valid; ++c) mx = fmaxf(mx, __ldcg(rec + c * (hd + 2)));
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float l = 0.f, o = 0.f;
    for (int64_t c = 0; c < n_valid; ++c) {
      const float w = exp2f(__ldcg(rec + c * (hd + 2)) - mx);
      l += __ldcg(rec + c * (hd + 2) + 1) * w;
      o += __ldcg(rec + c * (hd + 2) + 2 + d) * w;
    }
    out[d] = __float2bfloat16(l > 0.f ? o / l : 0.f);
  }
}

template <int HD, int G>
__global__ void __launch_bounds__(kThreads) attention_kernel(const bf16* __restrict__ q, int64_t q_stride,
                                                             const int32_t* __restrict__ pos,
                                                             const bf16* __restrict__ kc, const bf16* __restrict__ vc,
                                                             int64_t max_seq, int n_heads, int g, Plan plan,
                                                             bf16* __restrict__ out, float* __restrict__ part,
                                                             unsigned* __restrict__ done) {
  constexpr int L = HD / 8, KG = kThreads / L;  // L threads cover one key row (16 B each); KG key groups
  const int c = blockIdx.x, kvh = blockIdx.y, m = blockIdx.z;
  const int tid = threadIdx.x, kg = tid / L, sl = tid % L;  // key group, d-slice [8*sl, 8*sl + 8)
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // before pos, q and this step's KV row (and before the early exit below)
  const int64_t p = detail::min64(pos[m], max_seq - 1);
  const int64_t start = c * plan.chunk_len, end = detail::min64(start + plan.chunk_len, p + 1);
  if (start >= end && plan.n_chunks > 1) return;  // past this token's position: the combine skips it

  __shared__ float s[G][kTile];
  __shared__ float mrun[G], lrun[G], alpha[G];
  __shared__ float red[KG][HD + 4];
  const float qscale = rsqrtf(float(HD)) * 1.44269504f;  // softmax in base 2
  float qr[G][8], acc[G][8];
#pragma unroll
  for (int h = 0; h < G; ++h) {
    const int qh = min(kvh * g + h, n_heads - 1);
    const uint4 v = *reinterpret_cast<const uint4*>(q + m * q_stride + int64_t(qh) * HD + sl * 8);
    const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      qr[h][2 * i] = detail::bf16_lo(u[i]) * qscale;
      qr[h][2 * i + 1] = detail::bf16_hi(u[i]) * qscale;
      acc[h][2 * i] = acc[h][2 * i + 1] = 0.f;
    }
  }
  if (tid < G) mrun[tid] = -INFINITY, lrun[tid] = 0.f;
  const bf16* kbase = kc + int64_t(kvh) * max_seq * HD + sl * 8;
  const bf16* vbase = vc + int64_t(kvh) * max_seq * HD + sl * 8;

  for (int64_t t0 = start; t0 < end; t0 += kTile) {
    // scores of this tile for every q head of the group
    for (int t = kg; t < kTile; t += KG) {
      const int64_t key = t0 + t;
      float d[G];
      if (key < end) {
        const uint4 v = *reinterpret_cast<const uint4*>(kbase + key * HD);
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int h = 0; h < G; ++h) {
          d[h] = 0.f;
#pragma unroll
          for (int i = 0; i < 4; ++i) d[h] += qr[h][2 * i] * detail::bf16_lo(u[i]) + qr[h][2 * i + 1] * detail::bf16_hi(u[i]);
        }
      }
#pragma unroll
      for (int h = 0; h < G; ++h) {
        float x = key < end ? d[h] : 0.f;
#pragma unroll
        for (int o = L / 2; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
        if (sl == 0) s[h][t] = key < end ? x : -INFINITY;
      }
    }
    __syncthreads();
    // online softmax: warp h updates head h's running max and sum
    const int warp = tid / 32, lane = tid % 32;
    if (warp < g) {
      const float a = s[warp][lane], b = s[warp][lane + 32];
      const float mold = mrun[warp], mnew = fmaxf(mold, detail::warp_max(fmaxf(a, b)));
      const float pa = exp2f(a - mnew), pb = exp2f(b - mnew);
      s[warp][lane] = pa, s[warp][lane + 32] = pb;
      const float sum = detail::warp_sum(pa + pb);
      __syncwarp();
      if (lane == 0) {
        const float al = exp2f(mold - mnew);
        alpha[warp] = al, lrun[warp] = lrun[warp] * al + sum, mrun[warp] = mnew;
      }
    }
    __syncthreads();
#pragma unroll
    for (int h = 0; h < G; ++h) {
      const float al = h < g ? alpha[h] : 0.f;
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[h][j] *= al;
    }
    for (int t = kg; t < kTile && t0 + t < end; t += KG) {
      const uint4 v = *reinterpret_cast<const uint4*>(vbase + (t0 + t) * HD);
      const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int h = 0; h < G; ++h) {
        const float pr = s[h][t];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          acc[h][2 * i] += pr * detail::bf16_lo(u[i]);
          acc[h][2 * i + 1] += pr * detail::bf16_hi(u[i]);
        }
      }
    }
    __syncthreads();  // s[] and alpha[] are rewritten by the next tile
  }
  // reduce the key groups, one q head at a time
#pragma unroll
  for (int h = 0; h < G; ++h) {
    if (h >= g) break;
#pragma unroll
    for (int j = 0; j < 8; ++j) red[kg][sl * 8 + j] = acc[h][j];
    __syncthreads();
    const int qh = kvh * g + h;
    for (int d = tid; d < HD; d += kThreads) {
      float o = 0.f;
      for (int k = 0; k < KG; ++k) o += red[k][d];
      if (plan.n_chunks == 1) {
        const float l = lrun[h];
        out[m * int64_t(n_heads) * HD + int64_t(qh) * HD + d] = __float2bfloat16(l > 0.f ? o / l : 0.f);
      } else {
        float* pp = part + ((int64_t(m) * n_heads + qh) * plan.n_chunks + c) * (HD + 2);
        pp[2 + d] = o;
        if (d == 0) pp[0] = mrun[h], pp[1] = lrun[h];
      }
    }
    __syncthreads();
  }
  if (plan.n_chunks == 1 || !done) return;
  // Decode and verify (done given): the last chunk of (token, kv head) to finish merges the group's chunks
  // here, in place of a combine kernel (one launch less per layer). The count returns to 0 for the next call.
  __shared__ bool last;
  __threadfence();  // this block's part[] before its count
  __syncthreads();
  const int64_t n_valid = (p + plan.chunk_len) / plan.chunk_len;  // the chunks that start at or before p
  if (tid == 0) {
    unsigned* count = done + m * int64_t(gridDim.y) + kvh;
    last = atomicAdd(count, 1u) == unsigned(n_valid - 1);
    if (last) *count = 0;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();  // every other block's part[] after its count
  for (int h = 0; h < g; ++h)
    merge_chunks(part + (int64_t(m) * n_heads + kvh * g + h) * plan.n_chunks * (HD + 2), n_valid, HD,
                 out + (m * int64_t(n_heads) + kvh * g + h) * HD);
}

__global__ void combine_kernel(const float* __restrict__ part, const int32_t* __restrict__ pos, int64_t max_seq,
                               int n_heads, int hd, Plan plan, bf16* __restrict__ out) {
  const int qh = blockIdx.x, m = blockIdx.y;
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // part[] is the attention kernel's output
  const int64_t p = detail::min64(pos[m], max_seq - 1);
  merge_chunks(part + (int64_t(m) * n_heads + qh) * plan.n_chunks * (hd + 2), p < 0 ? 0 : (p + plan.chunk_len) / plan.chunk_len,
               hd, out + (m * int64_t(n_heads) + qh) * hd);
}

template <int HD>
void launch_hd(int G, dim3 grid, const bf16* q, int64_t q_stride, const int32_t* pos, const bf16* kc, const bf16* vc,
               int64_t max_seq, int n_heads, int g, Plan plan, bf16* out, float* part, unsigned* done, cudaStream_t s) {
  switch (G) {
#define GF_CASE(GG) \
  case GG:                                                                                                           \
    detail::launch("cuda attention", attention_kernel<HD, GG>, grid, kThreads, 0, s, q, q_stride, pos, kc, vc, max_seq, \
                   n_heads, g, plan, out, part, done);                                                               \
    break;
    GF_CASE(1) GF_CASE(2) GF_CASE(4) GF_CASE(8)
#undef GF_CASE
  }
}

// The fused merge's counts of finished chunks (decode and verify: M <= kFusedM), n_kv_heads per token, in
// the scratch's last done_slots words: where every call of an engine finds them (the part records'
// extent depends on M). A scratch sized for one token has room for one token's counts.
constexpr int kFusedM = 16;
int64_t done_slots(int M, int64_t n_kv_heads) { return M > 1 ? kFusedM * n_kv_heads : n_kv_heads; }
}  // namespace

// Enough for any call with up to M tokens: the split plan (and so the scratch) depends on M.
int64_t attention_scratch_floats(int M, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t max_seq) {
  int64_t most = 0;
  for (int m = 1; m <= M; ++m) {
    const Plan p = make_plan(m, n_kv_heads, max_seq);
    if (p.n_chunks > 1) most = std::max(most, int64_t(m) * n_heads * p.n_chunks * (head_dim + 2));
  }
  return most == 0 ? 0 : most + done_slots(M, n_kv_heads);
}

void launch_attention(const bf16* q, int M, int64_t q_stride, const int32_t* pos, const bf16* k_cache,
                      const bf16* v_cache, int64_t max_seq, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                      bf16* out, float* scratch, int64_t scratch_floats, cudaStream_t s) {
  GF_CHECK(M > 0 && M <= 65535, "cuda attention: M must be in [1, 65535], got ", M);
  GF_CHECK(head_dim == 64 || head_dim == 128 || head_dim == 256, "cuda attention: head_dim must be 64, 128 or 256, got ",
           head_dim);
  GF_CHECK(n_kv_heads > 0 && n_heads % n_kv_heads == 0 && n_heads / n_kv_heads <= 8,
           "cuda attention: n_heads (", n_heads, ") must be a multiple of n_kv_heads (", n_kv_heads, ") with at most 8 "
           "q heads per kv head");
  GF_CHECK(max_seq > 0 && q_stride >= n_heads * head_dim,
           "cuda attention: max_seq must be > 0 and q_stride >= n_heads*head_dim");
  GF_CHECK(q && pos && k_cache && v_cache && out, "cuda attention: null pointer");
  GF_CHECK(q_stride % 8 == 0 && reinterpret_cast<uintptr_t>(q) % 16 == 0, "cuda attention: q rows must be 16-byte aligned");
  const Plan plan = make_plan(M, n_kv_heads, max_seq);
  const int64_t need = attention_scratch_floats(M, n_heads, n_kv_heads, head_dim, max_seq);
  GF_CHECK(scratch_floats >= need && (need == 0 || scratch), "cuda attention: scratch holds ", scratch_floats,
           " floats, needs ", need, " (attention_scratch_floats)");
  const bool fused = plan.n_chunks > 1 && M <= kFusedM;
  unsigned* done = fused ? reinterpret_cast<unsigned*>(scratch + scratch_floats) - done_slots(M, n_kv_heads) : nullptr;
  const int g = int(n_heads / n_kv_heads), G = g <= 1 ? 1 : g <= 2 ? 2 : g <= 4 ? 4 : 8;
  const dim3 grid(unsigned(plan.n_chunks), unsigned(n_kv_heads), unsigned(M));
  switch (head_dim) {
    case 64: launch_hd<64>(G, grid, q, q_stride, pos, k_cache, v_cache, max_seq, int(n_heads), g, plan, out, scratch, done, s); break;
    case 128: launch_hd<128>(G, grid, q, q_stride, pos, k_cache, v_cache, max_seq, int(n_heads), g, plan, out, scratch, done, s); break;
    case 256: launch_hd<256>(G, grid, q, q_stride, pos, k_cache, v_cache, max_seq, int(n_heads), g, plan, out, scratch, done, s); break;
  }
  if (plan.n_chunks > 1 && !fused)
    detail::launch("cuda attention combine", combine_kernel, dim3(unsigned(n_heads), unsigned(M)),
                   unsigned(std::min<int64_t>(head_dim, 256)), 0, s, scratch, pos, max_seq, int(n_heads), int(head_dim),
                   plan, out);
}

}  // namespace gf::cuda
