//===- Cuda.h - CUDA kernels for kiln ops, compiled with NVRTC -*- C++ -*-===//
//
// The CUDA target's back end: for each launch it instantiates a template of
// the kernel library (lib/Codegen/cuda/kiln/*.cuh), or generates the code of
// a fused elementwise chain, and NVRTC compiles every distinct kernel to a
// cubin per requested architecture plus PTX for newer GPUs. Compiled images
// are cached on disk by a hash of everything that determines them, so an
// unchanged kernel is never compiled twice.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_CODEGEN_CUDA_H
#define KILN_CODEGEN_CUDA_H

#include "mlir/IR/Operation.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mlir::kiln::cuda {

/// One kernel to compile: a translation unit with one extern "C" entry.
struct KernelSource {
  std::string entry;  // the __global__ function's name
  std::string source; // CUDA C++ that includes the kernel library
  std::string op;     // the kiln op it implements
  int block = 256;    // threads per block (1-D)
  /// How the runtime sizes the grid, e.g. {"rule": "rows", "cols": 4096}.
  llvm::json::Object grid;
};

/// The kernel for `op` with its operand shapes and dtypes, or std::nullopt
/// with `*why` saying why the library has none (an op without a template, a
/// dynamic normalized dimension, an unsupported dtype).
std::optional<KernelSource> generateKernel(Operation *op, std::string *why);

/// What ptxas reports for one entry on one architecture.
struct Resources {
  int registers = 0;
  int64_t spillStoreBytes = 0, spillLoadBytes = 0;
  int64_t sharedBytes = 0; // static shared memory
  int64_t stackBytes = 0;
  int64_t constantBytes = 0;
};

struct Image {
  std::string arch;   // "sm_90a", or "compute_90" for PTX
  bool ptx = false;
  std::string bytes;
  Resources resources; // cubins only
  bool fromCache = false;
};

struct CompileOptions {
  std::vector<std::string> archs = {"sm_80", "sm_89", "sm_90a"};
  /// The virtual architecture of the PTX that goes along ("compute_90"), or
  /// empty for none.
  std::string ptxArch = "compute_90";
  /// Where compiled images are kept; empty disables the cache.
  std::string cacheDir;
  /// Limits each cubin is checked against.
  int64_t maxSpillBytes = 0;
  int maxRegisters = 255;
  /// Called as each image that was not in the cache finishes compiling
  /// (done so far, total jobs, its kernel), one call at a time.
  std::function<void(size_t index, size_t count, const KernelSource &)> progress;
};

struct CompileStats {
  size_t images = 0, compiled = 0, cached = 0;
  double ms = 0;
};

/// Compiles every kernel for every architecture (in parallel), checking each
/// cubin's resources against the limits. The result has one vector of
/// images per kernel, in `options.archs` order and then the PTX.
llvm::Expected<std::vector<std::vector<Image>>>
compileKernels(const std::vector<KernelSource> &kernels, const CompileOptions &options,
               CompileStats *stats);

/// "13.0": the NVRTC this compiler links.
std::string nvrtcVersion();

/// The default cache folder: $KILN_KERNEL_CACHE, else
/// $XDG_CACHE_HOME/kiln/kernels, else ~/.cache/kiln/kernels.
std::string defaultCacheDir();

/// Parses ptxas' verbose log (-Xptxas -v) for `entry`.
std::optional<Resources> parsePtxasLog(llvm::StringRef log, llvm::StringRef entry);

} // namespace mlir::kiln::cuda

#endif // KILN_CODEGEN_CUDA_H
