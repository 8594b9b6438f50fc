// Split/merge round trip: the rank pieces gptfast-shard writes, put back together, give the source.
#include <cmath>

#include "core/bf16.h"
#include "model/shard_io.h"
#include "model/shard_store.h"
#include "sharding/quantize.h"
#include "sharding/split.h"
#include "test_util.h"

namespace gf {
namespace {
namespace fs = std::filesystem;

struct Case {
  int64_t heads, kv, tp;
  bool tied;
  std::string fmt;
  int64_t head_dim = 12;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << "heads " << c.heads << " kv " << c.kv << " tp " << c.tp << (c.tied ? " tied " : " ") << c.fmt;
}

class SplitMerge : public ::testing::TestWithParam<Case> {};

// Rows [r0, r0+n) of a dequantized rank weight, columns [c0, c0+k), into dst (ld = dst cols) at (d0, dc0).
void place(const std::vector<float>& w, int64_t wcols, int64_t r0, int64_t n, std::vector<float>& dst, int64_t dcols,
           int64_t d0, int64_t dc0, std::vector<int>& hits) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < wcols; ++c) {
      dst[(d0 + i) * dcols + dc0 + c] = w[(r0 + i) * wcols + c];
      hits[(d0 + i) * dcols + dc0 + c]++;
    }
}

// Shards `src` for tp ranks and merges the rank files back into whole dequantized matrices (canonical
// names); `hits` counts how often each element was placed.
struct Merged {
  std::map<std::string, std::vector<float>> w;
  std::map<std::string, std::vector<int>> hits;
};

Merged shard_and_merge(const test::MemorySource& src, const fs::path& store, int64_t tp, const std::string& fmt) {
  const ModelConfig& cfg = src.config();
  ShardOptions opt;
  opt.model = "tiny";
  opt.store = store.string();
  opt.tp = tp;
  opt.fmt = FormatSpec::parse(fmt);
  opt.progress = false;
  std::string dir = run_shard(src, opt);
  const int64_t D = cfg.dim, hd = cfg.head_dim, H = cfg.n_heads, KV = cfg.n_kv_heads, F = cfg.hidden_dim;
  Merged m;
  auto init = [&](const std::string& n, int64_t size) {
    m.w[n].assign(size_t(size), 0);
    m.hits[n].assign(size_t(size), 0);
  };
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    std::string p = "layers." + std::to_string(l) + ".";
    init(p + "wq", H * hd * D), init(p + "wk", KV * hd * D), init(p + "wv", KV * hd * D), init(p + "wo", D * H * hd);
    init(p + "w1", F * D), init(p + "w3", F * D), init(p + "w2", D * F);
  }
  init("lm_head", cfg.vocab_size * D);
  for (int64_t r = 0; r < tp; ++r) {
    check_manifest(dir, r, true);
    HostShard s = read_rank_shard(dir + "/rank" + std::to_string(r) + ".h5");
    const RankSlice& sl = s.slice;
    for (size_t i = 0; i < s.embed.size(); ++i)
      EXPECT_EQ(bf16_to_float(s.embed[i]), round_to_bf16(src.values("embed")[i]));
    for (int64_t l = 0; l < cfg.n_layers; ++l) {
      std::string p = "layers." + std::to_string(l) + ".";
      const HostLayer& L = s.layers[size_t(l)];
      for (int64_t i = 0; i < D; ++i)
        EXPECT_EQ(bf16_to_float(L.attn_norm[i]), round_to_bf16(src.values(p + "attn_norm")[i]));
      auto qkv = dequantize(L.wqkv);
      int64_t qn = sl.n_heads * hd, kn = sl.n_kv_heads * hd;
      place(qkv, D, 0, qn, m.w[p + "wq"], D, sl.head_begin * hd, 0, m.hits[p + "wq"]);
      place(qkv, D, qn, kn, m.w[p + "wk"], D, sl.kv_head_begin * hd, 0, m.hits[p + "wk"]);
      place(qkv, D, qn + kn, kn, m.w[p + "wv"], D, sl.kv_head_begin * hd, 0, m.hits[p + "wv"]);
      place(dequantize(L.wo), qn, 0, D, m.w[p + "wo"], H * hd, 0, sl.head_begin * hd, m.hits[p + "wo"]);
      auto w13 = dequantize(L.w13);
      place(w13, D, 0, sl.hidden_dim, m.w[p + "w1"], D, sl.hidden_begin, 0, m.hits[p + "w1"]);
      place(w13, D, sl.hidden_dim, sl.hidden_dim, m.w[p + "w3"], D, sl.hidden_begin, 0, m.hits[p + "w3"]);
      place(dequantize(L.w2), sl.hidden_dim, 0, D, m.w[p + "w2"], F, 0, sl.hidden_begin, m.hits[p + "w2"]);
    }
    auto lm = dequantize(s.lm_head);
    int64_t real = std::max<int64_t>(0, std::min(sl.vocab_local, cfg.vocab_size - sl.vocab_begin));
    place(lm, D, 0, real, m.w["lm_head"], D, sl.vocab_begin, 0, m.hits["lm_head"]);
    for (int64_t i = real * D; i < sl.vocab_local * D; ++i) EXPECT_EQ(lm[size_t(i)], 0.0f) << "padding row";
  }
  return m;
}

