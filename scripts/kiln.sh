#!/usr/bin/env bash
# The two commands of the README, idempotent on a fresh Debian 12 machine:
#   scripts/kiln.sh run    install what is missing, build, compile the bundled
#                          model and generate tokens with it
#   scripts/kiln.sh test   install what is missing, build, run every test
# A second run installs nothing and rebuilds only what changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${KILN_BUILD_DIR:-$ROOT/build}"
JOBS="${KILN_JOBS:-$(nproc)}"

# Debian packages the build and tests use (see docs/ARCHITECTURE.md).
APT_PACKAGES=(
  cmake ninja-build ccache g++ clang-14 libclang-rt-14-dev pkg-config python3
  llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools
  libgtest-dev libgmock-dev
  libonnx-dev libprotobuf-dev protobuf-compiler
  nlohmann-json3-dev libcli11-dev
)
# Python packages the tests use to generate ONNX models and as the reference.
# onnx 1.22.0 is the last release that ships the backend node-test data.
PIP_PACKAGES=("onnx==1.22.0" "numpy" "onnxruntime==1.32.0")

log() { printf '\033[1m[kiln]\033[0m %s\n' "$*"; }

install_missing() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    log "dependencies: all ${#APT_PACKAGES[@]} Debian packages present"
    return
  fi
  log "installing: ${missing[*]}"
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_python() {
  local missing=()
  for req in "${PIP_PACKAGES[@]}"; do
    python3 - "$req" <<'PY' 2>/dev/null || missing+=("$req")
import sys
from importlib.metadata import version
name, _, wanted = sys.argv[1].partition("==")
sys.exit(0 if not wanted or version(name) == wanted else 1)
PY
  done
  if ((${#missing[@]} == 0)); then
    log "python: ${PIP_PACKAGES[*]} present"
    return
  fi
  log "pip installing: ${missing[*]}"
  python3 -m pip install -q "${missing[@]}"
}

build() {
  if [[ ! -f "$BUILD/build.ninja" ]]; then
    log "configuring $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release
  fi
  log "building with $JOBS jobs"
  ninja -C "$BUILD" -j "$JOBS"
}

cmd="${1:-}"
case "$cmd" in
  run)
    install_missing
    install_python
    build
    # The bundled default model: a 2-layer Llama written by onnxruntime-genai's
    # builder at int4 (test/Import/fixtures). KILN_MODEL picks another.
    model="${KILN_MODEL:-$ROOT/test/Import/fixtures/llama-genai-int4/model.onnx}"
    log "compiling $model for CPU (kiln-compile)"
    "$BUILD/bin/kiln-compile" "$model" -o "$BUILD/default-model.kiln"
    log "generating 16 tokens for two prompts of different lengths (kiln-run)"
    "$BUILD/bin/kiln-run" "$BUILD/default-model.kiln" --prompt-ids "${KILN_PROMPT:-1,15,43,186,92}" \
      --prompt-ids 1,45,96 --max-new-tokens "${KILN_MAX_NEW_TOKENS:-16}"
    ;;
  test)
    install_missing
    install_python
    build
    log "running every test"
    python3 "$ROOT/scripts/check.py" --build-dir "$BUILD" \
      --lit /usr/lib/llvm-22/bin/lit -j "$JOBS" \
      --extra "fuzz-import=$ROOT/scripts/run-fuzzers.sh ${KILN_FUZZ_SECONDS:-60}" \
      --extra "runtime-asan=$ROOT/scripts/check-runtime-asan.sh $BUILD/bin/kiln-compile" \
      --extra "onnx-node-tests=python3 $ROOT/scripts/onnx_node_tests.py --kiln-import $BUILD/bin/kiln-import --check $ROOT/docs/onnx-node-tests.md --per-op"
    ;;
  *)
    echo "usage: $0 run|test" >&2
    exit 2
    ;;
esac
