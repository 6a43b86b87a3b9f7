//===- CudaCodegen.cpp - kiln ops to CUDA C++ ------------------------------===//
//
// Each supported op becomes a translation unit that includes one header of
// the kernel library and defines one extern "C" entry instantiating its
// template with the op's dtypes and static sizes. kiln.elementwise bodies
// are generated as straight-line f32 code. The entry's name carries the op,
// the dtypes and a hash of the source, so equal instantiations (the same
// norm in every layer) share one kernel.
//
//===----------------------------------------------------------------------===//

#include "kiln/Codegen/Cuda.h"

#include "kiln/Dialect/Kiln/IR/KilnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/SHA256.h"

using namespace mlir;
using namespace mlir::kiln;

namespace {

constexpr int kBlock = 256;

/// The CUDA type of a float element type, or "" when the library has none.
std::string floatType(Type t) {
  if (t.isF32())
    return "float";
  if (t.isF16())
    return "__half";
  if (t.isBF16())
    return "__nv_bfloat16";
  return "";
}

std::string intType(Type t) {
  if (t.isInteger(64))
    return "long long";
  if (t.isInteger(32))
    return "int";
  return "";
}

std::string shortName(Type t) {
  if (t.isF32())
    return "f32";
  if (t.isF16())
    return "f16";
  if (t.isBF16())
    return "bf16";
  if (t.isInteger(64))
    return "i64";
  if (t.isInteger(32))
    return "i32";
  return "x";
}

Type elementType(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t ? t.getElementType() : Type();
}

/// An f32 literal that reads back bit-exactly.
std::string floatLiteral(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  return llvm::formatv("__int_as_float(0x{0:x-8})", bits).str();
}

/// Finishes a kernel: names the entry by op, dtypes and content, wraps the
/// body in the extern "C" function.
cuda::KernelSource finish(StringRef op, StringRef tag, StringRef header,
                          StringRef prelude, StringRef call, llvm::json::Object grid,
                          int block = kBlock) {
  std::string body = (llvm::Twine("#include \"kiln/") + header + "\"\n\n" + prelude +
                      "extern \"C\" __global__ void __launch_bounds__(" +
                      llvm::Twine(block) + ") ENTRY(kiln::Args a) {\n  " + call +
                      "\n}\n")
                         .str();
  std::array<uint8_t, 32> digest = llvm::SHA256::hash(llvm::arrayRefFromStringRef(body));
  std::string hash = llvm::toHex(llvm::ArrayRef<uint8_t>(digest.data(), 6), true);
  cuda::KernelSource k;
  k.entry = ("kiln_" + op + "_" + tag + "_" + hash).str();
  size_t at = body.find("ENTRY");
  body.replace(at, 5, k.entry);
  k.source = std::move(body);
  k.op = op.str();
  k.block = block;
  k.grid = std::move(grid);
  return k;
}

/// Static product of dims [axis, rank) of `t`, or -1 when one is dynamic.
int64_t staticInner(RankedTensorType t, int64_t axis) {
  int64_t n = 1;
  for (int64_t d = axis; d < t.getRank(); ++d) {
    if (t.isDynamicDim(d))
      return -1;
    n *= t.getDimSize(d);
  }
  return n;
}

/// What a row-normalization kernel is instantiated with.
struct NormRow {
  std::string T, W; // activation and parameter element types
  int64_t cols = 0; // elements normalized together
};

/// The row shape of a norm over dims [axis, rank) of `input`, with each of
/// `params` (weight, bias) covering exactly those elements in the weight's
/// type; std::nullopt with `*why` when the library has no kernel for it.
std::optional<NormRow> normRow(Value input, ArrayRef<Value> params, int64_t axis,
                               std::string *why) {
  auto xt = cast<RankedTensorType>(input.getType());
  auto wt = cast<RankedTensorType>(params.front().getType());
  if (axis < 0)
    axis += xt.getRank();
  if (axis < 0 || axis >= xt.getRank()) {
    *why = "an axis out of range";
    return std::nullopt;
  }
  NormRow row{floatType(xt.getElementType()), floatType(wt.getElementType()),
              staticInner(xt, axis)};
  if (row.T.empty() || row.W.empty()) {
    *why = "element types other than f32, f16 and bf16";
    return std::nullopt;
  }
  if (row.cols <= 0) {
    *why = "a normalized dimension that is dynamic";
    return std::nullopt;
  }
  for (Value p : params) {
    auto t = cast<RankedTensorType>(p.getType());
    if (!t.hasStaticShape() || t.getNumElements() != row.cols ||
        t.getElementType() != wt.getElementType()) {
      *why = "a weight or bias that broadcasts, or of another type than the weight";
      return std::nullopt;
    }
  }
  if (row.cols > 32 * kBlock) {
    *why = llvm::formatv("rows of {0} elements (at most {1} per block)", row.cols,
                         32 * kBlock);
    return std::nullopt;
  }
  return row;
}

std::optional<cuda::KernelSource> normKernel(Value input, Value weight, int64_t axis,
                                             float epsilon, bool residual, std::string *why) {
  std::optional<NormRow> row = normRow(input, {weight}, axis, why);
  if (!row)
    return std::nullopt;
  auto xt = cast<RankedTensorType>(input.getType());
  const std::string &T = row->T, &W = row->W;
  const int64_t cols = row->cols;
  std::string call = llvm::formatv("kiln::rms_norm<{0}, {1}, {2}, {3}, {4}>(a, {5});", T, W,
                                   cols, kBlock, residual ? "true" : "false",
                                   floatLiteral(epsilon));
  std::string tag = llvm::formatv("{0}_{1}", shortName(xt.getElementType()), cols);
  return finish(residual ? "add_rms_norm" : "rms_norm", tag, "norm.cuh", "", call,
                llvm::json::Object{{"rule", "rows"}, {"cols", cols}});
}

std::optional<cuda::KernelSource> embeddingKernel(EmbeddingOp op, std::string *why) {
  auto table = dyn_cast<RankedTensorType>(op.getTable().getType());
  if (!table) {
    *why = "a quantized table";
    return std::nullopt;
  }
  std::string T = floatType(table.getElementType());
  std::string I = intType(elementType(op.getIds()));
  if (T.empty() || I.empty()) {
    *why = "a table or ids of an unsupported element type";
    return std::nullopt;
  }
  if (table.isDynamicDim(1)) {
    *why = "a dynamic hidden size";
    return std::nullopt;
  }
  int64_t hidden = table.getDimSize(1);
  std::string call =
      llvm::formatv("kiln::embedding<{0}, {1}, {2}, {3}>(a);", T, I, hidden, kBlock);
  std::string tag = llvm::formatv("{0}_{1}", shortName(table.getElementType()), hidden);
  return finish("embedding", tag, "embedding.cuh", "", call,
                llvm::json::Object{{"rule", "rows"}, {"cols", hidden}});
}

/// Writes the functor's loads of `inputs` (f32 values x0, x1, ...) for
/// result element i; false with `*why` for an unsupported input.
bool emitLoads(ValueRange inputs, RankedTensorType rt, llvm::raw_ostream &os,
               SmallVectorImpl<std::string> &names, std::string *why) {
  unsigned n = inputs.size();
  if (n + 1 > 8) {
    *why = "more than 7 inputs";
    return false;
  }
  for (auto [k, input] : llvm::enumerate(inputs)) {
    auto it = cast<RankedTensorType>(input.getType());
    std::string T = floatType(it.getElementType());
    if (T.empty()) {
      *why = "an input of an unsupported element type";
      return false;
    }
    // Same static shape as the result: the flat index is the offset.
    bool dense = it.hasStaticShape() && rt.hasStaticShape() && it.getShape() == rt.getShape();
    std::string v = "x" + std::to_string(k);
    os << "    const float " << v << " = kiln::load<" << T << ">(a.t[" << k << "], ";
    if (dense)
      os << "i);\n";
    else
      os << "kiln::broadcast_offset(a.t[" << k << "], a.t[" << n << "], i));\n";
    names.push_back(v);
  }
  return true;
}

constexpr const char *kFunctorHead =
    "struct Body {\n  static __device__ __forceinline__ float apply(const kiln::Args& a, "
    "long long i) {\n";

cuda::KernelSource elementwiseFinish(StringRef op, RankedTensorType rt, unsigned n,
                                     StringRef functor) {
  std::string call =
      llvm::formatv("kiln::elementwise<{0}, Body, {1}>(a);", floatType(rt.getElementType()), n);
  return finish(op, shortName(rt.getElementType()), "elementwise.cuh", functor, call,
                llvm::json::Object{{"rule", "elements"}});
}

/// The f32 expression of a scalar op of a kiln.elementwise body or of a
/// single kiln elementwise op, "" when there is none.
std::string scalarExpr(Operation *o, ArrayRef<std::string> arg) {
  auto un = [&](StringRef f) { return (f + "(" + arg[0] + ")").str(); };
  auto bin = [&](StringRef f) { return (f + "(" + arg[0] + ", " + arg[1] + ")").str(); };
  return llvm::TypeSwitch<Operation *, std::string>(o)
      .Case<arith::AddFOp, AddOp>([&](auto) { return arg[0] + " + " + arg[1]; })
      .Case<arith::SubFOp, SubOp>([&](auto) { return arg[0] + " - " + arg[1]; })
      .Case<arith::MulFOp, MulOp>([&](auto) { return arg[0] + " * " + arg[1]; })
      .Case<arith::DivFOp, DivOp>([&](auto) { return arg[0] + " / " + arg[1]; })
      .Case<arith::MaximumFOp, MaxOp>([&](auto) { return bin("kiln::maximum"); })
      .Case<arith::MinimumFOp, MinOp>([&](auto) { return bin("kiln::minimum"); })
      .Case<math::PowFOp, PowOp>([&](auto) { return bin("powf"); })
      .Case<arith::NegFOp, NegOp>([&](auto) { return "-" + arg[0]; })
      .Case<math::AbsFOp, AbsOp>([&](auto) { return un("fabsf"); })
      .Case<math::ExpOp, ExpOp>([&](auto) { return un("expf"); })
      .Case<math::LogOp, LogOp>([&](auto) { return un("logf"); })
      .Case<math::SqrtOp, SqrtOp>([&](auto) { return un("sqrtf"); })
      .Case<math::RsqrtOp, RsqrtOp>([&](auto) { return "1.f / sqrtf(" + arg[0] + ")"; })
      .Case<ReciprocalOp>([&](auto) { return "1.f / " + arg[0]; })
      .Case<math::TanhOp, TanhOp>([&](auto) { return un("tanhf"); })
      .Case<math::SinOp, SinOp>([&](auto) { return un("sinf"); })
      .Case<math::CosOp, CosOp>([&](auto) { return un("cosf"); })
      .Case<math::ErfOp, ErfOp>([&](auto) { return un("erff"); })
      .Case<ActivationOp>([&](ActivationOp a) {
        return un(("kiln::" + stringifyActivationKind(a.getKind())).str());
      })
      .Default([](Operation *) { return std::string(); });
}

/// The body of a kiln.elementwise as a functor: loads, then one f32
/// statement per body op, rounding where a narrower float type holds a
/// value (as the CPU program's ROUND instructions do).
std::optional<cuda::KernelSource> elementwiseKernel(ElementwiseOp op, std::string *why) {
  auto rt = cast<RankedTensorType>(op.getType());
  if (floatType(rt.getElementType()).empty()) {
    *why = "a result of an unsupported element type";
    return std::nullopt;
  }
  std::string code;
  llvm::raw_string_ostream os(code);
  os << kFunctorHead;
  SmallVector<std::string> loads;
  if (!emitLoads(op.getInputs(), rt, os, loads, why))
    return std::nullopt;
  Block &body = op.getBody().front();
  llvm::DenseMap<Value, std::string> name;
  for (auto [k, v] : llvm::enumerate(loads))
    name[body.getArgument(k)] = v;
  unsigned next = 0;
  for (Operation &o : body.without_terminator()) {
    SmallVector<std::string> args;
    for (Value v : o.getOperands())
      args.push_back(name.lookup(v));
    std::string expr;
    if (auto c = dyn_cast<arith::ConstantOp>(o)) {
      expr = floatLiteral(float(cast<FloatAttr>(c.getValue()).getValueAsDouble()));
    } else if (isa<arith::ExtFOp>(o)) {
      name[o.getResult(0)] = args[0];
      continue;
    } else if (auto t = dyn_cast<arith::TruncFOp>(o)) {
      if (t.getType().isF32()) {
        name[o.getResult(0)] = args[0];
        continue;
      }
      expr = "kiln::round_to<" + floatType(t.getType()) + ">(" + args[0] + ")";
    } else {
      expr = scalarExpr(&o, args);
      if (expr.empty()) {
        *why = ("body op " + o.getName().getStringRef()).str();
        return std::nullopt;
      }
      Type resultType = o.getResult(0).getType();
      if (resultType.isBF16() || resultType.isF16())
        expr = "kiln::round_to<" + floatType(resultType) + ">(" + expr + ")";
    }
    std::string v = "r" + std::to_string(next++);
    os << "    const float " << v << " = " << expr << ";\n";
    name[o.getResult(0)] = v;
  }
  os << "    return " << name.lookup(cast<YieldOp>(body.getTerminator()).getValue())
     << ";\n  }\n};\n\n";
  return elementwiseFinish("elementwise", rt, op.getInputs().size(), code);
}

/// A single kiln elementwise op (add, activation, ...) on float tensors.
std::optional<cuda::KernelSource> singleOpKernel(Operation *op, std::string *why) {
  auto rt = dyn_cast<RankedTensorType>(op->getResult(0).getType());
  if (!rt || floatType(rt.getElementType()).empty()) {
    *why = "a result of an unsupported element type";
    return std::nullopt;
  }
  std::string code;
  llvm::raw_string_ostream os(code);
  os << kFunctorHead;
  SmallVector<std::string> loads;
  if (!emitLoads(op->getOperands(), rt, os, loads, why))
    return std::nullopt;
  std::string expr = scalarExpr(op, loads);
  if (expr.empty()) {
    *why = "no kernel in the CUDA library yet";
    return std::nullopt;
  }
  os << "    return " << expr << ";\n  }\n};\n\n";
  return elementwiseFinish(op->getName().stripDialect(), rt, op->getNumOperands(), code);
}

std::optional<cuda::KernelSource> layerNormKernel(LayerNormOp op, std::string *why) {
  SmallVector<Value, 2> params = {op.getWeight()};
  if (op.getBias())
    params.push_back(op.getBias());
  // I64Attr getters return uint64_t: read the axis as the signed value.
  std::optional<NormRow> row =
      normRow(op.getInput(), params, static_cast<int64_t>(op.getAxis()), why);
  if (!row)
    return std::nullopt;
  auto xt = cast<RankedTensorType>(op.getInput().getType());
  const std::string &T = row->T, &W = row->W;
  const int64_t cols = row->cols;
  std::string call = llvm::formatv("kiln::layer_norm<{0}, {1}, {2}, {3}, {4}>(a, {5});", T, W,
                                   cols, kBlock, op.getBias() ? "true" : "false",
                                   floatLiteral(op.getEpsilon().convertToFloat()));
  std::string tag = llvm::formatv("{0}_{1}", shortName(xt.getElementType()), cols);
  return finish("layer_norm", tag, "norm.cuh", "", call,
                llvm::json::Object{{"rule", "rows"}, {"cols", cols}});
}

std::optional<cuda::KernelSource> ropeKernel(RopeOp op, std::string *why) {
  auto xt = cast<RankedTensorType>(op.getInput().getType());
  auto ct = cast<RankedTensorType>(op.getCos().getType());
  if (op.getSin().getType() != op.getCos().getType()) {
    *why = "cos and sin of different types";
    return std::nullopt;
  }
  std::string T = floatType(xt.getElementType()), C = floatType(ct.getElementType());
  std::string P = op.getPositions() ? intType(elementType(op.getPositions())) : "int";
  if (T.empty() || C.empty() || P.empty()) {
    *why = "element types the library has no kernel for";
    return std::nullopt;
  }
  if (xt.getRank() != 4 || xt.isDynamicDim(2) || xt.isDynamicDim(3)) {
    *why = "heads or head size that are dynamic";
    return std::nullopt;
  }
  int64_t heads = xt.getDimSize(2), dim = xt.getDimSize(3);
  int64_t rot = static_cast<int64_t>(op.getRotaryDim());
  if (rot == 0)
    rot = dim;
  if (rot <= 0 || rot % 2 || rot > dim) {
    *why = "a rotary dimension that is odd or larger than the head";
    return std::nullopt;
  }
  std::string call = llvm::formatv(
      "kiln::rope<{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}>(a);", T, C, P, heads, dim, rot,
      op.getInterleaved() ? "true" : "false", op.getPositions() ? "true" : "false", kBlock);
  std::string tag =
      llvm::formatv("{0}_{1}x{2}", shortName(xt.getElementType()), heads, dim);
  return finish("rope", tag, "rope.cuh", "", call,
                llvm::json::Object{{"rule", "rows"}, {"cols", heads * dim}});
}

} // namespace

