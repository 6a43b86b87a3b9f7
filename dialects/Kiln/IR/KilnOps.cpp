//===- KilnOps.cpp - operations of the kiln dialect -----------------------===//
//
// Verifiers, folders and canonicalization patterns. Every check a user's IR
// can fail is a diagnostic (Debian's MLIR has no assertions).
//
//===----------------------------------------------------------------------===//

#include "kiln/Dialect/Kiln/IR/KilnOps.h"

#include "kiln/Support/DType.h"

#include "mlir/Dialect/Traits.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallSet.h"

using namespace mlir;
using namespace mlir::kiln;

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

/// A shape as `[?, 4096]` for diagnostics.
static std::string shapeStr(ArrayRef<int64_t> shape) {
  std::string text = "[";
  llvm::raw_string_ostream os(text);
  llvm::interleave(
      shape,
      [&](int64_t d) {
        if (ShapedType::isDynamic(d))
          os << "?";
        else
          os << d;
      },
      [&] { os << ", "; });
  os << "]";
  return text;
}

static bool dimsCompatible(int64_t a, int64_t b) {
  return a == b || ShapedType::isDynamic(a) || ShapedType::isDynamic(b);
}

static bool shapesCompatible(ArrayRef<int64_t> a, ArrayRef<int64_t> b) {
  return a.size() == b.size() &&
         llvm::all_of(llvm::zip_equal(a, b), [](auto pair) {
           return dimsCompatible(std::get<0>(pair), std::get<1>(pair));
         });
}

/// The shape of a float tensor or quantized tensor operand.
static ArrayRef<int64_t> getShapeOf(Type type) {
  if (auto qt = dyn_cast<QTensorType>(type))
    return qt.getShape();
  return cast<ShapedType>(type).getShape();
}

/// The element type computation sees: the expressed type of a qtensor.
static Type getComputeElementType(Type type) {
  if (auto qt = dyn_cast<QTensorType>(type))
    return qt.getExpressedType();
  return cast<ShapedType>(type).getElementType();
}

/// Normalizes `axis` into [0, rank); fails with a diagnostic when out of
/// range.
static FailureOr<int64_t> normalizeAxis(Operation *op, int64_t axis,
                                        int64_t rank, StringRef what = "axis") {
  if (axis < -rank || axis >= rank) {
    op->emitOpError() << what << " " << axis << " is out of range for rank "
                      << rank;
    return failure();
  }
  return axis < 0 ? axis + rank : axis;
}

/// Broadcasts the shapes of `types` (NumPy rules), diagnosing on `op`.
static FailureOr<SmallVector<int64_t>> broadcastShapes(Operation *op,
                                                       TypeRange types) {
  SmallVector<int64_t> shape;
  for (auto [i, type] : llvm::enumerate(types)) {
    ArrayRef<int64_t> next = cast<ShapedType>(type).getShape();
    if (i == 0) {
      shape.assign(next.begin(), next.end());
      continue;
    }
    SmallVector<int64_t> merged;
    if (!OpTrait::util::getBroadcastedShape(shape, next, merged)) {
      op->emitOpError() << "operand shapes " << shapeStr(shape) << " and "
                        << shapeStr(next) << " are not broadcast-compatible";
      return failure();
    }
    shape = std::move(merged);
  }
  return shape;
}

/// Checks an elementwise op: operands broadcast together into the result
/// shape.
static LogicalResult verifyBroadcastResult(Operation *op, TypeRange operands,
                                           Type result) {
  FailureOr<SmallVector<int64_t>> shape = broadcastShapes(op, operands);
  if (failed(shape))
    return failure();
  ArrayRef<int64_t> resultShape = cast<ShapedType>(result).getShape();
  if (!shapesCompatible(*shape, resultShape))
    return op->emitOpError() << "result shape " << shapeStr(resultShape)
                             << " does not match the broadcast shape "
                             << shapeStr(*shape);
  return success();
}

static LogicalResult verifySameElementType(Operation *op, Type expected,
                                           Type found, StringRef what) {
  if (expected != found)
    return op->emitOpError() << what << " element type " << found
                             << " does not match " << expected;
  return success();
}

/// Checks a result's shape against the one the op's semantics give; every
/// verifier reports the mismatch in the same words.
static LogicalResult verifyResultShape(Operation *op, ArrayRef<int64_t> found,
                                       ArrayRef<int64_t> expected) {
  if (!shapesCompatible(expected, found))
    return op->emitOpError() << "result shape " << shapeStr(found)
                             << " does not match the expected "
                             << shapeStr(expected);
  return success();
}

//===----------------------------------------------------------------------===//
// WeightDeclOp / WeightOp
//===----------------------------------------------------------------------===//

LogicalResult WeightDeclOp::verify() {
  RankedTensorType type = getTensorType();
  if (!type.hasStaticShape())
    return emitOpError() << "weight type must have a static shape, found "
                         << type;
  std::string reason;
  FailureOr<uint64_t> bytes = getStorageSizeInBytes(type, &reason);
  if (failed(bytes))
    return emitOpError() << "cannot size weight of type " << type << ": "
                         << reason;
  if (ExternalStorageAttr storage = getStorageAttr();
      storage && storage.getLength() != *bytes)
    return emitOpError() << "external storage length " << storage.getLength()
                         << " does not match the " << *bytes << " bytes of "
                         << type;
  return success();
}

LogicalResult
WeightOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  auto decl =
      symbolTable.lookupNearestSymbolFrom<WeightDeclOp>(*this, getNameAttr());
  if (!decl)
    return emitOpError() << "'" << getName()
                         << "' does not name a kiln.weight_decl";
  if (decl.getType() != getType())
    return emitOpError() << "type " << getType()
                         << " does not match the declared type "
                         << decl.getType() << " of @" << getName();
  return success();
}

//===----------------------------------------------------------------------===//
// Quantization ops
//===----------------------------------------------------------------------===//

static LogicalResult verifyPart(Operation *op, StringRef what, Type found,
                                RankedTensorType expected) {
  auto tensor = cast<RankedTensorType>(found);
  if (tensor.getElementType() != expected.getElementType() ||
      !shapesCompatible(tensor.getShape(), expected.getShape()))
    return op->emitOpError() << what << " type " << found
                             << " does not match the expected " << expected;
  return success();
}

LogicalResult MakeQTensorOp::verify() {
  QTensorType type = getType();
  if (failed(verifyPart(*this, "data", getData().getType(),
                        type.getDataType())) ||
      failed(verifyPart(*this, "scales", getScales().getType(),
                        type.getScalesType())))
    return failure();
  if (type.getQuant().isSymmetric()) {
    if (getZeroPoints())
      return emitOpError("zero points given for a symmetric scheme");
    return success();
  }
  if (!getZeroPoints())
    return emitOpError("zero points missing for an asymmetric scheme");
  return verifyPart(*this, "zero points", getZeroPoints().getType(),
                    type.getZeroPointsType());
}