TEST_P(SplitMerge, PiecesMergeBackToTheSource) {
  const Case k = GetParam();
  test::TempDir tmp;
  test::MemorySource src(test::tiny_config(k.heads, k.kv, k.tied, k.head_dim), 100);
  Merged split = shard_and_merge(src, tmp / "split", k.tp, k.fmt);
  Merged whole = shard_and_merge(src, tmp / "whole", 1, k.fmt);
  const double tol = k.fmt == "bf16" ? 0 : k.fmt == "int8" ? 0.02 : 0.2;
  const int64_t kv_copies = k.kv < k.tp ? k.tp / k.kv : 1;
  for (const auto& [name, v] : split.w) {
    const auto& want = src.values(name == "lm_head" && k.tied ? "embed" : name);
    bool kv = name.find(".wk") != std::string::npos || name.find(".wv") != std::string::npos;
    for (size_t i = 0; i < v.size(); ++i) {
      ASSERT_EQ(split.hits[name][i], kv ? kv_copies : 1) << name << "[" << i << "] placed the wrong number of times";
      // Every tp holds the same weights (quantized over whole rows), and they approximate the source.
      ASSERT_EQ(v[i], whole.w[name][i]) << name << "[" << i << "] differs from the tp=1 shard";
      double ref = k.fmt == "bf16" ? round_to_bf16(want[i]) : want[i];
      const bool int8_head = name == "lm_head" && k.fmt.starts_with("int4");  // int4 sets keep an int8 head
      ASSERT_LE(std::fabs(v[i] - ref), int8_head ? 0.02 : tol) << name << "[" << i << "]";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Plans, SplitMerge,
    ::testing::Values(Case{4, 2, 1, false, "bf16"}, Case{4, 2, 2, false, "bf16"}, Case{6, 3, 3, false, "bf16"},
                      Case{4, 1, 2, false, "bf16"}, Case{4, 2, 2, true, "bf16"}, Case{4, 2, 2, false, "int8"},
                      Case{6, 3, 3, false, "int8"}, Case{4, 2, 2, false, "int4g32", 32},
                      Case{6, 3, 3, false, "int4g32", 32}, Case{4, 1, 2, true, "int4g64", 32}),
    [](const auto& info) {
      const Case& c = info.param;
      return "h" + std::to_string(c.heads) + "kv" + std::to_string(c.kv) + "tp" + std::to_string(c.tp) +
             (c.tied ? "tied" : "") + c.fmt + "hd" + std::to_string(c.head_dim);
    });

TEST(Split, TpThatCannotSplitIsRefusedBeforeWriting) {
  test::TempDir tmp;
  test::MemorySource src(test::tiny_config(6, 3), 1);
  ShardOptions opt;
  opt.model = "tiny";
  opt.store = tmp.path.string();
  opt.tp = 4;  // 3 kv heads cannot be shared by 4 ranks
  opt.progress = false;
  test::expect_error([&] { run_shard(src, opt); }, {"tp=4", "num_key_value_heads"});
  EXPECT_FALSE(fs::exists(tmp / "tiny"));
}

TEST(Split, Int4GroupsThatCutAcrossRanksAreRefused) {
  test::TempDir tmp;
  test::MemorySource src(test::tiny_config(4, 2), 1);  // rank 1's heads start at column 24: not a group of 32
  ShardOptions opt;
  opt.model = "tiny";
  opt.store = tmp.path.string();
  opt.tp = 2;
  opt.fmt = {WeightFormat::INT4, 32};
  opt.progress = false;
  test::expect_error([&] { run_shard(src, opt); }, {"tp=2", "group size 32"});
  EXPECT_FALSE(fs::exists(tmp / "tiny"));
}

TEST(Split, CompleteSetIsRefusedWithoutForce) {
  test::TempDir tmp;
  test::MemorySource src(test::tiny_config(), 1);
  ShardOptions opt;
  opt.model = "tiny";
  opt.store = tmp.path.string();
  opt.progress = false;
  run_shard(src, opt);
  test::expect_error([&] { run_shard(src, opt); }, {"tp1-bf16", "--force"});
  opt.force = true;
  EXPECT_NO_THROW(run_shard(src, opt));
}

}  // namespace
}  // namespace gf
