// The CUDA backend: weights uploaded once into one device block, bf16 (or int8) KV cache, the model of
// engine/llama_forward.h over kernels/cuda ops; a forward of up to 16 tokens (a decode step, a
// speculative verify) is one CUDA graph per M, captured once and replayed, whose tokens and positions
// are copied in from pinned memory by the graph itself.
#include "engine/cuda/cuda_backend.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "comm/comm.h"
#include "core/env.h"
#include "core/error.h"
#include "engine/cuda/bench_probe.h"
#include "engine/cuda/cuda_utils.h"
#include "engine/cuda/ipc_allreduce.h"
#include "engine/cuda/nccl_comm.h"
#include "engine/llama_forward.h"
#include "kernels/cuda/cuda_ops.h"

namespace gf {
namespace {

using cuda::bf16;

// Forward graphs unless GPTFAST_CUDA_GRAPHS=0 when the backend is made (debugging, graph-vs-eager test).
bool graphs_enabled() { return !env_is("GPTFAST_CUDA_GRAPHS", "0"); }

struct DevLayer {
  const uint16_t* attn_norm;  // bf16 (dim)
  const uint16_t* ffn_norm;   // bf16 (dim)
  QWeightView wqkv;           // ((n_heads + 2 n_kv_heads) * head_dim, dim), local heads
  QWeightView wo;             // (dim, n_heads * head_dim)
  QWeightView w13;            // (2 * hidden_local, dim)
  QWeightView w2;             // (dim, hidden_local)
};

struct Bufs {  // the work buffers llama_forward names; T = max_tokens rows each
  bf16 *x, *xn, *d;           // [T, dim]
  bf16* qkv;                  // [T, qkv width]
  bf16* att;                  // [T, n_heads * head_dim]
  bf16 *h13, *h;              // [T, 2 hidden], [T, hidden]
  float* logits;              // [T, vocab_local] fp32: no bf16 rounding before sampling
  const int32_t *ids, *pos;   // [T] device
};

// Sizes of one weight's arrays in the shard layout (core/weight_format.h).
struct WeightShape {
  int64_t q_bytes, scale_n, zero_n;
};
WeightShape weight_shape(FormatSpec f, int64_t rows, int64_t cols) {
  switch (f.format) {
    case WeightFormat::BF16: return {rows * cols * 2, 0, 0};
    case WeightFormat::INT8: return {rows * cols, rows, 0};
    case WeightFormat::INT4: {
      const int64_t g = (cols + f.group_size - 1) / f.group_size;
      return {rows * cols / 2, rows * g, rows * g};
    }
  }
  return {0, 0, 0};
}

// Carves every device array out of one allocation. A first pass with no memory only counts, so
// the out-of-memory check happens before anything is allocated and reports the whole need.
class Carver {
 public:
  explicit Carver(char* base) : base_(base) {}
  template <class T>
  T* take(int64_t n) {
    const size_t bytes = cuda::align_up(size_t(n) * sizeof(T));
    T* p = base_ ? reinterpret_cast<T*>(base_ + used_) : nullptr;
    used_ += bytes;
    return p;
  }
  QWeightView weight(FormatSpec f, int64_t rows, int64_t cols) {
    const auto s = weight_shape(f, rows, cols);
    QWeightView w;
    w.format = f.format;
    w.rows = rows, w.cols = cols, w.group_size = f.format == WeightFormat::INT4 ? f.group_size : 0;
    w.q = take<uint8_t>(s.q_bytes);
    w.scale = s.scale_n ? take<uint16_t>(s.scale_n) : nullptr;
    w.zero = s.zero_n ? take<uint16_t>(s.zero_n) : nullptr;
    return w;
  }
  size_t used() const { return used_; }

