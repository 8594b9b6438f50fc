// A non-owning view of one matmul weight in any shard format; the same view feeds CPU and CUDA ops.
#pragma once
#include <cstdint>

#include "core/weight_format.h"

namespace gf {

// Layouts are those of core/weight_format.h. out[m][r] = sum_c x[m][c] * W[r][c].
struct QWeightView {
  WeightFormat format = WeightFormat::BF16;
  int64_t rows = 0, cols = 0;    // (output features, input features)
  int group_size = 0;            // int4 only
  const void* q = nullptr;       // bf16: uint16 (rows, cols) | int8: int8 (rows, cols) | int4: uint8 (rows, ceil(cols/2))
  const uint16_t* scale = nullptr;  // bf16 bits. int8: (rows) | int4: (rows, n_groups())
  const uint16_t* zero = nullptr;   // bf16 bits. int4: (rows, n_groups())
  int64_t n_groups() const { return format == WeightFormat::INT4 ? (cols + group_size - 1) / group_size : 1; }
};

// Byte offset of weight c within a row of q (c even for int4); of c = cols: the row's length (cols even).
constexpr int64_t weight_byte_of_col(WeightFormat f, int64_t c) {
  return f == WeightFormat::BF16 ? 2 * c : f == WeightFormat::INT8 ? c : c / 2;
}

}  // namespace gf
