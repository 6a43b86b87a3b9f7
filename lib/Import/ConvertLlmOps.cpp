//===- ConvertLlmOps.cpp - attention-era ONNX ops -------------------------===//
//
// onnxruntime contrib ops (GroupQueryAttention, RotaryEmbedding,
// MatMulNBits), the opset-23 Attention and RotaryEmbedding, and block-wise
// DequantizeLinear. Activations are moved to kiln's BSHD layout around the
// kiln op; packed weights stay packed (bitcast, never dequantized copies).
//
//===----------------------------------------------------------------------===//

#include "ConvertUtils.h"

using namespace mlir;
using namespace mlir::kiln;
using namespace mlir::kiln::onnx_import;

using llvm::Error;
using llvm::Expected;

namespace {

Value transposeBNSH(NodeContext &nc, Value x) {
  auto t = cast<RankedTensorType>(x.getType());
  SmallVector<int64_t> perm = {0, 2, 1, 3};
  SmallVector<int64_t> dims;
  for (int64_t p : perm)
    dims.push_back(t.getDimSize(p));
  Value r = TransposeOp::create(nc.b, nc.loc, tensorOf(dims, t.getElementType()),
                                x, nc.b.getDenseI64ArrayAttr(perm));
  for (auto [i, p] : llvm::enumerate(perm))
    nc.importer.unifyDims(r, i, x, p);
  return r;
}

/// A reshape whose dynamic dims are the input's, in order.
Value reshapeInOrder(NodeContext &nc, Value x, ArrayRef<int64_t> dims) {
  Value r = ReshapeOp::create(nc.b, nc.loc, tensorOf(dims, elementTypeOf(x)), x,
                              Value());
  auto rt = cast<RankedTensorType>(r.getType());
  auto it = cast<RankedTensorType>(x.getType());
  SmallVector<int64_t> in;
  for (int64_t d = 0; d < it.getRank(); ++d)
    if (it.isDynamicDim(d))
      in.push_back(d);
  unsigned k = 0;
  for (int64_t d = 0; d < rt.getRank() && k < in.size(); ++d)
    if (rt.isDynamicDim(d))
      nc.importer.unifyDims(r, d, x, in[k++]);
  return r;
}

/// [B, S, H*D] -> [B, S, H, D].
Expected<Value> splitHeads(NodeContext &nc, Value x, int64_t heads,
                           StringRef what) {
  auto t = cast<RankedTensorType>(x.getType());
  if (t.getRank() != 3)
    return nc.error(what + " must be [batch, seq, hidden] or 4-D");
  int64_t hidden = t.getDimSize(2);
  if (heads <= 0 || ShapedType::isDynamic(hidden) || hidden % heads)
    return nc.error(llvm::formatv("{0} width {1} is not a multiple of {2} "
                                  "heads",
                                  what, hidden, heads));
  return reshapeInOrder(nc, x,
                        {t.getDimSize(0), t.getDimSize(1), heads,
                         hidden / heads});
}

/// [B, S, H, D] -> [B, S, H*D].
Value mergeHeads(NodeContext &nc, Value x) {
  auto t = cast<RankedTensorType>(x.getType());
  int64_t h = t.getDimSize(2), d = t.getDimSize(3);
  int64_t hd = ShapedType::isDynamic(h) || ShapedType::isDynamic(d)
                   ? ShapedType::kDynamic
                   : h * d;
  return reshapeInOrder(nc, x, {t.getDimSize(0), t.getDimSize(1), hd});
}

/// past (BNSH) followed by the new keys or values along the sequence axis.
Expected<Value> concatSeq(NodeContext &nc, Value past, Value now) {
  auto pt = cast<RankedTensorType>(past.getType());
  auto nt = cast<RankedTensorType>(now.getType());
  if (pt.getRank() != 4 || nt.getRank() != 4 ||
      pt.getElementType() != nt.getElementType())
    return nc.error("past key/value " + mlirTypeStr(pt) +
                    " must be [batch, heads, past, head_dim] of the new "
                    "keys' type " +
                    mlirTypeStr(nt));
  for (int64_t d : {1, 3})
    if (!pt.isDynamicDim(d) && !nt.isDynamicDim(d) &&
        pt.getDimSize(d) != nt.getDimSize(d))
      return nc.error("past key/value " + mlirTypeStr(pt) +
                      " does not match the new keys " + mlirTypeStr(nt));
  SmallVector<int64_t> dims(nt.getShape());
  dims[2] = pt.isDynamicDim(2) || nt.isDynamicDim(2)
                ? ShapedType::kDynamic
                : pt.getDimSize(2) + nt.getDimSize(2);
  for (int64_t d : {0, 1, 3})
    if (ShapedType::isDynamic(dims[d]))
      dims[d] = pt.getDimSize(d);
  Value r = ConcatOp::create(nc.b, nc.loc, tensorOf(dims, nt.getElementType()),
                             ValueRange{past, now}, nc.b.getI64IntegerAttr(2));
  for (int64_t d : {0, 1, 3}) {
    nc.importer.unifyDims(r, d, past, d);
    nc.importer.unifyDims(r, d, now, d);
  }
  return Value(r);
}

Value scalarI64(NodeContext &nc, int64_t v) {
  return nc.importer.constI64(nc.b, nc.loc, {v}, /*scalar=*/true);
}

/// Size of dim `d` of `x` as a rank-0 i64 tensor.
Value dimSize(NodeContext &nc, Value x, int64_t d) {
  auto t = cast<RankedTensorType>(x.getType());
  if (!t.isDynamicDim(d))
    return scalarI64(nc, t.getDimSize(d));
  auto i64 = nc.b.getI64Type();
  Value shape = ShapeOfOp::create(nc.b, nc.loc, tensorOf({t.getRank()}, i64), x);
  Value one = SliceOp::create(nc.b, nc.loc, tensorOf({1}, i64), shape,
                              nc.b.getDenseI64ArrayAttr({0}),
                              nc.b.getDenseI64ArrayAttr({d}),
                              nc.b.getDenseI64ArrayAttr({d + 1}),
                              nc.b.getDenseI64ArrayAttr({1}));
  return ReshapeOp::create(nc.b, nc.loc, tensorOf({}, i64), one, Value());
}

/// Packed zero points ([rows, bytes] uint8, `bits` per value, low bits
/// first) as a [rows, count] tensor of `storage`.
Expected<Value> unpackZeroPoints(NodeContext &nc, Value packed, int64_t rows,
                                 int64_t count, unsigned bits, Type storage) {
  auto zt = cast<RankedTensorType>(packed.getType());
  int64_t perRow = (count * bits + 7) / 8;
  if (!zt.getElementType().isUnsignedInteger(8) ||
      zt.getNumElements() != rows * perRow)
    return nc.error(llvm::formatv("zero points must be packed uint8 holding "
                                  "{0} x {1} bytes",
                                  rows, perRow));
  if (zt.getShape() != ArrayRef<int64_t>{rows, perRow})
    packed = ReshapeOp::create(nc.b, nc.loc,
                               tensorOf({rows, perRow}, zt.getElementType()),
                               packed, Value());
  int64_t stored = perRow * 8 / bits;
  Value zp = BitcastOp::create(nc.b, nc.loc, tensorOf({rows, stored}, storage),
                               packed);
  if (stored != count)
    zp = SliceOp::create(nc.b, nc.loc, tensorOf({rows, count}, storage), zp,
                         nc.b.getDenseI64ArrayAttr({1}),
                         nc.b.getDenseI64ArrayAttr({0}),
                         nc.b.getDenseI64ArrayAttr({count}),
                         nc.b.getDenseI64ArrayAttr({1}));
  return zp;
}

/// The quantized-tensor type of ONNX Q/DQ operands: per-tensor (one scale),
/// per-axis (1-D scale along `axis`) or block-wise (`blockSize` > 0), plus
/// scales and zero points reshaped to that type's part shapes.
struct QdqScheme {
  QTensorType type;
  Value scales, zeroPoints;
};

Expected<QdqScheme> qdqScheme(NodeContext &nc, RankedTensorType data,
                              Type storage, Type expressed, Value scale,
                              Value zeroPoint, int64_t axis,
                              int64_t blockSize) {
  bool intStorage = isa<IntegerType>(storage) &&
                    (storage.getIntOrFloatBitWidth() == 4 ||
                     storage.getIntOrFloatBitWidth() == 8);
  bool floatStorage = isa<Float8E4M3FNType, Float8E5M2Type>(storage);
  if (!intStorage && !floatStorage)
    return nc.error("element type " + mlirTypeStr(storage) +
                    " cannot be (de)quantized by kiln");
  if (floatStorage && zeroPoint) {
    // ONNX allows a float8 zero point but requires it to be zero.
    DenseElementsAttr zeros;
    if (!matchPattern(zeroPoint, m_Constant(&zeros)) ||
        llvm::any_of(zeros.getValues<APFloat>(),
                     [](const APFloat &v) { return !v.isZero(); }))
      return nc.error("a float8 zero point must be a constant zero");
    zeroPoint = Value();
  }
  auto st = cast<RankedTensorType>(scale.getType());
  int64_t rank = data.getRank();
  SmallVector<int64_t> block(rank, 0);
  if (st.getNumElements() != 1) {
    if (Error err = checkAxis(nc, axis, rank))
      return std::move(err);
    int64_t a = normAxis(axis, rank);
    if (blockSize > 0) {
      for (int64_t d = 0; d < rank; ++d)
        block[d] = d == a ? blockSize : 1;
    } else {
      if (st.getRank() != 1 || st.getDimSize(0) != data.getDimSize(a))
        return nc.error("a per-axis scale must be 1-D along the axis");
      block[a] = 1;
    }
  }
  auto quant = QuantAttr::get(nc.b.getContext(), storage, expressed,
                              ArrayRef<int64_t>(block), expressed,
                              zeroPoint ? storage : Type());
  auto type = QTensorType::get(nc.b.getContext(), data.getShape(), quant);
  RankedTensorType partType = type.getScalesType();
  auto fit = [&](Value v, Type elem) -> Expected<Value> {
    auto t = cast<RankedTensorType>(v.getType());
    auto want = tensorOf(partType.getShape(), elem);
    if (t == want)
      return v;
    if (t.getNumElements() != want.getNumElements())
      return nc.error("scale/zero point shape " + mlirTypeStr(t) +
                      " does not match " + mlirTypeStr(want));
    return Value(ReshapeOp::create(nc.b, nc.loc, want, v, Value()));
  };
  TRY(scales, fit(scale, expressed));
  Value zp;
  if (zeroPoint) {
    TRY(z, fit(zeroPoint, storage));
    zp = z;
  }
  return QdqScheme{type, scales, zp};
}

//===----------------------------------------------------------------------===//
// RotaryEmbedding (com.microsoft and opset 23)
//===----------------------------------------------------------------------===//

Error convertRotary(NodeContext &nc, bool contrib) {
  if (Error err = nc.checkAttributes({"interleaved", "num_heads",
                                      "rotary_embedding_dim", "scale",
                                      "is_packed_batching"}))
    return err;
  TRY(x, nc.required(0));
  // Contrib: (input, position_ids, cos, sin); opset 23: (X, cos, sin, pos?).
  TRY(cos, nc.required(contrib ? 2 : 1));
  TRY(sin, nc.required(contrib ? 3 : 2));
  Value positions = nc.input(contrib ? 1 : 3);
  if (contrib && !positions)
    return nc.error("position_ids is required");
  TRY(interleaved, nc.intAttr("interleaved", 0));
  TRY(numHeads, nc.intAttr("num_heads", 0));
  TRY(rotaryDim, nc.intAttr("rotary_embedding_dim", 0));
  TRY(scale, nc.floatAttr("scale", 1.0f));
  TRY(packed, nc.intAttr("is_packed_batching", 0));
  if (scale != 1.0f)
    return nc.error("scale other than 1 is not supported");
  if (packed)
    return nc.error("is_packed_batching is not supported");
  if (positions && cast<RankedTensorType>(positions.getType()).getRank() != 2)
    return nc.error("position_ids must be [batch, seq] (the 1-element offset "
                    "form is not supported)");
  auto type = cast<RankedTensorType>(x.getType());
  Value bshd;
  if (type.getRank() == 4) {
    bshd = transposeBNSH(nc, x);
  } else {
    int64_t heads = numHeads;
    if (!heads) {
      // Full rotation: head_dim = 2 * cos width.
      int64_t half = cast<RankedTensorType>(cos.getType()).getShape().back();
      if (rotaryDim || ShapedType::isDynamic(half) || type.isDynamicDim(2))
        return nc.error("num_heads is required for 3-D input");
      heads = type.getDimSize(2) / (2 * half);
    }
    TRY(split, splitHeads(nc, x, heads, "input"));
    bshd = split;
  }
  auto ropeType = cast<RankedTensorType>(bshd.getType());
  auto op = RopeOp::create(nc.b, nc.loc, ropeType, bshd, cos, sin, positions);
  if (interleaved)
    op.setInterleaved(true);
  if (rotaryDim)
    op.setRotaryDim(rotaryDim);
  nc.importer.unifyElementwise(op, {bshd});
  Value result = type.getRank() == 4 ? transposeBNSH(nc, op) : mergeHeads(nc, op);
  nc.setOutput(0, result);
  return Error::success();
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

/// Runs kiln.attention on BNSH keys/values (as ONNX caches hold them) and a
/// BSHD query; returns the BSHD output.
Value attend(NodeContext &nc, Value qBSHD, Value kBNSH, Value vBNSH,
             Value mask, MaskKind kind, float scale, float softcap) {
  Value k = transposeBNSH(nc, kBNSH), v = transposeBNSH(nc, vBNSH);
  auto qt = cast<RankedTensorType>(qBSHD.getType());
  auto vt = cast<RankedTensorType>(v.getType());
  auto resultType = tensorOf({qt.getDimSize(0), qt.getDimSize(1),
                              qt.getDimSize(2), vt.getDimSize(3)},
                             qt.getElementType());
  auto op = AttentionOp::create(
      nc.b, nc.loc, resultType, qBSHD, k, v, Value(), mask, Value(),
      ValueRange(), MaskAttr::get(nc.b.getContext(), kind, 0, 0),
      scale > 0 ? nc.b.getF32FloatAttr(scale) : FloatAttr(),
      softcap > 0 ? nc.b.getF32FloatAttr(softcap) : FloatAttr(),
      SparsityAttr());
  for (int64_t d : {0, 1, 2})
    nc.importer.unifyDims(op, d, qBSHD, d);
  return op;
}

Error convertAttention23(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"is_causal", "kv_num_heads",
                                      "q_num_heads", "qk_matmul_output_mode",
                                      "scale", "softcap", "softmax_precision"}))
    return err;
  TRY(q, nc.required(0));
  TRY(k, nc.required(1));
  TRY(v, nc.required(2));
  TRY(causal, nc.intAttr("is_causal", 0));
  TRY(qHeads, nc.intAttr("q_num_heads", 0));
  TRY(kvHeads, nc.intAttr("kv_num_heads", 0));
  TRY(scale, nc.floatAttr("scale", 0.0f));
  TRY(softcap, nc.floatAttr("softcap", 0.0f));
  if (nc.hasInput(6))
    return nc.error("nonpad_kv_seqlen is not supported");
  if (nc.hasOutput(3))
    return nc.error("the qk_matmul_output output is not supported");
  if (nc.hasInput(4) != nc.hasInput(5))
    return nc.error("past_key and past_value must be given together");
  int64_t rank = cast<RankedTensorType>(q.getType()).getRank();
  if ((rank != 3 && rank != 4) ||
      cast<RankedTensorType>(k.getType()).getRank() != rank ||
      cast<RankedTensorType>(v.getType()).getRank() != rank)
    return nc.error("Q, K and V must all be 3-D [batch, seq, hidden] or all "
                    "4-D [batch, heads, seq, head_dim]");
  bool is3D = rank == 3;
  Value qb, kn, vn; // query BSHD, keys/values BNSH
  if (is3D) {
    TRY(qs, splitHeads(nc, q, qHeads, "Q"));
    TRY(ks, splitHeads(nc, k, kvHeads, "K"));
    TRY(vs, splitHeads(nc, v, kvHeads, "V"));
    qb = qs;
    kn = transposeBNSH(nc, ks);
    vn = transposeBNSH(nc, vs);
  } else {
    qb = transposeBNSH(nc, q);
    kn = k;
    vn = v;
  }
  // ONNX aligns the causal mask to the top left after the past: query i sees
  // key j iff j <= past + i. kiln.attention's causal kind aligns queries to
  // the end of the keys (j <= past + new - Sq + i): the same when as many
  // keys as queries are new, else the mask is built here.
  Value newKeys = kn;
  auto qSeqType = cast<RankedTensorType>(qb.getType());
  auto kSeqType = cast<RankedTensorType>(newKeys.getType());
  bool alignedCausal =
      causal && ((!qSeqType.isDynamicDim(1) &&
                  qSeqType.getDimSize(1) == kSeqType.getDimSize(2)) ||
                 nc.importer.sameDim(qb, 1, newKeys, 2));
  if (nc.hasInput(4)) {
    TRY(pk, concatSeq(nc, nc.input(4), kn));
    TRY(pv, concatSeq(nc, nc.input(5), vn));
    kn = pk;
    vn = pv;
  }
  Value mask = nc.input(3);
  if (causal && !alignedCausal) {
    auto i64 = nc.b.getI64Type();
    int64_t sq = cast<RankedTensorType>(qb.getType()).getDimSize(1);
    int64_t t = cast<RankedTensorType>(kn.getType()).getDimSize(2);
    Value past = nc.hasInput(4) ? dimSize(nc, nc.input(4), 2) : scalarI64(nc, 0);
    Value keys = RangeOp::create(nc.b, nc.loc, tensorOf({t}, i64),
                                 scalarI64(nc, 0), dimSize(nc, kn, 2),
                                 scalarI64(nc, 1));
    nc.importer.unifyDims(keys, 0, kn, 2);
    Value rows = RangeOp::create(nc.b, nc.loc, tensorOf({sq}, i64), past,
                                 AddOp::create(nc.b, nc.loc, tensorOf({}, i64),
                                               past, dimSize(nc, qb, 1)),
                                 scalarI64(nc, 1));
    nc.importer.unifyDims(rows, 0, qb, 1);
    rows = reshapeInOrder(nc, rows, {sq, 1});
    auto causalType = tensorOf({sq, t}, nc.b.getI1Type());
    Value visible = CompareOp::create(nc.b, nc.loc, causalType,
                                      ComparePredicate::le, keys, rows);
    nc.importer.unifyDims(visible, 0, qb, 1);
    nc.importer.unifyDims(visible, 1, kn, 2);
    if (!mask) {
      mask = visible;
    } else {
      TRY(shape, broadcast(nc, {mask, visible}));
      Type et = elementTypeOf(mask);
      if (et.isInteger(1)) {
        mask = AndOp::create(nc.b, nc.loc, tensorOf(shape, et), mask, visible);
      } else {
        // Additive float mask: -inf where the causal mask hides a key.
        auto ft = cast<FloatType>(et);
        auto scalar = RankedTensorType::get({}, et);
        Value zero = arith::ConstantOp::create(
            nc.b, nc.loc, scalar,
            DenseElementsAttr::get(scalar, APFloat::getZero(ft.getFloatSemantics())));
        Value ninf = arith::ConstantOp::create(
            nc.b, nc.loc, scalar,
            DenseElementsAttr::get(scalar, APFloat::getInf(ft.getFloatSemantics(),
                                                           /*Negative=*/true)));
        Value bias = SelectOp::create(nc.b, nc.loc, tensorOf({sq, t}, et),
                                      visible, zero, ninf);
        mask = AddOp::create(nc.b, nc.loc, tensorOf(shape, et), mask, bias);
      }
    }
  }
  Value out = attend(nc, qb, kn, vn, mask,
                     alignedCausal ? MaskKind::causal : MaskKind::none, scale,
                     softcap);
  nc.setOutput(0, is3D ? mergeHeads(nc, out) : transposeBNSH(nc, out));
  nc.setOutput(1, kn);
  nc.setOutput(2, vn);
  return Error::success();
}

