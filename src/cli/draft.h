// The speculative draft model of rank 0: a whole (tp=1) shard set or a synthetic preset.
#pragma once
#include <memory>
#include <optional>

#include "cli/options.h"
#include "comm/comm.h"
#include "engine/backend.h"

namespace gf {

struct Draft {
  HostShard shard;              // the CPU backend reads its weights from here
  std::optional<Comm> self;     // a one-rank group: the draft is never split
  std::unique_ptr<Backend> backend;
  int64_t vocab = 0;
  std::string name;
};

// Loads the draft on the calling rank (rank 0 only). `target` are the target's backend options (the
// draft gets the same KV length); `threads` the CPU threads the target uses on this rank.
std::unique_ptr<Draft> load_draft(const CliOptions& o, const BackendOptions& target, bool cuda, int threads);

}  // namespace gf
