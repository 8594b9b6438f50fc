// CUDA matmul (bf16 / int8 / int4, GEMV and cuBLAS paths; M <= 16 also through the tensor-core GEMV
// launch_matmul_mma) against cpu::matmul on the same weights.
#include <string>
#include <tuple>

#include "kernels/cpu/cpu_ops.h"
#include "tests/gpu/kernels_util.h"

namespace gf::test {
namespace {

struct Case {
  WeightFormat fmt;
  int group;
  int64_t rows, cols;
  int M;
};

std::string name(const Case& c) {
  return FormatSpec{c.fmt, c.group}.name() + " " + std::to_string(c.rows) + "x" + std::to_string(c.cols) + " M=" +
         std::to_string(c.M);
}

void run_case(const Case& c, cuda::GemmContext& g, uint64_t seed) {
  SCOPED_TRACE(name(c));
  QWeightView w;
  w.format = c.fmt, w.rows = c.rows, w.cols = c.cols, w.group_size = c.group;
  const int64_t qbytes = c.fmt == WeightFormat::BF16 ? c.rows * c.cols * 2 : c.fmt == WeightFormat::INT8 ? c.rows * c.cols : c.rows * c.cols / 2;
  const int64_t n_scale = c.fmt == WeightFormat::BF16 ? 1 : c.fmt == WeightFormat::INT8 ? c.rows : c.rows * w.n_groups();
  DevBuf<uint8_t> q(qbytes);
  DevBuf<uint16_t> scale(n_scale), zero(n_scale);
  w.q = q.get(), w.scale = scale.get(), w.zero = zero.get();
  cuda::launch_fill_random_weight(w, seed, 0.02f, nullptr);
  // the host view of the very same bytes
  std::vector<uint8_t> hq = q.download();
  std::vector<uint16_t> hs = scale.download(), hz = zero.download();
  QWeightView hw = w;
  hw.q = hq.data(), hw.scale = hs.data(), hw.zero = hz.data();

  std::mt19937 rng(seed);
  DevBuf<cuda::bf16> x(c.M * c.cols);
  const std::vector<float> hx = random_bf16(x, rng);
  std::vector<float> ref(c.M * c.rows);
  cpu::matmul(hx.data(), c.M, hw, ref.data());

  // launch_matmul, then (where it fits) the tensor-core GEMV on the same inputs
  for (const bool mma : {false, true}) {
    if (mma && !(c.M <= 16 && cuda::mma_gemv_fits(w, c.M))) continue;
    SCOPED_TRACE(mma ? "launch_matmul_mma" : "launch_matmul");
    DevBuf<float> out32(c.M * c.rows);
    DevBuf<cuda::bf16> out16(c.M * c.rows);
    out32.poison(), out16.poison();
    if (mma) {
      cuda::launch_matmul_mma(x.get(), c.M, w, out32.get(), nullptr);
      cuda::launch_matmul_mma(x.get(), c.M, w, out16.get(), nullptr);
    } else {
      cuda::launch_matmul(x.get(), c.M, w, out32.get(), g, nullptr);
      cuda::launch_matmul(x.get(), c.M, w, out16.get(), g, nullptr);
    }
    cuda::check_cuda(cudaDeviceSynchronize(), "matmul test");
    const std::vector<float> got32 = out32.download(), got16 = bf16_dev_to_float(out16);
    // fp32 accumulation in another order: tight; the bf16 output adds one rounding (2^-8 relative)
    const float scale_ref = 0.02f * std::sqrt(float(c.cols)) * 0.6f;  // typical |out|
    // int4 prefill (M > 16) runs cuBLAS on weights dequantized to bf16, and the mma GEMV dequantizes
    // int4 to bf16 too: one more rounding per weight (2^-9 relative), so their fp32 output is held to
    // the bf16 bound of one rounding, not fp32's.
    // (launch_matmul itself goes to the mma GEMV where matmul_uses_mma: M >= 2 by default)
    const bool routed = cuda::matmul_uses_mma(w, c.M);
    const bool bf16_weights = c.fmt == WeightFormat::INT4 && (c.M > 16 || mma || routed);
    // The int8 / int4 GEMV (M <= 16, matmul.cu) sums each 16-byte load's products in fp16 (2^-11 per
    // FMA) before fp32 takes over: between the two bounds. (int4 at M = 1 through gemv1 multiplies in
    // integers against x within 1/508 of each chunk's max: inside this bound too.)
    const bool fp16_sums = c.fmt != WeightFormat::BF16 && c.M <= 16 && !mma && !routed;
    const float tol32 = bf16_weights ? 6e-3f : fp16_sums ? 4e-3f : 2e-3f;
    // (over a handful of outputs the norm is one output's relative error, which cancellation inflates
    // without bound; the elementwise bounds below hold those)
    if (c.M * c.rows >= 64) {
      EXPECT_LE(rel_norm_err(got32, ref), tol32) << "fp32 output";
      EXPECT_LE(rel_norm_err(got16, ref), 1e-2) << "bf16 output";
    }
    // elementwise, that rounding's sum over cols reaches ~4 sigma on some of the many outputs
    const float el32 = bf16_weights ? 1.5e-2f : fp16_sums ? 5e-3f : 2e-3f;
    expect_close(got32, ref, el32 * scale_ref, el32, "fp32 output");
    expect_close(got16, ref, 1e-2f * scale_ref, 8e-3f, "bf16 output");
  }
}

const WeightFormat kFormats[] = {WeightFormat::BF16, WeightFormat::INT8, WeightFormat::INT4};

TEST(CudaMatmul, Llama7bShapes) {
  cuda::GemmContext g;
  const std::pair<int64_t, int64_t> shapes[] = {{4096, 4096}, {12288, 4096}, {22016, 4096}, {4096, 11008}, {32000, 4096}};
  uint64_t seed = 1;
  for (auto f : kFormats)
    for (auto [r, k] : shapes)
      for (int M : {1, 5, 16}) run_case({f, f == WeightFormat::INT4 ? 128 : 0, r, k, M}, g, seed++);
}

TEST(CudaMatmul, PrefillCublas) {
  cuda::GemmContext g(8 << 20);  // small scratch: several dequantized slabs per weight
  uint64_t seed = 100;
  for (auto f : kFormats) run_case({f, f == WeightFormat::INT4 ? 64 : 0, 4096, 4096, 64}, g, seed++);
  run_case({WeightFormat::INT4, 32, 1031, 1376, 17}, g, seed++);
}

TEST(CudaMatmul, RaggedShapesAndGroups) {
  cuda::GemmContext g;
  uint64_t seed = 200;
  const std::pair<int64_t, int64_t> shapes[] = {{1, 576}, {3, 1536}, {1031, 1376}, {49152 / 8 + 5, 576}, {577, 5120}};
  for (auto f : kFormats)
    for (auto [r, k] : shapes)
      for (int M : {1, 2, 5, 8, 13, 16, 64}) run_case({f, f == WeightFormat::INT4 ? 128 : 0, r, k, M}, g, seed++);
  for (int grp : {32, 64, 128})
    for (int M : {1, 8}) run_case({WeightFormat::INT4, grp, 1000, 11008, M}, g, seed++);
  // groups of 96 columns: not a power-of-two number of 32-column loads, so M = 1 runs the tiled GEMV
  for (int M : {1, 8}) run_case({WeightFormat::INT4, 96, 1000, 2304, M}, g, seed++);
  // M = 16 with a long row (the SIMT GEMV, under GPTFAST_GEMV=simt, tiles x over K in shared memory)
  for (auto f : kFormats) run_case({f, f == WeightFormat::INT4 ? 32 : 0, 515, 14336, 16}, g, seed++);
}

// The mma GEMV's own edges: every M of both n-tiles, rows not a multiple of 16, a partial last chunk
// (cols % chunk != 0), short last int4 groups, and a long K (28672: x read past what one block could stage).
TEST(CudaMatmul, MmaEdges) {
  cuda::GemmContext g;
  uint64_t seed = 300;
  for (auto f : kFormats)
    for (int M = 1; M <= 16; ++M) run_case({f, f == WeightFormat::INT4 ? 32 : 0, 1000 + M, 1376, M}, g, seed++);
  for (auto f : kFormats)
    for (int M : {1, 9, 16}) run_case({f, f == WeightFormat::INT4 ? 64 : 0, 77, 28672, M}, g, seed++);
}

TEST(CudaMatmul, MmaFitsAndRejects) {
  QWeightView w;
  w.format = WeightFormat::INT4, w.rows = 8, w.cols = 64, w.group_size = 32;
  DevBuf<uint8_t> q(8 * 64);
  DevBuf<uint16_t> s(16);
  w.q = q.get(), w.scale = s.get(), w.zero = s.get();
  EXPECT_TRUE(cuda::mma_gemv_fits(w, 1));
  EXPECT_TRUE(cuda::mma_gemv_fits(w, 16));
  EXPECT_FALSE(cuda::mma_gemv_fits(w, 0));
  EXPECT_FALSE(cuda::mma_gemv_fits(w, 17));
  w.group_size = 48;
  EXPECT_FALSE(cuda::mma_gemv_fits(w, 1));  // a 32-column load would straddle groups
  DevBuf<cuda::bf16> x(64), out(8);
  EXPECT_THROW(cuda::launch_matmul_mma(x.get(), 1, w, out.get(), nullptr), gf::Error);
  w.group_size = 32, w.cols = 48;
  EXPECT_FALSE(cuda::mma_gemv_fits(w, 1));  // int4 cols % 32
}

TEST(CudaMatmul, RejectsBadShapes) {
  cuda::GemmContext g(0);
  QWeightView w;
  w.format = WeightFormat::INT4, w.rows = 8, w.cols = 48, w.group_size = 32;
  DevBuf<uint8_t> q(8 * 48);
  DevBuf<uint16_t> s(16);
  w.q = q.get(), w.scale = s.get(), w.zero = s.get();
  DevBuf<cuda::bf16> x(48), out(8);
  EXPECT_THROW(cuda::launch_matmul(x.get(), 1, w, out.get(), g, nullptr), gf::Error);  // cols % 32
  w.cols = 64;
  EXPECT_THROW(cuda::launch_matmul(x.get(), 0, w, out.get(), g, nullptr), gf::Error);  // M = 0
  EXPECT_THROW(cuda::launch_matmul(x.get(), 64, w, out.get(), g, nullptr), gf::Error);  // no dequant scratch
}

}  // namespace
}  // namespace gf::test
