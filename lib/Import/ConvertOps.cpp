//===- ConvertOps.cpp - ONNX node converters ------------------------------===//
//
// One converter per ONNX op. Each computes its result types (static where the
// inputs allow), builds kiln ops, and folds small integer computations
// (shapes, axes, indices) at import through the tracked elements.
//
//===----------------------------------------------------------------------===//

#include "ConvertUtils.h"

#include "mlir/Dialect/Traits.h"
#include "llvm/Support/FormatVariadic.h"

#include <numeric>

using namespace mlir;
using namespace mlir::kiln;
using namespace mlir::kiln::onnx_import;

using llvm::Error;
using llvm::Expected;

namespace {

bool allConst(const ShapeElems &e) {
  return llvm::all_of(e, [](const ShapeElem &x) { return x.isConst(); });
}

/// Emits a constant for fully known elements of a value of type `type`.
Value constFromElems(NodeContext &nc, RankedTensorType type,
                     const ShapeElems &e) {
  SmallVector<APInt> vals;
  unsigned width = type.getElementType().getIntOrFloatBitWidth();
  for (const ShapeElem &x : e)
    vals.push_back(APInt(width, x.value, /*isSigned=*/true));
  Value c = arith::ConstantOp::create(nc.b, nc.loc, type,
                                      DenseElementsAttr::get(type, vals));
  nc.importer.setElems(c, e);
  return c;
}

/// Defines output 0 as `value`, tracking `e` when given; folds to a constant
/// when every element is known.
void defineInt(NodeContext &nc, Value value, std::optional<ShapeElems> e) {
  if (e && allConst(*e) && isa<IntegerType>(elementTypeOf(value)) &&
      cast<RankedTensorType>(value.getType()).hasStaticShape()) {
    // The original op stays until the end of import (maps are keyed by
    // values, so nothing is erased mid-import); dead ops are swept then.
    Value c = constFromElems(nc, cast<RankedTensorType>(value.getType()), *e);
    nc.setOutput(0, c);
    return;
  }
  if (e)
    nc.importer.setElems(value, *e);
  nc.setOutput(0, value);
}

/// Maps the dynamic dims of `result` to those of `input` in order (ops that
/// only insert, remove or regroup static dims around them).
void unifyInOrder(NodeContext &nc, Value result, Value input) {
  auto rt = cast<RankedTensorType>(result.getType());
  auto it = cast<RankedTensorType>(input.getType());
  if (rt.getNumDynamicDims() != it.getNumDynamicDims())
    return;
  SmallVector<int64_t> in;
  for (int64_t d = 0; d < it.getRank(); ++d)
    if (it.isDynamicDim(d))
      in.push_back(d);
  unsigned k = 0;
  for (int64_t d = 0; d < rt.getRank(); ++d)
    if (rt.isDynamicDim(d))
      nc.importer.unifyDims(result, d, input, in[k++]);
}

/// Tracked elements of a small tensor with rank <= 1.
std::optional<ShapeElems> trackable(NodeContext &nc, Value v) {
  auto type = cast<RankedTensorType>(v.getType());
  if (type.getRank() > 1 || !isa<IntegerType>(type.getElementType()))
    return std::nullopt;
  return nc.importer.elems(v);
}

//===----------------------------------------------------------------------===//
// Constants and identity
//===----------------------------------------------------------------------===//

Error convertConstant(NodeContext &nc) {
  const onnx::AttributeProto *a = nc.node.attribute_size() == 1
                                      ? &nc.node.attribute(0)
                                      : nullptr;
  if (!a)
    return nc.error("expects exactly one value attribute");
  Builder &b = nc.b;
  Value v;
  auto scalarF = [&](float f) {
    auto type = tensorOf({}, b.getF32Type());
    return arith::ConstantOp::create(nc.b, nc.loc, type,
                                     DenseElementsAttr::get(type, f));
  };
  if (a->name() == "value") {
    if (a->type() != onnx::AttributeProto::TENSOR)
      return nc.error("attribute 'value' must be a tensor");
    const onnx::TensorProto &t = a->t();
    TRY(et, nc.importer.elementType(t.data_type(), "Constant value"));
    SmallVector<int64_t> dims(t.dims().begin(), t.dims().end());
    int64_t count = 1;
    for (int64_t d : dims) {
      if (d < 0 || d > 65536)
        return nc.error("the value tensor has an invalid dimension " +
                        llvm::Twine(d));
      count *= d;
      if (count > 65536)
        break;
    }
    auto type = tensorOf(dims, et);
    if (count > 65536)
      return nc.error(llvm::formatv(
          "a Constant node holds {0} elements; kiln keeps weights out of the "
          "IR, so store it as an initializer",
          type.getNumElements()));
    TRY(attr, nc.importer.decodeTensor(t, type, "Constant value"));
    v = arith::ConstantOp::create(nc.b, nc.loc, type, attr);
  } else if (a->name() == "value_float") {
    v = scalarF(a->f());
  } else if (a->name() == "value_floats") {
    auto type = tensorOf({a->floats_size()}, b.getF32Type());
    SmallVector<float> fs(a->floats().begin(), a->floats().end());
    v = arith::ConstantOp::create(nc.b, nc.loc, type,
                                  DenseElementsAttr::get(type, ArrayRef(fs)));
  } else if (a->name() == "value_int") {
    v = nc.importer.constI64(nc.b, nc.loc, {a->i()}, /*scalar=*/true);
  } else if (a->name() == "value_ints") {
    SmallVector<int64_t> is(a->ints().begin(), a->ints().end());
    v = nc.importer.constI64(nc.b, nc.loc, is);
  } else {
    return nc.error("unsupported value attribute '" + a->name() + "'");
  }
  nc.setOutput(0, v);
  return Error::success();
}

Error convertIdentity(NodeContext &nc) {
  TRY(x, nc.required(0));
  nc.setOutput(0, x);
  return Error::success();
}

Error convertDropout(NodeContext &nc) {
  if (nc.hasInput(2)) {
    TRY(training, nc.constInts(2, "training_mode"));
    if (!training.empty() && training[0])
      return nc.error("training_mode must be false for inference");
  }
  if (nc.hasOutput(1))
    return nc.error("the mask output is not supported");
  return convertIdentity(nc);
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

/// Integer arithmetic on tracked elements, NumPy broadcasting of size 1.
std::optional<ShapeElems> foldIntBinary(StringRef op, const ShapeElems &l,
                                        const ShapeElems &r) {
  size_t n = std::max(l.size(), r.size());
  if ((l.size() != n && l.size() != 1) || (r.size() != n && r.size() != 1))
    return std::nullopt;
  ShapeElems out;
  for (size_t i = 0; i < n; ++i) {
    const ShapeElem &a = l[l.size() == 1 ? 0 : i];
    const ShapeElem &b = r[r.size() == 1 ? 0 : i];
    if (a.isConst() && b.isConst()) {
      int64_t x = a.value, y = b.value, v;
      if (op == "Add")
        v = x + y;
      else if (op == "Sub")
        v = x - y;
      else if (op == "Mul")
        v = x * y;
      else if (op == "Div") {
        if (y == 0)
          return std::nullopt;
        v = x / y;
      } else if (op == "Max")
        v = std::max(x, y);
      else if (op == "Min")
        v = std::min(x, y);
      else
        return std::nullopt;
      out.push_back(ShapeElem::constant(v));
    } else if ((op == "Add" || op == "Sub") && b.isConst() && b.value == 0) {
      out.push_back(a);
    } else if (op == "Add" && a.isConst() && a.value == 0) {
      out.push_back(b);
    } else if ((op == "Mul" || op == "Div") && b.isConst() && b.value == 1) {
      out.push_back(a);
    } else if (op == "Mul" && a.isConst() && a.value == 1) {
      out.push_back(b);
    } else {
      out.push_back(ShapeElem());
    }
  }
  return out;
}

template <typename OpTy>
Error convertBinary(NodeContext &nc) {
  TRY(lhs, nc.required(0));
  TRY(rhs, nc.required(1));
  Type et = elementTypeOf(lhs);
  if (elementTypeOf(rhs) != et) {
    // Pow's exponent may have its own type; everything else must match.
    if (nc.node.op_type() != "Pow")
      return nc.error("input element types " + mlirTypeStr(et) + " and " +
                      mlirTypeStr(elementTypeOf(rhs)) + " differ");
    auto rt = cast<RankedTensorType>(rhs.getType());
    rhs = CastOp::create(nc.b, nc.loc, rt.clone(et), rhs);
  }
  TRY(shape, broadcast(nc, {lhs, rhs}));
  Value result = OpTy::create(nc.b, nc.loc, tensorOf(shape, et), lhs, rhs);
  nc.importer.unifyElementwise(result, {lhs, rhs});
  std::optional<ShapeElems> e;
  auto le = trackable(nc, lhs), re = trackable(nc, rhs);
  if (le && re && shape.size() <= 1)
    e = foldIntBinary(nc.node.op_type(), *le, *re);
  defineInt(nc, result, e);
  return Error::success();
}

/// Max and Min take one or more inputs.
template <typename OpTy>
Error convertVariadic(NodeContext &nc) {
  TRY(acc, nc.required(0));
  Value result = acc;
  for (unsigned i = 1; i < nc.numInputs(); ++i) {
    TRY(next, nc.required(i));
    if (elementTypeOf(next) != elementTypeOf(result))
      return nc.error("input element types differ");
    TRY(shape, broadcast(nc, {result, next}));
    Value prev = result;
    result = OpTy::create(nc.b, nc.loc, tensorOf(shape, elementTypeOf(result)),
                          result, next);
    nc.importer.unifyElementwise(result, {prev, next});
  }
  nc.setOutput(0, result);
  return Error::success();
}

Error convertCompare(NodeContext &nc, ComparePredicate pred) {
  TRY(lhs, nc.required(0));
  TRY(rhs, nc.required(1));
  if (elementTypeOf(lhs) != elementTypeOf(rhs))
    return nc.error("input element types differ");
  TRY(shape, broadcast(nc, {lhs, rhs}));
  Value result = CompareOp::create(nc.b, nc.loc,
                                   tensorOf(shape, nc.b.getI1Type()), pred,
                                   lhs, rhs);
  nc.importer.unifyElementwise(result, {lhs, rhs});
  // Shape vectors compared with constants (torch's expand(-1) becomes
  // Where(Equal(shape, -1), 1, shape)) fold: a dimension is never negative.
  std::optional<ShapeElems> e;
  auto le = trackable(nc, lhs), re = trackable(nc, rhs);
  if (le && re && shape.size() <= 1) {
    size_t n = std::max(le->size(), re->size());
    if ((le->size() == n || le->size() == 1) &&
        (re->size() == n || re->size() == 1)) {
      e = ShapeElems();
      for (size_t i = 0; i < n; ++i) {
        const ShapeElem &a = (*le)[le->size() == 1 ? 0 : i];
        const ShapeElem &b = (*re)[re->size() == 1 ? 0 : i];
        std::optional<bool> v;
        if (a.isConst() && b.isConst()) {
          int64_t x = a.value, y = b.value;
          switch (pred) {
          case ComparePredicate::eq: v = x == y; break;
          case ComparePredicate::ne: v = x != y; break;
          case ComparePredicate::lt: v = x < y; break;
          case ComparePredicate::le: v = x <= y; break;
          case ComparePredicate::gt: v = x > y; break;
          case ComparePredicate::ge: v = x >= y; break;
          }
        } else if ((pred == ComparePredicate::eq ||
                    pred == ComparePredicate::ne) &&
                   ((a.kind == ShapeElem::Dim && b.isConst() && b.value < 0) ||
                    (b.kind == ShapeElem::Dim && a.isConst() && a.value < 0))) {
          v = pred == ComparePredicate::ne;
        }
        e->push_back(v ? ShapeElem::constant(*v) : ShapeElem());
      }
    }
  }
  defineInt(nc, result, e);
  return Error::success();
}

template <typename OpTy>
Error convertUnary(NodeContext &nc) {
  TRY(x, nc.required(0));
  Value result = OpTy::create(nc.b, nc.loc, x.getType(), x);
  nc.importer.unifyElementwise(result, {x});
  nc.setOutput(0, result);
  return Error::success();
}

Error convertActivation(NodeContext &nc, ActivationKind kind) {
  TRY(x, nc.required(0));
  if (!isa<FloatType>(elementTypeOf(x)))
    return nc.error("input must be a float tensor");
  Value result = ActivationOp::create(nc.b, nc.loc, x.getType(), kind, x);
  nc.importer.unifyElementwise(result, {x});
  nc.setOutput(0, result);
  return Error::success();
}

Error convertGelu(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"approximate"}))
    return err;
  TRY(approx, nc.stringAttr("approximate", std::string("none")));
  if (approx != "none" && approx != "tanh")
    return nc.error("approximate must be 'none' or 'tanh', found '" + approx +
                    "'");
  return convertActivation(nc, approx == "tanh" ? ActivationKind::gelu_tanh
                                                : ActivationKind::gelu);
}

