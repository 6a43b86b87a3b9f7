//===- FuseMlp.cpp - activations, GLU and the gated MLP block -------------===//
//
// Two passes over the feed-forward half of a decoder layer:
//
// kiln-fuse-activations names the activations exporters spell out:
//   silu:      x * sigmoid(x)
//   gelu_tanh: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
//   gelu:      0.5 * x * (1 + erf(x / sqrt(2)))   (or x * 0.7071...)
//
// kiln-fuse-gated-mlp folds act(x @ Wg) * (x @ Wu) into kiln.glu, then
// glu(...) @ Wd into kiln.gated_mlp when the three projections read the same
// input, carry no bias and agree on weight orientation (SwiGLU, GeGLU).
//
//===----------------------------------------------------------------------===//

#include "Match.h"
#include "kiln/Passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <cmath>

namespace mlir::kiln {
#define GEN_PASS_DEF_FUSEACTIVATIONSPASS
#define GEN_PASS_DEF_FUSEGATEDMLPPASS
#include "kiln/Passes/Passes.h.inc"
} // namespace mlir::kiln

using namespace mlir;
using namespace mlir::kiln;
using namespace mlir::kiln::match;

namespace {

/// A splat within a relative 1e-4 of `expected` (exporters round the
/// constants of the GELU approximations differently).
bool isNear(Value v, double expected) {
  auto s = splat(v);
  return s && std::abs(*s - expected) <= 1e-4 * std::abs(expected);
}

/// x * c (either order) with c near `constant`; returns x.
Value matchScaled(Value v, double constant) {
  Value x;
  if (auto m = def<MulOp>(v))
    eitherOrder(m.getLhs(), m.getRhs(), [&](Value a, Value b) {
      if (!isNear(b, constant))
        return false;
      x = a;
      return true;
    });
  if (auto d = def<DivOp>(v))
    if (isNear(d.getRhs(), 1.0 / constant))
      x = d.getLhs();
  return x;
}

/// x^3 as pow(x, 3), x * x * x or x * x^2; returns x.
Value matchCube(Value v) {
  if (auto p = def<PowOp>(v))
    return isSplat(p.getRhs(), 3.0) ? p.getLhs() : Value();
  Value x;
  if (auto m = def<MulOp>(v))
    eitherOrder(m.getLhs(), m.getRhs(), [&](Value a, Value b) {
      if (matchSquare(b) != a)
        return false;
      x = a;
      return true;
    });
  return x;
}

/// 1 + f(...) where f is UnaryT; returns the UnaryT op's input.
template <typename UnaryT> Value matchOnePlus(Value v) {
  Value in;
  if (auto add = def<AddOp>(v))
    eitherOrder(add.getLhs(), add.getRhs(), [&](Value a, Value b) {
      auto u = def<UnaryT>(a);
      if (!u || !isSplat(b, 1.0))
        return false;
      in = u.getInput();
      return true;
    });
  return in;
}

/// 0.5 * x * (1 + g) with its three factors in any grouping; calls
/// `inner(x, gArg)` with the argument of the unary op in g.
template <typename UnaryT, typename Fn>
bool matchHalfXOnePlus(MulOp mul, Fn &&inner) {
  return eitherOrder(mul.getLhs(), mul.getRhs(), [&](Value a, Value b) {
    // (0.5 * x) * (1 + g) or x * (0.5 * (1 + g)) or x * ((1 + g) * 0.5).
    if (Value arg = matchOnePlus<UnaryT>(b))
      if (Value x = matchScaled(a, 0.5))
        if (inner(x, arg))
          return true;
    if (Value half = matchScaled(b, 0.5))
      if (Value arg = matchOnePlus<UnaryT>(half))
        if (inner(a, arg))
          return true;
    // (x * (1 + g)) * 0.5.
    if (!isNear(b, 0.5))
      return false;
    auto m = def<MulOp>(a);
    return m && eitherOrder(m.getLhs(), m.getRhs(), [&](Value x, Value c) {
             Value arg = matchOnePlus<UnaryT>(c);
             return arg && inner(x, arg);
           });
  });
}

struct FuseSilu : public OpRewritePattern<MulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MulOp mul, PatternRewriter &rw) const override {
    Value x;
    eitherOrder(mul.getLhs(), mul.getRhs(), [&](Value a, Value b) {
      auto s = def<ActivationOp>(b);
      if (!s || s.getKind() != ActivationKind::sigmoid || s.getInput() != a)
        return false;
      x = a;
      return true;
    });
    if (!x || x.getType() != mul.getType())
      return rw.notifyMatchFailure(mul, "not x * sigmoid(x)");
    Location loc = fusedLoc(mul, {x});
    rw.replaceOp(mul, ActivationOp::create(rw, loc, mul.getType(),
                                           ActivationKind::silu, x));
    return success();
  }
};

