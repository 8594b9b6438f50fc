// Strided-window perplexity over a token sequence (the Hugging Face recipe), on any Backend.
// Every rank runs it on the same ids and gets the same result: logits rows are gathered collectives.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/backend.h"

namespace gf {

struct PerplexityOptions {
  int64_t context = 512;  // tokens per window (positions 0 .. context-1 of the KV cache)
  int64_t stride = 256;   // windows start every `stride` tokens; 0 < stride <= context
};

struct PerplexityResult {
  int64_t tokens = 0;          // tokens in the sequence
  int64_t scored = 0;          // tokens whose negative log-likelihood was summed
  int64_t windows = 0;
  int64_t forward_tokens = 0;  // tokens run through the model (windows overlap)
  double mean_nll = 0;         // nats per scored token
  double nll_stderr = 0;       // standard error of mean_nll (sample std / sqrt(scored))
  double seconds = 0;
  double ppl() const;          // exp(mean_nll)
  double ppl_stderr() const;   // delta method: ppl * nll_stderr
  double tok_s() const { return seconds > 0 ? double(scored) / seconds : 0; }
};

// Windows [begin, min(begin + context, n)) for begin = 0, stride, 2*stride, ... until one reaches the end.
// A window scores the tokens at [max(prev_end, begin + 1), end): those no earlier window scored and that
// have at least one token of context in this window. So the first window scores all but its first token,
// overlapping windows score only their last (end - prev_end) tokens, and with stride == context each
// window's first token goes unscored, exactly as the recipe does. Each score is -log softmax(logits)[t]
// in double from the row before t. `vocab` is the width of a logits row. Needs context <= b.max_seq().
PerplexityResult perplexity(Backend& b, int64_t vocab, const std::vector<int32_t>& ids, const PerplexityOptions& o);

// One window's scored range, for tests and for callers that replay the recipe.
struct PerplexityWindow {
  int64_t begin, end, first_scored;  // scores tokens first_scored .. end-1
};
std::vector<PerplexityWindow> perplexity_windows(int64_t n, const PerplexityOptions& o);

}  // namespace gf
