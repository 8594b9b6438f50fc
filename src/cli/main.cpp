// gptfast-tp: load this rank's shard (or a synthetic model), then generate, stream, report.
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <thread>
#include <unistd.h>

#include <vector>

#include "cli/draft.h"
#include "cli/options.h"
#include "cli/record_log.h"
#include "cli/text_io.h"
#include "comm/comm.h"
#include "core/error.h"
#include "engine/backend.h"
#include "engine/generate.h"
#include "engine/perplexity.h"
#include "engine/speculative.h"
#include "engine/synthetic.h"
#include "model/shard_store.h"
#include "tokenizer/tokenizer.h"
#ifdef GPTFAST_WITH_CUDA
#include "engine/cuda/cuda_backend.h"
#endif

namespace gf {
namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// The rank before MPI is up (to print usage errors once): the launchers' environment.
int launcher_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"})
    if (const char* s = std::getenv(v)) return std::atoi(s);
  return 0;
}

void print_error(int rank, int world, const std::string& what, const std::string& hint = {}) {
  const std::string who = world > 1 ? "[rank " + std::to_string(rank) + "] " : "";
  std::fprintf(stderr, "gptfast-tp: error: %s%s\n", who.c_str(), what.c_str());
  if (!hint.empty()) std::fprintf(stderr, "hint: %s\n", hint.c_str());
  std::fflush(stderr);
}

// Runs a step whose failure may be one rank's alone (file, memory, device). Every rank learns who
// failed from one MPI_Allgather; when rank 0 failed (then usually every rank failed alike, e.g. a
// missing shard set) only rank 0 prints, else each failing rank prints its own line. The job then
// ends after a barrier (so the lines are out before MPI_Abort): nobody is left in a later collective.
template <class F>
void agreed(Comm& comm, F&& step) {
  std::string what, hint;
  try {
    step();
  } catch (const Error& e) {
    what = e.what(), hint = e.hint();
  } catch (const std::exception& e) {
    what = e.what();
    if (what.empty()) what = "unknown error";
  }
  const int failed = what.empty() ? 0 : 1;
  std::vector<int> all(comm.size());
  MPI_Allgather(&failed, 1, MPI_INT, all.data(), 1, MPI_INT, comm.mpi());
  if (std::find(all.begin(), all.end(), 1) == all.end()) return;
  if (failed && (comm.rank() == 0 || !all[0])) print_error(comm.rank(), comm.size(), what, hint);
  comm.barrier();
  comm.abort(1);
}

// Root attributes the ranks must share: architecture, format and tokenizer.
uint64_t shard_identity(const ModelConfig& c, const FormatSpec& f, const std::string& tokenizer_json) {
  std::string s = c.name + "|" + f.name();
  for (int64_t v : {c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.hidden_dim, c.vocab_size, c.max_seq_len,
                    c.bos_id, int64_t(c.tie_word_embeddings), c.rope_scaling.original_max_position})
    s += "|" + std::to_string(v);
  for (double v : {c.norm_eps, c.rope_theta, c.rope_scaling.factor, c.rope_scaling.low_freq_factor,
                   c.rope_scaling.high_freq_factor})
    s += "|" + std::to_string(v);
  s += "|" + c.rope_scaling.type;
  for (int64_t e : c.eos_ids) s += "|e" + std::to_string(e);
  return XXH3_64bits(s.data(), s.size()) ^ XXH3_64bits(tokenizer_json.data(), tokenizer_json.size());
}

struct Prompt {
  int64_t index = 0, line = 0;  // line: in --prompt-file (0 otherwise)
  std::vector<int32_t> ids;
  std::string error;            // set: this prompt is reported, not run
};

struct Model {
  ModelConfig cfg;
  HostShard shard;  // the CPU backend reads its weights from here
  std::optional<Tokenizer> tok;
  std::string chat_template;       // kept apart: the CUDA backend drops the HostShard after upload
  std::vector<int64_t> stop_ids;   // eos ids, plus the chat template's end-of-turn token with --chat
  FormatSpec fmt;
  std::unique_ptr<Backend> backend;
  int64_t total_weight_bytes = 0;  // summed over ranks: what one decode step reads
  double load_s = 0;
  std::unique_ptr<Draft> draft;    // --draft: rank 0 only
  Comm* comm = nullptr;
};

