// Weight formats: the versioned contract between sharding/ (writes) and kernels/ (read).
#pragma once
#include <string>

namespace gf {

enum class WeightFormat { BF16, INT8, INT4 };

// A format plus its int4 group size. Names: "bf16", "int8", "int4g32" / "int4g64" / "int4g128".
struct FormatSpec {
  WeightFormat format = WeightFormat::BF16;
  int group_size = 0;  // int4 only: 32, 64 or 128
  std::string name() const;
  static FormatSpec parse(const std::string& name);  // throws gf::Error on an unknown name
  bool operator==(const FormatSpec&) const = default;
};

// Shard-file format version; bump whenever a layout below changes.
//  bf16: w = bf16 bits, (rows, cols) row-major.
//  int8: q int8 (rows, cols); scale bf16 (rows); w[r][c] = q[r][c] * scale[r]  (symmetric, per output channel).
//  int4: q uint8 (rows, ceil(cols/2)), element 2j in the low nibble and 2j+1 in the high nibble, values 0..15;
//        scale, zero bf16 (rows, ceil(cols/G)); w[r][c] = q[r][c] * scale[r][c/G] + zero[r][c/G]
//        (asymmetric min/max; the last group of a row may be shorter than G).
constexpr int kShardFormatVersion = 1;

}  // namespace gf
