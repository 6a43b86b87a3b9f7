#!/usr/bin/env bash
# Checks that the runtime builds with the compiler switched off (no LLVM/MLIR
# on the include path), that its tests pass there, and that the installed
# package is usable from C through pkg-config and from CMake.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:?usage: $0 WORK_DIR}"
mkdir -p "$OUT"
cmake -S "$ROOT" -B "$OUT/build" -G Ninja -DKILN_BUILD_COMPILER=OFF \
  -DCMAKE_INSTALL_PREFIX="$OUT/prefix" >/dev/null
ninja -C "$OUT/build" >/dev/null
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
echo "runtime standalone: ok"
