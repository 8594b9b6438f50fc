// gptfast-tp's command line (Boost.Program_options): flags, --config INI files, validation.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/weight_format.h"

namespace gf {

struct CliOptions {
  bool help = false, version = false;
  std::string model, model_dir, synthetic;  // --model or --synthetic PRESET
  WeightFormat format = WeightFormat::BF16;
  std::optional<int> group_size;            // int4 only
  std::string prompt, prompt_file;
  std::vector<int32_t> prompt_ids;          // --prompt-ids 1,2,3
  bool has_prompt_ids = false;
  int64_t max_new_tokens = 200;
  float temperature = 0.8f, top_p = 1.f;
  int top_k = 200;
  uint64_t seed = 1234;
  bool chat = false, json = false, verify = false;
  int num_samples = 1;
  int64_t max_seq_len = 0;                  // 0: min(model's, 2048)
  std::string kv_cache = "bf16";            // bf16 | int8
  int prefill_chunk = 512;
  int threads = 0;
  std::string logits_out;
  std::string output;  // --output: resumable JSON record file
  std::string backend = "auto";             // auto | cpu | cuda
  // auto | nccl | oneshot (CUDA tensor parallelism). auto: the one-shot IPC kernel for messages up to
  // 128 KB within a node, NCCL otherwise; one-shot was faster than NCCL in every run timed at tp=2 and
  // tp=4 (2026-11-26, H200: 7B int4 g32 +9% / +15%, 70B +3-8% at tp=4).
  std::string allreduce = "auto";
  int bench = 0;
  bool interactive = false;                 // prompts from stdin until EOF or an empty line
  std::string perplexity;                   // text file to score
  int64_t ppl_context = 512, ppl_stride = 256;
  // speculative decoding: a whole (tp=1) draft model on rank 0
  std::string draft, draft_synthetic;       // --draft NAME|DIR or --draft-synthetic PRESET
  WeightFormat draft_format = WeightFormat::BF16;
  std::optional<int> draft_group_size;
  int speculate_k = 5;
  double synthetic_acceptance = -1;         // --synthetic-acceptance P (with --draft-synthetic); < 0: off
  bool speculative() const { return !draft.empty() || !draft_synthetic.empty(); }
};

// Throws gf::Error (one line naming the flag) on anything malformed or contradictory.
CliOptions parse_cli(int argc, const char* const* argv);
std::string cli_help();

}  // namespace gf
