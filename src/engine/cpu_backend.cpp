// The CPU backend: llama_forward over kernels/cpu ops, fp32 activations and KV cache (int8-rounded with
// --kv-cache int8), MPI reductions.
#include <omp.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cstdio>
#include <thread>
#include <vector>

#include "comm/comm.h"
#include "core/error.h"
#include "engine/backend.h"
#include "engine/llama_forward.h"

namespace gf {

namespace {

struct CpuBufs {
  float *x, *xn, *d, *qkv, *att, *h13, *h, *logits;
  const int32_t *ids, *pos;
};

struct CpuLayer {
  const uint16_t *attn_norm, *ffn_norm;  // bf16 (dim)
  QWeightView wqkv, wo, w13, w2;
};

// The Ops of llama_forward.h on the host. Views point into the HostShard, which outlives us.
class CpuOps {
 public:
  CpuOps(const HostShard& s, Comm& comm, const BackendOptions& o)
      : shard_(s), comm_(comm), max_seq_(o.max_seq), T_(o.max_tokens), kv_int8_(o.kv_int8), inv_freq_(s.cfg.rope_inv_freq()) {
    const auto& c = s.cfg;
    const auto& sl = s.slice;
    const int64_t hd = c.head_dim, qkv_w = (sl.n_heads + 2 * sl.n_kv_heads) * hd;
    auto alloc = [&](int64_t width) {
      storage_.emplace_back(size_t(T_ * width));
      return storage_.back().data();
    };
    bufs_.x = alloc(c.dim);
    bufs_.xn = alloc(c.dim);
    bufs_.d = alloc(c.dim);
    bufs_.qkv = alloc(qkv_w);
    bufs_.att = alloc(sl.n_heads * hd);
    bufs_.h13 = alloc(2 * sl.hidden_dim);
    bufs_.h = alloc(sl.hidden_dim);
    bufs_.logits = alloc(sl.vocab_local);
    ids_.resize(T_);
    pos_.resize(T_);
    bufs_.ids = ids_.data();
    bufs_.pos = pos_.data();
    layer_stride_ = sl.n_kv_heads * max_seq_ * hd;
    k_cache_.assign(size_t(c.n_layers * layer_stride_), 0.f);
    v_cache_.assign(size_t(c.n_layers * layer_stride_), 0.f);
    for (const auto& L : s.layers)
      layers_.push_back({L.attn_norm.data(), L.ffn_norm.data(), L.wqkv.view(), L.wo.view(), L.w13.view(), L.w2.view()});
    lm_head_ = s.lm_head.view();
  }

  const ModelConfig& cfg() const { return shard_.cfg; }
  const RankSlice& slice() const { return shard_.slice; }
  CpuBufs& bufs() { return bufs_; }
  const CpuLayer& layer(int64_t l) const { return layers_[l]; }
  const uint16_t* final_norm() const { return shard_.norm.data(); }
  const QWeightView& lm_head() const { return lm_head_; }
  int max_tokens() const { return int(T_); }
  int64_t max_seq() const { return max_seq_; }

  void set_inputs(const int32_t* ids, int M, int64_t pos0) {
    std::copy(ids, ids + M, ids_.begin());
    for (int m = 0; m < M; ++m) pos_[m] = int32_t(pos0 + m);
  }

