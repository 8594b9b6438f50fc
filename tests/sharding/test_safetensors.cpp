// The safetensors malformed corpus (RELIABILITY.md test 1): each defect is one gf::Error line naming
// the file and the field; a valid file reads back its values in every dtype.
#include "core/bf16.h"
#include "sharding/safetensors.h"
#include "test_util.h"

namespace gf {
namespace {

using test::json;
namespace fs = std::filesystem;

struct Bad {
  std::string name, bytes;
  std::vector<std::string> needles;
};

std::string hdr(const json& j) { return j.dump(); }
json t(const std::string& dtype, std::vector<uint64_t> shape, uint64_t b, uint64_t e) {
  return {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {b, e}}};
}

TEST(Safetensors, MalformedCorpusIsRefused) {
  test::TempDir tmp;
  const std::string d16(16, '\1');
  std::vector<Bad> corpus = {
      {"n0", test::st_raw(0, "", ""), {"header length 0"}},
      {"n7", test::st_raw(7, "{}", ""), {"header length 7", "past the end"}},
      {"nmax", test::st_raw(~0ull, "{}", ""), {"header length", "100 MB"}},
      {"npast", test::st_raw(500, "{}", ""), {"header length 500", "past the end"}},
      {"short", std::string(5, '\0'), {"8-byte"}},
      {"badutf8", test::st_file("{\"a\xff\": {}}", ""), {"UTF-8 JSON"}},
      {"truncjson", test::st_file("{\"a\": {\"dtype\": \"F32\"", ""), {"UTF-8 JSON"}},
      {"deep", test::st_file(std::string(200, '[') + std::string(200, ']'), ""), {"nested"}},
      {"notobj", test::st_file("[]", ""), {"JSON object"}},
      {"dup", test::st_file(R"({"a": {"dtype":"F32","shape":[2],"data_offsets":[0,8]}, "a": {"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", d16),
       {"tensor name a", "twice"}},
      {"overlap", test::st_file(hdr({{"a", t("F32", {2}, 0, 8)}, {"b", t("F32", {2}, 4, 12)}}), std::string(12, '\1')),
       {"tensor b", "overlaps"}},
      {"gap", test::st_file(hdr({{"a", t("F32", {2}, 0, 8)}, {"b", t("F32", {2}, 12, 20)}}), std::string(20, '\1')),
       {"tensor b", "hole"}},
      {"notfrom0", test::st_file(hdr({{"a", t("F32", {2}, 4, 12)}}), std::string(12, '\1')), {"tensor a", "hole"}},
      {"pasteof", test::st_file(hdr({{"a", t("F32", {4}, 0, 16)}}), std::string(8, '\1')), {"past the end"}},
      {"endltbegin", test::st_file(hdr({{"a", t("F32", {0}, 8, 0)}}), ""), {"tensor a", "end 0 < begin 8"}},
      {"hugeshape", test::st_file(hdr({{"a", t("F32", {2, 1ull << 63}, 0, 8)}}), std::string(8, '\1')),
       {"tensor a", "overflows"}},
      {"bytecount", test::st_file(hdr({{"a", t("F32", {3}, 0, 8)}}), std::string(8, '\1')),
       {"tensor a", "8 bytes", "12"}},
      {"dtype", test::st_file(hdr({{"a", t("I64", {1}, 0, 8)}}), std::string(8, '\1')), {"tensor a", "dtype I64"}},
      {"trailing", test::st_file(hdr({{"a", t("F32", {2}, 0, 8)}}), std::string(9, '\1')), {"trailing"}},
      {"negshape", test::st_file(R"({"a": {"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", ""), {"tensor a", "shape"}},
      {"nooffsets", test::st_file(R"({"a": {"dtype":"F32","shape":[1]}})", ""), {"tensor a", "data_offsets"}},
      {"meta", test::st_file(R"({"__metadata__": {"k": 1}})", ""), {"__metadata__"}},
  };
  for (const Bad& b : corpus) {
    SCOPED_TRACE(b.name);
    fs::path p = tmp / (b.name + ".safetensors");
    test::write_file(p, b.bytes);
    auto needles = b.needles;
    needles.push_back(p.string());
    test::expect_error([&] { SafetensorsFile f(p.string()); }, needles);
  }
}

TEST(Safetensors, ReadsEveryDtypeAndUnalignedData) {
  test::TempDir tmp;
  auto v = test::random_floats(6, 7);
  std::string f32(reinterpret_cast<const char*>(v.data()), 24), bf, hf;
  std::vector<float> bf_want;
  for (float x : v) {
    uint16_t h = float_to_bf16(x);
    bf.append(reinterpret_cast<const char*>(&h), 2);
    bf_want.push_back(bf16_to_float(h));
  }
  const uint16_t half_vals[3] = {0x3c00, 0xc000, 0x0001};  // 1, -2, smallest subnormal
  hf.append(reinterpret_cast<const char*>(half_vals), 6);
  // F16 first so the F32 data starts at an odd offset.
  json h = {{"h", t("F16", {3}, 0, 6)}, {"x", t("F32", {2, 3}, 6, 30)}, {"b", t("BF16", {6}, 30, 42)},
            {"__metadata__", {{"format", "pt"}}}};
  test::write_file(tmp / "ok.safetensors", test::st_file(h.dump() + " ", hf + f32 + bf));
  SafetensorsFile f((tmp / "ok.safetensors").string());
  EXPECT_EQ(f.tensors().size(), 3u);
  std::vector<float> out(6);
  f.read_f32(f.tensor("x"), 0, 6, out.data());
  EXPECT_EQ(out, v);
  f.read_f32(f.tensor("b"), 2, 6, out.data());
  EXPECT_EQ(std::vector<float>(out.begin(), out.begin() + 4), std::vector<float>(bf_want.begin() + 2, bf_want.end()));
  f.read_f32(f.tensor("h"), 0, 3, out.data());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_FLOAT_EQ(out[2], 5.9604645e-8f);
  test::expect_error([&] { f.tensor("nope"); }, {"ok.safetensors", "no tensor nope"});
}

}  // namespace
}  // namespace gf
