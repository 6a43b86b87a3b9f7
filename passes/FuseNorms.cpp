//===- FuseNorms.cpp - RMSNorm and LayerNorm from their decompositions ----===//
//
// Exporters write a norm op by op. RMSNorm (Llama, Mistral, Qwen, Gemma):
//
//   m = mean(x^2, -1, keepdim)          x^2 as pow(x, 2) or x * x
//   n = x * rsqrt(m + eps)              or x / sqrt(m + eps), x * (1/sqrt),
//                                       x * reciprocal(sqrt(...))
//   y = w * n                           either order; n may be cast back
//                                       from an f32 island (x = cast(x0))
//
// LayerNorm: c = x - mean(x); n = c * rsqrt(mean(c^2) + eps); y = n * w + b.
// Each becomes one kiln.rms_norm / kiln.layer_norm. What must hold, and is
// checked: the same x feeds the statistics and the scaling, the means run
// over the last dimension only, eps is a non-negative splat added *inside*
// the square root, and the weight (bias) is a vector over that dimension.
//
//===----------------------------------------------------------------------===//

#include "Match.h"
#include "kiln/Passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::kiln {
#define GEN_PASS_DEF_FUSENORMSPASS
#include "kiln/Passes/Passes.h.inc"
} // namespace mlir::kiln

using namespace mlir;
using namespace mlir::kiln;
using namespace mlir::kiln::match;

namespace {

/// d = mean(...) + eps with a splat eps >= 0; returns the mean's input.
Value matchMeanPlusEps(Value d, double &eps) {
  auto add = def<AddOp>(d);
  if (!add)
    return Value();
  Value in;
  eitherOrder(add.getLhs(), add.getRhs(), [&](Value a, Value b) {
    auto r = def<ReduceOp>(a);
    auto e = splat(b);
    if (!isLastDimMean(r) || !e || *e < 0)
      return false;
    eps = *e;
    in = r.getInput();
    return true;
  });
  return in;
}

/// x * rsqrt(mean(x^2) + eps) (any spelling); sets x and eps.
bool matchRmsNormalized(Value n, Value &x, double &eps) {
  Value scaled, d;
  if (!matchScaleByInverseSqrt(n, scaled, d))
    return false;
  Value sq = matchMeanPlusEps(d, eps);
  if (!sq || matchSquare(sq) != scaled)
    return false;
  x = scaled;
  return true;
}

/// (x - mean(x)) * rsqrt(mean((x - mean(x))^2) + eps); sets x and eps.
bool matchLayerNormalized(Value n, Value &x, double &eps) {
  Value centered, d;
  if (!matchScaleByInverseSqrt(n, centered, d))
    return false;
  auto sub = def<SubOp>(centered);
  if (!sub)
    return false;
  auto mean = def<ReduceOp>(sub.getRhs());
  if (!isLastDimMean(mean) || mean.getInput() != sub.getLhs())
    return false;
  Value sq = matchMeanPlusEps(d, eps);
  if (!sq || matchSquare(sq) != centered)
    return false;
  x = sub.getLhs();
  return true;
}

/// The norm's input and result type: when the normalized value was computed
/// in an f32 island (x = cast(x0)) and cast back to x0's type, the fused op
/// reads x0 directly.
Value normInput(Value x, Type resultElement) {
  Value x0 = stripCasts(x);
  if (x0 != x &&
      cast<RankedTensorType>(x0.getType()).getElementType() == resultElement)
    return x0;
  return x;
}

/// y = w * N(x) where N is a normalization `matchNormalized` recognizes.
template <typename Matcher>
bool matchScaledNorm(MulOp mul, Matcher &&matchNormalized, Value &x, Value &w,
                     double &eps) {
  return eitherOrder(mul.getLhs(), mul.getRhs(), [&](Value a, Value b) {
    Value xi;
    if (!matchNormalized(stripCasts(a), xi, eps) || !isChannelVector(b, xi))
      return false;
    x = xi;
    w = b;
    return true;
  });
}

/// Why neither operand of `mul` is a weighted RMS normalization: the stage
/// of the most complete attempt that failed (for the fusion report).
std::string explainRmsFailure(MulOp mul) {
  std::string best = "not weight * x * rsqrt(mean(x^2) + eps)";
  int bestStage = 0;
  auto note = [&](int stage, StringRef why) {
    if (stage > bestStage) {
      bestStage = stage;
      best = why.str();
    }
  };
  eitherOrder(mul.getLhs(), mul.getRhs(), [&](Value a, Value b) {
    Value x, d;
    if (!matchScaleByInverseSqrt(stripCasts(a), x, d))
      return false;
    note(1, "the inverse square root is not of mean(x^2) + eps");
    auto add = def<AddOp>(d);
    if (!add)
      return false;
    eitherOrder(add.getLhs(), add.getRhs(), [&](Value m, Value e) {
      auto r = def<ReduceOp>(m);
      if (!r)
        return false;
      if (!isLastDimMean(r)) {
        note(2, "the statistic is not a mean over the last dimension only");
        return false;
      }
      auto eps = splat(e);
      if (!eps || *eps < 0) {
        note(3, "eps is not a non-negative constant");
        return false;
      }
      if (matchSquare(r.getInput()) != x) {
        note(4, "the mean is not of the square of the normalized tensor");
        return false;
      }
      if (!isChannelVector(b, x))
        note(5, "the weight is not a vector over the normalized dimension");
      return false;
    });
    return false;
  });
  return best;
}

/// Builds the fused norm for `root` (whose result it replaces).
template <typename NormOp>
Value buildNorm(PatternRewriter &rw, Operation *root, Value x, Value w,
                Value bias, double eps) {
  auto resultType = cast<RankedTensorType>(root->getResult(0).getType());
  SmallVector<Value> leaves{x, w};
  if (bias)
    leaves.push_back(bias);
  // The norm carries the replaced nodes' locations, casts the root's.
  Location loc = root->getLoc();
  Location fused = fusedLoc(root, leaves);
  Value input = normInput(x, resultType.getElementType());
  auto inType = cast<RankedTensorType>(input.getType());
  Type et = inType.getElementType();
  w = castTo(rw, loc, w, et);
  if (bias)
    bias = castTo(rw, loc, bias, et);
  Value y;
  if constexpr (std::is_same_v<NormOp, RmsNormOp>)
    y = RmsNormOp::create(rw, fused, inType, input, w,
                          rw.getF32FloatAttr(float(eps)),
                          rw.getI64IntegerAttr(-1));
  else
    y = LayerNormOp::create(rw, fused, inType, input, w, bias,
                            rw.getF32FloatAttr(float(eps)),
                            rw.getI64IntegerAttr(-1));
  y = castTo(rw, loc, y, resultType.getElementType());
  if (y.getType() != resultType) // broadcasting never grows a norm's shape
    return Value();
  return y;
}

struct FuseRmsNorm : public OpRewritePattern<MulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MulOp mul, PatternRewriter &rw) const override {
    Value x, w;
    double eps;
    if (!matchScaledNorm(mul, matchRmsNormalized, x, w, eps))
      return rw.notifyMatchFailure(
          mul, [&](Diagnostic &diag) { diag << explainRmsFailure(mul); });
    Value y = buildNorm<RmsNormOp>(rw, mul, x, w, Value(), eps);
    if (!y)
      return rw.notifyMatchFailure(mul, "the norm would change the shape");
    rw.replaceOp(mul, y);
    return success();
  }
};

