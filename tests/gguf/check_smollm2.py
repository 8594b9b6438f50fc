#!/usr/bin/env python3
"""Checks the GGUF reader on the real SmolLM2-135M-Instruct Q4_1 file against independent references:
config from the metadata, embed and Q/K rows against gguf.quants.dequantize (+ a numpy un-permutation),
and our tokenizer.json (and, when built, our C++ tokenizer) against a `tokenizers` BPE built directly
from the GGUF vocab and merges. Exit 77 (ctest SKIP) when the model file is absent.
Usage: check_smollm2.py GGUF_DUMP MODEL.gguf WORK_DIR"""
import json
import os
import subprocess
import sys

import numpy as np

dump, model, work = sys.argv[1:4]
if not os.path.exists(model):
    print(f"SKIP: {model} is absent; run launch/fetch_smollm2.sh to fetch it")
    sys.exit(77)
import gguf  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, AddedToken  # noqa: E402

os.makedirs(work, exist_ok=True)
reader = gguf.GGUFReader(model)
field = lambda k: reader.fields[k].contents()  # noqa: E731
run = lambda *a: subprocess.run([dump, model, *a], check=True, capture_output=True, text=True).stdout  # noqa: E731

cfg = json.loads(run("config"))
want = {"dim": 576, "n_layers": 30, "n_heads": 9, "n_kv_heads": 3, "head_dim": 64, "hidden_dim": 1536,
        "vocab_size": 49152, "max_seq_len": 8192, "rope_theta": 100000.0, "tie_word_embeddings": True,
        "bos_id": 1, "eos_ids": [2]}
bad = {k: (cfg[k], v) for k, v in want.items() if cfg[k] != v}
assert not bad, f"config mismatch (got, want): {bad}"
print("config ok:", cfg["name"])

tensors = {t.name: t for t in reader.tensors}


def hf_rows(gguf_name, n_head):
    t = tensors[gguf_name]
    w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
    w = w.reshape(int(t.shape[1]), int(t.shape[0]))
    if n_head:  # invert convert_hf_to_gguf's permute: (head, hd/2, 2) -> (head, 2, hd/2)
        w = w.reshape(n_head, w.shape[0] // n_head // 2, 2, w.shape[1]).swapaxes(1, 2).reshape(w.shape)
    return w


for canonical, gguf_name, heads in [("embed", "token_embd.weight", 0), ("layers.0.wq", "blk.0.attn_q.weight", 9),
                                    ("layers.7.wk", "blk.7.attn_k.weight", 3), ("layers.29.w2", "blk.29.ffn_down.weight", 0)]:
    path = os.path.join(work, canonical + ".f32")
    run("rows", canonical, path)
    ref = hf_rows(gguf_name, heads)
    ours = np.fromfile(path, dtype=np.float32).reshape(ref.shape)
    err = np.max(np.abs(ours - ref) / (1e-6 + np.abs(ref)))
    assert np.allclose(ours, ref, rtol=1e-6, atol=1e-6), f"{canonical}: max rel err {err}"
    print(f"{canonical} {ref.shape} matches gguf.quants.dequantize")

# Independent tokenizer: the GGUF's vocab and merges fed to `tokenizers` directly, SmolLM2's pre-tokenizer.
tokens = field("tokenizer.ggml.tokens")
types = field("tokenizer.ggml.token_type")
merges = [tuple(m.split(" ")) for m in field("tokenizer.ggml.merges")]
ref = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
ref.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                            pre_tokenizers.ByteLevel(add_prefix_space=False)])
ref.decoder = decoders.ByteLevel()
ref.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types) if t == 3])
ours = Tokenizer.from_str(run("tokenizer"))
corpus = [
    "Hello, world! How are you today?",
    "The year 2024 had 366 days; π ≈ 3.14159.",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "   leading spaces, trailing tabs\t\t and\nnew\r\nlines",
    "Emoji 🦙🚀 and accents: café, naïve, Ærøskøbing; 日本語のテキスト; Привет мир",
    "def f(x):\n    return x**2 + 1  # comment",
    "don't won't they'll I'm we've she'd",
]
corpus_path = os.path.join(work, "corpus.txt")
with open(corpus_path, "w", encoding="utf-8") as f:
    f.write("\n".join(line.replace("\n", " ") for line in corpus) + "\n")
for text in corpus:
    a, b = ours.encode(text).ids, ref.encode(text).ids
    assert a == b, f"tokenizer.json ids differ on {text!r}:\n ours {a}\n ref  {b}"
    assert ours.decode(a, skip_special_tokens=False) == text, f"round trip failed on {text!r}"
print(f"tokenizer.json: {len(corpus)} texts encode as the reference BPE")

cpp = subprocess.run([dump, model, "encode", corpus_path], capture_output=True, text=True)
if cpp.returncode == 77:
    print("C++ tokenizer not built; checked tokenizer.json with `tokenizers` only")
else:
    assert cpp.returncode == 0, cpp.stderr
    lines = open(corpus_path, encoding="utf-8", newline="").read().split("\n")[:-1]
    for text, got in zip(lines, cpp.stdout.splitlines()):
        want_ids = ref.encode(text).ids
        assert [int(x) for x in got.split()] == want_ids, f"C++ ids differ on {text!r}:\n ours {got}\n ref  {want_ids}"
    print(f"C++ tokenizer: {len(lines)} lines encode as the reference BPE")
print("ok")
