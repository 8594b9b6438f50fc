#!/usr/bin/env python3
"""An independent numpy Llama forward pass (float64 math), the golden tests' reference.

Written from the model's math, not from our C++: RMSNorm, rotate-half RoPE (llama3 frequency scaling),
GQA causal attention, SiLU-gated MLP, tied or untied head. Weights come from
  * a Hugging Face checkpoint dir (safetensors), rounded to bf16 as the shard stores them, or
  * a shard directory (rank*.h5, read with h5py), every rank's matrices dequantized by their own
    "format" attribute exactly as core/weight_format.h defines and put back together into the whole model, so a comparison measures
    the kernels' error and not quantization's, or
  * the HF checkpoint quantized here (--quant), to estimate what quantization itself costs.

  numpy_ref.py --hf DIR --ids 1,2,3 [--shards SHARD_DIR | --quant int8|int4g32] [--out logits.npy]
"""
import argparse
import glob
import json
import os

import numpy as np


def bf16_bits_to_f64(u16):
    return (np.asarray(u16, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def round_bf16(a):
    """float -> nearest-even bf16 value (as float64); the shard's storage rounding."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    u = (u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return u.view(np.float32).astype(np.float64)


# ---------------------------------------------------------------- checkpoint reading

def read_safetensors(path):
    """{name: float32 array}. By hand because numpy has no bf16 dtype (safetensors' numpy API rejects it)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        base = 8 + n
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b = raw[base + t["data_offsets"][0]: base + t["data_offsets"][1]]
        if t["dtype"] == "BF16":
            a = (b.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif t["dtype"] == "F16":
            a = b.view(np.float16).astype(np.float32)
        elif t["dtype"] == "F32":
            a = b.view(np.float32).copy()
        else:
            raise ValueError(f"{path}: tensor {name}: dtype {t['dtype']} (expected BF16, F16 or F32)")
        out[name] = a.reshape(t["shape"])
    return out


def load_config(hf_dir):
    with open(os.path.join(hf_dir, "config.json")) as f:
        c = json.load(f)
    cfg = dict(dim=c["hidden_size"], n_layers=c["num_hidden_layers"], n_heads=c["num_attention_heads"],
               n_kv_heads=c.get("num_key_value_heads", c["num_attention_heads"]), hidden_dim=c["intermediate_size"],
               vocab=c["vocab_size"], eps=c.get("rms_norm_eps", 1e-5), theta=c.get("rope_theta", 10000.0),
               rope_scaling=c.get("rope_scaling"), tied=c.get("tie_word_embeddings", False))
    cfg["head_dim"] = c.get("head_dim") or cfg["dim"] // cfg["n_heads"]
    return cfg


def load_hf(hf_dir):
    """The model's weights, bf16-rounded, under canonical names (2-D weights are (out, in))."""
    cfg = load_config(hf_dir)
    t = {}
    for p in sorted(glob.glob(os.path.join(hf_dir, "*.safetensors"))):
        t.update(read_safetensors(p))
    r = lambda name: round_bf16(t[name])
    W = {"embed": r("model.embed_tokens.weight"), "norm": r("model.norm.weight"), "layers": []}
    W["lm_head"] = W["embed"] if cfg["tied"] else r("lm_head.weight")
    hf = {"attn_norm": "input_layernorm", "wq": "self_attn.q_proj", "wk": "self_attn.k_proj",
          "wv": "self_attn.v_proj", "wo": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
          "w1": "mlp.gate_proj", "w3": "mlp.up_proj", "w2": "mlp.down_proj"}
    for i in range(cfg["n_layers"]):
        W["layers"].append({k: r(f"model.layers.{i}.{v}.weight") for k, v in hf.items()})
    return cfg, W


# ---------------------------------------------------------------- weight formats (core/weight_format.h)

def dequant_group(g, cols):
    """One shard weight group -> float64 (rows, cols)."""
    fmt = g.attrs["format"]
    fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
    if fmt == "bf16":
        return bf16_bits_to_f64(g["w"][()])
    if fmt == "int8":  # w[r][c] = q[r][c] * scale[r]
        return g["q"][()].astype(np.float64) * bf16_bits_to_f64(g["scale"][()])[:, None]
    if fmt.startswith("int4"):  # nibbles: element 2j low, 2j+1 high; w = q * scale[g] + zero[g]
        packed = g["q"][()]
        q = np.empty((packed.shape[0], packed.shape[1] * 2), dtype=np.float64)
        q[:, 0::2], q[:, 1::2] = packed & 0xF, packed >> 4
        G = int(fmt[len("int4g"):])
        gi = np.arange(q.shape[1]) // G
        w = q * bf16_bits_to_f64(g["scale"][()])[:, gi] + bf16_bits_to_f64(g["zero"][()])[:, gi]
        return w[:, :cols]  # an odd cols leaves a spare high nibble
    raise ValueError(f"{g.file.filename}: {g.name}: format '{fmt}' (expected bf16, int8 or int4g<G>)")


def load_shards(cfg, shard_dir):
    """Every rank's dequantized matrices placed back into the whole model (see src/model/shard_io.h)."""
    import h5py
    files = sorted(glob.glob(os.path.join(shard_dir, "rank*.h5")), key=lambda p: int(p.split("rank")[-1][:-3]))
    if not files:
        raise FileNotFoundError(f"{shard_dir}: no rank*.h5")
    hd, d, L = cfg["head_dim"], cfg["dim"], cfg["n_layers"]
    z = lambda *s: np.full(s, np.nan)  # NaN: a slot no rank filled shows up in the logits
    W = {"layers": [dict(wq=z(cfg["n_heads"] * hd, d), wk=z(cfg["n_kv_heads"] * hd, d), wv=z(cfg["n_kv_heads"] * hd, d),
                         wo=z(d, cfg["n_heads"] * hd), w1=z(cfg["hidden_dim"], d), w3=z(cfg["hidden_dim"], d),
                         w2=z(d, cfg["hidden_dim"])) for _ in range(L)],
         "lm_head": z(cfg["vocab"], d)}
    attrs = []
    for p in files:
        with h5py.File(p, "r") as f:
            attrs.append({k: int(np.asarray(f.attrs[k]).reshape(-1)[0]) for k in ("head_begin", "n_heads_local", "kv_head_begin", "n_kv_heads_local",
                                                  "hidden_begin", "hidden_dim_local", "vocab_begin", "vocab_local")})
    for r, p in enumerate(files):
        a = attrs[r]
        # A rank's real hidden rows end where the next rank's begin; anything past that is group padding.
        h_end = attrs[r + 1]["hidden_begin"] if r + 1 < len(files) else cfg["hidden_dim"]
        h0, hn, hl = a["hidden_begin"], h_end - a["hidden_begin"], a["hidden_dim_local"]
        q0, qn, k0, kn = a["head_begin"] * hd, a["n_heads_local"] * hd, a["kv_head_begin"] * hd, a["n_kv_heads_local"] * hd
        with h5py.File(p, "r") as f:
            if r == 0:
                W["embed"] = bf16_bits_to_f64(f["embed"][()])
                W["norm"] = bf16_bits_to_f64(f["norm"][()])
            names = sorted(f["layers"].keys())
            if len(names) != L:
                raise ValueError(f"{p}: /layers has {len(names)} layers (expected {L})")
            for i, n in enumerate(names):
                g, lw = f["layers"][n], W["layers"][i]
                if r == 0:
                    lw["attn_norm"] = bf16_bits_to_f64(g["attn_norm"][()])
                    lw["ffn_norm"] = bf16_bits_to_f64(g["ffn_norm"][()])
                qkv = dequant_group(g["wqkv"], d)
                lw["wq"][q0:q0 + qn] = qkv[:qn]
                lw["wk"][k0:k0 + kn] = qkv[qn:qn + kn]
                lw["wv"][k0:k0 + kn] = qkv[qn + kn:qn + 2 * kn]
                lw["wo"][:, q0:q0 + qn] = dequant_group(g["wo"], qn)
                w13 = dequant_group(g["w13"], d)
                lw["w1"][h0:h0 + hn] = w13[:hn]
                lw["w3"][h0:h0 + hn] = w13[hl:hl + hn]
                lw["w2"][:, h0:h0 + hn] = dequant_group(g["w2"], hl)[:, :hn]
            v0, vn = a["vocab_begin"], min(a["vocab_local"], cfg["vocab"] - a["vocab_begin"])
            if vn > 0:
                W["lm_head"][v0:v0 + vn] = dequant_group(f["lm_head"], d)[:vn]
    return W


def quantize(w, fmt):
    """This script's own quantizer (int8 absmax per row; int4 min/max per group), dequantized, for bounds."""
    if fmt == "int8":
        s = round_bf16(np.abs(w).max(axis=1) / 127.0)
        s[s == 0] = 1.0
        return np.clip(np.round(w / s[:, None]), -127, 127) * s[:, None]
    G = int(fmt[len("int4g"):])
    out = np.empty_like(w)
    for c0 in range(0, w.shape[1], G):
        b = w[:, c0:c0 + G]
        lo, hi = b.min(axis=1, keepdims=True), b.max(axis=1, keepdims=True)
        s = round_bf16(np.maximum(hi - lo, 1e-12) / 15.0)
        zp = round_bf16(lo)
        out[:, c0:c0 + G] = np.clip(np.round((b - zp) / s), 0, 15) * s + zp
    return out


def quantize_model(W, fmt):
    Q = dict(W, layers=[{k: (quantize(v, fmt) if v.ndim == 2 else v) for k, v in l.items()} for l in W["layers"]])
    # The LM head as gptfast-shard keeps it (core/weight_format.h lm_head_format): int8 in int4 sets.
    Q["lm_head"] = quantize(W["lm_head"], "int8" if fmt.startswith("int4") else fmt)
    return Q


# ---------------------------------------------------------------- the model

def rope_inv_freq(cfg):
    hd = cfg["head_dim"]
    inv = 1.0 / cfg["theta"] ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    rs = cfg["rope_scaling"]
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        # Long wavelengths slowed by `factor`, short ones kept, a linear blend between.
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        orig = rs["original_max_position_embeddings"]
        wavelen = 2 * np.pi / inv
        smooth = np.clip((orig / wavelen - lo) / (hi - lo), 0.0, 1.0)
        inv = np.where(wavelen > orig / lo, inv / factor,
                       np.where(wavelen < orig / hi, inv, (1 - smooth) * inv / factor + smooth * inv))
    return inv


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def apply_rope(x, cos, sin):
    """x (T, heads, hd): rotate-half form, pairs (i, i + hd/2)."""
    h = x.shape[-1] // 2
    rot = np.concatenate([-x[..., h:], x[..., :h]], axis=-1)
    return x * cos[:, None, :] + rot * sin[:, None, :]


def forward(cfg, W, ids):
    """Logits (T, vocab) for every position of the token-id sequence `ids`."""
    ids = np.asarray(ids, dtype=np.int64)
    T, hd, nh, nkv = len(ids), cfg["head_dim"], cfg["n_heads"], cfg["n_kv_heads"]
    ang = np.arange(T, dtype=np.float64)[:, None] * rope_inv_freq(cfg)[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], 1)), np.sin(np.concatenate([ang, ang], 1))
    causal = np.triu(np.full((T, T), -np.inf), k=1)
    x = W["embed"][ids]
    for l in W["layers"]:
        h = rmsnorm(x, l["attn_norm"], cfg["eps"])
        q = apply_rope((h @ l["wq"].T).reshape(T, nh, hd), cos, sin)
        k = apply_rope((h @ l["wk"].T).reshape(T, nkv, hd), cos, sin)
        v = (h @ l["wv"].T).reshape(T, nkv, hd)
        rep = nh // nkv  # q head j reads kv head j // rep
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + causal
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", p, v).reshape(T, nh * hd)
        x = x + o @ l["wo"].T
        h = rmsnorm(x, l["ffn_norm"], cfg["eps"])
        g = h @ l["w1"].T
        x = x + (g / (1 + np.exp(-g)) * (h @ l["w3"].T)) @ l["w2"].T
    return rmsnorm(x, W["norm"], cfg["eps"]) @ W["lm_head"].T


def rel_err(a, ref):
    """The golden tests' metric: max|a - ref| / max|ref| over the whole array (scale-free, one number)."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - ref)) / np.max(np.abs(ref)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf", required=True, help="Hugging Face checkpoint dir (config and bf16-rounded weights)")
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--shards", help="take the weights from this shard dir (dequantized) instead")
    ap.add_argument("--quant", help="quantize the HF weights here: int8 | int4g32 | int4g64 | int4g128")
    ap.add_argument("--out", help="write the float32 logits (T, vocab) here (.npy)")
    a = ap.parse_args()
    cfg, W = load_hf(a.hf)
    ids = [int(t) for t in a.ids.split(",")]
    ref = forward(cfg, W, ids)
    if a.shards:
        W = load_shards(cfg, a.shards)
    elif a.quant:
        W = quantize_model(W, a.quant)
    logits = forward(cfg, W, ids)
    if a.shards or a.quant:
        print(f"rel err vs bf16 reference: {rel_err(logits, ref):.3e}")
    print("argmax:", logits.argmax(-1).tolist())
    if a.out:
        np.save(a.out, logits.astype(np.float32))


if __name__ == "__main__":
    main()