/// LayerNorm without a bias; FuseLayerNormBias adds a following bias. It is
/// tried before FuseRmsNorm: a LayerNorm is also an RMSNorm of x - mean(x),
/// and the fused LayerNorm is the better rewrite.
struct FuseLayerNorm : public OpRewritePattern<MulOp> {
  FuseLayerNorm(MLIRContext *ctx) : OpRewritePattern(ctx, /*benefit=*/2) {}
  LogicalResult matchAndRewrite(MulOp mul, PatternRewriter &rw) const override {
    Value x, w;
    double eps;
    if (!matchScaledNorm(mul, matchLayerNormalized, x, w, eps))
      return rw.notifyMatchFailure(
          mul, "not weight * (x - mean) * rsqrt(var + eps)");
    Value y = buildNorm<LayerNormOp>(rw, mul, x, w, Value(), eps);
    if (!y)
      return rw.notifyMatchFailure(mul, "the norm would change the shape");
    rw.replaceOp(mul, y);
    return success();
  }
};

/// layer_norm(x, w) + b -> layer_norm(x, w, b) for a channel vector b.
struct FuseLayerNormBias : public OpRewritePattern<AddOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AddOp add, PatternRewriter &rw) const override {
    LayerNormOp norm;
    Value bias;
    eitherOrder(add.getLhs(), add.getRhs(), [&](Value a, Value b) {
      auto n = def<LayerNormOp>(a);
      if (!n || n.getBias() || !n->hasOneUse() || !isChannelVector(b, a) ||
          n.getType() != add.getType() ||
          (n.getAxis() != -1 && n.getAxis() != n.getType().getRank() - 1))
        return false;
      norm = n;
      bias = b;
      return true;
    });
    if (!norm)
      return rw.notifyMatchFailure(add, "not layer_norm(x, w) + bias");
    Value b = castTo(rw, add.getLoc(), bias, norm.getType().getElementType());
    rw.replaceOpWithNewOp<LayerNormOp>(
        add, norm.getType(), norm.getInput(), norm.getWeight(), b,
        norm.getEpsilonAttr(), norm.getAxisAttr());
    return success();
  }
};

