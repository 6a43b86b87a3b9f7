//===- Calibrate.h - run a module to calibrate and measure quantization -*- C++ -*-===//
//
// kiln-compile --calib and --report run the model being compiled on the CPU
// backend (the runtime linked into the compiler): compiled to a temporary
// artifact, loaded, driven by generation over calibration prompts, with an
// observer reading the launches' values. Calibration collects the range of
// every activation an fp8 kiln.quantize reads and makes its scale static;
// the report compares a quantized module with the unquantized one.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_COMPILER_CALIBRATE_H
#define KILN_COMPILER_CALIBRATE_H

#include "kiln/Compiler/Compile.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mlir::kiln {

/// Where calibration prompts come from: a file of token ids (one prompt per
/// line, ids separated by spaces or commas, `#` comments), or `count`
/// prompts of `length` token ids drawn uniformly from the vocabulary with
/// `seed`. Each prompt is followed by `newTokens` greedy tokens, so that
/// decode steps are seen as well as prefills.
struct CalibrationOptions {
  std::string file;
  int64_t count = 8, length = 32;
  uint64_t seed = 0;
  int64_t newTokens = 16;
  int threads = 0;
  /// Called as work progresses: (prompts done, prompts in all).
  std::function<void(size_t, size_t)> progress;
};

/// The prompts `options` describe for a model of `vocab` tokens (-1:
/// unknown, which random prompts refuse). Errors name the file and line.
llvm::Expected<std::vector<std::vector<int64_t>>>
calibrationPrompts(const CalibrationOptions &options, int64_t vocab);

/// The activation sites of `module`: kiln.quantize ops with dynamic scales
/// whose input is not computed from weights alone, in walk order.
std::vector<Operation *> activationSites(ModuleOp module);

/// What calibration saw.
struct CalibrationResult {
  /// max |x| per activation site (activationSites order); -1 where a site
  /// never ran.
  std::vector<float> absMax;
  size_t prompts = 0, tokens = 0;
  std::string source; // "calib.txt", "8 random prompts of 32 tokens (seed 0)"
};

/// Runs `module` (compiled as `compile` says, on the CPU) over the
/// calibration prompts and records each activation site's range.
llvm::Expected<CalibrationResult> calibrate(ModuleOp module, const CompileOptions &compile,
                                            const CalibrationOptions &options);

/// Replaces every activation site that calibration saw by a kiln.quantize
/// with a static per-tensor scale absMax / (the storage type's largest
/// value). Returns how many sites became static; sites that never ran keep
/// their dynamic scales.
size_t applyActivationScales(ModuleOp module, const CalibrationResult &calibration);

/// One quantized layer's error on the calibration data.
struct LayerError {
  std::string name;   // the ONNX node, or the weight
  std::string scheme; // "i8 [1, 0]", "f8E4M3FN [1, 0] x f8E4M3FN [1, 1, 0]", "float"
  double relativeError = 0; // ||q - f|| / ||f|| over every token
};

/// The cost of a quantization, measured against the unquantized model.
struct QuantReport {
  std::string source;
  size_t prompts = 0, positions = 0, greedyTokens = 0;
  std::vector<LayerError> layers;
  /// Teacher-forced over prompt + the reference's greedy tokens: the
  /// largest |logit difference|, ||dq - f|| / ||f|| of the logits, and the
  /// share of positions whose argmax agrees.
  double logitMaxAbs = 0, logitRelative = 0, top1Agreement = 0;
  /// Free-running greedy generation of `greedyTokens` per prompt: the
  /// share of tokens before the first difference (averaged over prompts)
  /// and the share of prompts whose tokens are all equal.
  double greedyAgreement = 0, greedyExact = 0;
};

/// Compares `quantized` with `reference` (the same graph without the
/// quantization pass) on the calibration prompts, generating `tokens`
/// greedy tokens per prompt.
llvm::Expected<QuantReport> measureQuantization(ModuleOp reference, ModuleOp quantized,
                                                const CompileOptions &compile,
                                                const CalibrationOptions &options,
                                                int64_t tokens);

void printQuantReport(const QuantReport &report, llvm::StringRef scheme, llvm::raw_ostream &os);

} // namespace mlir::kiln

#endif // KILN_COMPILER_CALIBRATE_H
