// Shard store resolution and the manifest check: every refusal names the gptfast-shard command that fixes it.
//
// manifest.json (written last by gptfast-shard, sharding/split.cpp):
//   {"format_version", "model", "source", "tp", "weight_format", "files": [{"name", "size", "xxh3_128"}]}
// shard_plan.json (written first): {"model", "source", "tp", "weight_format"}, so an unfinished set still
// knows the command that completes it (--resume).
#include "model/shard_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "io/hdf5.h"
#include "io/mapped_file.h"

namespace gf {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string default_store(const std::string& model_dir_flag) {
  if (!model_dir_flag.empty()) return model_dir_flag;
  const char* env = std::getenv("GPTFAST_MODEL_DIR");
  if (env && *env) return env;
  return "./models";
}

namespace {

std::string format_flags(const FormatSpec& f) {
  switch (f.format) {
    case WeightFormat::BF16: return "";
    case WeightFormat::INT8: return " --int8";
    case WeightFormat::INT4: return " --int4 --group-size " + std::to_string(f.group_size);
  }
  return "";
}

}  // namespace

std::string shard_command(const std::string& source, const std::string& model, const std::string& store, int64_t tp,
                          const FormatSpec& f, const std::string& extra) {
  return "gptfast-shard --from " + (source.empty() ? std::string("<checkpoint>") : source) + " --model " + model +
         " --model-dir " + store + " --tp " + std::to_string(tp) + format_flags(f) + extra;
}

namespace {

// Reads a small JSON file; nullopt-like empty object when absent.
json read_json(const fs::path& p) {
  std::ifstream in(p);
  GF_CHECK(in, p.string(), ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    GF_FAIL(p.string(), ": not valid JSON (", e.what(), ")");
  }
}

// What a shard directory says about itself (manifest, else plan, else its name).
struct SetInfo {
  std::string model, source, store;
  int64_t tp = 0;
  FormatSpec fmt;
  bool complete = false;
};

SetInfo describe_set(const fs::path& dir) {
  SetInfo s;
  s.store = dir.parent_path().parent_path().string();
  s.model = dir.parent_path().filename().string();
  fs::path meta = fs::exists(dir / "manifest.json") ? dir / "manifest.json" : dir / "shard_plan.json";
  s.complete = fs::exists(dir / "manifest.json");
  if (fs::exists(meta)) {
    json j = read_json(meta);
    try {
      s.model = j.at("model").get<std::string>();
      s.source = j.at("source").get<std::string>();
      s.tp = j.at("tp").get<int64_t>();
      s.fmt = FormatSpec::parse(j.at("weight_format").get<std::string>());
    } catch (const json::exception& e) {
      GF_FAIL(meta.string(), ": missing or mistyped field (", e.what(), ")");
    }
  }
  return s;
}

// Sets named tp<N>-<fmt> under a model directory: (tp, format name, path).
struct SetDir {
  int64_t tp;
  std::string fmt;
  fs::path path;
};
std::vector<SetDir> list_sets(const fs::path& model_dir) {
  std::vector<SetDir> v;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(model_dir, ec)) {
    std::string n = e.path().filename().string();
    size_t dash = n.find('-');
    if (!e.is_directory() || n.rfind("tp", 0) != 0 || dash == std::string::npos) continue;
    try {
      size_t used = 0;
      int64_t tp = std::stoll(n.substr(2, dash - 2), &used);
      if (used == dash - 2) v.push_back({tp, n.substr(dash + 1), e.path()});
    } catch (const std::exception&) {
    }
  }
  std::sort(v.begin(), v.end(), [](const SetDir& a, const SetDir& b) { return a.path < b.path; });
  return v;
}

std::string incomplete_message(const fs::path& dir) {
  SetInfo s = describe_set(dir);
  return dir.string() + ": no manifest.json, so the shard set is incomplete (gptfast-shard interrupted?); finish it: " +
         shard_command(s.source, s.model, s.store, s.tp ? s.tp : 1, s.fmt, " --resume");
}

// The requested format: exact names for bf16/int8/int4g<G>; int4 without a group size matches any int4g*.
bool format_matches(const std::string& name, WeightFormat want, std::optional<int> gs) {
  if (want != WeightFormat::INT4) return name == FormatSpec{want, 0}.name();
  if (gs) return name == "int4g" + std::to_string(*gs);
  return name.rfind("int4g", 0) == 0;
}

}  // namespace