/// Elementwise `OpT` of `a` and `b` with NumPy broadcasting; the result
/// has element type `et` (the operands' unless given).
template <typename OpT>
Value elementwise(NodeContext &nc, Value a, Value b, Type et = {}) {
  SmallVector<int64_t> shape;
  (void)OpTrait::util::getBroadcastedShape(
      cast<RankedTensorType>(a.getType()).getShape(),
      cast<RankedTensorType>(b.getType()).getShape(), shape);
  Value r = OpT::create(nc.b, nc.loc, tensorOf(shape, et ? et : elementTypeOf(a)),
                        a, b);
  nc.importer.unifyElementwise(r, {a, b});
  return r;
}

Value compare(NodeContext &nc, ComparePredicate p, Value a, Value b) {
  SmallVector<int64_t> shape;
  (void)OpTrait::util::getBroadcastedShape(
      cast<RankedTensorType>(a.getType()).getShape(),
      cast<RankedTensorType>(b.getType()).getShape(), shape);
  Value r = CompareOp::create(nc.b, nc.loc, tensorOf(shape, nc.b.getI1Type()),
                              p, a, b);
  nc.importer.unifyElementwise(r, {a, b});
  return r;
}

Value select(NodeContext &nc, Value cond, Value a, Value b) {
  SmallVector<int64_t> ab, shape;
  (void)OpTrait::util::getBroadcastedShape(
      cast<RankedTensorType>(a.getType()).getShape(),
      cast<RankedTensorType>(b.getType()).getShape(), ab);
  (void)OpTrait::util::getBroadcastedShape(
      cast<RankedTensorType>(cond.getType()).getShape(), ab, shape);
  Value r = SelectOp::create(nc.b, nc.loc, tensorOf(shape, elementTypeOf(a)),
                             cond, a, b);
  nc.importer.unifyElementwise(r, {cond, a, b});
  return r;
}

