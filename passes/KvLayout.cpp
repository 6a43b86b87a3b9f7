//===- KvLayout.cpp - the storage layout and element type of KV caches ----===//
//
// FormKvCache gives each layer a `!kiln.kv_cache` in the model's element type
// and the contiguous layout. This pass picks how the runtime stores it: the
// layout (contiguous, or paged in blocks of N tokens) and the element type
// (the model's, or a quantized one with per-token scales computed on
// append). Only types change: kiln.kv_cache_append, kiln.attention,
// kiln.kv_cache_read and kiln.shape_of take a cache of any layout and
// element type whose compute type is the one they read and write, so no op
// is rewritten and the options compose freely.
//
//===----------------------------------------------------------------------===//

#include "kiln/Passes/Passes.h"

namespace mlir::kiln {
#define GEN_PASS_DEF_KVLAYOUTPASS
#include "kiln/Passes/Passes.h.inc"
} // namespace mlir::kiln

using namespace mlir;
using namespace mlir::kiln;

namespace {

/// The quantized storage type named by `name` (the option's spelling or
/// the usual aliases), or null.
Type parseStorage(MLIRContext *ctx, StringRef name) {
  if (name == "i8" || name == "int8")
    return IntegerType::get(ctx, 8);
  if (name == "i4" || name == "int4")
    return IntegerType::get(ctx, 4);
  if (name == "f8E4M3FN" || name == "fp8" || name == "e4m3")
    return Float8E4M3FNType::get(ctx);
  return nullptr;
}

struct KvLayoutPass : public mlir::kiln::impl::KvLayoutPassBase<KvLayoutPass> {
  using Base::Base;

  /// The type `old` becomes, or failure (with `why`).
  FailureOr<KvCacheType> convert(KvCacheType old, std::string &why) {
    MLIRContext *ctx = old.getContext();
    KvLayout kind = layout == "paged" ? KvLayout::paged : KvLayout::contiguous;
    int64_t block = kind == KvLayout::paged ? int64_t(blockSize) : 0;
    Type element = old.getElementType();
    QuantAttr quant = old.getQuant();
    if (!dtype.empty() && !old.isQuantized()) {
      Type storage = parseStorage(ctx, dtype);
      Type scale = scaleType == "f32" ? Type(Float32Type::get(ctx))
                                      : Type(Float16Type::get(ctx));
      int64_t g = group;
      const int64_t dims[2] = {old.getHeadDim(), old.getValueHeadDim()};
      if (g == 0 && storage.isInteger(4) && dims[0] % 32 == 0 &&
          dims[1] % 32 == 0)
        g = 32;
      for (int64_t d : dims)
        if (g != 0 && d % g != 0) {
          why = "KV quantization group " + std::to_string(g) +
                " does not divide head dim " + std::to_string(d) +
                " (head_dim " + std::to_string(dims[0]) + ", v_head_dim " +
                std::to_string(dims[1]) + ")";
          return failure();
        }
      // A group covering the whole head dim is one scale per token and head.
      if (g == dims[0] && g == dims[1])
        g = 0;
      element = storage;
      quant = QuantAttr::get(ctx, storage, old.getElementType(),
                             {1, 1, 1, g}, scale, Type());
    }
    return KvCacheType::get(ctx, kind, block, element, old.getNumKvHeads(),
                            old.getHeadDim(), old.getValueHeadDim(), quant);
  }

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (layout != "contiguous" && layout != "paged") {
      func.emitError() << "unknown KV layout '" << layout
                       << "' (expected contiguous or paged)";
      return signalPassFailure();
    }
    if (layout == "paged" && blockSize < 1) {
      func.emitError() << "paged KV cache block size must be >= 1, found "
                       << int64_t(blockSize);
      return signalPassFailure();
    }
    if (!dtype.empty() && !parseStorage(&getContext(), dtype)) {
      func.emitError() << "unknown KV cache element type '" << dtype
                       << "' (expected i8, f8E4M3FN or i4)";
      return signalPassFailure();
    }
    if (scaleType != "f16" && scaleType != "f32") {
      func.emitError() << "KV scale type must be f16 or f32, found '"
                       << scaleType << "'";
      return signalPassFailure();
    }
    if (group < 0) {
      func.emitError() << "KV quantization group must be >= 0, found "
                       << int64_t(group);
      return signalPassFailure();
    }

    // One conversion (and at most one error) per distinct cache type.
    bool failed = false;
    DenseMap<Type, Type> converted;
    auto retype = [&](Value v, Operation *where) {
      auto old = dyn_cast<KvCacheType>(v.getType());
      if (!old)
        return;
      auto [it, fresh] = converted.try_emplace(old, Type());
      if (fresh) {
        std::string why;
        FailureOr<KvCacheType> type = convert(old, why);
        if (::mlir::failed(type)) {
          where->emitError() << why;
          failed = true;
          return;
        }
        it->second = *type;
      }
      if (it->second)
        v.setType(it->second);
    };
    if (func.isExternal())
      return;
    for (BlockArgument arg : func.getArguments()) {
      if (isa<KvCacheType>(arg.getType()))
        ++numRewritten;
      retype(arg, func);
    }
    func.walk([&](Operation *op) {
      for (Value r : op->getResults())
        retype(r, op);
    });
    if (failed)
      return signalPassFailure();
    // The signature follows the values.
    SmallVector<Type> results;
    func.walk([&](func::ReturnOp ret) {
      results.assign(ret.getOperandTypes().begin(),
                     ret.getOperandTypes().end());
    });
    func.setFunctionType(FunctionType::get(
        &getContext(), func.getBody().getArgumentTypes(), results));
  }
};

} // namespace
