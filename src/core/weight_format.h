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
// Version 2: the LM head of an int4 set is int8 (lm_head_format); version 1 int4 sets are refused
// (re-made by gptfast-shard), bf16 and int8 version 1 sets are read as before (same layout).
constexpr int kShardFormatVersion = 2;

// The LM head's format in a set of format `fmt`: int4 sets keep it int8 (per-row), as common practice
// does for the output layer; an int4 head cost SmolLM2-135M most of its 5.2% int4g32 perplexity loss.
inline FormatSpec lm_head_format(const FormatSpec& fmt) {
  return fmt.format == WeightFormat::INT4 ? FormatSpec{WeightFormat::INT8, 0} : fmt;
}

}  // namespace gf
