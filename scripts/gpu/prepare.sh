#!/usr/bin/env bash
# Run here (the build machine): compiles every test model for the CUDA target
# and gathers what the GPU machine needs, which has CMake and nvcc but no
# MLIR and no Debian -dev packages, into build/gpu-bundle (carried by the
# device tool; a few MB):
#   models/<name>.kiln    artifacts with CUDA kernels (and their CPU launches)
#   include/              nlohmann/json.hpp and CLI/ for building kiln-run
#   MANIFEST.txt          what was built, by which compiler, when
#   scripts/gpu/prepare.sh [BUILD_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-$ROOT/build}"
OUT="$BUILD/gpu-bundle"
rm -rf "$OUT"
mkdir -p "$OUT/models" "$OUT/include"
cp -r /usr/include/nlohmann "$OUT/include/"
cp -r /usr/include/CLI "$OUT/include/"
for m in "$ROOT"/test/Import/fixtures/*/model.onnx; do
  n="$(basename "$(dirname "$m")")"
  "$BUILD/bin/kiln-compile" "$m" --target=cuda --fuse-elementwise --quiet -o "$OUT/models/$n.kiln"
done
{
  echo "kiln $(git -C "$ROOT" rev-parse --short HEAD) built $(date -u +%FT%TZ)"
  "$BUILD/bin/kiln-compile" --version 2>&1 | head -n 3 || true
  ls -l "$OUT/models"
} > "$OUT/MANIFEST.txt"
du -sh "$OUT"
