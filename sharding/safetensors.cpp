// safetensors reader: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data.
// Every check of the reference reader (RELIABILITY.md) is done before any tensor is touched.
#include "sharding/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/bf16.h"
#include "core/error.h"

namespace gf {

namespace {

constexpr uint64_t kMaxHeader = 100'000'000;  // the reference reader's limit
constexpr int kMaxDepth = 8;                   // the format needs 3; deeper is hostile

// Bracket depth outside strings: refuses pathological nesting before the JSON parser sees it.
int json_depth(const char* p, uint64_t n) {
  int depth = 0, max_depth = 0;
  bool in_str = false;
  for (uint64_t i = 0; i < n; ++i) {
    char c = p[i];
    if (in_str) {
      if (c == '\\') ++i;
      else if (c == '"') in_str = false;
    } else if (c == '"') {
      in_str = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

int elem_size(StDType t) { return t == StDType::F32 ? 4 : 2; }

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : map_(path) {
  const std::string& f = path;
  const uint64_t size = map_.size();
  GF_CHECK(size >= 8, f, ": header length: file is ", size, " bytes, shorter than the 8-byte length field");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | map_.data()[i];
  GF_CHECK(n <= kMaxHeader, f, ": header length ", n, " exceeds the 100 MB limit");
  GF_CHECK(n >= 2, f, ": header length ", n, " is too small for a JSON object");
  GF_CHECK(n <= size - 8, f, ": header length ", n, " runs past the end of the file (", size, " bytes)");
  data_start_ = 8 + n;
  const char* h = reinterpret_cast<const char*>(map_.data() + 8);
  GF_CHECK(json_depth(h, n) <= kMaxDepth, f, ": header JSON nested deeper than ", kMaxDepth, " levels");
  nlohmann::json j;
  try {
    // The parser validates UTF-8 (duplicate keys are refused by the SAX pass below).
    j = nlohmann::json::parse(h, h + n);
  } catch (const nlohmann::json::exception& e) {
    GF_FAIL(f, ": header is not valid UTF-8 JSON (", e.what(), ")");
  }
  GF_CHECK(j.is_object(), f, ": header must be a JSON object");
  std::vector<StTensor> list;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      GF_CHECK(it->is_object(), f, ": __metadata__ must be an object of strings");
      for (const auto& v : *it) GF_CHECK(v.is_string(), f, ": __metadata__ values must be strings");
      continue;
    }
    const auto& t = *it;
    GF_CHECK(t.is_object() && t.contains("dtype") && t.contains("shape") && t.contains("data_offsets"), f,
             ": tensor ", name, ": needs dtype, shape and data_offsets");
    StTensor st;
    st.name = name;
    GF_CHECK(t["dtype"].is_string(), f, ": tensor ", name, ": dtype must be a string");
    std::string dt = t["dtype"].get<std::string>();
    if (dt == "BF16") st.dtype = StDType::BF16;
    else if (dt == "F16") st.dtype = StDType::F16;
    else if (dt == "F32") st.dtype = StDType::F32;
    else GF_FAIL(f, ": tensor ", name, ": dtype ", dt, " is not supported (BF16, F16, F32)");
    GF_CHECK(t["shape"].is_array(), f, ": tensor ", name, ": shape must be an array");
    uint64_t bytes = uint64_t(elem_size(st.dtype));
    for (const auto& d : t["shape"]) {
      GF_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), f, ": tensor ", name,
               ": shape entries must be non-negative integers");
      uint64_t v = d.get<uint64_t>();
      GF_CHECK(v <= uint64_t(INT64_MAX) && !__builtin_mul_overflow(bytes, v, &bytes), f, ": tensor ", name,
               ": shape x dtype size overflows 64 bits");
      st.shape.push_back(int64_t(v));
    }
    const auto& off = t["data_offsets"];
    GF_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(), f,
             ": tensor ", name, ": data_offsets must be two non-negative integers");
    st.begin = off[0].get<uint64_t>();
    st.end = off[1].get<uint64_t>();
    GF_CHECK(st.end >= st.begin, f, ": tensor ", name, ": data_offsets end ", st.end, " < begin ", st.begin);
    GF_CHECK(st.end - st.begin == bytes, f, ": tensor ", name, ": data_offsets span ", st.end - st.begin,
             " bytes but shape x dtype is ", bytes);
    list.push_back(std::move(st));
  }
  // nlohmann keeps the last of duplicate keys: count keys at depth 1 with a SAX pass to refuse them.
  {
    struct Keys : nlohmann::json_sax<nlohmann::json> {
      int depth = 0;
      std::vector<std::string> keys;
      bool null() override { return true; }
      bool boolean(bool) override { return true; }
      bool number_integer(number_integer_t) override { return true; }
      bool number_unsigned(number_unsigned_t) override { return true; }
      bool number_float(number_float_t, const string_t&) override { return true; }
      bool string(string_t&) override { return true; }
      bool binary(binary_t&) override { return true; }
      bool start_object(std::size_t) override { ++depth; return true; }
      bool key(string_t& k) override {
        if (depth == 1) keys.push_back(k);
        return true;
      }
      bool end_object() override { --depth; return true; }
      bool start_array(std::size_t) override { ++depth; return true; }
      bool end_array() override { --depth; return true; }
      bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }
    } keys;
    nlohmann::json::sax_parse(h, h + n, &keys);
    std::sort(keys.keys.begin(), keys.keys.end());
    auto d = std::adjacent_find(keys.keys.begin(), keys.keys.end());
    GF_CHECK(d == keys.keys.end(), f, ": tensor name ", *d, " appears twice in the header");
  }
  std::sort(list.begin(), list.end(), [](const StTensor& a, const StTensor& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t at = 0;
  for (const StTensor& t : list) {
    GF_CHECK(t.begin == at, f, ": tensor ", t.name, ": data_offsets begin ", t.begin,
             t.begin < at ? " overlaps the previous tensor" : " leaves a hole after the previous tensor", " (expected ",
             at, ")");
    at = t.end;
  }
  GF_CHECK(at <= size - data_start_, f, ": data_offsets: last tensor ends at ", at, ", past the end of the file (",
           size - data_start_, " data bytes)");
  GF_CHECK(at == size - data_start_, f, ": file length ", size, " != 8 + header ", n, " + data ", at,
           " (trailing bytes)");
  for (StTensor& t : list) tensors_.emplace(t.name, std::move(t));
}

const StTensor& SafetensorsFile::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  GF_CHECK(it != tensors_.end(), path(), ": no tensor ", name);
  return it->second;
}

void SafetensorsFile::read_f32(const StTensor& t, int64_t e0, int64_t e1, float* out) const {
  const int es = elem_size(t.dtype);
  GF_ASSERT(e0 >= 0 && e1 >= e0 && uint64_t(e1) * es <= t.end - t.begin);
  const uint8_t* p = map_.data() + data_start_ + t.begin + uint64_t(e0) * es;
  const int64_t n = e1 - e0;
  switch (t.dtype) {  // memcpy: data offsets need not be aligned
    case StDType::F32: std::memcpy(out, p, size_t(n) * 4); break;
    case StDType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = bf16_to_float(h);
      }
      break;
    case StDType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = fp16_to_float(h);
      }
      break;
  }
  map_.release(p, uint64_t(n) * es);
}

}  // namespace gf
