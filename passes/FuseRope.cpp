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

/// What a rope table must repeat for kiln.rope to read half of it.
enum class Repeat {
  halves, ///< v[..., i] == v[..., i + n/2] (rotate-half tables)
  pairs,  ///< v[..., 2i] == v[..., 2i + 1] (interleaved tables)
};

/// Whether `v`'s last dimension repeats as `kind` says, for every element:
/// cos/sin of concat(f, f) for halves, repeat_interleave spelled reshape ->
/// expand -> reshape for pairs, or a constant that does; and through maps
/// that keep either repetition: elementwise ops, per-row scaling, reshapes
/// and broadcasts that keep the last dimension, gathers and slices along
/// other dimensions. `depth` bounds the walk.
bool repeats(Value v, Repeat kind, int depth = 0) {
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
      for (int64_t i = 0; i < n / 2; ++i) {
        size_t a = row + size_t(kind == Repeat::halves ? i : 2 * i);
        size_t b = row + size_t(kind == Repeat::halves ? i + n / 2 : 2 * i + 1);
        if (values[a].compare(values[b]) != APFloat::cmpEqual)
          return false;
      }
    return true;
  }
  Operation *op = v.getDefiningOp();
  if (!op)
    return false;
  // The ways exporters build the repetition.
  if (auto c = dyn_cast<ConcatOp>(op))
    return kind == Repeat::halves && c.getInputs().size() == 2 &&
           c.getInputs()[0] == c.getInputs()[1] && isLastAxis(c.getAxis(), v);
  if (auto outer = dyn_cast<ReshapeOp>(op); outer && kind == Repeat::pairs) {
    auto bc = def<BroadcastOp>(outer.getInput());
    auto inner = bc ? def<ReshapeOp>(bc.getInput()) : ReshapeOp();
    if (inner) {
      auto t0 = cast<RankedTensorType>(inner.getInput().getType());
      auto t1 = cast<RankedTensorType>(inner.getType());
      auto t2 = cast<RankedTensorType>(bc.getType());
      if (t1.getRank() == t0.getRank() + 1 && t1.getShape().back() == 1 &&
          t2.getRank() == t1.getRank() && t2.getShape().back() == 2 &&
          t1.getShape().drop_back() == t0.getShape() &&
          t2.getShape().drop_back() == t0.getShape() &&
          t0.getShape().back() * 2 == n)
        return true;
    }
  }
  // Maps that keep it.
  if (isa<CosOp, SinOp, NegOp, CastOp>(op))
    return repeats(op->getOperand(0), kind, depth + 1);
  if (isa<MulOp, DivOp>(op)) {
    Value a = op->getOperand(0), b = op->getOperand(1);
    auto perRow = [&](Value f) {
      auto ft = cast<RankedTensorType>(f.getType());
      return ft.getRank() == 0 || ft.getShape().back() == 1;
    };
    if (isa<MulOp>(op) && perRow(a))
      return repeats(b, kind, depth + 1);
    return perRow(b) && repeats(a, kind, depth + 1);
  }
  if (isa<ReshapeOp, BroadcastOp>(op)) {
    Value in = op->getOperand(0);
    auto it = cast<RankedTensorType>(in.getType());
    return it.getRank() > 0 && it.getShape().back() == n &&
           repeats(in, kind, depth + 1);
  }
  if (auto g = dyn_cast<GatherOp>(op))
    return !isLastAxis(g.getAxis(), g.getInput()) &&
           repeats(g.getInput(), kind, depth + 1);
  if (auto sl = dyn_cast<SliceOp>(op))
    return llvm::none_of(
               sl.getAxes(),
               [&](int64_t a) { return isLastAxis(a, sl.getInput()); }) &&
           repeats(sl.getInput(), kind, depth + 1);
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

