//===- Passes.td - every kiln pass, grouped by stage -------*- tablegen -*-===//

#ifndef KILN_PASSES_PASSES_TD
#define KILN_PASSES_PASSES_TD

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// Graph stage
//===----------------------------------------------------------------------===//

def DecomposePass : Pass<"kiln-decompose", "mlir::func::FuncOp"> {
  let summary = "Expand composite kiln ops into primitive kiln ops";
  let description = [{
    Rewrites `kiln.rms_norm`, `kiln.layer_norm`, `kiln.softmax`,
    `kiln.activation`, `kiln.glu` and `kiln.gated_mlp` into elementwise ops,
    reductions and matmuls that compute the same function (norms in f32, as
    the composite ops specify). The decomposed form is what a model looks
    like before fusion: it serves as a reference for the fusion passes (fuse
    after decompose must give back the composite op) and lets a backend
    without a fused kernel run the op.

    `ops` limits the rewrite to the listed op names (without the `kiln.`
    prefix); empty means all.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect",
                           "mlir::kiln::KilnDialect"];
  let options = [
    ListOption<"ops", "ops", "std::string",
               "Composite ops to decompose (e.g. rms_norm,gated_mlp); all when empty">
  ];
}

def PruneWeightsPass : Pass<"kiln-prune-weights", "mlir::ModuleOp"> {
  let summary = "Remove weight declarations that no kiln.weight reads";
  let description = [{
    After fusion and dead-code elimination some weights are no longer read
    (a folded constant, an output nobody asked for). Their declarations are
    erased so the artifact neither stores nor binds them. `keep` names
    weights to keep even when unused.
  }];
  let options = [
    ListOption<"keep", "keep", "std::string",
               "Weight names to keep even when unread">
  ];
  let statistics = [
    Statistic<"numPruned", "pruned-weights", "Number of weight declarations removed">
  ];
}

#endif // KILN_PASSES_PASSES_TD
