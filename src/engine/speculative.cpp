// Speculative decoding (see speculative.h): draft on rank 0, one (k+1)-token verify on every rank.
#include "engine/speculative.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "comm/comm.h"
#include "core/error.h"
#include "engine/rng.h"

namespace gf {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Inverse CDF in id order over unnormalized weights (the walk cpu::sample makes).
int32_t draw(const double* w, int64_t vocab, double u) {
  const double total = std::accumulate(w, w + vocab, 0.0);
  double cum = 0;
  int64_t last = 0;
  for (int64_t v = 0; v < vocab; ++v) {
    if (w[v] <= 0) continue;
    cum += w[v];
    last = v;
    if (cum > u * total) return int32_t(v);
  }
  return int32_t(last);  // rounding left u * total at the very end
}

// probs = the n kept entries (id(i), weight(i)), i in id order, normalized by their sum taken in that
// order; zero elsewhere. One routine for the full row and for the split sampler's candidates, so that
// both give the same probabilities bit for bit.
template <class Id, class Weight>
void normalized_probs(size_t n, Id id, Weight weight, int64_t vocab, double* probs) {
  std::fill(probs, probs + vocab, 0.0);
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += probs[id(i)] = weight(i);
  for (size_t i = 0; i < n; ++i) probs[id(i)] /= total;
}

}  // namespace

void sampling_probs(const float* logits, int64_t vocab, const cpu::SamplingParams& p, double* probs) {
  if (p.temperature == 0.f) {
    std::fill(probs, probs + vocab, 0.0);
    probs[std::max_element(logits, logits + vocab) - logits] = 1.0;  // first maximum: the lowest id
    return;
  }
  std::vector<double> w;
  const std::vector<int32_t> kept = cpu::sampling_candidates(logits, vocab, p, w);
  normalized_probs(kept.size(), [&](size_t i) { return kept[i]; }, [&](size_t i) { return w[kept[i]]; }, vocab, probs);
}

void SpeculativeDecoder::row_probs(Backend& b, int m, bool keep, double* probs) {
  const cpu::SamplingParams& p = g_.sampling;
  if (const int k = cpu::split_top_k(p); k > 0 && p.temperature != 0.f) {
    b.candidates(m, k, cand_logits_, cand_ids_);
    if (!keep) return;
    // the same (id, weight) pairs as sampling_probs gets from the full row, in the same (id) order
    const auto kept = cpu::candidate_weights(cand_logits_.data(), cand_ids_.data(), int64_t(cand_ids_.size()), vocab_, p);
    normalized_probs(kept.size(), [&](size_t i) { return kept[i].first; }, [&](size_t i) { return kept[i].second; },
                     vocab_, probs);
    return;
  }
  b.logits(m, row_.data());
  if (keep) sampling_probs(row_.data(), vocab_, p, probs);
}

Acceptance accept_rejection(const double* q, const double* p, const int32_t* drafted, int k, int64_t vocab,
                            const std::function<double()>& uniform) {
  for (int i = 0; i < k; ++i) {
    const double* qi = q + int64_t(i) * vocab;
    const double* pi = p + int64_t(i) * vocab;
    const int32_t x = drafted[i];
    if (pi[x] > 0 && uniform() * pi[x] < qi[x]) continue;  // u < q/p: keep x
    std::vector<double> residual(vocab);
    for (int64_t v = 0; v < vocab; ++v) residual[v] = std::max(0.0, qi[v] - pi[v]);
    // An all-zero residual means q == p up to rounding (rejection then has probability ~0): draw from q.
    const bool empty = std::accumulate(residual.begin(), residual.end(), 0.0) <= 0;
    return {i, draw(empty ? qi : residual.data(), vocab, uniform())};
  }
  return {k, draw(q + int64_t(k) * vocab, vocab, uniform())};
}

SpeculativeDecoder::SpeculativeDecoder(Backend& target, int64_t vocab, Backend* draft, int64_t draft_vocab,
                                       Comm& comm, const GenerateOptions& g, const SpeculativeOptions& s)
    : target_(target), draft_(comm.rank() == 0 ? draft : nullptr), comm_(comm), g_(g), s_(s), vocab_(vocab) {
  GF_CHECK(s.k >= 1, "--speculate-k must be >= 1, got ", s.k);
  GF_CHECK(s.accept != nullptr, "speculative: no acceptance rule");
  GF_CHECK(s.synthetic_acceptance <= 1, "--synthetic-acceptance must be in [0, 1], got ", s.synthetic_acceptance);
  GF_CHECK(target.max_tokens() >= s.k + 1, "--speculate-k ", s.k, ": verifying needs forwards of ", s.k + 1,
           " tokens but the target backend takes at most ", target.max_tokens());
  // What only rank 0 knows, so every rank refuses alike (no rank left waiting in a collective).
  int64_t h[3] = {draft_ != nullptr, draft_vocab, draft_ ? draft_->max_seq() : 0};
  comm.bcast(h, sizeof h, 0);
  GF_CHECK(h[0] != 0, "speculative decoding: rank 0 holds no draft model (--draft)");
  GF_CHECK(h[1] == vocab, "--draft: the draft's vocab_size is ", h[1], " but the target's is ", vocab,
           "; a draft must share the target's tokenizer");
  draft_max_seq_ = h[2];
  row_.resize(size_t(vocab));
  stats_.k = s.k;
  stats_.synthetic_acceptance = s.synthetic_acceptance;
  stats_.accept_counts.assign(size_t(s.k + 1), 0);
}

