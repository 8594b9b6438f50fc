// HDF5 layer and shard file round trips: what is written is read back bit for bit, and every
// mismatch (dtype, shape, attribute) is one line naming file, object, expected and actual.
#include <hdf5.h>

#include "core/bf16.h"
#include "io/hdf5.h"
#include "model/shard_io.h"
#include "sharding/quantize.h"
#include "sharding/shard_writer.h"
#include "test_util.h"

namespace gf {
namespace {

std::vector<uint16_t> random_bf16(size_t n, uint32_t seed) {
  auto f = test::random_floats(n, seed);
  std::vector<uint16_t> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = float_to_bf16(f[i]);
  return h;
}

HostShard random_shard(const FormatSpec& fmt, int64_t tp, int64_t rank) {
  HostShard s;
  s.cfg = test::tiny_config(6, 3, false, 64, 300);  // head columns and hidden on int4 group boundaries
  s.slice = plan_rank_slice(s.cfg, tp, rank, fmt.format == WeightFormat::INT4 ? fmt.group_size : 1);
  s.fmt = fmt;
  s.tokenizer_json = R"({"model": {}})";
  s.chat_template = "";  // empty datasets must round trip too
  const auto& c = s.cfg;
  const auto& p = s.slice;
  uint32_t seed = 10;
  auto weight = [&](int64_t r, int64_t k, const FormatSpec& f) {
    auto w = test::random_floats(size_t(r * k), seed++);
    return quantize(w.data(), r, k, f);
  };
  s.embed = random_bf16(size_t(c.vocab_size * c.dim), seed++);
  s.norm = random_bf16(size_t(c.dim), seed++);
  s.lm_head = weight(p.vocab_local, c.dim, lm_head_format(fmt));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    HostLayer L;
    L.attn_norm = random_bf16(size_t(c.dim), seed++);
    L.ffn_norm = random_bf16(size_t(c.dim), seed++);
    L.wqkv = weight((p.n_heads + 2 * p.n_kv_heads) * c.head_dim, c.dim, fmt);
    L.wo = weight(c.dim, p.n_heads * c.head_dim, fmt);
    L.w13 = weight(2 * p.hidden_dim, c.dim, fmt);
    L.w2 = weight(c.dim, p.hidden_dim, fmt);
    s.layers.push_back(std::move(L));
  }
  return s;
}

void expect_same(const HostWeight& a, const HostWeight& b) {
  EXPECT_EQ(a.fmt, b.fmt);
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_EQ(a.cols, b.cols);
  EXPECT_EQ(a.q, b.q);
  EXPECT_EQ(a.scale, b.scale);
  EXPECT_EQ(a.zero, b.zero);
}

class ShardRoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(ShardRoundTrip, ReadGivesBackWhatWasWritten) {
  test::TempDir tmp;
  HostShard s = random_shard(FormatSpec::parse(GetParam()), 3, 2);
  std::string path = (tmp / "rank2.h5").string();
  write_rank_shard(s, path, "memory:test");
  HostShard r = read_rank_shard(path);
  EXPECT_EQ(r.cfg.name, "tiny");
  EXPECT_EQ(r.cfg.eos_ids, s.cfg.eos_ids);
  EXPECT_EQ(r.cfg.bos_id, s.cfg.bos_id);
  EXPECT_EQ(r.slice.tp_rank, 2);
  EXPECT_EQ(r.slice.hidden_dim, s.slice.hidden_dim);
  EXPECT_EQ(r.fmt, s.fmt);
  EXPECT_EQ(r.tokenizer_json, s.tokenizer_json);
  EXPECT_EQ(r.chat_template, "");
  EXPECT_EQ(r.embed, s.embed);
  EXPECT_EQ(r.norm, s.norm);
  expect_same(r.lm_head, s.lm_head);
  ASSERT_EQ(r.layers.size(), s.layers.size());
  for (size_t l = 0; l < s.layers.size(); ++l) {
    EXPECT_EQ(r.layers[l].attn_norm, s.layers[l].attn_norm);
    EXPECT_EQ(r.layers[l].ffn_norm, s.layers[l].ffn_norm);
    expect_same(r.layers[l].wqkv, s.layers[l].wqkv);
    expect_same(r.layers[l].wo, s.layers[l].wo);
    expect_same(r.layers[l].w13, s.layers[l].w13);
    expect_same(r.layers[l].w2, s.layers[l].w2);
  }
  EXPECT_GT(r.weight_bytes(), 0);
  QWeightView v = r.layers[0].w2.view();
  EXPECT_EQ(v.cols, s.slice.hidden_dim);
  EXPECT_EQ(v.scale != nullptr, s.fmt.format != WeightFormat::BF16);
}
INSTANTIATE_TEST_SUITE_P(Formats, ShardRoundTrip, ::testing::Values("bf16", "int8", "int4g32", "int4g128"));

TEST(Hdf5, DtypeAndShapeMismatchesNameExpectedAndActual) {
  test::TempDir tmp;
  std::string path = (tmp / "x.h5").string();
  {
    h5::Group f = h5::create_file(path);
    std::vector<uint16_t> v = {1, 2, 3, 4};
    f.write("plain", h5::DType::U16, {4}, v.data());
    f.write("b", h5::DType::BF16, {2, 2}, v.data());
    f.set_attr("n", int64_t(7));
    f.set_attr("s", std::string("hi"));
    f.set_attr("ids", std::vector<int64_t>{});
  }
  h5::Group f = h5::open_file_readonly(path);
  std::vector<uint16_t> out(4);
  f.read("b", h5::DType::BF16, {2, 2}, out.data());
  EXPECT_EQ(out[3], 4);
  test::expect_error([&] { f.read("plain", h5::DType::BF16, {4}, out.data()); },
                     {path, "/plain", "expected bf16", "uint16"});
  test::expect_error([&] { f.read("b", h5::DType::U16, {2, 2}, out.data()); }, {path, "/b", "expected uint16"});
  test::expect_error([&] { f.read("b", h5::DType::BF16, {4}, out.data()); }, {path, "/b", "(4,)", "(2, 2)"});
  test::expect_error([&] { f.read("b", h5::DType::F32, {2, 2}, out.data()); }, {"expected float32", "uint16"});
  test::expect_error([&] { f.read("nope", h5::DType::F32, {1}, out.data()); }, {path, "/nope", "missing"});
  EXPECT_EQ(f.attr_int("n"), 7);
  EXPECT_EQ(f.attr_string("s"), "hi");
  EXPECT_TRUE(f.attr_ints("ids").empty());
  test::expect_error([&] { f.attr_string("n"); }, {path, "@n", "expected a string"});
  test::expect_error([&] { f.attr_int("absent"); }, {path, "@absent", "missing"});
}

TEST(Hdf5, NotHdf5IsOneLine) {
  test::TempDir tmp;
  test::write_file(tmp / "junk.h5", "this is not hdf5 at all, not even close................");
  test::expect_error([&] { h5::open_file_readonly((tmp / "junk.h5").string()); }, {"junk.h5", "not an HDF5 file"});
  test::expect_error([&] { h5::open_file_readonly((tmp / "absent.h5").string()); }, {"absent.h5", "cannot open"});
}

TEST(ShardFile, SliceThatDisagreesWithThePlanIsRefused) {
  test::TempDir tmp;
  HostShard s = random_shard({WeightFormat::BF16, 0}, 2, 0);
  s.slice.hidden_begin = 3;  // a file whose cut is not the plan's
  std::string path = (tmp / "rank0.h5").string();
  write_rank_shard(s, path, "memory:test");
  test::expect_error([&] { read_rank_shard(path); }, {path, "hidden_begin", "expected 0", "got 3"});
}

TEST(ShardFile, WeightOfWrongShapeIsRefused) {
  test::TempDir tmp;
  HostShard s = random_shard({WeightFormat::INT8, 0}, 1, 0);
  auto w = test::random_floats(48 * 7, 5);
  s.layers[1].wo = quantize(w.data(), 48, 7, {WeightFormat::INT8, 0});  // should be (48, 6 heads x 64)
  std::string path = (tmp / "rank0.h5").string();
  write_rank_shard(s, path, "memory:test");
  test::expect_error([&] { read_rank_shard(path); }, {path, "/layers/001/wo/q", "(48, 384)", "(48, 7)"});
}

// Rewrites the root attribute format_version of a closed file (raw HDF5: the h5 layer only reads files).
void set_format_version(const std::string& path, int64_t v) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
  ASSERT_GE(a, 0);
  EXPECT_GE(H5Awrite(a, H5T_NATIVE_INT64, &v), 0);
  H5Aclose(a);
  H5Fclose(f);
}

