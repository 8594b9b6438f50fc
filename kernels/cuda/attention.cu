// Causal attention over the KV cache (bf16, or int8 with a scale per head row), flash-decoding style: the
// sequence is split into chunks; block (chunk, kv head, token) streams its chunk's keys with an online
// softmax for the kv head's whole GQA group of q heads (each K/V byte is read once per group), and a
// combine pass merges the chunks. Positions are read on the device: the grid covers max_seq, blocks past a token's
// position exit at once and chunk length follows the position, so one launch shape serves every decode
// step of a CUDA graph. (Merging in the attention kernel, by the last chunk block to finish, measured the
// same end to end on an H100 and was dropped: it needed counters kept at zero in the scratch.)
#include <cmath>
#include <type_traits>

#include "kernels/cuda/launch.cuh"

namespace gf::cuda {
namespace {
constexpr int kThreads = 256, kTile = 64, kTargetBlocks = 264;  // kTile: keys per chunk at the least; ~2 blocks per H100 SM

struct Plan {
  int64_t chunk_len, n_chunks;  // the shortest chunk; the grid's chunks (n_chunks * chunk_len >= max_seq)
  int64_t busy = 1;             // chunks a long context is spread over (per token and kv head; set at launch)
  // The chunk length for a token at position p: chunk_len, or longer once p + 1 keys would keep more than
  // `busy` chunks busy. Decode's grid covers max_seq in up to 64 chunks so that a short context spreads
  // over many blocks; at 4k context that made 2048 blocks of one 64-key tile each (47.8 us per layer on
  // an H100 for 67 MB of K/V), which fewer, longer chunks amortize. (Not rounded to tiles: 4032 keys over
  // 12 chunks took 11 chunks of 384.)
  __host__ __device__ int64_t len(int64_t p) const {
    const int64_t spread = detail::ceil_div(p + 1, busy);
    return spread > chunk_len ? spread : chunk_len;
  }
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

// Eight cache values of a head row: bf16 (16 B) or int8 (8 B), loaded raw, converted at use. int8 is
// exact without int-to-float converts: q + 128 under the float exponent of 2^23, minus 2^23 + 128.
template <bool kInt8>
using Raw8 = std::conditional_t<kInt8, uint2, uint4>;
template <bool kInt8>
__device__ __forceinline__ Raw8<kInt8> load8(const void* base, int64_t e) {
  if constexpr (kInt8) return *reinterpret_cast<const uint2*>(static_cast<const int8_t*>(base) + e);
  else return *reinterpret_cast<const uint4*>(static_cast<const bf16*>(base) + e);
}
__device__ __forceinline__ void to_float8(const uint4& v, float (&f)[8]) { detail::bf16x8(v, f); }
__device__ __forceinline__ void to_float8(const uint2& v, float (&f)[8]) {
  const uint32_t u[2] = {v.x ^ 0x80808080u, v.y ^ 0x80808080u};  // q + 128 in [1, 255] per byte
#pragma unroll
  for (int i = 0; i < 8; ++i) f[i] = __uint_as_float(__byte_perm(u[i / 4], 0x4b000000u, 0x7440 + i % 4)) - 8388736.f;
}

// Block (chunk, kv head, token). Its warps run independently (no barrier until the end): lane group j
// (L lanes, 8 values of a row each) of warp w takes rows k0 + b KW + j, b < kBatch, of every round k0
// (kWarps * KW * kBatch rows, warp w at offset w KW kBatch), all 2 kBatch K and V loads issued before
// any is used, and keeps its own online softmax per q head; lane groups merge by shuffles, warps
// through shared memory. (Tiles shared by the block, with two barriers each, kept ~8 KB per block in
// flight: the int8 cache ran at ~1.2 TB/s in the engine at 4k context.)
template <int HD, int G, bool kInt8>
__global__ void __launch_bounds__(kThreads) attention_kernel(const bf16* q, int64_t q_stride,
                                                             const int32_t* pos, KvLayer kv,
                                                             int64_t max_seq, int n_heads, int g, Plan plan,
                                                             bf16* __restrict__ out, float* __restrict__ part) {
  constexpr int L = HD / 8, KW = 32 / L, kBatch = G >= 4 ? 2 : 4, kWarps = kThreads / 32;  // G >= 4: registers
  const int c = blockIdx.x, kvh = blockIdx.y, m = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, j = lane / L, sl = lane % L;  // d-slice [8 sl, 8 sl + 8)
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // before pos, q and this step's KV row (and before the early exit below)
  const int64_t p = detail::min64(pos[m], max_seq - 1);
  const int64_t len = plan.len(p), start = c * len, end = detail::min64(start + len, p + 1);
  if (start >= end && plan.n_chunks > 1) return;  // past this token's position: the combine skips it

  const float qscale = rsqrtf(float(HD)) * 1.44269504f;  // softmax in base 2
  float qr[G][8], acc[G][8], mrun[G], lrun[G];
#pragma unroll
  for (int h = 0; h < G; ++h) {
    const int qh = min(kvh * g + h, n_heads - 1);
    float f[8];
    detail::bf16x8(*reinterpret_cast<const uint4*>(q + m * q_stride + int64_t(qh) * HD + sl * 8), f);
#pragma unroll
    for (int i = 0; i < 8; ++i) qr[h][i] = f[i] * qscale, acc[h][i] = 0.f;
    mrun[h] = -INFINITY, lrun[h] = 0.f;
  }
  const int64_t head0 = int64_t(kvh) * max_seq;  // this kv head's first row
  for (int64_t k0 = start + warp * KW * kBatch; k0 < end; k0 += kWarps * KW * kBatch) {
    Raw8<kInt8> kr[kBatch], vr[kBatch];
    float ksc[kBatch], vsc[kBatch];  // int8 row scales
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int64_t key = k0 + b * KW + j;
      if (key >= end) continue;
      kr[b] = load8<kInt8>(kv.k, (head0 + key) * HD + sl * 8);
      vr[b] = load8<kInt8>(kv.v, (head0 + key) * HD + sl * 8);
      if constexpr (kInt8) ksc[b] = kv.k_scale[head0 + key], vsc[b] = kv.v_scale[head0 + key];
    }
    float sc[kBatch][G];  // scores (base 2), -inf past the end
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const bool valid = k0 + b * KW + j < end;
      float kf[8];
      if (valid) to_float8(kr[b], kf);
#pragma unroll
      for (int h = 0; h < G; ++h) {
        float d = 0.f;
        if (valid) {
#pragma unroll
          for (int i = 0; i < 8; ++i) d += qr[h][i] * kf[i];
          if constexpr (kInt8) d *= ksc[b];
        }
#pragma unroll
        for (int o = L / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        sc[b][h] = valid ? d : -INFINITY;
      }
    }
#pragma unroll
    for (int h = 0; h < G; ++h) {
      float mb = sc[0][h];
#pragma unroll
      for (int b = 1; b < kBatch; ++b) mb = fmaxf(mb, sc[b][h]);
      const float mnew = fmaxf(mrun[h], mb);
      if (mnew == -INFINITY) continue;  // no row of this lane group yet
      const float al = exp2f(mrun[h] - mnew);
      float sum = 0.f;
#pragma unroll
      for (int b = 0; b < kBatch; ++b) sc[b][h] = exp2f(sc[b][h] - mnew), sum += sc[b][h];
      lrun[h] = lrun[h] * al + sum, mrun[h] = mnew;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[h][i] *= al;
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      if (k0 + b * KW + j >= end) continue;
      float vf[8];
      to_float8(vr[b], vf);
#pragma unroll
      for (int h = 0; h < G; ++h) {
        const float pr = kInt8 ? sc[b][h] * vsc[b] : sc[b][h];
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[h][i] += pr * vf[i];
      }
    }
  }
  // merge the lane groups of the warp (same d-slice, L lanes apart), then the warps, one q head at a time
  auto weight = [](float mi, float mx) { return mi == -INFINITY ? 0.f : exp2f(mi - mx); };
#pragma unroll
  for (int o = L; o < 32; o <<= 1) {
#pragma unroll
    for (int h = 0; h < G; ++h) {
      const float mo = __shfl_xor_sync(0xffffffffu, mrun[h], o), lo = __shfl_xor_sync(0xffffffffu, lrun[h], o);
      const float mx = fmaxf(mrun[h], mo), wa = weight(mrun[h], mx), wb = weight(mo, mx);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[h][i] = acc[h][i] * wa + __shfl_xor_sync(0xffffffffu, acc[h][i], o) * wb;
      lrun[h] = lrun[h] * wa + lo * wb, mrun[h] = mx;
    }
  }
  __shared__ float wacc[kWarps][HD], wm[kWarps][G], wl[kWarps][G];
  if (lane == 0)
#pragma unroll
    for (int h = 0; h < G; ++h) wm[warp][h] = mrun[h], wl[warp][h] = lrun[h];
#pragma unroll
  for (int h = 0; h < G; ++h) {
    if (h >= g) break;
    if (lane < L)
#pragma unroll
      for (int i = 0; i < 8; ++i) wacc[warp][sl * 8 + i] = acc[h][i];
    __syncthreads();
    const int qh = kvh * g + h;
    for (int d = threadIdx.x; d < HD; d += kThreads) {
      float mx = -INFINITY;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, wm[w][h]);
      float o = 0.f, l = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float wt = weight(wm[w][h], mx);
        o += wt * wacc[w][d], l += wt * wl[w][h];
      }
      if (plan.n_chunks == 1) {
        out[m * int64_t(n_heads) * HD + int64_t(qh) * HD + d] = __float2bfloat16(l > 0.f ? o / l : 0.f);
      } else {
        float* pp = part + ((int64_t(m) * n_heads + qh) * plan.n_chunks + c) * (HD + 2);
        pp[2 + d] = o;
        if (d == 0) pp[0] = mx, pp[1] = l;
      }
    }
    __syncthreads();  // wacc is rewritten for the next head
  }
}

