#!/usr/bin/env python3
"""gptfast-tp end to end on synthetic models: usage errors, tp=1 vs tp=2 through --json/--logits-out,
--bench, and the failure tests of RELIABILITY.md (14: a load exception on rank 1 ends the job within
10 s; 15: kill -9 of rank 1 mid-decode ends it non-zero within 30 s; 16: SIGSTOP of rank 1 mid-decode is
ended by the collective deadline, which names it)."""
import argparse, os, shlex, shutil, signal, subprocess, sys, tempfile, time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from proc_tree import descendants  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--exe", required=True)
ap.add_argument("--configs", required=True)
ap.add_argument("--mpirun", required=True)
ap.add_argument("--backend", default="cpu", help="backend of the mid-decode failure tests (cuda: two GPUs)")
ap.add_argument("--faults-only", action="store_true", help="only the mid-decode failure tests (RELIABILITY 15, 16)")
args = ap.parse_args()
MPI = shlex.split(args.mpirun.replace(";", " "))
ENV = dict(os.environ, GPTFAST_CONFIG_DIR=args.configs, OMP_NUM_THREADS="1")
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        failures.append(msg)


def run(cmd, timeout=120, env=ENV):
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return p, time.time() - t0


def error_lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("gptfast-tp: error:")]


def usage_and_tp_tests():
    # Usage errors: one error line, non-zero exit, nothing on stdout.
    for bad in (["--bogus"], ["--synthetic", "tiny"], ["--synthetic", "tiny", "--prompt-ids", "1,x"],
                ["--synthetic", "tiny", "--prompt-ids", "1", "--int8", "--int4"],
                ["--synthetic", "tiny", "--prompt-ids", "1", "--kv-cache", "fp8"]):
        p, _ = run([args.exe] + bad)
        check(p.returncode == 2 and len(error_lines(p.stderr)) == 1 and p.stdout == "",
              f"usage error {bad}: rc={p.returncode} stderr={p.stderr!r}")
    # A deadline that is not a number of seconds: one line naming the variable, from rank 0 only, at tp=2 too.
    for np_ in (1, 2):
        p, _ = run(MPI + ["-np", str(np_), "-x", "GPTFAST_COLLECTIVE_TIMEOUT_S=2m", args.exe, "--synthetic", "tiny",
                          "--prompt-ids", "1"])
        check(p.returncode != 0 and len(error_lines(p.stderr)) == 1 and "GPTFAST_COLLECTIVE_TIMEOUT_S" in p.stderr
              and "'2m'" in p.stderr and p.stdout == "", f"bad collective timeout, np={np_}: rc={p.returncode} {p.stderr!r}")
    p, _ = run([args.exe, "--synthetic", "no-such-preset", "--prompt-ids", "1"])
    check(p.returncode != 0 and len(error_lines(p.stderr)) == 1, f"unknown preset: rc={p.returncode} {p.stderr!r}")
    p, _ = run([args.exe, "--synthetic", "tiny", "--prompt-ids", "1,2", "--max-seq-len", "100000"])
    check(p.returncode != 0 and "max_seq_len" in p.stderr, f"max-seq-len over the model's: {p.stderr!r}")

    # tp=1 vs tp=2: same greedy ids, same logits (fp32 tolerance), rows = prompt + new - 1.
    def greedy(np_, out, *flags):  # 16 greedy tokens after 5 prompt ids: (process, JSON records, logits)
        p, _ = run(MPI + ["-np", str(np_), args.exe, "--synthetic", "tiny", "--prompt-ids", "5,17,300,42,9",
                          "--greedy", "--max-new-tokens", "16", "--json", "--logits-out", out, *flags])
        check(p.returncode == 0, f"tp={np_} {flags}: rc={p.returncode} {p.stderr[-500:]!r}")
        return p, [__import__("json").loads(l) for l in p.stdout.splitlines()], np.load(out)

    with tempfile.TemporaryDirectory() as tmp:
        res = {}
        for np_ in (1, 2):
            _, recs, logits = greedy(np_, os.path.join(tmp, f"l{np_}.npy"), "--prefill-chunk", "2")
            check(len(recs) == 1 and len(recs[0]["ids"]) == 16, f"tp={np_}: one JSON record of 16 ids")
            res[np_] = (recs[0], logits)
        (r1, l1), (r2, l2) = res[1], res[2]
        check(r1["ids"] == r2["ids"], f"greedy ids tp1 {r1['ids']} vs tp2 {r2['ids']}")
        check(r1["prompt_ids"] == [5, 17, 300, 42, 9], "prompt_ids echoed")
        check(l1.shape == (5 + 16 - 1, 301) and l1.dtype == np.float32, f"logits shape {l1.shape} {l1.dtype}")
        check(np.allclose(l1, l2, atol=1e-4, rtol=1e-3), f"logits tp1 vs tp2 max diff {np.abs(l1 - l2).max()}")
        check(all(int(np.argmax(l1[5 - 1 + i])) == r1["ids"][i] for i in range(16)), "greedy id = argmax of its logits row")
        check(np.abs(l1[0] - l1[1]).max() > 1e-2, "logits rows differ")
        # --kv-cache int8 moves the logits a little (each cached head row rounded to 255 steps of its max),
        # the same way at tp=1 and tp=2 (a rounding step may flip where fp32 sums differ in the last bit).
        kv = {}
        for np_ in (1, 2):
            _, recs, logits = greedy(np_, os.path.join(tmp, f"kv{np_}.npy"), "--kv-cache", "int8")
            kv[np_] = (recs[0]["ids"], logits)
        d8, d12 = np.abs(kv[1][1] - l1).max(), np.abs(kv[1][1] - kv[2][1]).max()
        print(f"     --kv-cache int8: max logit change {d8:.2e} against bf16, tp1 vs tp2 {d12:.2e}")
        check(0 < d8 < 0.05 * np.abs(l1).max(), f"--kv-cache int8 changes logits a little: {d8}")
        check(kv[1][0] == kv[2][0] and d12 < 0.1 * d8, f"--kv-cache int8 tp1 vs tp2: {kv[1][0]} {kv[2][0]} {d12}")

    # Sampling: two samples differ, a rerun with the same seed repeats them.
    cmd = [args.exe, "--synthetic", "tiny", "--prompt-ids", "3,4", "--temperature", "1", "--top-k", "0",
           "--num-samples", "2", "--json", "--seed", "7"]
    a, _ = run(cmd)
    b, _ = run(cmd)
    ids = lambda p: [__import__("json").loads(l)["ids"] for l in p.stdout.splitlines()]
    ra = ids(a)
    check(len(ra) == 2 and ra[0] != ra[1] and ids(b) == ra, f"samples differ, reruns repeat: {ra} {ids(b)}")
    # Sampled tokens are the same at tp=1 and tp=2 (tp=2 samples from each rank's local top-k candidates).
    for flags in (["--top-k", "40", "--top-p", "0.9"], ["--top-k", "3"], ["--top-k", "0", "--top-p", "0.9"]):
        got = {}
        for np_ in (1, 2):
            p, _ = run(MPI + ["-np", str(np_), args.exe, "--synthetic", "tiny", "--prompt-ids", "3,4", "--temperature",
                              "0.8", *flags, "--num-samples", "2", "--max-new-tokens", "24", "--json", "--seed", "11"])
            got[np_] = ids(p)
        check(len(got[1]) == 2 and got[1] == got[2], f"sampled ids tp1 == tp2 with {flags}: {got[1]} {got[2]}")

    p, _ = run([args.exe, "--synthetic", "tiny", "--bench", "2", "--max-new-tokens", "8"])
    check(p.returncode == 0 and "tok/s median" in p.stdout, f"--bench: {p.stdout!r} {p.stderr[-300:]!r}")

    # RELIABILITY 14: rank 1 fails during load (its preset directory is broken) -> job ends fast, non-zero,
    # and the failing rank's line is printed.
    with tempfile.TemporaryDirectory() as bad:
        os.makedirs(os.path.join(bad, "models"))
        with open(os.path.join(bad, "models", "tiny.ini"), "w") as f:
            f.write("dim=64\nn_layers=oops\n")
        cmd = MPI + ["-np", "1", "-x", f"GPTFAST_CONFIG_DIR={args.configs}", args.exe, "--synthetic", "tiny",
                     "--prompt-ids", "1", ":", "-np", "1", "-x", f"GPTFAST_CONFIG_DIR={bad}", args.exe,
                     "--synthetic", "tiny", "--prompt-ids", "1"]
        try:
            p, dt = run(cmd, timeout=30)
            check(p.returncode != 0 and dt < 10 and "[rank 1]" in p.stderr and "n_layers" in p.stderr,
                  f"load failure on rank 1: rc={p.returncode} {dt:.1f}s {p.stderr[:400]!r}")
        except subprocess.TimeoutExpired:
            check(False, "load failure on rank 1: the job hung")



