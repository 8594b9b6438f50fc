// fp32 rows -> a HostWeight in the shard's format (bf16 / int8 / int4, layouts of core/weight_format.h),
// and back (the dequantizer tests and numpy references use).
#pragma once
#include <cstdint>
#include <vector>

#include "core/weight_format.h"
#include "model/shard_io.h"

namespace gf {

// A zero-filled weight of the given shape and format (int4 q holds ceil(cols/2) bytes per row).
HostWeight make_weight(const FormatSpec& fmt, int64_t rows, int64_t cols);
// Quantizes n_rows rows of src (n_rows, dst.cols) into rows [row0, row0 + n_rows) of dst. Rows are
// independent in every format, so a big weight can be filled a chunk of rows at a time.
//  int8: scale = bf16(absmax / 127); q = clamp(round(w / scale), -127, 127).
//  int4: per group of G columns, scale = bf16((max - min) / 15), zero = bf16(min),
//        q = clamp(round((w - zero) / scale), 0, 15).
void quantize_rows(const float* src, int64_t n_rows, HostWeight& dst, int64_t row0);
// Columns [c0, c0 + dst.cols) of every row of `src` into rows [row0, row0 + src.rows) of `dst` (same
// format): a column cut of a weight quantized over whole rows. int8 rows keep the whole row's scale;
// int4 needs c0 on a group boundary and takes the groups the cut covers.
void copy_cols(const HostWeight& src, int64_t c0, HostWeight& dst, int64_t row0);
HostWeight quantize(const float* w, int64_t rows, int64_t cols, const FormatSpec& fmt);
// The weight the kernels see, as fp32 (rows, cols).
std::vector<float> dequantize(const HostWeight& w);

}  // namespace gf
