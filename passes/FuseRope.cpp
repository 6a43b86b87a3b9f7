//===- FuseRope.cpp - rotary embeddings from their rotate-half spelling ---===//
//
// Hugging Face models apply RoPE as
//
//   rotate_half(x) = concat(-x[..., h:], x[..., :h])        h = head_dim / 2
//   y = x * cos + rotate_half(x) * sin
//
// on [B, H, S, D] heads, with cos/sin [B, 1, S, D] built from positions as
// cos(concat(f, f)) (or gathered from such a table). That is kiln.rope's
// non-interleaved form when cos and sin repeat their first half in their
// second: rope reads only the first half. The pattern proves the repetition
// (through elementwise maps, casts, reshapes that keep the last dimension,
// gathers along other dimensions, and constant tables), then rewrites
//
//   y -> transpose(rope(transpose(x), cos[..., :h], sin[..., :h]))
//
// (kiln.rope is [B, S, H, D]; the transposes cancel against the ones that
// made the heads). A table whose halves differ, a rotation by other than
// the half, or cos/sin that vary by head are left alone.
//
//===----------------------------------------------------------------------===//

#include "Match.h"
#include "kiln/Passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::kiln {
#define GEN_PASS_DEF_FUSEROPEPASS
#include "kiln/Passes/Passes.h.inc"
} // namespace mlir::kiln

using namespace mlir;
using namespace mlir::kiln;
using namespace mlir::kiln::match;

