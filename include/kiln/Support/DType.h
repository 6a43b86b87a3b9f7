//===- DType.h - MLIR element types <-> the runtime's dtype codes -*- C++ -*-===//
//
// The artifact stores element types as the runtime's stable kiln_dtype_t
// codes; the compiler maps MLIR types to them here, and computes storage sizes
// with the runtime's own packing rule so both sides agree byte for byte.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_SUPPORT_DTYPE_H
#define KILN_SUPPORT_DTYPE_H

#include "kiln/runtime/api.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/Support/LLVM.h"

namespace mlir::kiln {

/// The runtime dtype of an MLIR element type; KILN_DTYPE_INVALID when the
/// runtime has no such type.
kiln_dtype_t toRuntimeDType(Type elementType);

/// The MLIR element type of a runtime dtype; null for KILN_DTYPE_INVALID or
/// an unknown code.
Type fromRuntimeDType(MLIRContext *context, kiln_dtype_t dtype);

/// Bytes that a tensor of a static `type` occupies in storage: sub-byte types
/// are packed along the innermost dimension. Fails (with `reason` set) for a
/// dynamic shape, an unsupported element type or a size that overflows.
FailureOr<uint64_t> getStorageSizeInBytes(RankedTensorType type,
                                          std::string *reason = nullptr);

} // namespace mlir::kiln

#endif // KILN_SUPPORT_DTYPE_H