Error convertCast(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"to", "saturate", "round_mode"}))
    return err;
  TRY(x, nc.required(0));
  TRY(to, nc.intAttr("to"));
  TRY(et, nc.importer.elementType(static_cast<int32_t>(to), "Cast target"));
  auto type = cast<RankedTensorType>(x.getType());
  if (type.getElementType() == et) {
    defineInt(nc, x, trackable(nc, x));
    return Error::success();
  }
  // Casts of constants fold now: shape arithmetic often round-trips through
  // float (Div by a float Sqrt of a head dim, say).
  DenseElementsAttr attr;
  if (matchPattern(x, m_Constant(&attr))) {
    auto newType = type.clone(et);
    Type from = type.getElementType();
    DenseElementsAttr folded;
    if (isa<IntegerType>(from) && isa<IntegerType>(et)) {
      folded = attr.mapValues(et, [&](const APInt &v) {
        return from.isUnsignedInteger() || from.isInteger(1)
                   ? v.zextOrTrunc(et.getIntOrFloatBitWidth())
                   : v.sextOrTrunc(et.getIntOrFloatBitWidth());
      });
    } else if (isa<FloatType>(from) && isa<FloatType>(et)) {
      folded = attr.mapValues(et, [&](const APFloat &v) {
        APFloat c = v;
        bool lost;
        c.convert(cast<FloatType>(et).getFloatSemantics(),
                  APFloat::rmNearestTiesToEven, &lost);
        return c.bitcastToAPInt();
      });
    } else if (isa<IntegerType>(from) && isa<FloatType>(et)) {
      folded = attr.mapValues(et, [&](const APInt &v) {
        APFloat f(cast<FloatType>(et).getFloatSemantics());
        f.convertFromAPInt(v, !from.isUnsignedInteger() && !from.isInteger(1),
                           APFloat::rmNearestTiesToEven);
        return f.bitcastToAPInt();
      });
    } else if (isa<FloatType>(from) && isa<IntegerType>(et)) {
      folded = attr.mapValues(et, [&](const APFloat &v) {
        APSInt i(et.getIntOrFloatBitWidth(), et.isUnsignedInteger());
        bool exact;
        v.convertToInteger(i, APFloat::rmTowardZero, &exact);
        return static_cast<APInt>(i);
      });
    }
    if (folded) {
      Value c = arith::ConstantOp::create(nc.b, nc.loc, newType, folded);
      nc.setOutput(0, c);
      return Error::success();
    }
  }
  // kiln.cast to float8 saturates, ONNX's default; saturate=0 (overflow to
  // NaN or infinity) has no kiln form.
  TRY(saturate, nc.intAttr("saturate", 1));
  if (!saturate && isa<Float8E4M3FNType, Float8E5M2Type>(et))
    return nc.error("saturate=0 is not supported (kiln's cast to float8 "
                    "saturates)");
  Value result = CastOp::create(nc.b, nc.loc, type.clone(et), x);
  nc.importer.unifyElementwise(result, {x});
  std::optional<ShapeElems> e;
  if (isa<IntegerType>(et) && isa<IntegerType>(type.getElementType()))
    e = trackable(nc, x);
  defineInt(nc, result, e);
  return Error::success();
}

/// IsNaN(x) is x != x (only NaN compares unequal to itself).
Error convertIsNaN(NodeContext &nc) {
  TRY(x, nc.required(0));
  auto type = cast<RankedTensorType>(x.getType());
  if (!isa<FloatType>(type.getElementType()))
    return nc.error("input must be a float tensor");
  Value r = CompareOp::create(nc.b, nc.loc, type.clone(nc.b.getI1Type()),
                              ComparePredicate::ne, x, x);
  nc.importer.unifyElementwise(r, {x});
  nc.setOutput(0, r);
  return Error::success();
}

Error convertTrilu(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"upper"}))
    return err;
  TRY(x, nc.required(0));
  TRY(upper, nc.intAttr("upper", 1));
  int64_t k = 0;
  if (nc.hasInput(1)) {
    TRY(ks, nc.constInts(1, "k"));
    if (ks.size() != 1)
      return nc.error("k must be a scalar");
    k = ks[0];
  }
  if (cast<RankedTensorType>(x.getType()).getRank() < 2)
    return nc.error("input must have rank >= 2");
  auto op = TriluOp::create(nc.b, nc.loc, x.getType(), x,
                            nc.b.getI64IntegerAttr(k),
                            upper ? nc.b.getUnitAttr() : UnitAttr());
  nc.importer.unifyElementwise(op, {x});
  nc.setOutput(0, op);
  return Error::success();
}