namespace {

/// Whether `v`'s last dimension is two equal halves: v[..., i] ==
/// v[..., i + n/2] for every element. `depth` bounds the walk.
bool hasRepeatedHalves(Value v, int depth = 0) {
  if (!v || depth > 16)
    return false;
  auto type = dyn_cast<RankedTensorType>(v.getType());
  if (!type || type.getRank() == 0)
    return false;
  int64_t n = type.getShape().back();
  if (ShapedType::isDynamic(n) || n % 2)
    return false;
  DenseElementsAttr attr;
  if (matchPattern(v, m_Constant(&attr))) {
    if (attr.isSplat())
      return true;
    if (!isa<FloatType>(attr.getElementType()))
      return false;
    auto values = llvm::to_vector(attr.getValues<APFloat>());
    for (size_t row = 0; row < values.size(); row += size_t(n))
      for (int64_t i = 0; i < n / 2; ++i)
        if (values[row + size_t(i)].compare(values[row + size_t(i + n / 2)]) !=
            APFloat::cmpEqual)
          return false;
    return true;
  }
  Operation *op = v.getDefiningOp();
  if (!op)
    return false;
  if (auto c = dyn_cast<ConcatOp>(op))
    return c.getInputs().size() == 2 && c.getInputs()[0] == c.getInputs()[1] &&
           isLastAxis(c.getAxis(), v);
  // Elementwise maps keep the repetition.
  if (isa<CosOp, SinOp, NegOp, CastOp>(op))
    return hasRepeatedHalves(op->getOperand(0), depth + 1);
  // A product or quotient with a per-row or scalar factor keeps it too.
  if (isa<MulOp, DivOp>(op)) {
    Value a = op->getOperand(0), b = op->getOperand(1);
    auto perRow = [&](Value f) {
      auto ft = cast<RankedTensorType>(f.getType());
      return ft.getRank() == 0 || ft.getShape().back() == 1;
    };
    if (isa<MulOp>(op) && perRow(a))
      return hasRepeatedHalves(b, depth + 1);
    return perRow(b) && hasRepeatedHalves(a, depth + 1);
  }
  // Reshapes and broadcasts that keep the last dimension, gathers and
  // slices along another one.
  if (isa<ReshapeOp, BroadcastOp>(op)) {
    Value in = op->getOperand(0);
    auto it = cast<RankedTensorType>(in.getType());
    return it.getRank() > 0 && it.getShape().back() == n &&
           hasRepeatedHalves(in, depth + 1);
  }
  if (auto g = dyn_cast<GatherOp>(op))
    return !isLastAxis(g.getAxis(), g.getInput()) &&
           hasRepeatedHalves(g.getInput(), depth + 1);
  if (auto s = dyn_cast<SliceOp>(op))
    return llvm::none_of(
               s.getAxes(),
               [&](int64_t a) { return isLastAxis(a, s.getInput()); }) &&
           hasRepeatedHalves(s.getInput(), depth + 1);
  return false;
}

/// concat(-x[..., h:], x[..., :h]) with h = D / 2; returns x.
Value matchRotateHalf(Value v) {
  auto c = def<ConcatOp>(v);
  if (!c || c.getInputs().size() != 2 || !isLastAxis(c.getAxis(), v))
    return Value();
  auto neg = def<NegOp>(c.getInputs()[0]);
  Value x2, x1;
  int64_t lo2, hi2, lo1, hi1;
  if (!neg || !matchLastSlice(neg.getInput(), x2, lo2, hi2) ||
      !matchLastSlice(c.getInputs()[1], x1, lo1, hi1) || x1 != x2)
    return Value();
  int64_t d = cast<RankedTensorType>(x1.getType()).getShape().back();
  if (d % 2 || lo1 != 0 || hi1 != d / 2 || lo2 != d / 2 || hi2 != d)
    return Value();
  return x1;
}

/// A [b, 1, S, D] table (b = 1 or the batch) as kiln.rope's [b, S, D/2].
Value ropeTable(PatternRewriter &rw, Location loc, Value table) {
  auto t = cast<RankedTensorType>(table.getType());
  int64_t d = t.getDimSize(3);
  Value r = ReshapeOp::create(
      rw, loc,
      RankedTensorType::get({t.getDimSize(0), t.getDimSize(2), d},
                            t.getElementType()),
      table, Value());
  return SliceOp::create(
      rw, loc,
      RankedTensorType::get({t.getDimSize(0), t.getDimSize(2), d / 2},
                            t.getElementType()),
      r, rw.getDenseI64ArrayAttr({2}), rw.getDenseI64ArrayAttr({0}),
      rw.getDenseI64ArrayAttr({d / 2}), rw.getDenseI64ArrayAttr({1}));
}

Value transposeSH(PatternRewriter &rw, Location loc, Value x) {
  auto t = cast<RankedTensorType>(x.getType());
  return TransposeOp::create(
      rw, loc,
      RankedTensorType::get(
          {t.getDimSize(0), t.getDimSize(2), t.getDimSize(1), t.getDimSize(3)},
          t.getElementType()),
      x, rw.getDenseI64ArrayAttr({0, 2, 1, 3}));
}

struct FuseRotateHalfRope : public OpRewritePattern<AddOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AddOp add, PatternRewriter &rw) const override {
    Value x, cosT, sinT;
    bool found = eitherOrder(add.getLhs(), add.getRhs(), [&](Value a, Value b) {
      auto mcos = def<MulOp>(a), msin = def<MulOp>(b);
      if (!mcos || !msin)
        return false;
      return eitherOrder(msin.getLhs(), msin.getRhs(), [&](Value r, Value s) {
        Value xr = matchRotateHalf(r);
        if (!xr)
          return false;
        return eitherOrder(mcos.getLhs(), mcos.getRhs(),
                           [&](Value xc, Value c) {
                             if (xc != xr)
                               return false;
                             x = xr;
                             cosT = c;
                             sinT = s;
                             return true;
                           });
      });
    });
    if (!found)
      return rw.notifyMatchFailure(add, "not x * cos + rotate_half(x) * sin");
    auto xt = cast<RankedTensorType>(x.getType());
    auto ct = cast<RankedTensorType>(cosT.getType());
    auto st = cast<RankedTensorType>(sinT.getType());
    int64_t d = xt.getRank() == 4 ? xt.getDimSize(3) : ShapedType::kDynamic;
    // [B, H, S, D] heads with [b, 1, S, D] tables shared by every head.
    if (xt.getRank() != 4 || add.getType() != xt || ct != st ||
        ct.getRank() != 4 || ct.getDimSize(1) != 1 || ct.getDimSize(3) != d ||
        !isa<FloatType>(ct.getElementType()))
      return rw.notifyMatchFailure(
          add, "x is not [B, H, S, D] with [b, 1, S, D] tables");
    if (ct.getDimSize(0) != 1 && ct.getDimSize(0) != xt.getDimSize(0))
      return rw.notifyMatchFailure(add,
                                   "the tables' batch is neither 1 nor x's");
    if (!hasRepeatedHalves(cosT) || !hasRepeatedHalves(sinT))
      return rw.notifyMatchFailure(add,
                                   "cos/sin do not repeat their first half");
    // The rope carries the replaced nodes' locations; the layout glue keeps
    // the root's, so the report lists only what was fused. Separate
    // statements: argument evaluation order would make the IR order
    // unspecified.
    Location loc = add.getLoc();
    Location fused = fusedLoc(add, {x, cosT, sinT});
    Value heads = transposeSH(rw, loc, x);
    Value cosHalf = ropeTable(rw, loc, cosT);
    Value sinHalf = ropeTable(rw, loc, sinT);
    Value rope = RopeOp::create(rw, fused, heads.getType(), heads, cosHalf,
                                sinHalf, Value());
    rw.replaceOp(add, transposeSH(rw, loc, rope));
    return success();
  }
};

struct FuseRopePass : public kiln::impl::FuseRopePassBase<FuseRopePass> {
  void runOnOperation() override {
    if (failed(applyFusion(getOperation(), populateFuseRopePatterns)))
      signalPassFailure();
  }
};

} // namespace

void mlir::kiln::populateFuseRopePatterns(RewritePatternSet &patterns) {
  patterns.add<FuseRotateHalfRope>(patterns.getContext());
}
