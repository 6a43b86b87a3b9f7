//===- FuseElementwise.cpp - chains of elementwise ops into one ------------===//
//
// What the named fusions leave behind is mostly short elementwise chains:
// Gemma's logit soft-cap (x / c, tanh, * c), the cos/sin tables of RoPE
// scaled by a constant, a cast feeding an arithmetic op. Run op by op, each
// link reads and writes a whole tensor. This pass folds every maximal tree of
// float elementwise kiln ops, whose inner values have no other reader, into
// one kiln.elementwise whose body is the chain on scalars (arith and math
// ops): one read of each input, one write of the result.
//
// Broadcasting composes: an operand that broadcasts to a producer's shape,
// which broadcasts to the consumer's, broadcasts to the consumer's directly,
// so the fused op broadcasts its leaves to the root's shape. Scalar splat
// constants become constants of the body. A chain must have at least two
// ops; a lone op stays as it is.
//
//===----------------------------------------------------------------------===//

#include "Match.h"
#include "kiln/Passes/Passes.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/TypeSwitch.h"

namespace mlir::kiln {
#define GEN_PASS_DEF_FUSEELEMENTWISEPASS
#include "kiln/Passes/Passes.h.inc"
} // namespace mlir::kiln

using namespace mlir;
using namespace mlir::kiln;
using namespace mlir::kiln::match;

namespace {

bool isFloatTensor(Type t) {
  auto r = dyn_cast<RankedTensorType>(t);
  return r && (r.getElementType().isF32() || r.getElementType().isF16() ||
               r.getElementType().isBF16());
}

/// A kiln op the body can express, on float tensors only.
bool isFusable(Operation *op) {
  if (!op || op->getNumResults() != 1 || !isFloatTensor(op->getResult(0).getType()))
    return false;
  if (!isa<AddOp, SubOp, MulOp, DivOp, MaxOp, MinOp, PowOp, NegOp, AbsOp,
           ExpOp, LogOp, SqrtOp, RsqrtOp, ReciprocalOp, TanhOp, SinOp, CosOp,
           ErfOp, CastOp, ElementwiseOp>(op))
    return false;
  return llvm::all_of(op->getOperandTypes(), isFloatTensor);
}

/// A splat constant of one element: a constant of the body.
std::optional<double> scalarConstant(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  if (!t || !t.hasStaticShape() || t.getNumElements() != 1)
    return std::nullopt;
  return splat(v);
}

/// Builds the scalar op for `op` (a fusable kiln op) on `args`.
Value scalarOf(OpBuilder &b, Location loc, Operation *op, ArrayRef<Value> args,
               Type et) {
  Value x = args[0];
  Value y = args.size() > 1 ? args[1] : Value();
  return llvm::TypeSwitch<Operation *, Value>(op)
      .Case([&](AddOp) { return arith::AddFOp::create(b, loc, x, y); })
      .Case([&](SubOp) { return arith::SubFOp::create(b, loc, x, y); })
      .Case([&](MulOp) { return arith::MulFOp::create(b, loc, x, y); })
      .Case([&](DivOp) { return arith::DivFOp::create(b, loc, x, y); })
      .Case([&](MaxOp) { return arith::MaximumFOp::create(b, loc, x, y); })
      .Case([&](MinOp) { return arith::MinimumFOp::create(b, loc, x, y); })
      .Case([&](PowOp) { return math::PowFOp::create(b, loc, x, y); })
      .Case([&](NegOp) { return arith::NegFOp::create(b, loc, x); })
      .Case([&](AbsOp) { return math::AbsFOp::create(b, loc, x); })
      .Case([&](ExpOp) { return math::ExpOp::create(b, loc, x); })
      .Case([&](LogOp) { return math::LogOp::create(b, loc, x); })
      .Case([&](SqrtOp) { return math::SqrtOp::create(b, loc, x); })
      .Case([&](RsqrtOp) { return math::RsqrtOp::create(b, loc, x); })
      .Case([&](TanhOp) { return math::TanhOp::create(b, loc, x); })
      .Case([&](SinOp) { return math::SinOp::create(b, loc, x); })
      .Case([&](CosOp) { return math::CosOp::create(b, loc, x); })
      .Case([&](ErfOp) { return math::ErfOp::create(b, loc, x); })
      .Case([&](ReciprocalOp) {
        Value one = arith::ConstantOp::create(b, loc, b.getFloatAttr(et, 1.0));
        return arith::DivFOp::create(b, loc, one, x);
      })
      .Case([&](CastOp) -> Value {
        auto from = cast<FloatType>(x.getType());
        auto to = cast<FloatType>(et);
        if (from == to)
          return x;
        if (from.getWidth() < to.getWidth())
          return arith::ExtFOp::create(b, loc, to, x);
        if (from.getWidth() > to.getWidth())
          return arith::TruncFOp::create(b, loc, to, x);
        // f16 <-> bf16: through f32, which holds both exactly.
        Value wide = arith::ExtFOp::create(b, loc, b.getF32Type(), x);
        return arith::TruncFOp::create(b, loc, to, wide);
      })
      .Default([](Operation *) -> Value { return Value(); });
}

/// Folds the tree of single-use fusable producers under `root` (itself not
/// fusable into its user) into one kiln.elementwise.
struct FuseElementwiseChain : public RewritePattern {
  FuseElementwiseChain(MLIRContext *ctx)
      : RewritePattern(MatchAnyOpTypeTag(), /*benefit=*/1, ctx) {}