Error convertCumSum(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"exclusive", "reverse"}))
    return err;
  TRY(x, nc.required(0));
  TRY(axes, nc.constInts(1, "axis"));
  TRY(exclusive, nc.intAttr("exclusive", 0));
  TRY(reverse, nc.intAttr("reverse", 0));
  if (axes.size() != 1)
    return nc.error("axis must be a scalar");
  if (Error err = checkAxis(nc, axes[0],
                            cast<RankedTensorType>(x.getType()).getRank()))
    return err;
  auto op = CumsumOp::create(nc.b, nc.loc, x.getType(), x,
                             nc.b.getI64IntegerAttr(axes[0]),
                             exclusive ? nc.b.getUnitAttr() : UnitAttr(),
                             reverse ? nc.b.getUnitAttr() : UnitAttr());
  nc.importer.unifyElementwise(op, {x});
  nc.setOutput(0, op);
  return Error::success();
}

Error convertWhere(NodeContext &nc) {
  TRY(cond, nc.required(0));
  TRY(a, nc.required(1));
  TRY(b, nc.required(2));
  if (!elementTypeOf(cond).isInteger(1))
    return nc.error("condition must be a bool tensor");
  if (elementTypeOf(a) != elementTypeOf(b))
    return nc.error("X and Y element types differ");
  TRY(shape, broadcast(nc, {cond, a, b}));
  Value result = SelectOp::create(nc.b, nc.loc,
                                 tensorOf(shape, elementTypeOf(a)), cond, a, b);
  nc.importer.unifyElementwise(result, {cond, a, b});
  std::optional<ShapeElems> e;
  auto ce = trackable(nc, cond), ae = trackable(nc, a), be = trackable(nc, b);
  if (ce && ae && be && shape.size() <= 1 && allConst(*ce)) {
    size_t n = std::max({ce->size(), ae->size(), be->size()});
    auto at = [&](const ShapeElems &v, size_t i) -> const ShapeElem & {
      return v[v.size() == 1 ? 0 : i];
    };
    if (llvm::all_of(std::initializer_list<size_t>{ce->size(), ae->size(),
                                                   be->size()},
                     [&](size_t k) { return k == n || k == 1; })) {
      e = ShapeElems();
      for (size_t i = 0; i < n; ++i)
        e->push_back(at(*ce, i).value ? at(*ae, i) : at(*be, i));
    }
  }
  defineInt(nc, result, e);
  return Error::success();
}

//===----------------------------------------------------------------------===//
// Matmul, softmax, reductions, norms
//===----------------------------------------------------------------------===//

Error convertMatMul(NodeContext &nc) {
  TRY(a, nc.required(0));
  TRY(b, nc.required(1));
  auto at = cast<RankedTensorType>(a.getType());
  auto bt = cast<RankedTensorType>(b.getType());
  if (at.getRank() == 0 || bt.getRank() == 0)
    return nc.error("MatMul operands must have rank >= 1");
  // NumPy matmul: a 1-D a is a row [1, K], a 1-D b a column [K, 1]; the
  // added dimension is dropped from the result.
  bool vecA = at.getRank() == 1, vecB = bt.getRank() == 1;
  if (vecA) {
    at = tensorOf({1, at.getDimSize(0)}, at.getElementType());
    a = ReshapeOp::create(nc.b, nc.loc, at, a, Value());
  }
  if (vecB) {
    bt = tensorOf({bt.getDimSize(0), 1}, bt.getElementType());
    b = ReshapeOp::create(nc.b, nc.loc, bt, b, Value());
  }
  if (at.getElementType() != bt.getElementType())
    return nc.error("operand element types differ");
  SmallVector<int64_t> batch;
  if (!OpTrait::util::getBroadcastedShape(at.getShape().drop_back(2),
                                          bt.getShape().drop_back(2), batch))
    return nc.error("batch dimensions are not broadcast-compatible");
  int64_t k = at.getShape().back(), bk = bt.getDimSize(bt.getRank() - 2);
  if (!ShapedType::isDynamic(k) && !ShapedType::isDynamic(bk) && k != bk)
    return nc.error(llvm::formatv("inner dimensions differ: {0} vs {1}", k, bk));
  batch.push_back(at.getDimSize(at.getRank() - 2));
  batch.push_back(bt.getShape().back());
  Value result = MatmulOp::create(nc.b, nc.loc,
                                  tensorOf(batch, at.getElementType()), a, b,
                                  Value());
  int64_t rank = batch.size();
  for (int64_t d = 0; d < at.getRank() - 1; ++d)
    nc.importer.unifyDims(result, d + rank - at.getRank(), a, d);
  for (int64_t d = 0; d < bt.getRank() - 2; ++d)
    nc.importer.unifyDims(result, d + rank - bt.getRank(), b, d);
  nc.importer.unifyDims(result, rank - 1, b, bt.getRank() - 1);
  if (vecA || vecB) {
    SmallVector<int64_t> dims(batch);
    if (vecB)
      dims.erase(dims.end() - 1);
    if (vecA)
      dims.erase(dims.end() - (vecB ? 1 : 2));
    Value squeezed = ReshapeOp::create(nc.b, nc.loc,
                                       tensorOf(dims, at.getElementType()),
                                       result, Value());
    unifyInOrder(nc, squeezed, result);
    result = squeezed;
  }
  nc.setOutput(0, result);
  return Error::success();
}

Error convertGemm(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"alpha", "beta", "transA", "transB"}))
    return err;
  TRY(a, nc.required(0));
  TRY(b, nc.required(1));
  TRY(alpha, nc.floatAttr("alpha", 1.0f));
  TRY(beta, nc.floatAttr("beta", 1.0f));
  TRY(transA, nc.intAttr("transA", 0));
  TRY(transB, nc.intAttr("transB", 0));
  auto at = cast<RankedTensorType>(a.getType());
  auto bt = cast<RankedTensorType>(b.getType());
  if (at.getRank() != 2 || bt.getRank() != 2)
    return nc.error("A and B must be 2-D");
  Type et = at.getElementType();
  if (transA) {
    at = tensorOf({at.getDimSize(1), at.getDimSize(0)}, et);
    a = TransposeOp::create(nc.b, nc.loc, at, a,
                            nc.b.getDenseI64ArrayAttr({1, 0}));
  }
  int64_t n = transB ? bt.getDimSize(0) : bt.getDimSize(1);
  auto resultType = tensorOf({at.getDimSize(0), n}, et);
  Value c = nc.input(2);
  Value bias;
  if (c && beta == 1.0f && cast<RankedTensorType>(c.getType()).getRank() == 1 &&
      cast<RankedTensorType>(c.getType()).getDimSize(0) == n)
    bias = c;
  auto mm = MatmulOp::create(nc.b, nc.loc, resultType, a, b, bias);
  if (transB)
    mm.setTransposeB(true);
  Value y = mm;
  auto scalar = [&](float v) -> Value {
    auto type = tensorOf({}, et);
    return arith::ConstantOp::create(
        nc.b, nc.loc, type,
        DenseElementsAttr::get(type, FloatAttr::get(et, v)));
  };
  if (alpha != 1.0f)
    y = MulOp::create(nc.b, nc.loc, resultType, y, scalar(alpha));
  if (c && !bias) {
    Value scaled = c;
    if (beta != 1.0f)
      scaled = MulOp::create(nc.b, nc.loc, c.getType(), c, scalar(beta));
    TRY(shape, broadcast(nc, {y, scaled}));
    y = AddOp::create(nc.b, nc.loc, tensorOf(shape, et), y, scaled);
  }
  nc.setOutput(0, y);
  return Error::success();
}

Error convertSoftmax(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"axis"}))
    return err;
  TRY(x, nc.required(0));
  int64_t rank = cast<RankedTensorType>(x.getType()).getRank();
  TRY(axis, nc.intAttr("axis", nc.opset >= 13 ? -1 : 1));
  if (Error err = checkAxis(nc, axis, rank))
    return err;
  // Before opset 13 Softmax flattened [axis, rank) into one dimension; that
  // equals a softmax along `axis` only when it is the last one.
  if (nc.opset < 13 && normAxis(axis, rank) != rank - 1)
    return nc.error("opset < 13 Softmax over several dimensions is not "
                    "supported");
  Value result = SoftmaxOp::create(nc.b, nc.loc, x.getType(), x,
                                  nc.b.getI64IntegerAttr(axis));
  nc.importer.unifyElementwise(result, {x});
  nc.setOutput(0, result);
  return Error::success();
}

