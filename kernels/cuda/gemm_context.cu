// GemmContext (cuBLAS handle + workspace + dequantization scratch) and check_cuda.
#include "kernels/cuda/common.cuh"

namespace gf::cuda {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) GF_FAIL(what, ": CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}

namespace {
constexpr size_t kCublasWorkspace = 32u << 20;  // Hopper's recommended cuBLAS workspace
void check_cublas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) GF_FAIL(what, ": cuBLAS error ", cublasGetStatusName(st));
}
}  // namespace

GemmContext::GemmContext(int64_t dequant_scratch_bytes) {
  GF_CHECK(dequant_scratch_bytes >= 0, "GemmContext: dequant_scratch_bytes must be >= 0");
  try {
    check_cublas(cublasCreate(&handle_), "GemmContext: cublasCreate");
    check_cuda(cudaMalloc(&workspace_, kCublasWorkspace), "GemmContext: cudaMalloc workspace");
    check_cublas(cublasSetWorkspace(handle_, workspace_, kCublasWorkspace), "GemmContext: cublasSetWorkspace");
    if (dequant_scratch_bytes > 0) {
      check_cuda(cudaMalloc(reinterpret_cast<void**>(&scratch_), size_t(dequant_scratch_bytes)),
                 "GemmContext: cudaMalloc dequant scratch");
      scratch_bytes_ = dequant_scratch_bytes;
    }
  } catch (...) {
    release();
    throw;
  }
}

void GemmContext::release() {
  if (handle_) cublasDestroy(handle_);
  if (workspace_) cudaFree(workspace_);
  if (scratch_) cudaFree(scratch_);
  handle_ = nullptr, workspace_ = nullptr, scratch_ = nullptr, scratch_bytes_ = 0;
}

GemmContext::~GemmContext() { release(); }

GemmContext::GemmContext(GemmContext&& o) noexcept { *this = std::move(o); }

GemmContext& GemmContext::operator=(GemmContext&& o) noexcept {
  if (this != &o) {
    release();
    handle_ = o.handle_, workspace_ = o.workspace_, scratch_ = o.scratch_, scratch_bytes_ = o.scratch_bytes_;
    o.handle_ = nullptr, o.workspace_ = nullptr, o.scratch_ = nullptr, o.scratch_bytes_ = 0;
  }
  return *this;
}

}  // namespace gf::cuda
