// Micro-benchmark of the shipped CUDA kernels: matmul per format and 7B shape at M=1, 8 and 16 (the
// GEMV beside the tensor-core GEMV launch_matmul_mma), and attention at 256 / 4096 context; GB/s
// against a read bandwidth measured here. Weight buffers rotate so the 50 MB L2 never serves them.
// Usage: bench_gpu_kernels [FORMAT [SHAPE]]: only that format (bf16, int8, int4g32, int4g128) and shapes whose
// name starts with SHAPE (e.g. lm_head), no attention: one kernel for a profiler to look at; FORMAT
// "attention": the attention lines alone.
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_ops.h"

using namespace gf;
using gf::cuda::bf16;
using gf::cuda::check_cuda;

namespace {
__global__ void read_kernel(const uint4* p, int64_t n, unsigned* sink) {  // read-only reduction
  uint32_t acc = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint4 v = __ldcs(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) *sink = acc;  // keeps the loads alive
}

class Timer {  // CUDA events around a callable, median-free mean over reps after warm-up
 public:
  Timer() { check_cuda(cudaEventCreate(&a_), "event"), check_cuda(cudaEventCreate(&b_), "event"); }
  ~Timer() { cudaEventDestroy(a_), cudaEventDestroy(b_); }
  template <class F>
  double us(F&& f, int reps) {
    for (int i = 0; i < 3; ++i) f(i);
    check_cuda(cudaEventRecord(a_), "record");
    for (int i = 0; i < reps; ++i) f(i);
    check_cuda(cudaEventRecord(b_), "record");
    check_cuda(cudaEventSynchronize(b_), "sync");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, a_, b_), "elapsed");
    return ms * 1e3 / reps;
  }

 private:
  cudaEvent_t a_, b_;
};

void* dmalloc(size_t n) {
  void* p;
  check_cuda(cudaMalloc(&p, n), "cudaMalloc");
  return p;
}
}  // namespace

