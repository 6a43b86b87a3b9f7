//===- FuseAttention.cpp - scaled dot-product attention from matmuls ------===//
//
// Decomposed exports compute attention on [B, H, S, D] heads as
//
//   s = (q * a) @ (k^T * b)  [* c | / c]        scale split anywhere
//   s = tanh(s / cap) * cap                      optional softcap (Gemma 2)
//   p = softmax(s + mask)                        additive mask, optional
//   p = where(isnan(p), 0, p)                    optional guard (sdpa export)
//   o = p @ v
//
// with k and v repeated from Hkv heads by reshape -> expand -> reshape
// (repeat_kv), and k^T as a transpose of the last two dimensions (or, from
// dynamo, a flatten / transpose / unflatten that amounts to it). This
// becomes one kiln.attention on the un-repeated [B, T, Hkv, D] keys and
// values with scale a*b*c and softcap cap, between transposes to and from
// kiln's [B, S, H, D]. A boolean mask turned additive by where(m, 0, -inf)
// is passed as the boolean. kiln.attention gives a row that sees no key
// zeros, which is what the isnan guard makes of it.
//
// Left alone: a scale applied after the softcap, a softmax over another
// axis, a mask that is not added to the scores, matmuls of other shapes, a
// repeat that is not a pure per-head expansion.
//
//===----------------------------------------------------------------------===//

#include "Match.h"
#include "kiln/Passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <cmath>

namespace mlir::kiln {
#define GEN_PASS_DEF_FUSEATTENTIONPASS
#include "kiln/Passes/Passes.h.inc"
} // namespace mlir::kiln

using namespace mlir;
using namespace mlir::kiln;
using namespace mlir::kiln::match;