// One q head's output from its chunks' (max, sum, o[hd]) records (softmax in base 2), n_valid <= 64 of
// them: warp 0 weighs the chunks (one max, one sum over lanes), then the threads take d, their loads
// independent of each other (a loop over chunks with the max inside it waited on every load).
__global__ void combine_kernel(const float* part, const int32_t* pos, int64_t max_seq,
                               int n_heads, int hd, Plan plan, bf16* __restrict__ out) {
  const int qh = blockIdx.x, m = blockIdx.y;
  detail::pdl_launch_dependents();
  detail::pdl_wait();  // part[] is the attention kernel's output
  const int64_t p = detail::min64(pos[m], max_seq - 1), len = plan.len(p);
  const int64_t n_valid = p < 0 ? 0 : (p + len) / len;  // the chunks that start at or before p
  const float* rec = part + (int64_t(m) * n_heads + qh) * plan.n_chunks * (hd + 2);
  __shared__ float w[2 * 32], sum;
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    const bool a = lane < n_valid, b = lane + 32 < n_valid;
    const float ma = a ? rec[lane * (hd + 2)] : -INFINITY, mb = b ? rec[(lane + 32) * (hd + 2)] : -INFINITY;
    const float mx = detail::warp_max(fmaxf(ma, mb));
    const float wa = a ? exp2f(ma - mx) : 0.f, wb = b ? exp2f(mb - mx) : 0.f;
    const float l = detail::warp_sum((a ? wa * rec[lane * (hd + 2) + 1] : 0.f) + (b ? wb * rec[(lane + 32) * (hd + 2) + 1] : 0.f));
    w[lane] = wa, w[lane + 32] = wb;
    if (lane == 0) sum = l;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.f;
#pragma unroll 8
    for (int64_t c = 0; c < n_valid; ++c) o += w[c] * rec[c * (hd + 2) + 2 + d];
    out[m * int64_t(n_heads) * hd + int64_t(qh) * hd + d] = __float2bfloat16(sum > 0.f ? o / sum : 0.f);
  }
}

