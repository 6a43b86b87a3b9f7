//===- Decompose.cpp - expand composite kiln ops into primitives ----------===//
//
// Each pattern rewrites one composite op into the primitive kiln ops that
// compute it. Norms and softmax are computed in f32 (as the composite ops
// specify) and cast back; activations compute in their own type.
//
//===----------------------------------------------------------------------===//

#include "kiln/Passes/Passes.h"

#include "mlir/Dialect/Traits.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/ADT/StringSet.h"

#include <cmath>

namespace mlir::kiln {
#define GEN_PASS_DEF_DECOMPOSEPASS
#include "kiln/Passes/Passes.h.inc"
} // namespace mlir::kiln

using namespace mlir;
using namespace mlir::kiln;

namespace {

/// A rank-0 constant of `elementType`; broadcasting makes it elementwise.
Value scalar(OpBuilder &b, Location loc, Type elementType, double value) {
  auto type = RankedTensorType::get({}, elementType);
  return arith::ConstantOp::create(
      b, loc, type,
      DenseElementsAttr::get(type, FloatAttr::get(elementType, value)));
}

/// `value` converted to `elementType` (no-op when it already is).
Value castTo(OpBuilder &b, Location loc, Value value, Type elementType) {
  auto type = cast<RankedTensorType>(value.getType());
  if (type.getElementType() == elementType)
    return value;
  return CastOp::create(b, loc, type.clone(elementType), value);
}

/// Reduces `value` over dims [axis, rank) keeping them as size 1.
Value reduceTrailing(OpBuilder &b, Location loc, ReduceKind kind, Value value,
                     int64_t axis) {
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<int64_t> axes, shape(type.getShape());
  for (int64_t d = axis; d < type.getRank(); ++d) {
    axes.push_back(d);
    shape[d] = 1;
  }
  return ReduceOp::create(b, loc, type.clone(shape), kind, value, axes,
                          /*keep_dims=*/true);
}

template <typename OpTy>
Value binary(OpBuilder &b, Location loc, Value lhs, Value rhs) {
  // Operands broadcast into the shape of the larger one: every use here
  // combines a full tensor with a reduced (size-1) or scalar operand.
  auto l = cast<RankedTensorType>(lhs.getType());
  auto r = cast<RankedTensorType>(rhs.getType());
  SmallVector<int64_t> shape;
  (void)OpTrait::util::getBroadcastedShape(l.getShape(), r.getShape(), shape);
  return OpTy::create(b, loc, l.clone(shape), lhs, rhs);
}

int64_t normalized(int64_t axis, int64_t rank) {
  return axis < 0 ? axis + rank : axis;
}

/// Base for the patterns: skips ops the `ops` option excludes.
template <typename OpTy>
struct DecomposePattern : public OpRewritePattern<OpTy> {
  DecomposePattern(MLIRContext *ctx, const llvm::StringSet<> &enabled)
      : OpRewritePattern<OpTy>(ctx), enabled(enabled) {}

  LogicalResult matchAndRewrite(OpTy op,
                                PatternRewriter &rewriter) const final {
    StringRef name = op->getName().stripDialect();
    if (!enabled.empty() && !enabled.contains(name))
      return rewriter.notifyMatchFailure(op, "not selected by 'ops'");
    return decompose(op, rewriter);
  }
  virtual LogicalResult decompose(OpTy op, PatternRewriter &rewriter) const = 0;

