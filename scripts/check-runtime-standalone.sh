#!/usr/bin/env bash
# Checks that the runtime builds with the compiler switched off (no LLVM/MLIR
# on the include path), that its tests pass there, that the installed
# package is usable from C through pkg-config and from CMake, and that the
# embedding example (examples/generate) builds against the install alone.
#
#   scripts/check-runtime-standalone.sh WORK_DIR [ARTIFACT.kiln]
#
# With an artifact (the argument, or KILN_EXAMPLE_ARTIFACT), or with
# KILN_COMPILE naming kiln-compile (the bundled Llama fixture is then compiled
# into WORK_DIR), the example also generates 8 tokens for KILN_EXAMPLE_PROMPT
# (default 1,15,43,186,92) and its output is checked.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:?usage: $0 WORK_DIR [ARTIFACT.kiln]}"
ARTIFACT="${2:-${KILN_EXAMPLE_ARTIFACT:-}}"
mkdir -p "$OUT"
cmake -S "$ROOT" -B "$OUT/build" -G Ninja -DKILN_BUILD_COMPILER=OFF \
  -DCMAKE_INSTALL_PREFIX="$OUT/prefix" >/dev/null
ninja -C "$OUT/build" ${KILN_JOBS:+-j "$KILN_JOBS"} >/dev/null
if grep -q -- "-I/usr/lib/llvm\|llvm-22" "$OUT/build/compile_commands.json"; then
  echo "error: the runtime build sees LLVM/MLIR include paths" >&2
  exit 1
fi
ctest --test-dir "$OUT/build" --output-on-failure >/dev/null
cmake --install "$OUT/build" >/dev/null

# A C consumer through pkg-config.
cat > "$OUT/consumer.c" <<'C'
#include <stdio.h>
#include <string.h>
#include "kiln/runtime/api.h"
int main(void) {
  int64_t shape[2] = {3, 5};
  uint64_t bytes = 0;
  kiln_status_t s = kiln_dtype_storage_size(KILN_DTYPE_I4, shape, 2, &bytes);
  if (s || bytes != 9) { kiln_status_free(s); return 1; }
  printf("kiln runtime %s: i4[3,5] = %llu bytes\n", kiln_runtime_version_string(),
         (unsigned long long)bytes);
  return strcmp(kiln_dtype_name(KILN_DTYPE_BF16), "bf16") != 0;
}
C
export PKG_CONFIG_PATH="$OUT/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
cc -std=c99 -Wall -Werror "$OUT/consumer.c" -o "$OUT/consumer" $(pkg-config --cflags --libs kiln-runtime) \
  -Wl,-rpath,"$OUT/prefix/lib"
"$OUT/consumer"

# A CMake consumer through find_package(KilnRuntime).
mkdir -p "$OUT/cmake-consumer"
cat > "$OUT/cmake-consumer/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(consumer C)
find_package(KilnRuntime 0.1 REQUIRED)
add_executable(consumer ../consumer.c)
target_link_libraries(consumer PRIVATE Kiln::runtime)
CM
cmake -S "$OUT/cmake-consumer" -B "$OUT/cmake-consumer/build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$OUT/prefix" >/dev/null
ninja -C "$OUT/cmake-consumer/build" >/dev/null
"$OUT/cmake-consumer/build/consumer"

# The embedding example, configured and built against the install prefix
# only. Neither its compile nor its link line may name LLVM or MLIR.
EX="$OUT/example-generate"
rm -rf "$EX"
cmake -S "$ROOT/examples/generate" -B "$EX" -G Ninja -DCMAKE_PREFIX_PATH="$OUT/prefix" \
  -DCMAKE_C_FLAGS=-Werror -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
ninja -C "$EX" >/dev/null
# (The checkout's and work folder's own paths are left out of the search.)
no_llvm() {
  local what="$1"; shift
  local found
  found="$("$@" | sed -e "s#$OUT##g" -e "s#$ROOT##g" | grep -iE "llvm|mlir" || true)"
  if [[ -n "$found" ]]; then
    echo "error: LLVM/MLIR in the example's $what:" >&2
    echo "$found" >&2
    exit 1
  fi
}
no_llvm "compile and link lines" ninja -C "$EX" -t commands generate
no_llvm "compile database" cat "$EX/compile_commands.json"
no_llvm "shared-library dependencies" ldd "$EX/generate"
# Usage errors exit 2; runtime errors print the status text and exit 1.
rc=0; "$EX/generate" >/dev/null 2>&1 || rc=$?
[[ $rc -eq 2 ]] || { echo "error: generate without arguments exited $rc, not 2" >&2; exit 1; }
rc=0; "$EX/generate" "$OUT/missing.kiln" 1,2 >/dev/null 2>"$EX/err.txt" || rc=$?
if [[ $rc -ne 1 ]] || ! grep -q "^error: loading the model: NOT_FOUND: " "$EX/err.txt"; then
  echo "error: generate on a missing artifact exited $rc with:" >&2
  cat "$EX/err.txt" >&2
  exit 1
fi

if [[ -z "$ARTIFACT" && -n "${KILN_COMPILE:-}" ]]; then
  ARTIFACT="$EX/llama-genai-int4.kiln"
  "$KILN_COMPILE" "$ROOT/test/Import/fixtures/llama-genai-int4/model.onnx" -o "$ARTIFACT" --quiet
fi
if [[ -n "$ARTIFACT" ]]; then
  "$EX/generate" "$ARTIFACT" "${KILN_EXAMPLE_PROMPT:-1,15,43,186,92}" 8 > "$EX/out.txt"
  if ! grep -qE "^generated \(8 tokens, stopped by max_new_tokens\):( [0-9]+){8}$" "$EX/out.txt" &&
     ! grep -qE "^generated \([1-8] tokens, stopped by eos\):( [0-9]+)+$" "$EX/out.txt"; then
    echo "error: generate printed no generated tokens:" >&2
    cat "$EX/out.txt" >&2
    exit 1
  fi
  if ! grep -qE "^timing: prefill [0-9.]+ ms" "$EX/out.txt"; then
    echo "error: generate printed no timings:" >&2
    cat "$EX/out.txt" >&2
    exit 1
  fi
  echo "example generate: $(grep '^generated' "$EX/out.txt")"
else
  echo "example generate: built (no artifact given, not run)"
fi
echo "runtime standalone: ok"
