//===- Compile.h - kiln IR -> .kiln artifact -----------------------*- C++ -*-===//
//
// The back half of kiln-compile: takes a module after the graph pipeline,
// checks that the target can run every op, plans memory, lays out the
// weights and writes the manifest (docs/artifact-format.md).
//
//===----------------------------------------------------------------------===//

#ifndef KILN_COMPILER_COMPILE_H
#define KILN_COMPILER_COMPILE_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mlir::kiln {

/// Where a compiled model's weights live.
enum class WeightMode {
  /// Copied into the artifact's weights section.
  Embed,
  /// Written to a separate Kiln parameter file, bound at load time and
  /// checked by name, dtype and shape.
  External,
  /// Left in the model's own files (ONNX external data) and read from there
  /// at load time; the artifact records file, offset and length.
  Reference,
};

struct CompileOptions {
  std::string target = "cpu";
  WeightMode weights = WeightMode::Embed;
  /// With WeightMode::External, the parameter file's path, and the name the
  /// manifest records for it (looked up next to the artifact by default).
  std::string paramsPath;
  /// Folder that weight locations are relative to (the model's folder).
  std::string weightsDir;
  /// The name of the function to compile.
  std::string functionName = "forward";
  /// Overrides of model metadata (unset: read from config files next to the
  /// model: genai_config.json, generation_config.json, config.json).
  std::vector<int64_t> eosTokenIds;
  std::optional<int64_t> bosTokenId;
  std::optional<int64_t> maxSequenceLength;
  /// Extra provenance for the manifest ("source" object), e.g. the input.
  std::string sourcePath;

  /// target "cuda": the real architectures to compile cubins for, the
  /// virtual one of the PTX that goes along ("" for none), the kernel cache
  /// folder ("" disables it) and the spill limit each cubin must keep.
  std::vector<std::string> cudaArchs = {"sm_80", "sm_89", "sm_90a"};
  std::string cudaPtxArch = "compute_90";
  std::string kernelCacheDir;
  int64_t cudaMaxSpillBytes = 0;
  /// Progress of kernel compilation: (images done, images to compile).
  std::function<void(size_t, size_t, llvm::StringRef entry)> kernelProgress;
};

/// One CUDA kernel in the artifact, for the report.
struct CudaKernelStats {
  std::string entry, op;
  size_t launches = 0; // launches that use it
  /// Per cubin: arch, registers, spill bytes (stores), static shared bytes.
  struct Image {
    std::string arch;
    int registers = 0;
    int64_t spillBytes = 0, sharedBytes = 0;
  };
  std::vector<Image> images;
};

/// What compileModule produced, for the tool's report.
struct CompileStats {
  size_t launches = 0;
  /// The op each launch runs, in launch order (the module's ops, valid while
  /// it lives): for tools that watch a launch's values at run time.
  std::vector<Operation *> launchOps;
  size_t values = 0;
  size_t weights = 0;
  uint64_t weightBytes = 0;
  uint64_t constantBytes = 0;
  /// Weights quantized at compile time (kiln-quantize-weights).
  uint64_t quantizedWeights = 0;
  /// Their bytes as the float weights they came from, and as stored.
  uint64_t quantizedFromBytes = 0, quantizedBytes = 0;
  int64_t arenaBytes = 0;
  int64_t unplannedArenaBytes = 0;
  int slots = 0;
  uint64_t artifactBytes = 0;
  uint64_t paramsBytes = 0;
  bool generation = false;
  /// Time spent writing the files (part of compileModule's time).
  double writeMs = 0;
  /// target "cuda": the kernels, the launches that have one, and for the
  /// others how many of each op and why the library has none.
  std::vector<CudaKernelStats> cudaKernels;
  size_t cudaLaunches = 0;
  struct CudaMissing {
    std::string op, reason;
    size_t launches = 0;
  };
  std::vector<CudaMissing> cudaMissing; // per op, in first-use order
  size_t cudaImagesCompiled = 0, cudaImagesCached = 0;
  uint64_t cudaImageBytes = 0;
  double cudaCompileMs = 0;
};

/// Compiles `module` (after the graph pipeline) into an artifact written
/// atomically at `outputPath` (and, for WeightMode::External, a parameter
/// file). Errors name the op and its ONNX node.
llvm::Error compileModule(ModuleOp module, const CompileOptions &options,
                          llvm::StringRef outputPath, CompileStats *stats);

/// Builds the manifest JSON only (kiln-compile --emit=manifest).
llvm::Expected<std::string> buildManifestJson(ModuleOp module,
                                              const CompileOptions &options);

} // namespace mlir::kiln

#endif // KILN_COMPILER_COMPILE_H