 private:
  char* base_;
  size_t used_ = 0;
};

int64_t view_bytes(const QWeightView& w, FormatSpec f) {
  const auto s = weight_shape(f, w.rows, w.cols);
  return s.q_bytes + 2 * (s.scale_n + s.zero_n);
}

class CudaBackend;

// The op set llama_forward calls, bound to one backend's stream, buffers and weights.
struct CudaOps {
  CudaBackend* b;
  const ModelConfig& cfg() const;
  const RankSlice& slice() const;
  Bufs& bufs();
  const DevLayer& layer(int64_t l) const;
  const uint16_t* final_norm() const;
  const QWeightView& lm_head() const;
  void embed(const int32_t* ids, int M, bf16* x);
  void rmsnorm(const bf16* x, const uint16_t* w, int M, bf16* out);
  void add_rmsnorm(bf16* x, const bf16* d, const uint16_t* w, int M, bf16* out);
  void matmul(const bf16* x, int M, const QWeightView& w, bf16* out);
  void matmul(const bf16* x, int M, const QWeightView& w, float* out);
  void rope_kv_write(bf16* qkv, int M, int64_t row_stride, const int32_t* pos, int64_t l);
  void attention(const bf16* q, int M, int64_t q_stride, const int32_t* pos, int64_t l, bf16* out);
  void silu_mul(const bf16* h13, int M, int64_t hidden, bf16* out);
  void allreduce(bf16* x, int64_t n);
};

class CudaBackend final : public Backend {
 public:
  // Picks the device, checks memory, carves the block; weights are then filled by upload() or
  // fill_synthetic(), and join() makes the NCCL group.
  CudaBackend(const ModelConfig& cfg, const RankSlice& slice, FormatSpec fmt, const BackendOptions& o, Comm& comm,
              const std::string& what)
      : cfg_(cfg), slice_(slice), fmt_(fmt), rank_(comm.rank()), world_(comm.size()),
        deadline_s_(std::max(1.0, comm.timeout_s())) {
    cfg_.validate(what);
    GF_CHECK(slice_.tp_size == comm.size() && slice_.tp_rank == comm.rank(), what, ": shard is tp rank ",
             slice_.tp_rank, " of ", slice_.tp_size, " but this is rank ", comm.rank(), " of ", comm.size());
    GF_CHECK(o.max_seq >= 1 && o.max_tokens >= 1, "backend options: max_seq and max_tokens must be >= 1");
    // Every matrix's width against the GEMVs' column runs, here rather than at the first forward: at tp = 3
    // a hidden of 1024 leaves 341-column w2 slices. (An int4 set's int8 LM head is dim wide: covered.)
    const int align = cuda::matmul_col_align(fmt_.format);
    for (int64_t cols : {cfg_.dim, slice_.n_heads * cfg_.head_dim, slice_.hidden_dim})
      GF_CHECK(cols % align == 0, what, ": at tp=", slice_.tp_size, " rank ", slice_.tp_rank, " gets matrices ", cols,
               " columns wide (dim ", cfg_.dim, ", attention ", slice_.n_heads * cfg_.head_dim, ", intermediate ",
               slice_.hidden_dim, ") but the CUDA GEMVs take multiples of ", align, " in ", fmt_.name(),
               ": choose a tp that splits intermediate_size ", cfg_.hidden_dim, " so, or --backend cpu");
    max_seq_ = o.max_seq;
    kv_int8_ = o.kv_int8;
    T_ = o.max_tokens;
    allreduce_mode_ = o.allreduce;
    use_graphs_ = graphs_enabled();
    int n_dev = 0;
    GF_CUDA_OK(cudaGetDeviceCount(&n_dev));
    GF_CHECK(comm.local_rank() < n_dev, "rank ", rank_, ": local rank ", comm.local_rank(), " has no GPU (", n_dev,
             " visible on this node); start at most ", n_dev, " ranks per node");
    device_ = comm.local_rank();
    // mpirun binds each rank to one core when it starts two or fewer. At tp > 1 the decode loop then shares
    // that core with NCCL's and the CUDA driver's threads (2 x H200, Llama-2-7B int4 g32 at tp=2: ~370
    // tok/s bound, ~470 with --bind-to none). Say so once per node, with the way out.
    cpu_set_t cpus;
    if (world_ > 1 && comm.local_rank() == 0 && sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) == 1)
      std::fprintf(stderr, "gptfast-tp: note: this rank is bound to one core, which it shares with NCCL's and the "
                   "CUDA driver's threads (tensor-parallel decode measured ~20%% slower so); `mpirun --bind-to none` "
                   "or `--map-by slot:PE=N` gives it more\n");
    GF_CUDA_OK(cudaSetDevice(device_));
    cudaDeviceProp prop{};
    GF_CUDA_OK(cudaGetDeviceProperties(&prop, device_));
    device_name_ = prop.name;
    stream_ = cuda::Stream::create();
    gemm_.emplace();  // cuBLAS workspace and dequantization scratch for M > 16

    Carver count(nullptr);
    carve(count);
    size_t free_b = 0, total_b = 0;
    GF_CUDA_OK(cudaMemGetInfo(&free_b, &total_b));
    const size_t margin = size_t(512) << 20;  // NCCL buffers, graphs, kernel modules
    const std::string oom = detail::cat(
        "rank ", rank_, ": not enough GPU memory for ", cfg_.name, " ", fmt_.name(), " tp=", world_, ": needs ",
        count.used() + margin, " bytes (weights ", weight_bytes_all(), ", KV cache ", kv_bytes(), " for max_seq ",
        max_seq_, ", margin ", margin, ") but ", device_name_, " (device ", device_, ") has ", free_b, " bytes free of ",
        total_b);
    const char* hint = "use --int8 or --int4, more ranks, or a shorter --max-seq-len";
    if (count.used() + margin > free_b) throw Error(oom, hint);
    try {
      block_ = cuda::DeviceMemory::alloc(count.used());
    } catch (const Error&) {
      cudaGetLastError();  // clear the failed allocation's error so later launch checks don't report it
      throw Error(oom, hint);
    }
    Carver carver(block_.as<char>());
    carve(carver);
    GF_ASSERT(carver.used() == count.used());

