// Where shard sets live: <store>/<model>/tp<N>-<format>/{rank<r>.h5, manifest.json}.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "core/weight_format.h"

namespace gf {

// <store>: --model-dir, else $GPTFAST_MODEL_DIR, else ./models.
std::string default_store(const std::string& model_dir_flag);

// The gptfast-shard command that makes the set (source "": "<checkpoint>"), `extra` appended (" --force").
std::string shard_command(const std::string& source, const std::string& model, const std::string& store, int64_t tp,
                          const FormatSpec& f, const std::string& extra = "");

// Resolves `model` (a name in the store, or a path to a shard directory) for `world` ranks and the
// requested format (nullopt int4 group size: pick the only int4 set present, or fail asking for
// --group-size). Fails with one line that names the gptfast-shard command that would make it.
std::string resolve_shard_dir(const std::string& model, const std::string& store, int64_t world,
                              WeightFormat format, std::optional<int> group_size);

// Checks the manifest (present, lists rank<r>.h5 with the size on disk; with verify_hash also the
// content hash) before the file is opened. Throws naming the file and the fixing command.
void check_manifest(const std::string& shard_dir, int64_t rank, bool verify_hash);

}  // namespace gf
