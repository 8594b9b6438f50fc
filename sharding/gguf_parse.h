// A GGUF (v2/v3) file, memory-mapped and validated: metadata key/values and tensor infos, with
// every count, length and offset checked before use (see RELIABILITY.md §GGUF). Values point into
// the map.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/mapped_file.h"

namespace gf {

enum class GgufType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};

// One metadata value. Scalars and numeric arrays point at little-endian bytes inside the map.
struct GgufValue {
  GgufType type = GgufType::u8;
  GgufType elem_type = GgufType::u8;      // arrays only
  uint64_t count = 1;                     // array length (1 for scalars)
  const uint8_t* data = nullptr;          // scalar bytes, or the first numeric array element
  std::vector<std::string_view> strings;  // string scalar (one) or array of strings
};

struct GgufTensorInfo {
  std::string name;
  uint32_t ggml_type = 0;
  std::vector<int64_t> ne;  // GGUF order: ne[0] is the contiguous (column) dimension
  uint64_t offset = 0;      // from the start of the data section
  uint64_t n_bytes = 0;
  int64_t n_elements = 0;
};

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);
  GgufFile(GgufFile&&) = delete;  // values and views point into the map

  const std::string& path() const { return map_.path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }

  const GgufValue* find(const std::string& key) const;
  // Typed getters: a missing key or a value of the wrong type is a one-line error naming the key.
  int64_t get_int(const std::string& key) const;
  std::optional<int64_t> get_int_opt(const std::string& key) const;
  double get_float(const std::string& key) const;  // f32/f64 (integers accepted)
  std::optional<double> get_float_opt(const std::string& key) const;
  std::optional<bool> get_bool_opt(const std::string& key) const;
  std::string_view get_string(const std::string& key) const;
  std::optional<std::string_view> get_string_opt(const std::string& key) const;
  const std::vector<std::string_view>& get_strings(const std::string& key) const;
  std::vector<int64_t> get_ints(const std::string& key) const;  // integer array
  std::vector<float> get_floats(const std::string& key) const;  // f32 array

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  const uint8_t* tensor_data(const GgufTensorInfo& t) const {
    return base_ + data_start_ + t.offset;
  }

 private:
  void parse();
  MappedFile map_;
  const std::string& path_;  // map_.path()
  const uint8_t* base_;      // map_.data()
  uint64_t size_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_start_ = 0;
  std::unordered_map<std::string, GgufValue> kv_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace gf