LogicalResult QuantizeOp::verify() {
  QTensorType type = getType();
  if (failed(verifyPart(*this, "input", getInput().getType(),
                        type.getExpressedTensorType())))
    return failure();
  if (getScales() && failed(verifyPart(*this, "scales", getScales().getType(),
                                       type.getScalesType())))
    return failure();
  if (getZeroPoints()) {
    if (type.getQuant().isSymmetric())
      return emitOpError("zero points given for a symmetric scheme");
    if (!getScales())
      return emitOpError("zero points need static scales");
    return verifyPart(*this, "zero points", getZeroPoints().getType(),
                      type.getZeroPointsType());
  }
  if (getScales() && !type.getQuant().isSymmetric())
    return emitOpError("static scales of an asymmetric scheme need zero "
                       "points");
  return success();
}

LogicalResult DequantizeOp::verify() {
  return verifyPart(*this, "result", getType(),
                    getInput().getType().getExpressedTensorType());
}

LogicalResult HadamardOp::verify() {
  int64_t block = getBlock();
  if (block < 1 || (block & (block - 1)) != 0)
    return emitOpError() << "block " << block << " is not a power of two";
  auto type = cast<RankedTensorType>(getInput().getType());
  if (type.getRank() < 1)
    return emitOpError("needs a tensor of rank >= 1");
  int64_t last = type.getShape().back();
  if (ShapedType::isDynamic(last))
    return emitOpError("the last dimension must be static");
  if (last % block != 0)
    return emitOpError() << "block " << block << " does not divide the last dimension ("
                         << last << ")";
  return success();
}

LogicalResult RotateOp::verify() {
  auto type = cast<RankedTensorType>(getInput().getType());
  if (getType() != type)
    return emitOpError() << "result type " << getType() << " differs from the input's " << type;
  auto r = cast<RankedTensorType>(getRotation().getType());
  if (r.getRank() != 2 || !r.hasStaticShape() || r.getDimSize(0) != r.getDimSize(1))
    return emitOpError() << "rotation must be a static square matrix, found " << r;
  if (type.getRank() < 1 || ShapedType::isDynamic(type.getShape().back()))
    return emitOpError("the input's last dimension must be static");
  int64_t n = r.getDimSize(0), last = type.getShape().back();
  if (n < 1 || last % n != 0)
    return emitOpError() << "rotation size " << n << " does not divide the last dimension ("
                         << last << ")";
  return success();
}

LogicalResult QTensorDataOp::verify() {
  return verifyPart(*this, "result", getType(), getInput().getType().getDataType());
}

//===----------------------------------------------------------------------===//
// EmbeddingOp / GatherOp / MatmulOp
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingOp::verify() {
  ArrayRef<int64_t> table = getShapeOf(getTable().getType());
  if (table.size() != 2)
    return emitOpError() << "table must have rank 2 ([vocab, hidden]), found "
                         << "rank " << table.size();
  SmallVector<int64_t> expected(getIds().getType().getShape());
  expected.push_back(table[1]);
  if (failed(verifyResultShape(*this, getType().getShape(), expected)))
    return failure();
  return verifySameElementType(*this,
                               getComputeElementType(getTable().getType()),
                               getType().getElementType(), "result");
}

LogicalResult GatherOp::verify() {
  RankedTensorType input = getInput().getType();
  FailureOr<int64_t> axis = normalizeAxis(*this, getAxis(), input.getRank());
  if (failed(axis))
    return failure();
  SmallVector<int64_t> expected(input.getShape().take_front(*axis));
  llvm::append_range(expected, getIndices().getType().getShape());
  llvm::append_range(expected, input.getShape().drop_front(*axis + 1));
  if (failed(verifyResultShape(*this, getType().getShape(), expected)))
    return failure();
  return verifySameElementType(*this, input.getElementType(),
                               getType().getElementType(), "result");
}

LogicalResult GatherNdOp::verify() {
  RankedTensorType input = getInput().getType();
  RankedTensorType indices = getIndices().getType();
  int64_t b = getBatchDims();
  if (indices.getRank() < 1 || indices.isDynamicDim(indices.getRank() - 1))
    return emitOpError("indices need a static last dimension");
  int64_t k = indices.getShape().back();
  if (b < 0 || b >= std::min(input.getRank(), indices.getRank()) ||
      k < 1 || b + k > input.getRank())
    return emitOpError() << "batch_dims " << b << " and index depth " << k
                         << " do not fit input rank " << input.getRank()
                         << " and indices rank " << indices.getRank();
  for (int64_t d = 0; d < b; ++d)
    if (!dimsCompatible(input.getDimSize(d), indices.getDimSize(d)))
      return emitOpError() << "batch dimension " << d << " differs: "
                           << input.getDimSize(d) << " vs "
                           << indices.getDimSize(d);
  SmallVector<int64_t> expected(indices.getShape().drop_back());
  llvm::append_range(expected, input.getShape().drop_front(b + k));
  if (failed(verifyResultShape(*this, getType().getShape(), expected)))
    return failure();
  return verifySameElementType(*this, input.getElementType(),
                               getType().getElementType(), "result");
}

