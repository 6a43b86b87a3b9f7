// RUN: kiln-opt %s --kiln-graph-pipeline | FileCheck %s
// RUN: kiln-opt %s --pass-pipeline='builtin.module(kiln-graph-pipeline{prune-weights=false})' | FileCheck %s --check-prefix=NOPRUNE
// RUN: kiln-opt %s --kiln-graph-pipeline --mlir-print-ir-after-all 2>&1 | FileCheck %s --check-prefix=AFTER

// AFTER: IR Dump After Canonicalizer
// AFTER: IR Dump After CSE
// AFTER: IR Dump After PruneWeightsPass

// The graph stage folds static shape computations, removes duplicate weight
// reads and drops weights nothing reads.
// CHECK-NOT: @stale
// NOPRUNE: kiln.weight_decl @stale
kiln.weight_decl @w : tensor<8x8xf32>
kiln.weight_decl @stale : tensor<8xf32>

// CHECK-LABEL: func.func @block
// CHECK-SAME: (%[[X:.+]]: tensor<2x4x8xf32>)
func.func @block(%x: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  // CHECK: %[[W:.+]] = kiln.weight @w
  // CHECK-NOT: kiln.weight
  %w0 = kiln.weight @w : tensor<8x8xf32>
  %w1 = kiln.weight @w : tensor<8x8xf32>
  // CHECK: %[[A:.+]] = kiln.matmul %[[X]], %[[W]]
  %a = kiln.matmul %x, %w0 : tensor<2x4x8xf32>, tensor<8x8xf32> -> tensor<2x4x8xf32>
  // CHECK-NOT: kiln.shape_of
  // CHECK-NOT: kiln.reshape
  %s = kiln.shape_of %a : tensor<2x4x8xf32> -> tensor<3xi64>
  %r = kiln.reshape %a shape(%s : tensor<3xi64>) : tensor<2x4x8xf32> -> tensor<2x4x8xf32>
  // CHECK: %[[B:.+]] = kiln.matmul %[[A]], %[[W]]
  %b = kiln.matmul %r, %w1 : tensor<2x4x8xf32>, tensor<8x8xf32> -> tensor<2x4x8xf32>
  // CHECK: return %[[B]]
  return %b : tensor<2x4x8xf32>
}
