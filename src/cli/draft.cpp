// Loading the draft model for --draft / --draft-synthetic (rank 0 only).
#include "cli/draft.h"

#include "core/error.h"
#include "engine/synthetic.h"
#include "model/shard_store.h"
#ifdef GPTFAST_WITH_CUDA
#include "engine/cuda/cuda_backend.h"
#endif

namespace gf {

std::unique_ptr<Draft> load_draft(const CliOptions& o, const BackendOptions& target, bool cuda, int threads) {
  auto d = std::make_unique<Draft>();
  d->self.emplace(Comm::self());
  BackendOptions bo = target;
  bo.threads = threads;
  const FormatSpec fmt{o.draft_format, o.draft_format == WeightFormat::INT4 ? o.draft_group_size.value_or(128) : 0};
  ModelConfig cfg;
  bool synthetic = !o.draft_synthetic.empty();
  if (synthetic) {
    cfg = load_model_preset(o.draft_synthetic);
    if (!cuda) d->shard = make_synthetic_shard(cfg, plan_rank_slice(cfg, 1, 0), fmt, o.seed + 1);
  } else {
    const std::string dir = resolve_shard_dir(o.draft, default_store(o.model_dir), 1, o.draft_format, o.draft_group_size);
    check_manifest(dir, 0, o.verify);
    d->shard = read_rank_shard(dir + "/rank0.h5");
    cfg = d->shard.cfg;
  }
  GF_CHECK(bo.max_seq <= cfg.max_seq_len, "--draft ", cfg.name, ": the KV length ", bo.max_seq,
           " exceeds the draft's max_seq_len ", cfg.max_seq_len);
  d->vocab = cfg.vocab_size;
  d->name = cfg.name;
#ifdef GPTFAST_WITH_CUDA
  if (cuda) {
    d->backend = synthetic ? make_cuda_backend_synthetic(cfg, plan_rank_slice(cfg, 1, 0), fmt, o.seed + 1, *d->self, bo)
                           : make_cuda_backend(d->shard, *d->self, bo);
    d->shard = HostShard{};
    return d;
  }
#endif
  d->backend = make_cpu_backend(d->shard, *d->self, bo);
  return d;
}

}  // namespace gf
