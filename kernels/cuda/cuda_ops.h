// The CUDA backend's ops: the twins of kernels/cpu/cpu_ops.h with bf16 activations on the device
// (fp32 accumulation), weights as QWeightView with device pointers, ids/positions as device int32
// arrays (nothing is read back on the host, so every launcher is CUDA-graph capturable).
// Every launcher checks its preconditions (gf::Error naming the op and the field) and the launch.
// Weights (embedding table, norm weights, QWeightView) are bf16 bits (uint16_t) as the shard stores them.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/weight_view.h"

namespace gf::cuda {

using bf16 = __nv_bfloat16;

// Throws gf::Error "<what>: <cuda error string>" when e != cudaSuccess.
void check_cuda(cudaError_t e, const char* what);

// cuBLAS handle + its workspace + a bf16 scratch used to dequantize int8/int4 weights for long
// prefill (M > 16). Move-only RAII; create it on the device it is used on, use from one stream at
// a time. The workspace is preallocated so cuBLAS calls can be captured in a CUDA graph.
class GemmContext {
 public:
  explicit GemmContext(int64_t dequant_scratch_bytes = 64ll << 20);
  ~GemmContext();
  GemmContext(GemmContext&& o) noexcept;
  GemmContext& operator=(GemmContext&& o) noexcept;
  GemmContext(const GemmContext&) = delete;
  GemmContext& operator=(const GemmContext&) = delete;
  cublasHandle_t handle() const { return handle_; }
  bf16* scratch() const { return scratch_; }
  int64_t scratch_bytes() const { return scratch_bytes_; }

