//===- QuantizeWeights.cpp - weight-only quantization of projections ------===//
//
// Rewrites the float weights of kiln.matmul and kiln.gated_mlp into
// `!kiln.qtensor`s: each weight is made output-major ([N, K], transposed
// with kiln.transpose where the graph stores it [K, N]) and quantized with
// kiln.quantize along K, so that the kernels dequantize a row of K in
// registers. The scales are computed from the weight's values; kiln-compile
// evaluates such a kiln.quantize of weights when it writes the artifact
// (lib/Compiler/Compile.cpp), so the artifact holds the packed values and
// scales, not the float weight.
//
//   w8a16: int8, one scale per output channel (block [1, 0]), symmetric.
//   w4a16: int4 in groups of `group` along K (block [1, group]), symmetric,
//          or ui4 with ui4 zero points (`zero-points`).
//   fp8:   f8E4M3FN weights with f32 scales per output channel (block
//          [1, 0]) or per tensor (`weight-scales=tensor`), and f8E4M3FN
//          activations: each quantized matmul's input goes through a
//          kiln.quantize with scales computed at run time per token (block
//          [1, ..., 1, 0]) or per tensor (`activations=tensor`).
//          kiln-compile --calib replaces them with static per-tensor scales
//          from a calibration run (applyActivationScales). Gated MLPs are
//          refused: the activation between their projections is quantized
//          too, so the graph pipeline leaves them unfused for this scheme.
//   w4a4:  i4 weights per output channel and i4 activations with dynamic
//          per-token scales. With `rotation=hadamard` (the default), K is
//          rotated on both sides first: the output-major weight by a
//          kiln.hadamard that kiln-compile folds into the packed values, the
//          activation by an online kiln.hadamard, blocks of the largest
//          power of two dividing K; since the rotation is orthonormal and
//          its own inverse the product is unchanged while outliers spread
//          over the block. Gated MLPs are refused as for fp8.
//
// Weights are what kiln.weight, arith.constant, and kiln.concat /
// kiln.transpose of those compute (sibling projections the graph stage
// fused). Weights or ONNX nodes matching an `exclude` pattern stay float.
//
//===----------------------------------------------------------------------===//

#include "kiln/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Regex.h"

namespace mlir::kiln {
#define GEN_PASS_DEF_QUANTIZEWEIGHTSPASS
#include "kiln/Passes/Passes.h.inc"
} // namespace mlir::kiln

using namespace mlir;
using namespace mlir::kiln;

namespace {

/// The kiln.weight symbols `v` is computed from, or failure when `v` is not
/// computed from weights and constants alone.
LogicalResult weightNames(Value v, SmallVectorImpl<std::string> &names) {
  Operation *def = v.getDefiningOp();
  if (!def)
    return failure();
  if (auto w = dyn_cast<WeightOp>(def)) {
    names.push_back(w.getName().str());
    return success();
  }
  if (isa<arith::ConstantOp>(def))
    return success();
  if (auto t = dyn_cast<TransposeOp>(def))
    return weightNames(t.getInput(), names);
  if (auto c = dyn_cast<ConcatOp>(def)) {
    for (Value in : c.getInputs())
      if (failed(weightNames(in, names)))
        return failure();
    return success();
  }
  return failure();
}

/// The ONNX node name in `loc`, or "".
std::string nodeName(Location loc) {
  if (auto f = dyn_cast<FusedLoc>(loc))
    for (Location l : f.getLocations())
      if (std::string n = nodeName(l); !n.empty())
        return n;
  if (auto n = dyn_cast<NameLoc>(loc))
    return n.getName().str();
  return "";
}

struct QuantizeWeightsPass
    : public mlir::kiln::impl::QuantizeWeightsPassBase<QuantizeWeightsPass> {
  using Base::Base;

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (scheme != "w8a16" && scheme != "w4a16" && scheme != "fp8" && scheme != "w4a4") {
      func.emitError() << "unknown quantization scheme '" << scheme
                       << "' (have: w8a16, w4a16, fp8, w4a4)";
      return signalPassFailure();
    }
    if (!rotation.empty() && rotation != "hadamard" && rotation != "none") {
      func.emitError() << "rotation='" << rotation << "': expected hadamard or none";
      return signalPassFailure();
    }
    if (scheme != "w4a4" && !rotation.empty()) {
      func.emitError() << "rotation applies to w4a4 (scheme is " << scheme << ")";
      return signalPassFailure();
    }
    if (weightScales != "channel" && weightScales != "tensor") {
      func.emitError() << "weight-scales='" << weightScales << "': expected channel or tensor";
      return signalPassFailure();
    }
    if (activations != "token" && activations != "tensor") {
      func.emitError() << "activations='" << activations << "': expected token or tensor";
      return signalPassFailure();
    }
    if (scheme != "fp8" && (weightScales != "channel" || activations != "token")) {
      func.emitError() << "weight-scales and activations apply to fp8 (scheme is "
                       << scheme << ")";
      return signalPassFailure();
    }
    if (scheme == "w4a16" && (group < 2 || group % 2)) {
      func.emitError() << "w4a16 group size " << int64_t(group)
                       << " must be an even number >= 2";
      return signalPassFailure();
    }
    if (scheme != "w4a16" && zeroPoints) {
      func.emitError() << scheme << " is symmetric; zero-points applies to w4a16";
      return signalPassFailure();
    }
    SmallVector<llvm::Regex> patterns;
    for (const std::string &p : exclude) {
      llvm::Regex re(p);
      std::string why;
      if (!re.isValid(why)) {
        func.emitError() << "exclude pattern '" << p << "' is not a regular expression: "
                         << why;
        return signalPassFailure();
      }
      patterns.push_back(std::move(re));
    }
    bool failedAny = false;
    func.walk([&](Operation *op) {
      if (failedAny)
        return;
      if (auto mm = dyn_cast<MatmulOp>(op)) {
        if (failed(quantizeMatmul(mm, patterns)))
          failedAny = true;
      } else if (auto mlp = dyn_cast<GatedMlpOp>(op)) {
        if (failed(quantizeMlp(mlp, patterns)))
          failedAny = true;
      }
    });
    if (failedAny)
      signalPassFailure();
  }

