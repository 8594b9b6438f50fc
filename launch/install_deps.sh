#!/usr/bin/env bash
# Installs the build and test dependencies from Debian/Ubuntu packages (and the test-only Python tools).
# Skips what is already there; needs root (or sudo) only when something is missing.
set -euo pipefail
pkgs=(cmake g++ make libopenmpi-dev openmpi-bin libhdf5-dev libboost-program-options-dev libgtest-dev
      nlohmann-json3-dev libpcre2-dev libxxhash-dev python3 python3-pip unzip)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [[ ${1:-} == --test-tools ]]; then
  py_pkgs=(numpy safetensors tokenizers gguf jinja2 h5py)
  python3 -c "import numpy, safetensors, tokenizers, gguf, jinja2, h5py" 2>/dev/null ||
    python3 -m pip install -q "${py_pkgs[@]}" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "${py_pkgs[@]}"
fi