/// x[..., start::2] along the last axis to its end; returns x.
Value matchStrided(Value v, int64_t start) {
  auto s = def<SliceOp>(v);
  if (!s || s.getAxes().size() != 1 ||
      !isLastAxis(s.getAxes()[0], s.getInput()) || s.getSteps()[0] != 2 ||
      s.getStarts()[0] != start)
    return Value();
  int64_t n = cast<RankedTensorType>(s.getInput().getType()).getShape().back();
  if (ShapedType::isDynamic(n) || s.getEnds()[0] < n)
    return Value();
  return s.getInput();
}

/// [.., m] -> [.., m, 1] (an unsqueeze of the last axis); returns the input.
Value matchUnsqueezeLast(Value v) {
  auto r = def<ReshapeOp>(v);
  if (!r)
    return Value();
  auto in = cast<RankedTensorType>(r.getInput().getType());
  auto out = cast<RankedTensorType>(r.getType());
  if (out.getRank() != in.getRank() + 1 || out.getShape().back() != 1 ||
      out.getShape().drop_back() != in.getShape())
    return Value();
  return r.getInput();
}

/// GPT-J's rotate_every_two: flatten(stack(-x[..., 1::2], x[..., ::2]), -2)
/// = [-x1, x0, -x3, x2, ...]; returns x.
Value matchRotatePairs(Value v) {
  auto flat = def<ReshapeOp>(v);
  auto c = flat ? def<ConcatOp>(flat.getInput()) : ConcatOp();
  if (!c || c.getInputs().size() != 2 ||
      !isLastAxis(c.getAxis(), c.getResult()))
    return Value();
  auto pairs = cast<RankedTensorType>(c.getType());
  auto vt = cast<RankedTensorType>(v.getType());
  if (pairs.getShape().back() != 2 || pairs.getRank() != vt.getRank() + 1)
    return Value();
  // -x[1::2], with the negation on either side of the unsqueeze.
  Value odd = matchUnsqueezeLast(c.getInputs()[0]), even;
  if (auto n = odd ? def<NegOp>(odd) : def<NegOp>(c.getInputs()[0]))
    odd = odd ? n.getInput() : matchUnsqueezeLast(n.getInput());
  else
    return Value();
  even = matchUnsqueezeLast(c.getInputs()[1]);
  Value x1 = odd ? matchStrided(odd, 1) : Value();
  Value x0 = even ? matchStrided(even, 0) : Value();
  if (!x1 || x1 != x0 || x0.getType() != v.getType())
    return Value();
  return x0;
}