Error convertReduce(NodeContext &nc, ReduceKind kind) {
  if (Error err = nc.checkAttributes({"axes", "keepdims",
                                      "noop_with_empty_axes"}))
    return err;
  TRY(x, nc.required(0));
  auto type = cast<RankedTensorType>(x.getType());
  TRY(axesOpt, nc.axesFrom("axes", 1));
  TRY(keep, nc.intAttr("keepdims", 1));
  TRY(noop, nc.intAttr("noop_with_empty_axes", 0));
  SmallVector<int64_t> axes;
  if (axesOpt && !axesOpt->empty()) {
    axes = *axesOpt;
  } else {
    if (noop) {
      nc.setOutput(0, x);
      return Error::success();
    }
    axes.resize(type.getRank());
    std::iota(axes.begin(), axes.end(), 0);
  }
  SmallVector<int64_t> shape;
  for (int64_t &axis : axes) {
    if (Error err = checkAxis(nc, axis, type.getRank()))
      return err;
    axis = normAxis(axis, type.getRank());
  }
  for (int64_t d = 0; d < type.getRank(); ++d) {
    if (!llvm::is_contained(axes, d))
      shape.push_back(type.getDimSize(d));
    else if (keep)
      shape.push_back(1);
  }
  Value op = ReduceOp::create(nc.b, nc.loc,
                              tensorOf(shape, type.getElementType()), kind, x,
                              axes, keep != 0);
  for (int64_t d = 0, r = 0; d < type.getRank(); ++d) {
    if (!llvm::is_contained(axes, d))
      nc.importer.unifyDims(op, r++, x, d);
    else if (keep)
      ++r;
  }
  nc.setOutput(0, op);
  return Error::success();
}

/// The inputs and attributes RMSNormalization and LayerNormalization share.
struct NormArgs {
  Value x, weight;
  int64_t axis;
  float epsilon;
};

Expected<NormArgs> readNormArgs(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"axis", "epsilon", "stash_type"}))
    return std::move(err);
  TRY(x, nc.required(0));
  TRY(w, nc.required(1));
  TRY(axis, nc.intAttr("axis", -1));
  TRY(eps, nc.floatAttr("epsilon", 1e-5f));
  if (Error err =
          checkAxis(nc, axis, cast<RankedTensorType>(x.getType()).getRank()))
    return std::move(err);
  return NormArgs{x, w, axis, eps};
}

/// RMSNormalization (23), SimplifiedLayerNormalization (onnxruntime).
Error convertRmsNorm(NodeContext &nc) {
  TRY(args, readNormArgs(nc));
  Value x = args.x, w = args.weight;
  int64_t axis = args.axis;
  float eps = args.epsilon;
  if (nc.hasOutput(1))
    return nc.error("the inv_std_var output is not supported");
  Value result = RmsNormOp::create(nc.b, nc.loc, x.getType(), x, w,
                                  nc.b.getF32FloatAttr(eps),
                                  nc.b.getI64IntegerAttr(axis));
  nc.importer.unifyElementwise(result, {x});
  nc.setOutput(0, result);
  return Error::success();
}

Error convertLayerNorm(NodeContext &nc) {
  TRY(args, readNormArgs(nc));
  Value x = args.x, w = args.weight;
  int64_t axis = args.axis;
  float eps = args.epsilon;
  Value result = LayerNormOp::create(nc.b, nc.loc, x.getType(), x, w,
                                    nc.input(2), nc.b.getF32FloatAttr(eps),
                                    nc.b.getI64IntegerAttr(axis));
  nc.importer.unifyElementwise(result, {x});
  nc.setOutput(0, result);
  if (nc.hasOutput(1) || nc.hasOutput(2)) {
    // Mean and 1/sqrt(var + eps) over [axis, rank), in the stash type.
    TRY(stash, nc.intAttr("stash_type", 1));
    TRY(st, nc.importer.elementType(stash, "stash_type"));
    auto xt = cast<RankedTensorType>(x.getType());
    int64_t a = normAxis(axis, xt.getRank());
    SmallVector<int64_t> axes, reduced(xt.getShape());
    for (int64_t d = a; d < xt.getRank(); ++d) {
      axes.push_back(d);
      reduced[d] = 1;
    }
    auto full = xt.clone(st), red = tensorOf(reduced, st);
    Value xs = xt.getElementType() == st
                   ? x
                   : Value(CastOp::create(nc.b, nc.loc, full, x));
    Value mean = ReduceOp::create(nc.b, nc.loc, red, ReduceKind::mean, xs,
                                  axes, true);
    Value centered = SubOp::create(nc.b, nc.loc, full, xs, mean);
    Value sq = MulOp::create(nc.b, nc.loc, full, centered, centered);
    Value var = ReduceOp::create(nc.b, nc.loc, red, ReduceKind::mean, sq, axes,
                                 true);
    auto scalarType = tensorOf({}, st);
    Value epsC = arith::ConstantOp::create(
        nc.b, nc.loc, scalarType,
        DenseElementsAttr::get(scalarType, FloatAttr::get(st, eps)));
    Value inv = RsqrtOp::create(nc.b, nc.loc, red,
                                AddOp::create(nc.b, nc.loc, red, var, epsC));
    nc.setOutput(1, mean);
    nc.setOutput(2, inv);
  }
  return Error::success();
}

/// com.microsoft Skip(Simplified)LayerNormalization: norm(input + skip
/// [+ bias]); output 3 is the sum (the next residual).
Error convertSkipNorm(NodeContext &nc, bool simplified) {
  if (Error err = nc.checkAttributes({"epsilon"}))
    return err;
  TRY(x, nc.required(0));
  TRY(skip, nc.required(1));
  TRY(gamma, nc.required(2));
  TRY(eps, nc.floatAttr("epsilon", 1e-5f));
  Value beta = simplified ? Value() : nc.input(3);
  Value bias = nc.input(simplified ? 3 : 4);
  if (nc.hasOutput(1) || nc.hasOutput(2))
    return nc.error("the mean and inv_std_var outputs are not supported");
  TRY(shape, broadcast(nc, {x, skip}));
  Type et = elementTypeOf(x);
  Value sum = AddOp::create(nc.b, nc.loc, tensorOf(shape, et), x, skip);
  nc.importer.unifyElementwise(sum, {x, skip});
  if (bias)
    sum = AddOp::create(nc.b, nc.loc, sum.getType(), sum, bias);
  Value y;
  if (simplified)
    y = RmsNormOp::create(nc.b, nc.loc, sum.getType(), sum, gamma,
                          nc.b.getF32FloatAttr(eps), nc.b.getI64IntegerAttr(-1));
  else
    y = LayerNormOp::create(nc.b, nc.loc, sum.getType(), sum, gamma, beta,
                            nc.b.getF32FloatAttr(eps),
                            nc.b.getI64IntegerAttr(-1));
  nc.importer.unifyElementwise(y, {sum});
  nc.setOutput(0, y);
  nc.setOutput(3, sum);
  return Error::success();
}

//===----------------------------------------------------------------------===//
// Shape ops
//===----------------------------------------------------------------------===//

Error convertShape(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"start", "end"}))
    return err;
  TRY(x, nc.required(0));
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  TRY(start, nc.intAttr("start", 0));
  TRY(end, nc.intAttr("end", rank));
  auto clampIdx = [&](int64_t v) {
    if (v < 0)
      v += rank;
    return std::clamp<int64_t>(v, 0, rank);
  };
  start = clampIdx(start);
  end = std::max(clampIdx(end), start);
  ShapeElems e;
  for (int64_t d = start; d < end; ++d)
    e.push_back(type.isDynamicDim(d) ? ShapeElem::dimOf(x, d)
                                     : ShapeElem::constant(type.getDimSize(d)));
  auto full = ShapeOfOp::create(nc.b, nc.loc,
                                tensorOf({rank}, nc.b.getI64Type()), x);
  Value result = full;
  if (start != 0 || end != rank)
    result = SliceOp::create(nc.b, nc.loc,
                             tensorOf({end - start}, nc.b.getI64Type()), full,
                             nc.b.getDenseI64ArrayAttr({0}),
                             nc.b.getDenseI64ArrayAttr({start}),
                             nc.b.getDenseI64ArrayAttr({end}),
                             nc.b.getDenseI64ArrayAttr({1}));
  defineInt(nc, result, e);
  return Error::success();
}