  void embed(const int32_t* ids, int M, float* x) { cpu::embed(ids, M, shard_.embed.data(), cfg().vocab_size, cfg().dim, x); }
  void rmsnorm(const float* x, const uint16_t* w, int M, float* out) { cpu::rmsnorm(x, w, M, cfg().dim, eps(), out); }
  void add_rmsnorm(float* x, const float* d, const uint16_t* w, int M, float* out) {
    cpu::add_rmsnorm(x, d, w, M, cfg().dim, eps(), out);
  }
  void matmul(const float* x, int M, const QWeightView& w, float* out) { cpu::matmul(x, M, w, out); }
  void rope_kv_write(float* qkv, int M, int64_t stride, const int32_t* pos, int64_t l) {
    const int64_t hd = cfg().head_dim, nq = slice().n_heads, nkv = slice().n_kv_heads;
    cpu::rope(qkv, M, stride, nq + nkv, hd, pos, inv_freq_.data());  // q heads then k heads, adjacent
    float *kc = k_cache_.data() + l * layer_stride_, *vc = v_cache_.data() + l * layer_stride_;
    cpu::kv_write(qkv + nq * hd, qkv + (nq + nkv) * hd, M, stride, pos, nkv, hd, max_seq_, kc, vc);
    if (kv_int8_)
      for (int m = 0; m < M; ++m)
        for (int64_t h = 0; h < nkv; ++h) {
          cpu::round_kv_int8(kc + (h * max_seq_ + pos[m]) * hd, hd);
          cpu::round_kv_int8(vc + (h * max_seq_ + pos[m]) * hd, hd);
        }
  }
  void attention(const float* q, int M, int64_t q_stride, const int32_t* pos, int64_t l, float* out) {
    cpu::attention(q, M, q_stride, pos, k_cache_.data() + l * layer_stride_, v_cache_.data() + l * layer_stride_,
                   max_seq_, slice().n_heads, slice().n_kv_heads, cfg().head_dim, out);
  }
  void silu_mul(const float* h13, int M, int64_t hidden, float* out) { cpu::silu_mul(h13, M, hidden, out); }
  void allreduce(float* x, int64_t n) {
    if (slice().tp_size > 1) comm_.allreduce_sum(x, n);
  }

 private:
  float eps() const { return float(cfg().norm_eps); }
  const HostShard& shard_;
  Comm& comm_;
  int64_t max_seq_, T_, layer_stride_ = 0;
  bool kv_int8_;
  std::vector<double> inv_freq_;
  std::vector<std::vector<float>> storage_;
  std::vector<int32_t> ids_, pos_;
  std::vector<float> k_cache_, v_cache_;
  std::vector<CpuLayer> layers_;
  QWeightView lm_head_;
  CpuBufs bufs_{};
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(const HostShard& s, Comm& comm, const BackendOptions& o) : comm_(comm), ops_(s, comm, o) {
    gathered_.resize(size_t(s.slice.vocab_padded));
    full_.resize(size_t(s.cfg.vocab_size));
  }
  std::string name() const override { return "cpu"; }

  void forward(const int32_t* ids, int M, int64_t pos0) override {
    const auto& c = ops_.cfg();
    GF_CHECK(M >= 1 && M <= ops_.max_tokens(), "forward: ", M, " tokens, expected 1..", ops_.max_tokens());
    GF_CHECK(pos0 >= 0 && pos0 + M <= ops_.max_seq(), "forward: positions ", pos0, "..", pos0 + M - 1,
             " exceed the KV cache length ", ops_.max_seq(), " (raise --max-seq-len)");
    for (int m = 0; m < M; ++m)
      GF_CHECK(ids[m] >= 0 && ids[m] < c.vocab_size, "token id ", ids[m], " outside [0, ", c.vocab_size, ")");
    ops_.set_inputs(ids, M, pos0);
    llama_forward(ops_, M);
    rows_ = M;
  }

  void logits(int m, float* out) override {
    GF_CHECK(m >= 0 && m < rows_, "logits: row ", m, " outside the last forward's ", rows_, " rows");
    const auto& s = ops_.slice();
    const float* local = ops_.bufs().logits + int64_t(m) * s.vocab_local;
    if (s.tp_size > 1) {
      comm_.allgather(local, s.vocab_local, gathered_.data());
      std::copy_n(gathered_.data(), ops_.cfg().vocab_size, out);
    } else {
      std::copy_n(local, ops_.cfg().vocab_size, out);
    }
  }

  // Split over vocab, each rank sends its local top-k (cpu::split_top_k) and every rank finishes on the
  // union: the same token as sampling the gathered row, for tp*k instead of vocab floats per rank.
  int32_t sample(int m, const cpu::SamplingParams& p, double u) override {
    const int64_t vocab = ops_.cfg().vocab_size;
    const int k = cpu::split_top_k(p);
    if (ops_.slice().tp_size == 1 || k == 0) {
      logits(m, full_.data());
      return cpu::sample(full_.data(), vocab, p, u);
    }
    candidates(m, k, all_logits_, all_ids_);
    return cpu::sample_from_candidates(all_logits_.data(), all_ids_.data(), int64_t(all_ids_.size()), vocab, p, u);
  }

