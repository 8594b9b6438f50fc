// Store resolution and the manifest check (RELIABILITY tests 10-13 at the read path): every refusal is
// one line naming the file and the gptfast-shard command that fixes it.
#include <fstream>

#include "model/shard_store.h"
#include "sharding/split.h"
#include "test_util.h"

namespace gf {
namespace {
namespace fs = std::filesystem;

std::string make_set(const fs::path& store, const std::string& model, int64_t tp, const std::string& fmt,
                     uint32_t seed = 1) {
  ModelConfig cfg = test::tiny_config(4, 2, false, 64, 300);  // splits on int4 group boundaries
  test::MemorySource src(cfg, seed);
  ShardOptions opt;
  opt.model = model;
  opt.store = store.string();
  opt.tp = tp;
  opt.fmt = FormatSpec::parse(fmt);
  opt.progress = false;
  return run_shard(src, opt);
}

TEST(ShardStore, DefaultStore) {
  EXPECT_EQ(default_store("/x"), "/x");
  ::setenv("GPTFAST_MODEL_DIR", "/from/env", 1);
  EXPECT_EQ(default_store(""), "/from/env");
  ::unsetenv("GPTFAST_MODEL_DIR");
  EXPECT_EQ(default_store(""), "./models");
}

TEST(ShardStore, ResolvesAndNamesTheFixingCommand) {
  test::TempDir tmp;
  std::string store = tmp.path.string();
  std::string d2 = make_set(tmp.path, "m", 2, "bf16");
  EXPECT_EQ(resolve_shard_dir("m", store, 2, WeightFormat::BF16, {}), d2);
  EXPECT_EQ(resolve_shard_dir(d2, "", 2, WeightFormat::BF16, {}), d2);  // a shard directory path
  for (int64_t world : {1, 3})
    test::expect_error([&] { resolve_shard_dir("m", store, world, WeightFormat::BF16, {}); },
                       {"tp=2", std::to_string(world) + " ranks", "-np 2",
                        "gptfast-shard --from memory:tiny --model m --model-dir " + store + " --tp " + std::to_string(world)});
  test::expect_error([&] { resolve_shard_dir(d2, "", 3, WeightFormat::BF16, {}); }, {"tp=2", "--tp 3"});
  test::expect_error([&] { resolve_shard_dir("m", store, 2, WeightFormat::INT8, {}); },
                     {"no int8 shards", "tp2-bf16", "--tp 2 --int8"});
  test::expect_error([&] { resolve_shard_dir("other", store, 2, WeightFormat::BF16, {}); },
                     {"model 'other' not found", "gptfast-shard --from <checkpoint> --model other"});
  // int4: one group size present is picked; two need --group-size.
  std::string g32 = make_set(tmp.path, "m", 2, "int4g32");
  EXPECT_EQ(resolve_shard_dir("m", store, 2, WeightFormat::INT4, {}), g32);
  make_set(tmp.path, "m", 2, "int4g128");
  test::expect_error([&] { resolve_shard_dir("m", store, 2, WeightFormat::INT4, {}); },
                     {"int4g128", "int4g32", "--group-size"});
  EXPECT_EQ(resolve_shard_dir("m", store, 2, WeightFormat::INT4, 32), g32);
}

TEST(ShardStore, ManifestChecks) {
  test::TempDir tmp;
  std::string d = make_set(tmp.path, "m", 2, "int8");
  fs::path r1 = fs::path(d) / "rank1.h5";
  EXPECT_NO_THROW(check_manifest(d, 0, true));
  EXPECT_NO_THROW(check_manifest(d, 1, true));
  test::expect_error([&] { check_manifest(d, 2, false); }, {"lists no rank2.h5", "--force"});

  // One byte flipped: the size still matches, the hash does not.
  std::string bytes;
  {
    std::ifstream in(r1, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x20;
  test::write_file(r1, flipped);
  test::expect_error([&] { check_manifest(d, 1, true); },
                     {"rank1.h5", "hash differs", "gptfast-shard --from memory:tiny --model m", "--tp 2 --int8 --force"});
  // Truncated.
  test::write_file(r1, bytes.substr(0, bytes.size() - 100));
  test::expect_error([&] { check_manifest(d, 1, false); }, {"rank1.h5", "truncated", "--force"});
  // Deleted.
  fs::remove(r1);
  test::expect_error([&] { check_manifest(d, 1, false); }, {"rank1.h5", "missing"});
  test::write_file(r1, bytes);
  EXPECT_NO_THROW(check_manifest(d, 1, true));
  // No manifest: incomplete, refused by both the resolver and the check, pointing at --resume.
  fs::rename(fs::path(d) / "manifest.json", fs::path(d) / "m.bak");
  test::expect_error([&] { check_manifest(d, 0, false); }, {"no manifest.json", "incomplete", "--resume"});
  test::expect_error([&] { resolve_shard_dir("m", tmp.path.string(), 2, WeightFormat::INT8, {}); },
                     {"no manifest.json", "--resume"});
  fs::rename(fs::path(d) / "m.bak", fs::path(d) / "manifest.json");
}

TEST(ShardStore, MixedSetsAreRefused) {
  test::TempDir tmp;
  std::string a = make_set(tmp.path, "a", 2, "bf16", 1);
  std::string b = make_set(tmp.path, "b", 2, "bf16", 2);  // same architecture, same sizes
  fs::copy_file(fs::path(b) / "rank1.h5", fs::path(a) / "rank1.h5", fs::copy_options::overwrite_existing);
  // Without hashing the size matches, so the file's own attributes must give it away.
  test::expect_error([&] { check_manifest(a, 1, false); }, {"rank1.h5", "of b", "mixed", "--force"});
}

}  // namespace
}  // namespace gf