namespace {

RankedTensorType rankedType(Value v) {
  return dyn_cast<RankedTensorType>(v.getType());
}

/// Peels multiplications and divisions by splat constants off `v`,
/// accumulating the factor into `scale`.
Value peelScale(Value v, double &scale) {
  for (;;) {
    if (auto m = def<MulOp>(v)) {
      auto s = splat(m.getRhs());
      Value other = m.getLhs();
      if (!s) {
        s = splat(m.getLhs());
        other = m.getRhs();
      }
      if (!s || other.getType() != v.getType())
        return v;
      scale *= *s;
      v = other;
      continue;
    }
    if (auto d = def<DivOp>(v)) {
      auto s = splat(d.getRhs());
      if (!s || *s == 0 || d.getLhs().getType() != v.getType())
        return v;
      scale /= *s;
      v = d.getLhs();
      continue;
    }
    return v;
  }
}

/// One element of a shape operand: a constant, or dimension `dim` of
/// `value`.
struct ShapeElem {
  Value value;
  int64_t dim = 0;
  int64_t constant = 0;
  bool operator==(const ShapeElem &o) const {
    return value == o.value && (value ? dim == o.dim : constant == o.constant);
  }
};

/// Decodes a 1-D i64 shape operand built as concat(constants,
/// slice(shape_of(v)))...
std::optional<SmallVector<ShapeElem>> decodeShape(Value shape) {
  SmallVector<Value> parts{shape};
  if (auto c = def<ConcatOp>(shape))
    parts.assign(c.getInputs().begin(), c.getInputs().end());
  SmallVector<ShapeElem> out;
  for (Value p : parts) {
    DenseElementsAttr attr;
    if (matchPattern(p, m_Constant(&attr))) {
      for (APInt v : attr.getValues<APInt>())
        out.push_back({Value(), 0, v.getSExtValue()});
      continue;
    }
    auto s = def<SliceOp>(p);
    auto of = s ? def<ShapeOfOp>(s.getInput()) : ShapeOfOp();
    if (!of || !rankedType(of.getInput()) || s.getSteps()[0] != 1)
      return std::nullopt;
    int64_t rank = rankedType(of.getInput()).getRank();
    auto norm = [&](int64_t i) {
      if (i < 0)
        i += rank;
      return std::clamp<int64_t>(i, 0, rank);
    };
    for (int64_t d = norm(s.getStarts()[0]); d < norm(s.getEnds()[0]); ++d)
      out.push_back({of.getInput(), d, 0});
  }
  return out;
}

ShapeElem dimOf(Value v, int64_t d) { return {v, d, 0}; }
ShapeElem constElem(int64_t c) { return {Value(), 0, c}; }

/// dynamo's k^T: reshape(transpose(reshape(x, [-1, T, D]), [0, 2, 1]),
/// [B, H, D, T]) where T and B, H are read off y, and x is y or reshapes to
/// it (the same row-major buffer, so flattening either gives the same
/// [N, T, D]). Returns y.
Value matchFlattenedTranspose(Value v) {
  auto outer = def<ReshapeOp>(v);
  auto tr = outer ? def<TransposeOp>(outer.getInput()) : TransposeOp();
  auto inner = tr ? def<ReshapeOp>(tr.getInput()) : ReshapeOp();
  if (!inner || !outer.getShape() || !inner.getShape() ||
      tr.getPermutation() != ArrayRef<int64_t>{0, 2, 1})
    return Value();
  auto s1 = decodeShape(inner.getShape());
  auto s2 = decodeShape(outer.getShape());
  if (!s1 || !s2 || s1->size() != 3 || s2->size() != 4)
    return Value();
  Value y = (*s1)[1].value;
  auto yt = y ? rankedType(y) : RankedTensorType();
  if (!yt || yt.getRank() != 4 || ShapedType::isDynamic(yt.getDimSize(3)))
    return Value();
  int64_t d = yt.getDimSize(3);
  SmallVector<ShapeElem> want1{constElem(-1), dimOf(y, 2), constElem(d)};
  SmallVector<ShapeElem> want2{dimOf(y, 0), dimOf(y, 1), constElem(d),
                               dimOf(y, 2)};
  if (*s1 != ArrayRef(want1) || *s2 != ArrayRef(want2))
    return Value();
  Value x = inner.getInput();
  if (x != y && !(def<ReshapeOp>(y) && def<ReshapeOp>(y).getInput() == x))
    return Value();
  if (rankedType(v).getElementType() != yt.getElementType())
    return Value();
  return y;
}

/// k^T in any spelling (with scale factors folded into `scale`): returns k
/// as [B, H, T, D].
Value matchKeysTransposed(Value kt, double &scale) {
  kt = peelScale(kt, scale);
  if (auto t = def<TransposeOp>(kt))
    if (t.getPermutation() == ArrayRef<int64_t>{0, 1, 3, 2})
      return peelScale(t.getInput(), scale);
  return matchFlattenedTranspose(kt);
}

/// repeat_kv: reshape([B, Hkv, T, D] -> [B, Hkv, 1, T, D]), broadcast of
/// that unit dimension to G, reshape to [B, Hkv*G, T, D]. Returns the
/// [B, Hkv, T, D] value, or `v` itself when it is not repeated.
Value unrepeat(Value v) {
  auto r2 = def<ReshapeOp>(v);
  auto bc = r2 ? def<BroadcastOp>(r2.getInput()) : BroadcastOp();
  auto r1 = bc ? def<ReshapeOp>(bc.getInput()) : ReshapeOp();
  if (!r1)
    return v;
  auto k0 = rankedType(r1.getInput());
  auto t1 = rankedType(r1.getResult()), tb = rankedType(bc.getResult());
  auto t2 = rankedType(v);
  if (k0.getRank() != 4 || t1.getRank() != 5 || tb.getRank() != 5 ||
      t2.getRank() != 4)
    return v;
  int64_t hkv = k0.getDimSize(1), g = tb.getDimSize(2);
  bool shapes =
      !ShapedType::isDynamic(hkv) && !ShapedType::isDynamic(g) &&
      t1.getShape() == ArrayRef<int64_t>{k0.getDimSize(0), hkv, 1,
                                         k0.getDimSize(2), k0.getDimSize(3)} &&
      tb.getDimSize(1) == hkv && tb.getDimSize(3) == k0.getDimSize(2) &&
      tb.getDimSize(4) == k0.getDimSize(3) && t2.getDimSize(1) == hkv * g &&
      t2.getDimSize(3) == k0.getDimSize(3);
  // The final reshape may carry a shape operand; without one its dynamic
  // dims are the broadcast's in order (B, T), which is the layout wanted.
  return shapes ? r1.getInput() : v;
}

/// tanh(s / cap) * cap; sets cap and returns s.
Value peelSoftcap(Value v, double &cap) {
  auto m = def<MulOp>(v);
  if (!m)
    return Value();
  Value found;
  eitherOrder(m.getLhs(), m.getRhs(), [&](Value a, Value b) {
    auto c = splat(b);
    auto t = def<TanhOp>(a);
    if (!c || *c <= 0 || !t)
      return false;
    // Exactly one division by cap (or product with 1/cap); factors further
    // in are the attention scale.
    Value s;
    if (auto d = def<DivOp>(t.getInput())) {
      auto e = splat(d.getRhs());
      if (e && *e == *c)
        s = d.getLhs();
    } else if (auto mm = def<MulOp>(t.getInput())) {
      eitherOrder(mm.getLhs(), mm.getRhs(), [&](Value x, Value f) {
        auto e = splat(f);
        if (!e || std::abs(*e * *c - 1.0) > 1e-6)
          return false;
        s = x;
        return true;
      });
    }
    if (!s)
      return false;
    cap = *c;
    found = s;
    return true;
  });
  return found;
}

/// where(p != p, 0, p) -> p.
Value peelNanGuard(Value v) {
  auto sel = def<SelectOp>(v);
  if (!sel || !isSplat(sel.getOnTrue(), 0.0))
    return v;
  auto cmp = def<CompareOp>(sel.getCondition());
  Value p = sel.getOnFalse();
  if (!cmp || cmp.getPredicate() != ComparePredicate::ne || cmp.getLhs() != p ||
      cmp.getRhs() != p || p.getType() != v.getType())
    return v;
  return p;
}

/// The boolean m of where(m, 0, -inf), or of where(m, 0, v) with v <=
/// -1e30 (dynamo writes finfo.min): a key scored that low gets probability
/// exactly 0 in f32 unless every key of the row is masked, and such a row
/// (left padding) is one no real token reads. kiln.attention gives it
/// zeros.
Value booleanOfAdditiveMask(Value mask) {
  auto sel = def<SelectOp>(mask);
  if (!sel || !isSplat(sel.getOnTrue(), 0.0))
    return Value();
  auto low = splat(sel.getOnFalse());
  if (!low || *low > -1e30)
    return Value();
  return sel.getCondition();
}

/// range(0, n, 1); returns n.
Value matchIota(Value v) {
  auto r = def<RangeOp>(v);
  if (!r || !isSplat(r.getStart(), 0) || !isSplat(r.getDelta(), 1))
    return Value();
  return r.getLimit();
}

/// A 1-D index vector reshaped to rank 4 with every dimension 1 but `dim`.
Value matchPlaced(Value v, int64_t dim) {
  auto r = def<ReshapeOp>(v);
  if (!r)
    return Value();
  auto t = rankedType(v);
  auto in = rankedType(r.getInput());
  if (t.getRank() != 4 || in.getRank() != 1)
    return Value();
  for (int64_t d = 0; d < 4; ++d)
    if (d != dim && t.getDimSize(d) != 1)
      return Value();
  return r.getInput();
}

/// Whether `c` is the causal mask aligned to the end of the keys:
/// key j visible to query i iff j <= i + P, with keys j in [0, P + S) and
/// queries i in [0, S) placed on dims 3 and 2. P (the past length) and S
/// must be the same values in both ranges, which is how exporters build it
/// (`arange(S) + past` against `arange(past + S)`); it is then exactly
/// kiln.attention's `causal` kind.
bool isCausalConjunct(Value c, Value &keysOut, Value &queriesOut) {
  auto cmp = def<CompareOp>(c);
  if (!cmp)
    return false;
  Value keys, queries;
  if (cmp.getPredicate() == ComparePredicate::le) {
    keys = cmp.getLhs();
    queries = cmp.getRhs();
  } else if (cmp.getPredicate() == ComparePredicate::ge) {
    keys = cmp.getRhs();
    queries = cmp.getLhs();
  } else {
    return false;
  }
  Value keyRange = matchPlaced(keys, 3), queryPos = matchPlaced(queries, 2);
  if (!keyRange || !queryPos)
    return false;
  Value keyEnd = matchIota(keyRange);
  auto shifted = def<AddOp>(queryPos);
  auto endSum = def<AddOp>(keyEnd);
  if (!shifted || !endSum)
    return false;
  keysOut = keys;
  queriesOut = queries;
  return eitherOrder(shifted.getLhs(), shifted.getRhs(),
                     [&](Value iota, Value past) {
                       Value s = matchIota(iota);
                       if (!s)
                         return false;
                       return eitherOrder(endSum.getLhs(), endSum.getRhs(),
                                          [&](Value a, Value b) {
                                            return a == past && b == s;
                                          });
                     });
}

/// The conjuncts of a boolean mask (an `and` tree; broadcasts are looked
/// through, kiln.attention broadcasts its mask itself).
void collectConjuncts(Value m, SmallVectorImpl<Value> &out) {
  if (auto b = def<BroadcastOp>(m))
    return collectConjuncts(b.getInput(), out);
  if (auto a = def<AndOp>(m)) {
    collectConjuncts(a.getLhs(), out);
    collectConjuncts(a.getRhs(), out);
    return;
  }
  out.push_back(m);
}

/// The window of a sliding-window conjunct over the causal conjunct's own
/// key and query indices: j > q - W (or j >= q - (W - 1)), i.e. q - j < W.
/// 0 when `c` is not one.
int64_t slidingWindowOf(Value c, Value keys, Value queries) {
  auto cmp = def<CompareOp>(c);
  if (!cmp)
    return 0;
  Value k, lowered;
  bool strict;
  switch (cmp.getPredicate()) {
  case ComparePredicate::gt:
  case ComparePredicate::ge:
    k = cmp.getLhs();
    lowered = cmp.getRhs();
    strict = cmp.getPredicate() == ComparePredicate::gt;
    break;
  case ComparePredicate::lt:
  case ComparePredicate::le:
    k = cmp.getRhs();
    lowered = cmp.getLhs();
    strict = cmp.getPredicate() == ComparePredicate::lt;
    break;
  default:
    return 0;
  }
  auto sub = def<SubOp>(lowered);
  std::optional<double> w = sub ? splat(sub.getRhs()) : std::nullopt;
  if (k != keys || !sub || sub.getLhs() != queries || !w ||
      *w != std::floor(*w))
    return 0;
  int64_t window = int64_t(*w) + (strict ? 0 : 1);
  return window > 0 ? window : 0;
}

/// Splits a boolean mask into a mask kind, causal or sliding-window, and the
/// rest (padding masks and the like), combined again with `and`; null when
/// nothing is left. `kind` stays none when no conjunct is causal.
Value splitMaskKind(PatternRewriter &rw, Location loc, Value mask,
                    MaskKind &kind, int64_t &window) {
  SmallVector<Value> conjuncts, rest;
  collectConjuncts(mask, conjuncts);
  kind = MaskKind::none;
  window = 0;
  Value keys, queries, causal;
  for (Value c : conjuncts)
    if (isCausalConjunct(c, keys, queries)) {
      causal = c;
      break;
    }
  if (!causal)
    return mask;
  kind = MaskKind::causal;
  for (Value c : conjuncts) {
    if (c == causal || isSplat(c, 1.0))
      continue;
    if (int64_t w = window == 0 ? slidingWindowOf(c, keys, queries) : 0) {
      kind = MaskKind::sliding_window;
      window = w;
      continue;
    }
    rest.push_back(c);
  }
  Value out;
  for (Value c : rest) {
    if (!out) {
      out = c;
      continue;
    }
    SmallVector<int64_t> shape;
    (void)OpTrait::util::getBroadcastedShape(rankedType(out).getShape(),
                                             rankedType(c).getShape(), shape);
    out = AndOp::create(rw, loc, RankedTensorType::get(shape, rw.getI1Type()),
                        out, c);
  }
  return out;
}

Value toBSHD(PatternRewriter &rw, Location loc, Value x) {
  auto t = rankedType(x);
  return TransposeOp::create(
      rw, loc,
      RankedTensorType::get(
          {t.getDimSize(0), t.getDimSize(2), t.getDimSize(1), t.getDimSize(3)},
          t.getElementType()),
      x, rw.getDenseI64ArrayAttr({0, 2, 1, 3}));
}

struct FuseSdpa : public OpRewritePattern<MatmulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MatmulOp pv,
                                PatternRewriter &rw) const override {
    if (pv.getBias() || pv.getTransposeB() || !rankedType(pv.getB()))
      return rw.notifyMatchFailure(pv, "not p @ v");
    // p = softmax(...) over the last axis, maybe guarded and cast.
    Value p = stripCasts(peelNanGuard(pv.getA()));
    auto softmax = def<SoftmaxOp>(p);
    if (!softmax || (softmax.getAxis() != -1 && softmax.getAxis() != 3))
      return rw.notifyMatchFailure(pv, "p is not a softmax over the keys");
    Value s = stripCasts(softmax.getInput());
    // s = scores (+ mask): the scores are the side that is a matmul after
    // scale and softcap are peeled.
    double scale = 1.0, cap = 0.0;
    MatmulOp qk;
    Value mask;
    auto scoresOf = [&](Value v) -> MatmulOp {
      double sc = 1.0, c = 0.0;
      Value inner = v;
      if (Value capped = peelSoftcap(v, c))
        inner = capped;
      inner = stripCasts(peelScale(inner, sc));
      auto m = def<MatmulOp>(inner);
      if (!m)
        return MatmulOp();
      scale = sc;
      cap = c;
      return m;
    };
    if (auto add = def<AddOp>(s)) {
      eitherOrder(add.getLhs(), add.getRhs(), [&](Value a, Value b) {
        qk = scoresOf(a);
        if (!qk)
          return false;
        mask = b;
        return true;
      });
    }
    if (!qk)
      qk = scoresOf(s);
    if (!qk || qk.getBias())
      return rw.notifyMatchFailure(pv, "no q @ k^T under the softmax");
    Value q = peelScale(qk.getA(), scale);
    Value k;
    if (qk.getTransposeB())
      k = peelScale(qk.getB(), scale);
    else
      k = matchKeysTransposed(qk.getB(), scale);
    if (!k)
      return rw.notifyMatchFailure(pv, "the keys are not transposed k");
    auto qt = rankedType(q), kt = rankedType(k), vt = rankedType(pv.getB());
    if (!qt || !kt || qt.getRank() != 4 || kt.getRank() != 4 ||
        vt.getRank() != 4 || qt.getElementType() != kt.getElementType() ||
        qt.getDimSize(1) != kt.getDimSize(1) ||
        vt.getDimSize(1) != kt.getDimSize(1) ||
        qt.getDimSize(3) != kt.getDimSize(3))
      return rw.notifyMatchFailure(pv, "q, k, v are not [B, H, S|T, D] heads");
    Value k0 = unrepeat(k), v0 = unrepeat(pv.getB());
    if (rankedType(k0).getDimSize(1) != rankedType(v0).getDimSize(1))
      return rw.notifyMatchFailure(pv, "keys and values have different heads");
    if (mask) {
      auto mt = rankedType(mask);
      if (!mt || mt.getRank() != 4 || !isa<FloatType>(mt.getElementType()))
        return rw.notifyMatchFailure(pv, "the mask is not a 4-D float tensor");
      if (Value b = booleanOfAdditiveMask(mask))
        mask = b;
    }
    auto resultType = rankedType(pv.getResult());
    SmallVector<Value> leaves{q, k0, v0};
    if (mask)
      leaves.push_back(mask);

    // The attention carries the replaced nodes' locations, the layout glue
    // the root's (the report lists only what was fused).
    Location loc = pv.getLoc();
    Location fused = fusedLoc(pv, leaves);
    Value qb = toBSHD(rw, loc, q);
    Value kb = toBSHD(rw, loc, k0);
    Value vb = toBSHD(rw, loc, v0);
    auto outType = RankedTensorType::get(
        {resultType.getDimSize(0), resultType.getDimSize(2),
         resultType.getDimSize(1), resultType.getDimSize(3)},
        resultType.getElementType());
    auto attn = AttentionOp::create(
        rw, fused, outType, qb, kb, vb, Value(), mask, Value(), ValueRange(),
        MaskAttr::get(rw.getContext(), MaskKind::none, 0, 0),
        rw.getF32FloatAttr(float(scale)),
        cap > 0 ? rw.getF32FloatAttr(float(cap)) : FloatAttr(), SparsityAttr());
    rw.replaceOp(pv, toBSHD(rw, loc, attn));
    return success();
  }
};