double SpeculativeDecoder::uniform() { return sample_uniform(splitmix64(g_.seed) + 1, g_.sample_index, draws_++); }

bool SpeculativeDecoder::synthetic_keep() {
  return sample_uniform(splitmix64(g_.seed) + 2, g_.sample_index, synthetic_draws_++) < s_.synthetic_acceptance;
}

int32_t SpeculativeDecoder::start(const std::vector<int32_t>& prompt) {
  const int64_t P = int64_t(prompt.size());
  GF_CHECK(P > 0, "prompt: no tokens to start from");
  GF_CHECK(P < target_.max_seq(), "prompt: ", P, " tokens do not fit --max-seq-len ", target_.max_seq(),
           " (the KV cache needs room for at least one new token)");
  GF_CHECK(P < draft_max_seq_, "prompt: ", P, " tokens do not fit the draft's KV cache of ", draft_max_seq_);
  int rows = 0;
  for (int64_t p0 = 0; p0 < P; p0 += rows) {
    rows = int(std::min<int64_t>(target_.max_tokens(), P - p0));
    target_.forward(prompt.data() + p0, rows, p0);
  }
  const int32_t first = target_.sample(rows - 1, g_.sampling, sample_uniform(g_.seed, g_.sample_index, 0));
  seq_ = prompt;
  tpos_ = P;
  dpos_ = 0;
  draws_ = synthetic_draws_ = 0;
  if (draft_) draft_catch_up();  // the prompt, now, so the prefill time holds both prefills
  seq_.push_back(first);
  return first;
}

int SpeculativeDecoder::draft_catch_up() {
  GF_CHECK(draft_ != nullptr, "speculative: only rank 0 runs the draft");
  const int64_t n = int64_t(seq_.size());
  // Nothing unseen (a second call): feed the last token again, rewriting its position, for its row.
  int rows = 0;
  for (int64_t p0 = std::min(dpos_, n - 1); p0 < n; p0 += rows) {
    rows = int(std::min<int64_t>(draft_->max_tokens(), n - p0));
    draft_->forward(seq_.data() + p0, rows, p0);
  }
  dpos_ = n;
  return rows - 1;
}

// Rank 0: k tokens from the draft; under sampling p gets their k distributions.
std::vector<int32_t> SpeculativeDecoder::draft_tokens(int k, std::vector<double>& p) {
  const bool greedy = g_.sampling.temperature == 0.f;
  if (!greedy) p.resize(size_t(k) * vocab_);
  std::vector<int32_t> d(k);
  int row = draft_catch_up();
  for (int i = 0; i < k; ++i) {
    if (i > 0) {
      draft_->forward(&d[i - 1], 1, dpos_++);
      row = 0;
    }
    if (greedy) {
      d[i] = draft_->sample(row, g_.sampling, 0.0);
    } else {
      row_probs(*draft_, row, true, p.data() + int64_t(i) * vocab_);
      d[i] = draw(p.data() + int64_t(i) * vocab_, vocab_, uniform());
    }
  }
  return d;
}

// Every rank: rows 0..k of the last target forward against the drafted tokens.
Acceptance SpeculativeDecoder::verify(const std::vector<int32_t>& drafted, const std::vector<double>& p) {
  const int k = int(drafted.size());
  const bool synthetic = s_.synthetic_acceptance >= 0;
  if (g_.sampling.temperature == 0.f) {  // local: identical logits give identical argmaxes
    for (int j = 0;; ++j) {
      const int32_t t = target_.sample(j, g_.sampling, 0.0);
      if (j == k || !(synthetic ? synthetic_keep() : t == drafted[j])) return {j, t};
    }
  }
  // Gathering rows is collective: every rank fetches all k+1; rank 0 decides and broadcasts.
  if (comm_.rank() == 0) q_.resize(size_t(k + 1) * vocab_);
  for (int j = 0; j <= k; ++j) row_probs(target_, j, comm_.rank() == 0, q_.data() + int64_t(j) * vocab_);
  int32_t msg[2] = {0, 0};
  if (comm_.rank() == 0) {
    Acceptance a;
    if (synthetic) {
      while (a.accepted < k && synthetic_keep()) ++a.accepted;
      a.next = draw(q_.data() + int64_t(a.accepted) * vocab_, vocab_, uniform());
    } else {
      a = s_.accept(q_.data(), p.data(), drafted.data(), k, vocab_, [this] { return uniform(); });
    }
    msg[0] = a.accepted, msg[1] = a.next;
  }
  comm_.bcast(msg, sizeof msg, 0);
  GF_CHECK(msg[0] >= 0 && msg[0] <= k && msg[1] >= 0 && msg[1] < vocab_, "speculative: acceptance gave (",
           msg[0], ", ", msg[1], ") for k = ", k);
  return {msg[0], msg[1]};
}

