// The TP split (DESIGN.md table, plan_rank_slice) streamed tensor by tensor into every rank file,
// with the crash-safety protocol of sharding/README.md, and --verify.
#include "sharding/split.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/bf16.h"
#include "core/error.h"
#include "io/hdf5.h"
#include "io/mapped_file.h"
#include "model/shard_store.h"
#include "sharding/checkpoint_source.h"
#include "sharding/quantize.h"
#include "sharding/shard_writer.h"
#include "tokenizer/tokenizer.h"

namespace gf {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
constexpr int64_t kChunkFloats = 16 << 20;  // 64 MB of fp32 rows in flight per read

void fsync_path(const fs::path& p, bool dir) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
  GF_CHECK(fd >= 0, p.string(), ": cannot open for fsync");
  int rc = ::fsync(fd);
  ::close(fd);
  GF_CHECK(rc == 0, p.string(), ": fsync failed (disk full or I/O error)");
}

// tmp + fsync + rename + directory fsync: the file is either absent or complete.
void write_file_atomic(const fs::path& p, const std::string& text) {
  fs::path tmp = p.string() + ".tmp";
  {
    FILE* f = std::fopen(tmp.c_str(), "wb");
    GF_CHECK(f, tmp.string(), ": cannot create");
    bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0 &&
              ::fsync(fileno(f)) == 0;
    ok &= std::fclose(f) == 0;
    if (!ok) {
      fs::remove(tmp);
      GF_FAIL(tmp.string(), ": write failed (disk full or file size limit?)");
    }
  }
  fs::rename(tmp, p);
  fsync_path(p.parent_path(), true);
}

