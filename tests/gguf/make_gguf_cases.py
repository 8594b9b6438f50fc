#!/usr/bin/env python3
"""Writes the GGUF test inputs into OUT_DIR (reference data for tests/gguf/gguf_test.cpp):
  quants.gguf + quants.f32   every supported type; expected floats from gguf.quants.dequantize
  tiny.gguf + tiny_hf.f32    a 2-layer llama (F32, GQA) written as convert_hf_to_gguf does (Q/K rows
                             permuted); tiny_hf.f32 holds wq|wk of layer 0 in Hugging Face order
  malformed/NAME.gguf        tiny.gguf with one field corrupted; NAME.field: text the error must name
"""
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

rng = np.random.default_rng(1234)
out = sys.argv[1]
os.makedirs(os.path.join(out, "malformed"), exist_ok=True)


# ---- quants.gguf: one tensor per type, random values (never zeros) ----
def k_blocks(qtype, rows, blocks):
    """Random K-quant blocks (gguf cannot quantize them): random bytes, finite fp16 scales."""
    size = gguf.GGML_QUANT_SIZES[qtype][1]
    raw = rng.integers(0, 256, size=(rows, blocks, size), dtype=np.uint8)
    d = rng.uniform(0.001, 0.05, size=(rows, blocks)).astype(np.float16).view(np.uint8).reshape(rows, blocks, 2)
    m = rng.uniform(0.001, 0.05, size=(rows, blocks)).astype(np.float16).view(np.uint8).reshape(rows, blocks, 2)
    if qtype == Q.Q6_K:
        raw[:, :, 208:210] = d
    else:
        raw[:, :, 0:2], raw[:, :, 2:4] = d, m
    return raw.reshape(rows, blocks * size)


w = gguf.GGUFWriter(os.path.join(out, "quants.gguf"), "llama")
expected = []
for qtype in [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q5_K, Q.Q6_K]:
    rows, cols = 3, 512
    if qtype in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
        data = k_blocks(qtype, rows, cols // 256)
    else:
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        data = x if qtype == Q.F32 else gguf.quants.quantize(x, qtype)
    w.add_tensor(qtype.name, data, raw_dtype=qtype)
    expected.append(gguf.quants.dequantize(data, qtype).astype(np.float32).reshape(-1))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
np.concatenate(expected).tofile(os.path.join(out, "quants.f32"))

# ---- tiny.gguf: a llama model written field by field, so the corpus can corrupt each field ----
DIM, HEADS, KV_HEADS, HIDDEN, LAYERS = 64, 4, 2, 128, 2
HD = DIM // HEADS
tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
tokens += ["ab", "abc", "Ġa"]
merges = ["a b", "ab c", "Ġ a"]
VOCAB = len(tokens)


def permute(w, n_head):  # convert_hf_to_gguf's LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b


KV = []  # (key, type id, payload bytes) in file order


def kv(key, vtype, payload):
    KV.append((key, vtype, payload))


kv("general.architecture", 8, s("llama"))
kv("general.name", 8, s("Tiny Llama"))
kv("general.alignment", 4, struct.pack("<I", 32))
for key, val in [("block_count", LAYERS), ("context_length", 256), ("embedding_length", DIM),
                 ("feed_forward_length", HIDDEN), ("attention.head_count", HEADS),
                 ("attention.head_count_kv", KV_HEADS), ("rope.dimension_count", HD)]:
    kv("llama." + key, 4, struct.pack("<I", val))
kv("llama.rope.freq_base", 6, struct.pack("<f", 100000.0))
kv("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5))
kv("tokenizer.ggml.model", 8, s("gpt2"))
kv("tokenizer.ggml.pre", 8, s("smollm"))
kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, VOCAB) + b"".join(s(t) for t in tokens))
kv("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, VOCAB) +
   b"".join(struct.pack("<i", 3 if i < 3 else 1) for i in range(VOCAB)))
