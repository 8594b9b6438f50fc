// sample: the next token from logits: greedy, or temperature, top-k, top-p, inverse CDF at u.
// Every choice is a pure function of (logits, params, u), so all ranks pick the same token.
// Order rules the CUDA twin must match: candidates rank by (logit descending, id ascending);
// the inverse CDF walks the kept tokens in id order and takes the first whose cumulative
// weight exceeds u * total (the last kept token if rounding leaves none).
// The split sampler (LM head split over vocab) finishes here too: sample_from_candidates repeats these
// steps over the union of the ranks' local top-k, so its token equals sample() on the gathered row.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"

namespace gf::cpu {
namespace {

// Orders token indices of `logits` by rank: logit descending, then index ascending.
auto ranks_before(const float* logits) {
  return [logits](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
}

// The top-p cut over n tokens in rank order: how many the smallest prefix reaching top_p of their
// total weight keeps (at least one). Shared by sample() and sample_from_candidates, whose tokens must
// agree bit for bit: same sums, same order.
template <class Weight>
size_t top_p_count(size_t n, float top_p, Weight weight) {
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) total += weight(i);
  double cum = 0.0;
  size_t m = 0;
  while (m < n) {
    cum += weight(m++);
    if (cum >= double(top_p) * total) break;
  }
  return m;
}

// The inverse CDF at u over n kept tokens in id order: the first whose cumulative weight exceeds
// u * total, the last when rounding leaves none.
template <class Weight>
size_t inverse_cdf(size_t n, double u, Weight weight) {
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) total += weight(i);
  const double target = u * total;
  double cum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    cum += weight(i);
    if (cum > target) return i;
  }
  return n - 1;
}

void check_params(int64_t vocab, const SamplingParams& p, double u) {
  GF_CHECK(vocab > 0, "sample: vocab ", vocab, " must be positive");
  GF_CHECK(std::isfinite(p.temperature) && p.temperature >= 0.f, "sample: temperature ",
           p.temperature, " must be finite and >= 0");
  GF_CHECK(p.top_k >= 0, "sample: top_k ", p.top_k, " must be >= 0 (0 = off)");
  GF_CHECK(p.top_p > 0.f && p.top_p <= 1.f, "sample: top_p ", p.top_p, " must be in (0, 1]");
  GF_CHECK(u >= 0.0 && u < 1.0, "sample: u ", u, " must be in [0, 1)");
}

}  // namespace

std::vector<int32_t> sampling_candidates(const float* logits, int64_t vocab, const SamplingParams& p,
                                         std::vector<double>& w) {
  // Unnormalized softmax weights in double; subtracting the max keeps exp in range. With top-k only the
  // kept ids get one (the same value): exp over a whole 32k row cost ~0.3 ms per drafted or verified token
  // in speculative sampling, where this runs on every row.
  const double mx = *std::max_element(logits, logits + vocab);
  auto weight = [&](int64_t i) { return std::exp((double(logits[i]) - mx) / p.temperature); };
  w.resize(vocab);

  std::vector<int32_t> kept(vocab);
  std::iota(kept.begin(), kept.end(), 0);
  const bool use_k = p.top_k > 0 && p.top_k < vocab, use_p = p.top_p < 1.f;
  if (use_k) {
    std::partial_sort(kept.begin(), kept.begin() + p.top_k, kept.end(), ranks_before(logits));
    kept.resize(p.top_k);
    for (int32_t v : kept) w[v] = weight(v);
  } else {
    for (int64_t i = 0; i < vocab; ++i) w[i] = weight(i);
    if (use_p) std::sort(kept.begin(), kept.end(), ranks_before(logits));
  }
  if (use_p) kept.resize(top_p_count(kept.size(), p.top_p, [&](size_t i) { return w[kept[i]]; }));
  if (use_k || use_p) std::sort(kept.begin(), kept.end());
  return kept;
}

