// Dequantization of ggml blocks to fp32, one row at a time; block layouts follow ggml-common.h.
#include "sharding/gguf_dequant.h"

#include <cstring>

#include "core/bf16.h"
#include "core/error.h"

namespace gf {
namespace {

constexpr uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13,
                   kQ6_K = 14, kBF16 = 30;

// Index = ggml type id; {name, block elements, block bytes, dequantizable}. Gaps are retired ids.
constexpr GgmlTypeInfo kTypes[] = {
    {"F32", 1, 4, true},
    {"F16", 1, 2, true},
    {"Q4_0", 32, 18, true},
    {"Q4_1", 32, 20, true},
    {},
    {},
    {"Q5_0", 32, 22, false},
    {"Q5_1", 32, 24, false},
    {"Q8_0", 32, 34, true},
    {"Q8_1", 32, 40, false},
    {"Q2_K", 256, 84, false},
    {"Q3_K", 256, 110, false},
    {"Q4_K", 256, 144, true},
    {"Q5_K", 256, 176, true},
    {"Q6_K", 256, 210, true},
    {"Q8_K", 256, 292, false},
    {"IQ2_XXS", 256, 66, false},
    {"IQ2_XS", 256, 74, false},
    {"IQ3_XXS", 256, 98, false},
    {"IQ1_S", 256, 50, false},
    {"IQ4_NL", 32, 18, false},
    {"IQ3_S", 256, 110, false},
    {"IQ2_S", 256, 82, false},
    {"IQ4_XS", 256, 136, false},
    {"I8", 1, 1, false},
    {"I16", 1, 2, false},
    {"I32", 1, 4, false},
    {"I64", 1, 8, false},
    {"F64", 1, 8, false},
    {"IQ1_M", 256, 56, false},
    {"BF16", 1, 2, true},
    {},
    {},
    {},
    {"TQ1_0", 256, 54, false},
    {"TQ2_0", 256, 66, false},
    {},
    {},
    {},
    {"MXFP4", 32, 17, false},
    {"NVFP4", 64, 36, false},
    {"Q1_0", 128, 18, false},
};

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
float load_f16(const uint8_t* p) { return fp16_to_float(load_u16(p)); }

// The 6-bit scale and min of sub-block j, packed into 12 bytes (Q4_K, Q5_K).
void scale_min_k4(int j, const uint8_t* q, float* sc, float* m) {
  if (j < 4) {
    *sc = float(q[j] & 63);
    *m = float(q[j + 4] & 63);
  } else {
    *sc = float((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = float((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void block_q4_0(const uint8_t* b, float* y) {  // d, qs[16]: low nibbles first half, high second
  float d = load_f16(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = float((b[2 + j] & 0xF) - 8) * d;
    y[j + 16] = float((b[2 + j] >> 4) - 8) * d;
  }
}

void block_q4_1(const uint8_t* b, float* y) {  // d, m, qs[16]
  float d = load_f16(b), m = load_f16(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = float(b[4 + j] & 0xF) * d + m;
    y[j + 16] = float(b[4 + j] >> 4) * d + m;
  }
}

void block_q8_0(const uint8_t* b, float* y) {  // d, qs[32] int8
  float d = load_f16(b);
  for (int j = 0; j < 32; ++j) y[j] = float(int8_t(b[2 + j])) * d;
}

void block_q4_k(const uint8_t* b, float* y) {  // d, dmin, scales[12], qs[128]
  float d = load_f16(b), dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
    float sc1, m1, sc2, m2;
    scale_min_k4(is, scales, &sc1, &m1);
    scale_min_k4(is + 1, scales, &sc2, &m2);
    for (int l = 0; l < 32; ++l) *y++ = d * sc1 * float(q[l] & 0xF) - dmin * m1;
    for (int l = 0; l < 32; ++l) *y++ = d * sc2 * float(q[l] >> 4) - dmin * m2;
  }
}

void block_q5_k(const uint8_t* b, float* y) {  // d, dmin, scales[12], qh[32], qs[128]
  float d = load_f16(b), dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
    float sc1, m1, sc2, m2;
    scale_min_k4(is, scales, &sc1, &m1);
    scale_min_k4(is + 1, scales, &sc2, &m2);
    for (int l = 0; l < 32; ++l)
      *y++ = d * sc1 * float((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - dmin * m1;
    for (int l = 0; l < 32; ++l)
      *y++ = d * sc2 * float((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - dmin * m2;
  }
}

void block_q6_k(const uint8_t* b, float* y) {  // ql[128], qh[64], scales[16] int8, d
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  float d = load_f16(b + 208);
  for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
    for (int l = 0; l < 32; ++l) {
      int is = l / 16;
      int q1 = int((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * float(sc[is]) * float(q1);
      y[l + 32] = d * float(sc[is + 2]) * float(q2);
      y[l + 64] = d * float(sc[is + 4]) * float(q3);
      y[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
  }
}

template <typename Block>
void blocks(const uint8_t* src, int64_t n, float* out, int64_t block, int64_t bytes, Block f) {
  for (int64_t i = 0; i < n / block; ++i) f(src + i * bytes, out + i * block);
}

}  // namespace

GgmlTypeInfo ggml_type_info(uint32_t type) {
  if (type >= sizeof(kTypes) / sizeof(kTypes[0])) return {};
  return kTypes[type];
}

std::string ggml_type_name(uint32_t type) {
  const char* n = ggml_type_info(type).name;
  return n ? std::string(n) : "type " + std::to_string(type);
}

void dequantize_row(uint32_t type, const uint8_t* src, int64_t n, float* out) {
  GgmlTypeInfo t = ggml_type_info(type);
  GF_CHECK(t.dequantizable, "GGUF tensors of type ", ggml_type_name(type),
           " are not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K)");
  GF_ASSERT(n % t.block_size == 0);
  switch (type) {
    case kF32:
      std::memcpy(out, src, size_t(n) * 4);
      break;
    case kF16:
      for (int64_t i = 0; i < n; ++i) out[i] = load_f16(src + 2 * i);
      break;
    case kBF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(load_u16(src + 2 * i));
      break;
    case kQ4_0:
      blocks(src, n, out, t.block_size, t.type_size, block_q4_0);
      break;
    case kQ4_1:
      blocks(src, n, out, t.block_size, t.type_size, block_q4_1);
      break;
    case kQ8_0:
      blocks(src, n, out, t.block_size, t.type_size, block_q8_0);
      break;
    case kQ4_K:
      blocks(src, n, out, t.block_size, t.type_size, block_q4_k);
      break;
    case kQ5_K:
      blocks(src, n, out, t.block_size, t.type_size, block_q5_k);
      break;
    case kQ6_K:
      blocks(src, n, out, t.block_size, t.type_size, block_q6_k);
      break;
    default:
      GF_ASSERT(false);
  }
}

}  // namespace gf