  LogicalResult matchAndRewrite(Operation *root,
                                PatternRewriter &rw) const override {
    if (!isFusable(root))
      return failure();
    if (root->hasOneUse()) {
      Operation *user = *root->getUsers().begin();
      if (isFusable(user) && user->getBlock() == root->getBlock())
        return rw.notifyMatchFailure(root, "its user continues the chain");
    }
    // The ops of the tree in post-order, and its leaves in first-use order.
    SmallVector<Operation *> ops;
    SmallVector<Value> leaves;
    std::function<void(Operation *)> collect = [&](Operation *op) {
      for (Value v : op->getOperands()) {
        Operation *d = v.getDefiningOp();
        if (d && d != root && isFusable(d) && d->hasOneUse() &&
            d->getBlock() == root->getBlock()) {
          collect(d);
          continue;
        }
        if (!scalarConstant(v) && !llvm::is_contained(leaves, v))
          leaves.push_back(v);
      }
      ops.push_back(op);
    };
    collect(root);
    if (ops.size() < 2)
      return rw.notifyMatchFailure(root, "a lone elementwise op");
    auto resultType = cast<RankedTensorType>(root->getResult(0).getType());
    if (leaves.empty() ||
        llvm::any_of(leaves, [&](Value v) {
          return cast<RankedTensorType>(v.getType()).getRank() >
                 resultType.getRank();
        }))
      return rw.notifyMatchFailure(root, "no tensor input, or one of higher rank");

    SmallVector<Location> locs;
    for (Operation *op : ops)
      locs.push_back(op->getLoc());
    auto fused = ElementwiseOp::create(rw, fusionLoc(rw.getContext(), locs),
                                       resultType, leaves);
    Block *body = rw.createBlock(&fused.getBody());
    DenseMap<Value, Value> scalar;
    for (Value leaf : leaves)
      scalar[leaf] = body->addArgument(
          cast<RankedTensorType>(leaf.getType()).getElementType(), leaf.getLoc());
    OpBuilder b = OpBuilder::atBlockEnd(body);
    for (Operation *op : ops) {
      Type et = cast<RankedTensorType>(op->getResult(0).getType()).getElementType();
      SmallVector<Value> args;
      for (Value v : op->getOperands()) {
        if (auto it = scalar.find(v); it != scalar.end()) {
          args.push_back(it->second);
          continue;
        }
        Type vt = cast<RankedTensorType>(v.getType()).getElementType();
        args.push_back(arith::ConstantOp::create(
            b, v.getLoc(), b.getFloatAttr(vt, *scalarConstant(v))));
      }
      Value r;
      if (auto inner = dyn_cast<ElementwiseOp>(op)) {
        // Inline the inner body on these arguments.
        IRMapping map;
        Block &ib = inner.getBody().front();
        for (auto [a, v] : llvm::zip(ib.getArguments(), args))
          map.map(a, v);
        for (Operation &o : ib.without_terminator())
          b.clone(o, map);
        r = map.lookup(cast<YieldOp>(ib.getTerminator()).getValue());
      } else {
        r = scalarOf(b, op->getLoc(), op, args, et);
      }
      assert(r && "isFusable admits only ops scalarOf expresses");
      scalar[op->getResult(0)] = r;
    }
    YieldOp::create(b, root->getLoc(), scalar[root->getResult(0)]);
    rw.replaceOp(root, fused.getResult());
    return success();
  }
};

struct FuseElementwisePass
    : public kiln::impl::FuseElementwisePassBase<FuseElementwisePass> {
  void runOnOperation() override {
    if (failed(applyFusion(getOperation(), populateFuseElementwisePatterns)))
      signalPassFailure();
  }
};

} // namespace

void mlir::kiln::populateFuseElementwisePatterns(RewritePatternSet &patterns) {
  patterns.add<FuseElementwiseChain>(patterns.getContext());
}
