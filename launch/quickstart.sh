#!/usr/bin/env bash
# From a fresh clone to a chat answer: installs dependencies, builds, fetches SmolLM2-135M-Instruct (GGUF),
# shards it for tp=2 and runs it under mpirun with two ranks. Re-running skips what is already done.
#   launch/quickstart.sh ["your prompt"]
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-"What is the capital of France? Answer in one sentence."}
launch/install_deps.sh
if [[ ! -x build/gptfast-tp || ! -x build/gptfast-shard ]]; then
  cmake -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)" --target gptfast-tp gptfast-shard
fi
gguf=$(launch/fetch_smollm2.sh)
if [[ ! -f models/smollm2-135m/tp2-bf16/manifest.json ]]; then
  build/gptfast-shard --from "$gguf" --model smollm2-135m --model-dir models --tp 2
fi
[[ $(id -u) == 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -np 2 --oversubscribe build/gptfast-tp --model smollm2-135m --model-dir models --chat \
  --max-new-tokens 128 --prompt "$prompt"