/// GroupQueryAttention with sliding_window_cache = 1 (onnxruntime's windowed
/// KV cache). past_key/value are [B, Hkv, C, D] buffers of a fixed capacity
/// C >= W = local_window_size whose rows [0, L(P)) hold the L(P) most recent
/// of the P earlier positions, in order; later rows are stale. With
/// G = C - W + 1, L(x) = x for x <= C, else x - G * ceil((x - C) / G): the
/// cache reclaims G rows at a time, so L(x) never drops below W and every
/// key a query may see stays resident. Per batch entry T = seqlens_k + 1 and
/// P = T - S.
///
/// The step attends over [past rows | new keys] (C + S rows) with a mask
/// built from each row's absolute position (stale rows hidden), and the
/// present is the L(T) most recent positions gathered to rows [0, L(T));
/// rows past L(T) repeat the last staged row (onnxruntime leaves them
/// unspecified). RoPE was applied from absolute positions before this.
Error convertWindowedGqa(NodeContext &nc, Value qb, Value kn, Value vn,
                         Value seqlensK, Value firstPos, Value positions,
                         int64_t window, float scale, float softcap) {
  Value pastK = nc.input(3), pastV = nc.input(4);
  TRY(stagedK, concatSeq(nc, pastK, kn));
  TRY(stagedV, concatSeq(nc, pastV, vn));
  auto i64 = nc.b.getI64Type();
  auto pt = cast<RankedTensorType>(pastK.getType());
  auto st = cast<RankedTensorType>(stagedK.getType());
  int64_t b = pt.getDimSize(0), c = pt.getDimSize(2), t = st.getDimSize(2);
  if (!pt.isDynamicDim(2) && pt.getDimSize(2) < window)
    return nc.error(llvm::formatv("sliding_window_cache: the cache capacity "
                                  "{0} (past_key dim 2) is below "
                                  "local_window_size {1}",
                                  pt.getDimSize(2), window));
  Value cap = dimSize(nc, pastK, 2);
  Value total = dimSize(nc, stagedK, 2);
  Value one = scalarI64(nc, 1);
  // G = C - W + 1 rows reclaimed per eviction.
  Value gap = elementwise<AddOp>(
      nc, elementwise<SubOp>(nc, cap, scalarI64(nc, window)), one);
  auto resident = [&](Value x) -> Value {
    Value beyond = elementwise<SubOp>(nc, x, cap);
    Value zero = scalarI64(nc, 0);
    Value over = elementwise<MaxOp>(nc, beyond, zero);
    Value blocks = elementwise<DivOp>(
        nc, elementwise<SubOp>(nc, elementwise<AddOp>(nc, over, gap), one),
        gap);
    return elementwise<SubOp>(nc, x, elementwise<MulOp>(nc, blocks, gap));
  };
  Value totalLen = elementwise<AddOp>(nc, seqlensK, one); // [B, 1]
  Value residentPast = resident(firstPos);                 // L(P)
  Value residentNow = resident(totalLen);                  // L(T)

  // Absolute position of staged row j: P - L(P) + j for a past row,
  // P + j - C for a new one; past rows at or after L(P) are stale.
  Value rows = RangeOp::create(nc.b, nc.loc, tensorOf({t}, i64),
                               scalarI64(nc, 0), total, one);
  nc.importer.unifyDims(rows, 0, stagedK, 2);
  Value j = reshapeInOrder(nc, rows, {1, 1, 1, t});
  Value p4 = reshapeInOrder(nc, firstPos, {b, 1, 1, 1});
  Value lp4 = reshapeInOrder(nc, residentPast, {b, 1, 1, 1});
  Value isPast = compare(nc, ComparePredicate::lt, j, cap);
  // One op per statement: sibling call arguments would leave the IR order
  // to the compiler.
  Value pastShift = elementwise<SubOp>(nc, p4, lp4);
  Value pastPos = elementwise<AddOp>(nc, j, pastShift);
  Value newRow = elementwise<SubOp>(nc, j, cap);
  Value newPos = elementwise<AddOp>(nc, newRow, p4);
  Value keyPos = select(nc, isPast, pastPos, newPos);
  Value belowResident = compare(nc, ComparePredicate::lt, j, lp4);
  Value residentPastRow = elementwise<AndOp>(nc, isPast, belowResident);
  Value isNew = compare(nc, ComparePredicate::ge, j, cap);
  Value live = elementwise<OrOp>(nc, residentPastRow, isNew);
  int64_t s = cast<RankedTensorType>(positions.getType()).getDimSize(1);
  Value pos4 = reshapeInOrder(nc, positions, {b, 1, s, 1});
  Value causal = compare(nc, ComparePredicate::le, keyPos, pos4);
  Value mask = elementwise<AndOp>(nc, live, causal);
  Value lowest = elementwise<SubOp>(nc, pos4, scalarI64(nc, window));
  Value inWindow = compare(nc, ComparePredicate::gt, keyPos, lowest);
  mask = elementwise<AndOp>(nc, mask, inWindow);
  Value out = attend(nc, qb, stagedK, stagedV, mask, MaskKind::none, scale,
                     softcap);
  nc.setOutput(0, mergeHeads(nc, out));

  // Present row i holds absolute position T - L(T) + i, found at staged row
  // (a - P) + C when new and (a - P) + L(P) when it was already resident.
  Value slots = RangeOp::create(nc.b, nc.loc, tensorOf({c}, i64),
                                scalarI64(nc, 0), cap, one);
  nc.importer.unifyDims(slots, 0, pastK, 2);
  Value i2 = reshapeInOrder(nc, slots, {1, c});
  Value abs = elementwise<AddOp>(
      nc, elementwise<SubOp>(nc, totalLen, residentNow), i2); // [B, C]
  Value rel = elementwise<SubOp>(nc, abs, firstPos);
  Value isNewPos = compare(nc, ComparePredicate::ge, abs, firstPos);
  Value fromNew = elementwise<AddOp>(nc, rel, cap);
  Value fromPast = elementwise<AddOp>(nc, rel, residentPast);
  Value src = select(nc, isNewPos, fromNew, fromPast);
  Value lastRow = elementwise<SubOp>(nc, total, one);
  src = elementwise<MinOp>(nc, src, lastRow);
  int64_t kvHeads = pt.getDimSize(1);
  Value idx = reshapeInOrder(nc, src, {b, 1, c, 1});
  idx = BroadcastOp::create(nc.b, nc.loc, tensorOf({b, kvHeads, c, 1}, i64),
                            idx, Value());
  nc.importer.unifyDims(idx, 0, pastK, 0);
  nc.importer.unifyDims(idx, 2, pastK, 2);
  auto gatherRows = [&](Value staged, Value past) -> Value {
    auto ty = cast<RankedTensorType>(past.getType());
    SmallVector<int64_t> dims(ty.getShape());
    auto stt = cast<RankedTensorType>(staged.getType());
    for (int64_t d : {0, 1, 3})
      if (ShapedType::isDynamic(dims[d]))
        dims[d] = stt.getDimSize(d);
    Value r = GatherNdOp::create(nc.b, nc.loc, tensorOf(dims, ty.getElementType()),
                                 staged, idx, nc.b.getI64IntegerAttr(2));
    for (int64_t d = 0; d < 4; ++d)
      nc.importer.unifyDims(r, d, past, d);
    return r;
  };
  Value presentK = gatherRows(stagedK, pastK);
  Value presentV = gatherRows(stagedV, pastV);
  nc.setOutput(1, presentK);
  nc.setOutput(2, presentV);
  nc.importer.markWindowedCache(pastK, presentK, window);
  nc.importer.markWindowedCache(pastV, presentV, window);
  return Error::success();
}

