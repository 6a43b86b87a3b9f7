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
//          `rotation=<file.safetensors>` takes square orthogonal matrices
//          (SpinQuant's learned rotations) instead: a matmul whose K a
//          matrix's size divides is rotated by kiln.rotate with the largest
//          such matrix on the block diagonal; other K fall back to the
//          Hadamard rotation.
//
// Weights are what kiln.weight, arith.constant, and kiln.concat /
// kiln.transpose of those compute (sibling projections the graph stage
// fused). Weights or ONNX nodes matching an `exclude` pattern stay float.
//
//===----------------------------------------------------------------------===//

#include "kiln/Passes/Passes.h"
#include "kiln/Support/Location.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Regex.h"

#include <cmath>
#include <cstring>
#include <optional>
#include <map>

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


/// Square rotation matrices by size, read from a safetensors file.
struct Rotations {
  std::map<int64_t, std::pair<std::string, std::vector<float>>> bySize;
};

/// Reads every tensor of `path` (safetensors: an 8-byte little-endian
/// header size, a JSON header, the data) as an orthogonal [n, n] matrix.
/// Errors name the file and the tensor.
FailureOr<Rotations> readRotations(StringRef path, Operation *at) {
  auto fail = [&](const Twine &why) {
    at->emitError() << "rotation file '" << path << "': " << why;
    return failure();
  };
  auto buf = llvm::MemoryBuffer::getFile(path);
  if (!buf)
    return fail(buf.getError().message());
  StringRef bytes = (*buf)->getBuffer();
  if (bytes.size() < 8)
    return fail("too short for a safetensors header");
  uint64_t headerSize = llvm::support::endian::read64le(bytes.data());
  if (headerSize > bytes.size() - 8)
    return fail(llvm::formatv("the header claims {0} bytes, the file has {1}", headerSize,
                              bytes.size() - 8));
  auto header = llvm::json::parse(bytes.substr(8, headerSize));
  if (!header)
    return fail("the header is not JSON: " + llvm::toString(header.takeError()));
  const llvm::json::Object *tensors = header->getAsObject();
  if (!tensors)
    return fail("the header is not a JSON object");
  StringRef data = bytes.drop_front(8 + headerSize);
  Rotations r;
  for (const auto &[key, value] : *tensors) {
    StringRef name = key;
    if (name == "__metadata__")
      continue;
    const llvm::json::Object *t = value.getAsObject();
    const llvm::json::Array *shape = t ? t->getArray("shape") : nullptr;
    const llvm::json::Array *offsets = t ? t->getArray("data_offsets") : nullptr;
    std::optional<StringRef> dtype = t ? t->getString("dtype") : std::nullopt;
    if (!shape || !offsets || !dtype || offsets->size() != 2)
      return fail("tensor '" + name + "' lacks dtype, shape or data_offsets");
    if (*dtype != "F32" && *dtype != "F64")
      return fail("tensor '" + name + "' is " + *dtype + "; rotations must be F32 or F64");
    std::optional<int64_t> n0 = shape->size() == 2 ? (*shape)[0].getAsInteger() : std::nullopt;
    std::optional<int64_t> n1 = shape->size() == 2 ? (*shape)[1].getAsInteger() : std::nullopt;
    if (!n0 || !n1 || *n0 != *n1 || *n0 < 1)
      return fail("tensor '" + name + "' is not a square matrix");
    int64_t n = *n0;
    size_t width = *dtype == "F32" ? 4 : 8;
    std::optional<int64_t> b = (*offsets)[0].getAsInteger(), e = (*offsets)[1].getAsInteger();
    if (!b || !e || *b < 0 || *e < *b || uint64_t(*e) > data.size() ||
        uint64_t(*e - *b) != uint64_t(n * n) * width)
      return fail("tensor '" + name + "' has data_offsets outside the file or of the wrong size");
    std::vector<float> m(size_t(n * n));
    const char *p = data.data() + *b;
    for (int64_t i = 0; i < n * n; ++i) {
      if (width == 4) {
        uint32_t u = llvm::support::endian::read32le(p + 4 * i);
        float f;
        std::memcpy(&f, &u, 4);
        m[size_t(i)] = f;
      } else {
        uint64_t u = llvm::support::endian::read64le(p + 8 * i);
        double d;
        std::memcpy(&d, &u, 8);
        m[size_t(i)] = float(d);
      }
    }
    // Orthogonal: R R^T = I, else the product would change.
    double worst = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double dot = 0;
        for (int64_t k = 0; k < n; ++k)
          dot += double(m[size_t(i * n + k)]) * double(m[size_t(j * n + k)]);
        worst = std::max(worst, std::fabs(dot - (i == j ? 1.0 : 0.0)));
      }
    if (!(worst <= 1e-4))
      return fail(llvm::formatv("tensor '{0}' is not orthogonal: R R^T differs from the "
                                "identity by {1:e2}",
                                name, worst));
    if (r.bySize.count(n))
      return fail(llvm::formatv("tensors '{0}' and '{1}' are both {2}x{2}; give one rotation "
                                "per size",
                                r.bySize[n].first, name, n));
    r.bySize[n] = {name.str(), std::move(m)};
  }
  if (r.bySize.empty())
    return fail("no tensors");
  return r;
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
    rotations.reset();
    if (!rotation.empty() && rotation != "hadamard" && rotation != "none") {
      if (!StringRef(rotation).ends_with(".safetensors")) {
        func.emitError() << "rotation='" << rotation
                         << "': expected hadamard, none or a .safetensors file of rotations";
        return signalPassFailure();
      }
      if (scheme == "w4a4") {
        FailureOr<Rotations> r = readRotations(rotation, func);
        if (failed(r))
          return signalPassFailure();
        rotations = std::move(*r);
      }
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
  std::optional<Rotations> rotations;

  /// `x` ([..., K], a weight's rows or an activation) rotated along K: by
  /// the largest file rotation whose size divides K, else by Hadamard blocks.
  Value rotate(OpBuilder &b, Location loc, Value x) {
    auto type = cast<RankedTensorType>(x.getType());
    int64_t k = type.getShape().back();
    if (rotations)
      for (auto it = rotations->bySize.rbegin(); it != rotations->bySize.rend(); ++it) {
        int64_t n = it->first;
        if (k % n)
          continue;
        auto rtype = RankedTensorType::get({n, n}, b.getF32Type());
        Value r = arith::ConstantOp::create(
            b, loc, DenseElementsAttr::get(rtype, ArrayRef<float>(it->second.second)));
        return RotateOp::create(b, loc, type, x, r);
      }
    return HadamardOp::create(b, loc, type, x, hadamardBlock(k));
  }
  /// The Hadamard block along K: the largest power of two dividing it.
  static int64_t hadamardBlock(int64_t k) { return k & -k; }

  /// Whether the op or one of its weights is excluded.
  bool excluded(Operation *op, ArrayRef<std::string> names,
                ArrayRef<llvm::Regex> patterns) {
    std::string node = onnxNodeName(op->getLoc());
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
      rows = rotate(b, loc, rows);
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
      a = rotate(b, a.getLoc(), a);
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
