// The Llama forward pass, written once. Each backend supplies an Ops type (CpuOps: fp32 on the
// host; CudaOps: bf16 on the device) and instantiates this template with it.
//
// Ops provides:
//   cfg(), slice()                 ModelConfig and this rank's RankSlice
//   bufs()                         work buffers (pointers of the backend's activation type Act):
//                                  x, xn, d [T, dim]; qkv [T, qkv width]; att [T, n_heads*head_dim];
//                                  h13 [T, 2*hidden]; h [T, hidden]; logits [T, vocab_local];
//                                  ids, pos (const int32_t*, [T], in the backend's memory)
//   layer(l)                       .attn_norm, .ffn_norm (norm weights), .wqkv, .wo, .w13, .w2 (QWeightView)
//   final_norm(), lm_head()
//   embed, rmsnorm, add_rmsnorm, matmul, rope_kv_write, attention, silu_mul, allreduce
//   with the semantics of kernels/cpu/cpu_ops.h (rope_kv_write = rope on the q and k heads of each
//   QKV row, then kv_write of its k and v heads; it and attention take the layer index).
#pragma once
#include <cstdint>

namespace gf {

template <class Ops>
void llama_forward(Ops& o, int M) {
  const auto& c = o.cfg();
  const auto& s = o.slice();
  const int64_t q_w = s.n_heads * c.head_dim, kv_w = s.n_kv_heads * c.head_dim;
  const int64_t qkv_w = q_w + 2 * kv_w;
  auto& b = o.bufs();

  o.embed(b.ids, M, b.x);
  o.rmsnorm(b.x, o.layer(0).attn_norm, M, b.xn);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const auto& L = o.layer(l);
    o.matmul(b.xn, M, L.wqkv, b.qkv);
    o.rope_kv_write(b.qkv, M, qkv_w, b.pos, l);  // q, k heads rotated in place; k, v into layer l's cache
    o.attention(b.qkv, M, qkv_w, b.pos, l, b.att);
    o.matmul(b.att, M, L.wo, b.d);
    o.allreduce(b.d, M * c.dim);  // row-split wo: partial sums
    o.add_rmsnorm(b.x, b.d, L.ffn_norm, M, b.xn);
    o.matmul(b.xn, M, L.w13, b.h13);
    o.silu_mul(b.h13, M, s.hidden_dim, b.h);
    o.matmul(b.h, M, L.w2, b.d);
    o.allreduce(b.d, M * c.dim);  // row-split w2: partial sums
    const auto& next_norm = l + 1 < c.n_layers ? o.layer(l + 1).attn_norm : o.final_norm();
    o.add_rmsnorm(b.x, b.d, next_norm, M, b.xn);
  }
  o.matmul(b.xn, M, o.lm_head(), b.logits);  // this rank's vocab rows
}

}  // namespace gf