LogicalResult MatmulOp::verify() {
  ArrayRef<int64_t> a = getShapeOf(getA().getType());
  ArrayRef<int64_t> b = getShapeOf(getB().getType());
  if (a.size() < 2 || b.size() < 2)
    return emitOpError() << "operands must have rank >= 2, found ranks "
                         << a.size() << " and " << b.size();
  Type elementType = getType().getElementType();
  if (failed(verifySameElementType(*this, elementType,
                                   getComputeElementType(getA().getType()),
                                   "a")) ||
      failed(verifySameElementType(*this, elementType,
                                   getComputeElementType(getB().getType()),
                                   "b")))
    return failure();
  int64_t k = a.back();
  int64_t bk = getTransposeB() ? b.back() : b[b.size() - 2];
  int64_t n = getTransposeB() ? b[b.size() - 2] : b.back();
  if (!dimsCompatible(k, bk))
    return emitOpError() << "contraction dimensions differ: a has K = " << k
                         << ", b has K = " << bk;
  SmallVector<int64_t> batch;
  if (!OpTrait::util::getBroadcastedShape(a.drop_back(2), b.drop_back(2),
                                          batch))
    return emitOpError() << "batch dimensions " << shapeStr(a.drop_back(2))
                         << " and " << shapeStr(b.drop_back(2))
                         << " are not broadcast-compatible";
  SmallVector<int64_t> expected = batch;
  expected.push_back(a[a.size() - 2]);
  expected.push_back(n);
  if (failed(verifyResultShape(*this, getType().getShape(), expected)))
    return failure();
  if (Value bias = getBias()) {
    auto biasType = cast<RankedTensorType>(bias.getType());
    if (biasType.getRank() != 1 || !dimsCompatible(biasType.getDimSize(0), n))
      return emitOpError() << "bias shape " << shapeStr(biasType.getShape())
                           << " does not match [" << n << "]";
    if (failed(verifySameElementType(*this, elementType,
                                     biasType.getElementType(), "bias")))
      return failure();
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Elementwise ops
//===----------------------------------------------------------------------===//

/// Binary elementwise ops share one verifier: matching element types and
/// NumPy broadcasting.
static LogicalResult verifyBinaryOp(Operation *op) {
  Type lhs = getElementTypeOrSelf(op->getOperand(0));
  Type rhs = getElementTypeOrSelf(op->getOperand(1));
  if (lhs != rhs)
    return op->emitOpError() << "operand element types " << lhs << " and "
                             << rhs << " differ";
  if (failed(verifySameElementType(op, lhs,
                                   getElementTypeOrSelf(op->getResult(0)),
                                   "result")))
    return failure();
  return verifyBroadcastResult(op, op->getOperandTypes(),
                               op->getResult(0).getType());
}

LogicalResult AddOp::verify() { return verifyBinaryOp(*this); }
LogicalResult SubOp::verify() { return verifyBinaryOp(*this); }
LogicalResult MulOp::verify() { return verifyBinaryOp(*this); }
LogicalResult DivOp::verify() { return verifyBinaryOp(*this); }
LogicalResult PowOp::verify() { return verifyBinaryOp(*this); }
LogicalResult MaxOp::verify() { return verifyBinaryOp(*this); }
LogicalResult MinOp::verify() { return verifyBinaryOp(*this); }
LogicalResult AndOp::verify() { return verifyBinaryOp(*this); }
LogicalResult OrOp::verify() { return verifyBinaryOp(*this); }

LogicalResult CompareOp::verify() {
  Type lhs = getLhs().getType().getElementType();
  Type rhs = getRhs().getType().getElementType();
  if (lhs != rhs)
    return emitOpError() << "operand element types " << lhs << " and " << rhs
                         << " differ";
  return verifyBroadcastResult(*this, getOperandTypes(), getType());
}

LogicalResult SelectOp::verify() {
  Type onTrue = getOnTrue().getType().getElementType();
  Type onFalse = getOnFalse().getType().getElementType();
  if (onTrue != onFalse)
    return emitOpError() << "on_true and on_false element types " << onTrue
                         << " and " << onFalse << " differ";
  if (failed(verifySameElementType(*this, onTrue, getType().getElementType(),
                                   "result")))
    return failure();
  return verifyBroadcastResult(*this, getOperandTypes(), getType());
}

LogicalResult TriluOp::verify() {
  if (getType().getRank() < 2)
    return emitOpError() << "input must have rank >= 2, found rank "
                         << getType().getRank();
  return success();
}

LogicalResult CumsumOp::verify() {
  return normalizeAxis(*this, getAxis(), getType().getRank());
}

LogicalResult CastOp::verify() {
  if (!shapesCompatible(getInput().getType().getShape(), getType().getShape()))
    return emitOpError() << "input shape "
                         << shapeStr(getInput().getType().getShape())
                         << " and result shape "
                         << shapeStr(getType().getShape()) << " differ";
  return success();
}

OpFoldResult CastOp::fold(FoldAdaptor) {
  if (getInput().getType() == getType())
    return getInput();
  return {};
}

//===----------------------------------------------------------------------===//
// ReduceOp / SoftmaxOp / norms
//===----------------------------------------------------------------------===//

LogicalResult ReduceOp::verify() {
  RankedTensorType input = getInput().getType();
  if (getAxes().empty())
    return emitOpError("needs at least one axis");
  llvm::SmallSet<int64_t, 4> axes;
  for (int64_t axis : getAxes()) {
    FailureOr<int64_t> normalized = normalizeAxis(*this, axis, input.getRank());
    if (failed(normalized))
      return failure();
    if (!axes.insert(*normalized).second)
      return emitOpError() << "axis " << axis << " is listed twice";
  }
  SmallVector<int64_t> expected;
  for (auto [i, dim] : llvm::enumerate(input.getShape())) {
    if (!axes.contains(i))
      expected.push_back(dim);
    else if (getKeepDims())
      expected.push_back(1);
  }
  if (failed(verifyResultShape(*this, getType().getShape(), expected)))
    return failure();
  return verifySameElementType(*this, input.getElementType(),
                               getType().getElementType(), "result");
}

LogicalResult SoftmaxOp::verify() {
  return normalizeAxis(*this, getAxis(), getType().getRank());
}

/// Norm weights (and biases) cover the dimensions [axis, rank).
static LogicalResult verifyNormParams(Operation *op, RankedTensorType input,
                                      int64_t axis, Type weight, Type bias,
                                      Type result) {
  FailureOr<int64_t> normalized = normalizeAxis(op, axis, input.getRank());
  if (failed(normalized))
    return failure();
  ArrayRef<int64_t> normShape = input.getShape().drop_front(*normalized);
  auto check = [&](Type type, StringRef what) -> LogicalResult {
    if (!type)
      return success();
    ArrayRef<int64_t> shape = cast<ShapedType>(type).getShape();
    if (!shapesCompatible(shape, normShape))
      return op->emitOpError()
             << what << " shape " << shapeStr(shape)
             << " does not match the normalized dimensions "
             << shapeStr(normShape);
    return success();
  };
  if (failed(check(weight, "weight")) || failed(check(bias, "bias")))
    return failure();
  if (result != input)
    return op->emitOpError() << "result type " << result
                             << " does not match input type " << input;
  return success();
}

LogicalResult RmsNormOp::verify() {
  if (getEpsilon().convertToFloat() < 0)
    return emitOpError() << "epsilon must be non-negative";
  return verifyNormParams(*this, getInput().getType(), getAxis(),
                          getWeight().getType(), nullptr, getType());
}

LogicalResult AddRmsNormOp::verify() {
  if (getEpsilon().convertToFloat() < 0)
    return emitOpError() << "epsilon must be non-negative";
  return verifyNormParams(*this, getInput().getType(), getAxis(),
                          getWeight().getType(), nullptr,
                          getResult().getType());
}

LogicalResult LayerNormOp::verify() {
  if (getEpsilon().convertToFloat() < 0)
    return emitOpError() << "epsilon must be non-negative";
  return verifyNormParams(*this, getInput().getType(), getAxis(),
                          getWeight().getType(),
                          getBias() ? getBias().getType() : Type(), getType());
}

//===----------------------------------------------------------------------===//
// RopeOp
//===----------------------------------------------------------------------===//

LogicalResult RopeOp::verify() {
  RankedTensorType input = getInput().getType();
  if (input.getRank() != 4)
    return emitOpError() << "input must be [batch, seq, heads, head_dim], "
                         << "found rank " << input.getRank();
  if (getType() != input)
    return emitOpError() << "result type " << getType()
                         << " does not match input type " << input;
  int64_t headDim = input.getDimSize(3);
  int64_t rotary = getRotaryDim() ? getRotaryDim() : headDim;
  if (getRotaryDim() < 0 || (!ShapedType::isDynamic(rotary) && rotary % 2) ||
      (!ShapedType::isDynamic(headDim) && rotary > headDim))
    return emitOpError() << "rotary_dim " << getRotaryDim()
                         << " must be even and at most head_dim " << headDim;
  if (getCos().getType() != getSin().getType())
    return emitOpError() << "cos type " << getCos().getType()
                         << " and sin type " << getSin().getType() << " differ";
  int64_t half =
      ShapedType::isDynamic(rotary) ? ShapedType::kDynamic : rotary / 2;
  ArrayRef<int64_t> cache = getCos().getType().getShape();
  SmallVector<int64_t> expected;
  if (Value positions = getPositions()) {
    ArrayRef<int64_t> pos = cast<ShapedType>(positions.getType()).getShape();
    SmallVector<int64_t> bs(input.getShape().take_front(2));
    if (!shapesCompatible(pos, bs))
      return emitOpError() << "positions shape " << shapeStr(pos)
                           << " does not match [batch, seq] " << shapeStr(bs);
    expected = {cache.empty() ? ShapedType::kDynamic : cache[0], half};
  } else {
    // Tables shared by every sequence of the batch have batch 1.
    int64_t batch = !cache.empty() && cache[0] == 1 ? 1 : input.getDimSize(0);
    expected = {batch, input.getDimSize(1), half};
  }
  if (!shapesCompatible(cache, expected))
    return emitOpError() << "cos/sin shape " << shapeStr(cache)
                         << " does not match the expected "
                         << shapeStr(expected);
  return success();
}

//===----------------------------------------------------------------------===//
// AttentionOp
//===----------------------------------------------------------------------===//

LogicalResult AttentionOp::verify() {
  RankedTensorType query = getQuery().getType();
  if (query.getRank() != 4)
    return emitOpError() << "query must be [batch, seq, heads, head_dim], "
                         << "found rank " << query.getRank();
  int64_t batch = query.getDimSize(0), seq = query.getDimSize(1);
  int64_t heads = query.getDimSize(2), headDim = query.getDimSize(3);
  Type elementType = query.getElementType();

  bool hasKv = getKey() || getValue();
  if (hasKv == static_cast<bool>(getCache()))
    return emitOpError("needs keys and values from exactly one source: "
                       "kv(...) or cache(...)");
  if (hasKv && !(getKey() && getValue()))
    return emitOpError("kv(...) needs both a key and a value");

  int64_t kvHeads, keyDim, valueDim, kvLen;
  if (KvCacheType cache = getCache() ? getCache().getType() : KvCacheType()) {
    kvHeads = cache.getNumKvHeads();
    keyDim = cache.getHeadDim();
    valueDim = cache.getValueHeadDim();
    kvLen = ShapedType::kDynamic;
    if (cache.getComputeType() != elementType)
      return emitOpError() << "cache compute type " << cache.getComputeType()
                           << " does not match query element type "
                           << elementType;
  } else {
    ArrayRef<int64_t> key = getShapeOf(getKey().getType());
    ArrayRef<int64_t> value = getShapeOf(getValue().getType());
    if (key.size() != 4 || value.size() != 4)
      return emitOpError() << "key and value must be [batch, seq, kv_heads, "
                           << "head_dim], found ranks " << key.size()
                           << " and " << value.size();
    if (!dimsCompatible(key[0], batch) || !dimsCompatible(value[0], batch))
      return emitOpError() << "key/value batch " << key[0] << "/" << value[0]
                           << " does not match query batch " << batch;
    if (!dimsCompatible(key[1], value[1]) || !dimsCompatible(key[2], value[2]))
      return emitOpError() << "key shape " << shapeStr(key)
                           << " and value shape " << shapeStr(value)
                           << " differ in length or heads";
    kvHeads = key[2];
    keyDim = key[3];
    valueDim = value[3];
    kvLen = key[1];
    for (auto [what, type] : {std::pair<StringRef, Type>{"key", getKey().getType()},
                              {"value", getValue().getType()}})
      if (failed(verifySameElementType(*this, elementType,
                                       getComputeElementType(type), what)))
        return failure();
  }
  if (!dimsCompatible(keyDim, headDim))
    return emitOpError() << "key head_dim " << keyDim
                         << " does not match query head_dim " << headDim;
  if (!ShapedType::isDynamic(heads) && !ShapedType::isDynamic(kvHeads) &&
      (kvHeads == 0 || heads % kvHeads != 0))
    return emitOpError() << "query heads " << heads
                         << " are not a multiple of KV heads " << kvHeads;

  SmallVector<int64_t> expected = {batch, seq, heads, valueDim};
  if (!shapesCompatible(expected, getType().getShape()) ||
      getType().getElementType() != elementType)
    return emitOpError() << "result type " << getType()
                         << " does not match the expected shape "
                         << shapeStr(expected) << " of " << elementType;

  if (Value mask = getAttnMask()) {
    auto maskType = cast<RankedTensorType>(mask.getType());
    Type maskElement = maskType.getElementType();
    if (!maskElement.isInteger(1) && maskElement != elementType &&
        !maskElement.isF32())
      return emitOpError() << "attn_mask element type " << maskElement
                           << " must be i1, f32 or the query's " << elementType;
    SmallVector<int64_t> full = {batch, heads, seq, kvLen};
    SmallVector<int64_t> merged;
    if (maskType.getRank() > 4 ||
        !OpTrait::util::getBroadcastedShape(full, maskType.getShape(),
                                            merged) ||
        !shapesCompatible(merged, full))
      return emitOpError() << "attn_mask shape "
                           << shapeStr(maskType.getShape())
                           << " does not broadcast to [batch, heads, q, k] "
                           << shapeStr(full);
  }

  MaskKind kind = getMask().getKind();
  if (Value tree = getTreeMask()) {
    if (kind != MaskKind::tree)
      return emitOpError() << "tree_mask given but the mask kind is "
                           << stringifyMaskKind(kind);
    ArrayRef<int64_t> shape = cast<ShapedType>(tree.getType()).getShape();
    SmallVector<int64_t> expected3 = {batch, seq, seq};
    if (!shapesCompatible(shape, expected3) &&
        !shapesCompatible(shape, ArrayRef<int64_t>(expected3).drop_front()))
      return emitOpError() << "tree_mask shape " << shapeStr(shape)
                           << " must be [batch, q, q] or [q, q] for "
                           << shapeStr(expected3);
  } else if (kind == MaskKind::tree) {
    return emitOpError("mask kind tree needs a tree_mask operand");
  }

  SparsityAttr sparsity = getSparsityAttr();
  if (!sparsity) {
    if (!getSparseIndex().empty())
      return emitOpError("sparse_index given without a sparsity attribute");
    if (kind == MaskKind::sparse)
      return emitOpError("mask kind sparse needs a sparsity attribute and "
                         "sparse_index");
  } else {
    if (getSparseIndex().size() != sparsity.getNumIndices())
      return emitOpError() << "sparsity " << sparsity << " needs "
                           << sparsity.getNumIndices()
                           << " sparse_index tensor(s), found "
                           << getSparseIndex().size();
    int64_t rank =
        sparsity.getFormat() == SparseFormat::vertical_slash ? 3 : 4;
    for (auto [i, index] : llvm::enumerate(getSparseIndex())) {
      int64_t found = cast<ShapedType>(index.getType()).getRank();
      if (found != rank)
        return emitOpError() << "sparse_index #" << i << " must have rank "
                             << rank << " for "
                             << stringifySparseFormat(sparsity.getFormat())
                             << ", found rank " << found;
    }
  }

  if (FloatAttr scale = getScaleAttr(); scale && !(scale.getValueAsDouble() > 0))
    return emitOpError() << "scale must be positive, found "
                         << scale.getValueAsDouble();
  if (FloatAttr softcap = getSoftcapAttr();
      softcap && softcap.getValueAsDouble() < 0)
    return emitOpError() << "softcap must be non-negative, found "
                         << softcap.getValueAsDouble();
  return success();
}

//===----------------------------------------------------------------------===//
// GluOp / GatedMlpOp
//===----------------------------------------------------------------------===//

LogicalResult GluOp::verify() {
  RankedTensorType gate = getGate().getType();
  if (getType().getElementType() != gate.getElementType())
    return emitOpError() << "result element type " << getType().getElementType()
                         << " does not match gate element type "
                         << gate.getElementType();
  SmallVector<int64_t> expected(gate.getShape());
  if (Value up = getUp()) {
    if (up.getType() != gate)
      return emitOpError() << "up type " << up.getType()
                           << " does not match gate type " << gate;
  } else {
    if (expected.empty())
      return emitOpError("a fused gate/up operand needs rank >= 1");
    int64_t last = expected.back();
    if (!ShapedType::isDynamic(last) && last % 2)
      return emitOpError() << "fused gate/up last dimension " << last
                           << " is odd";
    expected.back() = ShapedType::isDynamic(last) ? last : last / 2;
  }
  if (failed(verifyResultShape(*this, getType().getShape(), expected)))
    return failure();
  return success();
}

LogicalResult GatedMlpOp::verify() {
  bool split = getGate() || getUp();
  if (split == static_cast<bool>(getGateUp()) ||
      (split && !(getGate() && getUp())))
    return emitOpError("needs either gate(...) and up(...), or gate_up(...)");
  RankedTensorType input = getInput().getType();
  if (getType() != input)
    return emitOpError() << "result type " << getType()
                         << " does not match input type " << input;
  if (input.getRank() < 1)
    return emitOpError("input needs rank >= 1");
  int64_t hidden = input.getShape().back();
  bool transposed = getTransposeWeights();
  // Checks a [rows, cols] weight (stored [cols, rows] when transposed) and
  // returns its non-hidden dimension.
  auto checkWeight = [&](Value weight, StringRef what, bool hiddenIsRows,
                         int64_t &other) -> LogicalResult {
    ArrayRef<int64_t> shape = getShapeOf(weight.getType());
    if (shape.size() != 2)
      return emitOpError() << what << " weight must have rank 2, found rank "
                           << shape.size();
    if (failed(verifySameElementType(*this, input.getElementType(),
                                     getComputeElementType(weight.getType()),
                                     what)))
      return failure();
    bool rowsAreHidden = hiddenIsRows != transposed;
    int64_t h = rowsAreHidden ? shape[0] : shape[1];
    other = rowsAreHidden ? shape[1] : shape[0];
    if (!dimsCompatible(h, hidden))
      return emitOpError() << what << " weight shape " << shapeStr(shape)
                           << " does not match hidden size " << hidden
                           << (transposed ? " (transposed)" : "");
    return success();
  };
  int64_t ffn = ShapedType::kDynamic, other = ShapedType::kDynamic;
  if (split) {
    int64_t upDim;
    if (failed(checkWeight(getGate(), "gate", true, ffn)) ||
        failed(checkWeight(getUp(), "up", true, upDim)))
      return failure();
    if (!dimsCompatible(ffn, upDim))
      return emitOpError() << "gate and up widths " << ffn << " and " << upDim
                           << " differ";
  } else {
    int64_t fused;
    if (failed(checkWeight(getGateUp(), "gate_up", true, fused)))
      return failure();
    if (!ShapedType::isDynamic(fused) && fused % 2)
      return emitOpError() << "gate_up width " << fused << " is odd";
    ffn = ShapedType::isDynamic(fused) ? fused : fused / 2;
  }
  if (failed(checkWeight(getDown(), "down", false, other)))
    return failure();
  if (!dimsCompatible(other, ffn))
    return emitOpError() << "down weight width " << other
                         << " does not match the MLP width " << ffn;
  return success();
}

//===----------------------------------------------------------------------===//
// KV-cache ops
//===----------------------------------------------------------------------===//

LogicalResult KvCacheAppendOp::verify() {
  KvCacheType cache = getCache().getType();
  for (auto [what, value, dim] :
       {std::tuple<StringRef, Value, int64_t>{"key", getKey(),
                                              cache.getHeadDim()},
        {"value", getValue(), cache.getValueHeadDim()}}) {
    auto type = cast<RankedTensorType>(value.getType());
    SmallVector<int64_t> expected = {ShapedType::kDynamic, ShapedType::kDynamic,
                                     cache.getNumKvHeads(), dim};
    if (!shapesCompatible(type.getShape(), expected))
      return emitOpError() << what << " shape " << shapeStr(type.getShape())
                           << " does not match the cache's "
                           << shapeStr(expected);
    if (failed(verifySameElementType(*this, cache.getComputeType(),
                                     type.getElementType(), what)))
      return failure();
  }
  auto keyShape = getKey().getType().getShape();
  auto valueShape = getValue().getType().getShape();
  if (!dimsCompatible(keyShape[0], valueShape[0]) ||
      !dimsCompatible(keyShape[1], valueShape[1]))
    return emitOpError() << "key and value batch/length differ: "
                         << shapeStr(keyShape) << " vs "
                         << shapeStr(valueShape);
  RankedTensorType keyScale = cache.getStaticScaleType(false);
  if (!keyScale) {
    if (getKeyScale())
      return emitOpError() << "scales(...) given, but the cache "
                           << (cache.isQuantized() ? "computes per-token scales"
                                                   : "is not quantized");
    return success();
  }
  if (!getKeyScale())
    return emitOpError("a cache with static scales needs scales(...)");
  if (failed(verifyPart(*this, "key scale", getKeyScale().getType(),
                        keyScale)))
    return failure();
  return verifyPart(*this, "value scale", getValueScale().getType(),
                    cache.getStaticScaleType(true));
}

LogicalResult TensorScatterOp::verify() {
  RankedTensorType cache = getCache().getType();
  RankedTensorType update = getUpdate().getType();
  FailureOr<int64_t> axis = normalizeAxis(*this, getAxis(), cache.getRank());
  if (failed(axis))
    return failure();
  if (update.getRank() != cache.getRank() ||
      update.getElementType() != cache.getElementType())
    return emitOpError() << "update " << update
                         << " must have the cache's rank and element type ("
                         << cache << ")";
  for (int64_t d = 0; d < cache.getRank(); ++d) {
    if (d == *axis)
      continue;
    if (!dimsCompatible(update.getDimSize(d), cache.getDimSize(d)))
      return emitOpError() << "update shape " << shapeStr(update.getShape())
                           << " differs from the cache shape "
                           << shapeStr(cache.getShape()) << " outside axis "
                           << *axis;
  }
  if (Value indices = getWriteIndices()) {
    auto type = cast<RankedTensorType>(indices.getType());
    if (type.getRank() != 1 || !dimsCompatible(type.getDimSize(0),
                                               cache.getDimSize(0)))
      return emitOpError() << "write_indices must be [batch], found "
                           << shapeStr(type.getShape());
  }
  return success();
}

LogicalResult KvCacheReadOp::verify() {
  KvCacheType cache = getCache().getType();
  for (auto [what, type, dim] :
       {std::tuple<StringRef, RankedTensorType, int64_t>{
            "key", getKey().getType(), cache.getHeadDim()},
        {"value", getValue().getType(), cache.getValueHeadDim()}}) {
    SmallVector<int64_t> expected = {ShapedType::kDynamic, ShapedType::kDynamic,
                                     cache.getNumKvHeads(), dim};
    if (!shapesCompatible(type.getShape(), expected))
      return emitOpError() << what << " shape " << shapeStr(type.getShape())
                           << " does not match the cache's "
                           << shapeStr(expected);
    if (failed(verifySameElementType(*this, cache.getComputeType(),
                                     type.getElementType(), what)))
      return failure();
  }
  return success();
}

//===----------------------------------------------------------------------===//
// ReshapeOp
//===----------------------------------------------------------------------===//

LogicalResult ReshapeOp::verify() {
  RankedTensorType input = getInput().getType();
  RankedTensorType result = getType();
  if (failed(verifySameElementType(*this, input.getElementType(),
                                   result.getElementType(), "result")))
    return failure();
  if (Value shape = getShape()) {
    int64_t entries = cast<ShapedType>(shape.getType()).getDimSize(0);
    if (!dimsCompatible(entries, result.getRank()))
      return emitOpError() << "shape operand has " << entries
                           << " entries but the result has rank "
                           << result.getRank();
  } else if (result.getNumDynamicDims() > 1 &&
             result.getNumDynamicDims() != input.getNumDynamicDims()) {
    return emitOpError() << "result " << result << " has "
                         << result.getNumDynamicDims()
                         << " dynamic dimensions but the input has "
                         << input.getNumDynamicDims()
                         << "; a shape operand must give them";
  }
  if (input.hasStaticShape() && result.hasStaticShape() &&
      input.getNumElements() != result.getNumElements())
    return emitOpError() << "cannot reshape " << input.getNumElements()
                         << " elements into " << result.getNumElements();
  return success();
}

OpFoldResult ReshapeOp::fold(FoldAdaptor) {
  if (getInput().getType() == getType() && getType().hasStaticShape())
    return getInput();
  return {};
}

namespace {
/// reshape(reshape(x)) -> reshape(x): only the final shape matters.
struct FoldReshapeChain : public OpRewritePattern<ReshapeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ReshapeOp op,
                                PatternRewriter &rewriter) const override {
    auto producer = op.getInput().getDefiningOp<ReshapeOp>();
    if (!producer)
      return rewriter.notifyMatchFailure(op, "input is not a reshape");
    rewriter.modifyOpInPlace(
        op, [&] { op.getInputMutable().assign(producer.getInput()); });
    return success();
  }
};
} // namespace