/// The result shape of a Reshape from the tracked target shape: 0 copies the
/// input dim (unless allowzero), -1 is inferred when everything else is known.
Expected<SmallVector<int64_t>> reshapeDims(NodeContext &nc, Value inputValue,
                                           const ShapeElems &target,
                                           bool allowZero) {
  auto input = cast<RankedTensorType>(inputValue.getType());
  SmallVector<int64_t> dims;
  int64_t inferred = -1;
  for (auto [i, e] : llvm::enumerate(target)) {
    if (e.isConst()) {
      if (e.value == 0 && !allowZero) {
        if (static_cast<int64_t>(i) >= input.getRank())
          return nc.error("shape entry 0 at an index past the input's rank");
        dims.push_back(input.getDimSize(i));
      } else if (e.value == -1) {
        if (inferred >= 0)
          return nc.error("shape has more than one -1");
        inferred = i;
        dims.push_back(ShapedType::kDynamic);
      } else if (e.value < 0) {
        return nc.error("shape has a negative entry " + llvm::Twine(e.value));
      } else {
        dims.push_back(e.value);
      }
    } else if (e.kind == ShapeElem::Dim) {
      dims.push_back(
          cast<RankedTensorType>(e.source.getType()).getDimSize(e.dim));
    } else {
      dims.push_back(ShapedType::kDynamic);
    }
  }
  if (inferred >= 0 && !input.hasStaticShape()) {
    // The element count still fixes the -1 when each dynamic input dim
    // reappears (as a known-equal dim) in the target: they cancel out.
    SmallVector<bool> used(input.getRank(), false);
    bool cancels = true;
    int64_t staticTarget = 1, staticInput = 1;
    for (auto [i, e] : llvm::enumerate(target)) {
      if (static_cast<int64_t>(i) == inferred)
        continue;
      if (!ShapedType::isDynamic(dims[i])) {
        staticTarget *= dims[i];
        continue;
      }
      int64_t match = -1;
      for (int64_t d = 0; d < input.getRank() && match < 0; ++d)
        if (input.isDynamicDim(d) && !used[d] &&
            ((e.kind == ShapeElem::Dim &&
              nc.importer.sameDim(e.source, e.dim, inputValue, d)) ||
             (e.isConst() && e.value == 0 && static_cast<int64_t>(i) == d)))
          match = d;
      if (match < 0) {
        cancels = false;
        break;
      }
      used[match] = true;
    }
    for (int64_t d = 0; d < input.getRank() && cancels; ++d) {
      if (input.isDynamicDim(d))
        cancels &= used[d];
      else
        staticInput *= input.getDimSize(d);
    }
    if (cancels && staticTarget > 0 && staticInput % staticTarget == 0)
      dims[inferred] = staticInput / staticTarget;
  }
  if (inferred >= 0 && input.hasStaticShape()) {
    int64_t known = 1;
    bool allKnown = true;
    for (auto [i, d] : llvm::enumerate(dims))
      if (static_cast<int64_t>(i) != inferred) {
        if (ShapedType::isDynamic(d))
          allKnown = false;
        else
          known *= d;
      }
    if (allKnown && known > 0) {
      if (input.getNumElements() % known)
        return nc.error(llvm::formatv("cannot reshape {0} elements into {1}",
                                      input.getNumElements(),
                                      mlirTypeStr(tensorOf(dims,
                                                           input.getElementType()))));
      dims[inferred] = input.getNumElements() / known;
    }
  }
  return dims;
}

/// True when the result's dynamic dims are exactly the input's, in order
/// (so kiln.reshape needs no shape operand).
bool dynamicDimsInOrder(Importer &imp, Value input, const ShapeElems &target,
                        ArrayRef<int64_t> dims, bool allowZero) {
  auto importer = [&](const ShapeElem &e, Value v, int64_t d) {
    return imp.sameDim(e.source, e.dim, v, d);
  };
  auto inType = cast<RankedTensorType>(input.getType());
  SmallVector<int64_t> sources;
  for (auto [i, e] : llvm::enumerate(target)) {
    if (!ShapedType::isDynamic(dims[i]))
      continue;
    if (e.kind == ShapeElem::Dim) {
      // The element names some tensor's dim; find which input dim it equals.
      int64_t match = -1;
      for (int64_t d = 0; d < inType.getRank(); ++d)
        if (inType.isDynamicDim(d) && e.source && importer(e, input, d))
          match = d;
      if (match < 0)
        return false;
      sources.push_back(match);
    }
    else if (e.isConst() && e.value == 0 && !allowZero)
      sources.push_back(i);
    else
      return false;
  }
  SmallVector<int64_t> inputDynamic;
  for (int64_t d = 0; d < inType.getRank(); ++d)
    if (inType.isDynamicDim(d))
      inputDynamic.push_back(d);
  return sources == inputDynamic;
}

/// Builds a kiln.reshape of `x` to `dims`, passing `shapeValue` only when the
/// in-order and single-dynamic rules cannot recover the dims.
Value buildReshape(NodeContext &nc, Value x, ArrayRef<int64_t> dims,
                   const ShapeElems &target, Value shapeValue, bool allowZero) {
  auto resultType = tensorOf(dims, elementTypeOf(x));
  int64_t dynamic = resultType.getNumDynamicDims();
  bool inOrder = dynamicDimsInOrder(nc.importer, x, target, dims, allowZero);
  bool needShape = dynamic > 1 && !inOrder;
  if (needShape && !shapeValue)
    shapeValue = nc.importer.materializeShape(nc.b, nc.loc, target);
  Value result = ReshapeOp::create(nc.b, nc.loc, resultType, x,
                                   needShape ? shapeValue : Value());
  for (auto [i, e] : llvm::enumerate(target)) {
    if (e.kind == ShapeElem::Dim)
      nc.importer.unifyDims(result, i, e.source, e.dim);
    else if (e.isConst() && e.value == 0 && !allowZero &&
             static_cast<int64_t>(i) < cast<RankedTensorType>(x.getType()).getRank())
      nc.importer.unifyDims(result, i, x, i);
  }
  if (inOrder)
    unifyInOrder(nc, result, x);
  return result;
}

Error convertReshape(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"allowzero"}))
    return err;
  TRY(x, nc.required(0));
  TRY(shape, nc.required(1));
  TRY(allowZero, nc.intAttr("allowzero", 0));
  auto type = cast<RankedTensorType>(x.getType());
  auto shapeType = cast<RankedTensorType>(shape.getType());
  if (shapeType.getRank() != 1 || shapeType.isDynamicDim(0))
    return nc.error("the shape input must be 1-D with a static length");
  std::optional<ShapeElems> target = nc.importer.elems(shape);
  if (!target) {
    target = ShapeElems(shapeType.getDimSize(0), ShapeElem());
  }
  if (allowZero && llvm::any_of(*target, [](const ShapeElem &e) {
        return e.isConst() && e.value == 0;
      }) && type.getNumElements() != 0)
    return nc.error("allowzero with a 0 entry gives an empty tensor");
  // kiln.reshape reads a 0 in a run-time shape as "copy the input dim". With
  // allowzero a 0 is kept, which only a valid model with an empty input can
  // have: reject that case rather than compute another shape.
  if (allowZero && type.hasStaticShape() && type.getNumElements() == 0 &&
      llvm::any_of(*target, [](const ShapeElem &e) { return !e.isConst(); }))
    return nc.error("allowzero=1 with a shape computed at run time is not "
                    "supported for an empty input");
  TRY(dims, reshapeDims(nc, x, *target, allowZero != 0));
  // A shape input that is not fully known is passed on as the operand, so
  // keep it when it cannot be rebuilt from tracked elements.
  Value result = buildReshape(nc, x, dims, *target, shape, allowZero != 0);
  // Reshaping a tracked integer vector keeps its elements.
  std::optional<ShapeElems> e;
  if (auto xe = trackable(nc, x); xe && dims.size() <= 1)
    e = xe;
  defineInt(nc, result, e);
  return Error::success();
}

Error convertFlatten(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"axis"}))
    return err;
  TRY(x, nc.required(0));
  auto type = cast<RankedTensorType>(x.getType());
  TRY(axis, nc.intAttr("axis", 1));
  if (axis < -type.getRank() || axis > type.getRank())
    return nc.error("axis out of range");
  axis = axis < 0 ? axis + type.getRank() : axis;
  auto product = [&](int64_t from, int64_t to) {
    int64_t p = 1;
    for (int64_t d = from; d < to; ++d) {
      if (type.isDynamicDim(d))
        return ShapedType::kDynamic;
      p *= type.getDimSize(d);
    }
    return p;
  };
  SmallVector<int64_t> dims = {product(0, axis), product(axis, type.getRank())};
  ShapeElems target(2, ShapeElem());
  if (!ShapedType::isDynamic(dims[0]))
    target[0] = ShapeElem::constant(dims[0]);
  if (!ShapedType::isDynamic(dims[1]))
    target[1] = ShapeElem::constant(dims[1]);
  if (llvm::count_if(dims, ShapedType::isDynamic) > 1)
    return nc.error("flattening two groups of dynamic dimensions is not "
                    "supported");
  nc.setOutput(0, buildReshape(nc, x, dims, target, Value(), false));
  return Error::success();
}

