#!/usr/bin/env python3
"""Seed corpora for the libFuzzer targets (small valid inputs, plus a few near misses).

  make_seeds.py OUTDIR        OUTDIR/<target>/ for each target in tests/fuzz/
  make_seeds.py --fixed DIR   the two small tokenizers fuzz_tokenizer_text encodes with (checked in
                              as tests/fuzz/data/; rerun only to change them)
"""
import argparse
import json
import os
import struct

import numpy as np

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
CORPUS = ["The quick brown fox jumps over the lazy dog.", "Hello world! 1234 + 5678 = 6912", "Café naïve 東京 🚀",
          "def f(x):\n    return x * 2\n", "the then there these those this that"]


def tokenizers(small):
    """A byte-level BPE (Llama 3 split, specials, BOS template) and a SentencePiece-style BPE (byte fallback)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    bl = Tokenizer(models.BPE())
    bl.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    bl.decoder = decoders.ByteLevel()
    bl.train_from_iterator(CORPUS * 3, trainers.BpeTrainer(vocab_size=256 + (20 if small else 60), show_progress=False,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bl.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in ["<|begin_of_text|>", "<|eot_id|>"]])
    bos = bl.token_to_id("<|begin_of_text|>")
    bl.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])

    specials = ["<unk>", "<s>", "</s>"]
    base = Tokenizer(models.BPE())
    base.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    base.train_from_iterator(CORPUS * 3, trainers.BpeTrainer(vocab_size=120 if small else 200, show_progress=False))
    trained = json.loads(base.to_str())["model"]
    vocab = {t: i for i, t in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)])}
    for t, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(t, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    sp = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    sp.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    sp.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    sp.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
    sp.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return {"bytelevel": bl.to_str(), "sentencepiece": sp.to_str()}


def safetensors_file(tensors, metadata=True):
    """tensors: [(name, dtype, shape)], random data (never zeros), offsets in order."""
    rng = np.random.default_rng(len(tensors))
    header, blobs, off = ({"__metadata__": {"format": "pt"}} if metadata else {}), [], 0
    for name, dtype, shape in tensors:
        x = rng.uniform(0.5, 2.0, size=shape).astype(np.float32)
        b = x.tobytes() if dtype == "F32" else x.astype(np.float16).tobytes() if dtype == "F16" else \
            (x.view(np.uint32) >> 16).astype(np.uint16).tobytes()
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def gguf_file(path, sp):
    """A one-layer llama (dim 32, Q8_0/F16/F32 tensors) with a gpt2 or llama (SentencePiece) tokenizer."""
    import gguf
    from gguf import GGMLQuantizationType as Q
    rng = np.random.default_rng(7)
    dim, heads, kv_heads, hidden = 32, 2, 1, 32
    hd = dim // heads
    if sp:
        tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["▁", "a", "b", "▁a", "ab"]
    else:
        tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [chr(c) for c in range(ord("a"), ord("h"))] + ["ab", "Ġ", "Ġa"]
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(dim)
    w.add_feed_forward_length(hidden)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(hd)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("llama" if sp else "gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if i < 3 else 6 if sp and i < 259 else 1 for i in range(len(tokens))])
    if sp:
        w.add_token_scores([-float(i) for i in range(len(tokens))])
        w.add_unk_token_id(0)
    else:
        w.add_tokenizer_pre("smollm")
        w.add_token_merges(["a b", "Ġ a"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    shapes = [("token_embd.weight", (len(tokens), dim)), ("output_norm.weight", (dim,)),
              ("blk.0.attn_norm.weight", (dim,)), ("blk.0.attn_q.weight", (heads * hd, dim)),
              ("blk.0.attn_k.weight", (kv_heads * hd, dim)), ("blk.0.attn_v.weight", (kv_heads * hd, dim)),
              ("blk.0.attn_output.weight", (dim, heads * hd)), ("blk.0.ffn_norm.weight", (dim,)),
              ("blk.0.ffn_gate.weight", (hidden, dim)), ("blk.0.ffn_up.weight", (hidden, dim)),
              ("blk.0.ffn_down.weight", (dim, hidden))]
    for i, (name, shape) in enumerate(shapes):
        x = rng.uniform(-1, 1, size=shape).astype(np.float32)
        if len(shape) == 1:
            w.add_tensor(name, x)
        elif i % 2:
            w.add_tensor(name, gguf.quants.quantize(x, Q.Q8_0), raw_dtype=Q.Q8_0)
        else:
            w.add_tensor(name, x.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--fixed")
    a = ap.parse_args()
    if a.fixed:
        for name, text in tokenizers(small=True).items():
            write(a.fixed, name + ".json", json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":")))
        return
    out = a.outdir
    st = os.path.join(out, "fuzz_safetensors")
    write(st, "two.st", safetensors_file([("a", "BF16", (2, 3)), ("b", "F32", (4,))]))
    write(st, "f16.st", safetensors_file([("model.norm.weight", "F16", (5,)), ("s", "F32", ())], metadata=False))
    write(st, "empty_tensor.st", safetensors_file([("e", "F32", (0, 4)), ("x", "BF16", (1,))]))
    write(st, "no_tensors.st", safetensors_file([]))
    write(st, "trailing.st", safetensors_file([("a", "F32", (2,))]) + b"\0")

    for sp in (False, True):
        os.makedirs(os.path.join(out, "fuzz_gguf"), exist_ok=True)
        gguf_file(os.path.join(out, "fuzz_gguf", "llama_sp.gguf" if sp else "llama_gpt2.gguf"), sp)

    for name, text in tokenizers(small=False).items():
        write(os.path.join(out, "fuzz_tokenizer_json"), name + ".json", text)
    for i, text in enumerate(CORPUS + ["<|begin_of_text|>x<|eot_id|>", "<s> a</s>", "  \t\r\n ", "x" * 40]):
        for sel in range(4):  # byte 0 picks the tokenizer and add_special_tokens
            write(os.path.join(out, "fuzz_tokenizer_text"), f"t{i}_{sel}", bytes([sel]) + text.encode())

    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
           "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 32, "vocab_size": 4,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True, "bos_token_id": 1,
           "eos_token_id": [2, 3], "hidden_act": "silu"}
    llama3 = dict(cfg, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
    index = {"metadata": {"total_size": 96}, "weight_map": {"model.embed_tokens.weight": "a.safetensors",
                                                           "model.norm.weight": "b.safetensors"}}
    hf = os.path.join(out, "fuzz_hf_checkpoint")  # byte 0 picks the file (fuzz_hf_checkpoint.cpp)
    write(hf, "config", b"\0" + json.dumps(cfg).encode())
    write(hf, "config_llama3", b"\0" + json.dumps(llama3).encode())
    write(hf, "index", b"\1" + json.dumps(index).encode())
    write(hf, "generation_config", b"\2" + json.dumps({"bos_token_id": 1, "eos_token_id": [2]}).encode())
    write(hf, "tokenizer_config", b"\3" + json.dumps({"chat_template": [{"name": "default", "template": "x"}]}).encode())


if __name__ == "__main__":
    main()