namespace {
/// matmul(a, dequantize(q)) -> matmul(a, q), and through a 2-D transpose
/// (the weight of a Gemm with transB, or of an exported nn.Linear) by
/// flipping transpose_b: a quantized operand means the product with its
/// dequantized values, so the kernel reads the stored values and decodes
/// them in registers instead of a dequantized copy being made (QDQ models
/// stay quantized).
struct MatmulOfDequantize : public OpRewritePattern<MatmulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MatmulOp op,
                                PatternRewriter &rewriter) const override {
    Value b = op.getB();
    bool flip = false;
    if (auto t = b.getDefiningOp<TransposeOp>()) {
      ArrayRef<int64_t> perm = t.getPermutation();
      if (perm.size() != 2 || perm[0] != 1 || perm[1] != 0)
        return rewriter.notifyMatchFailure(op, "b is a transpose of more than 2-D");
      b = t.getInput();
      flip = true;
    }
    auto dq = b.getDefiningOp<DequantizeOp>();
    if (!dq)
      return rewriter.notifyMatchFailure(op, "b is not dequantized");
    if (flip && cast<QTensorType>(dq.getInput().getType()).getShape().size() != 2)
      return rewriter.notifyMatchFailure(op, "transposed b is not 2-D");
    rewriter.modifyOpInPlace(op, [&] {
      op.getBMutable().assign(dq.getInput());
      if (flip)
        op.setTransposeB(!op.getTransposeB());
    });
    return success();
  }
};
} // namespace

void MatmulOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                           MLIRContext *context) {
  results.add<MatmulOfDequantize>(context);
}

void ReshapeOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                            MLIRContext *context) {
  results.add<FoldReshapeChain>(context);
}

//===----------------------------------------------------------------------===//
// TransposeOp
//===----------------------------------------------------------------------===//

LogicalResult TransposeOp::verify() {
  RankedTensorType input = getInput().getType();
  ArrayRef<int64_t> perm = getPermutation();
  SmallVector<bool> seen(input.getRank(), false);
  bool valid = static_cast<int64_t>(perm.size()) == input.getRank();
  for (int64_t p : perm) {
    if (!valid || p < 0 || p >= input.getRank() || seen[p]) {
      valid = false;
      break;
    }
    seen[p] = true;
  }
  if (!valid)
    return emitOpError() << "permutation " << shapeStr(perm)
                         << " is not a permutation of 0.." << input.getRank() - 1;
  SmallVector<int64_t> expected;
  for (int64_t p : perm)
    expected.push_back(input.getDimSize(p));
  if (!shapesCompatible(expected, getType().getShape()))
    return emitOpError() << "result shape " << shapeStr(getType().getShape())
                         << " does not match the permuted input shape "
                         << shapeStr(expected);
  return verifySameElementType(*this, input.getElementType(),
                               getType().getElementType(), "result");
}