  const llvm::StringSet<> &enabled;
};

struct DecomposeRmsNorm : public DecomposePattern<RmsNormOp> {
  using DecomposePattern::DecomposePattern;
  LogicalResult decompose(RmsNormOp op, PatternRewriter &rw) const override {
    Location loc = op.getLoc();
    Type f32 = rw.getF32Type();
    auto type = op.getInput().getType();
    int64_t axis = normalized(op.getAxis(), type.getRank());
    Value x = castTo(rw, loc, op.getInput(), f32);
    Value meanSquare = reduceTrailing(rw, loc, ReduceKind::mean,
                                      binary<MulOp>(rw, loc, x, x), axis);
    Value eps = scalar(rw, loc, f32, op.getEpsilon().convertToDouble());
    Value inv = binary<AddOp>(rw, loc, meanSquare, eps);
    inv = RsqrtOp::create(rw, loc, inv);
    Value y = binary<MulOp>(rw, loc, x, inv);
    y = binary<MulOp>(rw, loc, y, castTo(rw, loc, op.getWeight(), f32));
    rw.replaceOp(op, castTo(rw, loc, y, type.getElementType()));
    return success();
  }
};

struct DecomposeLayerNorm : public DecomposePattern<LayerNormOp> {
  using DecomposePattern::DecomposePattern;
  LogicalResult decompose(LayerNormOp op, PatternRewriter &rw) const override {
    Location loc = op.getLoc();
    Type f32 = rw.getF32Type();
    auto type = op.getInput().getType();
    int64_t axis = normalized(op.getAxis(), type.getRank());
    Value x = castTo(rw, loc, op.getInput(), f32);
    Value mean = reduceTrailing(rw, loc, ReduceKind::mean, x, axis);
    Value centered = binary<SubOp>(rw, loc, x, mean);
    Value var = reduceTrailing(rw, loc, ReduceKind::mean,
                               binary<MulOp>(rw, loc, centered, centered),
                               axis);
    Value eps = scalar(rw, loc, f32, op.getEpsilon().convertToDouble());
    Value inv = RsqrtOp::create(rw, loc, binary<AddOp>(rw, loc, var, eps));
    Value y = binary<MulOp>(rw, loc, centered, inv);
    y = binary<MulOp>(rw, loc, y, castTo(rw, loc, op.getWeight(), f32));
    if (Value bias = op.getBias())
      y = binary<AddOp>(rw, loc, y, castTo(rw, loc, bias, f32));
    rw.replaceOp(op, castTo(rw, loc, y, type.getElementType()));
    return success();
  }
};

struct DecomposeSoftmax : public DecomposePattern<SoftmaxOp> {
  using DecomposePattern::DecomposePattern;
  LogicalResult decompose(SoftmaxOp op, PatternRewriter &rw) const override {
    Location loc = op.getLoc();
    auto type = op.getType();
    int64_t axis = normalized(op.getAxis(), type.getRank());
    Value x = castTo(rw, loc, op.getInput(), rw.getF32Type());
    auto reduceAxis = [&](ReduceKind kind, Value v) -> Value {
      auto t = cast<RankedTensorType>(v.getType());
      SmallVector<int64_t> shape(t.getShape());
      shape[axis] = 1;
      return ReduceOp::create(rw, loc, t.clone(shape), kind, v,
                              ArrayRef<int64_t>{axis}, /*keep_dims=*/true);
    };
    // Subtracting the row max keeps exp from overflowing.
    Value shifted = binary<SubOp>(rw, loc, x, reduceAxis(ReduceKind::max, x));
    Value e = ExpOp::create(rw, loc, shifted);
    Value y = binary<DivOp>(rw, loc, e, reduceAxis(ReduceKind::sum, e));
    rw.replaceOp(op, castTo(rw, loc, y, type.getElementType()));
    return success();
  }
};

struct DecomposeActivation : public DecomposePattern<ActivationOp> {
  using DecomposePattern::DecomposePattern;
  LogicalResult decompose(ActivationOp op,
                          PatternRewriter &rw) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    Type et = op.getType().getElementType();
    auto c = [&](double v) { return scalar(rw, loc, et, v); };
    auto sigmoid = [&](Value v) -> Value {
      Value e = ExpOp::create(rw, loc, NegOp::create(rw, loc, v));
      return ReciprocalOp::create(rw, loc, binary<AddOp>(rw, loc, e, c(1.0)));
    };
    Value y;
    switch (op.getKind()) {
    case ActivationKind::relu:
      y = binary<MaxOp>(rw, loc, x, c(0.0));
      break;
    case ActivationKind::sigmoid:
      y = sigmoid(x);
      break;
    case ActivationKind::silu:
      y = binary<MulOp>(rw, loc, x, sigmoid(x));
      break;
    case ActivationKind::gelu: {
      // 0.5 * x * (1 + erf(x / sqrt(2)))
      Value erf = ErfOp::create(rw, loc, binary<MulOp>(rw, loc, x,
                                                       c(M_SQRT1_2)));
      Value half = binary<MulOp>(rw, loc, x, c(0.5));
      y = binary<MulOp>(rw, loc, half, binary<AddOp>(rw, loc, erf, c(1.0)));
      break;
    }
    case ActivationKind::gelu_tanh: {
      // 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))
      Value cube = binary<MulOp>(rw, loc, binary<MulOp>(rw, loc, x, x), x);
      Value inner = binary<AddOp>(rw, loc, x,
                                  binary<MulOp>(rw, loc, cube, c(0.044715)));
      inner = binary<MulOp>(rw, loc, inner, c(std::sqrt(2.0 / M_PI)));
      Value t = TanhOp::create(rw, loc, inner);
      Value half = binary<MulOp>(rw, loc, x, c(0.5));
      y = binary<MulOp>(rw, loc, half, binary<AddOp>(rw, loc, t, c(1.0)));
      break;
    }
    }
    rw.replaceOp(op, y);
    return success();
  }
};

