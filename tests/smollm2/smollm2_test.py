#!/usr/bin/env python3
"""Real-model tests on SmolLM2-135M-Instruct (the Q4_1 GGUF that launch/fetch_smollm2.sh fetches).

  smollm2_test.py make   --work DIR --gguf FILE --shard BIN                  (fixture: every shard set)
  smollm2_test.py greedy --work DIR --gguf FILE --tp BIN --mpirun CMD --format F
  smollm2_test.py logits --work DIR --gguf FILE --tp BIN --mpirun CMD
  smollm2_test.py ppl    --work DIR --gguf FILE --tp BIN --mpirun CMD --format F --text FILE
  smollm2_test.py resume --work DIR --gguf FILE --tp BIN --mpirun CMD

Every command exits 77 (ctest SKIP) when the GGUF file is absent.
  * make: shards tp=1 and tp=2 in bf16, int8, int4g32, int4g64, int4g128. tp=2 with g128 must be refused in
    one line naming the group size (3 kv heads of 64 put rank 1's attention columns at 192, not a multiple
    of 128), leaving no manifest.
  * greedy: 16 greedy tokens of 3 fixed prompts are identical at tp=1 and tp=2 (quantization runs once on
    whole rows before the split, so both hold the same weights; only the all-reduce's summation order
    differs). bf16 must also answer "Paris" to the first prompt: a real model, not noise.
  * logits: the bf16 shard's logits (tp=1 and tp=2) against numpy_ref.forward over the GGUF's tensors
    dequantized by the `gguf` package, llama.cpp's Q/K row permutation undone here, then rounded to bf16
    as the shard stores them (checked bit for bit against the shard first). Metric max|a-b|/max|ref|;
    fp32 activations against float64 measure 1.5e-6 over 30 layers (tp=1 and tp=2); the bound is 1e-5.
  * ppl: perplexity of the first PPL_BYTES bytes of --text (Debian base-files' GPL-3; context 512,
    stride 256) at tp=1 within PPL_BOUND of bf16's (bf16 itself within 1% of the value pinned below, and
    its tp=2 run within 1e-4 of tp=1).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
import numpy_ref  # noqa: E402
from golden_test import fmt_flags  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from proc_tree import descendants  # noqa: E402

MODEL = "smollm2-135m"
FORMATS = ("bf16", "int8", "int4g32", "int4g64", "int4g128")
REFUSED = {(2, "int4g128")}  # (tp, format) gptfast-shard must refuse
PROMPTS = ["The capital of France is", "Once upon a time, there was a", "def fibonacci(n):"]
NEW_TOKENS = 16
LOGITS_PROMPT = "The quick brown fox jumps over the lazy dog. Tensor parallelism splits each layer across"
LOGITS_TOL = 1e-5
PPL_BYTES = 3000
# bf16 perplexity of GPL-3's first 3000 bytes (645 tokens scored), measured; bounds on |ppl / bf16 - 1|.
# Measured on this sample: int8 -0.54%, int4g32 -0.50%, int4g64 +64%, int4g128 +94%. On the whole GPL-3 int8
# is +0.43%; 645 tokens are too few to resolve the 0.5% target, so the gate here is 1%. int4g32 nearly
# reproduces the source: it is a Q4_1 file, whose 32-blocks the g32 groups align with, and int4 sets keep the
# LM head int8 (the GGUF's Q8_0 head requantized to int4 cost +2.1% here, +5.2% on the whole file), so its
# gate is int8's 1%, tight enough to catch an int4 head coming back. g64 and g128 requantize two or four
# Q4_1 grids into one (weight RMS error ~8-10% vs 0.4%): their bounds gate regressions.
PPL_BF16 = 19.03
PPL_BOUND = {"bf16": 0.01, "int8": 0.01, "int4g32": 0.01, "int4g64": 1.0, "int4g128": 1.5}


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def run(cmd, timeout=180, check=True):
    print("+ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        fail(f"exit {p.returncode}: {' '.join(cmd)}\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}")
    return p


def store(a):
    return os.path.join(a.work, "store")


def gptfast(a, tp, fmt, extra):
    """One mpirun of gptfast-tp with --json; returns its JSON records."""
    out = run(a.mpirun.split() + ["-np", str(tp), a.tp, "--model", MODEL, "--model-dir", store(a), "--threads", "1",
                                  "--json"] + fmt_flags(fmt) + extra).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


# ---------------------------------------------------------------- make

def cmd_make(a):
    for tp in (1, 2):
        for fmt in FORMATS:
            cmd = [a.shard, "--from", a.gguf, "--model", MODEL, "--model-dir", store(a), "--tp", str(tp), "--force"]
            p = run(cmd + fmt_flags(fmt), check=(tp, fmt) not in REFUSED)
            manifest = os.path.join(store(a), MODEL, f"tp{tp}-{fmt}", "manifest.json")
            if (tp, fmt) in REFUSED:
                lines = [l for l in p.stderr.splitlines() if l.strip()]
                if p.returncode == 0 or len(lines) != 1 or "group size" not in lines[0]:
                    fail(f"tp={tp} {fmt}: expected a one-line refusal naming the group size, got exit "
                         f"{p.returncode}:\n{p.stderr[-2000:]}")
                if os.path.exists(manifest):
                    fail(f"tp={tp} {fmt}: refused, yet {manifest} exists")
                print(f"tp={tp} {fmt}: refused as expected: {lines[0]}")
            elif not os.path.exists(manifest):
                fail(f"{manifest}: missing after gptfast-shard")


# ---------------------------------------------------------------- greedy

def cmd_greedy(a):
    prompts = os.path.join(a.work, "prompts.txt")
    with open(prompts + ".tmp", "w") as f:
        f.write("\n".join(PROMPTS) + "\n")
    os.replace(prompts + ".tmp", prompts)
    by_tp = {}
    for tp in (1, 2):
        if (tp, a.format) in REFUSED:
            continue
        recs = gptfast(a, tp, a.format, ["--prompt-file", prompts, "--greedy", "--max-new-tokens", str(NEW_TOKENS)])
        if len(recs) != len(PROMPTS):
            fail(f"tp={tp} {a.format}: {len(recs)} JSON records (expected {len(PROMPTS)})")
        by_tp[tp] = sorted(recs, key=lambda r: r["prompt_index"])
        for r in by_tp[tp]:
            if len(r["ids"]) != NEW_TOKENS:
                fail(f"tp={tp} {a.format}: prompt {r['prompt_index']} generated {len(r['ids'])} ids "
                     f"(expected {NEW_TOKENS}, stop '{r.get('stop')}')")
            print(f"tp={tp} {a.format} {PROMPTS[r['prompt_index']]!r} -> {r['text']!r}")
    if len(by_tp) == 2:
        for r1, r2 in zip(by_tp[1], by_tp[2]):
            if r1["prompt_ids"] != r2["prompt_ids"] or r1["ids"] != r2["ids"]:
                fail(f"{a.format}: prompt {PROMPTS[r1['prompt_index']]!r} differs between tp=1 and tp=2:\n"
                     f" tp=1 {r1['prompt_ids']} -> {r1['ids']}\n tp=2 {r2['prompt_ids']} -> {r2['ids']}")
        print(f"{a.format}: tp=1 and tp=2 identical on {len(PROMPTS)} prompts")
    if a.format == "bf16" and "Paris" not in by_tp[1][0]["text"]:
        fail(f"bf16: {PROMPTS[0]!r} continued as {by_tp[1][0]['text']!r} (expected it to name Paris)")


# ---------------------------------------------------------------- logits vs numpy

def gguf_model(path):
    """(numpy_ref cfg, weights) straight from the GGUF, every matrix float32 holding bf16-rounded values."""
    import gguf
    r = gguf.GGUFReader(path)
    kv = lambda k: r.fields[k].contents()  # noqa: E731
    nh, nkv, dim = kv("llama.attention.head_count"), kv("llama.attention.head_count_kv"), kv("llama.embedding_length")
    cfg = dict(dim=dim, n_layers=kv("llama.block_count"), n_heads=nh, n_kv_heads=nkv,
               hidden_dim=kv("llama.feed_forward_length"), vocab=len(kv("tokenizer.ggml.tokens")),
               eps=kv("llama.attention.layer_norm_rms_epsilon"), theta=kv("llama.rope.freq_base"),
               rope_scaling=None, head_dim=dim // nh)
    tensors = {t.name: t for t in r.tensors}
    cfg["tied"] = "output.weight" not in tensors

    def get(name, heads=0):
        t = tensors[name]
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(n) for n in reversed(t.shape)])  # GGUF lists ne[0] (the row length) first
        if heads:  # convert_hf_to_gguf stores rows as (head, hd/2, 2); HF order is (head, 2, hd/2)
            w = w.reshape(heads, w.shape[0] // heads // 2, 2, w.shape[1]).swapaxes(1, 2).reshape(w.shape)
        return numpy_ref.round_bf16(w).astype(np.float32)  # exact: bf16 values fit float32

    W = {"embed": get("token_embd.weight"), "norm": get("output_norm.weight"), "layers": []}
    W["lm_head"] = W["embed"] if cfg["tied"] else get("output.weight")
    names = {"attn_norm": ("attn_norm", 0), "wq": ("attn_q", nh), "wk": ("attn_k", nkv), "wv": ("attn_v", 0),
             "wo": ("attn_output", 0), "ffn_norm": ("ffn_norm", 0), "w1": ("ffn_gate", 0), "w3": ("ffn_up", 0),
             "w2": ("ffn_down", 0)}
    for i in range(cfg["n_layers"]):
        W["layers"].append({k: get(f"blk.{i}.{n}.weight", h) for k, (n, h) in names.items()})
    return cfg, W


def check_shard_weights(shard_dir, cfg, W):
    """The tp=1 bf16 shard holds exactly round_bf16(dequantized GGUF): the reference's weights are the run's."""
    import h5py
    d = cfg["dim"]
    with h5py.File(os.path.join(shard_dir, "rank0.h5"), "r") as f:
        pairs = [("embed", numpy_ref.bf16_bits_to_f64(f["embed"][()]), W["embed"])]
        for i in (0, cfg["n_layers"] - 1):
            g, l = f["layers"][sorted(f["layers"].keys())[i]], W["layers"][i]
            pairs.append((f"layer {i} wqkv", numpy_ref.dequant_group(g["wqkv"], d), np.concatenate([l["wq"], l["wk"], l["wv"]])))
            pairs.append((f"layer {i} w13", numpy_ref.dequant_group(g["w13"], d), np.concatenate([l["w1"], l["w3"]])))
            pairs.append((f"layer {i} w2", numpy_ref.dequant_group(g["w2"], cfg["hidden_dim"]), l["w2"]))
    for name, ours, ref in pairs:
        if ours.shape != ref.shape:
            fail(f"{shard_dir}: {name} shape {ours.shape} (expected {ref.shape})")
        n_bad = int(np.count_nonzero(ours != ref))
        if n_bad:
            fail(f"{shard_dir}: {name}: {n_bad} of {ref.size} weights differ from round_bf16(gguf dequantize)")
    print(f"bf16 shard weights equal round_bf16(gguf dequantize) bit for bit ({len(pairs)} tensors)")


def cmd_logits(a):
    cfg, W = gguf_model(a.gguf)
    check_shard_weights(os.path.join(store(a), MODEL, "tp1-bf16"), cfg, W)
    ref = None
    for tp in (1, 2):
        out = os.path.join(a.work, f"logits-tp{tp}.npy")
        if os.path.exists(out):
            os.remove(out)
        rec = gptfast(a, tp, "bf16", ["--prompt", LOGITS_PROMPT, "--greedy", "--max-new-tokens", "4", "--logits-out", out])
        if len(rec) != 1:
            fail(f"tp={tp}: {len(rec)} JSON records (expected 1)")
        seq = rec[0]["prompt_ids"] + rec[0]["ids"]
        logits = np.load(out).astype(np.float64).reshape(-1, np.load(out).shape[-1])[:, :cfg["vocab"]]
        if ref is None:
            ref = numpy_ref.forward(cfg, W, seq)
        if logits.shape[0] > ref.shape[0]:
            fail(f"tp={tp}: {logits.shape[0]} logits rows for a sequence of {ref.shape[0]} tokens")
        err = numpy_ref.rel_err(logits, ref[: logits.shape[0]])
        print(f"tp={tp} bf16: {logits.shape[0]} rows, rel_err {err:.3e} (bound {LOGITS_TOL:g}); "
              f"reference argmax {ref[len(rec[0]['prompt_ids']) - 1:].argmax(-1).tolist()[:4]} ids {rec[0]['ids']}")
        if not err <= LOGITS_TOL:
            fail(f"tp={tp} bf16 logits: relative error {err:.3e} > {LOGITS_TOL:g}")


# ---------------------------------------------------------------- resume (RELIABILITY 17)

RESUME_PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "The moon is",
                  "Water boils at", "My favourite colour is"]


def rank_pids(root):
    """gptfast-tp ranks below process `root`."""
    return [p for p in descendants(root) if b"gptfast-tp" in open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")[0]]


def cmd_resume(a):
    """SIGTERM to every rank mid-batch (as srun forwards it) leaves only whole records in --output; a torn
    last line (a SIGKILL mid-write) is dropped; the rerun writes each missing record once, equal to a clean run's."""
    prompts = os.path.join(a.work, "resume-prompts.txt")
    with open(prompts, "w") as f:
        f.write("\n".join(RESUME_PROMPTS) + "\n")
    cmd = a.mpirun.split() + ["-np", "2", a.tp, "--model", MODEL, "--model-dir", store(a), "--threads", "1",
                              "--prompt-file", prompts, "--greedy", "--max-new-tokens", "120", "--output"]
    clean, part = os.path.join(a.work, "resume-clean.jsonl"), os.path.join(a.work, "resume-part.jsonl")
    for f in (clean, part):
        if os.path.exists(f):
            os.remove(f)
    run(cmd + [clean])
    want = {(r["prompt_index"], r["sample"]): r["ids"] for r in map(json.loads, open(clean))}
    if len(want) != len(RESUME_PROMPTS):
        fail(f"clean run: {len(want)} records, expected {len(RESUME_PROMPTS)}")

    proc = subprocess.Popen(cmd + [part], stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < 60 and proc.poll() is None:
        if os.path.exists(part) and open(part).read().count("\n") >= 2:
            for pid in rank_pids(proc.pid):
                os.kill(pid, signal.SIGTERM)
            break
        time.sleep(0.02)
    try:
        err = proc.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        fail("SIGTERM mid-batch: the job did not end within 60 s")
    text = open(part).read()
    lines = text.splitlines()
    print(f"SIGTERM mid-batch: rc={proc.returncode}, {len(lines)} records; stderr {err.strip()[-300:]!r}")
    if proc.returncode == 0 or not text.endswith("\n") or not 2 <= len(lines) < len(RESUME_PROMPTS):
        fail(f"SIGTERM mid-batch: expected a non-zero exit and 2..{len(RESUME_PROMPTS) - 1} whole records")
    for l in lines:
        r = json.loads(l)  # a torn record would not parse
        if r["ids"] != want[(r["prompt_index"], r["sample"])]:
            fail(f"record {r['prompt_index']} differs from the clean run's")
    with open(part, "a") as f:
        f.write('{"prompt_index": 5, "sample": 0, "ids": [1, 2')  # a write torn by SIGKILL
    run(cmd + [part])
    recs = [json.loads(l) for l in open(part)]
    keys = [(r["prompt_index"], r["sample"]) for r in recs]
    if sorted(keys) != sorted(want) or any(r["ids"] != want[(r["prompt_index"], r["sample"])] for r in recs):
        fail(f"after the rerun: records {sorted(keys)} (expected each of {sorted(want)} once, equal to the clean run)")
    print(f"rerun: {len(recs) - len(lines)} records added, each of the {len(want)} once and equal to the clean run")


# ---------------------------------------------------------------- perplexity

def ppl(a, tp, fmt, text):
    recs = gptfast(a, tp, fmt, ["--perplexity", text, "--ppl-context", "512", "--ppl-stride", "256"])
    if len(recs) != 1 or "perplexity" not in recs[0]:
        fail(f"tp={tp} {fmt}: expected one perplexity JSON record, got {recs}")
    r = recs[0]
    print(f"tp={tp} {fmt}: perplexity {r['perplexity']:.4f} +/- {r['ppl_stderr']:.4f} over {r['scored']} tokens, "
          f"{r['tok_s']:.0f} tok/s", flush=True)
    return r["perplexity"]


def cmd_ppl(a):
    """bf16 (the smollm2_ppl_base fixture) writes its perplexity for the quantized formats' tests to read."""
    text = os.path.join(a.work, f"ppl-{PPL_BYTES}.txt")
    base_json = os.path.join(a.work, "ppl-bf16.json")
    if a.format == "bf16":
        with open(a.text, "rb") as f:
            data = f.read(PPL_BYTES)
        with open(text + ".tmp", "wb") as f:
            f.write(data[: data.rfind(b"\n") + 1])  # whole lines (the file is ASCII; this also keeps UTF-8 whole)
        os.replace(text + ".tmp", text)
        base = ppl(a, 1, "bf16", text)
        if abs(base / PPL_BF16 - 1) > PPL_BOUND["bf16"]:
            fail(f"bf16 perplexity {base:.4f} is not within {PPL_BOUND['bf16']:.0%} of the pinned {PPL_BF16}")
        tp2 = ppl(a, 2, "bf16", text)
        if abs(tp2 / base - 1) > 1e-4:
            fail(f"bf16 perplexity at tp=2 ({tp2:.6f}) differs from tp=1 ({base:.6f}) by more than 1e-4")
        with open(base_json + ".tmp", "w") as f:
            json.dump({"perplexity": base}, f)
        os.replace(base_json + ".tmp", base_json)
        return
    if not os.path.exists(base_json):
        fail(f"{base_json}: missing; the smollm2_ppl_bf16 test writes it")
    with open(base_json) as f:
        base = json.load(f)["perplexity"]
    q = ppl(a, 1, a.format, text)
    rel = q / base - 1
    print(f"{a.format}: {rel:+.3%} vs bf16 {base:.4f} (bound +-{PPL_BOUND[a.format]:.1%})")
    if not abs(rel) <= PPL_BOUND[a.format]:
        fail(f"{a.format} perplexity {q:.4f} is {rel:+.3%} vs bf16 {base:.4f} (bound +-{PPL_BOUND[a.format]:.1%})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", choices=("make", "greedy", "logits", "ppl", "resume"))
    ap.add_argument("--work", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--shard")
    ap.add_argument("--tp")
    ap.add_argument("--mpirun")
    ap.add_argument("--format", choices=FORMATS, default="bf16")
    ap.add_argument("--text", default="/usr/share/common-licenses/GPL-3")
    a = ap.parse_args()
    if not os.path.exists(a.gguf):
        print(f"SKIP: {a.gguf} is absent; run launch/fetch_smollm2.sh to fetch it")
        sys.exit(77)
    os.makedirs(a.work, exist_ok=True)
    {"make": cmd_make, "greedy": cmd_greedy, "logits": cmd_logits, "ppl": cmd_ppl, "resume": cmd_resume}[a.cmd](a)
    print("ok")


if __name__ == "__main__":
    main()
