// bench_cpu_matmul: GB/s of weight bytes streamed and GFLOP/s of the shipped CPU matmul, per
// format, shape and batch M. Shapes: SmolLM2-135M's projections (dim 576, hidden 1536, vocab 49152)
// and a 4096x4096. M = 1 is decode (bandwidth-bound), 6 a speculative verify, 64 a prefill chunk.
// Usage: bench_cpu_matmul [M (default: 1, 6 and 64)] [min_seconds=0.3]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "kernels/cpu/cpu_ops.h"

namespace {

struct Shape {
  const char* name;
  int64_t rows, cols;
};

// Weight bytes one matmul reads: quantized values plus scales and zeros.
int64_t weight_bytes(const gf::QWeightView& w) {
  switch (w.format) {
    case gf::WeightFormat::BF16:
      return w.rows * w.cols * 2;
    case gf::WeightFormat::INT8:
      return w.rows * w.cols + w.rows * 2;
    case gf::WeightFormat::INT4:
      return w.rows * w.cols / 2 + w.rows * w.n_groups() * 4;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<int> batches =
      argc > 1 ? std::vector<int>{std::atoi(argv[1])} : std::vector<int>{1, 6, 64};
  const double min_s = argc > 2 ? std::atof(argv[2]) : 0.3;
  const Shape shapes[] = {{"smollm2 wqkv", 960, 576},      {"smollm2 wo", 576, 576},
                          {"smollm2 w13", 3072, 576},      {"smollm2 w2", 576, 1536},
                          {"smollm2 lm_head", 49152, 576}, {"4096x4096", 4096, 4096}};
  const struct {
    const char* name;
    gf::WeightFormat f;
    int group;
  } formats[] = {{"bf16", gf::WeightFormat::BF16, 0},
                 {"int8", gf::WeightFormat::INT8, 0},
                 {"int4g32", gf::WeightFormat::INT4, 32},
                 {"int4g128", gf::WeightFormat::INT4, 128}};
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int> byte(0, 255);
  for (const int M : batches) {
    std::printf("M=%d\n%-16s %-9s %10s %10s %10s\n", M, "shape", "format", "us/call", "GB/s",
                "GFLOP/s");
    for (const auto& s : shapes)
      for (const auto& f : formats) {
        gf::QWeightView w;
        w.format = f.f;
        w.rows = s.rows;
        w.cols = s.cols;
        w.group_size = f.group;
        const int64_t elem_bytes = f.f == gf::WeightFormat::BF16   ? 2
                                   : f.f == gf::WeightFormat::INT8 ? 1
                                                                   : 0;
        std::vector<uint8_t> q(elem_bytes ? s.rows * s.cols * elem_bytes : s.rows * s.cols / 2);
        for (auto& b : q) b = uint8_t(byte(rng));
        if (f.f ==
            gf::WeightFormat::BF16) {  // normal numbers: denormals would time the FPU's slow path
          std::uniform_real_distribution<float> d(-1.f, 1.f);
          for (size_t i = 0; i < q.size() / 2; ++i) {
            const uint16_t h = gf::float_to_bf16(d(rng));
            std::memcpy(&q[2 * i], &h, 2);
          }
        }
        std::vector<uint16_t> sz(s.rows * w.n_groups(), gf::float_to_bf16(0.01f));
        w.q = q.data();
        w.scale = sz.data();
        w.zero = sz.data();
        std::vector<float> x(M * s.cols, 0.5f), out(M * s.rows);
        gf::cpu::matmul(x.data(), M, w, out.data());  // warm-up
        // Large weights stream from DRAM every call; the small ones stay in the LLC between calls,
        // as they would not in a real decode step, so their numbers are an upper bound.
        int iters = 0;
        const auto t0 = std::chrono::steady_clock::now();
        double el = 0;
        do {
          gf::cpu::matmul(x.data(), M, w, out.data());
          ++iters;
          el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        } while (el < min_s);
        const double per = el / iters;
        std::printf("%-16s %-9s %10.1f %10.2f %10.1f\n", s.name, f.name, per * 1e6,
                    weight_bytes(w) / per / 1e9, 2.0 * M * s.rows * s.cols / per / 1e9);
      }
  }
  return 0;
}