Error convertSqueezeUnsqueeze(NodeContext &nc, bool unsqueeze) {
  if (Error err = nc.checkAttributes({"axes"}))
    return err;
  TRY(x, nc.required(0));
  auto type = cast<RankedTensorType>(x.getType());
  TRY(axesOpt, nc.axesFrom("axes", 1));
  SmallVector<int64_t> dims;
  int64_t outRank = type.getRank() + (unsqueeze && axesOpt ? axesOpt->size() : 0);
  if (unsqueeze) {
    if (!axesOpt)
      return nc.error("axes are required");
    SmallVector<int64_t> axes = *axesOpt;
    for (int64_t &a : axes) {
      if (Error err = checkAxis(nc, a, outRank))
        return err;
      a = normAxis(a, outRank);
    }
    int64_t src = 0;
    for (int64_t d = 0; d < outRank; ++d)
      dims.push_back(llvm::is_contained(axes, d) ? 1
                                                 : type.getDimSize(src++));
  } else {
    SmallVector<int64_t> axes;
    if (axesOpt) {
      for (int64_t a : *axesOpt) {
        if (Error err = checkAxis(nc, a, type.getRank()))
          return err;
        int64_t n = normAxis(a, type.getRank());
        if (type.getDimSize(n) != 1 && !type.isDynamicDim(n))
          return nc.error(llvm::formatv("cannot squeeze axis {0} of size {1}",
                                        a, type.getDimSize(n)));
        axes.push_back(n);
      }
    } else {
      for (int64_t d = 0; d < type.getRank(); ++d)
        if (type.getDimSize(d) == 1)
          axes.push_back(d);
    }
    for (int64_t d = 0; d < type.getRank(); ++d)
      if (!llvm::is_contained(axes, d))
        dims.push_back(type.getDimSize(d));
      else if (type.isDynamicDim(d))
        ; // squeezing a dynamic dim asserts it is 1 at run time
  }
  // The dynamic dims keep their order, so no shape operand is needed unless
  // a squeezed dim was dynamic.
  auto resultType = tensorOf(dims, type.getElementType());
  if (resultType.getNumDynamicDims() > 1 &&
      resultType.getNumDynamicDims() != type.getNumDynamicDims())
    return nc.error("squeezing a dynamic dimension is not supported");
  Value result = ReshapeOp::create(nc.b, nc.loc, resultType, x, Value());
  unifyInOrder(nc, result, x);
  std::optional<ShapeElems> e;
  if (auto xe = trackable(nc, x); xe && dims.size() <= 1)
    e = xe;
  defineInt(nc, result, e);
  return Error::success();
}

Error convertTranspose(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"perm"}))
    return err;
  TRY(x, nc.required(0));
  auto type = cast<RankedTensorType>(x.getType());
  TRY(permOpt, nc.intsAttr("perm"));
  SmallVector<int64_t> perm;
  if (permOpt)
    perm = *permOpt;
  else
    for (int64_t d = type.getRank() - 1; d >= 0; --d)
      perm.push_back(d);
  if (static_cast<int64_t>(perm.size()) != type.getRank())
    return nc.error("perm length does not match the input rank");
  SmallVector<int64_t> dims;
  for (int64_t p : perm) {
    if (p < 0 || p >= type.getRank())
      return nc.error("perm entry out of range");
    dims.push_back(type.getDimSize(p));
  }
  Value result = TransposeOp::create(nc.b, nc.loc,
                                    tensorOf(dims, type.getElementType()), x,
                                    nc.b.getDenseI64ArrayAttr(perm));
  for (auto [i, p] : llvm::enumerate(perm))
    nc.importer.unifyDims(result, i, x, p);
  nc.setOutput(0, result);
  return Error::success();
}

Error convertConcat(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"axis"}))
    return err;
  TRY(axis, nc.intAttr("axis"));
  SmallVector<Value> inputs;
  for (unsigned i = 0; i < nc.numInputs(); ++i)
    if (nc.hasInput(i))
      inputs.push_back(nc.input(i));
  if (inputs.empty())
    return nc.error("needs at least one input");
  auto first = cast<RankedTensorType>(inputs[0].getType());
  if (Error err = checkAxis(nc, axis, first.getRank()))
    return err;
  int64_t a = normAxis(axis, first.getRank());
  SmallVector<int64_t> dims(first.getShape());
  dims[a] = 0;
  std::optional<ShapeElems> e = ShapeElems();
  for (Value v : inputs) {
    auto t = cast<RankedTensorType>(v.getType());
    if (t.getRank() != first.getRank() ||
        t.getElementType() != first.getElementType())
      return nc.error("inputs differ in rank or element type");
    int64_t d = t.getDimSize(a);
    dims[a] = ShapedType::isDynamic(d) || ShapedType::isDynamic(dims[a])
                  ? ShapedType::kDynamic
                  : dims[a] + d;
    for (int64_t k = 0; k < t.getRank(); ++k)
      if (k != a && ShapedType::isDynamic(dims[k]))
        dims[k] = t.getDimSize(k);
    auto ve = trackable(nc, v);
    if (e && ve && first.getRank() == 1)
      e->append(ve->begin(), ve->end());
    else
      e.reset();
  }
  Value result = ConcatOp::create(nc.b, nc.loc,
                                  tensorOf(dims, first.getElementType()),
                                  inputs, nc.b.getI64IntegerAttr(axis));
  for (Value v : inputs)
    for (int64_t k = 0; k < first.getRank(); ++k)
      if (k != a)
        nc.importer.unifyDims(result, k, v, k);
  defineInt(nc, result, e);
  return Error::success();
}

/// ONNX Slice size for a static dim.
int64_t sliceSize(int64_t dim, int64_t start, int64_t end, int64_t step,
                  int64_t *startOut = nullptr) {
  auto clampIdx = [&](int64_t v, int64_t lo, int64_t hi) {
    if (v < 0)
      v = v < -dim ? -1 : v + dim;
    return std::clamp(v, lo, hi);
  };
  if (step > 0) {
    int64_t s = clampIdx(start, 0, dim), e = clampIdx(end, 0, dim);
    if (startOut)
      *startOut = s;
    return e > s ? (e - s + step - 1) / step : 0;
  }
  int64_t s = clampIdx(start, -1, dim - 1), e = clampIdx(end, -1, dim - 1);
  if (startOut)
    *startOut = s;
  return s > e ? (s - e - step - 1) / (-step) : 0;
}

Error convertSlice(NodeContext &nc) {
  if (Error err = nc.checkAttributes({}))
    return err;
  TRY(x, nc.required(0));
  auto type = cast<RankedTensorType>(x.getType());
  TRY(starts, nc.constInts(1, "starts"));
  TRY(ends, nc.constInts(2, "ends"));
  SmallVector<int64_t> axes, steps;
  if (nc.hasInput(3)) {
    TRY(a, nc.constInts(3, "axes"));
    axes = a;
  } else {
    axes.resize(starts.size());
    std::iota(axes.begin(), axes.end(), 0);
  }
  if (nc.hasInput(4)) {
    TRY(s, nc.constInts(4, "steps"));
    steps = s;
  } else {
    steps.assign(starts.size(), 1);
  }
  if (ends.size() != starts.size() || axes.size() != starts.size() ||
      steps.size() != starts.size())
    return nc.error("starts, ends, axes and steps differ in length");
  SmallVector<int64_t> dims(type.getShape());
  for (size_t i = 0; i < axes.size(); ++i) {
    if (Error err = checkAxis(nc, axes[i], type.getRank()))
      return err;
    if (steps[i] == 0)
      return nc.error("step must be non-zero");
    int64_t a = normAxis(axes[i], type.getRank());
    dims[a] = type.isDynamicDim(a)
                  ? ShapedType::kDynamic
                  : sliceSize(type.getDimSize(a), starts[i], ends[i], steps[i]);
  }
  Value result = SliceOp::create(nc.b, nc.loc,
                                 tensorOf(dims, type.getElementType()), x,
                                 nc.b.getDenseI64ArrayAttr(axes),
                                 nc.b.getDenseI64ArrayAttr(starts),
                                 nc.b.getDenseI64ArrayAttr(ends),
                                 nc.b.getDenseI64ArrayAttr(steps));
  for (int64_t d = 0; d < type.getRank(); ++d)
    if (llvm::none_of(axes, [&](int64_t ax) {
          return normAxis(ax, type.getRank()) == d;
        }))
      nc.importer.unifyDims(result, d, x, d);
  std::optional<ShapeElems> e;
  if (auto xe = trackable(nc, x); xe && type.getRank() == 1) {
    int64_t n = xe->size(), start;
    int64_t size = sliceSize(n, starts[0], ends[0], steps[0], &start);
    ShapeElems out;
    for (int64_t k = 0; k < size; ++k)
      out.push_back((*xe)[start + k * steps[0]]);
    e = out;
  }
  defineInt(nc, result, e);
  return Error::success();
}

