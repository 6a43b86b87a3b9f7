//===- FuseProjections.cpp - sibling projections into one matmul ----------===//
//
// Decomposed exports project the same hidden states three times (q, k, v)
// and a gated MLP twice (gate, up). Projections of one input by weights that
// agree on orientation, element type and input width become one matmul by
// the concatenated weight (and bias), whose result is sliced back: one pass
// over the activations instead of three, one kernel launch, and the
// canonical form's "fused qkv matmul". A gated MLP with separate gate and up
// weights gets them as one gate_up weight (gate columns first).
//
// The concatenated weight is a kiln.concat of kiln.weight values; the
// compiler does not launch it but records a packed weight the runtime
// builds at load time from the parts' own storage, so weights keep their
// names for external parameter files.
//
//===----------------------------------------------------------------------===//

#include "Match.h"
#include "kiln/Passes/Passes.h"

namespace mlir::kiln {
#define GEN_PASS_DEF_FUSEPROJECTIONSPASS
#include "kiln/Passes/Passes.h.inc"
} // namespace mlir::kiln

using namespace mlir;
using namespace mlir::kiln;
using namespace mlir::kiln::match;

namespace {

/// A rank-`rank` float tensor read straight from a kiln.weight.
bool isStoredWeight(Value v, int64_t rank) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return def<WeightOp>(v) && t && t.getRank() == rank && t.hasStaticShape() &&
         isa<FloatType>(t.getElementType());
}

/// Concatenation of weights along `axis`, placed before `before`.
Value concatWeights(OpBuilder &b, Location loc, ArrayRef<Value> parts,
                    int64_t axis) {
  auto first = cast<RankedTensorType>(parts.front().getType());
  SmallVector<int64_t> shape(first.getShape());
  shape[axis] = 0;
  for (Value p : parts)
    shape[axis] += cast<RankedTensorType>(p.getType()).getDimSize(axis);
  return ConcatOp::create(b, loc, first.clone(shape), parts,
                          b.getI64IntegerAttr(axis));
}

/// Projections of one input that can share a matmul: same orientation,
/// weight type and width, all with a stored bias or none.
struct GroupKey {
  Value input;
  bool transposed;
  Type weightElement;
  int64_t width;
  bool biased;
  bool operator==(const GroupKey &o) const {
    return input == o.input && transposed == o.transposed &&
           weightElement == o.weightElement && width == o.width &&
           biased == o.biased;
  }
};

std::optional<GroupKey> keyOf(MatmulOp m) {
  if (!isStoredWeight(m.getB(), 2) ||
      (m.getBias() && !isStoredWeight(m.getBias(), 1)) ||
      cast<RankedTensorType>(m.getA().getType()).getRank() < 2)
    return std::nullopt;
  auto w = cast<RankedTensorType>(m.getB().getType());
  bool t = m.getTransposeB();
  return GroupKey{m.getA(), t, w.getElementType(), w.getDimSize(t ? 1 : 0),
                  bool(m.getBias())};
}

/// One matmul for the group (in block order), sliced back into each
/// member's result.
void fuseGroup(ArrayRef<MatmulOp> group) {
  MatmulOp first = group.front();
  // Every operand must already be defined where the fused matmul goes.
  for (MatmulOp m : group)
    for (Value v : m->getOperands())
      if (Operation *d = v.getDefiningOp())
        if (d->getBlock() != first->getBlock() || !d->isBeforeInBlock(first))
          return;
  OpBuilder b(first);
  Location loc = first.getLoc();
  bool t = first.getTransposeB();
  SmallVector<Value> weights, biases;
  SmallVector<Location> locs;
  for (MatmulOp m : group) {
    weights.push_back(m.getB());
    if (m.getBias())
      biases.push_back(m.getBias());
    locs.push_back(m.getLoc());
  }
  Value w = concatWeights(b, loc, weights, t ? 0 : 1);
  Value bias = biases.empty() ? Value() : concatWeights(b, loc, biases, 0);
  auto at = cast<RankedTensorType>(first.getA().getType());
  int64_t n = cast<RankedTensorType>(w.getType()).getDimSize(t ? 0 : 1);
  SmallVector<int64_t> shape(at.getShape());
  shape.back() = n;
  auto resultType = cast<RankedTensorType>(first.getType()).clone(shape);
  Value fused =
      MatmulOp::create(b, fusionLoc(b.getContext(), locs), resultType,
                       first.getA(), w, bias, t ? b.getUnitAttr() : UnitAttr());
  int64_t offset = 0;
  int64_t last = resultType.getRank() - 1;
  for (MatmulOp m : group) {
    auto mt = cast<RankedTensorType>(m.getType());
    int64_t width = mt.getShape().back();
    b.setInsertionPoint(m);
    Value part = SliceOp::create(
        b, m.getLoc(), mt, fused, b.getDenseI64ArrayAttr({last}),
        b.getDenseI64ArrayAttr({offset}),
        b.getDenseI64ArrayAttr({offset + width}), b.getDenseI64ArrayAttr({1}));
    m.getResult().replaceAllUsesWith(part);
    m.erase();
    offset += width;
  }
}

/// gated_mlp gate(Wg) up(Wu) with stored weights -> gate_up(concat).
void fuseGateUp(GatedMlpOp op) {
  if (!op.getGate() || !isStoredWeight(op.getGate(), 2) ||
      !isStoredWeight(op.getUp(), 2) ||
      op.getGate().getType() != op.getUp().getType())
    return;
  for (Value v : {op.getGate(), op.getUp()})
    if (!v.getDefiningOp()->isBeforeInBlock(op))
      return;
  OpBuilder b(op);
  bool t = op.getTransposeWeights();
  // The block keeps its fused location; the packing has the weight's.
  Value gateUp = concatWeights(b, op.getGate().getLoc(),
                               {op.getGate(), op.getUp()}, t ? 0 : 1);
  op.getGateMutable().clear();
  op.getUpMutable().clear();
  op.getGateUpMutable().assign(gateUp);
}

struct FuseProjectionsPass
    : public kiln::impl::FuseProjectionsPassBase<FuseProjectionsPass> {
  void runOnOperation() override {
    func::FuncOp f = getOperation();
    // Groups in order of first appearance, so the output is deterministic.
    SmallVector<std::pair<GroupKey, SmallVector<MatmulOp>>> groups;
    SmallVector<GatedMlpOp> mlps;
    f.walk([&](Operation *op) {
      if (auto m = dyn_cast<MatmulOp>(op)) {
        auto key = keyOf(m);
        if (!key)
          return;
        auto it =
            llvm::find_if(groups, [&](auto &g) { return g.first == *key; });
        if (it == groups.end())
          groups.push_back({*key, {m}});
        else
          it->second.push_back(m);
      } else if (auto g = dyn_cast<GatedMlpOp>(op)) {
        mlps.push_back(g);
      }
    });
    for (auto &[key, group] : groups) {
      if (group.size() < 2 || llvm::any_of(group, [&](MatmulOp m) {
            return m->getBlock() != group.front()->getBlock();
          }))
        continue;
      // Walk order is block order within one block.
      fuseGroup(group);
    }
    for (GatedMlpOp g : mlps)
      fuseGateUp(g);
  }
};

} // namespace