    // Pinned host side: u (8 B), token (4 B, padded to 8), ids and positions [2T], one logits row.
    pinned_ = cuda::PinnedMemory::alloc(16 + sizeof(int32_t) * 2 * T_ + sizeof(float) * slice_.vocab_padded);
    char* p = pinned_.as<char>();
    h_u_ = reinterpret_cast<double*>(p);
    h_token_ = reinterpret_cast<int32_t*>(p + 8);
    h_io_ = reinterpret_cast<int32_t*>(p + 16);
    h_logits_ = reinterpret_cast<float*>(p + 16 + sizeof(int32_t) * 2 * T_);
    const auto inv = cfg_.rope_inv_freq();
    upload_bytes(inv_freq_, inv.data(), inv.size() * sizeof(double));
    ops_.b = this;
  }

  void upload(const HostShard& h) {
    Uploader up(stream_.get());
    up.put(embed_, h.embed.data(), h.embed.size() * 2, cfg_.vocab_size * cfg_.dim * 2, "embed");
    up.put(final_norm_, h.norm.data(), h.norm.size() * 2, cfg_.dim * 2, "norm");
    up.weight(lm_head_, h.lm_head, "lm_head");
    GF_CHECK(int64_t(h.layers.size()) == cfg_.n_layers, h.path, ": ", h.layers.size(), " layers, expected ",
             cfg_.n_layers);
    for (int64_t l = 0; l < cfg_.n_layers; ++l) {
      const auto& H = h.layers[l];
      auto& D = layers_[l];
      const std::string at = "layers/" + std::to_string(l) + "/";
      up.put(D.attn_norm, H.attn_norm.data(), H.attn_norm.size() * 2, cfg_.dim * 2, at + "attn_norm");
      up.put(D.ffn_norm, H.ffn_norm.data(), H.ffn_norm.size() * 2, cfg_.dim * 2, at + "ffn_norm");
      up.weight(D.wqkv, H.wqkv, at + "wqkv");
      up.weight(D.wo, H.wo, at + "wo");
      up.weight(D.w13, H.w13, at + "w13");
      up.weight(D.w2, H.w2, at + "w2");
    }
    up.finish();
  }

  void fill_synthetic(uint64_t seed) {
    cudaStream_t s = stream_.get();
    uint64_t k = seed * 1000003;
    auto norm = [&](const uint16_t* w) {
      cuda::launch_fill_uniform(reinterpret_cast<bf16*>(const_cast<uint16_t*>(w)), cfg_.dim, ++k, 0.9f, 1.1f, s);
    };
    auto weight = [&](const QWeightView& w) { cuda::launch_fill_random_weight(w, ++k, 1.f / std::sqrt(float(w.cols)), s); };
    cuda::launch_fill_uniform(reinterpret_cast<bf16*>(const_cast<uint16_t*>(embed_)), cfg_.vocab_size * cfg_.dim,
                              ++k, -1.f, 1.f, s);
    norm(final_norm_);
    weight(lm_head_);
    for (const auto& L : layers_) {
      norm(L.attn_norm), norm(L.ffn_norm);
      weight(L.wqkv), weight(L.wo), weight(L.w13), weight(L.w2);
    }
    wait("synthetic weight fill");
  }

  // Every rank agrees that loading worked before any rank enters NCCL init (a collective that a
  // failed rank would never join). NCCL stays for large messages and the logits gather.
  void join(Comm& comm) {
    if (world_ == 1) return;
    nccl_.emplace(comm, deadline_s_);
    ipc_ = IpcAllreduce::create(comm, allreduce_mode_, deadline_s_);
  }

  std::string name() const override { return "cuda:" + device_name_; }
  int64_t weight_bytes() const override { return weight_bytes_all() - cfg_.vocab_size * cfg_.dim * 2; }
  int max_tokens() const override { return T_; }
  int64_t max_seq() const override { return max_seq_; }

  void forward(const int32_t* ids, int M, int64_t pos0) override {
    GF_CHECK(M >= 1 && M <= T_, "forward: M = ", M, " outside [1, ", T_, "] (max_tokens)");
    GF_CHECK(pos0 >= 0 && pos0 + M <= max_seq_, "forward: positions [", pos0, ", ", pos0 + M,
             ") exceed the KV cache length ", max_seq_, " (--max-seq)");
    for (int m = 0; m < M; ++m)
      GF_CHECK(ids[m] >= 0 && ids[m] < cfg_.vocab_size, "forward: token id ", ids[m], " outside [0, ",
               cfg_.vocab_size, ")");
    // The previous step may still be reading the pinned inputs (a graph's copy node reads them when
    // it runs): let it finish before overwriting them.
    wait("previous forward");
    for (int m = 0; m < M; ++m) h_io_[m] = ids[m], h_io_[M + m] = int32_t(pos0 + m);
    last_M_ = M;
    // A forward of M <= kGraphMaxM tokens (a decode step, a speculative verify or draft catch-up) runs
    // eagerly the first time, which loads its kernels' modules and sets up NCCL, and from the second time
    // on as a graph captured then and replayed: ~10 kernels a layer launched by one call.
    if (M <= kGraphMaxM && use_graphs_) {
      auto& g = graphs_[M - 1];
      if (!g.exec && g.eager_runs++ > 0) capture_graph(M);
      if (g.exec) {
        GF_CUDA_OK(cudaGraphLaunch(g.exec.get(), stream_.get()));
        return;
      }
    }
    step(M);
  }

