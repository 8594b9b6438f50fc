#!/usr/bin/env python3
"""gptfast-tp --perplexity, --interactive and the --chat stop set, end to end on a tiny random checkpoint
(tests/tools/make_tiny_llama.py, variant `tied`: its config eos is <|end_of_text|>, its ChatML turns end with
<|im_end|>) sharded for tp=1 and tp=2.

Perplexity is checked against an independent replay of the Hugging Face strided recipe: the same windows
run as plain prompts (--prompt-ids, --max-new-tokens 0, --logits-out), labels masked as the recipe masks
them, log-softmax in float64 here.
"""
import argparse, json, os, shlex, subprocess, sys

import numpy as np
from tokenizers import Tokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--exe", required=True)
ap.add_argument("--shard", required=True)
ap.add_argument("--mpirun", required=True)
ap.add_argument("--work", required=True)
args = ap.parse_args()
MPI = shlex.split(args.mpirun.replace(";", " "))
ENV = dict(os.environ, OMP_NUM_THREADS="1")
HERE = os.path.dirname(os.path.abspath(__file__))
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        failures.append(msg)


def run(cmd, stdin=None, timeout=120):
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, env=ENV)


def must(cmd, stdin=None):
    p = run(cmd, stdin)
    if p.returncode != 0:
        sys.exit(f"FAIL exit {p.returncode}: {' '.join(cmd)}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p


def records(p):
    return [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]


def errors(p):
    return [l for l in p.stderr.splitlines() if l.startswith("gptfast-tp: error:")]


# The fixture: checkpoint and shards, made once per work dir.
os.makedirs(args.work, exist_ok=True)
hf, store = os.path.join(args.work, "hf"), os.path.join(args.work, "store")
if not os.path.exists(os.path.join(store, "tied", "tp2-bf16", "manifest.json")):
    must([sys.executable, os.path.join(HERE, "..", "tools", "make_tiny_llama.py"), "--out", hf, "--variant", "tied",
          "--dtype", "f32", "--seed", "11"])
    for tp in (1, 2):
        must([args.shard, "--from", hf, "--model", "tied", "--model-dir", store, "--tp", str(tp)])
MODEL = ["--model", "tied", "--model-dir", store, "--threads", "1"]
tok = Tokenizer.from_file(os.path.join(hf, "tokenizer.json"))


def tp_run(tp, extra, stdin=None):
    return run(MPI + ["-np", str(tp), args.exe] + MODEL + extra, stdin)


text_path = os.path.join(args.work, "text.txt")
with open(text_path, "w", encoding="utf-8") as f:
    f.write("The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.\n"
            "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer the slings and "
            "arrows of outrageous fortune. Ünïcödé too: naïve café, 東京.\n")
short_path = os.path.join(args.work, "short.txt")
with open(short_path, "w", encoding="utf-8") as f:
    f.write("Once upon a time, in a land far away.")
CTX, STRIDE = 24, 10


def ppl(tp, path, ctx, stride):
    p = tp_run(tp, ["--perplexity", path, "--ppl-context", str(ctx), "--ppl-stride", str(stride), "--json"])
    recs = records(p)
    check(p.returncode == 0 and len(recs) == 1, f"perplexity tp={tp} ctx={ctx} stride={stride}: rc={p.returncode} "
          f"{len(recs)} records {p.stderr[-500:]!r}")
    return recs[0] if recs else {}


# The text's ids as the CLI tokenizes a prompt (the same encode(text, add_special_tokens=True)).
with open(text_path, encoding="utf-8") as f:
    ids = records(must([args.exe] + MODEL + ["--prompt", f.read(), "--max-new-tokens", "0", "--json"]))[0]["prompt_ids"]
n = len(ids)
check(n > 3 * CTX, f"text is {n} tokens (several windows of {CTX})")

# Reference: the recipe (windows begin at 0, stride, ...; labels before prev_end masked; shift by one).
nlls, prev_end, n_windows = [], 0, 0
for begin in range(0, n, STRIDE):
    end = min(begin + CTX, n)
    trg_len = end - prev_end
    window = ids[begin:end]
    out = os.path.join(args.work, "window.npy")
    must([args.exe] + MODEL + ["--prompt-ids", ",".join(map(str, window)), "--max-new-tokens", "0", "--logits-out", out])
    logits = np.load(out).astype(np.float64)
    labels = np.array(window)
    labels[: len(window) - trg_len] = -100
    for j in range(1, len(window)):  # logits row j-1 predicts window[j]
        if labels[j] != -100:
            row = logits[j - 1]
            mx = row.max()
            nlls.append(mx + np.log(np.exp(row - mx).sum()) - row[labels[j]])
    n_windows += 1
    prev_end = end
    if end == n:
        break
ref_nll = float(np.mean(nlls))
ref_se = float(np.std(nlls, ddof=1) / np.sqrt(len(nlls)))

r1 = ppl(1, text_path, CTX, STRIDE)
check(r1.get("tokens") == n and r1.get("scored") == len(nlls) == n - 1 and r1.get("windows") == n_windows,
      f"tp=1 counts: tokens {r1.get('tokens')} scored {r1.get('scored')} windows {r1.get('windows')} "
      f"(reference {n}, {len(nlls)}, {n_windows})")
check(abs(r1.get("mean_nll", 0) - ref_nll) <= 1e-9 * abs(ref_nll), f"tp=1 mean NLL {r1.get('mean_nll')} vs reference {ref_nll}")
check(abs(r1.get("perplexity", 0) - np.exp(ref_nll)) <= 1e-8 * np.exp(ref_nll), f"tp=1 ppl {r1.get('perplexity')} = exp(mean NLL)")
check(abs(r1.get("ppl_stderr", 0) - np.exp(ref_nll) * ref_se) <= 1e-6 * np.exp(ref_nll) * ref_se,
      f"tp=1 ppl stderr {r1.get('ppl_stderr')} vs delta method {np.exp(ref_nll) * ref_se}")
r2 = ppl(2, text_path, CTX, STRIDE)
check(abs(r2.get("perplexity", 0) - r1.get("perplexity", 1)) <= 1e-4 * r1.get("perplexity", 1),
      f"tp=2 ppl {r2.get('perplexity')} vs tp=1 {r1.get('perplexity')} (1e-4 relative)")

# Non-overlapping windows (stride == context): each window's first token has no context and goes unscored.
r3 = ppl(1, text_path, CTX, CTX)
check(r3.get("scored") == n - 1 - (r3.get("windows", 0) - 1), f"stride == context scores {r3.get('scored')} of {n}")

# A text shorter than the context: one window, the same number whatever the stride.
a, b = ppl(1, short_path, 64, 64), ppl(2, short_path, 64, 5)
check(a.get("windows") == 1 and a.get("scored") == a.get("tokens", 0) - 1, f"short text: one window scoring all but the first {a}")
check(abs(a.get("perplexity", 0) - b.get("perplexity", 1)) <= 1e-4 * a.get("perplexity", 1),
      f"short text: strided tp=2 {b.get('perplexity')} vs non-strided tp=1 {a.get('perplexity')}")

# Bad input: one error line (from rank 0 only), exit 2, nothing on stdout.
bad_utf8 = os.path.join(args.work, "bad.txt")
with open(bad_utf8, "wb") as f:
    f.write(b"valid text \xff\xfe then not\n")
for path, what in ((os.path.join(args.work, "missing.txt"), "cannot read"), (bad_utf8, "not valid UTF-8")):
    p = tp_run(2, ["--perplexity", path])
    check(p.returncode == 2 and len(errors(p)) == 1 and what in p.stderr and p.stdout == "",
          f"--perplexity {os.path.basename(path)}: rc={p.returncode} {p.stderr!r}")
p = tp_run(1, ["--perplexity", text_path, "--ppl-context", "4096"])
check(p.returncode == 2 and "--ppl-context" in p.stderr, f"context past the KV cache: {p.stderr!r}")
p = run([args.exe] + MODEL + ["--perplexity", text_path, "--prompt", "x"])
check(p.returncode == 2 and len(errors(p)) == 1, f"--perplexity with --prompt is a usage error: {p.stderr!r}")

# --interactive: two prompts from stdin under tp=2, EOF ends it cleanly; an empty line ends it too.
p = tp_run(2, ["--interactive", "--greedy", "--max-new-tokens", "6", "--json"], "Hello there\nWhat is two plus two?\n")
recs = records(p)
check(p.returncode == 0 and [r["prompt_index"] for r in recs] == [0, 1] and all(r["ids"] for r in recs),
      f"interactive: two answers, exit 0: rc={p.returncode} {len(recs)} records {p.stderr[-300:]!r}")
single = records(must([args.exe] + MODEL + ["--prompt", "What is two plus two?", "--greedy", "--max-new-tokens", "6",
                                            "--json"]))[0]
check(len(recs) == 2 and recs[1]["ids"] == single["ids"], "interactive answer = the same prompt run alone (tp=1)")
p = tp_run(2, ["--interactive", "--greedy", "--max-new-tokens", "4"], "first\n\nnever read\n")
check(p.returncode == 0 and len([l for l in p.stdout.splitlines() if l]) == 1, f"empty line ends it: {p.stdout!r}")

# --interactive --chat: the second turn's prompt holds the first turn, its answer and the new question.
p = tp_run(2, ["--interactive", "--chat", "--greedy", "--max-new-tokens", "6", "--json"], "Hello there\nAnd now?\n")
recs = records(p)
check(p.returncode == 0 and len(recs) == 2, f"chat interactive: rc={p.returncode} {p.stderr[-300:]!r}")
if len(recs) == 2:
    second = tok.decode(recs[1]["prompt_ids"], skip_special_tokens=False)
    check(second.count("<|im_start|>user") == 2 and "Hello there" in second and "And now?" in second
          and second.count("<|im_start|>assistant") == 2, f"second turn renders the conversation: {second!r}")

# --chat stops at <|im_end|> although the config's eos is <|end_of_text|>: near-uniform sampling over a small
# vocab draws it within 48 tokens in some of 24 samples; each such sample must end there.
im_end = tok.token_to_id("<|im_end|>")
with open(os.path.join(hf, "config.json")) as f:
    check(im_end not in np.atleast_1d(json.load(f)["eos_token_id"]), "fixture: <|im_end|> is not a config eos")
p = must([args.exe] + MODEL + ["--prompt", "Hi", "--chat", "--temperature", "8", "--top-k", "0", "--max-new-tokens",
                               "48", "--num-samples", "24", "--seed", "5", "--json"])
hits = [r for r in records(p) if im_end in r["ids"]]
check(len(hits) > 0, f"{len(hits)} of 24 samples drew <|im_end|>")
check(all(r["ids"].index(im_end) == len(r["ids"]) - 1 and r["stop"] == "eos" for r in hits),
      "every sample that drew <|im_end|> stopped there")

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
