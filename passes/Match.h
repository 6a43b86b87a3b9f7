//===- Match.h - small helpers for matching decomposed subgraphs -*- C++
//-*-===//
//
// The fusion passes recognize what exporters wrote op by op (a norm as pow,
// mean, add, sqrt, div, mul; attention as matmul, softmax, matmul). These
// helpers keep those matchers short: the defining op of a value by type,
// both operand orders of a commutative op, splat constants, and the casts
// exporters put around f32 islands.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_PASSES_MATCH_H
#define KILN_PASSES_MATCH_H

#include "kiln/Dialect/Kiln/IR/KilnOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Traits.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/ADT/SmallPtrSet.h"

#include <algorithm>
#include <optional>

namespace mlir::kiln::match {

/// The op of type OpTy that defines `v`, or null.
template <typename OpTy> OpTy def(Value v) {
  return v ? v.getDefiningOp<OpTy>() : OpTy();
}

/// `v` with float-to-float kiln.cast ops peeled off.
inline Value stripCasts(Value v) {
  while (auto cast = def<CastOp>(v)) {
    auto in = cast.getInput().getType().getElementType();
    if (!isa<FloatType>(in) || !isa<FloatType>(cast.getType().getElementType()))
      break;
    v = cast.getInput();
  }
  return v;
}

/// The value of a splat float or integer constant whose every dimension is 1
/// (so broadcasting it never changes the other operand's shape).
inline std::optional<double> splat(Value v) {
  DenseElementsAttr attr;
  if (!v || !matchPattern(v, m_Constant(&attr)) || !attr.isSplat())
    return std::nullopt;
  for (int64_t d : attr.getType().getShape())
    if (d != 1)
      return std::nullopt;
  Type et = attr.getElementType();
  if (isa<FloatType>(et))
    return attr.getSplatValue<APFloat>().convertToDouble();
  if (auto it = dyn_cast<IntegerType>(et)) {
    APInt v = attr.getSplatValue<APInt>();
    // i1 true is 1, not -1; unsigned types read unsigned.
    return it.getWidth() == 1 || it.isUnsigned() ? double(v.getZExtValue())
                                                 : double(v.getSExtValue());
  }
  return std::nullopt;
}

inline bool isSplat(Value v, double expected) {
  auto s = splat(v);
  return s && *s == expected;
}

/// Calls fn(a, b) with the operands of a two-operand op in both orders;
/// true when one order matched.
template <typename Fn> bool eitherOrder(Value lhs, Value rhs, Fn &&fn) {
  return fn(lhs, rhs) || fn(rhs, lhs);
}

/// A mean over the last dimension only, keeping it (what `x.mean(-1,
/// keepdim=True)` exports to).
inline bool isLastDimMean(ReduceOp r) {
  if (!r || r.getKind() != ReduceKind::mean || !r.getKeepDims())
    return false;
  int64_t rank = r.getInput().getType().getRank();
  ArrayRef<int64_t> axes = r.getAxes();
  return rank > 0 && axes.size() == 1 && (axes[0] == rank - 1 || axes[0] == -1);
}

/// x * x or x ** 2; returns x.
inline Value matchSquare(Value v) {
  if (auto p = def<PowOp>(v))
    return isSplat(p.getRhs(), 2.0) ? p.getLhs() : Value();
  if (auto m = def<MulOp>(v))
    return m.getLhs() == m.getRhs() ? m.getLhs() : Value();
  return Value();
}

/// 1 / sqrt(d) as rsqrt(d), reciprocal(sqrt(d)) or div(1, sqrt(d)); returns d.
inline Value matchInverseSqrt(Value v) {
  if (auto r = def<RsqrtOp>(v))
    return r.getInput();
  if (auto r = def<ReciprocalOp>(v))
    if (auto s = def<SqrtOp>(r.getInput()))
      return s.getInput();
  if (auto d = def<DivOp>(v))
    if (isSplat(d.getLhs(), 1.0))
      if (auto s = def<SqrtOp>(d.getRhs()))
        return s.getInput();
  return Value();
}

/// x * (1 / sqrt(d)) in any of its forms, or x / sqrt(d); sets x and d.
inline bool matchScaleByInverseSqrt(Value v, Value &x, Value &d) {
  if (auto m = def<MulOp>(v))
    return eitherOrder(m.getLhs(), m.getRhs(), [&](Value a, Value b) {
      Value inner = matchInverseSqrt(b);
      if (!inner)
        return false;
      x = a;
      d = inner;
      return true;
    });
  if (auto div = def<DivOp>(v))
    if (auto s = def<SqrtOp>(div.getRhs())) {
      x = div.getLhs();
      d = s.getInput();
      return true;
    }
  return false;
}

/// A rank-1 float vector that has the size of `x`'s last dimension (a norm's
/// weight or bias).
inline bool isChannelVector(Value w, Value x) {
  auto wt = dyn_cast<RankedTensorType>(w.getType());
  auto xt = dyn_cast<RankedTensorType>(x.getType());
  if (!wt || !xt || wt.getRank() != 1 || xt.getRank() == 0 ||
      !isa<FloatType>(wt.getElementType()))
    return false;
  int64_t h = xt.getShape().back();
  return !ShapedType::isDynamic(h) && wt.getDimSize(0) == h;
}

/// `v` converted to element type `et` (itself when it already is).
inline Value castTo(OpBuilder &b, Location loc, Value v, Type et) {
  auto t = cast<RankedTensorType>(v.getType());
  if (t.getElementType() == et)
    return v;
  return CastOp::create(b, loc, t.clone(et), v);
}

inline int64_t lastAxis(Value v) {
  return cast<RankedTensorType>(v.getType()).getRank() - 1;
}

inline bool isLastAxis(int64_t axis, Value v) {
  int64_t rank = lastAxis(v) + 1;
  return axis == rank - 1 || axis == -1;
}

/// x[..., lo:hi] along the last axis with step 1; sets lo and hi (clamped).
inline bool matchLastSlice(Value v, Value &x, int64_t &lo, int64_t &hi) {
  auto s = def<SliceOp>(v);
  if (!s || s.getAxes().size() != 1 ||
      !isLastAxis(s.getAxes()[0], s.getInput()) || s.getSteps()[0] != 1)
    return false;
  int64_t n = cast<RankedTensorType>(s.getInput().getType()).getShape().back();
  if (ShapedType::isDynamic(n))
    return false;
  auto clamp = [&](int64_t i) {
    if (i < 0)
      i += n;
    return std::clamp<int64_t>(i, 0, n);
  };
  x = s.getInput();
  lo = clamp(s.getStarts()[0]);
  hi = clamp(s.getEnds()[0]);
  return true;
}

/// Runs the patterns `populate` adds greedily over `op` (a fusion pass's
/// whole body).
inline LogicalResult applyFusion(Operation *op,
                                 void (*populate)(RewritePatternSet &)) {
  RewritePatternSet patterns(op->getContext());
  populate(patterns);
  return applyPatternsGreedily(op, std::move(patterns));
}

/// A FusedLoc of `locs` tagged "kiln.fused": it stays a FusedLoc even when
/// the replaced ops share one location (an ONNX node the importer expanded
/// into several ops), so the report and the progress line still count the
/// fused op.
inline Location fusionLoc(MLIRContext *ctx, ArrayRef<Location> locs) {
  return FusedLoc::get(locs, StringAttr::get(ctx, "kiln.fused"), ctx);
}

/// The location of a fused op: the locations of `root` and of every op it
/// was computed from up to (not including) the `leaves`, fused, so the ONNX
/// node names of the whole matched subgraph stay on the result (what
/// `kiln-compile --report` prints).
inline Location fusedLoc(Operation *root, ArrayRef<Value> leaves) {
  llvm::SmallPtrSet<Operation *, 16> seen;
  SmallVector<Operation *> work{root};
  SmallVector<Location> locs;
  while (!work.empty() && seen.size() < 256) {
    Operation *op = work.pop_back_val();
    if (!seen.insert(op).second)
      continue;
    locs.push_back(op->getLoc());
    for (Value v : op->getOperands()) {
      if (llvm::is_contained(leaves, v))
        continue;
      if (Operation *d = v.getDefiningOp())
        if (!d->hasTrait<OpTrait::ConstantLike>())
          work.push_back(d);
    }
  }
  return fusionLoc(root->getContext(), locs);
}

} // namespace mlir::kiln::match

#endif // KILN_PASSES_MATCH_H
