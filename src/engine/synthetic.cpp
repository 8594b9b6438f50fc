// Random-weight shards made in memory, and the model presets of configs/models/ they are shaped by.
#include "engine/synthetic.h"

#include <boost/program_options.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/bf16.h"
#include "core/error.h"
#include "engine/rng.h"

namespace gf {

namespace {

// Identifies one full-model tensor in the hash (per layer: 16 ids).
enum : uint64_t { kEmbed = 1, kNorm = 2, kLmHead = 3 };
uint64_t layer_tensor(int64_t l, int k) { return uint64_t(16 * (l + 1) + k); }
enum { kWq, kWk, kWv, kWo, kW1, kW3, kW2, kAttnNorm, kFfnNorm };

uint64_t cell(uint64_t seed, uint64_t tensor, int64_t r, int64_t c) {
  return splitmix64(splitmix64(splitmix64(seed ^ tensor) ^ uint64_t(r)) ^ uint64_t(c));
}
float unit(uint64_t h) { return float(to_unit_double(h) * 2.0 - 1.0); }  // [-1, 1)

std::vector<uint16_t> bf16_vector(uint64_t seed, uint64_t tensor, int64_t n, float base, float amp) {
  std::vector<uint16_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = float_to_bf16(base + amp * unit(cell(seed, tensor, 0, i)));
  return v;
}

HostWeight empty_weight(FormatSpec fmt, int64_t rows, int64_t cols) {
  HostWeight w;
  w.fmt = fmt;
  w.rows = rows;
  w.cols = cols;
  switch (fmt.format) {
    case WeightFormat::BF16: w.q.assign(rows * cols * 2, 0); break;
    case WeightFormat::INT8:
      w.q.assign(rows * cols, 0);
      w.scale.assign(rows, 0);
      break;
    case WeightFormat::INT4: {
      GF_CHECK(cols % 2 == 0, "synthetic: int4 weight needs an even column count, got ", cols);
      w.q.assign(rows * cols / 2, 0);
      int64_t groups = (cols + fmt.group_size - 1) / fmt.group_size;
      w.scale.assign(rows * groups, 0);
      w.zero.assign(rows * groups, 0);
      break;
    }
  }
  return w;
}

// Fills local rows [r0, r0+n) of w from full tensor `tensor`, global rows g0.., global columns
// col0..; rows with global index >= row_limit stay zero (lm_head vocab padding). Values are
// uniform in [-amp, amp]; quantized forms use one scale (and zero) per global row.
void fill_rows(HostWeight& w, int64_t r0, int64_t n, uint64_t seed, uint64_t tensor, int64_t g0, int64_t col0,
               float amp, int64_t row_limit) {
  const int64_t cols = w.cols;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = r0 + i, g = g0 + i;
    if (g >= row_limit) continue;
    const float rs = 0.75f + 0.25f * unit(cell(seed, tensor, g, -1));  // per-row scale variety
    switch (w.fmt.format) {
      case WeightFormat::BF16: {
        auto* q = reinterpret_cast<uint16_t*>(w.q.data()) + r * cols;
        for (int64_t c = 0; c < cols; ++c) q[c] = float_to_bf16(amp * rs * unit(cell(seed, tensor, g, col0 + c)));
        break;
      }
      case WeightFormat::INT8: {
        auto* q = reinterpret_cast<int8_t*>(w.q.data()) + r * cols;
        for (int64_t c = 0; c < cols; ++c) q[c] = int8_t(int(cell(seed, tensor, g, col0 + c) % 255) - 127);
        w.scale[r] = float_to_bf16(amp * rs / 127.f);
        break;
      }
      case WeightFormat::INT4: {
        uint8_t* q = w.q.data() + r * cols / 2;
        for (int64_t c = 0; c < cols; c += 2) {
          uint8_t lo = cell(seed, tensor, g, col0 + c) & 15, hi = cell(seed, tensor, g, col0 + c + 1) & 15;
          q[c / 2] = uint8_t(lo | (hi << 4));
        }
        const int64_t groups = (cols + w.fmt.group_size - 1) / w.fmt.group_size;
        const uint16_t s = float_to_bf16(amp * rs * 2.f / 15.f);
        const uint16_t z = float_to_bf16(-7.5f * bf16_to_float(s));
        for (int64_t k = 0; k < groups; ++k) w.scale[r * groups + k] = s, w.zero[r * groups + k] = z;
        break;
      }
    }
  }
}

}  // namespace