// A long context is spread over one wave of blocks: as many busy chunks per (token, kv head) as blocks of
// this kernel fit on the GPU at once (a second, partial wave ran at 7B's 3 blocks per SM). Sets plan.busy,
// which the combine pass reads too.
template <int HD, int G, bool kInt8>
void launch_kernel(dim3 grid, const bf16* q, int64_t q_stride, const int32_t* pos, const KvLayer& kv, int64_t max_seq,
                   int n_heads, int g, Plan& plan, bf16* out, float* part, cudaStream_t s) {
  constexpr auto kernel = attention_kernel<HD, G, kInt8>;
  const int64_t resident = detail::resident_blocks<kernel>(kThreads, 0, "cuda attention occupancy");
  plan.busy = std::max<int64_t>(1, resident / (int64_t(grid.z) * grid.y));
  // plan.len(p) >= (p + 1) / busy: no position keeps more than `busy` chunks busy, so the chunks past them
  // need no blocks (a 7B decode launched 64 x 32, most exiting at once, for the 12 x 32 that can work).
  grid.x = unsigned(std::min<int64_t>(grid.x, plan.busy));
  detail::launch("cuda attention", kernel, grid, kThreads, 0, s, q, q_stride, pos, kv, max_seq, n_heads, g, plan, out,
                 part);
}

