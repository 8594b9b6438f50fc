// CUDA embed / rmsnorm / add_rmsnorm / rope_kv_write / attention / silu_mul / argmax / sample /
// split sampler against their CPU twins on fresh random inputs (rounded to bf16 before the CPU runs).
#include <algorithm>
#include <cmath>
#include <random>

#include "kernels/cpu/cpu_ops.h"
#include "tests/gpu/kernels_util.h"

namespace gf::test {
namespace {

template <class T>
DevBuf<T> upload(const std::vector<T>& h) {
  DevBuf<T> d(h.size());
  d.upload(h);
  return d;
}

TEST(CudaOps, EmbedNormsSilu) {
  std::mt19937 rng(1);
  for (int M : {1, 5, 64}) {
    const int64_t dim = 4096, vocab = 1000, hidden = 11008;
    std::vector<int32_t> ids(M);
    for (auto& i : ids) i = int32_t(rng() % vocab);
    DevBuf<cuda::bf16> table(vocab * dim), x(M * dim), d(M * dim), out(M * dim), h13(M * 2 * hidden), h(M * hidden);
    std::vector<float> ht = random_bf16(table, rng), hd = random_bf16(d, rng), hh13 = random_bf16(h13, rng, -4.f, 4.f);
    std::vector<uint16_t> tb(vocab * dim), wn(dim);
    for (size_t i = 0; i < tb.size(); ++i) tb[i] = float_to_bf16(ht[i]);
    std::uniform_real_distribution<float> wd(0.5f, 1.5f);
    for (auto& v : wn) v = float_to_bf16(wd(rng));
    auto dtb = upload(tb), dw = upload(wn);
    auto dids = upload(ids);

    x.poison();
    cuda::launch_embed(dids.get(), M, dtb.get(), vocab, dim, x.get(), nullptr);
    std::vector<float> ref(M * dim);
    cpu::embed(ids.data(), M, tb.data(), vocab, dim, ref.data());
    expect_close(bf16_dev_to_float(x), ref, 0.f, 0.f, "embed");

    out.poison();
    cuda::launch_rmsnorm(x.get(), dw.get(), M, dim, 1e-5f, out.get(), nullptr);
    std::vector<float> rn(M * dim);
    cpu::rmsnorm(ref.data(), wn.data(), M, dim, 1e-5f, rn.data());
    expect_close(bf16_dev_to_float(out), rn, 1e-2f, 1e-2f, "rmsnorm");

    out.poison();
    cuda::launch_add_rmsnorm(x.get(), d.get(), dw.get(), M, dim, 1e-5f, out.get(), nullptr);
    std::vector<float> xr = ref;
    cpu::add_rmsnorm(xr.data(), hd.data(), wn.data(), M, dim, 1e-5f, rn.data());
    expect_close(bf16_dev_to_float(x), xr, 1e-2f, 1e-2f, "add_rmsnorm residual");
    expect_close(bf16_dev_to_float(out), rn, 2e-2f, 2e-2f, "add_rmsnorm out");

    h.poison();
    cuda::launch_silu_mul(h13.get(), M, hidden, h.get(), nullptr);
    std::vector<float> sr(M * hidden);
    cpu::silu_mul(hh13.data(), M, hidden, sr.data());
    expect_close(bf16_dev_to_float(h), sr, 1e-2f, 1e-2f, "silu_mul");
  }
}

// rmsnorm / add_rmsnorm at widths that take each path of the kernel: 16-byte units in one chunk (576,
// 4096, 8192) and in two (8200), scalar units in one chunk (37) and in several (4099, 4100 over 3 rows).
TEST(CudaOps, NormWidths) {
  std::mt19937 rng(5);
  for (const auto& [M, dim] : std::vector<std::pair<int, int64_t>>{{1, 576}, {1, 4096}, {2, 8192}, {1, 8200}, {3, 37},
                                                                   {1, 4099}, {3, 4100}}) {
    DevBuf<cuda::bf16> x(M * dim), d(M * dim), out(M * dim);
    std::vector<float> hx = random_bf16(x, rng, -3.f, 3.f), hd = random_bf16(d, rng);
    std::vector<uint16_t> wn(dim);
    std::uniform_real_distribution<float> wd(0.5f, 1.5f);
    for (auto& v : wn) v = float_to_bf16(wd(rng));
    auto dw = upload(wn);
    const std::string at = " M=" + std::to_string(M) + " dim=" + std::to_string(dim);
    std::vector<float> rn(M * dim);
    out.poison();
    cuda::launch_rmsnorm(x.get(), dw.get(), M, dim, 1e-5f, out.get(), nullptr);
    cpu::rmsnorm(hx.data(), wn.data(), M, dim, 1e-5f, rn.data());
    expect_close(bf16_dev_to_float(out), rn, 1e-2f, 1e-2f, ("rmsnorm" + at).c_str());
    out.poison();
    cuda::launch_add_rmsnorm(x.get(), d.get(), dw.get(), M, dim, 1e-5f, out.get(), nullptr);
    cpu::add_rmsnorm(hx.data(), hd.data(), wn.data(), M, dim, 1e-5f, rn.data());
    expect_close(bf16_dev_to_float(x), hx, 1e-2f, 1e-2f, ("add_rmsnorm residual" + at).c_str());
    expect_close(bf16_dev_to_float(out), rn, 2e-2f, 2e-2f, ("add_rmsnorm out" + at).c_str());
  }
}

// One layer's device cache in either format, filled with random values (as after earlier steps), and
// the values the CPU twins see: bf16 as is, int8 q * s.
struct TestCache {
  TestCache(int64_t rows, int64_t hd, bool int8, std::mt19937& rng)
      : int8(int8), hd(hd), kb(int8 ? 0 : rows * hd), vb(int8 ? 0 : rows * hd), kq(int8 ? rows * hd : 0),
        vq(int8 ? rows * hd : 0), ks(int8 ? rows : 0), vs(int8 ? rows : 0) {
    if (!int8) {
      random_bf16(kb, rng), random_bf16(vb, rng);
      return;
    }
    std::uniform_int_distribution<int> q(-127, 127);
    std::uniform_real_distribution<float> sd(0.001f, 0.02f);
    for (auto* b : {&kq, &vq}) {
      std::vector<int8_t> h(b->size());
      for (auto& x : h) x = int8_t(q(rng));
      b->upload(h);
    }
    for (auto* b : {&ks, &vs}) {
      std::vector<float> h(b->size());
      for (auto& x : h) x = sd(rng);
      b->upload(h);
    }
  }
  cuda::KvLayer layer() {
    if (!int8) return {kb.get(), vb.get(), nullptr, nullptr};
    return {kq.get(), vq.get(), ks.get(), vs.get()};
  }
  std::vector<float> host(bool k) const {
    if (!int8) return bf16_dev_to_float(k ? kb : vb);
    const std::vector<int8_t> q = (k ? kq : vq).download();
    const std::vector<float> sc = (k ? ks : vs).download();
    std::vector<float> f(q.size());
    for (size_t i = 0; i < q.size(); ++i) f[i] = float(q[i]) * sc[i / hd];
    return f;
  }
  bool int8;
  int64_t hd;
  DevBuf<cuda::bf16> kb, vb;
  DevBuf<int8_t> kq, vq;
  DevBuf<float> ks, vs;
};

// rope_kv_write + attention, for Llama-2 (MHA), Llama-3 (GQA 4) and SmolLM2 (9 q / 3 kv heads, hd 64), with
// a bf16 and an int8 cache.
TEST(CudaOps, RopeKvAttention) {
  struct Cfg { int64_t n_heads, n_kv, hd, max_seq; };
  std::mt19937 rng(2);
  for (bool int8 : {false, true})
  for (Cfg c : {Cfg{32, 32, 128, 4096}, Cfg{32, 8, 128, 4096}, Cfg{9, 3, 64, 2048}, Cfg{8, 1, 128, 300}}) {
    std::vector<double> inv(c.hd / 2);
    for (int64_t i = 0; i < c.hd / 2; ++i) inv[i] = std::pow(500000.0, -2.0 * i / c.hd);
    auto dinv = upload(inv);
    const int64_t qkv_w = (c.n_heads + 2 * c.n_kv) * c.hd;
    // a random, fully written cache (as after earlier steps), then each batch writes its own keys
    TestCache cache(c.n_kv * c.max_seq, c.hd, int8, rng);
    std::vector<float> hk = cache.host(true), hv = cache.host(false);
    for (auto [M, p0] : {std::pair{1, 0}, {1, 255}, {1, int(c.max_seq - 1)}, {5, 100}, {64, 0}, {16, int(c.max_seq - 16)}}) {
      SCOPED_TRACE(std::string(int8 ? "int8" : "bf16") + " cache, heads " + std::to_string(c.n_heads) + "/" +
                   std::to_string(c.n_kv) + " M=" + std::to_string(M) + " pos0=" + std::to_string(p0));
      std::vector<int32_t> pos(M);
      for (int m = 0; m < M; ++m) pos[m] = p0 + m;
      auto dpos = upload(pos);
      DevBuf<cuda::bf16> qkv(M * qkv_w), att(M * c.n_heads * c.hd);
      std::vector<float> hq = random_bf16(qkv, rng, -2.f, 2.f);
      cuda::launch_rope_kv_write(qkv.get(), M, qkv_w, c.n_heads, c.n_kv, c.hd, dpos.get(), dinv.get(), c.max_seq,
                                 cache.layer(), nullptr);
      cpu::rope(hq.data(), M, qkv_w, c.n_heads + c.n_kv, c.hd, pos.data(), inv.data());
      expect_close(bf16_dev_to_float(qkv), hq, 2e-2f, 1e-2f, "rope");
      hq = bf16_dev_to_float(qkv);  // continue from the GPU's bf16 values: the cache holds exactly those
      const int64_t qo = c.n_heads * c.hd, ko = qo + c.n_kv * c.hd;
      cpu::kv_write(hq.data() + qo, hq.data() + ko, M, qkv_w, pos.data(), c.n_kv, c.hd, c.max_seq, hk.data(), hv.data());
      if (int8)  // the same rounding of the same bf16 values: exact
        for (int m = 0; m < M; ++m)
          for (int64_t h = 0; h < c.n_kv; ++h) {
            cpu::round_kv_int8(hk.data() + (h * c.max_seq + pos[m]) * c.hd, c.hd);
            cpu::round_kv_int8(hv.data() + (h * c.max_seq + pos[m]) * c.hd, c.hd);
          }
      expect_close(cache.host(true), hk, 0.f, 0.f, "kv_write k");
      expect_close(cache.host(false), hv, 0.f, 0.f, "kv_write v");
      const int64_t sf = cuda::attention_scratch_floats(M, c.n_heads, c.n_kv, c.hd, c.max_seq);
      DevBuf<float> scratch(std::max<int64_t>(sf, 1));
      att.poison();
      cuda::launch_attention(qkv.get(), M, qkv_w, dpos.get(), cache.layer(), c.max_seq, c.n_heads, c.n_kv, c.hd,
                             att.get(), scratch.get(), sf, nullptr);
      std::vector<float> ref(M * c.n_heads * c.hd);
      cpu::attention(hq.data(), M, qkv_w, pos.data(), hk.data(), hv.data(), c.max_seq, c.n_heads, c.n_kv, c.hd, ref.data());
      const std::vector<float> got = bf16_dev_to_float(att);
      EXPECT_LE(rel_norm_err(got, ref), 1e-2);
      expect_close(got, ref, 1e-2f, 1e-2f, "attention");
    }
  }
}

// A device candidate's token id as cpu::local_top_k gives it: (key << 32) | id, or -1 for an empty slot
// (~0; a kept slot's id is below 2^31, so it never reads as -1).
int64_t candidate_id(uint64_t c) { return c == ~uint64_t(0) ? -1 : int64_t(c & 0xffffffffu); }

// Normal logits (sigma 3); with ties, rounded to integers, so that equal logits (and -0 vs +0) abound and
// the tie rules are exercised.
std::vector<float> random_logits(std::mt19937& rng, int64_t vocab, bool ties) {
  std::normal_distribution<float> nd(0.f, 3.f);
  std::vector<float> v(vocab);
  for (auto& x : v) x = ties ? std::round(nd(rng)) : nd(rng);
  return v;
}

TEST(CudaOps, ArgmaxAndSampleMatchCpu) {
  std::mt19937 rng(3);
  const cpu::SamplingParams params[] = {{0.f, 0, 1.f}, {1.f, 0, 1.f}, {0.8f, 50, 1.f}, {1.f, 0, 0.9f},
                                        {0.7f, 40, 0.95f}, {1.2f, 1, 1.f}, {1.f, 200000, 0.5f}};
  int trials = 0, agree = 0;
  for (int64_t vocab : {32000, 128256, 49152, 7}) {
    DevBuf<float> logits(vocab);
    DevBuf<double> du(1);
    DevBuf<int32_t> tok(1);
    for (int rep = 0; rep < 6; ++rep) {
      const std::vector<float> hl = random_logits(rng, vocab, rep == 0);
      logits.upload(hl);
      for (const auto& p : params) {
        for (double u : {0.0, 0.3, 0.77, 0.999999}) {
          const double uu = u + 0.0001 * (rng() % 100);
          const double ucl = uu < 1.0 ? uu : 0.5;
          du.upload({ucl});
          tok.poison();
          cuda::launch_sample(logits.get(), vocab, p, du.get(), tok.get(), nullptr);
          const int32_t g = tok.download()[0], c = cpu::sample(hl.data(), vocab, p, ucl);
          ++trials;
          agree += g == c;
          if (p.temperature == 0.f || p.top_k == 1) EXPECT_EQ(g, c) << "greedy must agree exactly, vocab " << vocab;
          EXPECT_TRUE(g >= 0 && g < vocab);
        }
      }
    }
  }
  // near a CDF boundary, sums in another order may flip a choice; anything more is a bug
  EXPECT_GE(agree, trials - trials / 100) << agree << " of " << trials << " agree";
}

// The split sampler as tp ranks would run it (each rank's slice of the padded row through
// launch_local_top_k, the lists concatenated as the all-gather leaves them, then the finishing kernel)
// against cpu::local_top_k per rank and cpu::sample on the whole row.
TEST(CudaOps, SplitSamplerMatchesCpu) {
  std::mt19937 rng(4);
  const cpu::SamplingParams params[] = {{0.f, 0, 1.f},   {1.f, 1, 1.f},     {0.8f, 50, 1.f},   {1.f, 40, 0.9f},
                                        {0.7f, 2, 0.5f}, {1.3f, 1024, 0.95f}, {1.f, 300, 1e-6f}, {2.f, 1000, 1.f}};
  int trials = 0, agree = 0;
  for (int64_t vocab : {int64_t(32000), int64_t(128256), int64_t(301), int64_t(7)}) {
    DevBuf<float> logits(vocab);
    DevBuf<double> du(1);
    DevBuf<int32_t> tok(1);
    for (int rep = 0; rep < 3; ++rep) {
      const std::vector<float> hl = random_logits(rng, vocab, rep == 0);
      for (int tp : {1, 2, 3, 8}) {
        const int64_t local = (vocab + tp - 1) / tp;
        std::vector<float> row = hl;
        if (rep == 2)  // the row's maximum on both sides of every rank boundary
          for (int b = 1; b < tp; ++b)
            if (b * local < vocab) row[b * local - 1] = row[b * local] = 20.f;
        logits.upload(row);
        for (const auto& p : params) {
          const int k = cpu::split_top_k(p);
          DevBuf<uint64_t> cand(size_t(tp) * k), scratch(size_t(cuda::local_top_k_scratch(local)));
          cand.poison();
          std::vector<float> cl(k);
          std::vector<int32_t> ci(k);
          for (int r = 0; r < tp; ++r) {
            const int64_t begin = r * local, n_valid = std::clamp<int64_t>(vocab - begin, 0, local);
            cuda::launch_local_top_k(logits.get() + std::min(begin, vocab), n_valid, begin, k, cand.get() + r * k,
                                     scratch.get(), int64_t(scratch.size()), nullptr);
            cpu::local_top_k(row.data() + std::min(begin, vocab), n_valid, begin, k, cl.data(), ci.data());
            const auto got = cand.download();
            for (int j = 0; j < k; ++j)
              ASSERT_EQ(candidate_id(got[size_t(r) * k + j]), ci[j])
                  << "local top-k slot " << j << " of rank " << r << "/" << tp << ", vocab " << vocab << " k " << k;
          }
          for (int i = 0; i < 6; ++i) {
            const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
            du.upload({u});
            tok.poison();
            cuda::launch_sample_from_candidates(cand.get(), tp, k, vocab, p, du.get(), tok.get(), nullptr);
            const int32_t g = tok.download()[0], c = cpu::sample(row.data(), vocab, p, u);
            ++trials;
            agree += g == c;
            if (p.temperature == 0.f || p.top_k == 1) {
              EXPECT_EQ(g, c) << "greedy must agree exactly: vocab " << vocab << " tp " << tp << " rep " << rep;
            }
            EXPECT_TRUE(g >= 0 && g < vocab) << g;
          }
        }
      }
    }
  }
  // near a CDF boundary, sums in another order may flip a choice; anything more is a bug
  EXPECT_GE(agree, trials - trials / 100) << agree << " of " << trials << " agree";
}

// launch_local_top_k alone at the shapes that take each of its paths: one part block (n <= 4096, n < k,
// n = 0), parts of 4, 8, 16 and 32 values a thread, k = 1, and the one-block kernel past the parts'
// registers (n > 512K at k = 1024; its greedy branch at k = 1 past n = 4096 x 8192); on normal logits, rounded ones (heavy ties, -0 and +0) and one
// value everywhere (every token tied at the cut).
TEST(CudaOps, LocalTopKShapesMatchCpu) {
  std::mt19937 rng(6);
  const std::pair<int64_t, int> shapes[] = {{0, 5},        {7, 1},         {1500, 1024},   {4096, 200},
                                            {4097, 200},   {5000, 1024},   {32000, 200},   {70000, 1},
                                            {128256, 7},   {200000, 1024}, {524288, 1024}, {600000, 1024},
                                            {33554433, 1}};
  for (const auto& [n, k] : shapes) {
    for (int dist = 0; dist < 3; ++dist) {
      std::vector<float> row = dist == 2 ? std::vector<float>(size_t(n), 1.5f) : random_logits(rng, n, dist == 1);
      DevBuf<float> logits(static_cast<size_t>(n));
      if (n) logits.upload(row);
      DevBuf<uint64_t> cand(static_cast<size_t>(k)), scratch(static_cast<size_t>(cuda::local_top_k_scratch(n)));
      cand.poison();
      const int64_t id_begin = 12345;
      cuda::launch_local_top_k(logits.get(), n, id_begin, k, cand.get(), scratch.get(), int64_t(scratch.size()),
                               nullptr);
      std::vector<float> cl(k);
      std::vector<int32_t> ci(k);
      cpu::local_top_k(row.data(), n, id_begin, k, cl.data(), ci.data());
      const auto got = cand.download();
      for (int j = 0; j < k; ++j)
        ASSERT_EQ(candidate_id(got[j]), ci[j]) << "slot " << j << ", n " << n << " k " << k << " dist " << dist;
    }
  }
}

}  // namespace
}  // namespace gf::test
