//===- kiln-opt.cpp - mlir-opt for the kiln dialect and passes ------------===//
//
// Registers the kiln dialect, the upstream dialects kiln IR uses, every kiln
// pass and pipeline, and the upstream passes worth combining with them; then
// hands over to MlirOptMain, so flags behave as in mlir-opt.
//
//===----------------------------------------------------------------------===//

#include "kiln/Dialect/Kiln/IR/KilnOps.h"
#include "kiln/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/Extensions/AllExtensions.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  registry.insert<mlir::kiln::KilnDialect, mlir::arith::ArithDialect,
                  mlir::func::FuncDialect, mlir::tensor::TensorDialect,
                  mlir::math::MathDialect>();
  mlir::func::registerAllExtensions(registry);

  // Upstream passes a kiln pipeline experiment typically mixes in.
  mlir::registerCanonicalizerPass();
  mlir::registerCSEPass();
  mlir::registerInlinerPass();
  mlir::registerSymbolDCEPass();
  mlir::registerSCCPPass();
  mlir::registerLoopInvariantCodeMotionPass();
  mlir::registerPrintOpStatsPass();
  mlir::registerStripDebugInfoPass();
  mlir::registerViewOpGraphPass();

  mlir::kiln::registerKilnPassesAndPipelines();

  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "Kiln optimizer driver\n", registry));
}