/// com.microsoft GroupQueryAttention as onnxruntime-genai's builder emits it:
/// packed or separate Q/K/V [B, S, H*D], past/present BNSH, per-batch
/// `seqlens_k` (= total length - 1), optional fused rotary.
Error convertGroupQueryAttention(NodeContext &nc) {
  if (Error err = nc.checkAttributes(
          {"num_heads", "kv_num_heads", "scale", "softcap",
           "local_window_size", "do_rotary", "rotary_interleaved",
           "smooth_softmax", "qk_output", "sliding_window_cache"}))
    return err;
  TRY(windowedCache, nc.intAttr("sliding_window_cache", 0));
  TRY(q, nc.required(0));
  TRY(seqlens, nc.required(5));
  TRY(heads, nc.intAttr("num_heads"));
  TRY(kvHeads, nc.intAttr("kv_num_heads"));
  TRY(scale, nc.floatAttr("scale", 0.0f));
  TRY(softcap, nc.floatAttr("softcap", 0.0f));
  TRY(window, nc.intAttr("local_window_size", -1));
  TRY(rotary, nc.intAttr("do_rotary", 0));
  TRY(interleaved, nc.intAttr("rotary_interleaved", 0));
  TRY(smooth, nc.intAttr("smooth_softmax", 0));
  TRY(qkOut, nc.intAttr("qk_output", 0));
  if (smooth)
    return nc.error("smooth_softmax is not supported");
  if (qkOut || nc.hasOutput(3))
    return nc.error("the output_qk output is not supported");
  for (unsigned i = 9; i < nc.numInputs(); ++i)
    if (nc.hasInput(i))
      return nc.error(llvm::formatv("input #{0} is not supported", i));
  if (windowedCache && window <= 0)
    return nc.error(llvm::formatv("sliding_window_cache needs local_window_size "
                                  "> 0, found {0}",
                                  window));
  if (windowedCache && (!nc.hasInput(3) || !nc.hasOutput(1)))
    return nc.error("sliding_window_cache needs past_key/past_value and "
                    "present_key/present_value");
  if (heads <= 0 || kvHeads <= 0 || heads > (1 << 16) || heads % kvHeads)
    return nc.error(llvm::formatv("num_heads {0} must be a positive multiple "
                                  "of kv_num_heads {1}",
                                  heads, kvHeads));
  auto qt = cast<RankedTensorType>(q.getType());
  if (qt.getRank() != 3)
    return nc.error("query must be [batch, seq, hidden]");
  Type et = qt.getElementType();
  Value qs = q, ks = nc.input(1), vs = nc.input(2);
  if (!ks) {
    // Packed QKV: [q | k | v] along the last dim.
    int64_t width = qt.getDimSize(2);
    int64_t total = heads + 2 * kvHeads;
    if (ShapedType::isDynamic(width) || width % total)
      return nc.error("packed QKV width does not split into heads");
    int64_t d = width / total;
    auto part = [&](int64_t start, int64_t n) -> Value {
      Value r = SliceOp::create(
          nc.b, nc.loc, tensorOf({qt.getDimSize(0), qt.getDimSize(1), n}, et), q,
          nc.b.getDenseI64ArrayAttr({2}), nc.b.getDenseI64ArrayAttr({start}),
          nc.b.getDenseI64ArrayAttr({start + n}), nc.b.getDenseI64ArrayAttr({1}));
      nc.importer.unifyDims(r, 0, q, 0);
      nc.importer.unifyDims(r, 1, q, 1);
      return r;
    };
    qs = part(0, heads * d);
    ks = part(heads * d, kvHeads * d);
    vs = part((heads + kvHeads) * d, kvHeads * d);
  } else if (!nc.hasInput(2)) {
    return nc.error("key given without value");
  }
  TRY(qb, splitHeads(nc, qs, heads, "query"));
  TRY(kb, splitHeads(nc, ks, kvHeads, "key"));
  TRY(vb, splitHeads(nc, vs, kvHeads, "value"));

  // Absolute position of each new token: seqlens_k + 1 - S + i.
  auto i64 = nc.b.getI64Type();
  int64_t b = qt.getDimSize(0), s = qt.getDimSize(1);
  Value sk = CastOp::create(nc.b, nc.loc,
                            tensorOf(cast<RankedTensorType>(seqlens.getType())
                                         .getShape(),
                                     i64),
                            seqlens);
  sk = reshapeInOrder(nc, sk, {b, 1});
  Value seqLen = dimSize(nc, q, 1);
  Value firstPos = SubOp::create(
      nc.b, nc.loc, tensorOf({b, 1}, i64),
      AddOp::create(nc.b, nc.loc, tensorOf({b, 1}, i64), sk, scalarI64(nc, 1)),
      seqLen);
  Value steps = RangeOp::create(nc.b, nc.loc, tensorOf({s}, i64),
                                scalarI64(nc, 0), seqLen, scalarI64(nc, 1));
  Value positions = AddOp::create(nc.b, nc.loc, tensorOf({b, s}, i64), firstPos,
                                  steps);
  nc.importer.unifyDims(positions, 0, q, 0);
  nc.importer.unifyDims(positions, 1, q, 1);
  if (rotary) {
    TRY(cos, nc.required(7));
    TRY(sin, nc.required(8));
    auto rope = [&](Value x) -> Value {
      auto op = RopeOp::create(nc.b, nc.loc, x.getType(), x, cos, sin,
                               positions);
      if (interleaved)
        op.setInterleaved(true);
      nc.importer.unifyElementwise(op, {x});
      return op;
    };
    qb = rope(qb);
    kb = rope(kb);
  }
  Value kn = transposeBNSH(nc, kb), vn = transposeBNSH(nc, vb);
  if (nc.hasInput(3) != nc.hasInput(4))
    return nc.error("past_key and past_value must be given together");
  if (windowedCache)
    return convertWindowedGqa(nc, qb, kn, vn, sk, firstPos, positions, window,
                              scale, softcap);
  if (nc.hasInput(3)) {
    TRY(pk, concatSeq(nc, nc.input(3), kn));
    TRY(pv, concatSeq(nc, nc.input(4), vn));
    kn = pk;
    vn = pv;
  }
  // Key j is visible to the token at position p iff j <= p (causal, which
  // also hides the padding past seqlens_k) and, with a local window,
  // p - j < local_window_size (the window counts the token itself, as
  // onnxruntime's kernels do).
  Value total = dimSize(nc, kn, 2);
  int64_t t = cast<RankedTensorType>(kn.getType()).getDimSize(2);
  Value keys = RangeOp::create(nc.b, nc.loc, tensorOf({t}, i64),
                               scalarI64(nc, 0), total, scalarI64(nc, 1));
  keys = reshapeInOrder(nc, keys, {1, 1, 1, t});
  Value pos4 = reshapeInOrder(nc, positions, {b, 1, s, 1});
  auto maskType = tensorOf({b, 1, s, t}, nc.b.getI1Type());
  Value mask = CompareOp::create(nc.b, nc.loc, maskType, ComparePredicate::le,
                                 keys, pos4);
  if (window >= 0) {
    Value lowest = SubOp::create(nc.b, nc.loc, tensorOf({b, 1, s, 1}, i64),
                                 pos4, scalarI64(nc, window));
    Value inWindow = CompareOp::create(nc.b, nc.loc, maskType,
                                       ComparePredicate::gt, keys, lowest);
    mask = AndOp::create(nc.b, nc.loc, maskType, mask, inWindow);
  }
  Value out = attend(nc, qb, kn, vn, mask, MaskKind::none, scale, softcap);
  nc.setOutput(0, mergeHeads(nc, out));
  nc.setOutput(1, kn);
  nc.setOutput(2, vn);
  return Error::success();
}