template <int HD, bool kInt8>
void launch_hd(int G, dim3 grid, const bf16* q, int64_t q_stride, const int32_t* pos, const KvLayer& kv,
               int64_t max_seq, int n_heads, int g, Plan& plan, bf16* out, float* part, cudaStream_t s) {
  switch (G) {
    case 1: return launch_kernel<HD, 1, kInt8>(grid, q, q_stride, pos, kv, max_seq, n_heads, g, plan, out, part, s);
    case 2: return launch_kernel<HD, 2, kInt8>(grid, q, q_stride, pos, kv, max_seq, n_heads, g, plan, out, part, s);
    case 4: return launch_kernel<HD, 4, kInt8>(grid, q, q_stride, pos, kv, max_seq, n_heads, g, plan, out, part, s);
    case 8: return launch_kernel<HD, 8, kInt8>(grid, q, q_stride, pos, kv, max_seq, n_heads, g, plan, out, part, s);
  }
}
}  // namespace

// Enough for any call with up to M tokens: the split plan (and so the scratch) depends on M.
int64_t attention_scratch_floats(int M, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t max_seq) {
  int64_t most = 0;
  for (int m = 1; m <= M; ++m) {
    const Plan p = make_plan(m, n_kv_heads, max_seq);
    if (p.n_chunks > 1) most = std::max(most, int64_t(m) * n_heads * p.n_chunks * (head_dim + 2));
  }
  return most;
}

void launch_attention(const bf16* q, int M, int64_t q_stride, const int32_t* pos, const KvLayer& kv,
                      int64_t max_seq, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                      bf16* out, float* scratch, int64_t scratch_floats, cudaStream_t s) {
  GF_CHECK(M > 0 && M <= 65535, "cuda attention: M must be in [1, 65535], got ", M);
  GF_CHECK(head_dim == 64 || head_dim == 128 || head_dim == 256, "cuda attention: head_dim must be 64, 128 or 256, got ",
           head_dim);
  GF_CHECK(n_kv_heads > 0 && n_heads % n_kv_heads == 0 && n_heads / n_kv_heads <= 8,
           "cuda attention: n_heads (", n_heads, ") must be a multiple of n_kv_heads (", n_kv_heads, ") with at most 8 "
           "q heads per kv head");
  GF_CHECK(max_seq > 0 && q_stride >= n_heads * head_dim,
           "cuda attention: max_seq must be > 0 and q_stride >= n_heads*head_dim");
  GF_CHECK(q && pos && kv.k && kv.v && out && (!kv.int8() || kv.v_scale), "cuda attention: null pointer");
  GF_CHECK(q_stride % 8 == 0 && reinterpret_cast<uintptr_t>(q) % 16 == 0, "cuda attention: q rows must be 16-byte aligned");
  Plan plan = make_plan(M, n_kv_heads, max_seq);  // busy: set by the kernel launch
  const int64_t need = attention_scratch_floats(M, n_heads, n_kv_heads, head_dim, max_seq);
  GF_CHECK(scratch_floats >= need && (need == 0 || scratch), "cuda attention: scratch holds ", scratch_floats,
           " floats, needs ", need, " (attention_scratch_floats)");
  GF_ASSERT(plan.n_chunks <= 2 * 32);  // combine_kernel weighs a head's chunks in one warp
  const int g = int(n_heads / n_kv_heads), G = g <= 1 ? 1 : g <= 2 ? 2 : g <= 4 ? 4 : 8;
  const dim3 grid(unsigned(plan.n_chunks), unsigned(n_kv_heads), unsigned(M));
  auto run = [&](auto hd) {
    constexpr int HD = decltype(hd)::value;
    if (kv.int8()) launch_hd<HD, true>(G, grid, q, q_stride, pos, kv, max_seq, int(n_heads), g, plan, out, scratch, s);
    else launch_hd<HD, false>(G, grid, q, q_stride, pos, kv, max_seq, int(n_heads), g, plan, out, scratch, s);
  };
  switch (head_dim) {
    case 64: run(std::integral_constant<int, 64>{}); break;
    case 128: run(std::integral_constant<int, 128>{}); break;
    case 256: run(std::integral_constant<int, 256>{}); break;
  }
  if (plan.n_chunks > 1)
    detail::launch("cuda attention combine", combine_kernel, dim3(unsigned(n_heads), unsigned(M)),
                   unsigned(std::min<int64_t>(head_dim, 256)), 0, s, scratch, pos, max_seq, int(n_heads), int(head_dim),
                   plan, out);
}

}  // namespace gf::cuda
