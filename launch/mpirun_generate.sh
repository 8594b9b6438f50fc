#!/usr/bin/env bash
# One node, N GPUs (or N CPU ranks): mpirun with one rank per GPU.
#   launch/mpirun_generate.sh 8 --model llama-2-70b --int8 --prompt "..."
set -euo pipefail
n=${1:?usage: mpirun_generate.sh NRANKS gptfast-tp-args...}; shift
here=$(cd "$(dirname "$0")/.." && pwd)
[[ $(id -u) == 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export NCCL_NVLS_ENABLE=0  # never NVLink multicast
env_args=(-x NCCL_NVLS_ENABLE)
[[ -n ${GPTFAST_MODEL_DIR:-} ]] && env_args+=(-x GPTFAST_MODEL_DIR)
exec mpirun -np "$n" --bind-to none "${env_args[@]}" "$here/build/gptfast-tp" "$@"