Error convertSplit(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"axis", "split", "num_outputs"}))
    return err;
  TRY(x, nc.required(0));
  auto type = cast<RankedTensorType>(x.getType());
  TRY(axis, nc.intAttr("axis", 0));
  if (Error err = checkAxis(nc, axis, type.getRank()))
    return err;
  int64_t a = normAxis(axis, type.getRank());
  TRY(sizesOpt, nc.axesFrom("split", 1));
  SmallVector<int64_t> sizes;
  int64_t outputs = nc.numOutputs();
  if (outputs < 1)
    return nc.error("Split needs at least one output");
  if (sizesOpt) {
    sizes = *sizesOpt;
    int64_t total = 0;
    for (int64_t size : sizes) {
      if (size < 0 || size > (int64_t{1} << 48))
        return nc.error("split size " + llvm::Twine(size) + " is invalid");
      total += size;
    }
    if (!type.isDynamicDim(a) && total != type.getDimSize(a))
      return nc.error(llvm::formatv("split sizes add up to {0}, not the "
                                    "dimension's {1}",
                                    total, type.getDimSize(a)));
  } else {
    if (type.isDynamicDim(a))
      return nc.error("splitting a dynamic dimension needs explicit sizes");
    int64_t dim = type.getDimSize(a);
    int64_t chunk = (dim + outputs - 1) / outputs;
    for (int64_t i = 0, left = dim; i < outputs; ++i, left -= chunk)
      sizes.push_back(std::min(chunk, left));
  }
  if (static_cast<int64_t>(sizes.size()) != outputs)
    return nc.error("split sizes do not match the number of outputs");
  int64_t start = 0;
  for (auto [i, size] : llvm::enumerate(sizes)) {
    SmallVector<int64_t> dims(type.getShape());
    dims[a] = size;
    Value part = SliceOp::create(nc.b, nc.loc,
                                 tensorOf(dims, type.getElementType()), x,
                                 nc.b.getDenseI64ArrayAttr({a}),
                                 nc.b.getDenseI64ArrayAttr({start}),
                                 nc.b.getDenseI64ArrayAttr({start + size}),
                                 nc.b.getDenseI64ArrayAttr({1}));
    for (int64_t d = 0; d < type.getRank(); ++d)
      if (d != a)
        nc.importer.unifyDims(part, d, x, d);
    nc.setOutput(i, part);
    start += size;
  }
  return Error::success();
}

Error convertExpand(NodeContext &nc) {
  TRY(x, nc.required(0));
  TRY(shape, nc.required(1));
  auto type = cast<RankedTensorType>(x.getType());
  auto shapeType = cast<RankedTensorType>(shape.getType());
  if (shapeType.getRank() != 1 || shapeType.isDynamicDim(0))
    return nc.error("the shape input must be 1-D with a static length");
  std::optional<ShapeElems> target = nc.importer.elems(shape);
  SmallVector<int64_t> targetDims =
      target ? nc.importer.staticDims(*target)
             : SmallVector<int64_t>(shapeType.getDimSize(0),
                                    ShapedType::kDynamic);
  for (int64_t d : targetDims)
    if (!ShapedType::isDynamic(d) && (d < 0 || d >= (int64_t{1} << 40)))
      return nc.error("invalid target dimension " + llvm::Twine(d));
  // Entries of 1 keep the input's dim (bidirectional broadcast).
  SmallVector<int64_t> dims;
  int64_t rank = std::max<int64_t>(type.getRank(), targetDims.size());
  for (int64_t i = 0; i < rank; ++i) {
    int64_t in = i - (rank - type.getRank());
    int64_t tg = i - (rank - static_cast<int64_t>(targetDims.size()));
    int64_t a = in >= 0 ? type.getDimSize(in) : 1;
    int64_t b = tg >= 0 ? targetDims[tg] : 1;
    if (a == 1)
      dims.push_back(b);
    else if (b == 1 || b == a)
      dims.push_back(a);
    else if (ShapedType::isDynamic(b))
      dims.push_back(a); // a known (or dynamic) dim wins over an unknown one
    else if (ShapedType::isDynamic(a))
      dims.push_back(b);
    else
      return nc.error(llvm::formatv("cannot expand dimension {0} of size {1} "
                                    "to {2}",
                                    i, a, b));
  }
  auto resultType = tensorOf(dims, type.getElementType());
  // Without a shape operand each dynamic result dim is the input's aligned
  // dim; that holds when the target keeps it (1) or names the same dim.
  bool needShape = false;
  for (int64_t i = 0; i < rank; ++i) {
    if (!resultType.isDynamicDim(i))
      continue;
    int64_t in = i - (rank - type.getRank());
    int64_t tg = i - (rank - static_cast<int64_t>(targetDims.size()));
    bool fromInput = in >= 0 && type.isDynamicDim(in);
    if (fromInput && tg >= 0 && target) {
      const ShapeElem &e = (*target)[tg];
      fromInput = (e.isConst() && e.value == 1) ||
                  (e.kind == ShapeElem::Dim &&
                   nc.importer.sameDim(e.source, e.dim, x, in));
    } else if (tg >= 0) {
      fromInput = false;
    }
    needShape |= !fromInput;
  }
  Value result = BroadcastOp::create(nc.b, nc.loc, resultType, x,
                                     needShape ? shape : Value());
  for (int64_t i = 0; i < rank; ++i) {
    int64_t in = i - (rank - type.getRank());
    int64_t tg = i - (rank - static_cast<int64_t>(targetDims.size()));
    if (in >= 0 && type.getDimSize(in) != 1)
      nc.importer.unifyDims(result, i, x, in);
    if (tg >= 0 && target && (*target)[tg].kind == ShapeElem::Dim)
      nc.importer.unifyDims(result, i, (*target)[tg].source, (*target)[tg].dim);
  }
  nc.setOutput(0, result);
  return Error::success();
}

Error convertGather(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"axis"}))
    return err;
  TRY(x, nc.required(0));
  TRY(indices, nc.required(1));
  auto type = cast<RankedTensorType>(x.getType());
  auto itype = cast<RankedTensorType>(indices.getType());
  TRY(axis, nc.intAttr("axis", 0));
  if (Error err = checkAxis(nc, axis, type.getRank()))
    return err;
  if (!itype.getElementType().isInteger(32) &&
      !itype.getElementType().isInteger(64))
    return nc.error("indices must be int32 or int64");
  int64_t a = normAxis(axis, type.getRank());
  SmallVector<int64_t> dims(type.getShape().take_front(a));
  llvm::append_range(dims, itype.getShape());
  llvm::append_range(dims, type.getShape().drop_front(a + 1));
  Value result = GatherOp::create(nc.b, nc.loc,
                                  tensorOf(dims, type.getElementType()), x,
                                  indices, nc.b.getI64IntegerAttr(axis));
  for (int64_t d = 0; d < a; ++d)
    nc.importer.unifyDims(result, d, x, d);
  for (int64_t d = 0; d < itype.getRank(); ++d)
    nc.importer.unifyDims(result, a + d, indices, d);
  for (int64_t d = a + 1; d < type.getRank(); ++d)
    nc.importer.unifyDims(result, d - 1 + itype.getRank(), x, d);
  std::optional<ShapeElems> e;
  auto xe = trackable(nc, x);
  auto ie = trackable(nc, indices);
  if (xe && ie && type.getRank() == 1 && allConst(*ie)) {
    e = ShapeElems();
    for (const ShapeElem &i : *ie) {
      int64_t k = i.value < 0 ? i.value + xe->size() : i.value;
      if (k < 0 || k >= static_cast<int64_t>(xe->size()))
        return nc.error(llvm::formatv("index {0} is out of range for {1} "
                                      "elements",
                                      i.value, xe->size()));
      e->push_back((*xe)[k]);
    }
  }
  defineInt(nc, result, e);
  return Error::success();
}

