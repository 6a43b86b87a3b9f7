//===- OnnxWire.h - where tensor bytes lie inside a serialized model -*- C++ -*-===//
//
// The protobuf classes copy raw_data out of the file; to point weights at
// their bytes inside the .onnx file itself (so the runtime can mmap them) we
// walk the wire format once and record each initializer's data span.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_LIB_IMPORT_ONNXWIRE_H
#define KILN_LIB_IMPORT_ONNXWIRE_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <optional>
#include <vector>

namespace mlir::kiln::onnx_wire {

/// A byte range of the serialized model.
struct Span {
  uint64_t offset = 0;
  uint64_t length = 0;
};

/// For each initializer of the main graph, in order: the span of its
/// `raw_data`, or of a packed `float_data` / `double_data` (which have the
/// raw layout), or nullopt when its values are in varint fields.
llvm::Expected<std::vector<std::optional<Span>>>
findInitializerData(llvm::StringRef model);

} // namespace mlir::kiln::onnx_wire

#endif // KILN_LIB_IMPORT_ONNXWIRE_H
