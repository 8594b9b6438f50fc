// The CPU backend's ops: fp32 activations, bf16 / int8 / int4 weights, OpenMP threads.
// These are the reference every CUDA kernel is checked against (kernels/cuda/cuda_ops.h has the twins).
// Shapes: M = tokens in the batch (1 for decode), activations row-major [M, width].
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/weight_view.h"

namespace gf::cpu {

// x[m] = table[ids[m]] (bf16 rows of length dim); ids must be in [0, vocab).
void embed(const int32_t* ids, int M, const uint16_t* table, int64_t vocab, int64_t dim, float* x);

// out[m] = x[m] / sqrt(mean(x[m]^2) + eps) * w  (w bf16, length dim). out may alias x.
void rmsnorm(const float* x, const uint16_t* w, int M, int64_t dim, float eps, float* out);

// x[m] += delta[m]; out[m] = rmsnorm(x[m]) (the residual add fused with the next norm).
void add_rmsnorm(float* x, const float* delta, const uint16_t* w, int M, int64_t dim, float eps, float* out);

// x[m] += delta[m].
void add(float* x, const float* delta, int M, int64_t dim);

// out[M, w.rows] = x[M, w.cols] · Wᵀ, weights dequantized on the fly, fp32 accumulation.
void matmul(const float* x, int M, const QWeightView& w, float* out);

// Rotate-half RoPE (Hugging Face's q/k order) in place on n_heads heads of head_dim that start at
// x + m*row_stride: pair (i, i + head_dim/2) rotated by angle pos[m] * inv_freq[i].
void rope(float* x, int M, int64_t row_stride, int64_t n_heads, int64_t head_dim, const int32_t* pos,
          const double* inv_freq);

// Writes k and v of each token into one layer's cache at its position.
// k, v: rows of n_kv_heads*head_dim at k + m*row_stride, v + m*row_stride.
// cache layout: [n_kv_heads][max_seq][head_dim].
void kv_write(const float* k, const float* v, int M, int64_t row_stride, const int32_t* pos,
              int64_t n_kv_heads, int64_t head_dim, int64_t max_seq, float* k_cache, float* v_cache);

// The int8 KV cache's rounding of one head row x[0, n) in place: x = q * s with s = max|x| / 127 and
// q = rint(x * (127 / max|x|)) in [-127, 127] (all zero when max|x| is 0). The CUDA cache stores q as
// int8 and s as float per (kv head, position); the CPU cache keeps q * s in fp32, the same values.
void round_kv_int8(float* x, int64_t n);

// Causal attention: token m's q heads (at q + m*q_stride) attend to cache positions [0, pos[m]];
// q head h uses kv head h / (n_heads / n_kv_heads). out: [M, n_heads*head_dim]. Scale 1/sqrt(head_dim).
void attention(const float* q, int M, int64_t q_stride, const int32_t* pos, const float* k_cache,
               const float* v_cache, int64_t max_seq, int64_t n_heads, int64_t n_kv_heads,
               int64_t head_dim, float* out);

// out[m][i] = silu(h13[m][i]) * h13[m][hidden + i]   (h13 rows: w1 part, then w3 part).
void silu_mul(const float* h13, int M, int64_t hidden, float* out);

struct SamplingParams {
  float temperature = 0.f;  // 0: greedy (argmax; the lowest id wins ties)
  int top_k = 0;            // 0: off
  float top_p = 1.f;        // 1: off
};
// Picks a token from logits[0, vocab): temperature, then top-k, then top-p (nucleus), then the
// inverse CDF at u in [0, 1). Deterministic in (logits, params, u): every rank gets the same token.
// The rule the CUDA twin must follow exactly: candidates rank by (logit descending, id ascending) for
// top-k / top-p; the final pick walks the kept tokens in id order and takes the first whose running
// weight exceeds u * total.
int32_t sample(const float* logits, int64_t vocab, const SamplingParams& p, double u);

// What sample() draws from when temperature > 0: the kept ids in ascending order (after top-k, then
// top-p) and their unnormalized softmax weights at that temperature, w[id] (w holds vocab entries; with
// top-k only the kept ones are set). Shared with speculative sampling, whose acceptance rule needs the
// very same distribution.
std::vector<int32_t> sampling_candidates(const float* logits, int64_t vocab, const SamplingParams& p,
                                         std::vector<double>& w);

// The split sampler: with the LM head split over vocab, each rank sends only its best few logits.
// Exact for greedy and for 0 < top_k <= kMaxSplitTopK: the union of every rank's local top-k holds the
// global top-k, and top-p and the inverse CDF only ever look inside the top-k. Without top-k the inverse
// CDF sums the whole vocabulary, and only the gathered row keeps that sum in one (tp-invariant) order.
constexpr int kMaxSplitTopK = 1024;
// Candidates per rank for p: 1 when greedy, top_k when 0 < top_k <= kMaxSplitTopK, else 0 (gather the row).
int split_top_k(const SamplingParams& p);
// A rank's k best tokens of logits[0, n_valid) (token id = id_begin + i) by (logit desc, id asc), as
// (logit, id) pairs in that order; slots past n_valid hold (-inf, -1).
void local_top_k(const float* logits, int64_t n_valid, int64_t id_begin, int k, float* cand_logits,
                 int32_t* cand_ids);
// sample(full row, vocab, p, u), bit for bit, from n candidates (any order; id -1 = empty) that hold
// every token of the row's top split_top_k(p) (the whole vocab when top_k >= vocab), as the
// concatenated local_top_k of all ranks do.
int32_t sample_from_candidates(const float* cand_logits, const int32_t* cand_ids, int64_t n, int64_t vocab,
                               const SamplingParams& p, double u);
// What sample_from_candidates draws from (temperature > 0): the kept (id, unnormalized weight) pairs in id
// order, the ids and weights sampling_candidates gives over the full row.
std::vector<std::pair<int32_t, double>> candidate_weights(const float* cand_logits, const int32_t* cand_ids, int64_t n,
                                                          int64_t vocab, const SamplingParams& p);

}  // namespace gf::cpu