//===----------------------------------------------------------------------===//
// Quantized weights
//===----------------------------------------------------------------------===//

/// com.microsoft MatMulNBits: Y = A @ dequant(B)^T with B packed
/// [N, k_blocks, blob] uint8, scales [N, k_blocks] (or flat), optional packed
/// zero points (default 2^(bits-1)).
Error convertMatMulNBits(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"K", "N", "bits", "block_size",
                                      "accuracy_level", "weight_prepacked"}))
    return err;
  TRY(a, nc.required(0));
  TRY(packed, nc.required(1));
  TRY(scales, nc.required(2));
  TRY(k, nc.intAttr("K"));
  TRY(n, nc.intAttr("N"));
  TRY(bits, nc.intAttr("bits", 4));
  TRY(bs, nc.intAttr("block_size"));
  TRY(prepacked, nc.intAttr("weight_prepacked", 0));
  if (prepacked)
    return nc.error("prepacked (CUDA layout) weights are not supported");
  if (bits != 4 && bits != 8)
    return nc.error(llvm::formatv("bits = {0} is not supported (4 or 8)", bits));
  if (bs < 16 || bs > (1 << 16) || (bs & (bs - 1)))
    return nc.error(llvm::formatv("block_size {0} must be a power of two in "
                                  "[16, 65536]",
                                  bs));
  if (k <= 0 || n <= 0 || k > (int64_t{1} << 31) || n > (int64_t{1} << 31))
    return nc.error(llvm::formatv("K = {0} and N = {1} must be in [1, 2^31]",
                                  k, n));
  if (nc.hasInput(4))
    return nc.error("g_idx is not supported");
  auto at = cast<RankedTensorType>(a.getType());
  Type et = at.getElementType();
  if (at.getRank() < 2 || at.getShape().back() != k)
    return nc.error(llvm::formatv("A must be [..., {0}]", k));
  int64_t blocks = (k + bs - 1) / bs, blob = bs * bits / 8;
  auto bt = cast<RankedTensorType>(packed.getType());
  if (bt != tensorOf({n, blocks, blob}, IntegerType::get(nc.b.getContext(), 8,
                                                         IntegerType::Unsigned)))
    return nc.error(llvm::formatv("B must be uint8 [{0}, {1}, {2}], found {3}",
                                  n, blocks, blob, mlirTypeStr(bt)));
  Type storage =
      IntegerType::get(nc.b.getContext(), bits, IntegerType::Unsigned);
  Value data = BitcastOp::create(nc.b, nc.loc,
                                 tensorOf({n, blocks * bs}, storage), packed);
  if (blocks * bs != k)
    data = SliceOp::create(nc.b, nc.loc, tensorOf({n, k}, storage), data,
                           nc.b.getDenseI64ArrayAttr({1}),
                           nc.b.getDenseI64ArrayAttr({0}),
                           nc.b.getDenseI64ArrayAttr({k}),
                           nc.b.getDenseI64ArrayAttr({1}));
  auto st = cast<RankedTensorType>(scales.getType());
  if (st.getElementType() != et || st.getNumElements() != n * blocks)
    return nc.error(llvm::formatv("scales must hold {0} x {1} values of A's "
                                  "type, found {2}",
                                  n, blocks, mlirTypeStr(st)));
  if (st.getRank() != 2)
    scales = ReshapeOp::create(nc.b, nc.loc, tensorOf({n, blocks}, et), scales,
                               Value());
  Value zp;
  auto zpType = tensorOf({n, blocks}, storage);
  if (Value given = nc.input(3)) {
    if (!elementTypeOf(given).isUnsignedInteger(8))
      return nc.error("zero points in A's float type are not supported");
    TRY(unpacked, unpackZeroPoints(nc, given, n, blocks, bits, storage));
    zp = unpacked;
  } else {
    zp = arith::ConstantOp::create(
        nc.b, nc.loc, zpType,
        DenseElementsAttr::get(zpType, APInt(bits, 1ull << (bits - 1))));
  }
  SmallVector<int64_t> block = {1, bs};
  auto quant = QuantAttr::get(nc.b.getContext(), storage, et,
                              ArrayRef<int64_t>(block), et, storage);
  SmallVector<int64_t> qshape = {n, k};
  auto qtype = QTensorType::get(nc.b.getContext(), ArrayRef<int64_t>(qshape),
                                quant);
  Value q = MakeQTensorOp::create(nc.b, nc.loc, qtype, data, scales, zp);
  SmallVector<int64_t> dims(at.getShape().drop_back());
  dims.push_back(n);
  auto mm = MatmulOp::create(nc.b, nc.loc, tensorOf(dims, et), a, q,
                             nc.input(5));
  mm.setTransposeB(true);
  for (int64_t d = 0; d + 1 < at.getRank(); ++d)
    nc.importer.unifyDims(mm, d, a, d);
  nc.setOutput(0, mm);
  return Error::success();
}