std::optional<cuda::KernelSource> cuda::generateKernel(Operation *op, std::string *why) {
  std::string scratch;
  if (!why)
    why = &scratch;
  if (auto n = dyn_cast<RmsNormOp>(op))
    return normKernel(n.getInput(), n.getWeight(), static_cast<int64_t>(n.getAxis()),
                      n.getEpsilon().convertToFloat(), false, why);
  if (auto n = dyn_cast<AddRmsNormOp>(op))
    return normKernel(n.getInput(), n.getWeight(), static_cast<int64_t>(n.getAxis()),
                      n.getEpsilon().convertToFloat(), true, why);
  if (auto e = dyn_cast<EmbeddingOp>(op))
    return embeddingKernel(e, why);
  if (auto e = dyn_cast<ElementwiseOp>(op))
    return elementwiseKernel(e, why);
  if (auto n = dyn_cast<LayerNormOp>(op))
    return layerNormKernel(n, why);
  if (auto r = dyn_cast<RopeOp>(op))
    return ropeKernel(r, why);
  if (isa<AddOp, SubOp, MulOp, DivOp, MaxOp, MinOp, PowOp, NegOp, AbsOp, ExpOp, LogOp, SqrtOp,
          RsqrtOp, ReciprocalOp, TanhOp, SinOp, CosOp, ErfOp, ActivationOp>(op))
    return singleOpKernel(op, why);
  *why = "no kernel in the CUDA library yet";
  return std::nullopt;
}
