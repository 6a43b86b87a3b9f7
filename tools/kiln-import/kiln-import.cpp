//===- kiln-import.cpp - ONNX model -> kiln dialect -----------------------===//
//
// kiln-import model.onnx [-o out.mlir]: imports the model and prints the IR.
// On error it prints one line naming the file (and node), exits 1, and
// leaves no output file behind.
//
//===----------------------------------------------------------------------===//

#include "kiln/Import/OnnxImporter.h"

#include "mlir/Bytecode/BytecodeWriter.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"

using namespace llvm;

static cl::OptionCategory category("kiln-import options");
static cl::opt<std::string> inputPath(cl::Positional,
                                      cl::desc("<model.onnx>"),
                                      cl::cat(category));
static cl::opt<std::string> outputPath("o", cl::desc("Output file (default: stdout)"),
                                       cl::value_desc("file"), cl::init("-"),
                                       cl::cat(category));
static cl::opt<std::string>
    functionName("function-name",
                 cl::desc("Name of the function the graph becomes"),
                 cl::init("forward"), cl::cat(category));
static cl::opt<bool> emitBytecode("emit-bytecode",
                                  cl::desc("Write MLIR bytecode, not text"),
                                  cl::cat(category));
static cl::opt<bool> listOps("list-ops",
                             cl::desc("Print the supported ONNX ops "
                                      "(domain::OpType min-opset) and exit"),
                             cl::cat(category));
static cl::opt<bool> debugInfo("mlir-print-debuginfo",
                               cl::desc("Print each op's location (its ONNX "
                                        "node and file)"),
                               cl::cat(category));

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "kiln-import: imports an ONNX model into the kiln dialect\n\n"
      "  kiln-import model.onnx -o model.mlir\n\n"
      "External data is read relative to the model's folder. Errors name the\n"
      "file, node, op type, domain and opset; nothing is written on error.\n");

  if (listOps) {
    for (const auto &[op, minOpset] : mlir::kiln::supportedOnnxOps())
      outs() << op << " " << minOpset << "\n";
    return 0;
  }
  if (inputPath.empty()) {
    WithColor::error(errs(), "kiln-import") << "no input model given\n";
    return 1;
  }

  mlir::MLIRContext context;
  mlir::kiln::OnnxImportOptions options;
  options.functionName = functionName;
  auto module = mlir::kiln::importOnnxModel(&context, inputPath, options);
  if (!module) {
    WithColor::error(errs(), "kiln-import") << toString(module.takeError())
                                            << "\n";
    return 1;
  }

  std::string errorMessage;
  auto output = mlir::openOutputFile(outputPath, &errorMessage);
  if (!output) {
    WithColor::error(errs(), "kiln-import") << errorMessage << "\n";
    return 1;
  }
  if (emitBytecode) {
    if (mlir::failed(mlir::writeBytecodeToFile(**module, output->os()))) {
      WithColor::error(errs(), "kiln-import") << "cannot write bytecode\n";
      return 1;
    }
  } else {
    mlir::OpPrintingFlags flags;
    if (debugInfo)
      flags.enableDebugInfo();
    (*module)->print(output->os(), flags);
  }
  output->keep();
  return 0;
}
