//===- kiln-import-fuzzer.cpp - libFuzzer target for the ONNX importer ----===//
//
// Feeds arbitrary bytes to the importer as a serialized model. Any input
// must end in a module or an error, never a crash, hang or sanitizer report.
// External data is looked up in an empty folder, so those paths fail cleanly.
//
//===----------------------------------------------------------------------===//

#include "kiln/Import/OnnxImporter.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static mlir::MLIRContext *context = [] {
    auto *ctx = new mlir::MLIRContext(mlir::MLIRContext::Threading::DISABLED);
    // Diagnostics from verification are part of the error value; keep the
    // default handler from printing them for every input.
    ctx->printOpOnDiagnostic(false);
    return ctx;
  }();
  static const std::string emptyDir = [] {
    char tmpl[] = "/tmp/kiln-fuzz-XXXXXX";
    const char *dir = mkdtemp(tmpl);
    return std::string(dir ? dir : "/nonexistent");
  }();
  llvm::StringRef bytes(reinterpret_cast<const char *>(data), size);
  auto module = mlir::kiln::importOnnxModelFromBuffer(context, bytes,
                                                      "model.onnx", emptyDir);
  if (!module)
    llvm::consumeError(module.takeError());
  return 0;
}
