// ggml tensor types: block geometry of every type (for size checks) and dequantization to fp32 of
// the ones we import (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K), block layouts as in
// ggml.
#pragma once
#include <cstdint>
#include <string>

namespace gf {

struct GgmlTypeInfo {
  const char* name = nullptr;  // nullptr: not a ggml type (ids retired upstream or out of range)
  int64_t block_size = 0;      // elements per block
  int64_t type_size = 0;       // bytes per block
  bool dequantizable = false;  // dequantize_row supports it
};

// Info of ggml type `type`; .name is nullptr when the id is unknown.
GgmlTypeInfo ggml_type_info(uint32_t type);
// Name for messages ("Q4_K", or "type 999").
std::string ggml_type_name(uint32_t type);
// n elements (a multiple of the block size) of `type` at src -> out. Throws for unsupported types.
void dequantize_row(uint32_t type, const uint8_t* src, int64_t n, float* out);

}  // namespace gf
