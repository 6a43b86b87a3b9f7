//===- PruneWeights.cpp - drop weight declarations nothing reads ----------===//

#include "kiln/Passes/Passes.h"

#include "llvm/ADT/StringSet.h"

namespace mlir::kiln {
#define GEN_PASS_DEF_PRUNEWEIGHTSPASS
#include "kiln/Passes/Passes.h.inc"
} // namespace mlir::kiln

using namespace mlir;
using namespace mlir::kiln;

namespace {
struct PruneWeightsPass
    : public mlir::kiln::impl::PruneWeightsPassBase<PruneWeightsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    llvm::StringSet<> read;
    for (const std::string &name : keep)
      read.insert(name);
    // Any symbol use keeps a declaration, not only kiln.weight: an op that
    // names a weight some other way must not lose it.
    module.walk([&](Operation *op) {
      if (isa<WeightDeclOp>(op))
        return;
      for (NamedAttribute attr : op->getAttrs())
        attr.getValue().walk([&](FlatSymbolRefAttr ref) {
          read.insert(ref.getValue());
        });
    });
    for (WeightDeclOp decl :
         llvm::make_early_inc_range(module.getOps<WeightDeclOp>())) {
      if (read.contains(decl.getSymName()))
        continue;
      decl.erase();
      ++numPruned;
    }
  }
};
} // namespace
