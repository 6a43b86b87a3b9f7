//===- Passes.h - every kiln pass and pipeline ---------------------*- C++ -*-===//

#ifndef KILN_PASSES_PASSES_H
#define KILN_PASSES_PASSES_H

#include "kiln/Dialect/Kiln/IR/KilnOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassOptions.h"

#include <map>
#include <string>
#include <vector>

namespace mlir::kiln {

#define GEN_PASS_DECL
#include "kiln/Passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "kiln/Passes/Passes.h.inc"

/// Options of the graph-stage pipeline.
struct GraphPipelineOptions
    : public PassPipelineOptions<GraphPipelineOptions> {
  Option<bool> fuse{*this, "fuse",
                    llvm::cl::desc("Recognize and fuse the decomposed "
                                   "subgraphs (off: the reference form the "
                                   "equivalence check compares against)"),
                    llvm::cl::init(true)};
  Option<bool> elementwise{*this, "elementwise",
                           llvm::cl::desc("With fuse: fold elementwise chains "
                                          "into kiln.elementwise"),
                           llvm::cl::init(false)};
  Option<bool> kvCache{*this, "kv-cache",
                       llvm::cl::desc("With fuse: turn past/present KV "
                                      "concats into in-place kv_cache appends"),
                       llvm::cl::init(true)};
  Option<std::string> kvLayout{*this, "kv-layout",
                               llvm::cl::desc("With kv-cache: contiguous or paged"),
                               llvm::cl::init("contiguous")};
  Option<int64_t> kvBlockSize{*this, "kv-block-size",
                              llvm::cl::desc("Tokens per block of a paged KV cache"),
                              llvm::cl::init(16)};
  Option<std::string> kvDtype{*this, "kv-dtype",
                              llvm::cl::desc("With kv-cache: the KV element type "
                                             "(empty: the model's; i8, f8E4M3FN, i4)"),
                              llvm::cl::init("")};
  Option<int64_t> kvGroup{*this, "kv-group",
                          llvm::cl::desc("Elements per KV scale along the head dim "
                                         "(0: the type's default)"),
                          llvm::cl::init(0)};
  Option<std::string> kvScaleType{*this, "kv-scale-type",
                                  llvm::cl::desc("Scale type of a quantized KV cache"),
                                  llvm::cl::init("f16")};
  Option<bool> ragged{*this, "ragged",
                      llvm::cl::desc("With kv-cache: make the graph run ragged batches "
                                     "(kiln-ragged-batch)"),
                      llvm::cl::init(false)};
  Option<bool> fuseMlp{*this, "fuse-mlp",
                       llvm::cl::desc("With fuse: fuse gated MLPs (never with quant=fp8, "
                                      "which quantizes the activation between their "
                                      "projections)"),
                       llvm::cl::init(true)};
  Option<std::string> quant{*this, "quant",
                            llvm::cl::desc("With fuse: quantize weights "
                                           "(kiln-quantize-weights: w8a16, w4a16, fp8, w4a4; empty: "
                                           "none)"),
                            llvm::cl::init("")};
  Option<int64_t> quantGroup{*this, "quant-group",
                             llvm::cl::desc("w4a16: weights along K per scale"),
                             llvm::cl::init(128)};
  Option<bool> quantZeroPoints{*this, "quant-zero-points",
                               llvm::cl::desc("w4a16: zero points (asymmetric)"),
                               llvm::cl::init(false)};
  Option<std::string> quantWeightScales{
      *this, "quant-weight-scales",
      llvm::cl::desc("fp8: weight scales per output channel or per tensor"),
      llvm::cl::init("channel")};
  Option<std::string> quantActivations{
      *this, "quant-activations",
      llvm::cl::desc("fp8: dynamic activation scales per token or per tensor"),
      llvm::cl::init("token")};
  Option<std::string> quantRotation{
      *this, "quant-rotation",
      llvm::cl::desc("w4a4: rotate K on both sides of each matmul (hadamard) or not (none)"),
      llvm::cl::init("hadamard")};
  ListOption<std::string> quantExclude{
      *this, "quant-exclude",
      llvm::cl::desc("Regular expressions: weights or ONNX nodes that stay float")};
  Option<bool> pruneWeights{*this, "prune-weights",
                            llvm::cl::desc("Remove unread weight declarations"),
                            llvm::cl::init(true)};
};

/// The graph stage: canonicalize (folds shape computations), CSE, the
/// recognition and fusion passes (unless `fuse` is off), and drop unread
/// weights.
void buildGraphPipeline(OpPassManager &pm, const GraphPipelineOptions &options);

/// The rewrite patterns of each fusion pass, for drivers of their own (the
/// fusion report re-runs them to say why an op stayed unfused).
void populateFuseNormsPatterns(RewritePatternSet &patterns);
void populateFuseActivationsPatterns(RewritePatternSet &patterns);
void populateFuseGatedMlpPatterns(RewritePatternSet &patterns);
void populateFuseRopePatterns(RewritePatternSet &patterns);
void populateFuseAttentionPatterns(RewritePatternSet &patterns);
void populateFuseElementwisePatterns(RewritePatternSet &patterns);

/// Each layer of `func` whose KV cache stays past/present tensors (not a
/// !kiln.kv_cache updated in place): its past key's name and the reason.
std::vector<std::pair<std::string, std::string>>
explainTensorKvLayers(func::FuncOp func);

/// What the fusion passes did to a module, for `kiln-compile --report`.
struct FusionReport {
  /// Op counts by name (`kiln.matmul`) before and after the pipeline.
  std::map<std::string, int64_t> opsBefore, opsAfter;
  /// Each op the fusion passes created and the ONNX nodes it replaced.
  struct Fused {
    std::string op;
    std::vector<std::string> nodes;
  };
  std::vector<Fused> fused;
  /// Each op left over from a subgraph that was not fused (a softmax, a
  /// mean, a sigmoid...), its ONNX node and why the pattern gave up.
  struct Unfused {
    std::string op, node, reason;
  };
  std::vector<Unfused> unfused;
};

/// Op counts by name over the module's functions.
std::map<std::string, int64_t> countOpKinds(ModuleOp module);
/// The fused and unfused parts of `module` after the pipeline (opsBefore is
/// left to the caller). Does not modify `module`.
FusionReport analyzeFusion(ModuleOp module);
void printFusionReport(const FusionReport &report, llvm::raw_ostream &os);

/// Registers every kiln pass and the named pipelines
/// (`--kiln-graph-pipeline`).
void registerKilnPassesAndPipelines();

} // namespace mlir::kiln

#endif // KILN_PASSES_PASSES_H