 private:
  void release();
  cublasHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  bf16* scratch_ = nullptr;
  int64_t scratch_bytes_ = 0;
};

// x[m] = table[ids[m]] (rows of length dim). An id outside [0, vocab) gives a row of zeros.
void launch_embed(const int32_t* ids, int M, const uint16_t* table, int64_t vocab, int64_t dim, bf16* x,
                  cudaStream_t s);

// out[m] = x[m] / sqrt(mean(x[m]^2) + eps) * w. out may alias x.
void launch_rmsnorm(const bf16* x, const uint16_t* w, int M, int64_t dim, float eps, bf16* out, cudaStream_t s);

// x[m] += delta[m] (rounded to bf16, stored in x); out[m] = rmsnorm(x[m]).
void launch_add_rmsnorm(bf16* x, const bf16* delta, const uint16_t* w, int M, int64_t dim, float eps, bf16* out,
                        cudaStream_t s);

// x[m] += delta[m].
void launch_add(bf16* x, const bf16* delta, int M, int64_t dim, cudaStream_t s);

// out[M, w.rows] = x[M, w.cols] · Wᵀ in any format; fp32 accumulation (int8 at M = 1: fp16 sums within
// each 16-byte load of weights, then fp32; int4 at M = 1: integer products against x held as two int8 terms
// per 32 columns, within 1/508 of each chunk's max |x|). M <= 16: weight-only GEMV that reads each weight byte
// once (M >= 2 on the tensor cores: matmul_uses_mma); M > 16: cuBLAS (int8/int4 dequantized to bf16 in
// g's scratch).
// Alignment: bf16 cols % 8 == 0, int8 cols % 16 == 0, int4 cols % 32 == 0; all pointers 16-byte aligned.
// The float overload is for logits (no bf16 rounding before sampling).
// Weight widths (cols) the GEMVs take: a multiple of this (16-byte column runs: 8 bf16, 16 int8, 32 int4).
int matmul_col_align(WeightFormat f);
void launch_matmul(const bf16* x, int M, const QWeightView& w, bf16* out, GemmContext& g, cudaStream_t s);
void launch_matmul(const bf16* x, int M, const QWeightView& w, float* out, GemmContext& g, cudaStream_t s);

// The same product on the tensor cores (mma.sync m16n8k16, fp32 accumulation) for M <= 16; launch_matmul
// uses it where matmul_uses_mma(w, M) (2 <= M <= 16 by default; GPTFAST_GEMV=mma / =simt: always /
// never). bf16 and int8 are exact up to fp32 sums; int4 weights are dequantized to bf16 first (one
// rounding per weight, 2^-9 relative, as the cuBLAS prefill path). Needs mma_gemv_fits(w, M) (M in
// [1, 16], launch_matmul's alignment, int4 group size % 32 == 0) and x 16-byte aligned.
bool mma_gemv_fits(const QWeightView& w, int M);
bool matmul_uses_mma(const QWeightView& w, int M);
void launch_matmul_mma(const bf16* x, int M, const QWeightView& w, bf16* out, cudaStream_t s);
void launch_matmul_mma(const bf16* x, int M, const QWeightView& w, float* out, cudaStream_t s);

// One layer's KV cache: k and v [n_kv_heads][max_seq][head_dim] as bf16, or (int8) as int8 q with
// k_scale / v_scale [n_kv_heads][max_seq] float, each head row q * s (cpu::round_kv_int8); scales null for bf16.
struct KvLayer {
  void *k = nullptr, *v = nullptr;
  float *k_scale = nullptr, *v_scale = nullptr;
  bool int8() const { return k_scale != nullptr; }
};

// cpu::rope on the n_heads q heads and n_kv_heads k heads at the start of each QKV row (in place), then
// cpu::kv_write of the rotated k heads and the v heads after them into one layer's cache (int8: each head
// row rounded by cpu::round_kv_int8 from its bf16 values). pos [M] and inv_freq [head_dim/2] (double) on
// the device; angles in double. Positions outside [0, max_seq) are rotated but not cached (the host
// checks positions first).
void launch_rope_kv_write(bf16* qkv, int M, int64_t row_stride, int64_t n_heads, int64_t n_kv_heads,
                          int64_t head_dim, const int32_t* pos, const double* inv_freq, int64_t max_seq,
                          const KvLayer& kv, cudaStream_t s);

// Causal attention as cpu::attention (token m sees cache positions [0, pos[m]]), split over the
// sequence (flash-decoding) with a combine pass. head_dim in {64, 128, 256}; n_heads / n_kv_heads <= 8.
// scratch: device floats, at least attention_scratch_floats(M, ...) of them (may be 0 -> nullptr ok).
int64_t attention_scratch_floats(int M, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t max_seq);
void launch_attention(const bf16* q, int M, int64_t q_stride, const int32_t* pos, const KvLayer& kv,
                      int64_t max_seq, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                      bf16* out, float* scratch, int64_t scratch_floats, cudaStream_t s);

// out[m][i] = silu(h13[m][i]) * h13[m][hidden + i].
void launch_silu_mul(const bf16* h13, int M, int64_t hidden, bf16* out, cudaStream_t s);

// token[0] = argmax(logits[0, vocab)) (lowest id wins ties).
void launch_argmax(const float* logits, int64_t vocab, int32_t* token, cudaStream_t s);
// token[0] = cpu::sample(logits, vocab, p, u[0]) with u read on the device. Greedy when temperature 0.
// One block; the top-k / top-p cut is found by a radix select on the float bits.
void launch_sample(const float* logits, int64_t vocab, const cpu::SamplingParams& p, const double* u,
                   int32_t* token, cudaStream_t s);

// The split sampler's device half (cpu_ops.h: split_top_k, local_top_k, sample_from_candidates). A
// candidate is one uint64, (order key of the logit << 32) | token id: ascending = (logit desc, id asc),
// the logit recovered exactly from the key; ~0 marks an empty slot.
// cand[0, k) = the k best of logits[0, n_valid) (token id = id_begin + i), ascending. Blocks over slices of
// the row, then one on their union, in scratch[0, scratch_n): local_top_k_scratch(n_valid) words (any k).
int64_t local_top_k_scratch(int64_t n_valid);
void launch_local_top_k(const float* logits, int64_t n_valid, int64_t id_begin, int k, uint64_t* cand,
                        uint64_t* scratch, int64_t scratch_n, cudaStream_t s);
// token[0] = cpu::sample_from_candidates over n_lists ascending lists cand[r*k, (r+1)*k) (each rank's
// launch_local_top_k, all-gathered), k = cpu::split_top_k(p); u read on the device (unused when greedy).
// Greedy is exact; otherwise sums run in another order than the CPU's (rounding-level differences).
void launch_sample_from_candidates(const uint64_t* cand, int n_lists, int k, int64_t vocab,
                                   const cpu::SamplingParams& p, const double* u, int32_t* token, cudaStream_t s);
// Host: n packed candidates -> (logit, id) pairs as cpu::local_top_k gives them ((-inf, -1) for an empty slot).
void unpack_candidates(const uint64_t* packed, int64_t n, float* logits, int32_t* ids);

// Synthetic data from a hash of (seed, index): the same values for any launch shape.
void launch_fill_uniform(bf16* out, int64_t n, uint64_t seed, float lo, float hi, cudaStream_t s);
void launch_fill_normal(bf16* out, int64_t n, uint64_t seed, float mean, float stddev, cudaStream_t s);
void launch_fill_uniform(float* out, int64_t n, uint64_t seed, float lo, float hi, cudaStream_t s);
// Fills a weight in its format (w's pointers must be writable device memory): values ~ N(0, stddev)
// after dequantization; int8 q uniform in [-127, 127], int4 q uniform in [0, 15] with scale/zero set
// so w spans about ±2.5 stddev.
void launch_fill_random_weight(const QWeightView& w, uint64_t seed, float stddev, cudaStream_t s);

// Conversions (n elements).
void launch_float_to_bf16(const float* in, int64_t n, bf16* out, cudaStream_t s);
void launch_bf16_to_float(const bf16* in, int64_t n, float* out, cudaStream_t s);

}  // namespace gf::cuda