/// com.microsoft GatherBlockQuantized: an embedding lookup in a block-wise
/// quantized table (tied embeddings share the lm_head's MatMulNBits blobs).
Error convertGatherBlockQuantized(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"bits", "block_size", "gather_axis",
                                      "quantize_axis"}))
    return err;
  TRY(data, nc.required(0));
  TRY(ids, nc.required(1));
  TRY(scales, nc.required(2));
  TRY(bits, nc.intAttr("bits", 4));
  TRY(bs, nc.intAttr("block_size", 128));
  TRY(gatherAxis, nc.intAttr("gather_axis", 0));
  TRY(quantAxis, nc.intAttr("quantize_axis", 1));
  auto dt = cast<RankedTensorType>(data.getType());
  if (bits != 4 || gatherAxis != 0 || dt.getRank() != 2 ||
      normAxis(quantAxis, 2) != 1 || !dt.hasStaticShape())
    return nc.error("only 4-bit [vocab, hidden] tables gathered along axis 0 "
                    "and quantized along axis 1 are supported");
  MLIRContext *ctx = nc.b.getContext();
  int64_t vocab = dt.getDimSize(0), hidden = dt.getDimSize(1);
  if (vocab > (int64_t{1} << 31) || hidden > (int64_t{1} << 31) || bs <= 0 ||
      bs > (1 << 16))
    return nc.error("table dimensions or block_size out of range");
  Type elem = dt.getElementType();
  Type storage;
  Value table = data;
  if (elem.isUnsignedInteger(8)) {
    // Two uint4 values per byte, low nibble first; default zero point 8.
    hidden *= 2;
    storage = IntegerType::get(ctx, 4, IntegerType::Unsigned);
    table = BitcastOp::create(nc.b, nc.loc, tensorOf({vocab, hidden}, storage),
                              data);
  } else if (elem.isInteger(4) || elem.isUnsignedInteger(4)) {
    storage = elem;
  } else {
    return nc.error("data must be uint8 (packed uint4) or int4/uint4, found " +
                    mlirTypeStr(elem));
  }
  auto st = cast<RankedTensorType>(scales.getType());
  Type et = st.getElementType();
  int64_t blocks = (hidden + bs - 1) / bs;
  if (st.getNumElements() != vocab * blocks)
    return nc.error(llvm::formatv("scales must hold {0} x {1} values", vocab,
                                  blocks));
  if (st.getShape() != ArrayRef<int64_t>{vocab, blocks})
    scales = ReshapeOp::create(nc.b, nc.loc, tensorOf({vocab, blocks}, et),
                               scales, Value());
  Value zp;
  Type zpType;
  if (storage.isUnsignedInteger(4)) {
    zpType = storage;
    if (Value given = nc.input(3)) {
      TRY(unpacked, unpackZeroPoints(nc, given, vocab, blocks, 4, storage));
      zp = unpacked;
    } else {
      auto type = tensorOf({vocab, blocks}, storage);
      zp = arith::ConstantOp::create(nc.b, nc.loc, type,
                                     DenseElementsAttr::get(type, APInt(4, 8)));
    }
  } else if (nc.hasInput(3)) {
    return nc.error("zero points with int4 data are not supported");
  }
  SmallVector<int64_t> block = {1, bs}, shape = {vocab, hidden};
  auto quant = QuantAttr::get(ctx, storage, et, ArrayRef<int64_t>(block), et,
                              zpType);
  auto qtype = QTensorType::get(ctx, ArrayRef<int64_t>(shape), quant);
  Value q = MakeQTensorOp::create(nc.b, nc.loc, qtype, table, scales, zp);
  auto it = cast<RankedTensorType>(ids.getType());
  SmallVector<int64_t> dims(it.getShape());
  dims.push_back(hidden);
  Value result = EmbeddingOp::create(nc.b, nc.loc, tensorOf(dims, et), q, ids);
  for (int64_t d = 0; d < it.getRank(); ++d)
    nc.importer.unifyDims(result, d, ids, d);
  nc.setOutput(0, result);
  return Error::success();
}

