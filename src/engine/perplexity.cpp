// Strided-window perplexity (see perplexity.h).
#include "engine/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace gf {

double PerplexityResult::ppl() const { return std::exp(mean_nll); }
double PerplexityResult::ppl_stderr() const { return ppl() * nll_stderr; }

std::vector<PerplexityWindow> perplexity_windows(int64_t n, const PerplexityOptions& o) {
  GF_CHECK(o.context >= 2, "--ppl-context must be >= 2, got ", o.context);
  GF_CHECK(o.stride >= 1 && o.stride <= o.context, "--ppl-stride must be in [1, --ppl-context ", o.context, "], got ",
           o.stride);
  std::vector<PerplexityWindow> w;
  int64_t prev_end = 0;
  for (int64_t begin = 0; begin < n; begin += o.stride) {
    const int64_t end = std::min(begin + o.context, n);
    w.push_back({begin, end, std::max(prev_end, begin + 1)});
    prev_end = end;
    if (end == n) break;
  }
  return w;
}

namespace {

// -log softmax(row)[target], in double: logsumexp around the row's maximum.
double nll_of(const float* row, int64_t vocab, int32_t target) {
  const double mx = *std::max_element(row, row + vocab);
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - mx);
  return mx + std::log(sum) - double(row[target]);
}

}  // namespace

PerplexityResult perplexity(Backend& b, int64_t vocab, const std::vector<int32_t>& ids, const PerplexityOptions& o) {
  const int64_t n = int64_t(ids.size());
  GF_CHECK(n >= 2, "perplexity: the text encodes to ", n, " tokens, at least 2 are needed");
  GF_CHECK(o.context <= b.max_seq(), "--ppl-context ", o.context, " exceeds the KV cache length ", b.max_seq(),
           " (raise --max-seq-len)");
  const auto t0 = std::chrono::steady_clock::now();
  PerplexityResult r;
  r.tokens = n;
  std::vector<float> row(static_cast<size_t>(vocab));
  double mean = 0, m2 = 0;  // Welford: a sum of squares would cancel badly for ~constant NLL
  for (const PerplexityWindow& w : perplexity_windows(n, o)) {
    ++r.windows;
    // The window from position 0 in chunks; row m of a chunk at window offset c0 predicts token begin+c0+m+1.
    for (int64_t c0 = 0; w.begin + c0 < w.end; ) {
      const int rows = int(std::min<int64_t>(b.max_tokens(), w.end - w.begin - c0));
      b.forward(ids.data() + w.begin + c0, rows, c0);
      r.forward_tokens += rows;
      for (int m = 0; m < rows; ++m) {
        const int64_t target = w.begin + c0 + m + 1;
        if (target < w.first_scored || target >= w.end) continue;
        b.logits(m, row.data());  // a collective: every rank reaches the same rows
        const double x = nll_of(row.data(), vocab, ids[size_t(target)]);
        ++r.scored;
        const double d = x - mean;
        mean += d / double(r.scored);
        m2 += d * (x - mean);
      }
      c0 += rows;
    }
  }
  r.mean_nll = mean;
  r.nll_stderr = r.scored > 1 ? std::sqrt(m2 / double(r.scored - 1) / double(r.scored)) : 0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace gf