  void logits(int m, float* out) override {
    const float* g = gathered_row(m);
    GF_CUDA_OK(cudaMemcpyAsync(h_logits_, g, sizeof(float) * cfg_.vocab_size, cudaMemcpyDeviceToHost,
                               stream_.get()));
    wait("logits");
    std::memcpy(out, h_logits_, sizeof(float) * cfg_.vocab_size);
  }

  int32_t sample(int m, const cpu::SamplingParams& p, double u) override {
    cudaStream_t s = stream_.get();
    if (p.temperature != 0) {
      GF_CHECK(u >= 0 && u < 1, "sample: u = ", u, " outside [0, 1)");
      *h_u_ = u;
      GF_CUDA_OK(cudaMemcpyAsync(d_u_, h_u_, sizeof(double), cudaMemcpyHostToDevice, s));
    }
    if (const int k = split_sampler_ ? cpu::split_top_k(p) : 0; k > 0) {
      sample_split(m, p, k);
    } else if (p.temperature == 0) {
      cuda::launch_argmax(gathered_row(m), cfg_.vocab_size, d_token_, s);
    } else {
      cuda::launch_sample(gathered_row(m), cfg_.vocab_size, p, d_u_, d_token_, s);
    }
    GF_CUDA_OK(cudaMemcpyAsync(h_token_, d_token_, sizeof(int32_t), cudaMemcpyDeviceToHost, s));
    wait("sample");
    return *h_token_;
  }

  void candidates(int m, int k, std::vector<float>& logits, std::vector<int32_t>& ids) override {
    GF_CHECK(k >= 1 && k <= cpu::kMaxSplitTopK, "candidates: k ", k, " outside [1, ", cpu::kMaxSplitTopK, "]");
    const size_t n = size_t(k) * n_lists();
    if (!h_cand_.bytes()) h_cand_ = cuda::PinnedMemory::alloc(sizeof(uint64_t) * cpu::kMaxSplitTopK * n_lists());
    GF_CUDA_OK(cudaMemcpyAsync(h_cand_.as<uint64_t>(), split_candidates(m, k), sizeof(uint64_t) * n,
                               cudaMemcpyDeviceToHost, stream_.get()));
    wait("candidates");
    logits.resize(n), ids.resize(n);
    cuda::unpack_candidates(h_cand_.as<uint64_t>(), int64_t(n), logits.data(), ids.data());
  }

  CudaBenchInfo bench_info(bool measure_bandwidth) {
    CudaBenchInfo i;
    i.device = device_name_;
    i.device_bytes = int64_t(block_.bytes());
    if (read_gbps_ == 0 && measure_bandwidth) {
      wait("bench");
      read_gbps_ = cuda::measure_read_bandwidth_gbps(stream_.get());
    }
    i.read_gbps = read_gbps_;
    i.graph_nodes = graph_nodes_;
    i.graph_kernels = graph_kernels_;
    i.pdl_edges = graph_pdl_edges_;
    for (const auto& g : graphs_) i.forward_graphs += bool(g.exec);
    if (graph_kernels_ >= 0) i.kernels_per_layer = double(graph_kernels_) / double(cfg_.n_layers);
    return i;
  }

 private:
  friend struct CudaOps;

