// Every index of the tensor-core GEMV (matmul_mma.cu), as host+device functions so that
// tests/kernels_cpu/test_mma_layout.cpp can emulate one warp on a CPU with the kernel's own arithmetic.
//
// One warp computes 16 weight rows (the mma's A, m16) x 8 tokens (B, n8) per n-tile, over chunks of
// K. Lane l = (g, t) = (l / 4, l % 4) holds rows g and g + 8 of A (PTX m16n8k16 layout) and, per
// chunk, loads 16 contiguous bytes of each of its two rows: V weights starting at column t * V, so
// the 4 lanes of a row cover 64 contiguous bytes (one chunk = KC = 4V columns). Those V weights feed
// S = V / 4 mma steps: in step s the lane's logical k {2t, 2t+1, 2t+8, 2t+9} (PTX) take its local
// elements {4s, 4s+1, 4s+2, 4s+3} through a per-format permutation perm() of each octet, chosen so
// that each bf16x2 A register is one cheap bit operation on one loaded word:
//   bf16: identity (A registers are the loaded words themselves);
//   int8: octet order {0,2,1,3,4,6,5,7} (bytes 0 and 2 of a word sit in its two halves: one LOP3);
//   int4: octet order {0,4,1,5,2,6,3,7} (nibbles 0 and 4 of a word sit at bits 0 and 16: one LOP3).
// Each lane reads the matching octets of x (16-byte loads) and applies the same perm in registers, so
// the B registers of step s are words 2(s%2), 2(s%2)+1 of one permuted octet. Any k permutation is
// exact as long as A and B share it: the mma sums over k.
#pragma once
#include <cstdint>

#include "kernels/weight_view.h"

#ifdef __CUDACC__
#define GF_MMA_HD __host__ __device__
#else
#define GF_MMA_HD
#endif

namespace gf::cuda::mma {

// ---- PTX mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 fragments (PTX ISA, "Matrix
// Fragments for mma.m16n8k16 with floating point type"). A: 8 bf16 a0..a7 in 4 registers (a_{2r}
// low half of register r); B: b0..b3 in 2 registers; C/D: 4 floats c0..c3.
GF_MMA_HD constexpr int lane_g(int lane) { return lane >> 2; }  // groupID
GF_MMA_HD constexpr int lane_t(int lane) { return lane & 3; }   // threadID_in_group
GF_MMA_HD constexpr int a_row(int lane, int e) { return lane_g(lane) + ((e & 2) ? 8 : 0); }
GF_MMA_HD constexpr int a_col(int lane, int e) { return 2 * lane_t(lane) + (e & 1) + (e >= 4 ? 8 : 0); }
GF_MMA_HD constexpr int b_row(int lane, int e) { return 2 * lane_t(lane) + (e & 1) + (e >= 2 ? 8 : 0); }
GF_MMA_HD constexpr int b_col(int lane) { return lane_g(lane); }
GF_MMA_HD constexpr int c_row(int lane, int e) { return lane_g(lane) + (e >= 2 ? 8 : 0); }
GF_MMA_HD constexpr int c_col(int lane, int e) { return 2 * lane_t(lane) + (e & 1); }

// ---- Per-format geometry.
GF_MMA_HD constexpr int per_load(WeightFormat f) {  // weights in one 16-byte load (V)
  return f == WeightFormat::BF16 ? 8 : f == WeightFormat::INT8 ? 16 : 32;
}
GF_MMA_HD constexpr int units_per_lane(WeightFormat f) { return per_load(f) / 8; }  // W: x octets per lane
GF_MMA_HD constexpr int steps(WeightFormat f) { return per_load(f) / 4; }           // S: mma k-steps per chunk
GF_MMA_HD constexpr int chunk_cols(WeightFormat f) { return 4 * per_load(f); }      // KC

// Octet position p holds element perm(p) of the octet (the B words for x; the A pairs for weights).
GF_MMA_HD constexpr int perm(WeightFormat f, int p) {
  return f == WeightFormat::BF16 ? p : f == WeightFormat::INT8 ? (p & 4) | ((p & 1) << 1) | ((p >> 1) & 1)
                                                                : ((p & 1) << 2) | (p >> 1);
}

// Column (within the chunk, 0..KC) that lane-group t, step s, logical k kk (0..15) multiplies:
// the lane's local element e = 4s + (kk & 1) + 2 * (kk >= 8), placed by perm within its octet.
GF_MMA_HD constexpr int chunk_col(WeightFormat f, int s, int kk) {
  const int t = (kk & 7) >> 1, e = 4 * s + (kk & 1) + (kk >= 8 ? 2 : 0);
  return t * per_load(f) + (e & ~7) + perm(f, e & 7);
}

// ---- Work split: warp kw of the ks warps sharing 16 rows takes chunks kw, kw + ks, ... of each x
// tile (j-th: warp_chunk), warp_chunks of them.
GF_MMA_HD constexpr int warp_chunk(int kw, int j, int ks) { return kw + j * ks; }
GF_MMA_HD constexpr int warp_chunks(int nc, int kw, int ks) { return nc > kw ? (nc - kw + ks - 1) / ks : 0; }

// ---- x: lane t's B octet i of chunk c (for its token row) is columns lane_col .. lane_col + 7, the
// octet whose weights the lane's own 16-byte load holds; its words enter the mma as permuted_word builds them.
GF_MMA_HD constexpr int64_t lane_col(WeightFormat f, int64_t c, int t, int i) {
  return c * chunk_cols(f) + t * per_load(f) + 8 * i;
}

// ---- Bit operations that build registers (the kernel's own; arithmetic on them is in the kernel).
// One bf16 of an octet held in 4 words (element e in the low (even e) or high half of word e/2).
GF_MMA_HD constexpr uint32_t octet_elem(const uint32_t (&w)[4], int e) { return (w[e >> 1] >> (16 * (e & 1))) & 0xffffu; }
// Word k (0..3) of an x octet as B registers take it: elements perm(2k), perm(2k+1).
GF_MMA_HD constexpr uint32_t permuted_word(WeightFormat f, const uint32_t (&w)[4], int k) {
  return octet_elem(w, perm(f, 2 * k)) | octet_elem(w, perm(f, 2 * k + 1)) << 16;
}

// A register of step s from the lane's 16-byte load w of one row; hi: logical k 2t+8, 2t+9 (else 2t, 2t+1).
//  bf16: the bf16x2 weights themselves.
//  int8: bf16x2 of 128 + (q & 127) (exact); add int8_fix() (exact, -128 or -256) to get q.
//  int4: bf16x2 of 128 + q (exact); the kernel subtracts 128 (exact) and applies scale, zero.
GF_MMA_HD constexpr uint32_t a_bits(WeightFormat f, const uint32_t (&w)[4], int s, int hi) {
  if (f == WeightFormat::BF16) return w[2 * s + hi];
  if (f == WeightFormat::INT8) return ((w[s] >> (8 * hi)) & 0x007f007fu) | 0x43004300u;
  return ((w[s >> 1] >> (8 * (s & 1) + 4 * hi)) & 0x000f000fu) | 0x43004300u;
}
GF_MMA_HD constexpr uint32_t int8_fix(const uint32_t (&w)[4], int s, int hi) {  // sign bit -> -256, else -128
  return ((w[s] >> (8 * hi)) & 0x00800080u) | 0xc300c300u;
}
// B register r (0, 1) of step s: word 2(s%2) + r of the lane's x octet s/2.
GF_MMA_HD constexpr int b_word(int s, int r) { return 2 * (s & 1) + r; }

}  // namespace gf::cuda::mma