HostShard make_synthetic_shard(const ModelConfig& cfg, const RankSlice& s, FormatSpec fmt, uint64_t seed) {
  cfg.validate("synthetic " + cfg.name);
  HostShard h;
  h.path = "synthetic:" + cfg.name;
  h.cfg = cfg;
  h.slice = s;
  h.fmt = fmt;
  const int64_t D = cfg.dim, hd = cfg.head_dim, nq = s.n_heads * hd, nkv = s.n_kv_heads * hd;
  const float a_dim = 1.f / std::sqrt(float(D));
  h.embed = bf16_vector(seed, kEmbed, cfg.vocab_size * D, 0.f, 1.f);
  h.norm = bf16_vector(seed, kNorm, D, 1.f, 0.1f);
  const uint64_t head_tensor = cfg.tie_word_embeddings ? uint64_t(kEmbed) : uint64_t(kLmHead);
  h.lm_head = empty_weight(lm_head_format(fmt), s.vocab_local, D);  // as gptfast-shard writes it
  fill_rows(h.lm_head, 0, s.vocab_local, seed, head_tensor, s.vocab_begin, 0, a_dim, cfg.vocab_size);
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    HostLayer L;
    L.attn_norm = bf16_vector(seed, layer_tensor(l, kAttnNorm), D, 1.f, 0.1f);
    L.ffn_norm = bf16_vector(seed, layer_tensor(l, kFfnNorm), D, 1.f, 0.1f);
    L.wqkv = empty_weight(fmt, nq + 2 * nkv, D);
    fill_rows(L.wqkv, 0, nq, seed, layer_tensor(l, kWq), s.head_begin * hd, 0, a_dim, INT64_MAX);
    fill_rows(L.wqkv, nq, nkv, seed, layer_tensor(l, kWk), s.kv_head_begin * hd, 0, a_dim, INT64_MAX);
    fill_rows(L.wqkv, nq + nkv, nkv, seed, layer_tensor(l, kWv), s.kv_head_begin * hd, 0, a_dim, INT64_MAX);
    L.wo = empty_weight(fmt, D, nq);
    fill_rows(L.wo, 0, D, seed, layer_tensor(l, kWo), 0, s.head_begin * hd,
              1.f / std::sqrt(float(cfg.n_heads * hd)), INT64_MAX);
    L.w13 = empty_weight(fmt, 2 * s.hidden_dim, D);
    fill_rows(L.w13, 0, s.hidden_dim, seed, layer_tensor(l, kW1), s.hidden_begin, 0, a_dim, INT64_MAX);
    fill_rows(L.w13, s.hidden_dim, s.hidden_dim, seed, layer_tensor(l, kW3), s.hidden_begin, 0, a_dim, INT64_MAX);
    L.w2 = empty_weight(fmt, D, s.hidden_dim);
    fill_rows(L.w2, 0, D, seed, layer_tensor(l, kW2), 0, s.hidden_begin, 1.f / std::sqrt(float(cfg.hidden_dim)),
              INT64_MAX);
    h.layers.push_back(std::move(L));
  }
  return h;
}

namespace {

std::string exe_dir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.parent_path().string();
}

std::string find_preset(const std::string& name) {
  namespace fs = std::filesystem;
  if (name.find('/') != std::string::npos || name.ends_with(".ini")) {
    GF_CHECK(fs::is_regular_file(name), "model preset file '", name, "' does not exist");
    return name;
  }
  std::vector<std::string> dirs;
  if (const char* e = std::getenv("GPTFAST_CONFIG_DIR")) dirs.push_back(std::string(e) + "/models");
  if (auto d = exe_dir(); !d.empty()) {
    dirs.push_back(d + "/../configs/models");
    dirs.push_back(d + "/../share/gptfast-tp/configs/models");
  }
  dirs.push_back("configs/models");
  for (const auto& d : dirs)
    if (fs::is_regular_file(d + "/" + name + ".ini")) return d + "/" + name + ".ini";
  std::string looked;
  for (const auto& d : dirs) looked += (looked.empty() ? "" : ", ") + d;
  GF_FAIL("unknown model preset '", name, "': no ", name, ".ini in ", looked,
          " (set GPTFAST_CONFIG_DIR or pass a path)");
}

}  // namespace

ModelConfig load_model_preset(const std::string& name_or_path) {
  namespace po = boost::program_options;
  const std::string path = find_preset(name_or_path);
  ModelConfig c;
  std::string eos;
  int tie = 0;
  po::options_description d;
  d.add_options()("name", po::value(&c.name))("dim", po::value(&c.dim)->required())(
      "n_layers", po::value(&c.n_layers)->required())("n_heads", po::value(&c.n_heads)->required())(
      "n_kv_heads", po::value(&c.n_kv_heads))("head_dim", po::value(&c.head_dim))(
      "hidden_dim", po::value(&c.hidden_dim)->required())("vocab_size", po::value(&c.vocab_size)->required())(
      "max_seq_len", po::value(&c.max_seq_len)->required())("norm_eps", po::value(&c.norm_eps))(
      "rope_theta", po::value(&c.rope_theta))("rope_type", po::value(&c.rope_scaling.type))(
      "rope_factor", po::value(&c.rope_scaling.factor))("rope_low_freq_factor", po::value(&c.rope_scaling.low_freq_factor))(
      "rope_high_freq_factor", po::value(&c.rope_scaling.high_freq_factor))(
      "rope_original_max_position", po::value(&c.rope_scaling.original_max_position))(
      "tie_word_embeddings", po::value(&tie))("bos_id", po::value(&c.bos_id))("eos_ids", po::value(&eos));
  try {
    std::ifstream f(path);
    GF_CHECK(f, "cannot read model preset ", path);
    po::variables_map vm;
    po::store(po::parse_config_file(f, d), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    GF_FAIL(path, ": ", e.what());
  }
  if (c.name.empty()) c.name = std::filesystem::path(path).stem().string();
  if (c.n_kv_heads == 0) c.n_kv_heads = c.n_heads;
  if (c.head_dim == 0 && c.n_heads > 0) c.head_dim = c.dim / c.n_heads;
  c.tie_word_embeddings = tie != 0;
  std::stringstream ss(eos);
  for (std::string tok; std::getline(ss, tok, ',');) {
    try {
      c.eos_ids.push_back(std::stoll(tok));
    } catch (const std::exception&) {
      GF_FAIL(path, ": field eos_ids: expected comma-separated integers, got '", eos, "'");
    }
  }
  c.validate(path);
  return c;
}

}  // namespace gf
