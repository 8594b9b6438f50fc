// The generation loop: prefill in chunks, decode, stop, with counter-based sampling and stats.
// Every rank runs it on the same tokens and draws the same tokens; no per-token broadcast.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/backend.h"

namespace gf {

struct GenerateOptions {
  int64_t max_new_tokens = 200;
  cpu::SamplingParams sampling;  // temperature 0: greedy
  uint64_t seed = 0;
  uint64_t sample_index = 0;     // which of --num-samples (a separate random stream each)
  std::vector<int64_t> eos_ids;  // stop after any of these (the eos id is kept in the output)
  bool keep_logits = false;      // collect the logits rows (see GenerateResult::logits)
};

struct GenerateStats {
  int64_t prompt_tokens = 0, new_tokens = 0;
  double prefill_s = 0, decode_s = 0;  // decode: every forward after the prefill
  double prefill_tok_s() const { return prefill_s > 0 ? prompt_tokens / prefill_s : 0; }
  // Decode forwards = new_tokens - 1 (the first token comes from the prefill).
  double decode_tok_s() const { return decode_s > 0 && new_tokens > 1 ? (new_tokens - 1) / decode_s : 0; }
};

struct GenerateResult {
  std::vector<int32_t> ids;  // generated ids (without the prompt)
  std::string stop;          // "eos", "max_new_tokens" or "max_seq_len"
  GenerateStats stats;
  // With keep_logits: one row of vocab_size floats per position fed to the model, i.e. the
  // prompt then every generated token but the last: row i is the distribution for token i+1.
  std::vector<float> logits;
  int64_t logit_rows = 0;
};

// `on_token` (may be empty) sees each new id as it is drawn (rank 0 streams text from it).
// `vocab` is the model's vocab_size (the width of a logits row).
GenerateResult generate(Backend& b, int64_t vocab, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                        const std::function<void(int32_t)>& on_token = {});

}  // namespace gf