OpFoldResult TransposeOp::fold(FoldAdaptor) {
  ArrayRef<int64_t> perm = getPermutation();
  for (auto [i, p] : llvm::enumerate(perm))
    if (static_cast<int64_t>(i) != p)
      return {};
  if (getInput().getType() != getType())
    return {};
  return getInput();
}

namespace {
/// transpose(transpose(x, p1), p2) -> transpose(x, p1 o p2).
struct ComposeTransposes : public OpRewritePattern<TransposeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(TransposeOp op,
                                PatternRewriter &rewriter) const override {
    auto producer = op.getInput().getDefiningOp<TransposeOp>();
    if (!producer)
      return rewriter.notifyMatchFailure(op, "input is not a transpose");
    ArrayRef<int64_t> inner = producer.getPermutation();
    SmallVector<int64_t> composed;
    for (int64_t p : op.getPermutation())
      composed.push_back(inner[p]);
    rewriter.replaceOpWithNewOp<TransposeOp>(op, op.getType(),
                                             producer.getInput(), composed);
    return success();
  }
};
} // namespace

void TransposeOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                              MLIRContext *context) {
  results.add<ComposeTransposes>(context);
}

//===----------------------------------------------------------------------===//
// ConcatOp
//===----------------------------------------------------------------------===//

