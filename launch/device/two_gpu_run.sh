#!/usr/bin/env bash
# A 2-GPU machine (device kind nvidia-h100-x2), from the repository root, carrying .deps and .anchor. Every
# mode builds first (a no-op on a machine still warm from the last call). One call runs at most 10 minutes,
# so the work is split into modes, each run right after the last:
#   test        the tp=2 GPU tests (engine and its opt-in variants, all-reduce, silent peer, CLI faults; ~6 min)
#   tp2         tp=2 timings with NCCL and the one-shot all-reduce, 70B int4 at tp=2, bench_allreduce (~5 min)
#   anchor-tp2  gpt-fast's own tensor parallelism (torchrun) beside ours at tp=2, format by format (~7 min)
#   all         gpt-fast on GPU 1 while our tp=1 runs go on GPU 0, then all of the above (~20 min: too long
#               for one call)
# Logs under $OUT; a table last.
set -u
MODE=${1:-all}
OUT=${OUT:-$PWD/two_gpu_out}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # never NVLink multicast
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONUNBUFFERED=1
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader > "$OUT/machine.txt"
nvidia-smi topo -m >> "$OUT/machine.txt" 2>&1

cmake -B build-gpu -S . -G Ninja -DCMAKE_BUILD_TYPE=Release -DGPTFAST_CUDA=ON -DGPTFAST_DEPS_DIR="$PWD/.deps" \
  -DCMAKE_CUDA_ARCHITECTURES=90a > "$OUT/build.log" 2>&1
cmake --build build-gpu -j"$(nproc)" -- -k 0 >> "$OUT/build.log" 2>&1 || echo "build: some targets failed (see build.log)"
echo "built at $(elapsed)s"

if [ "$MODE" = all ] && [ -d .anchor/gptfast ]; then  # gpt-fast on GPU 1, in the background
  ( for run in "7B bf16" "7B int8" "7B int4g32" "llama-3-8b bf16" "llama-3-8b int8"; do
      CUDA_VISIBLE_DEVICES=1 timeout 170 python3 .anchor/bench_gptfast.py $run 2>&1 | grep '^{' || echo "anchor $run: failed"
    done > "$OUT/anchor.jsonl" 2> "$OUT/anchor.err" ) &
  ANCHOR=$!
fi

R="$OUT/results.jsonl"; : > "$R"
bench() {  # bench TAG NP ARGS...: one --bench run, its JSON line tagged
  local tag=$1 np=$2; shift 2
  timeout 150 mpirun --allow-run-as-root --oversubscribe -np "$np" -x NCCL_NVLS_ENABLE build-gpu/gptfast-tp \
    --backend cuda --bench 5 --prompt-ids 1,2,3,4,5 --max-new-tokens 200 --json "$@" > "$OUT/run.tmp" 2>> "$OUT/runs.log"
  grep '^{' "$OUT/run.tmp" | tail -1 | python3 -c "import json,sys
for l in sys.stdin: d=json.loads(l); d['tag']='$tag'; d['np']=$np; print(json.dumps(d))" >> "$R" || echo "$tag failed" >> "$R"
}
export CUDA_VISIBLE_DEVICES=0
if [ "$MODE" = all ]; then
for m in llama-2-7b llama-3-8b; do
  bench "$m bf16" 1 --synthetic $m --bf16
  bench "$m int8" 1 --synthetic $m --int8
  bench "$m int4g32" 1 --synthetic $m --int4 --group-size 32
done
bench "tinyllama-1.1b int4g32 (draft)" 1 --synthetic tinyllama-1.1b --int4 --group-size 32
bench "llama-2-7b int4g32 + draft tinyllama int4g32 k=5" 1 --synthetic llama-2-7b --int4 --group-size 32 \
  --draft-synthetic tinyllama-1.1b --draft-int4 --draft-group-size 32 --speculate-k 5 --greedy