/// attention(mask none, attn_mask(m)) where m has a causal conjunct ->
/// attention(mask causal, attn_mask(rest of m)): kernels then skip the keys
/// past each query's frontier. Applies to fused and imported attention.
struct ExtractCausalMask : public OpRewritePattern<AttentionOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AttentionOp op,
                                PatternRewriter &rw) const override {
    Value mask = op.getAttnMask();
    if (op.getMask().getKind() != MaskKind::none || !mask ||
        !rankedType(mask).getElementType().isInteger(1) || op.getCache())
      return rw.notifyMatchFailure(op, "not a boolean mask on mask kind none");
    MaskKind kind;
    int64_t window;
    Value rest = splitMaskKind(rw, op.getLoc(), mask, kind, window);
    if (kind == MaskKind::none)
      return rw.notifyMatchFailure(op, "no conjunct of the mask is causal");
    rw.modifyOpInPlace(op, [&] {
      op.getAttnMaskMutable().assign(rest ? ValueRange{rest} : ValueRange{});
      op.setMaskAttr(MaskAttr::get(rw.getContext(), kind, window, 0));
    });
    return success();
  }
};

/// attention kv(bshd(repeat_kv(k)), bshd(repeat_kv(v))) -> attention on
/// the un-repeated k and v (GQA in the kernel): imported opset-23 Attention
/// after a torch export that repeated the KV heads itself.
struct AbsorbRepeatKv : public OpRewritePattern<AttentionOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AttentionOp op,
                                PatternRewriter &rw) const override {
    if (!op.getKey() || !op.getValue())
      return rw.notifyMatchFailure(op, "keys and values come from a cache");
    auto tk = def<TransposeOp>(op.getKey()), tv = def<TransposeOp>(op.getValue());
    const int64_t perm[] = {0, 2, 1, 3};
    if (!tk || !tv || tk.getPermutation() != ArrayRef<int64_t>(perm) ||
        tv.getPermutation() != ArrayRef<int64_t>(perm))
      return rw.notifyMatchFailure(op, "keys or values are not BNSH transposed");
    Value k0 = unrepeat(tk.getInput()), v0 = unrepeat(tv.getInput());
    if (k0 == tk.getInput() || v0 == tv.getInput() ||
        rankedType(k0).getDimSize(1) != rankedType(v0).getDimSize(1))
      return rw.notifyMatchFailure(op, "keys and values are not both repeat_kv");
    Value kb = toBSHD(rw, tk.getLoc(), k0), vb = toBSHD(rw, tv.getLoc(), v0);
    rw.modifyOpInPlace(op, [&] {
      op.getKeyMutable().assign(kb);
      op.getValueMutable().assign(vb);
    });
    return success();
  }
};

struct FuseAttentionPass
    : public kiln::impl::FuseAttentionPassBase<FuseAttentionPass> {
  void runOnOperation() override {
    if (failed(applyFusion(getOperation(), populateFuseAttentionPatterns)))
      signalPassFailure();
  }
};

} // namespace

void mlir::kiln::populateFuseAttentionPatterns(RewritePatternSet &patterns) {
  patterns.add<FuseSdpa, ExtractCausalMask, AbsorbRepeatKv>(patterns.getContext());
}