LogicalResult ConcatOp::verify() {
  if (getInputs().empty())
    return emitOpError("needs at least one input");
  RankedTensorType result = getType();
  FailureOr<int64_t> axis = normalizeAxis(*this, getAxis(), result.getRank());
  if (failed(axis))
    return failure();
  int64_t total = 0;
  for (auto [i, value] : llvm::enumerate(getInputs())) {
    auto type = cast<RankedTensorType>(value.getType());
    if (type.getRank() != result.getRank())
      return emitOpError() << "input #" << i << " has rank " << type.getRank()
                           << " but the result has rank " << result.getRank();
    if (failed(verifySameElementType(*this, result.getElementType(),
                                     type.getElementType(), "input")))
      return failure();
    for (int64_t d = 0; d < type.getRank(); ++d) {
      if (d == *axis)
        continue;
      if (!dimsCompatible(type.getDimSize(d), result.getDimSize(d)))
        return emitOpError() << "input #" << i << " shape "
                             << shapeStr(type.getShape())
                             << " does not match the result shape "
                             << shapeStr(result.getShape())
                             << " outside axis " << *axis;
    }
    int64_t dim = type.getDimSize(*axis);
    total = (ShapedType::isDynamic(dim) || ShapedType::isDynamic(total))
                ? ShapedType::kDynamic
                : total + dim;
  }
  if (!dimsCompatible(total, result.getDimSize(*axis)))
    return emitOpError() << "result dimension " << result.getDimSize(*axis)
                         << " along axis " << *axis
                         << " does not match the inputs' total " << total;
  return success();
}

OpFoldResult ConcatOp::fold(FoldAdaptor) {
  if (getInputs().size() == 1 && getInputs()[0].getType() == getType())
    return getInputs()[0];
  return {};
}

//===----------------------------------------------------------------------===//
// SliceOp
//===----------------------------------------------------------------------===//

/// ONNX Slice: the number of elements a static dimension keeps.
static int64_t slicedSize(int64_t dim, int64_t start, int64_t end,
                          int64_t step) {
  auto clampIndex = [&](int64_t v, int64_t lo, int64_t hi) {
    if (v < 0)
      v = (v < -dim) ? -1 : v + dim; // -1 marks "before the start"
    return std::clamp(v, lo, hi);
  };
  if (step > 0) {
    int64_t s = clampIndex(start, 0, dim), e = clampIndex(end, 0, dim);
    return e > s ? (e - s + step - 1) / step : 0;
  }
  int64_t s = clampIndex(start, -1, dim - 1), e = clampIndex(end, -1, dim - 1);
  return s > e ? (s - e + (-step) - 1) / (-step) : 0;
}

LogicalResult SliceOp::verify() {
  RankedTensorType input = getInput().getType();
  size_t n = getAxes().size();
  if (getStarts().size() != n || getEnds().size() != n ||
      getSteps().size() != n)
    return emitOpError() << "axes, starts, ends and steps must have equal "
                         << "lengths, found " << n << ", "
                         << getStarts().size() << ", " << getEnds().size()
                         << ", " << getSteps().size();
  SmallVector<int64_t> expected(input.getShape());
  llvm::SmallSet<int64_t, 4> seen;
  for (size_t i = 0; i < n; ++i) {
    FailureOr<int64_t> axis = normalizeAxis(*this, getAxes()[i],
                                            input.getRank());
    if (failed(axis))
      return failure();
    if (!seen.insert(*axis).second)
      return emitOpError() << "axis " << getAxes()[i] << " is listed twice";
    if (getSteps()[i] == 0)
      return emitOpError() << "step for axis " << getAxes()[i]
                           << " must be non-zero";
    int64_t dim = input.getDimSize(*axis);
    expected[*axis] = ShapedType::isDynamic(dim)
                          ? ShapedType::kDynamic
                          : slicedSize(dim, getStarts()[i], getEnds()[i],
                                       getSteps()[i]);
  }
  if (!shapesCompatible(expected, getType().getShape()))
    return emitOpError() << "result shape " << shapeStr(getType().getShape())
                         << " does not match the sliced shape "
                         << shapeStr(expected);
  return verifySameElementType(*this, input.getElementType(),
                               getType().getElementType(), "result");
}

OpFoldResult SliceOp::fold(FoldAdaptor) {
  // A slice that keeps every element in order is the identity.
  RankedTensorType input = getInput().getType();
  if (input != getType() || !input.hasStaticShape())
    return {};
  for (size_t i = 0; i < getAxes().size(); ++i) {
    int64_t axis = getAxes()[i] < 0 ? getAxes()[i] + input.getRank()
                                    : getAxes()[i];
    int64_t dim = input.getDimSize(axis);
    int64_t start = getStarts()[i] < 0 ? getStarts()[i] + dim : getStarts()[i];
    if (getSteps()[i] != 1 || start > 0)
      return {};
  }
  return getInput();
}

//===----------------------------------------------------------------------===//
// BroadcastOp / ShapeOfOp / RangeOp / FillOp
//===----------------------------------------------------------------------===//

static LogicalResult verifyShapeOperand(Operation *op, Value shape,
                                        RankedTensorType result) {
  if (!shape) {
    if (!result.hasStaticShape())
      return op->emitOpError() << "dynamic result " << result
                               << " needs a shape operand";
    return success();
  }
  int64_t entries = cast<ShapedType>(shape.getType()).getDimSize(0);
  if (!dimsCompatible(entries, result.getRank()))
    return op->emitOpError() << "shape operand has " << entries
                             << " entries but the result has rank "
                             << result.getRank();
  return success();
}