kv("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, len(merges)) + b"".join(s(m) for m in merges))
kv("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1))
kv("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2))
kv("tokenizer.chat_template", 8, s("{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}"))

hf = {}  # name -> HF-orientation fp32 array (rows, cols)
tensors = [("token_embd.weight", (VOCAB, DIM)), ("output_norm.weight", (DIM,))]
for i in range(LAYERS):
    b = f"blk.{i}."
    tensors += [(b + "attn_norm.weight", (DIM,)), (b + "attn_q.weight", (HEADS * HD, DIM)),
                (b + "attn_k.weight", (KV_HEADS * HD, DIM)), (b + "attn_v.weight", (KV_HEADS * HD, DIM)),
                (b + "attn_output.weight", (DIM, HEADS * HD)), (b + "ffn_norm.weight", (DIM,)),
                (b + "ffn_gate.weight", (HIDDEN, DIM)), (b + "ffn_up.weight", (HIDDEN, DIM)),
                (b + "ffn_down.weight", (DIM, HIDDEN))]
data = []
for name, shape in tensors:
    x = rng.standard_normal(shape).astype(np.float32)
    hf[name] = x
    if name.endswith("attn_q.weight"):
        x = permute(x, HEADS)
    elif name.endswith("attn_k.weight"):
        x = permute(x, KV_HEADS)
    data.append(np.ascontiguousarray(x).tobytes())
np.concatenate([hf["blk.0.attn_q.weight"].reshape(-1), hf["blk.0.attn_k.weight"].reshape(-1)]).tofile(
    os.path.join(out, "tiny_hf.f32"))


def build(kvs=None, infos=None, n_kv=None, n_tensors=None, version=3, magic=b"GGUF", align=32, blobs=None):
    """Serializes the tiny model; each argument overrides one section so the corpus can corrupt it."""
    kvs = KV if kvs is None else kvs
    blobs = data if blobs is None else blobs
    if infos is None:
        infos, off = [], 0
        for (name, shape), blob in zip(tensors, blobs):
            infos.append((name, len(shape), list(reversed(shape)), 0, off))
            off += (len(blob) + align - 1) // align * align
    head = magic + struct.pack("<IQQ", version, len(infos) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = b"".join(s(k) + struct.pack("<I", t) + p for k, t, p in kvs)
    body += b"".join(s(n) + struct.pack("<I", nd) + b"".join(struct.pack("<q", e) for e in ne) +
                     struct.pack("<IQ", ty, off) for n, nd, ne, ty, off in infos)
    buf = head + body
    buf += b"\0" * ((-len(buf)) % align)
    for blob in blobs:
        buf += blob + b"\0" * ((-len(blob)) % align)
    return buf


good = build()
open(os.path.join(out, "tiny.gguf"), "wb").write(good)


def good_infos():
    infos, off = [], 0
    for (name, shape), blob in zip(tensors, data):
        infos.append([name, len(shape), list(reversed(shape)), 0, off])
        off += (len(blob) + 31) // 32 * 32
    return infos


def replace_kv(key, vtype, payload):
    return [(k, vtype, payload) if k == key else (k, t, p) for k, t, p in KV]


def with_info(i, field, value, field2=None, value2=None):
    infos = good_infos()
    infos[i][field] = value
    if field2 is not None:
        infos[i][field2] = value2
    return [tuple(x) for x in infos]


cases = {  # name -> (bytes, text the one-line error must contain)
    "empty": (b"", "magic"),
    "truncated_header": (good[:10], "tensor_count"),
    "bad_magic": (b"GGUX" + good[4:], "magic"),
    "version_1": (build(version=1), "version"),
    "version_99": (build(version=99), "version"),
    "n_kv_2p63": (build(n_kv=1 << 63), "kv_count"),
    "n_tensors_2p63": (build(n_tensors=1 << 63), "tensor_count"),
    "key_len_past_eof": (good[:24] + struct.pack("<Q", len(good)) + good[32:], "key of kv 0"),
    "string_len_over_1gib": (build(kvs=replace_kv("general.name", 8, struct.pack("<Q", 1 << 40) + b"x")), "general.name"),
    "array_len_huge": (build(kvs=replace_kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 1 << 62))),
                       "tokenizer.ggml.tokens"),
    "value_type_99": (build(kvs=replace_kv("general.name", 99, b"")), "general.name"),
    "duplicate_key": (build(kvs=KV + [KV[1]]), "general.name"),
    "alignment_0": (build(kvs=replace_kv("general.alignment", 4, struct.pack("<I", 0))), "general.alignment"),
    "alignment_13": (build(kvs=replace_kv("general.alignment", 4, struct.pack("<I", 13))), "general.alignment"),
    "n_dims_5": (build(infos=with_info(0, 1, 5)), "n_dims"),
    "ne_int64_max": (build(infos=with_info(0, 2, [(1 << 63) - 1, 2])), "overflows"),
    "ne_negative": (build(infos=with_info(1, 2, [-64])), "ne[0]"),
    "type_999": (build(infos=with_info(0, 3, 999)), "type 999"),
    "ne0_not_block_multiple": (build(infos=with_info(1, 2, [48], 3, 8)), "block size"),  # Q8_0 blocks are 32
    "offsets_out_of_order": (build(infos=[tuple(x) for x in
                                          [good_infos()[1][:4] + [good_infos()[0][4]],
                                           good_infos()[0][:4] + [good_infos()[1][4]]] + good_infos()[2:]]),
                             "offset"),
    "offset_gap": (build(infos=with_info(2, 4, good_infos()[2][4] + 32)), "offset"),
    "data_past_eof": (good[:-64], "past the end"),
    "name_control_char": (build(infos=with_info(0, 0, "token\nembd")), "control character"),
    "duplicate_tensor": (build(infos=with_info(1, 0, "token_embd.weight")), "appears twice"),
    "bos_id_past_vocab": (build(kvs=replace_kv("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", VOCAB))),
                          "bos_token_id"),
    "missing_tensor": (build(infos=[tuple(x) for x in good_infos()[:-1]], blobs=data[:-1]), "ffn_down"),
    "wrong_shape": (build(infos=with_info(1, 1, 2, 2, [DIM // 2, 2])), "output_norm.weight"),
    "heads_not_divisible": (build(kvs=replace_kv("llama.attention.head_count_kv", 4, struct.pack("<I", 3))),
                            "num_key_value_heads"),
    "tokenizer_pre_unknown": (build(kvs=replace_kv("tokenizer.ggml.pre", 8, s("unknown-pre"))), "tokenizer.ggml.pre"),
}
for name, (buf, field) in cases.items():
    open(os.path.join(out, "malformed", name + ".gguf"), "wb").write(buf)
    open(os.path.join(out, "malformed", name + ".field"), "w").write(field)
print(f"wrote quants.gguf, tiny.gguf and {len(cases)} malformed files to {out}")