  /// Schemes that quantize the matmuls' inputs too.
  bool quantizesActivations() { return scheme == "fp8" || scheme == "w4a4"; }
  bool rotates() { return scheme == "w4a4" && rotation != "none"; }
  /// The Hadamard block along K: the largest power of two dividing it.
  static int64_t hadamardBlock(int64_t k) { return k & -k; }

  /// Whether the op or one of its weights is excluded.
  bool excluded(Operation *op, ArrayRef<std::string> names,
                ArrayRef<llvm::Regex> patterns) {
    std::string node = nodeName(op->getLoc());
    for (const llvm::Regex &re : patterns) {
      if (!node.empty() && re.match(node))
        return true;
      for (const std::string &n : names)
        if (re.match(n))
          return true;
    }
    return false;
  }

  /// `w` ([K, N], or [N, K] when `outputMajor`) as an output-major
  /// quantized weight, or null when it is not a float weight of static
  /// shape; failure for a refusal (already reported).
  FailureOr<Value> quantize(Operation *user, Value w, bool outputMajor,
                            ArrayRef<llvm::Regex> patterns) {
    auto type = dyn_cast<RankedTensorType>(w.getType());
    if (!type || type.getRank() != 2 || !type.hasStaticShape() ||
        !isa<FloatType>(type.getElementType()))
      return Value();
    SmallVector<std::string> names;
    if (failed(weightNames(w, names)) || excluded(user, names, patterns))
      return Value();
    OpBuilder b(user);
    Location loc = w.getLoc();
    int64_t n = outputMajor ? type.getDimSize(0) : type.getDimSize(1);
    int64_t k = outputMajor ? type.getDimSize(1) : type.getDimSize(0);
    Type et = type.getElementType();
    MLIRContext *ctx = &getContext();
    bool w4 = scheme == "w4a16";
    if (w4 && k % group != 0) {
      InFlightDiagnostic d = user->emitError()
                             << llvm::formatv("w4a16 group size {0} does not divide K = {1}",
                                              int64_t(group), k);
      if (!names.empty())
        d << " of weight '" << names.front() << "'";
      d << " (pick a group that divides it, or exclude the weight)";
      return failure();
    }
    Value rows = w;
    if (!outputMajor)
      rows = TransposeOp::create(b, loc, RankedTensorType::get({n, k}, et), w,
                                 b.getDenseI64ArrayAttr({1, 0}));
    if (rotates())
      rows = HadamardOp::create(b, loc, rows.getType(), rows, hadamardBlock(k));
    bool fp8 = scheme == "fp8";
    bool w4a4 = scheme == "w4a4";
    if (w4a4 && k % 2 != 0)
      return user->emitError() << "w4a4 packs two int4 values per byte along K, which is "
                               << k << " (odd)";
    Type storage = w4 || w4a4 ? IntegerType::get(ctx, 4, zeroPoints ? IntegerType::Unsigned
                                                                    : IntegerType::Signless)
                   : fp8      ? Type(Float8E4M3FNType::get(ctx))
                              : Type(IntegerType::get(ctx, 8));
    SmallVector<int64_t> block = {1, w4 ? int64_t(group) : 0};
    if (fp8 && weightScales == "tensor")
      block = {0, 0};
    // fp8 scales are f32 (the E4M3 range is narrow; f16 scales would add
    // their own rounding to every value).
    auto quant = QuantAttr::get(ctx, storage, et, block, fp8 ? Type(b.getF32Type()) : et,
                                zeroPoints ? storage : Type());
    auto qtype = QTensorType::get(ctx, {n, k}, quant);
    ++numQuantized;
    return Value(QuantizeOp::create(b, loc, qtype, rows, Value(), Value()));
  }