  void candidates(int m, int k, std::vector<float>& all_logits, std::vector<int32_t>& all_ids) override {
    GF_CHECK(m >= 0 && m < rows_, "candidates: row ", m, " outside the last forward's ", rows_, " rows");
    GF_CHECK(k >= 1 && k <= cpu::kMaxSplitTopK, "candidates: k ", k, " outside [1, ", cpu::kMaxSplitTopK, "]");
    const auto& s = ops_.slice();
    const float* local = ops_.bufs().logits + int64_t(m) * s.vocab_local;
    const int64_t n_valid = std::clamp<int64_t>(ops_.cfg().vocab_size - s.vocab_begin, 0, s.vocab_local);  // the rest is padding
    cand_logits_.resize(size_t(k));
    cand_ids_.resize(size_t(k));
    all_logits.resize(size_t(k) * s.tp_size);  // [tp][k]
    all_ids.resize(all_logits.size());
    cpu::local_top_k(local, n_valid, s.vocab_begin, k, cand_logits_.data(), cand_ids_.data());
    if (s.tp_size == 1) {
      all_logits = cand_logits_, all_ids = cand_ids_;
      return;
    }
    comm_.allgather(cand_logits_.data(), k, all_logits.data());
    comm_.allgather(cand_ids_.data(), k, all_ids.data());
  }

  int64_t weight_bytes() const override { return bytes_; }
  int max_tokens() const override { return ops_.max_tokens(); }
  int64_t max_seq() const override { return ops_.max_seq(); }
  void set_weight_bytes(int64_t b) { bytes_ = b; }

 private:
  Comm& comm_;
  CpuOps ops_;
  std::vector<float> gathered_, full_, cand_logits_, all_logits_;
  std::vector<int32_t> cand_ids_, all_ids_;
  int rows_ = 0;
  int64_t bytes_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const HostShard& shard, Comm& comm, const BackendOptions& o) {
  const auto& c = shard.cfg;
  const auto& s = shard.slice;
  c.validate(shard.path);
  GF_CHECK(s.tp_size == 1 || s.tp_size == comm.size(), shard.path, ": tp_size ", s.tp_size, " but ", comm.size(),
           " ranks are running");
  GF_CHECK(int64_t(shard.layers.size()) == c.n_layers, shard.path, ": ", shard.layers.size(), " layers, expected ",
           c.n_layers);
  GF_CHECK(o.max_tokens >= 1 && o.max_seq >= 1, "backend: max_tokens and max_seq must be >= 1");
  GF_CHECK(o.max_seq <= c.max_seq_len, "--max-seq-len ", o.max_seq, " exceeds the model's max_seq_len ",
           c.max_seq_len);
  // Threads: as asked, else the cores shared fairly among the ranks of this node.
  int threads = o.threads > 0 ? o.threads : std::max(1, omp_get_num_procs() / std::max(1, comm.local_size()));
  omp_set_num_threads(threads);
  // mpirun binds each rank to one core when it starts two ranks or fewer: `mpirun -np 1` on a 32-core node
  // would decode on one core (measured: 145 vs 243 tok/s on 2 cores). Say so once, with the way out.
  const int node_cores = int(std::thread::hardware_concurrency());
  if (o.threads == 0 && comm.local_rank() == 0 && omp_get_num_procs() * comm.local_size() < node_cores)
    std::fprintf(stderr, "gptfast-tp: note: each rank may use %d of this node's %d cores (the launcher bound it); "
                 "`mpirun --bind-to none` or `--map-by slot:PE=N` lets the CPU backend use more\n",
                 omp_get_num_procs(), node_cores);
#if defined(__SSE__)
  // Flush denormals to zero in every worker: softmax tails and tiny activations of real models produce
  // denormal floats, which the x86 floating-point unit handles tens of times slower (seen: 30x on SmolLM2).
#pragma omp parallel
  _mm_setcsr(_mm_getcsr() | 0x8040);  // FTZ | DAZ
  _mm_setcsr(_mm_getcsr() | 0x8040);
#endif
  auto b = std::make_unique<CpuBackend>(shard, comm, o);
  b->set_weight_bytes(shard.weight_bytes());
  return b;
}

}  // namespace gf
