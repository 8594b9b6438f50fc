#!/usr/bin/env python3
"""Checks the test tools themselves: make_tiny_llama's checkpoints are well formed and numpy_ref behaves
like a causal Llama (prefix-consistent, RoPE relative, logits spread enough that argmax is no coin toss).

  selfcheck.py --work DIR
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import numpy_ref  # noqa: E402
from golden_test import QUANT_BOUND  # noqa: E402

MAKE = os.path.join(HERE, "..", "tools", "make_tiny_llama.py")


def check(cond, msg):
    if not cond:
        print("FAIL: " + msg)
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    from tokenizers import Tokenizer
    rng = np.random.default_rng(5)
    for variant in ("mha", "gqa", "tied", "llama3"):
        d = os.path.join(a.work, variant)
        subprocess.run([sys.executable, MAKE, "--out", d, "--variant", variant, "--shards", "2"], check=True)
        cfg, W = numpy_ref.load_hf(d)
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        check(tok.get_vocab_size() == cfg["vocab"], f"{variant}: tokenizer has {tok.get_vocab_size()} tokens, config {cfg['vocab']}")
        with open(os.path.join(d, "model.safetensors.index.json")) as f:
            n_tensors = len(json.load(f)["weight_map"])
        check(n_tensors == 9 * cfg["n_layers"] + 2 + (not cfg["tied"]), f"{variant}: {n_tensors} tensors in the index")
        ids = rng.integers(0, cfg["vocab"], size=20).tolist()
        full = numpy_ref.forward(cfg, W, ids)
        check(np.allclose(numpy_ref.forward(cfg, W, ids[:7]), full[:7], rtol=0, atol=1e-9), f"{variant}: not causal")
        check(full.std(axis=1).min() > 0.5, f"{variant}: logits nearly tied (row std {full.std(axis=1).min():.3f})")
        top2 = np.sort(full, axis=1)[:, -2:]
        print(f"{variant}: logits std {full.std():.2f}, smallest top-2 gap {np.min(top2[:, 1] - top2[:, 0]):.2e}")
        for fmt in ("int8", "int4g32"):
            err = numpy_ref.rel_err(numpy_ref.forward(cfg, numpy_ref.quantize_model(W, fmt), ids), full)
            check(err <= QUANT_BOUND[fmt] / 2, f"{variant} {fmt}: quantization error {err:.3f} > half its bound")
    # RoPE: attention depends on relative positions only, so q.k of rotated vectors is shift-invariant.
    cfg = dict(head_dim=32, theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    inv = numpy_ref.rope_inv_freq(cfg)
    q, k = rng.standard_normal((1, 1, 32)), rng.standard_normal((1, 1, 32))

    def dot(pq, pk):
        cs = lambda p: (np.cos(np.concatenate([p * inv, p * inv]))[None], np.sin(np.concatenate([p * inv, p * inv]))[None])
        return float(np.sum(numpy_ref.apply_rope(q, *cs(pq)) * numpy_ref.apply_rope(k, *cs(pk))))
    check(abs(dot(9, 4) - dot(105, 100)) < 1e-9, "rope: q.k depends on absolute position")
    check(inv[0] == 1.0 and abs(inv[-1] - (500000.0 ** (-30 / 32)) / 8) < 1e-18, "rope: llama3 scaling ends wrong")
    print("ok")


if __name__ == "__main__":
    main()
