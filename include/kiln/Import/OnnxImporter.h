//===- OnnxImporter.h - ONNX ModelProto -> kiln dialect ------------*- C++ -*-===//
//
// Reads an ONNX model (and its external data) and builds a module in the kiln
// dialect: one function per graph, weights as kiln.weight_decl symbols that
// point into the model's files, every op located at its ONNX node.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_IMPORT_ONNXIMPORTER_H
#define KILN_IMPORT_ONNXIMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace mlir::kiln {

struct OnnxImportOptions {
  /// Name of the function the graph becomes.
  std::string functionName = "forward";
  /// Float initializers with at most this many elements become
  /// `arith.constant`s (scalars: epsilons, scales); larger ones are weights.
  int64_t maxInlineElements = 1;
  /// Integer initializers (shape and index tables) up to this many elements
  /// are inlined as well, so shape computations fold at import.
  int64_t maxInlineIntegerElements = 1024;
};

/// Imports the ONNX model at `path`. Errors name the file, and for a node its
/// name, op type, domain and opset.
llvm::Expected<OwningOpRef<ModuleOp>>
importOnnxModel(MLIRContext *context, llvm::StringRef path,
                const OnnxImportOptions &options = {});

/// Imports a serialized model held in memory. `name` stands for the file in
/// messages and storage attributes; external data is looked up in
/// `directory`.
llvm::Expected<OwningOpRef<ModuleOp>>
importOnnxModelFromBuffer(MLIRContext *context, llvm::StringRef bytes,
                          llvm::StringRef name, llvm::StringRef directory,
                          const OnnxImportOptions &options = {});

/// The ops the importer converts, as "domain::OpType" ("" = ai.onnx) with
/// the oldest opset each accepts, sorted.
std::vector<std::pair<std::string, int64_t>> supportedOnnxOps();

/// Registers the dialects imported IR uses.
void registerOnnxImportDialects(DialectRegistry &registry);

} // namespace mlir::kiln

#endif // KILN_IMPORT_ONNXIMPORTER_H
