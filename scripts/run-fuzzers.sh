#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each on a
# seed corpus of generated models: a fixed number of mutations from a fixed
# seed, SECONDS capping each target's time. A run is not bit-reproducible
# (libFuzzer's exploration also depends on timing and on process state), so
# a finding prints everything needed to replay it: the sanitizer report and
# the input itself (base64), which `base64 -d > crash && <fuzzer> crash`
# reruns. Exit 0 when no input crashed, hung or tripped a sanitizer.
#   scripts/run-fuzzers.sh [SECONDS] [RUNS]
# KILN_FUZZ_SEED=random explores with a fresh seed each run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${KILN_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
SECONDS_PER_TARGET="${1:-60}"
RUNS="${2:-300000}"
SEED="${KILN_FUZZ_SEED:-20261122}"
[[ "$SEED" == random ]] && SEED=0  # libFuzzer: 0 picks a seed itself
JOBS="${KILN_JOBS:-$(nproc)}"

if [[ ! -f "$BUILD/build.ninja" ]]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
    -DKILN_ENABLE_FUZZING=ON -DKILN_BUILD_TESTS=OFF >/dev/null
fi
ninja -C "$BUILD" -j "$JOBS" kiln-import-fuzzer kiln-artifact-fuzzer kiln-manifest-fuzzer >/dev/null

work="$(mktemp -d)"
# Inputs that crash are kept in the build folder for reproduction.
trap 'mkdir -p "$BUILD/fuzz-crashes"; cp "$work"/artifacts/* "$BUILD/fuzz-crashes/" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
for model in $(python3 "$ROOT/test/Import/gen_models.py" --list); do
  python3 "$ROOT/test/Import/gen_models.py" "$model" "$work/models/$model"
  cp "$work/models/$model/model.onnx" "$work/corpus/$model.onnx"
done

# Seed artifacts, encoded from the documented layout.
mkdir -p "$work/artifacts-corpus"
python3 - "$work/artifacts-corpus" <<'PY'
import struct, sys
def artifact(sections):
    out = bytearray(64)
    entries = []
    for kind, align_log2, data in sections:
        a = 1 << align_log2
        out += b"\0" * ((-len(out)) % a)
        entries.append((kind, align_log2, len(out), len(data)))
        out += data
    out += b"\0" * ((-len(out)) % 8)
    table = len(out)
    for e in entries:
        out += struct.pack("<IIQQQ", *e, 0)
    out[0:32] = b"KILN" + struct.pack("<HHIIQQ", 1, 0, 64, len(entries), table, len(out))
    return bytes(out)
seeds = [artifact([]), artifact([(1, 3, b'{"model": "x"}'), (2, 12, bytes(range(256)) * 4)]),
         artifact([(1, 0, b"{}"), (3, 7, b"\x7fELF" * 10)])]
for i, s in enumerate(seeds):
    open(f"{sys.argv[1]}/seed{i}.kiln", "wb").write(s)
PY

# Seed manifests: what kiln-compile writes for real models (when the main
# build has it), plus a minimal valid one.
mkdir -p "$work/manifest-corpus"
KILN_COMPILE="${KILN_COMPILE:-$ROOT/build/bin/kiln-compile}"
if [[ -x "$KILN_COMPILE" ]]; then
  for fx in llama-genai-int4 gpt2-dynamo phi3-torchscript; do
    "$KILN_COMPILE" "$ROOT/test/Import/fixtures/$fx/model.onnx" --emit=manifest \
      --quiet -o "$work/manifest-corpus/$fx.json" 2>/dev/null || true
  done
fi
cat > "$work/manifest-corpus/minimal.json" <<'JSON'
{"format":"kiln-manifest","schema_version":1,"target":"cpu","model":{"generation":false},
 "inputs":[{"name":"x","value":0,"dtype":"f32","shape":[-1,4],"role":"input"}],
 "outputs":[{"name":"y","value":1,"dtype":"f32","shape":[-1,4],"role":"output"}],
 "weights":[],"memory_plan":{"alignment":64,"arena_bytes":0,"slots":1},
 "values":[{"kind":"input","dtype":"f32","shape":[-1,4]},{"kind":"temp","dtype":"f32","shape":[-1,4],"slot":0}],
 "launches":[{"op":"neg","in":[0],"out":[1]}]}
JSON

# The installed LLVM is not instrumented while the inlined LLVM allocator
# code in ours is; its manual poisoning would report false positives.
export ASAN_OPTIONS="allow_user_poisoning=0:detect_leaks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# Runs one fuzzer; on a finding prints its report and the inputs it saved.
fuzz() {
  local name="$1"; shift
  local log="$work/$name.log"
  if "$@" >"$log" 2>&1; then
    tail -n 8 "$log"
    return 0
  fi
  echo "=== $name: finding; the fuzzer's report follows ==="
  # The report starts at the sanitizer's or libFuzzer's first error line.
  awk '/^==[0-9]+==ERROR|runtime error:|^==[0-9]+== ERROR: libFuzzer|deadly signal/ {p=1} p' "$log" | head -n 200
  for f in "$work"/artifacts/*; do
    [[ -f "$f" ]] || continue
    echo "=== input $(basename "$f") ($(stat -c %s "$f") bytes), base64: ==="
    base64 -w 0 "$f" | head -c 65536
    echo
  done
  return 1
}
echo "fuzzing kiln-import: $RUNS runs from seed $SEED (at most ${SECONDS_PER_TARGET}s)"
fuzz kiln-import "$BUILD/bin/kiln-import-fuzzer" -seed="$SEED" -runs="$RUNS" \
  -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
  -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  "$work/corpus"
echo "fuzzing the artifact reader: $((RUNS * 10)) runs from seed $SEED (at most ${SECONDS_PER_TARGET}s)"
fuzz artifact-reader "$BUILD/bin/kiln-artifact-fuzzer" -seed="$SEED" -runs="$((RUNS * 10))" \
  -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
  -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  "$work/artifacts-corpus"
echo "fuzzing the manifest decoder: $((RUNS * 2)) runs from seed $SEED (at most ${SECONDS_PER_TARGET}s)"
fuzz manifest-decoder "$BUILD/bin/kiln-manifest-fuzzer" -seed="$SEED" -runs="$((RUNS * 2))" \
  -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
  -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  "$work/manifest-corpus"