Error convertGatherND(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"batch_dims"}))
    return err;
  TRY(x, nc.required(0));
  TRY(indices, nc.required(1));
  TRY(batchDims, nc.intAttr("batch_dims", 0));
  auto type = cast<RankedTensorType>(x.getType());
  auto itype = cast<RankedTensorType>(indices.getType());
  if (!itype.getElementType().isInteger(64))
    return nc.error("indices must be int64");
  if (itype.getRank() < 1 || itype.isDynamicDim(itype.getRank() - 1))
    return nc.error("the last dimension of indices must be static");
  int64_t k = itype.getShape().back();
  if (batchDims < 0 || batchDims + k > type.getRank() ||
      batchDims >= itype.getRank())
    return nc.error("batch_dims and index depth do not fit the input rank");
  SmallVector<int64_t> dims(itype.getShape().drop_back());
  llvm::append_range(dims, type.getShape().drop_front(batchDims + k));
  Value result = GatherNdOp::create(nc.b, nc.loc,
                                    tensorOf(dims, type.getElementType()), x,
                                    indices, nc.b.getI64IntegerAttr(batchDims));
  for (int64_t d = 0; d + 1 < itype.getRank(); ++d)
    nc.importer.unifyDims(result, d, indices, d);
  nc.setOutput(0, result);
  return Error::success();
}

Error convertConstantOfShape(NodeContext &nc) {
  if (Error err = nc.checkAttributes({"value"}))
    return err;
  TRY(shape, nc.required(0));
  std::optional<ShapeElems> target = nc.importer.elems(shape);
  auto shapeType = cast<RankedTensorType>(shape.getType());
  if (shapeType.getRank() != 1 || shapeType.isDynamicDim(0))
    return nc.error("the shape input must be 1-D with a static length");
  SmallVector<int64_t> dims =
      target ? nc.importer.staticDims(*target)
             : SmallVector<int64_t>(shapeType.getDimSize(0),
                                    ShapedType::kDynamic);
  for (int64_t d : dims)
    if (!ShapedType::isDynamic(d) && (d < 0 || d >= (int64_t{1} << 40)))
      return nc.error("invalid target dimension " + llvm::Twine(d));
  TypedAttr value = nc.b.getF32FloatAttr(0.0f);
  if (const onnx::AttributeProto *a = nc.attr("value")) {
    TRY(et, nc.importer.elementType(a->t().data_type(), "value"));
    auto vt = tensorOf({1}, et);
    TRY(attr, nc.importer.decodeTensor(a->t(), vt, "ConstantOfShape value"));
    value = cast<TypedAttr>(*attr.value_begin<Attribute>());
  }
  auto resultType = tensorOf(dims, value.getType());
  if (resultType.hasStaticShape()) {
    Value c = arith::ConstantOp::create(nc.b, nc.loc, resultType,
                                        DenseElementsAttr::get(resultType,
                                                               value));
    defineInt(nc, c, std::nullopt);
    return Error::success();
  }
  nc.setOutput(0, FillOp::create(nc.b, nc.loc, resultType, value, shape));
  return Error::success();
}

Error convertRange(NodeContext &nc) {
  TRY(start, nc.required(0));
  TRY(limit, nc.required(1));
  TRY(delta, nc.required(2));
  Type et = elementTypeOf(start);
  auto s = trackable(nc, start), l = trackable(nc, limit),
       d = trackable(nc, delta);
  if (s && l && d && allConst(*s) && allConst(*l) && allConst(*d) &&
      s->size() == 1 && l->size() == 1 && d->size() == 1) {
    int64_t a = (*s)[0].value, b = (*l)[0].value, step = (*d)[0].value;
    if (step == 0)
      return nc.error("delta must be non-zero");
    int64_t span, n;
    if (__builtin_sub_overflow(b, a, &span) ||
        __builtin_add_overflow(span, step + (step > 0 ? -1 : 1), &span))
      return nc.error("range bounds overflow");
    n = std::max<int64_t>(0, span / step);
    if (n > 65536)
      return nc.error(llvm::formatv("a constant range of {0} elements is too "
                                    "large to fold",
                                    n));
    ShapeElems e;
    for (int64_t i = 0; i < n; ++i)
      e.push_back(ShapeElem::constant(a + i * step));
    nc.setOutput(0, constFromElems(nc, tensorOf({n}, et), e));
    return Error::success();
  }
  nc.setOutput(0, RangeOp::create(nc.b, nc.loc,
                                  tensorOf({ShapedType::kDynamic}, et), start,
                                  limit, delta));
  return Error::success();
}

} // namespace

//===----------------------------------------------------------------------===//
// Registry
//===----------------------------------------------------------------------===//

void mlir::kiln::onnx_import::registerConverters(
    llvm::StringMap<ConverterEntry> &t) {
  auto add = [&](StringRef domain, StringRef op, Converter c,
                 int64_t minOpset = 1) {
    t[(domain + "::" + op).str()] = {std::move(c), minOpset};
  };
  add("", "Constant", convertConstant);
  add("", "Identity", convertIdentity);
  add("", "Dropout", convertDropout);
  add("", "Add", convertBinary<AddOp>);
  add("", "Sub", convertBinary<SubOp>);
  add("", "Mul", convertBinary<MulOp>);
  add("", "Div", convertBinary<DivOp>);
  add("", "Pow", convertBinary<PowOp>);
  add("", "And", convertBinary<AndOp>);
  add("", "Or", convertBinary<OrOp>);
  add("", "Max", convertVariadic<MaxOp>);
  add("", "Min", convertVariadic<MinOp>);
  add("", "Equal", [](NodeContext &nc) {
    return convertCompare(nc, ComparePredicate::eq);
  });
  add("", "Less", [](NodeContext &nc) {
    return convertCompare(nc, ComparePredicate::lt);
  });
  add("", "LessOrEqual", [](NodeContext &nc) {
    return convertCompare(nc, ComparePredicate::le);
  });
  add("", "Greater", [](NodeContext &nc) {
    return convertCompare(nc, ComparePredicate::gt);
  });
  add("", "GreaterOrEqual", [](NodeContext &nc) {
    return convertCompare(nc, ComparePredicate::ge);
  });
  add("", "Neg", convertUnary<NegOp>);
  add("", "Abs", convertUnary<AbsOp>);
  add("", "Exp", convertUnary<ExpOp>);
  add("", "Log", convertUnary<LogOp>);
  add("", "Sqrt", convertUnary<SqrtOp>);
  add("", "Reciprocal", convertUnary<ReciprocalOp>);
  add("", "Tanh", convertUnary<TanhOp>);
  add("", "Sin", convertUnary<SinOp>);
  add("", "Cos", convertUnary<CosOp>);
  add("", "Erf", convertUnary<ErfOp>);
  add("", "Not", convertUnary<NotOp>);
  add("", "Sigmoid", [](NodeContext &nc) {
    return convertActivation(nc, ActivationKind::sigmoid);
  });
  add("", "Relu", [](NodeContext &nc) {
    return convertActivation(nc, ActivationKind::relu);
  });
  add("", "Gelu", convertGelu, 20);
  add("", "Cast", convertCast);
  add("", "Where", convertWhere);
  add("", "IsNaN", convertIsNaN);
  add("", "Trilu", convertTrilu, 14);
  add("", "CumSum", convertCumSum, 11);
  add("", "MatMul", convertMatMul);
  add("", "Gemm", convertGemm);
  add("", "Softmax", convertSoftmax);
  add("", "ReduceMean", [](NodeContext &nc) {
    return convertReduce(nc, ReduceKind::mean);
  });
  add("", "ReduceSum", [](NodeContext &nc) {
    return convertReduce(nc, ReduceKind::sum);
  });
  add("", "ReduceMax", [](NodeContext &nc) {
    return convertReduce(nc, ReduceKind::max);
  });
  add("", "ReduceMin", [](NodeContext &nc) {
    return convertReduce(nc, ReduceKind::min);
  });
  add("", "ReduceProd", [](NodeContext &nc) {
    return convertReduce(nc, ReduceKind::prod);
  });
  add("", "LayerNormalization", convertLayerNorm, 17);
  add("", "RMSNormalization", convertRmsNorm, 23);
  // Registered by onnxruntime in the default domain.
  add("", "SimplifiedLayerNormalization", convertRmsNorm);
  add("com.microsoft", "SkipSimplifiedLayerNormalization",
      [](NodeContext &nc) { return convertSkipNorm(nc, true); });
  add("com.microsoft", "SkipLayerNormalization",
      [](NodeContext &nc) { return convertSkipNorm(nc, false); });
  add("", "Shape", convertShape);
  add("", "Reshape", convertReshape);
  add("", "Flatten", convertFlatten);
  add("", "Squeeze", [](NodeContext &nc) {
    return convertSqueezeUnsqueeze(nc, false);
  });
  add("", "Unsqueeze", [](NodeContext &nc) {
    return convertSqueezeUnsqueeze(nc, true);
  });
  add("", "Transpose", convertTranspose);
  add("", "Concat", convertConcat);
  add("", "Slice", convertSlice, 10);
  add("", "Split", convertSplit);
  add("", "Expand", convertExpand);
  add("", "Gather", convertGather);
  add("", "GatherND", convertGatherND);
  add("", "ConstantOfShape", convertConstantOfShape);
  add("", "Range", convertRange);
  registerLlmConverters(t);
}
