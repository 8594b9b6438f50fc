#!/usr/bin/env bash
# gptfast-shard from the outside (RELIABILITY tests 8-10 and the CLI contract), on tiny HF checkpoints.
#   cli_cases.sh GPTFAST_SHARD MAKE_TINY_LLAMA_PY CASE
# CASE: basics | variants | crash_resume | disk_full | verify_flip
set -u
SHARD=$1
MAKE=$2
CASE=$3
WORK=$(mktemp -d /tmp/gf_cli_XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL ($CASE): $*" >&2; exit 1; }
# One error line on stderr, starting with "gptfast-shard: error:".
one_error_line() {
  local n
  n=$(grep -c . "$1")
  [ "$n" -eq 1 ] || { cat "$1" >&2; fail "expected one stderr line, got $n"; }
  grep -q "^gptfast-shard: error: " "$1" || { cat "$1" >&2; fail "no error line"; }
}
ckpt() { python3 "$MAKE" --out "$WORK/ckpt-$1" --variant "$1" ${2:+--shards $2} >/dev/null || fail "make_tiny_llama $1"; }

case "$CASE" in
basics)
  "$SHARD" --help | grep -q -- "--group-size" || fail "--help"
  "$SHARD" --version | grep -q "gptfast-shard" || fail "--version"
  "$SHARD" --bogus 2>"$WORK/err" && fail "unknown option accepted"
  one_error_line "$WORK/err"
  ckpt gqa
  "$SHARD" -q --from "$WORK/ckpt-gqa" --model m --model-dir "$WORK/store" --tp 5 2>"$WORK/err" && fail "tp=5 accepted"
  one_error_line "$WORK/err"
  grep -q "tp=5" "$WORK/err" || fail "tp message"
  [ ! -e "$WORK/store/m/tp5-bf16" ] || fail "refused run left a directory"
  "$SHARD" -q --from "$WORK/ckpt-gqa" --model m --model-dir "$WORK/store" --tp 2 --int8 || fail "shard"
  cp -r "$WORK/ckpt-gqa" "$WORK/bad" && printf 'x' >>"$WORK/bad/model.safetensors"  # trailing byte
  "$SHARD" -q --from "$WORK/bad" --model bad --model-dir "$WORK/store" 2>"$WORK/err" && fail "bad safetensors accepted"
  one_error_line "$WORK/err"
  grep -q "model.safetensors.*trailing" "$WORK/err" || fail "safetensors message"
  [ ! -e "$WORK/store/bad" ] || fail "output written for a bad checkpoint"
  cp "$WORK/ckpt-gqa/model.safetensors" "$WORK/bad/"  # now a merge over tokens not in the vocab
  python3 -c "import json,sys; p=sys.argv[1]; t=json.load(open(p)); t['model']['merges'].insert(0, ['qqqq', 'zzzz']); json.dump(t, open(p,'w'))" \
    "$WORK/bad/tokenizer.json"
  "$SHARD" -q --from "$WORK/bad" --model bad --model-dir "$WORK/store" 2>"$WORK/err" && fail "bad tokenizer accepted"
  one_error_line "$WORK/err"
  grep -q "tokenizer" "$WORK/err" || fail "tokenizer message"
  [ ! -e "$WORK/store/bad" ] || fail "output written for a bad tokenizer"
  "$SHARD" -q --from "$WORK/ckpt-gqa" --model m --model-dir "$WORK/store" --tp 2 --int8 2>"$WORK/err" && fail "overwrote"
  one_error_line "$WORK/err"
  grep -q -- "--force" "$WORK/err" || fail "no --force hint"
  "$SHARD" -q --from "$WORK/ckpt-gqa" --model m --model-dir "$WORK/store" --tp 2 --int8 --force || fail "--force"
  GPTFAST_MODEL_DIR="$WORK/env" "$SHARD" -q --from "$WORK/ckpt-gqa" --model m --int4 --group-size 64 || fail "env store"
  [ -f "$WORK/env/m/tp1-int4g64/manifest.json" ] || fail "GPTFAST_MODEL_DIR not used"
  ;;
