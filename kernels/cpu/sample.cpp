// sample: the next token from logits: greedy, or temperature, top-k, top-p, inverse CDF at u.
// Every choice is a pure function of (logits, params, u), so all ranks pick the same token.
// Order rules the CUDA twin must match: candidates rank by (logit descending, id ascending);
// the inverse CDF walks the kept tokens in id order and takes the first whose cumulative
// weight exceeds u * total (the last kept token if rounding leaves none).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"

namespace gf::cpu {

std::vector<int32_t> sampling_candidates(const float* logits, int64_t vocab, const SamplingParams& p,
                                         std::vector<double>& w) {
  // Unnormalized softmax weights in double; subtracting the max keeps exp in range.
  const double mx = *std::max_element(logits, logits + vocab);
  w.resize(vocab);
  for (int64_t i = 0; i < vocab; ++i) w[i] = std::exp((double(logits[i]) - mx) / p.temperature);

  std::vector<int32_t> kept(vocab);
  std::iota(kept.begin(), kept.end(), 0);
  auto ranks_before = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  const bool use_k = p.top_k > 0 && p.top_k < vocab, use_p = p.top_p < 1.f;
  if (use_k) {
    std::partial_sort(kept.begin(), kept.begin() + p.top_k, kept.end(), ranks_before);
    kept.resize(p.top_k);
  } else if (use_p) {
    std::sort(kept.begin(), kept.end(), ranks_before);
  }
  if (use_p) {  // smallest prefix of the (top-k renormalized) distribution reaching top_p; at least one
    double total = 0.0;
    for (int32_t id : kept) total += w[id];
    double cum = 0.0;
    size_t n = 0;
    while (n < kept.size()) {
      cum += w[kept[n++]];
      if (cum >= double(p.top_p) * total) break;
    }
    kept.resize(n);
  }
  if (use_k || use_p) std::sort(kept.begin(), kept.end());
  return kept;
}

int32_t sample(const float* logits, int64_t vocab, const SamplingParams& p, double u) {
  GF_CHECK(vocab > 0, "sample: vocab ", vocab, " must be positive");
  GF_CHECK(std::isfinite(p.temperature) && p.temperature >= 0.f, "sample: temperature ",
           p.temperature, " must be finite and >= 0");
  GF_CHECK(p.top_k >= 0, "sample: top_k ", p.top_k, " must be >= 0 (0 = off)");
  GF_CHECK(p.top_p > 0.f && p.top_p <= 1.f, "sample: top_p ", p.top_p, " must be in (0, 1]");
  GF_CHECK(u >= 0.0 && u < 1.0, "sample: u ", u, " must be in [0, 1)");

  if (p.temperature == 0.f) {  // greedy: strict > keeps the lowest id among equal maxima
    int64_t best = 0;
    for (int64_t i = 1; i < vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    return int32_t(best);
  }

  std::vector<double> w;
  const std::vector<int32_t> kept = sampling_candidates(logits, vocab, p, w);
  double total = 0.0;
  for (int32_t id : kept) total += w[id];
  const double target = u * total;
  double cum = 0.0;
  for (int32_t id : kept) {
    cum += w[id];
    if (cum > target) return id;
  }
  return kept.back();
}

}  // namespace gf::cpu