int main(int argc, char** argv) {
  const std::string only_format = argc > 1 ? argv[1] : "", only_shape = argc > 2 ? argv[2] : "";
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines survive a crash
  Timer t;
  // the ceiling: a 4 GiB read-only reduction
  const int64_t nbytes = 4ll << 30;
  void* big = dmalloc(nbytes);
  unsigned* sink = static_cast<unsigned*>(dmalloc(4));
  check_cuda(cudaMemset(big, 1, nbytes), "memset");
  int sms = 0;
  check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "attr");
  const double read_us = t.us([&](int) { read_kernel<<<sms * 8, 512>>>(static_cast<uint4*>(big), nbytes / 16, sink); }, 5);
  const double ceil_gbs = nbytes / read_us * 1e-3;
  std::printf("read bandwidth (4 GiB read-only reduction): %.0f GB/s\n", ceil_gbs);
  check_cuda(cudaFree(big), "free");

  cuda::GemmContext g;
  const struct { const char* name; int64_t rows, cols; } shapes[] = {
      {"wo 4096x4096", 4096, 4096}, {"wqkv 12288x4096", 12288, 4096}, {"w13 22016x4096", 22016, 4096},
      {"w2 4096x11008", 4096, 11008}, {"lm_head 32000x4096", 32000, 4096}};
  const FormatSpec formats[] = {{WeightFormat::BF16, 0}, {WeightFormat::INT8, 0}, {WeightFormat::INT4, 32}, {WeightFormat::INT4, 128}};
  bf16* x = static_cast<bf16*>(dmalloc(16 * 16384 * 2));
  bf16* out = static_cast<bf16*>(dmalloc(16 * 32000 * 2));
  cuda::launch_fill_uniform(x, 16 * 16384, 7, -1.f, 1.f, nullptr);
  // one line per (format, shape, M): the shipped GEMV beside the tensor-core GEMV (launch_matmul_mma),
  // each as us, % of the read ceiling and time over its own M=1 time
  std::printf("%-10s %-20s %3s %9s %6s %6s %9s %6s %6s %8s\n", "format", "shape", "M", "gemv us", "%", "/M1", "mma us", "%",
              "/M1", "mma/gemv");
  for (const auto& f : formats) {
    if (!only_format.empty() && f.name() != only_format) continue;
    for (const auto& s : shapes) {
      if (std::string(s.name).rfind(only_shape, 0) != 0) continue;
      QWeightView w;
      w.format = f.format, w.rows = s.rows, w.cols = s.cols, w.group_size = f.group_size;
      const int64_t qb = f.format == WeightFormat::BF16 ? s.rows * s.cols * 2 : f.format == WeightFormat::INT8 ? s.rows * s.cols : s.rows * s.cols / 2;
      const int64_t ns = f.format == WeightFormat::INT4 ? s.rows * w.n_groups() : s.rows;
      const int64_t bytes = qb + (f.format == WeightFormat::BF16 ? 0 : ns * 2 * (f.format == WeightFormat::INT4 ? 2 : 1));
      const int nbuf = int(std::max<int64_t>(2, (200ll << 20) / bytes + 1));  // > 4x L2 in rotation
      std::vector<QWeightView> ws(nbuf, w);
      std::vector<void*> mem;
      for (int i = 0; i < nbuf; ++i) {
        mem.push_back(dmalloc(qb)), mem.push_back(dmalloc(ns * 2)), mem.push_back(dmalloc(ns * 2));
        ws[i].q = mem[3 * i], ws[i].scale = static_cast<uint16_t*>(mem[3 * i + 1]), ws[i].zero = static_cast<uint16_t*>(mem[3 * i + 2]);
        cuda::launch_fill_random_weight(ws[i], 11 + i, 0.02f, nullptr);
      }
      const int Ms[3] = {1, 8, 16};
      double us[3][2] = {};  // [M][gemv, mma]; mma 0 where it does not fit
      for (int j = 0; j < 3; ++j) {
        const int M = Ms[j];
        us[j][0] = t.us([&](int i) { cuda::launch_matmul(x, M, ws[i % nbuf], out, g, nullptr); }, 200);
        if (cuda::mma_gemv_fits(ws[0], M))
          us[j][1] = t.us([&](int i) { cuda::launch_matmul_mma(x, M, ws[i % nbuf], out, nullptr); }, 200);
      }
      for (int j = 0; j < 3; ++j) {
        const double pct0 = 100 * bytes / us[j][0] * 1e-3 / ceil_gbs, pct1 = us[j][1] > 0 ? 100 * bytes / us[j][1] * 1e-3 / ceil_gbs : 0;
        std::printf("%-10s %-20s %3d %9.1f %5.1f%% %6.2f %9.1f %5.1f%% %6.2f %8.2f\n", f.name().c_str(), s.name, Ms[j],
                    us[j][0], pct0, us[j][0] / us[0][0], us[j][1], pct1, us[0][1] > 0 ? us[j][1] / us[0][1] : 0.,
                    us[j][1] / us[j][0]);
      }
      for (void* p : mem) cudaFree(p);
    }
  }

  if (!only_format.empty() && only_format != "attention") return 0;
  // attention decode (M=1) for Llama-2-7B heads (32 q, 32 kv, hd 128) and Llama-3-8B (32 q, 8 kv), bf16 and
  // int8 cache (random bytes and scales: timing only)
  for (bool int8 : {false, true})
  for (int64_t n_kv : {32, 8}) {
    const int64_t n_heads = 32, hd = 128, max_seq = 4096, elt = int8 ? 1 : 2;
    bf16* kc = static_cast<bf16*>(dmalloc(n_kv * max_seq * hd * 2));
    bf16* vc = static_cast<bf16*>(dmalloc(n_kv * max_seq * hd * 2));
    float* sc = static_cast<float*>(dmalloc(2 * n_kv * max_seq * 4));
    bf16* q = static_cast<bf16*>(dmalloc(n_heads * hd * 2));
    bf16* o = static_cast<bf16*>(dmalloc(n_heads * hd * 2));
    int32_t* pos = static_cast<int32_t*>(dmalloc(4));
    const int64_t sf = cuda::attention_scratch_floats(1, n_heads, n_kv, hd, max_seq);
    float* scratch = static_cast<float*>(dmalloc(std::max<int64_t>(sf, 1) * 4));
    cuda::launch_fill_uniform(kc, n_kv * max_seq * hd, 1, -1.f, 1.f, nullptr);
    cuda::launch_fill_uniform(vc, n_kv * max_seq * hd, 2, -1.f, 1.f, nullptr);
    cuda::launch_fill_uniform(sc, 2 * n_kv * max_seq, 4, 0.001f, 0.01f, nullptr);
    cuda::launch_fill_uniform(q, n_heads * hd, 3, -1.f, 1.f, nullptr);
    const cuda::KvLayer kv{kc, vc, int8 ? sc : nullptr, int8 ? sc + n_kv * max_seq : nullptr};
    for (int ctx : {256, 4096}) {
      const int32_t p = ctx - 1;
      check_cuda(cudaMemcpy(pos, &p, 4, cudaMemcpyHostToDevice), "pos");
      const double a_us = t.us([&](int) {
        cuda::launch_attention(q, 1, n_heads * hd, pos, kv, max_seq, n_heads, n_kv, hd, o, scratch, sf, nullptr);
      }, 200);
      const double kv_bytes = 2.0 * n_kv * ctx * (hd * elt + (int8 ? 4 : 0));
      std::printf("attention %s cache n_kv=%ld ctx=%d: %.1f us, %.0f GB/s of KV (L2 may hold it)\n", int8 ? "int8" : "bf16",
                  long(n_kv), ctx, a_us, kv_bytes / a_us * 1e-3);
    }
    cudaFree(kc), cudaFree(vc), cudaFree(sc), cudaFree(q), cudaFree(o), cudaFree(pos), cudaFree(scratch);
  }
  return 0;
}
