#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan/UBSan) and runs each for SECONDS (default 60) from the
# seed corpus; exits non-zero if any target crashed, leaked, hung or ran out of memory.
#   launch/fuzz.sh [SECONDS]       build dir: $GF_FUZZ_BUILD (default ./build-fuzz)
# Crash inputs are kept in $build/fuzz_artifacts/; replay one with: $build/tests/<target> <file>.
set -euo pipefail
seconds=${1:-60}
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${GF_FUZZ_BUILD:-$root/build-fuzz}"
targets=(fuzz_safetensors fuzz_gguf fuzz_tokenizer_json fuzz_tokenizer_text fuzz_hf_checkpoint)

CC=clang CXX=clang++ cmake -B "$build" -S "$root" -DGPTFAST_FUZZ=ON -DGPTFAST_CUDA=OFF -DGPTFAST_NATIVE=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"${GF_FUZZ_JOBS:-2}" --target "${targets[@]}"
seeds="$build/tests/fuzz_seeds"
python3 "$root/tests/fuzz/make_seeds.py" "$seeds"

failed=()
for t in "${targets[@]}"; do
  corpus="$build/fuzz_corpus/$t" artifacts="$build/fuzz_artifacts/$t/"
  mkdir -p "$corpus" "$artifacts"
  echo "== $t: ${seconds}s" >&2
  # New inputs go to the first dir (kept between runs); seeds are read from the second.
  if "$build/tests/$t" "$corpus" "$seeds/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="$artifacts" -print_final_stats=1 >"$build/fuzz_artifacts/$t.log" 2>&1; then
    grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "$build/fuzz_artifacts/$t.log" >&2 || true
  else
    failed+=("$t")
    grep -E "ERROR|SUMMARY|Test unit written|property violated|fuzz:" "$build/fuzz_artifacts/$t.log" | head -n 8 >&2 || true
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]} (logs and inputs in $build/fuzz_artifacts/)" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets clean for ${seconds}s each" >&2
