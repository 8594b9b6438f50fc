#!/usr/bin/env python3
"""Checks numpy_ref against transformers' LlamaForCausalLM on the tiny checkpoints (needs torch + transformers;
run by hand on a machine that has them, e.g. the GPU box):  python3 tests/golden/check_ref_vs_transformers.py

Every variant is made in bf16 and in f32 (and one sharded); transformers runs in float32 on weights rounded
to bf16 (what our shards hold), numpy_ref in float64. Pass: max relative error (max|a-b| / max|b|) <= 1e-5
and identical argmax at every position.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers import LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import numpy_ref  # noqa: E402

MAKE = os.path.join(HERE, "..", "tools", "make_tiny_llama.py")


def check(tmp, variant, dtype, shards, ids):
    d = os.path.join(tmp, f"{variant}-{dtype}-{shards}")
    subprocess.run([sys.executable, MAKE, "--out", d, "--variant", variant, "--dtype", dtype,
                    "--shards", str(shards), "--seed", "7"], check=True)
    model = LlamaForCausalLM.from_pretrained(d, torch_dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))  # the shard's rounding
        hf = model(torch.tensor([ids])).logits[0].double().numpy()
    cfg, W = numpy_ref.load_hf(d)
    ref = numpy_ref.forward(cfg, W, ids)
    err = numpy_ref.rel_err(hf, ref)
    same = bool((hf.argmax(-1) == ref.argmax(-1)).all())
    ok = err <= 1e-5 and same
    print(f"{'ok  ' if ok else 'FAIL'} {variant:7s} {dtype:4s} shards={shards} rel_err={err:.2e} argmax_equal={same}")
    return ok


def main():
    rng = np.random.default_rng(3)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("mha", "gqa", "tied", "llama3"):
            ids = rng.integers(0, 256, size=40).tolist()  # 40 > llama3 variant's scaled wavelengths' knee
            for dtype, shards in (("bf16", 1), ("f32", 1), ("f16", 2)):
                ok &= check(tmp, variant, dtype, shards, ids)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