std::vector<int32_t> SpeculativeDecoder::round(int64_t limit) {
  const int64_t n = int64_t(seq_.size());  // seq_[n-1] is the one token the target has not seen
  GF_CHECK(limit >= 1, "speculative: round asked for ", limit, " tokens");
  GF_CHECK(n - 1 < target_.max_seq(), "speculative: sequence of ", n, " tokens is past --max-seq-len");
  // Room: verify writes target positions n-1 .. n-1+k; drafting writes draft positions up to n+k-2.
  const int k = int(std::max<int64_t>(
      0, std::min({int64_t(s_.k), limit - 1, target_.max_seq() - n, draft_max_seq_ - n + 1})));
  if (k == 0) {  // a plain decode step; u from the shared counter so every rank draws alike
    target_.forward(&seq_.back(), 1, n - 1);
    const int32_t t = target_.sample(0, g_.sampling, sample_uniform(g_.seed, g_.sample_index, uint64_t(n)));
    tpos_ = n;
    seq_.push_back(t);
    return {t};
  }
  double t0 = now_s();
  std::vector<int32_t> drafted(k);
  std::vector<double> p;
  if (draft_) drafted = draft_tokens(k, p);
  stats_.draft_s += now_s() - t0;
  comm_.bcast(drafted.data(), int64_t(k) * int64_t(sizeof(int32_t)), 0);

  t0 = now_s();
  std::vector<int32_t> chunk{seq_.back()};
  chunk.insert(chunk.end(), drafted.begin(), drafted.end());
  target_.forward(chunk.data(), k + 1, n - 1);
  const Acceptance a = verify(drafted, p);
  stats_.verify_s += now_s() - t0;

  ++stats_.rounds;
  ++stats_.accept_counts[a.accepted];
  stats_.drafted += k;
  stats_.accepted += a.accepted;
  std::vector<int32_t> out(drafted.begin(), drafted.begin() + a.accepted);
  out.push_back(a.next);
  seq_.insert(seq_.end(), out.begin(), out.end());
  // Rollback is bookkeeping: positions past the accepted prefix are rewritten by later forwards.
  tpos_ = n + a.accepted;
  dpos_ = std::min(dpos_, n + a.accepted);
  return out;
}

SpeculativeResult speculative_generate(Backend& target, int64_t vocab, Backend* draft, int64_t draft_vocab,
                                       Comm& comm, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                                       const SpeculativeOptions& s, const std::function<void(int32_t)>& on_token) {
  GF_CHECK(o.max_new_tokens >= 0, "--max-new-tokens must be >= 0, got ", o.max_new_tokens);
  GF_CHECK(!o.keep_logits, "--logits-out is not available with --draft (speculation verifies rows in batches)");
  SpeculativeDecoder d(target, vocab, draft, draft_vocab, comm, o, s);
  SpeculativeResult r;
  auto& ids = r.gen.ids;
  r.gen.stats.prompt_tokens = int64_t(prompt.size());
  double t0 = now_s();
  std::vector<int32_t> fresh{d.start(prompt)};
  r.gen.stats.prefill_s = now_s() - t0;
  t0 = now_s();
  r.gen.stop = "max_new_tokens";
  // The stop checks of generate(), in its order: eos, then max-new-tokens, then the KV cache's end.
  bool done = o.max_new_tokens == 0;
  while (!done) {
    for (int32_t id : fresh) {
      ids.push_back(id);
      if (on_token) on_token(id);
      if (std::find(o.eos_ids.begin(), o.eos_ids.end(), id) != o.eos_ids.end()) {
        r.gen.stop = "eos";
        done = true;
      }
      if (done || int64_t(ids.size()) == o.max_new_tokens) {
        done = true;
        break;
      }
    }
    if (done) break;
    if (int64_t(d.tokens().size()) - 1 >= target.max_seq()) {
      r.gen.stop = "max_seq_len";
      break;
    }
    fresh = d.round(o.max_new_tokens - int64_t(ids.size()));
  }
  r.gen.stats.decode_s = now_s() - t0;
  r.gen.stats.new_tokens = int64_t(ids.size());
  r.spec = d.stats();
  return r;
}

}  // namespace gf