struct FuseGeluTanh : public OpRewritePattern<MulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MulOp mul, PatternRewriter &rw) const override {
    const double k = std::sqrt(2.0 / M_PI), c = 0.044715;
    Value found;
    matchHalfXOnePlus<TanhOp>(mul, [&](Value x, Value arg) {
      // sqrt(2/pi) * (x + 0.044715 * x^3), or x*k + (x^3)*(c*k).
      Value sum = matchScaled(arg, k);
      auto add = def<AddOp>(sum);
      if (!add)
        return false;
      bool ok = eitherOrder(add.getLhs(), add.getRhs(), [&](Value a, Value b) {
        return a == x && matchCube(matchScaled(b, c)) == x;
      });
      if (ok)
        found = x;
      return ok;
    });
    if (!found || found.getType() != mul.getType())
      return rw.notifyMatchFailure(mul, "not the tanh GELU");
    Location loc = fusedLoc(mul, {found});
    rw.replaceOp(mul, ActivationOp::create(rw, loc, mul.getType(),
                                           ActivationKind::gelu_tanh, found));
    return success();
  }
};

struct FuseGeluErf : public OpRewritePattern<MulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MulOp mul, PatternRewriter &rw) const override {
    Value found;
    matchHalfXOnePlus<ErfOp>(mul, [&](Value x, Value arg) {
      if (matchScaled(arg, 1.0 / std::sqrt(2.0)) != x)
        return false;
      found = x;
      return true;
    });
    if (!found || found.getType() != mul.getType())
      return rw.notifyMatchFailure(mul, "not the erf GELU");
    Location loc = fusedLoc(mul, {found});
    rw.replaceOp(mul, ActivationOp::create(rw, loc, mul.getType(),
                                           ActivationKind::gelu, found));
    return success();
  }
};

bool isGluActivation(ActivationKind k) {
  return k == ActivationKind::silu || k == ActivationKind::gelu ||
         k == ActivationKind::gelu_tanh || k == ActivationKind::relu ||
         k == ActivationKind::sigmoid;
}

/// act(g) * u -> glu act g, u when both are projections; and
/// act(y[..., :F]) * y[..., F:] -> glu act y (one operand) when y is a fused
/// gate/up projection of width 2F (Phi-3's chunk). The activation feeds only
/// this product.
struct FuseGlu : public OpRewritePattern<MulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MulOp mul, PatternRewriter &rw) const override {
    ActivationOp act;
    Value up, fused;
    eitherOrder(mul.getLhs(), mul.getRhs(), [&](Value a, Value b) {
      auto x = def<ActivationOp>(a);
      if (!x || !isGluActivation(x.getKind()) || !x->hasOneUse() ||
          x.getType() != mul.getType() || b.getType() != mul.getType())
        return false;
      // Both halves must be projections, or this is some other product.
      if (def<MatmulOp>(x.getInput()) && def<MatmulOp>(b)) {
        act = x;
        up = b;
        return true;
      }
      Value y1, y2;
      int64_t lo1, hi1, lo2, hi2;
      if (!matchLastSlice(x.getInput(), y1, lo1, hi1) ||
          !matchLastSlice(b, y2, lo2, hi2) || y1 != y2 || !def<MatmulOp>(y1))
        return false;
      int64_t width = cast<RankedTensorType>(y1.getType()).getShape().back();
      if (width % 2 || lo1 != 0 || hi1 != width / 2 || lo2 != width / 2 ||
          hi2 != width)
        return false;
      act = x;
      fused = y1;
      return true;
    });
    if (!act)
      return rw.notifyMatchFailure(mul, "not act(x @ Wg) * (x @ Wu)");
    Value gate = fused ? fused : act.getInput();
    SmallVector<Value> leaves{gate};
    if (up)
      leaves.push_back(up);
    Location loc = fusedLoc(mul, leaves);
    rw.replaceOp(
        mul, GluOp::create(rw, loc, mul.getType(), act.getKind(), gate, up));
    return success();
  }
};