if args.faults_only:
    gpus = 2
    if args.backend == "cuda":
        smi = shutil.which("nvidia-smi")
        gpus = subprocess.run([smi, "-L"], capture_output=True, text=True).stdout.count("GPU ") if smi else 0
    if gpus < 2:
        print(f"SKIP: the {args.backend} failure tests need two GPUs, {gpus} here")
        sys.exit(77)
else:
    usage_and_tp_tests()


def start_decode_job(env, extra_mpi=()):
    """A long tp=2 decode; returns (process, pid of rank 1) once the first token has streamed."""
    proc = subprocess.Popen(MPI + ["-np", "2", *extra_mpi, args.exe, "--synthetic", "smollm2-135m", "--prompt-ids",
                                   "1,2,3", "--max-new-tokens", "4000", "--max-seq-len", "4096", "--greedy",
                                   "--backend", args.backend],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    first = proc.stdout.read(1)  # the first streamed token: decoding has begun
    rank1 = None
    for pid in descendants(proc.pid):
        try:
            penv = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if args.exe.encode() in cmdline and b"OMPI_COMM_WORLD_RANK=1" in penv:
            rank1 = pid
    check(first != b"" and rank1 is not None, f"decode started, rank 1 found (pid {rank1})")
    return proc, rank1


def end_job(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# RELIABILITY 15: kill -9 of rank 1 mid-decode -> the job ends non-zero within 30 s.
proc, rank1 = start_decode_job(ENV)
try:
    if rank1:
        t0 = time.time()
        os.kill(rank1, signal.SIGKILL)
        rc = proc.wait(timeout=40)
        dt = time.time() - t0
        check(rc != 0 and dt < 30, f"kill -9 rank 1: rc={rc} ended after {dt:.1f}s")
except subprocess.TimeoutExpired:
    check(False, "kill -9 rank 1: the job hung")
finally:
    end_job(proc)

# RELIABILITY 16: SIGSTOP of rank 1 mid-decode -> the collective deadline ends the job (one line, non-zero).
proc, rank1 = start_decode_job(dict(ENV, GPTFAST_COLLECTIVE_TIMEOUT_S="3"), ["-x", "GPTFAST_COLLECTIVE_TIMEOUT_S"])
try:
    if rank1:
        t0 = time.time()
        os.kill(rank1, signal.SIGSTOP)
        _, err = proc.communicate(timeout=60)
        dt = time.time() - t0
        lines = [l for l in err.decode(errors="replace").splitlines() if l.startswith("gptfast-tp: error:")]
        # rank 0's line is the one that counts; mpirun sends SIGCONT before it kills a stopped rank, so
        # rank 1 may wake, see its own deadline passed and print a second line before it dies
        rank0 = [l for l in lines if "[rank 0]" in l and "GPTFAST_COLLECTIVE_TIMEOUT_S" in l and
                 "rank 1 did not answer" in l]  # RELIABILITY 16: the silent rank is named
        check(proc.returncode != 0 and dt < 30 and len(rank0) == 1,
              f"SIGSTOP rank 1: rc={proc.returncode} after {dt:.1f}s, error lines {lines!r}")
except subprocess.TimeoutExpired:
    end_job(proc)
    # what the ranks said before the hang: the timed-out communicate() keeps what it read, a second returns it
    tail = proc.communicate()[1].decode(errors="replace").splitlines()[-8:]
    check(False, f"SIGSTOP rank 1: the job hung; its last stderr lines: {tail!r}")
finally:
    end_job(proc)

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
