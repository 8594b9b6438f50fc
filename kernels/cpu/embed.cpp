// embed: x[m] = table[ids[m]], bf16 embedding rows widened to fp32.
#include "core/error.h"
#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/cpu_ops.h"

namespace gf::cpu {

void embed(const int32_t* ids, int M, const uint16_t* table, int64_t vocab, int64_t dim, float* x) {
  for (int m = 0; m < M;
       ++m)  // validate before any thread runs: a throw cannot cross an omp region
    GF_CHECK(ids[m] >= 0 && ids[m] < vocab, "embed: token id ", ids[m], " at position ", m,
             " is outside the vocabulary [0, ", vocab, ")");
#pragma omp parallel for schedule(static) if (M > 1)
  for (int m = 0; m < M; ++m)
    detail::bf16_row_to_float(table + int64_t(ids[m]) * dim, dim, x + m * dim);
}

}  // namespace gf::cpu
