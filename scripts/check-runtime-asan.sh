#!/usr/bin/env bash
# Builds the runtime alone with AddressSanitizer, LeakSanitizer and UBSan
# (clang-14) and runs its tests and kiln-run on a compiled model, including
# the error paths (corrupt and truncated artifacts, bad tokens, a full KV
# cache): every error must come back as a status, with no sanitizer report
# and no leak.
#   scripts/check-runtime-asan.sh KILN_COMPILE
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${KILN_ASAN_BUILD_DIR:-$ROOT/build-asan}"
KILN_COMPILE="${1:?usage: $0 path/to/kiln-compile}"
JOBS="${KILN_JOBS:-$(nproc)}"
# -fno-sanitize=enum: the C API takes enums that C callers may fill with any
# integer, and the runtime (and its tests) check for out-of-range codes on
# purpose; UBSan's C++-only enum-range check would flag exactly that check.
SAN="-fsanitize=address,undefined -fno-sanitize=enum -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

if [[ ! -f "$BUILD/build.ninja" ]]; then
  cmake -S "$ROOT/runtime" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
    -DCMAKE_C_FLAGS="$SAN" -DCMAKE_CXX_FLAGS="$SAN" \
    -DCMAKE_EXE_LINKER_FLAGS="$SAN" -DCMAKE_SHARED_LINKER_FLAGS="$SAN" \
    -DCMAKE_RUNTIME_OUTPUT_DIRECTORY="$BUILD/bin" >/dev/null
fi
ninja -C "$BUILD" -j "$JOBS" kiln-runtime-tests kiln-runtime-kernel-tests kiln-run | grep -E "error|FAILED" -A5 || true
[[ -x "$BUILD/bin/kiln-run" ]] || { echo "the sanitizer build failed"; exit 1; }