/// A bias-free projection of a float tensor by a rank-2 (possibly
/// quantized) weight.
bool isPlainProjection(MatmulOp m) {
  if (!m || m.getBias() || !isa<RankedTensorType>(m.getA().getType()))
    return false;
  Type b = m.getB().getType();
  if (auto q = dyn_cast<QTensorType>(b))
    return q.getShape().size() == 2;
  return cast<RankedTensorType>(b).getRank() == 2;
}

/// glu(x @ Wg, x @ Wu) @ Wd -> gated_mlp x, gate(Wg) up(Wu) down(Wd), and
/// glu(x @ Wgu) @ Wd -> gated_mlp x, gate_up(Wgu) down(Wd).
struct FuseGatedMlp : public OpRewritePattern<MatmulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MatmulOp down,
                                PatternRewriter &rw) const override {
    auto glu = def<GluOp>(down.getA());
    if (!isPlainProjection(down) || !glu || !glu->hasOneUse())
      return rw.notifyMatchFailure(down, "not glu(...) @ Wd");
    auto gate = def<MatmulOp>(glu.getGate());
    auto up = glu.getUp() ? def<MatmulOp>(glu.getUp()) : MatmulOp();
    if (!isPlainProjection(gate) || !gate->hasOneUse() ||
        (glu.getUp() && (!isPlainProjection(up) || !up->hasOneUse())))
      return rw.notifyMatchFailure(down,
                                   "gate and up are not bias-free projections");
    if (up && gate.getA() != up.getA())
      return rw.notifyMatchFailure(down, "gate and up read different inputs");
    bool t = down.getTransposeB();
    if (gate.getTransposeB() != t || (up && up.getTransposeB() != t))
      return rw.notifyMatchFailure(down, "the weights' orientations differ");
    Value x = gate.getA();
    if (x.getType() != down.getType())
      return rw.notifyMatchFailure(down, "the block changes the hidden type");
    SmallVector<Value> leaves{x, gate.getB(), down.getB()};
    if (up)
      leaves.push_back(up.getB());
    Location loc = fusedLoc(down, leaves);
    // The matmuls verified, so the shapes compose: [.., H] x [H, F] (or
    // [H, 2F] halved by the glu), then [.., F] x [F, H] back to x's type.
    auto op =
        GatedMlpOp::create(rw, loc, down.getType(), glu.getActivationAttr(), x,
                           up ? gate.getB() : Value(), up ? up.getB() : Value(),
                           up ? Value() : gate.getB(), down.getB(),
                           t ? rw.getUnitAttr() : UnitAttr());
    rw.replaceOp(down, op.getResult());
    return success();
  }
};

struct FuseActivationsPass
    : public kiln::impl::FuseActivationsPassBase<FuseActivationsPass> {
  void runOnOperation() override {
    if (failed(applyFusion(getOperation(), populateFuseActivationsPatterns)))
      signalPassFailure();
  }
};

struct FuseGatedMlpPass
    : public kiln::impl::FuseGatedMlpPassBase<FuseGatedMlpPass> {
  void runOnOperation() override {
    if (failed(applyFusion(getOperation(), populateFuseGatedMlpPatterns)))
      signalPassFailure();
  }
};

} // namespace

void mlir::kiln::populateFuseActivationsPatterns(RewritePatternSet &patterns) {
  patterns.add<FuseSilu, FuseGeluTanh, FuseGeluErf>(patterns.getContext());
}

void mlir::kiln::populateFuseGatedMlpPatterns(RewritePatternSet &patterns) {
  patterns.add<FuseGlu, FuseGatedMlp>(patterns.getContext());
}
