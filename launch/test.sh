#!/usr/bin/env bash
# The whole test suite from a fresh clone: dependencies (Debian/Ubuntu packages, test-only Python tools),
# the real SmolLM2 model its tests use, a Release build (CUDA compiled when nvcc exists), then every test
# that needs no GPU. GPU tests carry the ctest label `gpu`: run them on a GPU machine with
#   ctest --test-dir build -L gpu --output-on-failure
set -euo pipefail
cd "$(dirname "$0")/.."
launch/install_deps.sh --test-tools
launch/fetch_smollm2.sh >/dev/null
if [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH=/usr/local/cuda/bin:$PATH; fi
if [[ $(id -u) == 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
cmake -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
ctest --test-dir build -LE gpu --output-on-failure -j"$(nproc)"
