//===- ConvertUtils.h - helpers shared by the node converters ------*- C++ -*-===//

#ifndef KILN_LIB_IMPORT_CONVERTUTILS_H
#define KILN_LIB_IMPORT_CONVERTUTILS_H

#include "ImporterImpl.h"

#include "mlir/Dialect/Traits.h"
#include "llvm/Support/FormatVariadic.h"

namespace mlir::kiln::onnx_import {

/// Unwraps an Expected into `var` or returns its error.
#define TRY(var, expr)                                                         \
  auto var##OrErr = (expr);                                                    \
  if (!var##OrErr)                                                             \
    return var##OrErr.takeError();                                             \
  auto &var = *var##OrErr;

inline RankedTensorType tensorOf(ArrayRef<int64_t> shape, Type et) {
  return RankedTensorType::get(shape, et);
}

inline int64_t normAxis(int64_t axis, int64_t rank) {
  return axis < 0 ? axis + rank : axis;
}

inline llvm::Error checkAxis(NodeContext &nc, int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank)
    return nc.error(llvm::formatv("axis {0} is out of range for rank {1}", axis,
                                  rank));
  return llvm::Error::success();
}

inline llvm::Expected<SmallVector<int64_t>> broadcast(NodeContext &nc, ArrayRef<Value> vs) {
  SmallVector<int64_t> shape;
  for (auto [i, v] : llvm::enumerate(vs)) {
    ArrayRef<int64_t> next = cast<RankedTensorType>(v.getType()).getShape();
    if (i == 0) {
      shape.assign(next.begin(), next.end());
      continue;
    }
    SmallVector<int64_t> merged;
    if (!OpTrait::util::getBroadcastedShape(shape, next, merged))
      return nc.error("input shapes are not broadcast-compatible");
    shape = std::move(merged);
  }
  return shape;
}

inline Type elementTypeOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getElementType();
}


/// Registers the converters of attention-era ops (contrib, opset 23+, Q/DQ).
void registerLlmConverters(llvm::StringMap<ConverterEntry> &table);

} // namespace mlir::kiln::onnx_import

#endif // KILN_LIB_IMPORT_CONVERTUTILS_H
