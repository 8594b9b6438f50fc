// Weight-only quantizers of the shard formats and their inverse (layouts in core/weight_format.h).
#include "sharding/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/bf16.h"
#include "core/error.h"

namespace gf {

namespace {
int64_t q_bytes_per_row(const FormatSpec& fmt, int64_t cols) {
  switch (fmt.format) {
    case WeightFormat::BF16: return 2 * cols;
    case WeightFormat::INT8: return cols;
    case WeightFormat::INT4: return (cols + 1) / 2;
  }
  return 0;
}
int64_t n_groups(const FormatSpec& fmt, int64_t cols) {
  return fmt.format == WeightFormat::INT4 ? (cols + fmt.group_size - 1) / fmt.group_size : 1;
}
}  // namespace

HostWeight make_weight(const FormatSpec& fmt, int64_t rows, int64_t cols) {
  GF_CHECK(rows >= 0 && cols > 0, "make_weight: bad shape (", rows, ", ", cols, ")");
  GF_CHECK(fmt.format != WeightFormat::INT4 || fmt.group_size > 0, "make_weight: int4 needs a group size");
  HostWeight w;
  w.fmt = fmt;
  w.rows = rows;
  w.cols = cols;
  w.q.assign(size_t(rows * q_bytes_per_row(fmt, cols)), 0);
  if (fmt.format == WeightFormat::INT8) w.scale.assign(size_t(rows), 0);
  if (fmt.format == WeightFormat::INT4) {
    w.scale.assign(size_t(rows * n_groups(fmt, cols)), 0);
    w.zero.assign(size_t(rows * n_groups(fmt, cols)), 0);
  }
  return w;
}

void quantize_rows(const float* src, int64_t n_rows, HostWeight& dst, int64_t row0) {
  GF_ASSERT(row0 >= 0 && row0 + n_rows <= dst.rows);
  const int64_t C = dst.cols, rb = q_bytes_per_row(dst.fmt, C);
  for (int64_t i = 0; i < n_rows; ++i) {
    const float* w = src + i * C;
    const int64_t r = row0 + i;
    uint8_t* q = dst.q.data() + r * rb;
    switch (dst.fmt.format) {
      case WeightFormat::BF16: {
        auto* h = reinterpret_cast<uint16_t*>(q);
        for (int64_t c = 0; c < C; ++c) h[c] = float_to_bf16(w[c]);
        break;
      }
      case WeightFormat::INT8: {
        float amax = 0;
        for (int64_t c = 0; c < C; ++c) amax = std::max(amax, std::fabs(w[c]));
        float scale = round_to_bf16(amax / 127.0f);  // the kernel multiplies by the bf16 scale
        dst.scale[r] = float_to_bf16(scale);
        auto* qi = reinterpret_cast<int8_t*>(q);
        for (int64_t c = 0; c < C; ++c)
          qi[c] = scale > 0 ? int8_t(std::clamp(std::nearbyint(w[c] / scale), -127.0f, 127.0f)) : 0;
        break;
      }
      case WeightFormat::INT4: {
        const int64_t G = dst.fmt.group_size, ng = n_groups(dst.fmt, C);
        for (int64_t g = 0; g < ng; ++g) {
          int64_t c0 = g * G, c1 = std::min(C, c0 + G);
          float lo = w[c0], hi = w[c0];
          for (int64_t c = c0; c < c1; ++c) lo = std::min(lo, w[c]), hi = std::max(hi, w[c]);
          float scale = round_to_bf16((hi - lo) / 15.0f), zero = round_to_bf16(lo);
          dst.scale[r * ng + g] = float_to_bf16(scale);
          dst.zero[r * ng + g] = float_to_bf16(zero);
          for (int64_t c = c0; c < c1; ++c) {
            int v = scale > 0 ? int(std::clamp(std::nearbyint((w[c] - zero) / scale), 0.0f, 15.0f)) : 0;
            q[c / 2] = (c % 2) ? uint8_t((q[c / 2] & 0x0f) | (v << 4)) : uint8_t((q[c / 2] & 0xf0) | v);
          }
        }
        break;
      }
    }
  }
}

void copy_cols(const HostWeight& src, int64_t c0, HostWeight& dst, int64_t row0) {
  const int64_t n = dst.cols;
  GF_ASSERT(src.fmt == dst.fmt && c0 >= 0 && c0 + n <= src.cols && row0 + src.rows <= dst.rows);
  const int64_t sb = q_bytes_per_row(src.fmt, src.cols), db = q_bytes_per_row(dst.fmt, n);
  const int64_t sg = n_groups(src.fmt, src.cols), dg = n_groups(dst.fmt, n);
  const int G = dst.fmt.group_size;
  GF_ASSERT(dst.fmt.format != WeightFormat::INT4 || c0 % G == 0);
  const int64_t q0 = dst.fmt.format == WeightFormat::BF16 ? 2 * c0 : dst.fmt.format == WeightFormat::INT8 ? c0 : c0 / 2;
  for (int64_t i = 0; i < src.rows; ++i) {
    const int64_t r = row0 + i;
    std::memcpy(dst.q.data() + r * db, src.q.data() + i * sb + q0, size_t(db));
    if (dst.fmt.format == WeightFormat::INT4 && n % 2) dst.q[size_t(r * db + db - 1)] &= 0x0f;  // past the cut
    if (dst.fmt.format == WeightFormat::INT8) dst.scale[size_t(r)] = src.scale[size_t(i)];
    if (dst.fmt.format == WeightFormat::INT4) {
      std::copy_n(src.scale.begin() + i * sg + c0 / G, dg, dst.scale.begin() + r * dg);
      std::copy_n(src.zero.begin() + i * sg + c0 / G, dg, dst.zero.begin() + r * dg);
    }
  }
}

HostWeight quantize(const float* w, int64_t rows, int64_t cols, const FormatSpec& fmt) {
  HostWeight h = make_weight(fmt, rows, cols);
  quantize_rows(w, rows, h, 0);
  return h;
}

std::vector<float> dequantize(const HostWeight& w) {
  const int64_t C = w.cols, rb = q_bytes_per_row(w.fmt, C), ng = n_groups(w.fmt, C);
  std::vector<float> out(size_t(w.rows * C));
  for (int64_t r = 0; r < w.rows; ++r) {
    const uint8_t* q = w.q.data() + r * rb;
    float* o = out.data() + r * C;
    for (int64_t c = 0; c < C; ++c) {
      switch (w.fmt.format) {
        case WeightFormat::BF16: {
          uint16_t h;
          std::memcpy(&h, q + 2 * c, 2);
          o[c] = bf16_to_float(h);
          break;
        }
        case WeightFormat::INT8: o[c] = float(int8_t(q[c])) * bf16_to_float(w.scale[r]); break;
        case WeightFormat::INT4: {
          int v = (c % 2) ? q[c / 2] >> 4 : q[c / 2] & 0x0f;
          int64_t g = r * ng + c / w.fmt.group_size;
          o[c] = float(v) * bf16_to_float(w.scale[g]) + bf16_to_float(w.zero[g]);
          break;
        }
      }
    }
  }
  return out;
}

}  // namespace gf