  // Pinned staging, two chunks in flight: the host copies chunk i+1 while the DMA moves chunk i.
  class Uploader {
   public:
    explicit Uploader(cudaStream_t s) : s_(s) {
      for (auto& st : stage_) st.mem = cuda::PinnedMemory::alloc(kChunk), st.done = cuda::Event::create();
    }
    void put(const void* dev, const void* host, size_t bytes, size_t expect, const std::string& what) {
      GF_CHECK(bytes == expect, "upload ", what, ": ", bytes, " bytes in the shard, expected ", expect);
      char* d = static_cast<char*>(const_cast<void*>(dev));
      const char* h = static_cast<const char*>(host);
      for (size_t off = 0; off < bytes; off += kChunk) {
        Stage& st = stage_[next_++ % 2];
        const size_t n = std::min(kChunk, bytes - off);
        GF_CUDA_OK(cudaEventSynchronize(st.done.get()));  // its previous DMA is finished
        std::memcpy(st.mem.as<char>(), h + off, n);
        GF_CUDA_OK(cudaMemcpyAsync(d + off, st.mem.as<char>(), n, cudaMemcpyHostToDevice, s_));
        GF_CUDA_OK(cudaEventRecord(st.done.get(), s_));
      }
    }
    void weight(const QWeightView& d, const HostWeight& h, const std::string& what) {
      GF_CHECK(h.rows == d.rows && h.cols == d.cols && h.fmt.format == d.format &&
                   (d.format != WeightFormat::INT4 || h.fmt.group_size == d.group_size),
               "upload ", what, ": shard has ", h.fmt.name(), " (", h.rows, ", ", h.cols, "), expected (", d.rows, ", ",
               d.cols, ")");
      const auto s = weight_shape(h.fmt, d.rows, d.cols);
      put(d.q, h.q.data(), h.q.size(), s.q_bytes, what + "/q");
      if (d.scale) put(d.scale, h.scale.data(), h.scale.size() * 2, s.scale_n * 2, what + "/scale");
      if (d.zero) put(d.zero, h.zero.data(), h.zero.size() * 2, s.zero_n * 2, what + "/zero");
    }
    void finish() { GF_CUDA_OK(cudaStreamSynchronize(s_)); }

   private:
    static constexpr size_t kChunk = size_t(32) << 20;
    struct Stage {
      cuda::PinnedMemory mem;
      cuda::Event done;
    };
    cudaStream_t s_;
    Stage stage_[2];
    unsigned next_ = 0;
  };

  template <class C>
  void carve(C& c) {
    const int64_t D = cfg_.dim, hd = cfg_.head_dim, q_w = slice_.n_heads * hd, kv_w = slice_.n_kv_heads * hd;
    const int64_t hid = slice_.hidden_dim;
    embed_ = c.template take<uint16_t>(cfg_.vocab_size * D);
    final_norm_ = c.template take<uint16_t>(D);
    lm_head_ = c.weight(lm_head_format(fmt_), slice_.vocab_local, D);  // int8 in int4 sets, as shards hold it
    layers_.assign(cfg_.n_layers, DevLayer{});
    for (auto& L : layers_) {
      L.attn_norm = c.template take<uint16_t>(D);
      L.ffn_norm = c.template take<uint16_t>(D);
      L.wqkv = c.weight(fmt_, q_w + 2 * kv_w, D);
      L.wo = c.weight(fmt_, D, q_w);
      L.w13 = c.weight(fmt_, 2 * hid, D);
      L.w2 = c.weight(fmt_, D, hid);
    }
    kv_.assign(cfg_.n_layers, cuda::KvLayer{});
    const int64_t rows = slice_.n_kv_heads * max_seq_;
    for (auto& L : kv_) {
      if (kv_int8_) {
        L.k = c.template take<int8_t>(rows * hd), L.v = c.template take<int8_t>(rows * hd);
        L.k_scale = c.template take<float>(rows), L.v_scale = c.template take<float>(rows);
      } else {
        L.k = c.template take<bf16>(rows * hd), L.v = c.template take<bf16>(rows * hd);
      }
    }
    b_.x = c.template take<bf16>(T_ * D);
    b_.xn = c.template take<bf16>(T_ * D);
    b_.d = c.template take<bf16>(T_ * D);
    b_.qkv = c.template take<bf16>(T_ * (q_w + 2 * kv_w));
    b_.att = c.template take<bf16>(T_ * q_w);
    b_.h13 = c.template take<bf16>(T_ * 2 * hid);
    b_.h = c.template take<bf16>(T_ * hid);
    b_.logits = c.template take<float>(T_ * slice_.vocab_local);
    d_io_ = c.template take<int32_t>(2 * T_);
    gathered_ = c.template take<float>(slice_.vocab_padded);
    att_scratch_n_ = cuda::attention_scratch_floats(T_, slice_.n_heads, slice_.n_kv_heads, hd, max_seq_);
    att_scratch_ = c.template take<float>(std::max<int64_t>(att_scratch_n_, 1));
    d_u_ = c.template take<double>(1);
    d_token_ = c.template take<int32_t>(1);
    inv_freq_ = c.template take<double>(hd / 2);
  }

  int64_t weight_bytes_all() const {
    int64_t n = cfg_.vocab_size * cfg_.dim * 2 + cfg_.dim * 2 + view_bytes(lm_head_, lm_head_format(fmt_));
    for (const auto& L : layers_)
      n += 4 * cfg_.dim + view_bytes(L.wqkv, fmt_) + view_bytes(L.wo, fmt_) + view_bytes(L.w13, fmt_) +
           view_bytes(L.w2, fmt_);
    return n;
  }
  int64_t kv_bytes() const {
    return 2 * cfg_.n_layers * slice_.n_kv_heads * max_seq_ * (kv_int8_ ? cfg_.head_dim + 4 : cfg_.head_dim * 2);
  }