/// rms_norm(a + b, w) -> add_rms_norm(a, b, w) when the add is a plain
/// residual add (a, b and the sum of one type, no broadcasting); the add's
/// other users (the residual stream) read the fused op's sum.
struct FuseAddRmsNorm : public OpRewritePattern<RmsNormOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RmsNormOp norm,
                                PatternRewriter &rw) const override {
    auto add = def<AddOp>(norm.getInput());
    if (!add || add.getLhs().getType() != add.getType() ||
        add.getRhs().getType() != add.getType() ||
        norm.getType() != add.getType())
      return rw.notifyMatchFailure(norm, "not rms_norm(a + b) of one type");
    // The fused op replaces the add, so the weight must already exist there.
    if (Operation *w = norm.getWeight().getDefiningOp())
      if (w->getBlock() != add->getBlock() || !w->isBeforeInBlock(add))
        return rw.notifyMatchFailure(norm,
                                     "the weight is computed after the add");
    rw.setInsertionPoint(add);
    auto fused = AddRmsNormOp::create(
        rw, fusionLoc(rw.getContext(), {norm.getLoc(), add.getLoc()}),
        add.getType(), add.getType(), add.getLhs(), add.getRhs(),
        norm.getWeight(), norm.getEpsilonAttr(), norm.getAxisAttr());
    rw.replaceOp(norm, fused.getResult());
    rw.replaceOp(add, fused.getSum());
    return success();
  }
};

/// cast(norm(cast(x0), w)) with x0 of the outer cast's type -> norm(x0, w):
/// the norm computes in f32 whatever its type, so the f32 island around it
/// (what kiln-decompose and bf16 exports write) only costs two copies.
template <typename NormOp>
struct AbsorbNormCasts : public OpRewritePattern<CastOp> {
  using OpRewritePattern<CastOp>::OpRewritePattern;
  LogicalResult matchAndRewrite(CastOp cast,
                                PatternRewriter &rw) const override {
    auto norm = def<NormOp>(cast.getInput());
    if (!norm || !norm->hasOneUse())
      return rw.notifyMatchFailure(cast, "not a cast of a norm");
    Value x0 = stripCasts(norm.getInput());
    if (x0.getType() != cast.getType() || x0 == norm.getInput())
      return rw.notifyMatchFailure(cast, "no f32 island around the norm");
    Type et = cast.getType().getElementType();
    Location loc = norm.getLoc();
    Value w = castTo(rw, loc, stripCasts(norm.getWeight()), et);
    if constexpr (std::is_same_v<NormOp, RmsNormOp>) {
      rw.replaceOpWithNewOp<RmsNormOp>(cast, cast.getType(), x0, w,
                                       norm.getEpsilonAttr(),
                                       norm.getAxisAttr())
          ->setLoc(loc);
    } else {
      Value b = norm.getBias() ? castTo(rw, loc, stripCasts(norm.getBias()), et)
                               : Value();
      rw.replaceOpWithNewOp<LayerNormOp>(cast, cast.getType(), x0, w, b,
                                         norm.getEpsilonAttr(),
                                         norm.getAxisAttr())
          ->setLoc(loc);
    }
    return success();
  }
};

struct FuseNormsPass : public kiln::impl::FuseNormsPassBase<FuseNormsPass> {
  void runOnOperation() override {
    if (failed(applyFusion(getOperation(), populateFuseNormsPatterns)))
      signalPassFailure();
  }
};

} // namespace

void mlir::kiln::populateFuseNormsPatterns(RewritePatternSet &patterns) {
  patterns.add<FuseRmsNorm, FuseLayerNorm, FuseLayerNormBias,
               AbsorbNormCasts<RmsNormOp>, AbsorbNormCasts<LayerNormOp>,
               FuseAddRmsNorm>(patterns.getContext());
}