/// DequantizeLinear: per-tensor, per-axis and (opset 21+) block-wise.
Error convertDequantizeLinear(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"axis", "block_size", "output_dtype"}))
    return err;
  TRY(x, nc.required(0));
  TRY(scale, nc.required(1));
  TRY(axis, nc.intAttr("axis", 1));
  TRY(blockSize, nc.intAttr("block_size", 0));
  auto xt = cast<RankedTensorType>(x.getType());
  auto st = cast<RankedTensorType>(scale.getType());
  Type storage = xt.getElementType();
  Type et = st.getElementType();
  if (!xt.hasStaticShape())
    return nc.error("the quantized input must have a static shape");
  if (!et.isF32() && !et.isF16() && !et.isBF16())
    return nc.error("scale must be f32, f16 or bf16, found " + mlirTypeStr(et));
  if (nc.attr("output_dtype")) {
    TRY(outCode, nc.intAttr("output_dtype"));
    TRY(outType, nc.importer.elementType(outCode, "output_dtype"));
    if (outType != et)
      return nc.error("output_dtype different from the scale type is not "
                      "supported");
  }
  TRY(scheme, qdqScheme(nc, xt, storage, et, scale, nc.input(2), axis,
                        blockSize));
  QTensorType qtype = scheme.type;
  Value scales = scheme.scales, zp = scheme.zeroPoints;
  Value q = MakeQTensorOp::create(nc.b, nc.loc, qtype, x, scales, zp);
  nc.setOutput(0, DequantizeOp::create(nc.b, nc.loc,
                                       qtype.getExpressedTensorType(), q));
  return Error::success();
}