  void upload_bytes(const double* dev, const void* host, size_t bytes) {
    GF_CUDA_OK(cudaMemcpyAsync(const_cast<double*>(dev), host, bytes, cudaMemcpyHostToDevice, stream_.get()));
    wait("upload");
  }

  // One forward of M tokens on the stream: copy the inputs in, then the model.
  // Inputs travel as [ids M][positions M] in one copy; the decode graph bakes in M = 1's layout.
  void step(int M) {
    GF_CUDA_OK(cudaMemcpyAsync(d_io_, h_io_, sizeof(int32_t) * 2 * M, cudaMemcpyHostToDevice, stream_.get()));
    b_.ids = d_io_;
    b_.pos = d_io_ + M;
    llama_forward(ops_, M);
  }

  // Called by forward() after its wait("previous forward"): the eager run of this M has finished its
  // collectives (or the deadline named the silent peer) before the capture. With a peer stopped (SIGSTOP)
  // mid warm-up, cudaGraphInstantiate once sat in the driver behind the spinning NCCL kernel, where no
  // deadline reaches (2 GPUs, the CLI fault test: the job hung with no line).
  void capture_graph(int M) {
    cudaStream_t s = stream_.get();
    cudaGraph_t g = nullptr;
    GF_CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    try {
      step(M);
    } catch (...) {
      cudaStreamEndCapture(s, &g);
      if (g) cudaGraphDestroy(g);
      throw;
    }
    GF_CUDA_OK(cudaStreamEndCapture(s, &g));
    cuda::Graph graph(g);
    cudaGraphExec_t exec = nullptr;
    GF_CUDA_OK(cudaGraphInstantiate(&exec, g, 0));
    graphs_[M - 1].exec = cuda::GraphExec(exec);
    if (M != 1) return;
    // What --bench reports: the decode graph's nodes, kernels and programmatic edges.
    size_t n = 0;
    GF_CUDA_OK(cudaGraphGetNodes(g, nullptr, &n));
    std::vector<cudaGraphNode_t> nodes(n);
    GF_CUDA_OK(cudaGraphGetNodes(g, nodes.data(), &n));
    graph_nodes_ = int(n);
    graph_kernels_ = 0;
    for (auto node : nodes) {
      cudaGraphNodeType t;
      GF_CUDA_OK(cudaGraphNodeGetType(node, &t));
      graph_kernels_ += t == cudaGraphNodeTypeKernel;
    }
    // Programmatic edges: what PDL turned into overlap (0 with GPTFAST_PDL=0, or if capture dropped it).
    size_t n_edges = 0;
    GF_CUDA_OK(cudaGraphGetEdges(g, nullptr, nullptr, nullptr, &n_edges));
    std::vector<cudaGraphNode_t> from(n_edges), to(n_edges);
    std::vector<cudaGraphEdgeData> data(n_edges);
    GF_CUDA_OK(cudaGraphGetEdges(g, from.data(), to.data(), data.data(), &n_edges));
    graph_pdl_edges_ = 0;
    for (size_t e = 0; e < n_edges; ++e) graph_pdl_edges_ += data[e].type == cudaGraphDependencyTypeProgrammatic;
  }

  // Row m of the last forward's logits, this rank's slice of the vocabulary, on the device.
  const float* local_row(int m) const {
    GF_CHECK(last_M_ > 0, "logits/sample before any forward");
    GF_CHECK(m >= 0 && m < last_M_, "logits/sample: row ", m, " outside the last forward's ", last_M_, " tokens");
    return b_.logits + int64_t(m) * slice_.vocab_local;
  }

  // Row m of the last forward's logits over the whole (padded) vocabulary, on the device.
  const float* gathered_row(int m) {
    const float* local = local_row(m);
    if (!nccl_) return local;
    nccl_->allgather_f32(local, gathered_, slice_.vocab_local, stream_.get());
    return gathered_;
  }

  // The split sampler (cpu_ops.h, split_top_k): each rank's top-k candidates travel (2k int32 words)
  // instead of its logits row, and every rank finishes on the union. Greedy and 0 < top_k <=
  // kMaxSplitTopK only (else the gathered row). Measured on an H100 (7B, t 0.8 top-k 200, tp=1): +4%
  // bf16, +6% int8, +7% int4 tok/s over the gathered row's one-block sampler. GPTFAST_SAMPLER=gather: that
  // path for everything.

  void sample_split(int m, const cpu::SamplingParams& p, int k) {
    const uint64_t* lists = split_candidates(m, k);
    cuda::launch_sample_from_candidates(lists, n_lists(), k, cfg_.vocab_size, p, d_u_, d_token_, stream_.get());
  }