int32_t sample(const float* logits, int64_t vocab, const SamplingParams& p, double u) {
  check_params(vocab, p, u);

  if (p.temperature == 0.f) {  // greedy: strict > keeps the lowest id among equal maxima
    int64_t best = 0;
    for (int64_t i = 1; i < vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    return int32_t(best);
  }

  std::vector<double> w;
  const std::vector<int32_t> kept = sampling_candidates(logits, vocab, p, w);
  return kept[inverse_cdf(kept.size(), u, [&](size_t i) { return w[kept[i]]; })];
}

int split_top_k(const SamplingParams& p) {
  if (p.temperature == 0.f) return 1;
  return p.top_k > 0 && p.top_k <= kMaxSplitTopK ? p.top_k : 0;
}

void local_top_k(const float* logits, int64_t n_valid, int64_t id_begin, int k, float* cand_logits,
                 int32_t* cand_ids) {
  GF_CHECK(k >= 1 && k <= kMaxSplitTopK, "local_top_k: k ", k, " outside [1, ", kMaxSplitTopK, "]");
  GF_CHECK(n_valid >= 0 && id_begin >= 0 && id_begin + n_valid <= INT32_MAX, "local_top_k: ids [", id_begin,
           ", ", id_begin + n_valid, ") must fit int32");
  const int64_t kk = std::min<int64_t>(k, n_valid);
  std::vector<int32_t> idx(static_cast<size_t>(n_valid));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(), ranks_before(logits));
  for (int64_t j = 0; j < k; ++j) {
    cand_logits[j] = j < kk ? logits[idx[j]] : -INFINITY;
    cand_ids[j] = j < kk ? int32_t(id_begin + idx[j]) : -1;
  }
}

namespace {
// The top split_top_k(p) candidate slots, ranked by (logit desc, id asc).
std::vector<int64_t> ranked_candidates(const float* cand_logits, const int32_t* cand_ids, int64_t n, int64_t vocab,
                                       const SamplingParams& p) {
  const int k = split_top_k(p);
  GF_CHECK(k > 0, "sample_from_candidates: top_k ", p.top_k, " needs the whole row (split sampling serves greedy or 0 < top_k <= ",
           kMaxSplitTopK, ")");
  std::vector<int64_t> order;  // candidate slots, ranked by (logit desc, id asc)
  for (int64_t j = 0; j < n; ++j) {
    if (cand_ids[j] < 0) continue;
    GF_CHECK(cand_ids[j] < vocab, "sample_from_candidates: candidate id ", cand_ids[j], " outside [0, ", vocab, ")");
    order.push_back(j);
  }
  const int64_t need = std::min<int64_t>(k, vocab);
  GF_CHECK(int64_t(order.size()) >= need, "sample_from_candidates: ", order.size(), " candidates, need the top ",
           need);
  auto slots_before = [&](int64_t a, int64_t b) {
    return cand_logits[a] > cand_logits[b] || (cand_logits[a] == cand_logits[b] && cand_ids[a] < cand_ids[b]);
  };
  std::partial_sort(order.begin(), order.begin() + need, order.end(), slots_before);
  order.resize(size_t(need));
  return order;
}
}  // namespace

// The steps of sampling_candidates and sample over the candidates, with the same sums in the same
// order over the same weights: the top-k in rank order for top-p, the kept ids in id order after.
std::vector<std::pair<int32_t, double>> candidate_weights(const float* cand_logits, const int32_t* cand_ids, int64_t n,
                                                          int64_t vocab, const SamplingParams& p) {
  GF_CHECK(p.temperature > 0.f, "candidate_weights: temperature ", p.temperature, " must be > 0");
  const std::vector<int64_t> order = ranked_candidates(cand_logits, cand_ids, n, vocab, p);
  const double mx = cand_logits[order[0]];  // the row's max: its top token is a candidate
  auto w = [&](int64_t j) { return std::exp((double(cand_logits[j]) - mx) / p.temperature); };
  std::vector<std::pair<int32_t, double>> kept;  // (id, weight); top-k in rank order
  for (int64_t j : order) kept.emplace_back(cand_ids[j], w(j));
  if (p.top_p < 1.f) kept.resize(top_p_count(kept.size(), p.top_p, [&](size_t i) { return kept[i].second; }));
  std::sort(kept.begin(), kept.end());
  for (size_t i = 1; i < kept.size(); ++i)
    GF_CHECK(kept[i].first != kept[i - 1].first, "sample_from_candidates: token id ", kept[i].first, " appears twice");
  return kept;
}

int32_t sample_from_candidates(const float* cand_logits, const int32_t* cand_ids, int64_t n, int64_t vocab,
                               const SamplingParams& p, double u) {
  check_params(vocab, p, u);
  if (p.temperature == 0.f) return cand_ids[ranked_candidates(cand_logits, cand_ids, n, vocab, p)[0]];
  const auto kept = candidate_weights(cand_logits, cand_ids, n, vocab, p);
  return kept[inverse_cdf(kept.size(), u, [&](size_t i) { return kept[i].second; })].first;
}

}  // namespace gf::cpu