std::string read_file_text(const std::string& p) {
  MappedFile f(p);
  return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

std::string rank_file(int64_t r) { return "rank" + std::to_string(r) + ".h5"; }

// Test failpoint (sharding/README.md): GPTFAST_SHARD_KILL_AFTER=N SIGKILLs the process after N tensors.
int64_t failpoint_after_tensor() {
  const char* v = std::getenv("GPTFAST_SHARD_KILL_AFTER");
  return v ? std::atoll(v) : -1;
}

// Progress on stderr: tensor, MB/s written, ETA; at most once a second.
class Progress {
 public:
  Progress(bool on, int64_t total_elems, int64_t kill_after) : on_(on), total_(total_elems), kill_after_(kill_after) {}
  void step(const std::string& tensor, int64_t elems, int64_t bytes_written) {
    if (++steps_ == kill_after_) std::raise(SIGKILL);  // test failpoint: a crash mid-run
    done_ += elems;
    bytes_ += bytes_written;
    double t = secs();
    if (!on_ || (t - last_ < 1.0 && done_ < total_)) return;
    last_ = t;
    double frac = double(done_) / double(total_), eta = frac > 0 ? t * (1 - frac) / frac : 0;
    std::fprintf(stderr, "gptfast-shard: %5.1f%%  %-24s  %8.1f MB/s  ETA %.0f s\n", 100 * frac, tensor.c_str(),
                 bytes_ / 1e6 / std::max(t, 1e-3), eta);
  }

 private:
  double secs() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }
  bool on_;
  int64_t total_, kill_after_, steps_ = 0, done_ = 0, bytes_ = 0;
  double last_ = -1;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

// The splitter proper: one pass over the source, all pending rank files open at once.
class Splitter {
 public:
  Splitter(const CheckpointSource& src, const ModelConfig& cfg, const FormatSpec& fmt, std::vector<RankSlice> slices,
           std::vector<ShardWriter*> writers, Progress& progress)
      : src_(src), c_(cfg), fmt_(fmt), s_(std::move(slices)), w_(std::move(writers)), progress_(progress) {}

  void run() {
    write_embed_and_norm();
    for (int64_t l = 0; l < c_.n_layers; ++l) write_layer(l);
    write_lm_head();
  }

 private:
  std::string L(int64_t l, const char* t) const { return "layers." + std::to_string(l) + "." + t; }

  // A 1-D tensor, bf16, replicated on every rank.
  void replicate_vector(const std::string& name, const std::string& dst) {
    std::vector<float> v(size_t(c_.dim));
    src_.read_rows(name, 0, 1, v.data());
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = float_to_bf16(v[i]);
    for (ShardWriter* w : w_) w->write_bf16(dst, h, {c_.dim});
    progress_.step(name, c_.dim, 2 * c_.dim * int64_t(w_.size()));
  }

  // Source rows [r0, r1) of `name` into dst rows from dst_row0, a chunk of rows at a time.
  void copy_rows(const std::string& name, int64_t r0, int64_t r1, HostWeight& dst, int64_t dst_row0) {
    const int64_t C = dst.cols, step = std::max<int64_t>(1, kChunkFloats / C);
    for (int64_t a = r0; a < r1; a += step) {
      int64_t b = std::min(r1, a + step);
      buf_.resize(size_t((b - a) * C));
      src_.read_rows(name, a, b, buf_.data());
      quantize_rows(buf_.data(), b - a, dst, dst_row0 + (a - r0));
    }
  }

  // Column split (wo, w2): each chunk of source rows is read once, quantized over whole rows (so
  // every tp holds the same weights, shard_io.h) and cut for every rank.
  void split_cols(const std::string& name, const std::vector<int64_t>& col_begin, std::vector<HostWeight>& dst) {
    auto shape = src_.shape2d(name);
    const int64_t R = shape[0], C = shape[1], step = std::max<int64_t>(1, kChunkFloats / C);
    for (int64_t a = 0; a < R; a += step) {
      int64_t b = std::min(R, a + step);
      buf_.resize(size_t((b - a) * C));
      src_.read_rows(name, a, b, buf_.data());
      HostWeight rows = quantize(buf_.data(), b - a, C, fmt_);
      for (size_t r = 0; r < dst.size(); ++r) copy_cols(rows, col_begin[r], dst[r], a);
    }
  }

  void emit(const std::string& tensor, const std::string& dst, std::vector<HostWeight>& ws, int64_t src_elems) {
    int64_t bytes = 0;
    for (size_t r = 0; r < ws.size(); ++r) {
      w_[r]->write_weight(dst, ws[r]);
      bytes += ws[r].bytes();
    }
    ws.clear();  // free before the next tensor: memory stays at about one tensor
    progress_.step(tensor, src_elems, bytes);
  }

  void write_embed_and_norm() {
    const int64_t V = c_.vocab_size, D = c_.dim, step = std::max<int64_t>(1, kChunkFloats / D);
    std::vector<uint16_t> e(size_t(V * D));
    for (int64_t a = 0; a < V; a += step) {
      int64_t b = std::min(V, a + step);
      buf_.resize(size_t((b - a) * D));
      src_.read_rows("embed", a, b, buf_.data());
      for (int64_t i = 0; i < (b - a) * D; ++i) e[size_t(a * D + i)] = float_to_bf16(buf_[size_t(i)]);
    }
    for (ShardWriter* w : w_) w->write_bf16("embed", e, {V, D});
    progress_.step("embed", V * D, 2 * V * D * int64_t(w_.size()));
    replicate_vector("norm", "norm");
  }

  void write_layer(int64_t l) {
    const int64_t D = c_.dim, hd = c_.head_dim;
    const std::string p = layer_path(l);
    replicate_vector(L(l, "attn_norm"), p + "/attn_norm");
    replicate_vector(L(l, "ffn_norm"), p + "/ffn_norm");
    std::vector<HostWeight> ws;
    for (const RankSlice& s : s_) {  // wqkv = q heads | k heads | v heads of this rank
      ws.push_back(make_weight(fmt_, (s.n_heads + 2 * s.n_kv_heads) * hd, D));
      int64_t qn = s.n_heads * hd, kn = s.n_kv_heads * hd;
      copy_rows(L(l, "wq"), s.head_begin * hd, s.head_begin * hd + qn, ws.back(), 0);
      copy_rows(L(l, "wk"), s.kv_head_begin * hd, s.kv_head_begin * hd + kn, ws.back(), qn);
      copy_rows(L(l, "wv"), s.kv_head_begin * hd, s.kv_head_begin * hd + kn, ws.back(), qn + kn);
    }
    emit(L(l, "wqkv"), p + "/wqkv", ws, (c_.n_heads + 2 * c_.n_kv_heads) * hd * D);
    std::vector<int64_t> cols;  // each rank's first input column
    for (const RankSlice& s : s_) {  // wo: the input columns of this rank's heads
      ws.push_back(make_weight(fmt_, D, s.n_heads * hd));
      cols.push_back(s.head_begin * hd);
    }
    split_cols(L(l, "wo"), cols, ws);
    emit(L(l, "wo"), p + "/wo", ws, D * c_.n_heads * hd);
    cols.clear();
    for (const RankSlice& s : s_) {  // w13 = w1 rows | w3 rows of this rank's hidden slice
      ws.push_back(make_weight(fmt_, 2 * s.hidden_dim, D));
      copy_rows(L(l, "w1"), s.hidden_begin, s.hidden_begin + s.hidden_dim, ws.back(), 0);
      copy_rows(L(l, "w3"), s.hidden_begin, s.hidden_begin + s.hidden_dim, ws.back(), s.hidden_dim);
      cols.push_back(s.hidden_begin);
    }
    emit(L(l, "w13"), p + "/w13", ws, 2 * c_.hidden_dim * D);
    for (const RankSlice& s : s_) ws.push_back(make_weight(fmt_, D, s.hidden_dim));
    split_cols(L(l, "w2"), cols, ws);
    emit(L(l, "w2"), p + "/w2", ws, D * c_.hidden_dim);
  }

  // Rows of the padded vocab (rows past vocab_size stay zero), in lm_head_format: int8 in int4 sets.
  void write_lm_head() {
    const std::string name = c_.tie_word_embeddings ? "embed" : "lm_head";
    std::vector<HostWeight> ws;
    for (const RankSlice& s : s_) {
      ws.push_back(make_weight(lm_head_format(fmt_), s.vocab_local, c_.dim));
      int64_t end = std::min(c_.vocab_size, s.vocab_begin + s.vocab_local);
      if (end > s.vocab_begin) copy_rows(name, s.vocab_begin, end, ws.back(), 0);
    }
    emit("lm_head", "lm_head", ws, c_.tie_word_embeddings ? 0 : c_.vocab_size * c_.dim);
  }

  const CheckpointSource& src_;
  const ModelConfig& c_;
  FormatSpec fmt_;
  std::vector<RankSlice> s_;
  std::vector<ShardWriter*> w_;
  Progress& progress_;
  std::vector<float> buf_;
};

// Every tensor the split reads, with the shape the config implies; checked before anything is written.
int64_t check_source_shapes(const CheckpointSource& src, const ModelConfig& c) {
  int64_t total = 0;
  auto want = [&](const std::string& name, int64_t rows, int64_t cols) {
    auto s = src.shape2d(name);  // throws naming the checkpoint when absent
    GF_CHECK(s == (std::vector<int64_t>{rows, cols}), src.describe(), ": tensor ", name, ": shape expected (", rows,
             ", ", cols, ") from the config, got (", s[0], ", ", s[1], ")");
    total += rows * cols;
  };
  const int64_t D = c.dim, hd = c.head_dim;
  want("embed", c.vocab_size, D);
  want("norm", 1, D);
  if (!c.tie_word_embeddings) {
    GF_CHECK(src.has("lm_head"), src.describe(), ": no lm_head tensor and tie_word_embeddings is false");
    want("lm_head", c.vocab_size, D);
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    std::string p = "layers." + std::to_string(l) + ".";
    want(p + "attn_norm", 1, D);
    want(p + "ffn_norm", 1, D);
    want(p + "wq", c.n_heads * hd, D);
    want(p + "wk", c.n_kv_heads * hd, D);
    want(p + "wv", c.n_kv_heads * hd, D);
    want(p + "wo", D, c.n_heads * hd);
    want(p + "w1", c.hidden_dim, D);
    want(p + "w3", c.hidden_dim, D);
    want(p + "w2", D, c.hidden_dim);
  }
  return total;
}

json plan_json(const ModelConfig& c, const std::string& source, int64_t tp, const FormatSpec& fmt) {
  return {{"model", c.name}, {"source", source}, {"tp", tp}, {"weight_format", fmt.name()}};
}

// A finished rank file from an earlier run counts only if it is this plan's file.
bool is_done_rank_file(const fs::path& p, const json& plan, int64_t rank) {
  if (!fs::exists(p)) return false;
  try {
    h5::Group g = h5::open_file_readonly(p.string());
    return g.attr_string("model_name") == plan["model"].get<std::string>() &&
           g.attr_string("source") == plan["source"].get<std::string>() &&
           g.attr_string("weight_format") == plan["weight_format"].get<std::string>() &&
           g.attr_int("tp_size") == plan["tp"].get<int64_t>() &&
           g.attr_int("tp_rank") == rank;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

std::string run_shard(const ShardOptions& opt) {
  auto src = open_checkpoint(opt.from);
  // The shard carries the tokenizer: refuse a broken one now rather than at every load.
  const std::string where = src->describe() + " (tokenizer)";
  Tokenizer tok = Tokenizer::from_json(src->tokenizer_json(), where);
  const ModelConfig& c = src->config();
  for (int64_t id : c.eos_ids)
    GF_CHECK(id < tok.vocab_size(), where, ": eos_token_id ", id, " is not in the tokenizer's vocabulary (",
             tok.vocab_size(), " tokens)");
  GF_CHECK(c.bos_id < tok.vocab_size(), where, ": bos_token_id ", c.bos_id, " is not in the tokenizer's vocabulary (",
           tok.vocab_size(), " tokens)");
  return run_shard(*src, opt);
}

std::string run_shard(const CheckpointSource& src, const ShardOptions& opt) {
  GF_CHECK(!opt.model.empty() && opt.model.find('/') == std::string::npos && opt.model != "." && opt.model != "..",
           "--model '", opt.model, "' must be a plain name (it becomes a directory in the store)");
  ModelConfig cfg = src.config();
  cfg.name = opt.model;
  cfg.validate(src.describe());
  std::vector<RankSlice> slices;
  const int64_t group = opt.fmt.format == WeightFormat::INT4 ? opt.fmt.group_size : 1;
  for (int64_t r = 0; r < opt.tp; ++r) slices.push_back(plan_rank_slice(cfg, opt.tp, r, group));
  const int64_t total = check_source_shapes(src, cfg);

  const fs::path dir = fs::path(opt.store) / opt.model / ("tp" + std::to_string(opt.tp) + "-" + opt.fmt.name());
  const json plan = plan_json(cfg, src.describe(), opt.tp, opt.fmt);
  fs::create_directories(dir);
  if (fs::exists(dir / "manifest.json")) {
    if (opt.resume && !opt.force) {
      std::fprintf(stderr, "gptfast-shard: %s is already complete\n", dir.c_str());
      return dir.string();
    }
    GF_CHECK(opt.force, dir.string(), ": already holds a complete shard set; pass --force to re-make it");
    fs::remove(dir / "manifest.json");  // first: from here on the directory reads as incomplete
    fsync_path(dir, true);
  }
  if (fs::exists(dir / "shard_plan.json") && !opt.force) {
    GF_CHECK(opt.resume, dir.string(), ": an unfinished gptfast-shard run left files here; pass --resume to finish it or --force to start over");
    json old;
    try {
      old = json::parse(read_file_text((dir / "shard_plan.json").string()));
    } catch (const json::exception&) {
    }
    GF_CHECK(old == plan, (dir / "shard_plan.json").string(), ": the unfinished run was ", old.dump(),
             ", not this one; use --force to start over");
  }
  if (opt.force)
    for (int64_t r = 0; r < opt.tp; ++r) fs::remove(dir / rank_file(r));
  write_file_atomic(dir / "shard_plan.json", plan.dump(1) + "\n");

  std::vector<int64_t> todo;
  for (int64_t r = 0; r < opt.tp; ++r)
    if (!(opt.resume && is_done_rank_file(dir / rank_file(r), plan, r))) todo.push_back(r);
  if (todo.size() < size_t(opt.tp) && opt.progress)
    std::fprintf(stderr, "gptfast-shard: resuming: %zu of %lld rank files already complete\n",
                 size_t(opt.tp) - todo.size(), static_cast<long long>(opt.tp));
  if (!todo.empty()) {
    std::vector<std::unique_ptr<ShardWriter>> writers;
    try {
      std::vector<ShardWriter*> ptrs;
      std::vector<RankSlice> todo_slices;
      for (int64_t r : todo) {
        writers.push_back(std::make_unique<ShardWriter>((dir / (rank_file(r) + ".tmp")).string(), cfg, slices[r],
                                                        opt.fmt, src.describe(), src.tokenizer_json(),
                                                        src.chat_template()));
        ptrs.push_back(writers.back().get());
        todo_slices.push_back(slices[r]);
      }
      Progress progress(opt.progress, total, failpoint_after_tensor());
      Splitter(src, cfg, opt.fmt, todo_slices, ptrs, progress).run();
      for (auto& w : writers) {
        w->finish();
        fsync_path(w->path(), false);
      }
    } catch (...) {
      writers.clear();  // close the files before removing them: a failed run leaves no partial data behind
      for (int64_t r : todo) fs::remove(dir / (rank_file(r) + ".tmp"));
      throw;
    }
    for (int64_t r : todo) fs::rename(dir / (rank_file(r) + ".tmp"), dir / rank_file(r));
    fsync_path(dir, true);
  }

  json files = json::array();
  for (int64_t r = 0; r < opt.tp; ++r) {
    fs::path p = dir / rank_file(r);
    files.push_back({{"name", rank_file(r)}, {"size", int64_t(fs::file_size(p))}, {"xxh3_128", file_xxh3_128_hex(p)}});
  }
  json manifest = plan;
  manifest["format_version"] = kShardFormatVersion;
  manifest["files"] = files;
  write_file_atomic(dir / "manifest.json", manifest.dump(1) + "\n");  // the commit marker, last
  fs::remove(dir / "shard_plan.json");
  return dir.string();
}

int verify_shard_dir(const std::string& dir) {
  fs::path d(dir);
  int bad = 0;
  int64_t tp = 0;
  try {
    GF_CHECK(fs::exists(d / "manifest.json"), dir, ": no manifest.json (incomplete shard set)");
    json m = json::parse(read_file_text((d / "manifest.json").string()));
    tp = m.at("tp").get<int64_t>();
    GF_CHECK(tp >= 1 && m.at("files").size() == size_t(tp), (d / "manifest.json").string(), ": lists ",
             m.at("files").size(), " files for tp=", tp);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gptfast-shard: verify: %s\n", e.what());
    return 1;
  }
  for (int64_t r = 0; r < tp; ++r) {
    try {
      check_manifest(dir, r, true);
    } catch (const Error& e) {
      std::fprintf(stderr, "gptfast-shard: verify: %s\n", e.what());
      ++bad;
    }
  }
  return bad;
}

}  // namespace gf