LogicalResult BroadcastOp::verify() {
  RankedTensorType input = getInput().getType();
  RankedTensorType result = getType();
  if (failed(verifySameElementType(*this, input.getElementType(),
                                   result.getElementType(), "result")))
    return failure();
  if (input.getRank() > result.getRank())
    return emitOpError() << "cannot broadcast rank " << input.getRank()
                         << " to the lower rank " << result.getRank();
  SmallVector<int64_t> merged;
  if (!OpTrait::util::getBroadcastedShape(input.getShape(), result.getShape(),
                                          merged) ||
      !shapesCompatible(merged, result.getShape()))
    return emitOpError() << "input shape " << shapeStr(input.getShape())
                         << " does not broadcast to "
                         << shapeStr(result.getShape());
  if (getShape())
    return verifyShapeOperand(*this, getShape(), result);
  // Without a shape operand a dynamic result dim is the input's aligned one.
  int64_t offset = result.getRank() - input.getRank();
  for (int64_t d = 0; d < result.getRank(); ++d) {
    if (!result.isDynamicDim(d) || (d >= offset && input.isDynamicDim(d - offset)))
      continue;
    return emitOpError() << "result dimension " << d
                         << " is dynamic but the input's aligned dimension is "
                            "not; a shape operand must give it";
  }
  return success();
}

OpFoldResult BroadcastOp::fold(FoldAdaptor) {
  if (getInput().getType() == getType() && getType().hasStaticShape())
    return getInput();
  return {};
}

LogicalResult BitcastOp::verify() {
  RankedTensorType input = getInput().getType(), result = getType();
  if (!input.hasStaticShape() || !result.hasStaticShape())
    return emitOpError() << "needs static shapes, found " << input << " and "
                         << result;
  FailureOr<uint64_t> from = getStorageSizeInBytes(input);
  FailureOr<uint64_t> to = getStorageSizeInBytes(result);
  if (failed(from) || failed(to) || *from != *to)
    return emitOpError() << input << " and " << result
                         << " occupy different numbers of bytes ("
                         << (succeeded(from) ? *from : 0) << " vs "
                         << (succeeded(to) ? *to : 0) << ")";
  return success();
}

OpFoldResult BitcastOp::fold(FoldAdaptor) {
  if (getInput().getType() == getType())
    return getInput();
  if (auto producer = getInput().getDefiningOp<BitcastOp>();
      producer && producer.getInput().getType() == getType())
    return producer.getInput();
  return {};
}

LogicalResult ShapeOfOp::verify() {
  int64_t entries = getType().getDimSize(0);
  int64_t rank = isa<KvCacheType>(getInput().getType())
                     ? 4
                     : cast<RankedTensorType>(getInput().getType()).getRank();
  if (!dimsCompatible(entries, rank))
    return emitOpError() << "result has " << entries
                         << " entries but the input has rank " << rank;
  return success();
}

OpFoldResult ShapeOfOp::fold(FoldAdaptor) {
  auto input = dyn_cast<RankedTensorType>(getInput().getType());
  if (!input || !input.hasStaticShape() || !getType().hasStaticShape())
    return {};
  return DenseElementsAttr::get(getType(), input.getShape());
}

LogicalResult RangeOp::verify() {
  Type element = getType().getElementType();
  for (auto [what, value] :
       {std::pair<StringRef, Value>{"start", getStart()},
        {"limit", getLimit()},
        {"delta", getDelta()}}) {
    auto type = cast<RankedTensorType>(value.getType());
    if (type.getRank() != 0)
      return emitOpError() << what << " must be a scalar (rank 0), found rank "
                           << type.getRank();
    if (failed(verifySameElementType(*this, element, type.getElementType(),
                                     what)))
      return failure();
  }
  if (getType().getRank() != 1)
    return emitOpError() << "result must have rank 1, found rank "
                         << getType().getRank();
  return success();
}

LogicalResult FillOp::verify() {
  if (getValue().getType() != getType().getElementType())
    return emitOpError() << "fill value type " << getValue().getType()
                         << " does not match element type "
                         << getType().getElementType();
  return verifyShapeOperand(*this, getShape(), getType());
}

#define GET_OP_CLASSES
#include "kiln/Dialect/Kiln/IR/KilnOps.cpp.inc"

//===----------------------------------------------------------------------===//
// ElementwiseOp
//===----------------------------------------------------------------------===//

namespace mlir::kiln {

/// The scalar ops a kiln.elementwise body may hold (what every backend's
/// elementwise program implements).
bool isElementwiseBodyOp(Operation *op) {
  if (auto c = dyn_cast<arith::ConstantOp>(op))
    return isa<FloatAttr>(c.getValue());
  return isa<arith::AddFOp, arith::SubFOp, arith::MulFOp, arith::DivFOp,
             arith::MaximumFOp, arith::MinimumFOp, arith::NegFOp,
             arith::ExtFOp, arith::TruncFOp, math::PowFOp, math::ExpOp,
             math::LogOp, math::SqrtOp, math::RsqrtOp, math::TanhOp,
             math::SinOp, math::CosOp, math::ErfOp, math::AbsFOp, YieldOp>(op);
}

} // namespace mlir::kiln

LogicalResult ElementwiseOp::verifyRegions() {
  Block &body = getBody().front();
  if (body.getNumArguments() != getInputs().size())
    return emitOpError() << "body takes " << body.getNumArguments()
                         << " arguments for " << getInputs().size()
                         << " inputs";
  for (auto [i, arg, input] : llvm::enumerate(body.getArguments(), getInputs())) {
    Type et = cast<RankedTensorType>(input.getType()).getElementType();
    if (arg.getType() != et)
      return emitOpError() << "body argument " << i << " is " << arg.getType()
                           << " but input " << i << " has elements of " << et;
  }
  auto yield = dyn_cast<YieldOp>(body.getTerminator());
  if (!yield)
    return emitOpError("body must end in kiln.yield");
  Type resultElement = getType().getElementType();
  if (yield.getValue().getType() != resultElement)
    return emitOpError() << "body yields " << yield.getValue().getType()
                         << " for a result of " << resultElement;
  for (Operation &op : body) {
    if (!isElementwiseBodyOp(&op))
      return op.emitOpError()
             << "is not a scalar float op a kiln.elementwise body may hold";
    for (Type t : op.getResultTypes())
      if (!isa<FloatType>(t))
        return op.emitOpError() << "yields " << t
                                << " inside kiln.elementwise; only scalar "
                                   "floats are allowed";
  }
  int64_t rank = getType().getRank();
  for (Value input : getInputs())
    if (cast<RankedTensorType>(input.getType()).getRank() > rank)
      return emitOpError() << "input " << input.getType()
                           << " has a higher rank than the result "
                           << getType();
  return success();
}