struct DecomposeGlu : public DecomposePattern<GluOp> {
  using DecomposePattern::DecomposePattern;
  LogicalResult decompose(GluOp op, PatternRewriter &rw) const override {
    Location loc = op.getLoc();
    Value gate = op.getGate(), up = op.getUp();
    if (!up) {
      auto type = op.getGate().getType();
      int64_t width = type.getShape().back();
      if (ShapedType::isDynamic(width))
        return rw.notifyMatchFailure(op, "fused gate/up width is dynamic");
      int64_t half = width / 2, last = type.getRank() - 1;
      SmallVector<int64_t> shape(type.getShape());
      shape.back() = half;
      auto slice = [&](int64_t start) -> Value {
        return SliceOp::create(rw, loc, type.clone(shape), op.getGate(),
                               rw.getDenseI64ArrayAttr({last}),
                               rw.getDenseI64ArrayAttr({start}),
                               rw.getDenseI64ArrayAttr({start + half}),
                               rw.getDenseI64ArrayAttr({1}));
      };
      gate = slice(0);
      up = slice(half);
    }
    Value act = ActivationOp::create(rw, loc, gate.getType(),
                                     op.getActivation(), gate);
    rw.replaceOpWithNewOp<MulOp>(op, op.getType(), act, up);
    return success();
  }
};

struct DecomposeGatedMlp : public DecomposePattern<GatedMlpOp> {
  using DecomposePattern::DecomposePattern;
  LogicalResult decompose(GatedMlpOp op, PatternRewriter &rw) const override {
    Location loc = op.getLoc();
    auto inputType = op.getInput().getType();
    if (inputType.getRank() < 2)
      return rw.notifyMatchFailure(op, "matmul needs an input of rank >= 2");
    bool transposed = op.getTransposeWeights();
    auto project = [&](Value x, Value weight) -> Value {
      ArrayRef<int64_t> w = cast<ShapedType>(x.getType()).getShape();
      ArrayRef<int64_t> ws = isa<QTensorType>(weight.getType())
                                 ? cast<QTensorType>(weight.getType()).getShape()
                                 : cast<ShapedType>(weight.getType()).getShape();
      SmallVector<int64_t> shape(w.drop_back());
      shape.push_back(transposed ? ws[0] : ws[1]);
      auto type = RankedTensorType::get(shape, inputType.getElementType());
      auto mm = MatmulOp::create(rw, loc, type, x, weight, Value());
      if (transposed)
        mm.setTransposeB(true);
      return mm;
    };
    Value hidden;
    if (op.getGateUp()) {
      Value gu = project(op.getInput(), op.getGateUp());
      auto t = cast<RankedTensorType>(gu.getType());
      SmallVector<int64_t> shape(t.getShape());
      if (!ShapedType::isDynamic(shape.back()))
        shape.back() /= 2;
      hidden = GluOp::create(rw, loc, t.clone(shape), op.getActivation(), gu,
                             Value());
    } else {
      Value g = project(op.getInput(), op.getGate());
      Value u = project(op.getInput(), op.getUp());
      hidden = GluOp::create(rw, loc, g.getType(), op.getActivation(), g, u);
    }
    rw.replaceOp(op, project(hidden, op.getDown()));
    return success();
  }
};

struct DecomposePass : public mlir::kiln::impl::DecomposePassBase<DecomposePass> {
  using Base::Base;

  LogicalResult initialize(MLIRContext *ctx) override {
    static const llvm::StringSet<> known = {"rms_norm", "layer_norm",
                                            "softmax",  "activation",
                                            "glu",      "gated_mlp"};
    for (const std::string &name : ops) {
      StringRef bare = StringRef(name).trim();
      bare.consume_front("kiln.");
      if (!known.contains(bare))
        return emitError(UnknownLoc::get(ctx))
               << "kiln-decompose: unknown op '" << name
               << "' in 'ops' (expected rms_norm, layer_norm, softmax, "
                  "activation, glu or gated_mlp)";
      enabled.insert(bare);
    }
    RewritePatternSet set(ctx);
    set.add<DecomposeRmsNorm, DecomposeLayerNorm, DecomposeSoftmax,
            DecomposeActivation, DecomposeGlu, DecomposeGatedMlp>(ctx,
                                                                  enabled);
    patterns = FrozenRewritePatternSet(std::move(set));
    return success();
  }

  void runOnOperation() override {
    if (failed(applyPatternsGreedily(getOperation(), patterns)))
      signalPassFailure();
  }

  llvm::StringSet<> enabled;
  FrozenRewritePatternSet patterns;
};

} // namespace