std::string resolve_shard_dir(const std::string& model, const std::string& store, int64_t world, WeightFormat format,
                              std::optional<int> group_size) {
  FormatSpec want{format, format == WeightFormat::INT4 ? group_size.value_or(128) : 0};
  std::string want_name = format == WeightFormat::INT4 && !group_size ? "int4" : want.name();
  fs::path as_path(model);
  bool is_shard_dir = fs::is_directory(as_path) &&
                      (fs::exists(as_path / "manifest.json") || fs::exists(as_path / "shard_plan.json") ||
                       fs::exists(as_path / "rank0.h5"));
  if (is_shard_dir) {
    GF_CHECK(fs::exists(as_path / "manifest.json"), incomplete_message(as_path));
    SetInfo s = describe_set(as_path);
    GF_CHECK(s.tp == world, as_path.string(), ": shards are for tp=", s.tp, " but ", world,
             " ranks were started; launch with -np ", s.tp, ", or make tp=", world, " shards: ",
             shard_command(s.source, s.model, s.store, world, s.fmt));
    GF_CHECK(format_matches(s.fmt.name(), format, group_size), as_path.string(), ": shards are ", s.fmt.name(),
             " but ", want_name, " was requested; pass the matching format flag, or make them: ",
             shard_command(s.source, s.model, s.store, world, want));
    return as_path.string();
  }

  fs::path mdir = fs::path(store) / model;
  GF_CHECK(fs::is_directory(mdir), "model '", model, "' not found: no directory ", mdir.string(),
           " (store from --model-dir, $GPTFAST_MODEL_DIR or ./models); make it: ",
           shard_command("", model, store, world, want));
  auto sets = list_sets(mdir);
  std::vector<SetDir> fit;
  for (const auto& s : sets)
    if (s.tp == world && format_matches(s.fmt, format, group_size)) fit.push_back(s);
  if (fit.size() > 1) {
    std::string names;
    for (const auto& s : fit) names += (names.empty() ? "" : ", ") + s.fmt;
    GF_FAIL(mdir.string(), ": several int4 shard sets for tp=", world, " (", names,
            "); choose one with --group-size (32, 64 or 128)");
  }
  if (fit.empty()) {
    std::string source;  // the checkpoint another set of this model was made from, for the command
    for (const auto& s : sets)
      if (source.empty()) source = describe_set(s.path).source;
    for (const auto& s : sets)
      if (format_matches(s.fmt, format, group_size))
        GF_FAIL("shards for ", model, " in ", s.path.string(), " are for tp=", s.tp, " but ", world,
                " ranks were started; launch with -np ", s.tp, ", or make tp=", world, " shards: ",
                shard_command(source, model, store, world, want));
    std::string have;
    for (const auto& s : sets) have += (have.empty() ? "" : ", ") + s.path.filename().string();
    GF_FAIL("no ", want_name, " shards for ", model, " at tp=", world, " in ", mdir.string(),
            " (have: ", have.empty() ? "none" : have, "); make them: ", shard_command(source, model, store, world, want));
  }
  const fs::path& dir = fit[0].path;
  GF_CHECK(fs::exists(dir / "manifest.json"), incomplete_message(dir));
  SetInfo s = describe_set(dir);
  GF_CHECK(s.tp == world && s.fmt.name() == fit[0].fmt, (dir / "manifest.json").string(), ": says tp=", s.tp, " ",
           s.fmt.name(), ", which does not match its directory name; re-make it: ",
           shard_command(s.source, model, store, world, s.fmt, " --force"));
  return dir.string();
}

void check_manifest(const std::string& shard_dir, int64_t rank, bool verify_hash) {
  fs::path dir(shard_dir);
  GF_CHECK(fs::exists(dir / "manifest.json"), incomplete_message(dir));
  SetInfo s = describe_set(dir);
  std::string fix = "; re-make the set: " + shard_command(s.source, s.model, s.store, s.tp, s.fmt, " --force");
  json m = read_json(dir / "manifest.json");
  std::string name = "rank" + std::to_string(rank) + ".h5";
  const json* entry = nullptr;
  try {
    for (const json& f : m.at("files"))
      if (f.at("name").get<std::string>() == name) entry = &f;
  } catch (const json::exception& e) {
    GF_FAIL((dir / "manifest.json").string(), ": field files: ", e.what());
  }
  GF_CHECK(entry, (dir / "manifest.json").string(), ": lists no ", name, " (set is for tp=", s.tp, ")", fix);
  fs::path file = dir / name;
  struct stat st {};
  GF_CHECK(::stat(file.c_str(), &st) == 0, file.string(), ": missing (listed in manifest.json)", fix);
  int64_t want_size = 0;
  std::string want_hash;
  try {
    want_size = entry->at("size").get<int64_t>();
    want_hash = entry->at("xxh3_128").get<std::string>();
  } catch (const json::exception& e) {
    GF_FAIL((dir / "manifest.json").string(), ": entry ", name, ": ", e.what());
  }
  GF_CHECK(int64_t(st.st_size) == want_size, file.string(), ": size ", int64_t(st.st_size),
           " bytes but manifest.json says ", want_size, " (truncated or replaced)", fix);
  if (verify_hash)
    GF_CHECK(file_xxh3_128_hex(file.string()) == want_hash, file.string(),
             ": content hash differs from manifest.json (file damaged)", fix);
  // The size matched, so the file is ours in shape; now make sure it belongs to this set (mixed dirs).
  h5::Group root = h5::open_file_readonly(file.string());
  std::string got_model = root.attr_string("model_name"), got_source = root.attr_string("source");
  std::string got_fmt = root.attr_string("weight_format");
  int64_t got_tp = root.attr_int("tp_size"), got_rank = root.attr_int("tp_rank");
  GF_CHECK(got_model == s.model && got_source == s.source && got_fmt == s.fmt.name() && got_tp == s.tp &&
               got_rank == rank,
           file.string(), ": is rank ", got_rank, "/", got_tp, " of ", got_model, " ", got_fmt, " from ", got_source,
           " but manifest.json describes ", name, " of ", s.model, " ", s.fmt.name(), " tp=", s.tp, " from ", s.source,
           ": shard sets are mixed", fix);
}

}  // namespace gf