/// A table broadcast over heads (unit dim `headsDim`, b = 1 or the batch) as
/// kiln.rope's [b, S, D/2]: the first half for rotate-half tables, every
/// other element for pairwise ones.
Value ropeTable(PatternRewriter &rw, Location loc, Value table,
                int64_t headsDim, bool interleaved) {
  auto t = cast<RankedTensorType>(table.getType());
  int64_t d = t.getDimSize(3), seq = t.getDimSize(headsDim == 1 ? 2 : 1);
  Value r = ReshapeOp::create(
      rw, loc,
      RankedTensorType::get({t.getDimSize(0), seq, d}, t.getElementType()),
      table, Value());
  return SliceOp::create(
      rw, loc,
      RankedTensorType::get({t.getDimSize(0), seq, d / 2}, t.getElementType()),
      r, rw.getDenseI64ArrayAttr({2}), rw.getDenseI64ArrayAttr({0}),
      rw.getDenseI64ArrayAttr({interleaved ? d : d / 2}),
      rw.getDenseI64ArrayAttr({interleaved ? 2 : 1}));
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

/// x * cos + rotate(x) * sin, rotate being rotate-half (Llama) or
/// rotate-every-two (GPT-J), on [B, H, S, D] heads with [b, 1, S, D] tables
/// or [B, S, H, D] heads with [b, S, 1, D] tables.
struct FuseRotaryEmbedding : public OpRewritePattern<AddOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AddOp add, PatternRewriter &rw) const override {
    Value x, cosT, sinT;
    bool interleaved = false;
    bool found = eitherOrder(add.getLhs(), add.getRhs(), [&](Value a, Value b) {
      auto mcos = def<MulOp>(a), msin = def<MulOp>(b);
      if (!mcos || !msin)
        return false;
      return eitherOrder(msin.getLhs(), msin.getRhs(), [&](Value r, Value s) {
        Value xr = matchRotateHalf(r);
        bool pairs = false;
        if (!xr) {
          xr = matchRotatePairs(r);
          pairs = true;
        }
        if (!xr)
          return false;
        return eitherOrder(mcos.getLhs(), mcos.getRhs(),
                           [&](Value xc, Value c) {
                             if (xc != xr)
                               return false;
                             x = xr;
                             cosT = c;
                             sinT = s;
                             interleaved = pairs;
                             return true;
                           });
      });
    });
    if (!found)
      return rw.notifyMatchFailure(add, "not x * cos + rotate(x) * sin");
    auto xt = cast<RankedTensorType>(x.getType());
    auto ct = cast<RankedTensorType>(cosT.getType());
    auto st = cast<RankedTensorType>(sinT.getType());
    if (xt.getRank() != 4 || add.getType() != xt || ct != st ||
        ct.getRank() != 4 || ct.getDimSize(3) != xt.getDimSize(3) ||
        !isa<FloatType>(ct.getElementType()))
      return rw.notifyMatchFailure(add, "x and the tables are not 4-D heads");
    // The heads dimension is the one the tables broadcast over.
    int64_t headsDim = ct.getDimSize(1) == 1 && ct.getDimSize(2) != 1   ? 1
                       : ct.getDimSize(2) == 1 && ct.getDimSize(1) != 1 ? 2
                                                                        : 0;
    if (headsDim == 0 && ct.getDimSize(1) == 1 && ct.getDimSize(2) == 1)
      headsDim = xt.getDimSize(1) == 1 ? 2 : 1; // one position: either reads
    if (headsDim == 0)
      return rw.notifyMatchFailure(add, "the tables vary by head");
    int64_t seqDim = headsDim == 1 ? 2 : 1;
    if (ct.getDimSize(seqDim) != xt.getDimSize(seqDim) &&
        !ShapedType::isDynamic(ct.getDimSize(seqDim)) &&
        !ShapedType::isDynamic(xt.getDimSize(seqDim)))
      return rw.notifyMatchFailure(add, "the tables do not have x's positions");
    if (ct.getDimSize(0) != 1 && ct.getDimSize(0) != xt.getDimSize(0))
      return rw.notifyMatchFailure(add,
                                   "the tables' batch is neither 1 nor x's");
    Repeat kind = interleaved ? Repeat::pairs : Repeat::halves;
    bool repeated = repeats(cosT, kind) && repeats(sinT, kind);
    if (!repeated)
      return rw.notifyMatchFailure(
          add, interleaved ? "cos/sin do not repeat in pairs"
                           : "cos/sin do not repeat their first half");
    // The rope carries the replaced nodes' locations; the layout glue keeps
    // the root's, so the report lists only what was fused. Separate
    // statements: argument evaluation order would make the IR order
    // unspecified.
    Location loc = add.getLoc();
    Location fused = fusedLoc(add, {x, cosT, sinT});
    Value heads = headsDim == 1 ? transposeSH(rw, loc, x) : x;
    Value cosHalf = ropeTable(rw, loc, cosT, headsDim, interleaved);
    Value sinHalf = ropeTable(rw, loc, sinT, headsDim, interleaved);
    auto rope = RopeOp::create(rw, fused, heads.getType(), heads, cosHalf,
                               sinHalf, Value());
    if (interleaved)
      rope.setInterleaved(true);
    rw.replaceOp(add, headsDim == 1 ? transposeSH(rw, loc, rope) : Value(rope));
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
  patterns.add<FuseRotaryEmbedding>(patterns.getContext());
}
