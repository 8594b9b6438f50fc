// Parsing and validating gptfast-tp's flags; a --config INI file supplies defaults the command line overrides.
#include "cli/options.h"

#include <boost/program_options.hpp>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace gf {

namespace po = boost::program_options;

namespace {

struct Raw {  // flags as typed, before they become CliOptions
  std::string config, prompt_ids;
  bool bf16 = false, int8 = false, int4 = false, greedy = false;
  int group_size = 0;
  bool draft_int8 = false, draft_int4 = false;
  int draft_group_size = 0;
};

// Flags in groups (model, generation, modes, output); a new feature adds its own group here.
po::options_description described(CliOptions& o, Raw& r) {
  po::options_description model("model");
  model.add_options()
      ("help,h", po::bool_switch(&o.help), "show this help")
      ("version", po::bool_switch(&o.version), "print the version")
      ("config", po::value(&r.config), "INI file of defaults for these flags (configs/*.ini); flags override it")
      ("model,m", po::value(&o.model), "model name in the store, or a shard directory")
      ("model-dir", po::value(&o.model_dir), "shard store (default $GPTFAST_MODEL_DIR, else ./models)")
      ("bf16", po::bool_switch(&r.bf16), "bf16 shards (the default format)")
      ("int8", po::bool_switch(&r.int8), "int8 weight-only shards")
      ("int4", po::bool_switch(&r.int4), "int4 weight-only shards")
      ("group-size", po::value(&r.group_size), "int4 group size: 32, 64 or 128")
      ("synthetic", po::value(&o.synthetic), "random weights of a model preset (configs/models/NAME.ini)")
      ("verify", po::bool_switch(&o.verify), "check the rank file's hash against the manifest before loading")
      ("backend", po::value(&o.backend)->default_value(o.backend), "cpu, cuda or auto")
      ("allreduce", po::value(&o.allreduce)->default_value(o.allreduce),
       "CUDA tensor-parallel all-reduce: nccl, oneshot (CUDA IPC within a node, messages <= 128 KB; NCCL above) "
       "or auto (oneshot where the GPUs allow it; the default)")
      ("threads", po::value(&o.threads), "CPU threads per rank (default cores / ranks on the node)")
      ("max-seq-len", po::value(&o.max_seq_len), "KV cache length (default min(model's, 2048))")
      ("kv-cache", po::value(&o.kv_cache)->default_value(o.kv_cache),
       "KV cache format: bf16, or int8 (one scale per head and position: half the bytes attention reads)")
      ("prefill-chunk", po::value(&o.prefill_chunk)->default_value(o.prefill_chunk), "largest prefill forward");

  po::options_description gen("generation");
  gen.add_options()
      ("prompt,p", po::value(&o.prompt), "prompt text")
      ("prompt-file", po::value(&o.prompt_file), "file of prompts, one per line")
      ("prompt-ids", po::value(&r.prompt_ids), "prompt as token ids: 1,2,3")
      ("chat", po::bool_switch(&o.chat), "wrap each prompt in the model's chat template")
      ("max-new-tokens", po::value(&o.max_new_tokens)->default_value(o.max_new_tokens), "tokens to generate")
      ("greedy", po::bool_switch(&r.greedy), "argmax decoding (same as --temperature 0)")
      ("temperature", po::value(&o.temperature)->default_value(o.temperature), "sampling temperature (0: greedy)")
      ("top-k", po::value(&o.top_k)->default_value(o.top_k), "keep the k most likely tokens (0: off)")
      ("top-p", po::value(&o.top_p)->default_value(o.top_p), "nucleus sampling mass (1: off)")
      ("seed", po::value(&o.seed)->default_value(o.seed), "sampling seed (and the synthetic weights' seed)")
      ("num-samples", po::value(&o.num_samples)->default_value(o.num_samples), "generations per prompt");

  po::options_description modes("modes (instead of a prompt)");
  modes.add_options()
      ("interactive", po::bool_switch(&o.interactive),
       "keep the model loaded; read prompts from stdin, one per line, until EOF or an empty line")
      ("perplexity", po::value(&o.perplexity), "perplexity of a UTF-8 text file, in strided windows")
      ("ppl-context", po::value(&o.ppl_context)->default_value(o.ppl_context), "perplexity window length (tokens)")
      ("ppl-stride", po::value(&o.ppl_stride)->default_value(o.ppl_stride), "perplexity window step (tokens)")
      ("bench", po::value(&o.bench), "warm up, then time N generations");

  po::options_description spec("speculative decoding (the draft runs whole on rank 0)");
  spec.add_options()
      ("draft", po::value(&o.draft), "draft model: a name in the store or a shard directory, sharded for tp=1")
      ("draft-synthetic", po::value(&o.draft_synthetic), "random draft weights of a preset (with --synthetic)")
      ("draft-int8", po::bool_switch(&r.draft_int8), "int8 draft shards")
      ("draft-int4", po::bool_switch(&r.draft_int4), "int4 draft shards")
      ("draft-group-size", po::value(&r.draft_group_size), "int4 draft group size: 32, 64 or 128")
      ("speculate-k", po::value(&o.speculate_k)->default_value(o.speculate_k), "tokens drafted per round")
      ("synthetic-acceptance", po::value(&o.synthetic_acceptance),
       "with --draft-synthetic: keep each drafted token with probability P (random weights accept nothing; "
       "this times real rounds at acceptance P, the tokens are then not the target's)");

  po::options_description out("output");
  out.add_options()
      ("json", po::bool_switch(&o.json), "one JSON object per sample (or per perplexity run) on stdout")
      ("logits-out", po::value(&o.logits_out), "write float32 logits [rows, vocab] of every step to this .npy")
      ("output,o", po::value(&o.output),
       "append the JSON records to this file (implies --json); a rerun skips the records already there");

  po::options_description d("gptfast-tp options");
  d.add(model).add(gen).add(modes).add(spec).add(out);
  return d;
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  for (std::string tok; std::getline(ss, tok, ',');) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(tok, &used);
    } catch (const std::exception&) {
    }
    GF_CHECK(used == tok.size() && v >= 0 && v <= INT32_MAX, "--prompt-ids: expected comma-separated token ids, got '",
             tok, "'");
    ids.push_back(int32_t(v));
  }
  GF_CHECK(!ids.empty(), "--prompt-ids: no ids given");
  return ids;
}

}  // namespace