for run in "llama-2-7b bf16" "llama-2-7b int4g32" "llama-3-8b int8"; do
  timeout 120 mpirun --allow-run-as-root -np 1 build-gpu/gf_engine_bench $run 4096 2>> "$OUT/runs.log" | grep '^{' |
    python3 -c "import json,sys
for l in sys.stdin: d=json.loads(l); d['tag']='engine $run'; print(json.dumps(d))" >> "$R"
done
echo "tp=1 done at $(elapsed)s"
fi
[ -n "${ANCHOR:-}" ] && wait "$ANCHOR"
echo "anchor done at $(elapsed)s"
unset CUDA_VISIBLE_DEVICES

if [ "$MODE" = anchor-tp2 ]; then  # gpt-fast under torchrun, then ours, on the same two GPUs
  for f in "bf16:--bf16" "int8:--int8" "int4g32:--int4 --group-size 32"; do
    timeout 200 torchrun --standalone --nproc_per_node 2 .anchor/bench_gptfast.py 7B ${f%%:*} 2>> "$OUT/anchor.err" |
      grep '^{' >> "$OUT/anchor.jsonl" || echo "anchor tp2 ${f%%:*}: failed" >> "$OUT/anchor.jsonl"
    bench "llama-2-7b ${f%%:*} tp2 nccl" 2 --synthetic llama-2-7b ${f#*:} --allreduce nccl
  done
  echo "anchor-tp2 done at $(elapsed)s"
fi

if [ "$MODE" = all ] || [ "$MODE" = test ]; then
  CT=(-L gpu); [ "$MODE" = test ] && CT+=(-R "tp2|allreduce|silent|faults")  # the tp=1 tests run on one GPU
  timeout 540 ctest --test-dir build-gpu "${CT[@]}" --output-on-failure --timeout 240 > "$OUT/ctest_gpu.log" 2>&1
  echo "ctest done at $(elapsed)s: $(grep -E 'tests passed' "$OUT/ctest_gpu.log")"
fi
if [ "$MODE" = all ] || [ "$MODE" = tp2 ]; then
  for f in "bf16:--bf16" "int8:--int8" "int4g32:--int4 --group-size 32"; do
    for ar in nccl oneshot; do bench "llama-2-7b ${f%%:*} tp2 $ar" 2 --synthetic llama-2-7b ${f#*:} --allreduce $ar; done
  done
  bench "llama-2-70b int4g32 tp2 nccl" 2 --synthetic llama-2-70b --int4 --group-size 32 --max-seq-len 1024
  timeout 60 mpirun --allow-run-as-root -np 2 -x NCCL_NVLS_ENABLE build-gpu/bench_allreduce > "$OUT/allreduce.log" 2>&1 ||
    echo "bench_allreduce failed" >> "$OUT/allreduce.log"
fi
echo "all done at $(elapsed)s"

python3 - "$R" "$OUT/anchor.jsonl" <<'PY'
import json, sys
print(f"{'run':<52}{'tok/s':>9}{'ms/tok':>9}{'GB/s':>8}")
for l in open(sys.argv[1]):
    if not l.startswith('{'): print(l.strip()); continue
    d = json.loads(l)
    if 'tok_s_median' in d:
        extra = f"  acc {d['speculative']['mean_accepted']:.2f}" if 'speculative' in d else ''
        print(f"{d['tag']:<52}{d['tok_s_median']:9.1f}{d['ms_per_token']:9.3f}{d['gb_s']:8.0f}{extra}")
    else:
        print(d['tag'], {k: v for k, v in d.items() if k != 'tag'})
try:
    for l in open(sys.argv[2]):
        if l.startswith('{'):
            d = json.loads(l); print(f"gpt-fast {d['model']} {d['mode']} tp={d.get('tp', 1):<38}{d['tok_s_median']:9.1f}{'':9}{d['bw_GBs']:8.0f}")
        else: print(l.strip())
except FileNotFoundError: pass
PY
if [ -f "$OUT/allreduce.log" ]; then tail -20 "$OUT/allreduce.log"; fi
