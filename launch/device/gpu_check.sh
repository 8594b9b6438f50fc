#!/usr/bin/env bash
# The GPU machine's one-call check, run from the repository root:
#   launch/device/gpu_check.sh [SECTION ...]     sections: build test kernels sanitize bench ab engine anchor
# (kernels: the kernel tests alone and the per-matrix micro-benchmark, ~1 minute; ab: the default against
# GPTFAST_GEMV=tiled, GPTFAST_PDL=0, GPTFAST_SAMPLER=gather, GPTFAST_GEMV=simt, 7B, ~2.5 minutes)
# One device call runs at most 10 minutes: the GPU tests alone take several, so call `build test`, then
# `build sanitize ab`, then `build bench engine anchor` (a machine left idle for 30 s is handed back, and its
# build with it; a build takes ~30 s on 16 cores). BUILD_TARGETS="t1 t2" builds only those targets;
# GPU_CHECK_BUDGET_S=N skips sections that would run past N seconds, so the table still comes back.
# No section: build test sanitize bench engine; "all" adds anchor
# (gpt-fast beside us, when .anchor/gptfast exists; ~1.5 min per format). $OUT (./gpu_check_out when
# unset) gets a few files only (the device tool returns at most 8): gpu_check.log (every section's
# output), status.txt, results.jsonl, machine.txt, ctest_gpu.log. A short table is printed last.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
BUILD=${BUILD:-build-gpu}
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN="mpirun --oversubscribe --allow-run-as-root -np 1"
SECTIONS=("$@")
[ ${#SECTIONS[@]} -eq 0 ] && SECTIONS=(build test sanitize bench engine)
[ "${SECTIONS[0]}" = all ] && SECTIONS=(build test sanitize bench engine anchor)
LOGS=$(mktemp -d)              # per-section logs, joined into $OUT/gpu_check.log at the end
RESULTS="$OUT/results.jsonl"   # one JSON object per measured run, for the table
: >"$RESULTS"
STATUS="$OUT/status.txt"       # one line per section: name, exit code, seconds
: >"$STATUS"
T_ALL=$(date +%s)

note() { printf '%s\n' "$*" | tee -a "$STATUS"; }
section() {  # section NAME LIMIT_S COMMAND...: run with a time limit, log, record the exit code
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  # GPU_CHECK_BUDGET_S: the device call's own limit; a section that could run past it is skipped so that
  # the table and logs still come back
  if [ -n "${GPU_CHECK_BUDGET_S:-}" ] && [ $(( t0 - T_ALL + limit )) -gt "$GPU_CHECK_BUDGET_S" ]; then
    limit=$(( GPU_CHECK_BUDGET_S - (t0 - T_ALL) ))
    [ "$limit" -lt 20 ] && { note "$(printf '%-28s skipped (call budget)' "$name")"; return 124; }
  fi
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOGS/$name.log"
  timeout --signal=TERM --kill-after=15 "$limit" "$@" >>"$LOGS/$name.log" 2>&1
  local rc=$?
  note "$(printf '%-28s rc=%-3s %4ss' "$name" "$rc" "$(( $(date +%s) - t0 ))")"
  return $rc
}
want() { local s; for s in "${SECTIONS[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
# record LOG KEY=VALUE...: LOG's last JSON line, those fields added, appended to results.jsonl
record() {
  local log=$1; shift
  grep '^{' "$LOGS/$log.log" | tail -1 | python3 -c "import json, sys
d = json.loads(sys.stdin.read()); d.update(a.split('=', 1) for a in sys.argv[1:]); print(json.dumps(d))" "$@" \
    >>"$RESULTS" 2>/dev/null
}
# bench_cli LOG LABEL MODEL FORMAT [VAR=VALUE...]: gptfast-tp --bench 5 (5-token prompt, 200 new tokens) on
# synthetic MODEL weights under those variables, recorded as kind=cli, model=LABEL, format=FORMAT
bench_cli() {
  local log=$1 label=$2 model=$3 fmt=$4; shift 4
  local -a F=()
  case $fmt in int8) F=(--int8);; int4g32) F=(--int4 --group-size 32);; esac
  section "$log" 90 env "$@" $MPIRUN "$BUILD/gptfast-tp" --synthetic "$model" "${F[@]}" --backend cuda --bench 5 \
    --prompt-ids 1,2,3,4,5 --max-new-tokens 200 --json
  record "$log" kind=cli model="$label" format="$fmt"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nvcc --version | tail -1; } \
  >"$OUT/machine.txt" 2>&1

if want build; then
  GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
  section configure 120 cmake -B "$BUILD" -S . "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DGPTFAST_CUDA=ON \
    -DGPTFAST_DEPS_DIR="$PWD/.deps" -DCMAKE_CUDA_ARCHITECTURES=90a
  # Keep going past an unrelated broken target so the GPU pieces still build.
  KEEP=(-- -k 0); [ ${#GEN[@]} -eq 0 ] && KEEP=(-- -k)
  # BUILD_TARGETS="a b": only those targets (a quick look at kernels without building every test)
  TARGETS=(); for t in ${BUILD_TARGETS:-}; do TARGETS+=(--target "$t"); done
  section build 330 cmake --build "$BUILD" -j "$(nproc)" "${TARGETS[@]}" "${KEEP[@]}"
fi

if want test; then
  section ctest_gpu 540 ctest --test-dir "$BUILD" -L gpu -V --timeout 240
  cp "$LOGS/ctest_gpu.log" "$OUT/ctest_gpu.log"
  grep -E "\[(bf16|int8|int4g[0-9]+)\] |: rank [0-9] after|Test +#|tests passed" "$LOGS/ctest_gpu.log" \
    >"$LOGS/ctest_gpu.summary" || true
fi

if want kernels; then
  # The kernel tests alone (default, tensor-core GEMV, PDL) and the per-matrix micro-benchmark.
  section ctest_kernels 240 ctest --test-dir "$BUILD" -R '^gpu_kernels' --output-on-failure --timeout 200
  grep -E "tests passed|Failed|FAILED" "$LOGS/ctest_kernels.log" >"$LOGS/ctest_kernels.summary" || true
  section bench_kernels 150 "$BUILD/tests/bench_gpu_kernels"
  section bench_kernels_tiled 150 env GPTFAST_GEMV=tiled "$BUILD/tests/bench_gpu_kernels"  # (the gemv column)
fi

if want sanitize; then
  # One prefill and a few decode steps under memcheck, graph replay and eager (each kernel checked).
  SAN=(compute-sanitizer --tool memcheck --error-exitcode 9 --leak-check no --print-limit 20)
  RUN=("$BUILD/gptfast-tp" --synthetic smollm2-135m --backend cuda --prompt-ids 1,2,3,4,5 --max-new-tokens 3
       --max-seq-len 256)
  section sanitize_graph 150 $MPIRUN "${SAN[@]}" "${RUN[@]}"
  section sanitize_eager 150 env GPTFAST_CUDA_GRAPHS=0 $MPIRUN "${SAN[@]}" "${RUN[@]}" --int4 --group-size 32
  section sanitize_kv_int8 150 env GPTFAST_CUDA_GRAPHS=0 $MPIRUN "${SAN[@]}" "${RUN[@]}" --int8 --kv-cache int8
fi

if want bench; then
  for model in llama-2-7b llama-3-8b; do
    for fmt in bf16 int8 int4g32; do bench_cli "bench_${model}_${fmt}" "$model" "$model" "$fmt"; done
  done
fi

if want ab; then
  # The default against each of its parts switched back, same card, same call (7B shape): programmatic
  # dependent launch off, the gathered-row sampler, and the tensor-core GEMV at M = 1 too.
  # AB_VARIANTS (";"-separated) picks other variants.
  IFS=';' read -r -a VARIANTS <<<"${AB_VARIANTS:-default;GPTFAST_GEMV=tiled;GPTFAST_PDL=0;GPTFAST_SAMPLER=gather;GPTFAST_GEMV=simt}"
  for variant in "${VARIANTS[@]}"; do
    ENVS=(); [ "$variant" != default ] && ENVS=($variant)
    for fmt in bf16 int8 int4g32; do
      bench_cli "ab_${fmt}_${variant// /+}" "7b $variant" llama-2-7b "$fmt" "${ENVS[@]}"
    done
  done
fi

if want engine; then
  # 4k-context decode, 1024-token prefill, M=8 verify vs one step, kernels per layer, read GB/s.
  for run in "llama-2-7b bf16" "llama-2-7b int4g32" "llama-3-8b int8"; do
    set -- $run
    section "engine_$1_$2" 120 $MPIRUN "$BUILD/gf_engine_bench" "$1" "$2" 4096
    record "engine_$1_$2" kind=engine
  done
fi

if want anchor; then
  if [ -f .anchor/bench_gptfast.py ] && [ -d .anchor/gptfast ]; then
    IFS=';' read -r -a RUNS <<<"${ANCHOR_RUNS:-7B bf16;7B int8;7B int4g32;llama-3-8b bf16;llama-3-8b int8}"
    for run in "${RUNS[@]}"; do
      set -- $run
      section "anchor_$1_$2" 200 env PYTHONUNBUFFERED=1 python3 .anchor/bench_gptfast.py "$1" "$2"
      tail -3 "$LOGS/anchor_$1_$2.log" | sed "s/^/anchor $1 $2: /" >>"$LOGS/anchor.summary"
    done
  else
    note "anchor                       skipped: no .anchor/gptfast (see /work/shared/GPU.md)"
  fi
fi

# The table: what ran, then the numbers.
echo
echo "=== gpu_check on $(head -1 "$OUT/machine.txt") ($(( $(date +%s) - T_ALL ))s)"
cat "$STATUS"
[ -f "$LOGS/ctest_gpu.summary" ] && cat "$LOGS/ctest_gpu.summary"
python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cli = [r for r in rows if r.get("kind") == "cli"]
if cli:
    print(f"{'model':<44}{'format':<9}{'tok/s':>8}{'ms/tok':>8}{'GB/s':>8}{'of peak':>8}{'k/layer':>8}{'pdl':>5}")
    for r in cli:
        print(f"{r['model']:<44}{r['format']:<9}{r.get('tok_s_median', 0):8.1f}{r.get('ms_per_token', 0):8.3f}"
              f"{r.get('gb_s', 0):8.0f}{100 * r.get('read_fraction', 0):7.0f}%{r.get('kernels_per_layer', -1):8.1f}"
              f"{r.get('pdl_edges', -1):5d}")
for r in rows:
    if r.get("kind") != "engine": continue
    ctx = [k for k in r if k.startswith("decode_ms_ctx") and k != "decode_ms_ctx16"]
    print(f"engine {r['model']} {r['format']}: read probe {r['read_gbps_probe']:.0f} GB/s; decode {r['decode_tok_s_ctx16']:.1f} tok/s "
          f"({r['decode_gbps_ctx16']:.0f} GB/s = {100*r['decode_gbps_ctx16']/r['read_gbps_probe']:.0f}%), "
          + (f"{ctx[0][10:]} {r[ctx[0]]:.2f} ms; " if ctx else "")
          + f"prefill1024 {r['prefill1024_tok_s']:.0f} tok/s; M=8 verify {r['verify_m8_over_m1']:.2f}x a step; "
          f"{r['kernels_per_layer']:.1f} kernels/layer")
PY
[ -f "$LOGS/anchor.summary" ] && cat "$LOGS/anchor.summary"
[ -f "$LOGS/ctest_kernels.summary" ] && cat "$LOGS/ctest_kernels.summary"
[ -f "$LOGS/bench_kernels.log" ] && grep -E "^(bf16|int8|int4|format|read|attention)" "$LOGS/bench_kernels.log"
[ -f "$LOGS/bench_kernels_tiled.log" ] && grep -E "^(int8|int4)" "$LOGS/bench_kernels_tiled.log" |
  awk '$4 == 1' | sed 's/^/tiled /' 
cat $(ls -tr "$LOGS"/*.log 2>/dev/null) >"$OUT/gpu_check.log" 2>/dev/null
rm -rf "$LOGS"
exit 0