# A sanitizer finding exits 86, distinct from kiln-run's own error exit 1.
# allocator_may_return_null: the out-of-memory tests need malloc to fail
# rather than abort.
export ASAN_OPTIONS="detect_leaks=1:exitcode=86:abort_on_error=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fail=0
"$BUILD/bin/kiln-runtime-tests" --gtest_brief=1 >/dev/null || { echo "FAIL runtime tests under ASan"; fail=1; }
"$BUILD/bin/kiln-runtime-kernel-tests" --gtest_brief=1 >/dev/null || { echo "FAIL kernel tests under ASan"; fail=1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$KILN_COMPILE" "$ROOT/test/Import/fixtures/llama-genai-int4/model.onnx" -o "$work/m.kiln" --quiet
"$KILN_COMPILE" "$ROOT/test/Import/fixtures/gpt2-torchscript/model.onnx" -o "$work/g.kiln" --quiet
# A windowed KV cache (generation past its 16-token window) and packed
# weights (fused q/k/v and gate/up, built at load).
"$KILN_COMPILE" "$ROOT/test/Import/fixtures/gemma2-genai-int4/model.onnx" -o "$work/w.kiln" --quiet
"$KILN_COMPILE" "$ROOT/test/Import/fixtures/llama-torchscript/model.onnx" -o "$work/p.kiln" --quiet
# Paged and quantized KV caches (int4 packed, blocks of 3 tokens; fp8 paged).
"$KILN_COMPILE" "$ROOT/test/Import/fixtures/qwen2-torchscript/model.onnx" -o "$work/kv4.kiln" --quiet \
  --kv-dtype=int4 --kv-group=8 --kv-layout=paged:3
"$KILN_COMPILE" "$ROOT/test/Import/fixtures/llama-genai-int4/model.onnx" -o "$work/kv8.kiln" --quiet \
  --kv-dtype=fp8 --kv-layout=paged:16
# Continuous batching: ragged graphs with paged (int4 and f32) caches.
"$KILN_COMPILE" "$ROOT/test/Import/fixtures/qwen2-torchscript/model.onnx" -o "$work/r4.kiln" --quiet \
  --ragged --kv-dtype=int4 --kv-group=8 --kv-layout=paged:3
"$KILN_COMPILE" "$ROOT/test/Import/fixtures/llama-genai-int4/model.onnx" -o "$work/r.kiln" --quiet \
  --ragged --kv-layout=paged:4
head -c 1000 "$work/m.kiln" > "$work/trunc.kiln"
python3 - "$work" <<'PY'
import sys
w = sys.argv[1]
d = bytearray(open(f"{w}/m.kiln", "rb").read())
i = d.find(b'"launches"')
d[i + 1:i + 9] = b"xxxxxxxx"
open(f"{w}/manifest.kiln", "wb").write(d)
PY

# expect RC CMD...: runs CMD and checks its exit code and that no sanitizer
# spoke.
expect() {
  local want="$1"; shift
  local rc=0
  "$@" >"$work/out" 2>&1 || rc=$?
  if [[ $rc -ne $want ]] || grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$work/out"; then
    echo "FAIL (exit $rc, wanted $want): $*"; sed -n 1,20p "$work/out"; fail=1
  else
    echo "ok   (exit $rc): ${*#$BUILD/bin/}"
  fi
}
RUN="$BUILD/bin/kiln-run"
expect 0 "$RUN" "$work/m.kiln" --prompt-ids 1,2,3,4 --prompt-ids 5,6 --max-new-tokens 8 --threads 2
expect 0 "$RUN" "$work/g.kiln" --prompt-ids 1,2,3,4 --prompt-ids 5,6 --max-new-tokens 8 --temperature 0.7 --top-k 10 --top-p 0.9
expect 0 "$RUN" "$work/w.kiln" --prompt-ids 1,2,3,4,5,6,7,8,9,10 --prompt-ids 5,6 --max-new-tokens 24 --ignore-eos
expect 0 "$RUN" "$work/p.kiln" --prompt-ids 1,2,3,4 --prompt-ids 5,6 --max-new-tokens 8
expect 0 "$RUN" "$work/kv4.kiln" --prompt-ids 1,2,3,4,5,6,7 --prompt-ids 5,6 --max-new-tokens 12 --ignore-eos
expect 0 "$RUN" "$work/kv8.kiln" --prompt-ids 1,2,3,4 --prompt-ids 5,6 --max-new-tokens 8
expect 1 "$RUN" "$work/kv4.kiln" --prompt-ids 1,2 --max-seq-len 4 --max-new-tokens 8
# Prefix reuse: shared prompt blocks within a call and from the cache, and a
# fixed pool small enough that cached blocks are evicted; a pool too small
# for one call is an error.
P=1,2,3,4,5,6,7,8,9,10,11,12,13
expect 0 "$RUN" "$work/kv4.kiln" --prompt-ids $P,20 --prompt-ids $P,21 --max-new-tokens 6 --repeat 3
expect 0 "$RUN" "$work/kv4.kiln" --prompt-ids $P,20 --prompt-ids 9,8,7,6,5,4,3,2,1 --max-new-tokens 6 --repeat 2 --kv-blocks 16
expect 1 "$RUN" "$work/kv4.kiln" --prompt-ids $P,20 --prompt-ids $P,21 --max-new-tokens 6 --kv-blocks 4
# Preemption and recompute: three sequences in a pool that holds two.
expect 0 "$RUN" "$work/kv4.kiln" --prompt-ids 1,2,3,4,5,6 --prompt-ids 7,8,9,10,11,12 --prompt-ids 3,3,3,3,3,3 --max-new-tokens 14 --ignore-eos --kv-blocks 12
# Serving: arrivals between steps, chunked prompts, preemption in a small
# pool; a pool too small for one request is an error.
expect 0 "$RUN" "$work/r4.kiln" --serve 10 --serve-arrivals 2 --max-step-tokens 9 --kv-blocks 20
expect 0 "$RUN" "$work/r.kiln" --serve 12 --serve-arrivals 3 --max-running 4 --kv-blocks 24 --json
expect 1 "$RUN" "$work/r.kiln" --serve 2 --serve-prompt-len 20:20 --kv-blocks 3
expect 1 "$RUN" "$work/m.kiln" --serve 2
expect 1 "$RUN" "$work/trunc.kiln" --prompt-ids 1
expect 1 "$RUN" "$work/manifest.kiln" --prompt-ids 1
expect 1 "$RUN" "$work/m.kiln" --prompt-ids 1,999
expect 1 "$RUN" "$work/m.kiln" --prompt-ids 1,2 --max-new-tokens 200
expect 1 "$RUN" "$work/m.kiln" --prompt-ids 1 --max-seq-len 4 --max-new-tokens 4
if [[ $fail -ne 0 ]]; then
  echo "runtime under sanitizers: FAILED"
  exit 1
fi
echo "runtime under ASan/LSan/UBSan: tests and kiln-run clean"