  int n_lists() const { return nccl_ ? nccl_->size() : 1; }
  // Every rank's k best candidates of row m on the device, n_lists() lists of k (enqueued, not waited for).
  const uint64_t* split_candidates(int m, int k) {
    const float* local = local_row(m);
    cudaStream_t s = stream_.get();
    const int64_t n_valid = std::clamp<int64_t>(cfg_.vocab_size - slice_.vocab_begin, 0, slice_.vocab_local);
    const int64_t scratch_n = cuda::local_top_k_scratch(n_valid);
    if (!split_mem_.bytes())  // this rank's list, then every rank's, then local_top_k's scratch
      split_mem_ = cuda::DeviceMemory::alloc(sizeof(uint64_t) * (cpu::kMaxSplitTopK * (world_ + 1) + scratch_n));
    uint64_t* mine = split_mem_.as<uint64_t>();
    uint64_t* all = mine + cpu::kMaxSplitTopK;
    uint64_t* scratch = all + int64_t(cpu::kMaxSplitTopK) * world_;
    cuda::launch_local_top_k(local, n_valid, slice_.vocab_begin, k, mine, scratch, scratch_n, s);
    if (!nccl_) return mine;
    nccl_->allgather_i32(reinterpret_cast<const int32_t*>(mine), reinterpret_cast<int32_t*>(all), 2 * size_t(k), s);
    return all;
  }

