//===- Passes.h - every kiln pass and pipeline ---------------------*- C++ -*-===//

#ifndef KILN_PASSES_PASSES_H
#define KILN_PASSES_PASSES_H

#include "kiln/Dialect/Kiln/IR/KilnOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassOptions.h"

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
  Option<bool> pruneWeights{*this, "prune-weights",
                            llvm::cl::desc("Remove unread weight declarations"),
                            llvm::cl::init(true)};
};

/// The graph stage: canonicalize (folds shape computations), CSE, the
/// recognition and fusion passes (unless `fuse` is off), and drop unread
/// weights.
void buildGraphPipeline(OpPassManager &pm, const GraphPipelineOptions &options);

/// Registers every kiln pass and the named pipelines
/// (`--kiln-graph-pipeline`).
void registerKilnPassesAndPipelines();

} // namespace mlir::kiln

#endif // KILN_PASSES_PASSES_H
