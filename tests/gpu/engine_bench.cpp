// Engine costs the CLI's --bench does not show, on synthetic weights of a preset (one JSON line):
// decode ms/token at short and long context, prefill tok/s, the cost of an M=8 verify forward
// (and of M = 2..9) against one decode step, kernels per layer in the decode graph and the measured read bandwidth.
// Usage: mpirun -np N gf_engine_bench PRESET FORMAT [MAX_SEQ=4096] [KV_CACHE=bf16|int8]
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <cstdio>
#include <string>
#include <vector>

#include "comm/comm.h"
#include "core/error.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/synthetic.h"

namespace gf {
namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<int32_t> ids_of(int n, int64_t vocab, int salt) {
  std::vector<int32_t> v(n);
  for (int i = 0; i < n; ++i) v[i] = int32_t((int64_t(i) * 7919 + salt * 104729 + 3) % vocab);
  return v;
}

// Seconds of one forward of M tokens at pos0, synchronized by a greedy sample (what a generation
// step costs, the sampler included).
double timed_forward(Backend& b, const std::vector<int32_t>& ids, int64_t pos0) {
  const double t0 = now_s();
  b.forward(ids.data(), int(ids.size()), pos0);
  b.sample(int(ids.size()) - 1, {}, 0.5);
  return now_s() - t0;
}

// Median ms per decode step over `n` steps starting at pos0 (the cache before pos0 must be filled).
double decode_ms(Backend& b, int64_t pos0, int n, int64_t vocab) {
  std::vector<double> t;
  for (int i = 0; i < n; ++i) t.push_back(timed_forward(b, ids_of(1, vocab, i), pos0 + i));
  return median(t) * 1e3;
}

int run(int argc, char** argv, Comm& comm) {
  GF_CHECK(argc >= 3, "usage: gf_engine_bench PRESET FORMAT [MAX_SEQ] [KV_CACHE]");
  const ModelConfig cfg = load_model_preset(argv[1]);
  const FormatSpec fmt = FormatSpec::parse(argv[2]);
  BackendOptions o;
  o.max_seq = argc > 3 ? std::stoll(argv[3]) : std::min<int64_t>(4096, cfg.max_seq_len);
  o.max_tokens = 1024;
  const std::string kv = argc > 4 ? argv[4] : "bf16";
  GF_CHECK(kv == "bf16" || kv == "int8", "KV_CACHE must be bf16 or int8, got '", kv, "'");
  o.kv_int8 = kv == "int8";
  GF_CHECK(o.max_seq >= 2048, "MAX_SEQ must be >= 2048 for the context sweep");
  const double t_load = now_s();
  auto b = make_cuda_backend_synthetic(cfg, plan_rank_slice(cfg, comm.size(), comm.rank()), fmt, 1, comm, o);
  const double load_s = now_s() - t_load;
  const int64_t V = cfg.vocab_size;

  // Short context: warm up (graph capture), then time.
  decode_ms(*b, 0, 8, V);
  const double ms_short = decode_ms(*b, 8, 64, V);

  // Prefill of 1024 tokens (eager, cuBLAS path), repeated at position 0.
  auto prompt = ids_of(1024, V, 99);
  timed_forward(*b, prompt, 0);
  std::vector<double> pf;
  for (int r = 0; r < 3; ++r) pf.push_back(timed_forward(*b, prompt, 0));
  const double prefill_tok_s = 1024 / median(pf);

  // Verify cost: M = k + 1 tokens (speculative k = 1, 3, 5, 7, 8) against one decode step, both at
  // position 1024, interleaved so that clocks drift alike.
  const int verify_m[] = {2, 4, 6, 8, 9};
  std::vector<double> v1, vm[std::size(verify_m)];
  for (int r = 0; r < 20; ++r) {
    v1.push_back(timed_forward(*b, ids_of(1, V, r), 1024));
    for (size_t i = 0; i < std::size(verify_m); ++i) vm[i].push_back(timed_forward(*b, ids_of(verify_m[i], V, r), 1024));
  }
  const double ms_m1 = median(v1) * 1e3, ms_m8 = median(vm[3]) * 1e3;
  nlohmann::json verify_ms;
  for (size_t i = 0; i < std::size(verify_m); ++i) verify_ms[std::to_string(verify_m[i])] = median(vm[i]) * 1e3;

  // Long context: fill the cache to max_seq - 64 in 1024-token chunks, then decode at the end.
  const int64_t fill_to = o.max_seq - 64;
  for (int64_t p = 0; p < fill_to; p += 1024) {
    auto chunk = ids_of(int(std::min<int64_t>(1024, fill_to - p)), V, int(p));
    timed_forward(*b, chunk, p);
  }
  const double ms_long = decode_ms(*b, fill_to, 48, V);

  auto info = cuda_bench_info(*b);
  int64_t bytes = b->weight_bytes(), total = 0;
  MPI_Allreduce(&bytes, &total, 1, MPI_INT64_T, MPI_SUM, comm.mpi());
  if (comm.rank() == 0) {
    nlohmann::json j = {{"model", cfg.name},
                        {"format", fmt.name()},
                        {"kv_cache", kv},
                        {"tp", comm.size()},
                        {"device", info.device},
                        {"load_s", load_s},
                        {"weight_bytes_per_token", total},
                        {"read_gbps_probe", info.read_gbps},
                        {"decode_ms_ctx16", ms_short},
                        {"decode_tok_s_ctx16", 1e3 / ms_short},
                        {"decode_gbps_ctx16", double(total) / (ms_short * 1e-3) / 1e9},
                        {"decode_ms_ctx" + std::to_string(fill_to), ms_long},
                        {"prefill1024_tok_s", prefill_tok_s},
                        {"verify_m8_ms", ms_m8},
                        {"decode_m1_ms_at1024", ms_m1},
                        {"verify_m8_over_m1", ms_m8 / ms_m1},
                        {"verify_ms_by_m", verify_ms},
                        {"graph_nodes", info.graph_nodes},
                        {"graph_kernels", info.graph_kernels},
                        {"kernels_per_layer", info.kernels_per_layer},
                        {"pdl_edges", info.pdl_edges},
                        {"device_bytes", info.device_bytes}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace
}  // namespace gf

int main(int argc, char** argv) {
  gf::MpiSession mpi(&argc, &argv);
  gf::Comm comm = gf::Comm::world();
  try {
    return gf::run(argc, argv, comm);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gf_engine_bench: rank %d: error: %s\n", comm.rank(), e.what());
    comm.abort(1);
  }
}
