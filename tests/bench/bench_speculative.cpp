// Not a test: plain greedy decode against speculative decode on real shards, CPU backend.
//   mpirun -np N bench_speculative TARGET_DIR DRAFT_DIR [k=5] [max_new=128] [threads=0] [prompt text]
// TARGET_DIR holds rank<r>.h5 for tp=N; DRAFT_DIR a tp=1 shard (rank 0 loads it). Prints, on rank 0,
// both decode speeds, the speed-up, the acceptance histogram, and whether the greedy ids agree.
// E.g. SmolLM2-135M, target bf16, draft its own int4 shard (see tests/speculative.cmake).
#include <omp.h>

#include <cstdio>
#include <string>

#include "comm/comm.h"
#include "core/error.h"
#include "engine/speculative.h"
#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  gf::MpiSession mpi(&argc, &argv);
  gf::Comm comm = gf::Comm::world();
  if (argc < 3) {
    if (comm.rank() == 0)
      std::fprintf(stderr, "usage: bench_speculative TARGET_DIR DRAFT_DIR [k=5] [max_new=128] [threads=0] [prompt]\n");
    return 2;
  }
  try {
    const int k = argc > 3 ? std::stoi(argv[3]) : 5;
    const int64_t max_new = argc > 4 ? std::stoll(argv[4]) : 128;
    const int threads = argc > 5 ? std::stoi(argv[5]) : 0;
    const std::string text = argc > 6 ? argv[6] : "The history of the printing press begins in";

    gf::BackendOptions bo;
    bo.max_seq = 1024, bo.max_tokens = 64, bo.threads = threads;
    const gf::HostShard ts = gf::read_rank_shard(std::string(argv[1]) + "/rank" + std::to_string(comm.rank()) + ".h5");
    auto target = gf::make_cpu_backend(ts, comm, bo);
    gf::Comm self = gf::Comm::self();
    gf::HostShard ds;
    std::unique_ptr<gf::Backend> draft;
    if (comm.rank() == 0) {  // same threads as the target (a one-rank comm cannot see the node's ranks)
      ds = gf::read_rank_shard(std::string(argv[2]) + "/rank0.h5");
      bo.threads = threads > 0 ? threads : omp_get_max_threads();
      draft = gf::make_cpu_backend(ds, self, bo);
    }
    const auto tok = gf::Tokenizer::from_json(ts.tokenizer_json, ts.path);
    const auto prompt = tok.encode(text);
    gf::GenerateOptions g;
    g.max_new_tokens = max_new;  // greedy; no eos so both runs make the same number of tokens

    gf::generate(*target, ts.cfg.vocab_size, prompt, g);  // warm-up
    const auto plain = gf::generate(*target, ts.cfg.vocab_size, prompt, g);
    gf::SpeculativeOptions so;
    so.k = k;
    const auto spec = gf::speculative_generate(*target, ts.cfg.vocab_size, draft.get(), ds.cfg.vocab_size, comm,
                                               prompt, g, so);
    if (comm.rank() == 0) {
      const auto& s = spec.spec;
      const auto alone = gf::generate(*draft, ds.cfg.vocab_size, prompt, g);  // the draft step's cost
      std::printf("target %s (%s), draft %s (%s), tp=%d, k=%d, %lld new tokens\n", ts.cfg.name.c_str(),
                  ts.fmt.name().c_str(), ds.cfg.name.c_str(), ds.fmt.name().c_str(), comm.size(), k,
                  (long long)max_new);
      std::printf("plain decode       %8.2f tok/s\n", plain.stats.decode_tok_s());
      std::printf("draft alone        %8.2f tok/s\n", alone.stats.decode_tok_s());
      std::printf("speculative decode %8.2f tok/s  (x%.2f)  draft %.2f s, verify %.2f s\n",
                  spec.gen.stats.decode_tok_s(), spec.gen.stats.decode_tok_s() / plain.stats.decode_tok_s(),
                  s.draft_s, s.verify_s);
      std::printf("acceptance: %lld rounds, mean accepted %.2f of %d (%.0f%%), %.2f tokens per target forward\n",
                  (long long)s.rounds, s.mean_accepted(), k, 100.0 * s.mean_accepted() / k, s.tokens_per_round());
      for (int i = 0; i <= k; ++i) std::printf("  accepted %d: %lld rounds\n", i, (long long)s.accept_counts[i]);
      std::printf("greedy ids %s\ntext: %s\n", spec.gen.ids == plain.ids ? "identical" : "DIFFER",
                  tok.decode(spec.gen.ids).c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_speculative: rank %d: %s\n", comm.rank(), e.what());
    comm.abort(1);
  }
}