bool use_cuda_backend(const CliOptions& o) {
#ifdef GPTFAST_WITH_CUDA
  if (o.backend == "cuda") return true;
  return o.backend == "auto" && cuda_device_available();
#else
  if (o.backend == "cuda") throw Error("--backend cuda: this build has no CUDA backend", "rebuild with cmake -DGPTFAST_CUDA=ON");
  return false;
#endif
}

// With --chat, generation also stops at the template's end-of-turn token when the vocab has it as a
// special token: SmolLM2's config eos is <|endoftext|>, but its turns end with <|im_end|>.
std::vector<int64_t> chat_stop_ids(const Model& m, bool chat) {
  std::vector<int64_t> ids = m.cfg.eos_ids;
  if (!chat || !m.tok) return ids;
  for (const char* end_of_turn : {"<|im_end|>", "<|eot_id|>", "<|end|>"}) {
    if (m.chat_template.find(end_of_turn) == std::string::npos) continue;
    const std::optional<int32_t> id = m.tok->token_to_id(end_of_turn);
    const bool special = id && m.tok->decode({*id}, true).empty();  // skipped as special when decoding
    if (special && std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
  }
  return ids;
}

Model load_model(const CliOptions& o, Comm& comm) {
  Model m;
  const double t0 = now_s();
  const bool cuda = use_cuda_backend(o);
  FormatSpec fmt{o.format, o.format == WeightFormat::INT4 ? o.group_size.value_or(128) : 0};
  if (!o.synthetic.empty()) {
    agreed(comm, [&] {
      m.cfg = load_model_preset(o.synthetic);
      RankSlice slice = plan_rank_slice(m.cfg, comm.size(), comm.rank());
      if (!cuda) m.shard = make_synthetic_shard(m.cfg, slice, fmt, o.seed);
    });
  } else {
    agreed(comm, [&] {
      const std::string dir = resolve_shard_dir(o.model, default_store(o.model_dir), comm.size(), o.format, o.group_size);
      check_manifest(dir, comm.rank(), o.verify);
      m.shard = read_rank_shard(dir + "/rank" + std::to_string(comm.rank()) + ".h5");
      GF_CHECK(m.shard.slice.tp_size == comm.size() && m.shard.slice.tp_rank == comm.rank(), m.shard.path,
               ": tp_rank/tp_size are ", m.shard.slice.tp_rank, "/", m.shard.slice.tp_size, ", expected ", comm.rank(),
               "/", comm.size());
      m.cfg = m.shard.cfg;
      fmt = m.shard.fmt;
      m.tok.emplace(Tokenizer::from_json(m.shard.tokenizer_json, m.shard.path + ": /tokenizer/json"));
      m.chat_template = m.shard.chat_template;
    });
    // Every rank must hold a piece of the same model: compare with rank 0's identity.
    const uint64_t mine = shard_identity(m.cfg, fmt, m.shard.tokenizer_json);
    uint64_t root = mine;
    comm.bcast(&root, sizeof root, 0);
    agreed(comm, [&] {
      GF_CHECK(mine == root, m.shard.path, ": model, format or tokenizer differ from rank 0's shard (mixed shard directories?)");
    });
  }
  BackendOptions bo;
  bo.max_seq = o.max_seq_len > 0 ? o.max_seq_len : std::min<int64_t>(m.cfg.max_seq_len, 2048);
  bo.max_tokens = o.prefill_chunk;
  bo.threads = o.threads;
  bo.kv_int8 = o.kv_cache == "int8";
  bo.allreduce = o.allreduce == "nccl" ? AllReduce::Nccl : o.allreduce == "oneshot" ? AllReduce::Oneshot : AllReduce::Auto;
  agreed(comm, [&] {
    GF_CHECK(bo.max_seq <= m.cfg.max_seq_len, "--max-seq-len ", bo.max_seq, " exceeds the model's max_seq_len ",
             m.cfg.max_seq_len);
#ifdef GPTFAST_WITH_CUDA
    if (cuda) {
      if (!o.synthetic.empty()) {
        m.backend = make_cuda_backend_synthetic(m.cfg, plan_rank_slice(m.cfg, comm.size(), comm.rank()), fmt, o.seed,
                                                comm, bo);
      } else {
        m.backend = make_cuda_backend(m.shard, comm, bo);
        m.shard = HostShard{};  // the device holds the weights now
      }
      return;
    }
#endif
    m.backend = make_cpu_backend(m.shard, comm, bo);
  });
  m.fmt = fmt;
  m.comm = &comm;
  if (o.speculative()) {
    const int threads =
        o.threads > 0 ? o.threads : std::max(1, int(std::thread::hardware_concurrency()) / comm.local_size());
    agreed(comm, [&] {
      if (comm.rank() == 0) m.draft = load_draft(o, bo, cuda, threads);
    });
  }
  m.stop_ids = chat_stop_ids(m, o.chat);
  int64_t bytes = m.backend->weight_bytes();
  MPI_Allreduce(&bytes, &m.total_weight_bytes, 1, MPI_INT64_T, MPI_SUM, comm.mpi());
  m.load_s = now_s() - t0;
  return m;
}

// Prompt file: rank 0 reads it and broadcasts it, so only rank 0 needs to see the path.
std::string read_shared_file(const std::string& path, Comm& comm, const char* flag = "--prompt-file") {
  std::string content;
  int64_t n = -1;
  if (comm.rank() == 0) {
    std::ifstream f(path, std::ios::binary);
    if (f) {
      content.assign(std::istreambuf_iterator<char>(f), {});
      n = int64_t(content.size());
    }
  }
  comm.bcast(&n, sizeof n, 0);
  GF_CHECK(n >= 0, flag, ": cannot read '", path, "'");
  content.resize(size_t(n));
  comm.bcast(content.data(), n, 0);
  return content;
}

// A conversation rendered with the model's chat template, ending in the assistant's turn.
std::vector<int32_t> encode_chat(const Model& m, const std::vector<ChatMessage>& messages) {
  auto tok_str = [&](int64_t id) { return id >= 0 ? m.tok->id_to_token(int32_t(id)) : std::string(); };
  const std::string eos = m.cfg.eos_ids.empty() ? "" : tok_str(m.cfg.eos_ids[0]);
  return m.tok->encode(apply_chat_template(m.chat_template, messages, true, tok_str(m.cfg.bos_id), eos), false);
}

// Text -> ids, or the reason it cannot be a prompt. Deterministic, so every rank agrees.
// With --chat and a `history` (--interactive), the user turn joins the conversation, and the oldest
// turns are dropped while the whole does not fit the KV cache.
Prompt make_prompt(const CliOptions& o, const Model& m, const std::string& text, int64_t index, int64_t line,
                   int64_t max_seq, std::vector<ChatMessage>* history = nullptr) {
  Prompt p{index, line, {}, {}};
  try {
    if (o.has_prompt_ids) {
      p.ids = o.prompt_ids;
    } else {
      p.error = prompt_problem(text);
      if (!p.error.empty()) return p;
      if (o.chat && history) {
        history->push_back({"user", text});
        p.ids = encode_chat(m, *history);
        while (int64_t(p.ids.size()) >= max_seq && history->size() > 2) {
          history->erase(history->begin(), history->begin() + 2);
          p.ids = encode_chat(m, *history);
        }
      } else if (o.chat) {
        p.ids = encode_chat(m, {{"user", text}});
      } else {
        p.ids = m.tok->encode(text, true);
      }
    }
    GF_CHECK(!p.ids.empty(), "prompt encodes to no tokens");
    for (int32_t id : p.ids) GF_CHECK(id >= 0 && id < m.cfg.vocab_size, "prompt token id ", id, " outside [0, ", m.cfg.vocab_size, ")");
    GF_CHECK(int64_t(p.ids.size()) < max_seq, "prompt of ", p.ids.size(), " tokens does not fit --max-seq-len ", max_seq);
  } catch (const Error& e) {
    p.error = e.what();
    if (history && !history->empty() && history->back().role == "user") history->pop_back();
  }
  return p;
}

std::vector<Prompt> gather_prompts(const CliOptions& o, const Model& m, Comm& comm) {
  const int64_t max_seq = m.backend->max_seq();
  std::vector<Prompt> out;
  if (!o.prompt_file.empty()) {
    int64_t i = 0;
    for (auto& l : split_prompt_lines(read_shared_file(o.prompt_file, comm))) out.push_back(make_prompt(o, m, l.text, i++, l.line, max_seq));
  } else if (o.has_prompt_ids || !o.prompt.empty()) {
    out.push_back(make_prompt(o, m, o.prompt, 0, 0, max_seq));
  } else {  // --bench without a prompt
    std::vector<int32_t> ids;
    for (int i = 0; i < 8; ++i) ids.push_back(int32_t((i * 7919 + 1) % m.cfg.vocab_size));
    out.push_back({0, 0, m.tok ? m.tok->encode("The quick brown fox jumps over the lazy dog.", true) : ids, {}});
  }
  return out;
}

GenerateOptions gen_options(const CliOptions& o, const Model& m, uint64_t sample, bool keep_logits) {
  GenerateOptions g;
  g.max_new_tokens = o.max_new_tokens;
  g.sampling = {o.temperature, o.top_k, o.top_p};
  g.seed = o.seed;
  g.sample_index = sample;
  g.eos_ids = m.stop_ids;
  g.keep_logits = keep_logits;
  return g;
}

nlohmann::json stats_json(const GenerateStats& s) {
  return {{"prompt_tokens", s.prompt_tokens}, {"new_tokens", s.new_tokens},     {"prefill_s", s.prefill_s},
          {"decode_s", s.decode_s},           {"prefill_tok_s", s.prefill_tok_s()}, {"decode_tok_s", s.decode_tok_s()}};
}

// generate(), or speculative_generate() with --draft (then `spec` receives its statistics).
GenerateResult generate_any(const CliOptions& o, Model& m, const std::vector<int32_t>& ids, const GenerateOptions& g,
                            const std::function<void(int32_t)>& on_token = {}, SpeculativeStats* spec = nullptr) {
  if (!o.speculative()) return generate(*m.backend, m.cfg.vocab_size, ids, g, on_token);
  SpeculativeOptions so;
  so.k = o.speculate_k;
  so.synthetic_acceptance = o.synthetic_acceptance;
  Draft* d = m.draft.get();
  SpeculativeResult r = speculative_generate(*m.backend, m.cfg.vocab_size, d ? d->backend.get() : nullptr,
                                             d ? d->vocab : 0, *m.comm, ids, g, so, on_token);
  if (spec) *spec = r.spec;
  return std::move(r.gen);
}

nlohmann::json spec_json(const SpeculativeStats& s) {
  nlohmann::json j = {{"k", s.k},           {"rounds", s.rounds},   {"accept_counts", s.accept_counts},
          {"mean_accepted", s.mean_accepted()},       {"tokens_per_round", s.tokens_per_round()},
          {"draft_s", s.draft_s}, {"verify_s", s.verify_s}};
  if (s.synthetic_acceptance >= 0) j["synthetic_acceptance"] = s.synthetic_acceptance;
  return j;
}

std::string spec_line(const SpeculativeStats& s) {
  std::string hist;
  for (int64_t c : s.accept_counts) hist += (hist.empty() ? "" : " ") + std::to_string(c);
  char buf[256];
  std::snprintf(buf, sizeof buf, "speculative: k=%d, %lld rounds, mean accepted %.2f (%.0f%%), %.2f tokens/round, "
                "histogram [%s]", s.k, (long long)s.rounds, s.mean_accepted(),
                s.k ? 100.0 * s.mean_accepted() / s.k : 0.0, s.tokens_per_round(), hist.c_str());
  std::string line = buf;
  if (s.synthetic_acceptance >= 0) {
    std::snprintf(buf, sizeof buf, ", acceptance drawn (--synthetic-acceptance %.2f)", s.synthetic_acceptance);
    line += buf;
  }
  return line;
}

int run_bench(const CliOptions& o, Model& m, const Prompt& p, int rank) {
  GF_CHECK(p.error.empty(), "--bench prompt: ", p.error);
  // The card's read ceiling, measured once before anything is timed (rank 0's GPU; 0 when the probe cannot
  // get 64 MB of free memory, e.g. a 70B shard filling the card).
  double read_gbps = 0;
#ifdef GPTFAST_WITH_CUDA
  const bool cuda = m.backend->name().rfind("cuda", 0) == 0;
  if (cuda && rank == 0) {
    try {
      read_gbps = cuda_bench_info(*m.backend, true).read_gbps;
    } catch (const Error&) {
      read_gbps = 0;
    }
  }
#endif
  generate_any(o, m, p.ids, gen_options(o, m, 0, false));  // warm-up
  std::vector<double> tps;
  SpeculativeStats spec;
  for (int i = 0; i < o.bench; ++i)
    tps.push_back(generate_any(o, m, p.ids, gen_options(o, m, uint64_t(i + 1), false), {}, &spec).stats.decode_tok_s());
  std::sort(tps.begin(), tps.end());
  const double med = tps[tps.size() / 2], gbs = med * double(m.total_weight_bytes) / 1e9;
  if (rank != 0) return 0;
  // The decode graph's shape (rank 0's): pdl_edges > 0 shows that PDL took effect.
  int graph_kernels = -1, pdl_edges = -1;
  double per_layer = -1;
#ifdef GPTFAST_WITH_CUDA
  if (cuda) {
    const CudaBenchInfo info = cuda_bench_info(*m.backend, false);
    graph_kernels = info.graph_kernels, pdl_edges = info.pdl_edges, per_layer = info.kernels_per_layer;
  }
#endif
  const double gbs_per_gpu = gbs / double(m.comm->size()), fraction = read_gbps > 0 ? gbs_per_gpu / read_gbps : 0;
  if (o.json) {
    nlohmann::json j = {{"bench", o.bench},           {"backend", m.backend->name()}, {"tok_s_median", med},
                        {"tok_s_min", tps.front()},   {"tok_s_max", tps.back()},      {"ms_per_token", med > 0 ? 1e3 / med : 0},
                        {"bytes_per_token", m.total_weight_bytes}, {"gb_s", gbs},     {"load_s", m.load_s}};
    if (graph_kernels >= 0)
      j["graph_kernels"] = graph_kernels, j["kernels_per_layer"] = per_layer, j["pdl_edges"] = pdl_edges;
    if (read_gbps > 0) j["read_gbps"] = read_gbps, j["gb_s_per_gpu"] = gbs_per_gpu, j["read_fraction"] = fraction;
    if (o.speculative()) j["speculative"] = spec_json(spec);
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("bench %s x%d (%s, %lld new tokens): %.2f tok/s median (min %.2f, max %.2f), %.3f ms/token, "
                "%.1f MB/token, %.2f GB/s\n", m.cfg.name.c_str(), o.bench, m.backend->name().c_str(),
                (long long)o.max_new_tokens, med, tps.front(), tps.back(), med > 0 ? 1e3 / med : 0.0,
                double(m.total_weight_bytes) / 1e6, gbs);
    if (read_gbps > 0)
      std::printf("%.0f GB/s per GPU = %.0f%% of this card's measured read bandwidth (%.0f GB/s)\n", gbs_per_gpu,
                  100 * fraction, read_gbps);
    if (graph_kernels >= 0)
      std::printf("decode graph: %d kernels (%.1f per layer), %d programmatic (PDL) edges\n", graph_kernels, per_layer,
                  pdl_edges);
    if (o.speculative()) std::printf("%s (last run)\n", spec_line(spec).c_str());
  }
  std::fflush(stdout);
  return 0;
}

// Rank 0's --output file (null: records go to stdout).
RecordLog* g_records = nullptr;

// One JSON record: appended durably to --output, else a line on stdout.
void emit_record(const nlohmann::json& j) {
  const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (g_records) return g_records->append(line);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// A prompt that cannot run: an error record (--json) or line, on rank 0; the others go on.
void report_prompt_error(const CliOptions& o, const Prompt& p) {
  if (o.json) {
    nlohmann::json j = {{"prompt_index", p.index}, {"error", p.error}};
    if (p.line) j["line"] = p.line;
    emit_record(j);
  } else {
    print_error(0, 1, (p.line ? o.prompt_file + ":" + std::to_string(p.line) + ": " : std::string()) + p.error);
  }
}

// One generation for prompt `p`: rank 0 streams its text (or prints its JSON record when done).
GenerateResult answer(const CliOptions& o, Model& m, const Prompt& p, int sample, bool keep_logits, int rank) {
  std::optional<Tokenizer::Stream> stream;
  if (m.tok) stream.emplace(*m.tok);
  auto on_token = [&](int32_t id) {
    if (rank != 0 || o.json) return;
    std::string piece = stream ? stream->push(id) : std::to_string(id) + " ";
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  };
  SpeculativeStats spec;
  GenerateResult r = generate_any(o, m, p.ids, gen_options(o, m, uint64_t(sample), keep_logits), on_token, &spec);
  if (rank != 0) return r;
  if (o.json) {
    nlohmann::json j = {{"prompt_index", p.index}, {"sample", sample}, {"prompt_ids", p.ids}, {"ids", r.ids},
                        {"text", m.tok ? m.tok->decode(r.ids, true) : std::string()}, {"stop", r.stop},
                        {"stats", stats_json(r.stats)}};
    if (p.line) j["line"] = p.line;
    if (o.speculative()) j["speculative"] = spec_json(spec);
    emit_record(j);
  } else {
    std::string rest = stream ? stream->flush() : std::string();
    std::printf("%s\n", rest.c_str());
    if (o.speculative()) std::fprintf(stderr, "gptfast-tp: %s\n", spec_line(spec).c_str());
  }
  std::fflush(stdout);
  return r;
}

// --perplexity: rank 0 reads the file; every rank checks and tokenizes the same bytes, so a bad file is
// one line from rank 0 and exit 2 everywhere, with no rank left in a collective.
int run_perplexity(const CliOptions& o, Model& m, Comm& comm) {
  const PerplexityOptions po{o.ppl_context, o.ppl_stride};
  std::vector<int32_t> ids;
  try {
    const std::string text = read_shared_file(o.perplexity, comm, "--perplexity");
    GF_CHECK(text.find('\0') == std::string::npos, "--perplexity: '", o.perplexity, "' contains a NUL byte (not text)");
    GF_CHECK(valid_utf8(text), "--perplexity: '", o.perplexity, "' is not valid UTF-8");
    ids = m.tok->encode(text, true);
    GF_CHECK(ids.size() >= 2, "--perplexity: '", o.perplexity, "' encodes to ", ids.size(), " tokens, at least 2 are needed");
    GF_CHECK(po.context <= m.backend->max_seq(), "--ppl-context ", po.context, " exceeds the KV cache length ",
             m.backend->max_seq(), " (raise --max-seq-len)");
  } catch (const Error& e) {
    if (comm.rank() == 0) print_error(0, 1, e.what());
    return 2;
  }
  const PerplexityResult r = perplexity(*m.backend, m.cfg.vocab_size, ids, po);
  if (comm.rank() != 0) return 0;
  if (o.json) {
    nlohmann::json j = {{"file", o.perplexity},     {"tokens", r.tokens},           {"scored", r.scored},
                        {"windows", r.windows},     {"forward_tokens", r.forward_tokens},
                        {"context", po.context},    {"stride", po.stride},          {"mean_nll", r.mean_nll},
                        {"nll_stderr", r.nll_stderr}, {"perplexity", r.ppl()},      {"ppl_stderr", r.ppl_stderr()},
                        {"seconds", r.seconds},     {"tok_s", r.tok_s()},           {"backend", m.backend->name()},
                        {"tp", comm.size()},        {"model", m.cfg.name},          {"format", m.fmt.name()}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("perplexity %.4f +/- %.4f over %lld tokens scored (%lld in the text, %lld windows of %lld, stride %lld)"
                " | %.1f tok/s (%s, tp=%d, %s %s)\n", r.ppl(), r.ppl_stderr(), (long long)r.scored,
                (long long)r.tokens, (long long)r.windows, (long long)po.context, (long long)po.stride, r.tok_s(),
                m.backend->name().c_str(), comm.size(), m.cfg.name.c_str(), m.fmt.name().c_str());
  }
  std::fflush(stdout);
  return 0;
}

// Rank 0's next stdin line on every rank (length, then bytes); nothing at EOF or an empty line.
std::optional<std::string> next_line(Comm& comm) {
  std::string line;
  int64_t n = -1;
  if (comm.rank() == 0) {
    if (isatty(STDIN_FILENO)) std::fputs("> ", stderr);
    if (std::getline(std::cin, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) n = int64_t(line.size());
    }
  }
  comm.bcast(&n, sizeof n, 0);
  if (n < 0) return std::nullopt;
  line.resize(size_t(n));
  comm.bcast(line.data(), n, 0);
  return line;
}

// --interactive: one model load, many prompts; with --chat the conversation accumulates.
int run_interactive(const CliOptions& o, Model& m, Comm& comm) {
  const int rank = comm.rank();
  std::vector<ChatMessage> history;
  int64_t turn = 0, failed = 0;
  while (std::optional<std::string> line = next_line(comm)) {
    const Prompt p = make_prompt(o, m, *line, turn++, 0, m.backend->max_seq(), &history);
    if (!p.error.empty()) {
      ++failed;
      if (rank == 0) report_prompt_error(o, p);
      continue;
    }
    for (int s = 0; s < o.num_samples; ++s) {
      const GenerateResult r = answer(o, m, p, s, false, rank);
      if (o.chat && s == 0) history.push_back({"assistant", m.tok->decode(r.ids, true)});
    }
  }
  return failed ? 2 : 0;
}

int run_loaded(const CliOptions& o, Model& m, Comm& comm);

// A failure after the load is reported and ends the job while the model is still alive: unwinding
// would first tear the backend down, and a CUDA backend whose peer went silent can block there
// (freeing device memory waits for kernels stuck in a collective), so the line would never print.
int run(const CliOptions& o, Comm& comm) {
  Model m = load_model(o, comm);
  try {
    return run_loaded(o, m, comm);
  } catch (const Error& e) {
    print_error(comm.rank(), comm.size(), e.what(), e.hint());
  } catch (const std::exception& e) {
    print_error(comm.rank(), comm.size(), e.what());
  }
  comm.abort(1);
}

int run_loaded(const CliOptions& o, Model& m, Comm& comm) {
  const int rank = comm.rank();
  if (!o.perplexity.empty()) return run_perplexity(o, m, comm);
  if (o.interactive) return run_interactive(o, m, comm);
  std::vector<Prompt> prompts = gather_prompts(o, m, comm);
  if (o.bench > 0) return run_bench(o, m, prompts.front(), rank);

  // --output: rank 0 reads what an earlier run of this batch finished; every rank skips the same records.
  std::unique_ptr<RecordLog> records;
  std::vector<int64_t> done;  // (prompt_index, sample) pairs, flattened
  if (!o.output.empty()) {
    agreed(comm, [&] {
      if (rank == 0) records = std::make_unique<RecordLog>(o.output);
    });
    g_records = records.get();
    if (records)
      for (const auto& [i, s] : records->done()) done.push_back(i), done.push_back(s);
    int64_t n = int64_t(done.size());
    comm.bcast(&n, sizeof n, 0);
    done.resize(size_t(n));
    comm.bcast(done.data(), n * int64_t(sizeof(int64_t)), 0);
  }
  std::set<std::pair<int64_t, int64_t>> done_set;  // a batch may hold 10^5 prompts: no linear scans
  for (size_t k = 0; k + 1 < done.size(); k += 2) done_set.insert({done[k], done[k + 1]});
  auto is_done = [&](int64_t index, int64_t sample) {
    return done_set.count({index, sample}) || done_set.count({index, int64_t(-1)});
  };
  install_stop_on_sigterm();

  const bool keep_logits = !o.logits_out.empty();
  std::vector<float> all_logits;
  int64_t logit_rows = 0, failed = 0, prompt_tok = 0, new_tok = 0, skipped = 0, written = 0;
  double prefill_s = 0, decode_s = 0;
  bool stopped = false;
  for (const Prompt& p : prompts) {
    if (stopped) break;
    if (!p.error.empty()) {
      ++failed;
      if (rank == 0 && !is_done(p.index, -1)) report_prompt_error(o, p);
      continue;
    }
    for (int s = 0; s < o.num_samples; ++s) {
      if (is_done(p.index, s)) {
        ++skipped;
        continue;
      }
      // SIGTERM stops the batch between records, on every rank at the same record.
      if (!comm.all_ok(!stop_requested())) {
        stopped = true;
        break;
      }
      GenerateResult r = answer(o, m, p, s, keep_logits, rank);
      ++written;
      prompt_tok += r.stats.prompt_tokens, new_tok += r.stats.new_tokens;
      prefill_s += r.stats.prefill_s, decode_s += r.stats.decode_s;
      if (rank == 0 && keep_logits) {
        all_logits.insert(all_logits.end(), r.logits.begin(), r.logits.end());
        logit_rows += r.logit_rows;
      }
    }
  }
  if (stopped) {
    if (rank == 0)
      std::fprintf(stderr, "gptfast-tp: stopped by SIGTERM after %lld new records (%lld were done before)%s\n",
                   (long long)written, (long long)skipped,
                   o.output.empty() ? "" : "; rerun the same command to finish the rest");
    return 128 + SIGTERM;
  }
  if (rank == 0 && keep_logits) write_npy(o.logits_out, all_logits.data(), logit_rows, m.cfg.vocab_size);
  if (rank == 0 && !o.json) {
    const double dec = decode_s > 0 ? double(new_tok - int64_t(prompts.size() - failed) * o.num_samples) / decode_s : 0;
    std::fprintf(stderr, "gptfast-tp: load %.2f s | prefill %.1f tok/s | decode %.2f tok/s | %.2f GB/s effective (%s, tp=%d, %s)\n",
                 m.load_s, prefill_s > 0 ? prompt_tok / prefill_s : 0.0, std::max(0.0, dec),
                 std::max(0.0, dec) * double(m.total_weight_bytes) / 1e9, m.backend->name().c_str(), comm.size(),
                 m.cfg.name.c_str());
  }
  return failed ? 2 : 0;
}

}  // namespace
}  // namespace gf

int main(int argc, char** argv) {
  gf::CliOptions o;
  const int lrank = gf::launcher_rank();
  try {
    o = gf::parse_cli(argc, argv);
  } catch (const std::exception& e) {  // every rank fails alike: rank 0 says so, all exit cleanly
    if (lrank == 0) gf::print_error(0, 1, e.what(), "see gptfast-tp --help");
    return 2;
  }
  if (o.help || o.version) {
    if (lrank == 0) std::printf("%s", o.help ? gf::cli_help().c_str() : "gptfast-tp " GPTFAST_VERSION "\n");
    return 0;
  }
  gf::MpiSession mpi(&argc, &argv);
  std::optional<gf::Comm> world;
  try {
    world.emplace(gf::Comm::world());
  } catch (const gf::Error& e) {  // every rank fails alike: rank 0 says so, all exit cleanly
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) gf::print_error(0, 1, e.what());
    return 2;
  }
  gf::Comm& comm = *world;
  try {
    return gf::run(o, comm);
  } catch (const gf::Error& e) {
    gf::print_error(comm.rank(), comm.size(), e.what(), e.hint());
  } catch (const std::exception& e) {
    gf::print_error(comm.rank(), comm.size(), e.what());
  }
  comm.abort(1);
}
