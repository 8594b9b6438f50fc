// The generation loop (see generate.h).
#include "engine/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "engine/rng.h"

namespace gf {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

GenerateResult generate(Backend& b, int64_t vocab, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                        const std::function<void(int32_t)>& on_token) {
  GF_CHECK(!prompt.empty(), "prompt: no tokens to start from");
  GF_CHECK(int64_t(prompt.size()) < b.max_seq(), "prompt: ", prompt.size(), " tokens do not fit --max-seq-len ",
           b.max_seq(), " (the KV cache needs room for at least one new token)");
  GF_CHECK(o.max_new_tokens >= 0, "--max-new-tokens must be >= 0, got ", o.max_new_tokens);
  GenerateResult r;
  const int64_t P = int64_t(prompt.size());
  r.stats.prompt_tokens = P;
  auto keep = [&](int rows) {  // logits gathering is a collective: every rank calls it alike
    if (!o.keep_logits) return;
    r.logits.resize(size_t((r.logit_rows + rows) * vocab));
    for (int m = 0; m < rows; ++m, ++r.logit_rows) b.logits(m, r.logits.data() + r.logit_rows * vocab);
  };

  // Prefill in chunks of max_tokens; the last chunk's last row gives the first token.
  double t0 = now_s();
  int rows = 0;
  for (int64_t p0 = 0; p0 < P; p0 += rows) {
    rows = int(std::min<int64_t>(b.max_tokens(), P - p0));
    b.forward(prompt.data() + p0, rows, p0);
    keep(rows);
  }
  r.stats.prefill_s = now_s() - t0;

  auto is_eos = [&](int32_t id) { return std::find(o.eos_ids.begin(), o.eos_ids.end(), id) != o.eos_ids.end(); };
  t0 = now_s();
  int64_t pos = P;  // position of the next token fed to the model
  int last_row = rows - 1;
  r.stop = "max_new_tokens";
  while (int64_t(r.ids.size()) < o.max_new_tokens) {
    const double u = sample_uniform(o.seed, o.sample_index, r.ids.size());
    const int32_t id = b.sample(last_row, o.sampling, u);
    r.ids.push_back(id);
    if (on_token) on_token(id);
    if (is_eos(id)) {
      r.stop = "eos";
      break;
    }
    if (int64_t(r.ids.size()) == o.max_new_tokens) break;
    if (pos >= b.max_seq()) {
      r.stop = "max_seq_len";
      break;
    }
    b.forward(&id, 1, pos++);
    keep(1);
    last_row = 0;
  }
  r.stats.decode_s = now_s() - t0;
  r.stats.new_tokens = int64_t(r.ids.size());
  return r;
}

}  // namespace gf