  /// The activation `a` (a float tensor) quantized with dynamic scales
  /// (fp8: E4M3, w4a4: i4 per token after the online rotation).
  Value quantizeActivation(Operation *user, Value a) {
    auto type = cast<RankedTensorType>(a.getType());
    MLIRContext *ctx = &getContext();
    OpBuilder b(user);
    if (rotates())
      a = HadamardOp::create(b, a.getLoc(), type, a, hadamardBlock(type.getShape().back()));
    SmallVector<int64_t> block(type.getRank(), activations == "tensor" ? 0 : 1);
    block.back() = 0;
    Type storage = scheme == "w4a4" ? Type(IntegerType::get(ctx, 4))
                                    : Type(Float8E4M3FNType::get(ctx));
    Type scaleType = scheme == "w4a4" ? type.getElementType() : Type(b.getF32Type());
    auto quant = QuantAttr::get(ctx, storage, type.getElementType(), block, scaleType, Type());
    auto qtype = QTensorType::get(ctx, type.getShape(), quant);
    ++numActivations;
    return QuantizeOp::create(b, a.getLoc(), qtype, a, Value(), Value());
  }

  LogicalResult quantizeMatmul(MatmulOp mm, ArrayRef<llvm::Regex> patterns) {
    FailureOr<Value> q = quantize(mm, mm.getB(), mm.getTransposeB(), patterns);
    if (failed(q))
      return failure();
    if (!*q)
      return success();
    mm.getBMutable().assign(*q);
    mm.setTransposeB(true);
    if (quantizesActivations()) {
      auto a = dyn_cast<RankedTensorType>(mm.getA().getType());
      if (!a || !isa<FloatType>(a.getElementType()))
        return mm.emitError() << scheme << " quantizes the activation of this matmul, but it "
                                           "is already a quantized tensor";
      mm.getAMutable().assign(quantizeActivation(mm, mm.getA()));
    }
    return success();
  }

  LogicalResult quantizeMlp(GatedMlpOp mlp, ArrayRef<llvm::Regex> patterns) {
    if (quantizesActivations()) {
      SmallVector<std::string> names;
      for (Value w : mlp->getOperands())
        if (w != mlp.getInput())
          (void)weightNames(w, names);
      if (excluded(mlp, names, patterns))
        return success();
      return mlp.emitError() << scheme
                             << " quantizes the activation between a gated MLP's projections, "
                                "which kiln.gated_mlp keeps inside; run kiln-quantize-weights "
                                "before kiln-fuse-gated-mlp (kiln-graph-pipeline does) or "
                                "exclude the node";
    }
    bool major = mlp.getTransposeWeights();
    // Every weight is quantized or none: the op has one weight layout.
    SmallVector<OpOperand *> weights;
    for (OpOperand &o : mlp->getOpOperands())
      if (o.get() != mlp.getInput())
        weights.push_back(&o);
    for (OpOperand *o : weights) {
      auto t = dyn_cast<RankedTensorType>(o->get().getType());
      SmallVector<std::string> names;
      if (!t || !t.hasStaticShape() || failed(weightNames(o->get(), names)) ||
          excluded(mlp, names, patterns))
        return success();
    }
    SmallVector<Value> qs;
    for (OpOperand *o : weights) {
      FailureOr<Value> q = quantize(mlp, o->get(), major, patterns);
      if (failed(q))
        return failure();
      if (!*q)
        return success();
      qs.push_back(*q);
    }
    for (auto [o, q] : llvm::zip(weights, qs))
      o->set(q);
    mlp.setTransposeWeights(true);
    return success();
  }
};

} // namespace