/// QuantizeLinear: static scales (and zero points) from the graph; the
/// stored values come out as a plain tensor of the storage type.
Error convertQuantizeLinear(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"axis", "block_size", "output_dtype",
                                      "saturate", "precision"}))
    return err;
  TRY(x, nc.required(0));
  TRY(scale, nc.required(1));
  TRY(axis, nc.intAttr("axis", 1));
  TRY(blockSize, nc.intAttr("block_size", 0));
  auto xt = cast<RankedTensorType>(x.getType());
  auto st = cast<RankedTensorType>(scale.getType());
  Type et = xt.getElementType();
  if (!xt.hasStaticShape())
    return nc.error("the input must have a static shape");
  if (st.getElementType() != et)
    return nc.error("scale and input element types differ");
  Type storage;
  if (Value zp = nc.input(2)) {
    storage = elementTypeOf(zp);
  } else if (nc.attr("output_dtype")) {
    TRY(code, nc.intAttr("output_dtype"));
    TRY(t, nc.importer.elementType(code, "output_dtype"));
    storage = t;
  } else {
    storage = IntegerType::get(nc.b.getContext(), 8, IntegerType::Unsigned);
  }
  if (!isa<FloatType>(et) || et.isF64())
    return nc.error("input must be f32, f16 or bf16");
  // ONNX's zero point defaults to 0, which is kiln's symmetric scheme.
  TRY(scheme, qdqScheme(nc, xt, storage, et, scale, nc.input(2), axis,
                        blockSize));
  QTensorType qtype = scheme.type;
  Value scales = scheme.scales, zp = scheme.zeroPoints;
  Value q = QuantizeOp::create(nc.b, nc.loc, qtype, x, scales, zp);
  nc.setOutput(0, QTensorDataOp::create(nc.b, nc.loc, qtype.getDataType(), q));
  return Error::success();
}

/// ONNX TensorScatter (opset 24): a static KV cache updated in place. The
/// cache input is marked for the runtime when it is a graph input.
Error convertTensorScatter(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"axis", "mode"}))
    return err;
  TRY(cache, nc.required(0));
  TRY(update, nc.required(1));
  TRY(axis, nc.intAttr("axis", -2));
  TRY(mode, nc.stringAttr("mode", std::string("linear")));
  if (mode != "linear" && mode != "circular")
    return nc.error("mode must be 'linear' or 'circular', found '" + mode + "'");
  auto ct = cast<RankedTensorType>(cache.getType());
  auto ut = cast<RankedTensorType>(update.getType());
  if (Error err = checkAxis(nc, axis, ct.getRank()))
    return err;
  if (ut.getRank() != ct.getRank() || ut.getElementType() != ct.getElementType())
    return nc.error("update must have the cache's rank and element type");
  auto op = TensorScatterOp::create(nc.b, nc.loc, ct, cache, update,
                                    nc.input(2), nc.b.getI64IntegerAttr(axis),
                                    mode == "circular" ? nc.b.getUnitAttr()
                                                       : UnitAttr());
  nc.importer.unifyElementwise(op, {cache});
  nc.importer.markKvCache(cache, op);
  nc.setOutput(0, op);
  return Error::success();
}

/// com.microsoft MultiHeadAttention: Q/K/V [B, S, H*D] (+ optional packed
/// bias), additive attention_bias, past/present BNSH, unidirectional.
Error convertMultiHeadAttention(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"num_heads", "scale", "mask_filter_value",
                                      "unidirectional"}))
    return err;
  TRY(q, nc.required(0));
  TRY(k, nc.required(1));
  TRY(v, nc.required(2));
  TRY(heads, nc.intAttr("num_heads"));
  TRY(scale, nc.floatAttr("scale", 0.0f));
  TRY(causal, nc.intAttr("unidirectional", 0));
  if (heads <= 0 || heads > (1 << 16))
    return nc.error(llvm::formatv("num_heads {0} is out of range", heads));
  if (nc.hasInput(4))
    return nc.error("key_padding_mask is not supported (use attention_bias)");
  for (unsigned i = 8; i < nc.numInputs(); ++i)
    if (nc.hasInput(i))
      return nc.error(llvm::formatv("input #{0} is not supported", i));
  if (nc.hasOutput(3))
    return nc.error("the qk output is not supported");
  for (Value x : {q, k, v})
    if (cast<RankedTensorType>(x.getType()).getRank() != 3)
      return nc.error("query, key and value must be [batch, seq, hidden] (packed "
                      "and BNSH key/value forms are not supported)");
  if (Value bias = nc.input(3)) {
    // [bias_q | bias_k | bias_v], each H*D wide.
    auto bt = cast<RankedTensorType>(bias.getType());
    int64_t width = cast<RankedTensorType>(q.getType()).getDimSize(2);
    if (ShapedType::isDynamic(width) || bt.getRank() != 1 ||
        bt.getDimSize(0) != 3 * width)
      return nc.error("bias must be [3 * hidden] with a static hidden size");
    auto addPart = [&](Value x, int64_t part) -> Value {
      Value slice = SliceOp::create(
          nc.b, nc.loc, tensorOf({width}, bt.getElementType()), bias,
          nc.b.getDenseI64ArrayAttr({0}),
          nc.b.getDenseI64ArrayAttr({part * width}),
          nc.b.getDenseI64ArrayAttr({(part + 1) * width}),
          nc.b.getDenseI64ArrayAttr({1}));
      Value sum = AddOp::create(nc.b, nc.loc, x.getType(), x, slice);
      nc.importer.unifyElementwise(sum, {x});
      return sum;
    };
    q = addPart(q, 0);
    k = addPart(k, 1);
    v = addPart(v, 2);
  }
  TRY(qb, splitHeads(nc, q, heads, "query"));
  TRY(kb, splitHeads(nc, k, heads, "key"));
  TRY(vb, splitHeads(nc, v, heads, "value"));
  Value kn = transposeBNSH(nc, kb), vn = transposeBNSH(nc, vb);
  if (nc.hasInput(6) != nc.hasInput(7))
    return nc.error("past_key and past_value must be given together");
  if (nc.hasInput(6)) {
    TRY(pk, concatSeq(nc, nc.input(6), kn));
    TRY(pv, concatSeq(nc, nc.input(7), vn));
    kn = pk;
    vn = pv;
  }
  Value out = attend(nc, qb, kn, vn, nc.input(5),
                     causal ? MaskKind::causal : MaskKind::none, scale, 0.0f);
  nc.setOutput(0, mergeHeads(nc, out));
  nc.setOutput(1, kn);
  nc.setOutput(2, vn);
  return Error::success();
}

} // namespace

void mlir::kiln::onnx_import::registerLlmConverters(
    llvm::StringMap<ConverterEntry> &t) {
  t["com.microsoft::RotaryEmbedding"] = {
      [](NodeContext &nc) { return convertRotary(nc, true); }, 1};
  t["::RotaryEmbedding"] = {
      [](NodeContext &nc) { return convertRotary(nc, false); }, 23};
  t["::Attention"] = {convertAttention23, 23};
  t["com.microsoft::GroupQueryAttention"] = {convertGroupQueryAttention, 1};
  t["com.microsoft::MatMulNBits"] = {convertMatMulNBits, 1};
  t["::DequantizeLinear"] = {convertDequantizeLinear, 13};
  t["com.microsoft::GatherBlockQuantized"] = {convertGatherBlockQuantized, 1};
  t["::QuantizeLinear"] = {convertQuantizeLinear, 13};
  t["::TensorScatter"] = {convertTensorScatter, 24};
  t["com.microsoft::MultiHeadAttention"] = {convertMultiHeadAttention, 1};
}