variants)  # every tiny variant, sharded several ways, verifies clean; runs are byte-for-byte reproducible
  for v in mha gqa tied llama3; do
    ckpt $v 2
    for args in "--tp 1" "--tp 2 --int8" "--tp 1 --int4 --group-size 64" "--tp 2 --int4 --group-size 32"; do
      "$SHARD" -q --from "$WORK/ckpt-$v" --model $v --model-dir "$WORK/store" $args || fail "$v $args"
    done
    if [ $v = gqa ]; then  # 2 heads of 32 per rank: rank 1's columns start mid-way through a group of 128
      "$SHARD" -q --from "$WORK/ckpt-$v" --model $v --model-dir "$WORK/store" --tp 2 --int4 --group-size 128 \
        2>"$WORK/err" && fail "gqa int4g128 tp=2 not refused"
      one_error_line "$WORK/err"
      grep -q "group-size" "$WORK/err" || fail "no --group-size hint"
    fi
    for d in "$WORK/store/$v"/*; do "$SHARD" --verify "$d" 2>/dev/null || fail "verify $d"; done
  done
  "$SHARD" -q --from "$WORK/ckpt-gqa" --model gqa --model-dir "$WORK/again" --tp 2 --int8 || fail "again"
  cmp -s "$WORK/store/gqa/tp2-int8/rank1.h5" "$WORK/again/gqa/tp2-int8/rank1.h5" || fail "not reproducible"
  ;;
crash_resume)  # test 8: SIGKILL mid-run -> no manifest, refused; --resume completes it
  ckpt gqa
  GPTFAST_SHARD_KILL_AFTER=7 "$SHARD" -q --from "$WORK/ckpt-gqa" --model m --model-dir "$WORK/store" --tp 2
  rc=$?
  [ $rc -eq 137 ] || fail "expected death by SIGKILL, rc=$rc"
  D="$WORK/store/m/tp2-bf16"
  [ ! -e "$D/manifest.json" ] || fail "manifest after a crash"
  [ ! -e "$D/rank0.h5" ] || fail "a rank file looks complete after a crash"
  "$SHARD" --verify "$D" 2>"$WORK/err" && fail "verify accepted an incomplete set"
  grep -q "no manifest.json" "$WORK/err" || fail "verify message"
  "$SHARD" -q --from "$WORK/ckpt-gqa" --model m --model-dir "$WORK/store" --tp 2 2>"$WORK/err" && fail "rerun without --resume"
  grep -q -- "--resume" "$WORK/err" || fail "no --resume hint"
  "$SHARD" -q --from "$WORK/ckpt-gqa" --model m --model-dir "$WORK/store" --tp 2 --resume || fail "resume"
  "$SHARD" --verify "$D" || fail "verify after resume"
  ls "$D" | grep -q tmp && fail "tmp files left"
  "$SHARD" -q --from "$WORK/ckpt-gqa" --model m --model-dir "$WORK/clean" --tp 2 || fail "clean run"
  cmp -s "$D/rank0.h5" "$WORK/clean/m/tp2-bf16/rank0.h5" || fail "resumed output differs from a clean run"
  ;;
disk_full)  # test 9: a file size limit mid-write -> one line, non-zero, no manifest, no partial files
  ckpt gqa
  prlimit --fsize=120000 "$SHARD" -q --from "$WORK/ckpt-gqa" --model m --model-dir "$WORK/store" --tp 2 2>"$WORK/err"
  rc=$?
  [ $rc -eq 1 ] || fail "expected exit 1, got $rc"
  one_error_line "$WORK/err"
  D="$WORK/store/m/tp2-bf16"
  [ ! -e "$D/manifest.json" ] || fail "manifest written"
  ls "$D" | grep -q "h5" && fail "partial rank files left: $(ls "$D")"
  true
  ;;
verify_flip)  # test 10: one byte flipped -> --verify names the file, non-zero
  ckpt gqa
  "$SHARD" -q --from "$WORK/ckpt-gqa" --model m --model-dir "$WORK/store" --tp 2 || fail "shard"
  D="$WORK/store/m/tp2-bf16"
  python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=1; open(p,'wb').write(b)" "$D/rank1.h5"
  "$SHARD" --verify "$D" 2>"$WORK/err" && fail "verify passed a damaged file"
  grep -q "rank1.h5.*hash differs" "$WORK/err" || { cat "$WORK/err" >&2; fail "message does not name rank1.h5"; }
  grep -q "rank0.h5" "$WORK/err" && fail "blamed the good file"
  true
  ;;
*) fail "unknown case" ;;
esac
echo "ok: $CASE"
