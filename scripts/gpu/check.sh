#!/usr/bin/env bash
# Run on the GPU machine from the repository root, with build/gpu-bundle
# carried (scripts/gpu/prepare.sh makes it). Builds the runtime there (CMake
# and nvcc, no MLIR), lists the GPU, runs every bundled model on the GPU and
# on the CPU and compares them, and runs compute-sanitizer once. Prints one
# line per model and ends with "N passed, N failed".
#
# Comparison: greedy generation of 16 tokens must be identical (the test
# models are fp32, whose CUDA kernels compute in f32 like the CPU's; bf16
# models would instead be compared on logits within 2^-7 relative, the
# bf16 rounding step, which the bench scripts do).
#   scripts/gpu/check.sh [OUT_DIR]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUNDLE="$ROOT/build/gpu-bundle"
OUT="${1:-${OUT:-/tmp/kiln-gpu}}"
mkdir -p "$OUT"
[[ -d "$BUNDLE/models" ]] || { echo "no $BUNDLE: run scripts/gpu/prepare.sh first" >&2; exit 2; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw --format=csv | tee "$OUT/gpu.txt"
cmake -S "$ROOT/runtime" -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=OFF \
  -DKILN_JSON_INCLUDE_DIR="$BUNDLE/include" -DKILN_CLI11_INCLUDE_DIR="$BUNDLE/include" \
  > "$OUT/cmake.log" 2>&1 || { tail -n 30 "$OUT/cmake.log"; exit 1; }
cmake --build "$OUT/build" -j "$(nproc)" > "$OUT/build.log" 2>&1 || { tail -n 30 "$OUT/build.log"; exit 1; }
RUN="$OUT/build/kiln-run"
"$RUN" --list-devices | tee "$OUT/devices.txt"

passed=0
failed=0
for art in "$BUNDLE"/models/*.kiln; do
  n="$(basename "$art" .kiln)"
  args=(--prompt-ids 1,15,43,86,92 --prompt-ids 1,45,96 --max-new-tokens 16 --ignore-eos --json)
  if ! "$RUN" "$art" "${args[@]}" --device cpu > "$OUT/$n.cpu.json" 2> "$OUT/$n.cpu.err"; then
    echo "FAIL $n: cpu run: $(tail -n 1 "$OUT/$n.cpu.err")"; failed=$((failed + 1)); continue
  fi
  if ! "$RUN" "$art" "${args[@]}" --device cuda > "$OUT/$n.cuda.json" 2> "$OUT/$n.cuda.err"; then
    echo "FAIL $n: cuda run: $(tail -n 1 "$OUT/$n.cuda.err")"; failed=$((failed + 1)); continue
  fi
  if python3 - "$OUT/$n.cpu.json" "$OUT/$n.cuda.json" <<'PY'
import json, sys
cpu, gpu = (json.load(open(p)) for p in sys.argv[1:3])
a = [s["generated_ids"] for s in cpu["sequences"]]
b = [s["generated_ids"] for s in gpu["sequences"]]
print(f"  device: {gpu['device']} ({gpu['device_reason']})")
sys.exit(0 if a == b and gpu["device"] == "cuda" else 1)
PY
  then
    echo "ok   $n"; passed=$((passed + 1))
  else
    echo "FAIL $n: GPU tokens differ from the CPU's (or it did not run on cuda)"; failed=$((failed + 1))
  fi
done

# One run under compute-sanitizer's memcheck (out-of-bounds, misaligned and
# uninitialized device accesses, leaks of device memory).
first="$(ls "$BUNDLE"/models/*.kiln | head -n 1)"
if command -v compute-sanitizer > /dev/null; then
  if compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 \
      "$RUN" "$first" --prompt-ids 1,2,3 --max-new-tokens 4 --device cuda > "$OUT/sanitizer.log" 2>&1; then
    echo "ok   compute-sanitizer memcheck on $(basename "$first")"; passed=$((passed + 1))
  else
    echo "FAIL compute-sanitizer on $(basename "$first"):"; tail -n 20 "$OUT/sanitizer.log"
    failed=$((failed + 1))
  fi
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