std::string cli_help() {
  CliOptions o;
  Raw r;
  std::ostringstream s;
  s << "usage: mpirun -np N gptfast-tp --model NAME [--int8|--int4] --prompt TEXT [options]\n"
       "       gptfast-tp --synthetic PRESET --prompt-ids 1,2,3 [--bench N]\n\n"
    << described(o, r)
    << "\n--logits-out rows: every position fed to the model (prompt, then each generated token but the last),\n"
       "concatenated over prompts and samples in output order. Exit status: 0 ok, 2 bad usage or some prompts\n"
       "failed (error records), 1 a fatal error (the job is aborted).\n";
  return s.str();
}

CliOptions parse_cli(int argc, const char* const* argv) {
  CliOptions o;
  Raw r;
  auto d = described(o, r);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(d).run(), vm);
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      std::ifstream f(path);
      GF_CHECK(f, "--config: cannot read '", path, "'");
      po::store(po::parse_config_file(f, d), vm);  // values already set on the command line win
    }
    po::notify(vm);
  } catch (const po::error& e) {
    GF_FAIL(e.what());
  }
  if (o.help || o.version) return o;

  GF_CHECK(int(r.bf16) + int(r.int8) + int(r.int4) <= 1, "--bf16, --int8 and --int4 are exclusive");
  o.format = r.int8 ? WeightFormat::INT8 : r.int4 ? WeightFormat::INT4 : WeightFormat::BF16;
  if (vm.count("group-size")) {
    GF_CHECK(r.int4, "--group-size applies to --int4 only");
    GF_CHECK(r.group_size == 32 || r.group_size == 64 || r.group_size == 128,
             "--group-size must be 32, 64 or 128, got ", r.group_size);
    o.group_size = r.group_size;
  }
  GF_CHECK(o.model.empty() != o.synthetic.empty(), "give exactly one of --model and --synthetic");
  GF_CHECK(!(r.draft_int8 && r.draft_int4), "--draft-int8 and --draft-int4 are exclusive");
  o.draft_format = r.draft_int8 ? WeightFormat::INT8 : r.draft_int4 ? WeightFormat::INT4 : WeightFormat::BF16;
  if (vm.count("draft-group-size")) {
    GF_CHECK(r.draft_int4, "--draft-group-size applies to --draft-int4 only");
    GF_CHECK(r.draft_group_size == 32 || r.draft_group_size == 64 || r.draft_group_size == 128,
             "--draft-group-size must be 32, 64 or 128, got ", r.draft_group_size);
    o.draft_group_size = r.draft_group_size;
  }
  GF_CHECK(o.draft.empty() || o.draft_synthetic.empty(), "give only one of --draft and --draft-synthetic");
  GF_CHECK(o.draft_synthetic.empty() || !o.synthetic.empty(), "--draft-synthetic goes with --synthetic");
  GF_CHECK(o.speculate_k >= 1 && o.speculate_k <= 16, "--speculate-k must be in [1, 16], got ", o.speculate_k);
  if (vm.count("synthetic-acceptance")) {
    GF_CHECK(!o.draft_synthetic.empty(), "--synthetic-acceptance goes with --draft-synthetic (random weights only)");
    GF_CHECK(o.synthetic_acceptance >= 0 && o.synthetic_acceptance <= 1, "--synthetic-acceptance must be in [0, 1], got ",
             o.synthetic_acceptance);
  }
  if (vm.count("prompt-ids")) {
    o.prompt_ids = parse_ids(r.prompt_ids);
    o.has_prompt_ids = true;
  }
  const int n_prompts = int(vm.count("prompt")) + int(vm.count("prompt-file")) + int(o.has_prompt_ids);
  const int n_modes = int(o.interactive) + int(!o.perplexity.empty()) + int(o.bench > 0);
  GF_CHECK(n_modes <= 1, "give only one of --interactive, --perplexity and --bench");
  GF_CHECK(n_prompts <= 1, "give only one of --prompt, --prompt-file and --prompt-ids");
  GF_CHECK(n_prompts == 0 || !(o.interactive || !o.perplexity.empty()),
           o.interactive ? "--interactive" : "--perplexity", " reads its own input: drop --prompt, --prompt-file and --prompt-ids");
  GF_CHECK(n_prompts == 1 || n_modes == 1,
           "give a prompt (--prompt, --prompt-file or --prompt-ids), or one of --interactive, --perplexity, --bench");
  GF_CHECK(o.ppl_context >= 2, "--ppl-context must be >= 2, got ", o.ppl_context);
  GF_CHECK(o.ppl_stride >= 1 && o.ppl_stride <= o.ppl_context, "--ppl-stride must be in [1, --ppl-context ",
           o.ppl_context, "], got ", o.ppl_stride);
  GF_CHECK(o.logits_out.empty() || (o.perplexity.empty() && !o.interactive),
           "--logits-out does not apply to --perplexity or --interactive");
  GF_CHECK(o.output.empty() || n_modes == 0, "--output takes generation records: not with --interactive, --perplexity or --bench");
  if (!o.output.empty()) o.json = true;
  GF_CHECK(o.max_new_tokens >= 0, "--max-new-tokens must be >= 0, got ", o.max_new_tokens);
  if (r.greedy) o.temperature = 0.f;
  GF_CHECK(o.temperature >= 0.f && std::isfinite(o.temperature), "--temperature must be >= 0, got ", o.temperature);
  GF_CHECK(o.top_k >= 0, "--top-k must be >= 0, got ", o.top_k);
  GF_CHECK(o.top_p > 0.f && o.top_p <= 1.f, "--top-p must be in (0, 1], got ", o.top_p);
  GF_CHECK(o.num_samples >= 1, "--num-samples must be >= 1, got ", o.num_samples);
  GF_CHECK(o.max_seq_len >= 0, "--max-seq-len must be > 0, got ", o.max_seq_len);
  GF_CHECK(o.prefill_chunk >= 1, "--prefill-chunk must be >= 1, got ", o.prefill_chunk);
  GF_CHECK(o.threads >= 0, "--threads must be >= 0, got ", o.threads);
  GF_CHECK(o.bench >= 0, "--bench must be >= 0, got ", o.bench);
  GF_CHECK(o.backend == "auto" || o.backend == "cpu" || o.backend == "cuda", "--backend must be cpu, cuda or auto, got '",
           o.backend, "'");
  GF_CHECK(o.kv_cache == "bf16" || o.kv_cache == "int8", "--kv-cache must be bf16 or int8, got '", o.kv_cache, "'");
  GF_CHECK(o.allreduce == "auto" || o.allreduce == "nccl" || o.allreduce == "oneshot",
           "--allreduce must be auto, nccl or oneshot, got '", o.allreduce, "'");
  GF_CHECK(!o.chat || !o.has_prompt_ids, "--chat needs text prompts, not --prompt-ids");
  GF_CHECK(!o.speculative() || (o.logits_out.empty() && o.perplexity.empty()),
           "--draft does not apply to --logits-out or --perplexity (speculation changes no logits)");
  GF_CHECK(o.synthetic.empty() || (!vm.count("prompt") && !vm.count("prompt-file") && !o.chat && !o.interactive &&
                                    o.perplexity.empty()),
           "--synthetic has no tokenizer: give --prompt-ids");
  return o;
}

}  // namespace gf