TEST(ShardFile, Int4SetKeepsAnInt8LmHead) {
  test::TempDir tmp;
  HostShard s = random_shard({WeightFormat::INT4, 32}, 1, 0);
  std::string path = (tmp / "rank0.h5").string();
  write_rank_shard(s, path, "memory:test");
  HostShard r = read_rank_shard(path);
  EXPECT_EQ(r.lm_head.fmt, (FormatSpec{WeightFormat::INT8, 0}));
  EXPECT_EQ(r.layers[0].w13.fmt, (FormatSpec{WeightFormat::INT4, 32}));
  // An int4 head in an int4 set (what version 1 wrote) is refused by name.
  s.lm_head = quantize(dequantize(s.lm_head).data(), s.lm_head.rows, s.lm_head.cols, s.fmt);
  write_rank_shard(s, path, "memory:test");
  test::expect_error([&] { read_rank_shard(path); }, {path, "/lm_head@format", "expected int8", "got int4g32"});
}

TEST(ShardFile, Version1Int4SetIsRefusedWithTheCommandThatRemakesIt) {
  test::TempDir tmp;
  std::filesystem::path dir = tmp / "store" / "tiny" / "tp1-int4g32";
  std::filesystem::create_directories(dir);
  std::string path = (dir / "rank0.h5").string();
  write_rank_shard(random_shard({WeightFormat::INT4, 32}, 1, 0), path, "/ckpt/tiny");
  set_format_version(path, 1);
  test::expect_error([&] { read_rank_shard(path); },
                     {path, "format_version", "expected 2", "got 1",
                      "gptfast-shard --from /ckpt/tiny --model tiny --model-dir " + (tmp / "store").string() +
                          " --tp 1 --int4 --group-size 32 --force"});
  // bf16 and int8 kept their layout: version 1 files of those still read.
  write_rank_shard(random_shard({WeightFormat::INT8, 0}, 1, 0), path, "/ckpt/tiny");
  set_format_version(path, 1);
  EXPECT_EQ(read_rank_shard(path).lm_head.fmt, (FormatSpec{WeightFormat::INT8, 0}));
  set_format_version(path, 3);
  test::expect_error([&] { read_rank_shard(path); }, {"expected 2", "got 3", "--int8 --force"});
}

}  // namespace
}  // namespace gf