  // After a collective gave up, kernels may still spin on the silent peer, and freeing device or pinned
  // memory would wait for them forever: such a backend leaves its memory to the ending process.
 public:
  ~CudaBackend() override {
    const auto t0 = std::chrono::steady_clock::now();
    while (cudaStreamQuery(stream_.get()) == cudaErrorNotReady &&
           std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (cudaStreamQuery(stream_.get()) != cudaErrorNotReady) return;
    static_cast<void>(new cuda::DeviceMemory(std::move(block_)));  // deliberately leaked
    static_cast<void>(new cuda::DeviceMemory(std::move(split_mem_)));
    static_cast<void>(new cuda::PinnedMemory(std::move(pinned_)));
    static_cast<void>(new cuda::PinnedMemory(std::move(h_cand_)));
    if (gemm_) static_cast<void>(new cuda::GemmContext(std::move(*gemm_)));
    for (auto& g : graphs_) static_cast<void>(new cuda::GraphExec(std::move(g.exec)));
    static_cast<void>(ipc_.release());
  }

 private:
  void wait(const char* what) {
    const std::string situation = detail::cat("rank ", rank_, ": ", what);
    wait_stream(stream_.get(), nccl_ ? &*nccl_ : nullptr, deadline_s_, situation);
    if (ipc_) ipc_->check(situation);  // a one-shot wait that gave up ends its kernel, not the stream
  }

  ModelConfig cfg_;
  RankSlice slice_;
  FormatSpec fmt_;
  int rank_, world_, device_ = 0, T_ = 0, last_M_ = 0;
  // A stream wait longer than this means a silent peer (or a wedged GPU): abort instead of hanging.
  double deadline_s_;
  int64_t max_seq_ = 0;
  bool kv_int8_ = false;
  bool use_graphs_ = true;  // read once at construction
  AllReduce allreduce_mode_ = AllReduce::Auto;
  std::string device_name_;
  cuda::Stream stream_;
  std::optional<cuda::GemmContext> gemm_;
  std::optional<NcclComm> nccl_;
  std::unique_ptr<IpcAllreduce> ipc_;     // one-shot all-reduce for small messages (null: NCCL only)
  cuda::DeviceMemory block_;  // every array below points into it
  const uint16_t* embed_ = nullptr;       // bf16 (vocab, dim), replicated
  const uint16_t* final_norm_ = nullptr;  // bf16 (dim)
  QWeightView lm_head_;                   // (vocab_local, dim)
  std::vector<DevLayer> layers_;
  std::vector<cuda::KvLayer> kv_;         // per layer, [n_kv_local][max_seq][head_dim] (+ int8 scales)
  Bufs b_{};
  int32_t* d_io_ = nullptr;               // [2T]: ids then positions of the current forward
  float* gathered_ = nullptr;             // [vocab_padded]
  float* att_scratch_ = nullptr;
  int64_t att_scratch_n_ = 0;
  double* d_u_ = nullptr;
  int32_t* d_token_ = nullptr;
  const double* inv_freq_ = nullptr;      // [head_dim/2]
  cuda::PinnedMemory pinned_;
  cuda::PinnedMemory h_cand_;  // candidates(): n_lists() x kMaxSplitTopK packed candidates
  int32_t *h_io_ = nullptr, *h_token_ = nullptr;
  double* h_u_ = nullptr;
  float* h_logits_ = nullptr;
  const bool split_sampler_ = !env_is("GPTFAST_SAMPLER", "gather");
  cuda::DeviceMemory split_mem_;          // split sampler: [1 + world][kMaxSplitTopK], local_top_k scratch
  // graphs_[M - 1]: the forward of M tokens, captured on its second run (the tensor-core GEMV's range;
  // larger M are prefill chunks, eager on cuBLAS).
  static constexpr int kGraphMaxM = 16;
  struct ForwardGraph {
    int eager_runs = 0;
    cuda::GraphExec exec;
  };
  ForwardGraph graphs_[kGraphMaxM];
  int graph_nodes_ = -1, graph_kernels_ = -1, graph_pdl_edges_ = -1;
  double read_gbps_ = 0;
  CudaOps ops_{};
};

const ModelConfig& CudaOps::cfg() const { return b->cfg_; }
const RankSlice& CudaOps::slice() const { return b->slice_; }
Bufs& CudaOps::bufs() { return b->b_; }
const DevLayer& CudaOps::layer(int64_t l) const { return b->layers_[l]; }
const uint16_t* CudaOps::final_norm() const { return b->final_norm_; }
const QWeightView& CudaOps::lm_head() const { return b->lm_head_; }

void CudaOps::embed(const int32_t* ids, int M, bf16* x) {
  cuda::launch_embed(ids, M, b->embed_, b->cfg_.vocab_size, b->cfg_.dim, x, b->stream_.get());
}
void CudaOps::rmsnorm(const bf16* x, const uint16_t* w, int M, bf16* out) {
  cuda::launch_rmsnorm(x, w, M, b->cfg_.dim, float(b->cfg_.norm_eps), out, b->stream_.get());
}
void CudaOps::add_rmsnorm(bf16* x, const bf16* d, const uint16_t* w, int M, bf16* out) {
  cuda::launch_add_rmsnorm(x, d, w, M, b->cfg_.dim, float(b->cfg_.norm_eps), out, b->stream_.get());
}
void CudaOps::matmul(const bf16* x, int M, const QWeightView& w, bf16* out) {
  cuda::launch_matmul(x, M, w, out, *b->gemm_, b->stream_.get());
}
void CudaOps::matmul(const bf16* x, int M, const QWeightView& w, float* out) {
  cuda::launch_matmul(x, M, w, out, *b->gemm_, b->stream_.get());
}
void CudaOps::rope_kv_write(bf16* qkv, int M, int64_t row_stride, const int32_t* pos, int64_t l) {
  cuda::launch_rope_kv_write(qkv, M, row_stride, b->slice_.n_heads, b->slice_.n_kv_heads, b->cfg_.head_dim, pos,
                             b->inv_freq_, b->max_seq_, b->kv_[l], b->stream_.get());
}
void CudaOps::attention(const bf16* q, int M, int64_t q_stride, const int32_t* pos, int64_t l, bf16* out) {
  cuda::launch_attention(q, M, q_stride, pos, b->kv_[l], b->max_seq_, b->slice_.n_heads,
                         b->slice_.n_kv_heads, b->cfg_.head_dim, out, b->att_scratch_, b->att_scratch_n_,
                         b->stream_.get());
}
void CudaOps::silu_mul(const bf16* h13, int M, int64_t hidden, bf16* out) {
  cuda::launch_silu_mul(h13, M, hidden, out, b->stream_.get());
}
void CudaOps::allreduce(bf16* x, int64_t n) {
  allreduce_sum_bf16(b->ipc_.get(), b->nccl_ ? &*b->nccl_ : nullptr, x, n, b->stream_.get());
}

// Builds, loads, then agrees over MPI that every rank loaded before NCCL init.
template <class Load>
std::unique_ptr<Backend> build(Comm& comm, Load&& load) {
  std::unique_ptr<CudaBackend> b;
  std::string err;
  try {
    b = load();
  } catch (const std::exception& e) {  // any failure must still reach the agreement below
    err = e.what();
  }
  const bool all = comm.size() == 1 || comm.all_ok(err.empty());
  if (!err.empty()) GF_FAIL(err);
  GF_CHECK(all, "rank ", comm.rank(), ": another rank failed to load its shard (its error is printed by it)");
  b->join(comm);
  return b;
}

}  // namespace

bool cuda_device_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

std::unique_ptr<Backend> make_cuda_backend(const HostShard& shard, Comm& comm, const BackendOptions& o) {
  return build(comm, [&] {
    auto b = std::make_unique<CudaBackend>(shard.cfg, shard.slice, shard.fmt, o, comm, shard.path);
    b->upload(shard);
    return b;
  });
}

std::unique_ptr<Backend> make_cuda_backend_synthetic(const ModelConfig& cfg, const RankSlice& slice, FormatSpec fmt,
                                                     uint64_t seed, Comm& comm, const BackendOptions& o) {
  return build(comm, [&] {
    auto b = std::make_unique<CudaBackend>(cfg, slice, fmt, o, comm, "synthetic " + cfg.name);
    b->fill_synthetic(seed);
    return b;
  });
}

CudaBenchInfo cuda_bench_info(Backend& b, bool measure_bandwidth) {
  auto* c = dynamic_cast<CudaBackend*>(&b);
  GF_CHECK(c, "bench: backend '", b.name(), "' is not the CUDA backend");
  return c->bench_info(measure_bandwidth);
}

}  // namespace gf
