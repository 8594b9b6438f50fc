// Speculative decoding: rank 0 drafts k tokens with a small whole (tp=1) model, every rank verifies
// them with one (k+1)-token target forward, and acceptance keeps the output exactly the target's:
// token for token under greedy, in distribution under sampling (the rejection rule of Leviathan et
// al. 2023 / Chen et al. 2023).
//
// Who decides: under greedy every rank decides locally (the target's logits are identical on every
// rank, so so are the argmaxes). Under sampling only rank 0 holds the draft's probabilities, so rank 0
// decides and broadcasts (n_accepted, next token) once per round: one 8-byte broadcast instead of
// shipping k vocab-sized draft rows to every rank.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/generate.h"

namespace gf {

class Comm;

// The outcome of verifying one round: `accepted` drafted tokens kept, then `next` from the target.
struct Acceptance {
  int accepted = 0;
  int32_t next = 0;
};

// The sampling acceptance rule, run on rank 0. q: k+1 rows of target probabilities, p: k rows of
// draft probabilities (vocab each, after temperature / top-k / top-p), drafted: the k tokens drawn
// from p; uniform() returns fresh u in [0, 1).
using AcceptFn = Acceptance (*)(const double* q, const double* p, const int32_t* drafted, int k, int64_t vocab,
                                const std::function<double()>& uniform);

// The exact rule: accept drafted[i] with probability min(1, q/p); at the first rejection draw from
// max(0, q - p) normalized; if all k pass, draw the bonus token from q's last row.
Acceptance accept_rejection(const double* q, const double* p, const int32_t* drafted, int k, int64_t vocab,
                            const std::function<double()>& uniform);

// probs[v] = the distribution cpu::sample draws from (temperature, then top-k, then top-p; ties
// ranked by lower id), normalized. temperature 0 gives a one-hot argmax.
void sampling_probs(const float* logits, int64_t vocab, const cpu::SamplingParams& p, double* probs);

struct SpeculativeOptions {
  int k = 5;                          // tokens drafted per round (--speculate-k)
  AcceptFn accept = accept_rejection; // sampling rule; tests swap in a wrong one to show they can fail
  // --synthetic-acceptance P >= 0 (random weights, benchmarks only): each drafted token is kept with
  // probability P, independently, whatever the target says, and the token after the kept ones is the
  // target's own. Random weights accept nothing; this times rounds at a chosen acceptance with every
  // kernel, copy and rollback of a real round (the output is then not the target's).
  double synthetic_acceptance = -1;
};

struct SpeculativeStats {
  int k = 0;
  // accept_counts[n]: rounds whose verify accepted n drafted tokens (n = 0..k). Rounds shortened
  // near max-new-tokens / max-seq-len count too; single-token steps (no room to draft) do not.
  std::vector<int64_t> accept_counts;
  int64_t rounds = 0, drafted = 0, accepted = 0;
  double draft_s = 0, verify_s = 0;  // rank 0's drafting time; target forwards plus acceptance
  double synthetic_acceptance = -1;  // SpeculativeOptions' (>= 0: these rounds' acceptance was drawn)
  double mean_accepted() const { return rounds ? double(accepted) / double(rounds) : 0; }
  // Tokens each target forward yields on average (accepted drafts + the target's own token).
  double tokens_per_round() const { return rounds ? double(accepted + rounds) / double(rounds) : 0; }
};

struct SpeculativeResult {
  GenerateResult gen;  // ids, stop reason and timings as generate() gives them (no logits kept)
  SpeculativeStats spec;
};

// One prompt's speculative state, a round at a time (speculative_generate drives it; tests step it).
// Every rank of `comm` constructs it and makes the same calls. `draft` and `draft_vocab` matter on
// rank 0 only (pass nullptr / 0 elsewhere); rank 0 broadcasts what the others must know, so a
// missing draft or a vocab mismatch is the same error on every rank, before any forward.
class SpeculativeDecoder {
 public:
  SpeculativeDecoder(Backend& target, int64_t vocab, Backend* draft, int64_t draft_vocab, Comm& comm,
                     const GenerateOptions& g, const SpeculativeOptions& s);
  // Prefills both models with the prompt; returns the first token (the target's, as generate() draws it).
  int32_t start(const std::vector<int32_t>& prompt);
  // One round drafting min(k, limit - 1) tokens (limit >= 1: how many tokens the caller still wants;
  // fewer near the KV cache's end): returns the accepted drafts followed by the target's next token.
  std::vector<int32_t> round(int64_t limit);
  // Rank 0: feeds the draft the tokens of the sequence it has not seen; returns the row of that
  // forward whose logits predict the token after the sequence. round() calls it first.
  int draft_catch_up();

  const std::vector<int32_t>& tokens() const { return seq_; }  // prompt + generated so far
  int64_t target_cached() const { return tpos_; }              // KV positions valid in the target
  const SpeculativeStats& stats() const { return stats_; }

 private:
  double uniform();  // rank 0's draws (draft sampling, acceptance): a stream apart from generate()'s
  bool synthetic_keep();  // --synthetic-acceptance's draw: the same on every rank (its own counter)
  std::vector<int32_t> draft_tokens(int k, std::vector<double>& p);
  Acceptance verify(const std::vector<int32_t>& drafted, const std::vector<double>& p);
  // probs = row m's distribution under g_.sampling (collective on a tensor-parallel backend; every rank
  // calls it, only `keep` ranks fill probs). From the split sampler's candidates where top-k allows:
  // the full row's bits and sort on the host cost ~0.25 ms a row, on every drafted and verified token.
  void row_probs(Backend& b, int m, bool keep, double* probs);

  Backend& target_;
  Backend* draft_;
  Comm& comm_;
  GenerateOptions g_;
  SpeculativeOptions s_;
  int64_t vocab_, draft_max_seq_ = 0;
  std::vector<int32_t> seq_;
  int64_t tpos_ = 0, dpos_ = 0;  // tokens of seq_ whose KV the target / draft hold
  uint64_t draws_ = 0, synthetic_draws_ = 0;
  std::vector<float> row_, cand_logits_;
  std::vector<int32_t> cand_ids_;
  std::vector<double> q_;
  SpeculativeStats stats_;
};

// generate() with speculation: same options, stops and on_token stream; every rank returns the
// same ids. Greedy output equals generate()'s token for token.
SpeculativeResult speculative_generate(Backend& target, int64_t vocab, Backend* draft, int64_t draft_vocab,
                                       Comm& comm, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                                       const SpeculativeOptions& s,
                                       const std::function<void(int32_t)>& on_token = {});

}  // namespace gf
