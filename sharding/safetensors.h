// A safetensors file, memory-mapped and validated like the reference reader (RELIABILITY.md §safetensors).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/mapped_file.h"

namespace gf {

enum class StDType { BF16, F16, F32 };

struct StTensor {
  std::string name;
  StDType dtype = StDType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data section
};

class SafetensorsFile {
 public:
  // Maps and validates the whole header; any defect is one gf::Error naming the file and the field.
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return map_.path(); }
  const std::map<std::string, StTensor>& tensors() const { return tensors_; }
  const StTensor& tensor(const std::string& name) const;  // throws naming the file
  // Elements [e0, e1) of `t` (flattened) as fp32.
  void read_f32(const StTensor& t, int64_t e0, int64_t e1, float* out) const;

 private:
  MappedFile map_;
  uint64_t data_start_ = 0;
  std::map<std::string, StTensor> tensors_;
};

}  // namespace gf
